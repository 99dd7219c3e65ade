//! The async producer (`AsyncStore`, feature `async`) against a real
//! Redis: enqueue (plain, with options, in batches, unique), a task run by
//! the demo supervisor whose result is awaited, cancel, reading records;
//! TLS, the durable mode, a Sentinel failover, unreachable servers
//! (`deployments::async_cluster`: a Redis Cluster);
//! and the axum example (`examples/axum_producer.rs`) over real HTTP.
//! `three_partitions` runs these tests again on three partitions.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use redis_tasks::protocol::TaskStatus;
use redis_tasks::store::{RedisConfig, WaitPolicy};
use redis_tasks::{AsyncStore, EnqueueOptions, Enqueued, RetryPolicy, Settings, StoreError};
use serde_json::{Value, json};

use crate::e2e::Demo;
use crate::support::test_partitions;
use crate::support::topology::{SentinelSet, TestCerts, TlsRedis};
use crate::support::{RedisServer, wait_until};

// The example's router, tested as it is (its `main` is not used here).
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../../examples/axum_producer.rs"]
mod axum_producer;

/// A Tokio runtime for one test (the test thread drives it, so it keeps
/// the test's name, which picks the partition layout).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The async store on the test server, configured like its sync store.
async fn async_store(server: &RedisServer) -> AsyncStore {
    AsyncStore::from_store(&server.store())
        .await
        .expect("async store")
}

/// The environment a demo supervisor needs for this test's layout.
fn layout_env() -> Vec<(&'static str, String)> {
    let count = test_partitions();
    (count > 0)
        .then(|| ("RT_REDIS_PARTITIONS", count.to_string()))
        .into_iter()
        .collect()
}

