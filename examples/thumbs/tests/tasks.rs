// tests/tasks.rs
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis_tasks::{CancelResult, Store, TaskStatus};
use serde_json::json;

struct Redis(Child);
impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A throwaway redis-server on a free port; panics, loudly, if it does not
/// start (so a test never talks to some other Redis by accident).
fn redis() -> (Redis, Store) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server on the PATH");
    let mut redis = Redis(child);
    let store = Store::open(&format!("redis://127.0.0.1:{port}"), "test").expect("store");
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.ping().is_err() {
        if let Some(status) = redis.0.try_wait().unwrap() {
            panic!("redis-server on port {port} exited at start: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "redis-server on port {port} did not answer within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (redis, store)
}

#[test]
fn resize_returns_the_new_path() {
    let (_redis, store) = redis();
    let app = thumbs::app();
    let id = store
        .queue("default")
        .enqueue("resize", &json!({"image": "cat", "width": 64}))
        .unwrap();
    let fetched = store
        .queue("default")
        .enqueue("fetch_page", &"https://example.com")
        .unwrap();
    let report = redis_tasks::testing::run_queued(&app, &store, &["default"]).unwrap();
    assert_eq!(report.succeeded.len(), 2, "{report:?}");
    let record = store.task(&id).unwrap();
    assert_eq!(record.status, TaskStatus::Finished);
    assert_eq!(
        record.result,
        Some(json!({"path": "cat-64.png", "bytes": 640}))
    );
    assert_eq!(store.task(&fetched).unwrap().result, Some(json!(19)));
    // Wrong argument types are caught before enqueueing.
    assert!(app.check_call("resize", &json!({"image": 1})).is_err());
}

#[test]
fn the_producer_functions_of_the_guide_work() {
    let (_redis, store) = redis();
    let first = thumbs::producer::import_once(&store).unwrap();
    assert_eq!(thumbs::producer::import_once(&store).unwrap(), first);
    let checked = thumbs::producer::checked(&store).unwrap();
    assert_eq!(store.task(&checked).unwrap().status, TaskStatus::Queued);
    let canceled = thumbs::producer::later_retried_then_canceled(&store).unwrap();
    assert!(matches!(canceled, CancelResult::Canceled), "{canceled:?}");
}

#[test]
fn the_async_producer_functions_of_the_guide_work() {
    let (_redis, store) = redis();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let async_store = rt
        .block_on(redis_tasks::AsyncStore::from_store(&store))
        .unwrap();
    let id = rt
        .block_on(thumbs::web::start_resize(&async_store, "cat"))
        .unwrap();
    // Not run yet: the wait runs out.
    let early = rt.block_on(thumbs::web::resized(
        &async_store,
        &id,
        Duration::from_millis(50),
    ));
    assert!(early.unwrap().is_none());
    let report = redis_tasks::testing::run_queued(&thumbs::app(), &store, &["default"]).unwrap();
    assert_eq!(report.succeeded.len(), 1, "{report:?}");
    let done = rt
        .block_on(thumbs::web::resized(
            &async_store,
            &id,
            Duration::from_secs(5),
        ))
        .unwrap()
        .expect("ended");
    assert_eq!(done.path, "cat-64.png");
}

#[test]
fn resize_all_enqueues_one_resize_per_width_when_it_finishes() {
    let (_redis, store) = redis();
    let id = store
        .queue("default")
        .enqueue("resize_all", &"cat")
        .unwrap();
    let report = redis_tasks::testing::run_queued(&thumbs::app(), &store, &["default"]).unwrap();
    // resize_all, then the two resizes it asked for.
    assert_eq!(report.succeeded.len(), 3, "{report:?}");
    let children: Vec<String> =
        serde_json::from_value(store.task(&id).unwrap().result.unwrap()).unwrap();
    let paths: Vec<serde_json::Value> = children
        .iter()
        .map(|c| store.task(c).unwrap().result.unwrap()["path"].clone())
        .collect();
    assert_eq!(paths, vec![json!("cat-64.png"), json!("cat-256.png")]);
}