#[test]
fn enqueue_plain_with_options_in_batches_and_unique() {
    let server = RedisServer::start();
    let sync = server.store();
    runtime().block_on(async {
        let store = async_store(&server).await;
        assert_eq!(store.partition_count(), sync.partition_count());
        assert_eq!(
            store.partition_count(),
            usize::from(test_partitions().max(1))
        );
        let mut raw = server.client();
        // Where the store's own key builder says a key of `name`'s
        // partition is.
        let home = |name: &str| sync.key_names(sync.partition_of(name));
        store.ping().await.expect("ping");
        let queue = store.queue("default");

        let id = queue.enqueue("add", &json!({"a": 1})).await.expect("plain");
        let rec = sync.task(&id).expect("record, read by the sync store");
        assert_eq!(rec.status, TaskStatus::Queued);
        assert_eq!(rec.task, "add");
        assert_eq!(rec.args, json!({"a": 1}));
        assert_eq!(
            sync.queue("default").ids(0, 10).expect("ids"),
            std::slice::from_ref(&id)
        );
        let listed: Vec<String> = redis::cmd("LRANGE")
            .arg(home("default").queue("default"))
            .arg(0)
            .arg(-1)
            .query(&mut raw)
            .expect("LRANGE");
        assert_eq!(
            listed,
            std::slice::from_ref(&id),
            "in the queue's home partition"
        );

        let options = EnqueueOptions::new()
            .delay(Duration::from_secs(600))
            .timeout(Duration::from_secs(7))
            .retry(RetryPolicy::new(2))
            .expires_in(Duration::from_secs(900));
        let later = queue
            .enqueue_with("add", &json!({"a": 2}), &options)
            .await
            .expect("with options");
        let rec = sync.task(&later).expect("record");
        assert_eq!(rec.status, TaskStatus::Scheduled);
        assert_eq!(rec.timeout, Some(7));
        assert_eq!(rec.retry, Some(RetryPolicy::new(2)));
        assert!(rec.run_at.is_some());
        assert!(rec.expires_at.is_some_and(|at| Some(at) > rec.run_at));
        assert_eq!(
            sync.scheduled_ids(0, 10).expect("delayed"),
            std::slice::from_ref(&later)
        );

        let calls: Vec<(&str, Value)> = (0..700).map(|i| ("add", json!({"a": i}))).collect();
        let ids = queue.enqueue_many(&calls).await.expect("batch");
        assert_eq!(ids.len(), 700);
        let listed = sync.queue("default").ids(1, 700).expect("ids");
        assert_eq!(listed, ids, "a batch keeps its order, after the first task");
        let records = sync.tasks(&ids[..3]).expect("records");
        assert_eq!(records[2].as_ref().expect("record").args, json!({"a": 2}));
        assert!(
            queue
                .enqueue_many::<&str, Value>(&[])
                .await
                .expect("empty")
                .is_empty()
        );

        let unique = EnqueueOptions::new().unique("report-42");
        let first = queue
            .enqueue_with_outcome("add", &json!({"a": 3}), &unique)
            .await
            .expect("unique");
        assert!(first.is_new());
        let again = store
            .queue("other")
            .enqueue_with_outcome("add", &json!({"a": 4}), &unique)
            .await
            .expect("unique again");
        assert_eq!(again, Enqueued::Existing(first.id().to_owned()));
        assert_eq!(
            sync.task(first.id()).expect("record").unique.as_deref(),
            Some("report-42")
        );
        let exists: bool = redis::cmd("EXISTS")
            .arg(home("report-42").task(first.id()))
            .query(&mut raw)
            .expect("EXISTS");
        assert!(exists, "a unique task lives in its key's partition");

        // Refusals are the sync store's, with nothing written.
        let before = sync.queue("default").count().expect("count");
        let bad = queue.enqueue("no such task", &json!(null)).await;
        assert!(
            matches!(bad, Err(StoreError::InvalidName { .. })),
            "{bad:?}"
        );
        let bad = store.queue("bad queue").enqueue("add", &json!(null)).await;
        assert!(
            matches!(bad, Err(StoreError::InvalidName { .. })),
            "{bad:?}"
        );
        let bad = queue.enqueue_many_with(&calls[..2], &unique).await;
        assert!(
            matches!(bad, Err(StoreError::InvalidOption { .. })),
            "{bad:?}"
        );
        let expired = EnqueueOptions::new().expires_in(Duration::ZERO);
        let bad = queue.enqueue_with("add", &json!(null), &expired).await;
        assert!(
            matches!(
                bad,
                Err(StoreError::InvalidOption {
                    option: "expires",
                    ..
                })
            ),
            "{bad:?}"
        );
        let huge = "x".repeat(2 * 1024 * 1024);
        let bad = queue.enqueue("add", &json!({"a": huge})).await;
        assert!(
            matches!(bad, Err(StoreError::ArgsTooLarge { .. })),
            "{bad:?}"
        );
        assert_eq!(sync.queue("default").count().expect("count"), before);
    });
}

#[test]
fn a_task_run_by_a_supervisor_is_awaited_with_its_result() {
    let demo = Demo::new();
    let env = layout_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let rt = runtime();
    let store = rt
        .block_on(AsyncStore::from_store(&demo.store))
        .expect("store");
    let id = rt
        .block_on(
            store
                .queue("default")
                .enqueue("add", &json!({"a": 2, "b": 40})),
        )
        .expect("enqueue");
    // The waiter blocks before any supervisor runs.
    let waiter = rt.spawn({
        let store = store.clone();
        let id = id.clone();
        async move { store.wait_for_end(&id, Duration::from_secs(120)).await }
    });
    rt.block_on(async {
        // The shared connection still serves other calls during the wait.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let rec = store.task(&id).await.expect("read during the wait");
        assert_eq!(rec.status, TaskStatus::Queued);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(!waiter.is_finished());
    });
    let mut sup = demo.start(&["--concurrency", "1"], &env);
    let record = rt
        .block_on(waiter)
        .expect("waiter task")
        .expect("wait")
        .expect("the task ended within the wait");
    assert_eq!(record.status, TaskStatus::Finished);
    assert_eq!(record.result, Some(json!({"sum": 42, "task": id})));
    // A task that ended already is returned at once.
    let again = rt
        .block_on(store.wait_for_end(&id, Duration::from_millis(1)))
        .expect("wait")
        .expect("ended");
    assert_eq!(again.result, record.result);
    sup.stop();
}

#[test]
fn cancel_and_show_read_and_change_the_records_of_the_sync_store() {
    let server = RedisServer::start();
    let sync = server.store();
    runtime().block_on(async {
        let store = async_store(&server).await;
        let queue = store.queue("default");
        let id = queue
            .enqueue("add", &json!({"a": 1}))
            .await
            .expect("enqueue");
        let shown = store.task(&id).await.expect("show");
        assert_eq!(shown, sync.task(&id).expect("sync record"));

        store.cancel(&id).await.expect("cancel");
        assert_eq!(
            store.task(&id).await.expect("show").status,
            TaskStatus::Canceled
        );
        assert_eq!(sync.queue("default").count().expect("count"), 0);
        let again = store.cancel(&id).await;
        assert!(
            matches!(
                again,
                Err(StoreError::NotQueued {
                    status: TaskStatus::Canceled,
                    ..
                })
            ),
            "{again:?}"
        );

        let later = queue
            .enqueue_in(Duration::from_secs(600), "add", &json!({}))
            .await
            .expect("delayed");
        store.cancel(&later).await.expect("cancel a scheduled task");
        assert_eq!(
            sync.task(&later).expect("record").status,
            TaskStatus::Canceled
        );
        assert_eq!(sync.scheduled_count().expect("delayed"), 0);

        let queued = queue.enqueue("add", &json!({})).await.expect("enqueue");
        let result = store.cancel_task(&queued).await.expect("cancel_task");
        assert_eq!(result, redis_tasks::CancelResult::Canceled);
        // A canceled task has ended: its wait returns at once.
        let ended = store
            .wait_for_end(&queued, Duration::from_secs(5))
            .await
            .expect("wait")
            .expect("ended");
        assert_eq!(ended.status, TaskStatus::Canceled);

        let missing = store.task("no-such-id").await;
        assert!(
            matches!(missing, Err(StoreError::NotFound { .. })),
            "{missing:?}"
        );
        let missing = store.cancel("no-such-id").await;
        assert!(
            matches!(missing, Err(StoreError::NotFound { .. })),
            "{missing:?}"
        );

        // A wait that runs out says so.
        let waiting = queue.enqueue("add", &json!({})).await.expect("enqueue");
        let started = Instant::now();
        let none = store
            .wait_for_end(&waiting, Duration::from_millis(300))
            .await
            .expect("wait");
        assert!(none.is_none());
        assert!(started.elapsed() >= Duration::from_millis(300));
    });
}

#[test]
fn a_dropped_connection_is_reopened_by_the_next_call() {
    let mut server = RedisServer::start_persistent();
    let rt = runtime();
    let store = rt.block_on(async_store(&server));
    let id = rt
        .block_on(store.queue("default").enqueue("add", &json!({})))
        .expect("enqueue");
    server.stop_keeping_data();
    let down = rt.block_on(store.task(&id));
    assert!(
        down.as_ref().is_err_and(StoreError::is_connection_error),
        "{down:?}"
    );
    server.start_again();
    let rec = rt
        .block_on(store.task(&id))
        .expect("read after the restart");
    assert_eq!(rec.status, TaskStatus::Queued);
}

#[test]
fn a_server_that_does_not_answer_is_an_error_at_connect() {
    let rt = runtime();
    let err = rt
        .block_on(AsyncStore::open("redis://127.0.0.1:1", "rt"))
        .expect_err("nothing listens there");
    assert!(err.is_connection_error(), "{err}");
    let config = RedisConfig::from_url("redis+cluster://127.0.0.1:1/", None).expect("url");
    let err = rt
        .block_on(AsyncStore::with_config(config, "rt"))
        .expect_err("no seed answers");
    assert!(err.to_string().contains("no cluster seed"), "{err}");
}

#[test]
fn through_sentinel_the_new_master_is_found_after_a_failover() {
    let mut set = SentinelSet::start();
    // Durable mode: an enqueue returns once the replica has it, so it
    // survives the failover.
    let config = RedisConfig::from_url(&set.url(), None)
        .expect("sentinel url")
        .with_partitions(test_partitions())
        .with_wait(Some(WaitPolicy {
            replicas: 1,
            timeout: Duration::from_secs(5),
        }));
    let rt = runtime();
    let store = rt
        .block_on(AsyncStore::with_config(config, "redis_tasks"))
        .expect("store through the sentinels");
    let id = rt
        .block_on(store.queue("default").enqueue("add", &json!({"a": 1})))
        .expect("enqueue, replicated");
    let old = set.current_master_port().expect("a master");
    set.master.kill9();
    wait_until(
        "the sentinels promote the replica",
        Duration::from_secs(60),
        || set.current_master_port().is_some_and(|p| p != old),
    );
    // The connection to the old master is gone; a later call asks the
    // sentinels again and reaches the new one.
    let mut found = None;
    wait_until("a read on the new master", Duration::from_secs(60), || {
        found = rt.block_on(store.task(&id)).ok();
        found.is_some()
    });
    assert_eq!(found.expect("record").args, json!({"a": 1}));
    let next = rt
        .block_on(store.queue("default").enqueue("add", &json!({"a": 2})))
        .or_else(|_| rt.block_on(store.queue("default").enqueue("add", &json!({"a": 2}))));
    // No replica is left for the durable mode: written, not replicated.
    assert!(
        matches!(next, Err(StoreError::NotReplicated { .. })),
        "{next:?}"
    );
}

#[test]
fn the_durable_mode_waits_for_replicas_after_each_write() {
    let server = RedisServer::start();
    let config = RedisConfig::from_url(&server.url(), None)
        .expect("url")
        .with_partitions(test_partitions())
        .with_wait(Some(WaitPolicy {
            replicas: 1,
            timeout: Duration::from_millis(100),
        }));
    let rt = runtime();
    let store = rt
        .block_on(AsyncStore::with_config(config, "redis_tasks"))
        .expect("store");
    // No replica: the write happened, but it is not replicated.
    let err = rt
        .block_on(store.queue("default").enqueue("add", &json!({})))
        .expect_err("not replicated");
    assert!(
        matches!(
            err,
            StoreError::NotReplicated {
                wanted: 1,
                got: 0,
                ..
            }
        ),
        "{err:?}"
    );
    // Reads do not wait.
    let missing = rt.block_on(store.task("no-such-id"));
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
}

#[test]
fn enqueue_over_mutual_tls() {
    let certs = TestCerts::generate();
    let server = TlsRedis::start(&certs, true);
    let mut env = HashMap::new();
    env.insert("REDIS_URL", server.url());
    env.insert(
        "RT_REDIS_TLS_CA_FILE",
        certs.file("ca.pem").display().to_string(),
    );
    env.insert(
        "RT_REDIS_TLS_CERT_FILE",
        certs.file("client.pem").display().to_string(),
    );
    env.insert(
        "RT_REDIS_TLS_KEY_FILE",
        certs.file("client.key").display().to_string(),
    );
    if test_partitions() > 0 {
        env.insert("RT_REDIS_PARTITIONS", test_partitions().to_string());
    }
    let settings = Settings::load_with_env(None, &|name| env.get(name).cloned()).expect("settings");
    let rt = runtime();
    let store = rt
        .block_on(AsyncStore::from_settings(&settings))
        .expect("connect over TLS");
    let id = rt
        .block_on(store.queue("default").enqueue("add", &json!({"a": 1})))
        .expect("enqueue");
    let rec = rt.block_on(store.task(&id)).expect("read back");
    assert_eq!(rec.args, json!({"a": 1}));
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("redis_tasks*:task:*")
        .query(&mut server.proc.client())
        .expect("KEYS");
    assert_eq!(keys.len(), 1, "{keys:?}");

    // Without a client certificate the server refuses, at connect time.
    env.remove("RT_REDIS_TLS_CERT_FILE");
    env.remove("RT_REDIS_TLS_KEY_FILE");
    let settings = Settings::load_with_env(None, &|name| env.get(name).cloned()).expect("settings");
    let err = rt
        .block_on(AsyncStore::from_settings(&settings))
        .expect_err("no client certificate");
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

/// One HTTP/1.1 request to `port`; the status and the JSON body.
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read");
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, json)
}

#[test]
fn the_axum_example_enqueues_and_awaits_a_result_over_http() {
    let demo = Demo::new();
    let env = layout_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let rt = runtime();
    let port = rt.block_on(async {
        let store = AsyncStore::from_store(&demo.store).await.expect("store");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            axum::serve(listener, axum_producer::router(store))
                .await
                .expect("serve");
        });
        port
    });

    let (status, body) = http(port, "POST", "/tasks/add", Some(&json!({"a": 2, "b": 40})));
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["new"], true);
    let id = body["id"].as_str().expect("an id").to_owned();
    // In Redis, through the sync store: queued with the posted arguments.
    let rec = demo.store.task(&id).expect("record");
    assert_eq!(rec.status, TaskStatus::Queued);
    assert_eq!(rec.args, json!({"a": 2, "b": 40}));

    // Not run yet: the wait runs out and says where the task is.
    let (status, body) = http(port, "GET", &format!("/tasks/{id}/result?wait=0.2"), None);
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "queued");

    // A unique enqueue answers the live task's id the second time.
    let (_, one) = http(
        port,
        "POST",
        "/tasks/noop?unique=nightly",
        Some(&json!(null)),
    );
    let (status, two) = http(
        port,
        "POST",
        "/tasks/noop?unique=nightly",
        Some(&json!(null)),
    );
    assert_eq!(status, 202);
    assert_eq!(
        (one["new"].clone(), two["new"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(one["id"], two["id"]);

    // Refusals: a bad task name, an unknown task.
    let (status, body) = http(port, "POST", "/tasks/a%20b", Some(&json!({})));
    assert_eq!(status, 400, "{body}");
    let (status, _) = http(port, "GET", "/tasks/no-such-id/result?wait=0", None);
    assert_eq!(status, 404);

    // A waiting request, answered when a real supervisor has run the task.
    let waiting = std::thread::spawn(move || {
        http(port, "GET", &format!("/tasks/{id}/result?wait=120"), None)
    });
    let mut sup = demo.start(&["--concurrency", "1"], &env);
    let (status, body) = waiting.join().expect("request thread");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "finished");
    assert_eq!(body["result"]["sum"], 42);
    sup.stop();
    drop(rt);
}

#[test]
fn a_running_task_is_canceled_through_its_supervisor() {
    let demo = Demo::new();
    let env = layout_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let rt = runtime();
    let store = rt
        .block_on(AsyncStore::from_store(&demo.store))
        .expect("store");
    let id = rt
        .block_on(
            store
                .queue("default")
                .enqueue("sleep", &json!({"secs": 60})),
        )
        .expect("enqueue");
    let mut sup = demo.start(&["--concurrency", "1"], &env);
    demo.wait_status(&id, TaskStatus::Running, Duration::from_secs(60));
    let result = rt.block_on(store.cancel_task(&id)).expect("cancel_task");
    assert_eq!(result, redis_tasks::CancelResult::Requested);
    let started = Instant::now();
    let record = rt
        .block_on(store.wait_for_end(&id, Duration::from_secs(60)))
        .expect("wait")
        .expect("the supervisor stopped it");
    assert_eq!(record.status, TaskStatus::Canceled);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // An ended task cannot be canceled again.
    let again = rt.block_on(store.cancel_task(&id));
    assert!(
        matches!(
            again,
            Err(StoreError::NotQueued {
                status: TaskStatus::Canceled,
                ..
            })
        ),
        "{again:?}"
    );
    sup.stop();
}

#[test]
fn many_tasks_enqueue_at_once_over_the_shared_connection() {
    let server = RedisServer::start();
    let sync = server.store();
    let rt = runtime();
    let store = rt.block_on(async_store(&server));
    let ids = rt.block_on(async {
        let mut handles = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                let queue = format!("q{}", i % 7);
                store.queue(queue).enqueue("add", &json!({"i": i})).await
            }));
        }
        let mut ids = Vec::new();
        for handle in handles {
            ids.push(handle.await.expect("task").expect("enqueue"));
        }
        ids
    });
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 200);
    let total: u64 = (0..7)
        .map(|q| sync.queue(format!("q{q}")).count().expect("count"))
        .sum();
    assert_eq!(total, 200);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(sync.task(id).expect("record").args, json!({"i": i}));
    }
}
