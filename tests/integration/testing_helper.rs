//! `redis_tasks::testing::run_queued`: users' test suites run queued tasks
//! in-process and see what succeeded and what failed.

use std::sync::{Arc, Mutex};

use redis_tasks::protocol::TaskStatus;
use redis_tasks::testing::run_queued;
use redis_tasks::{App, Middleware, Outcome, TaskContext, TaskRecord};
use serde_json::json;

use crate::support::RedisServer;

struct Seen(Arc<Mutex<Vec<String>>>);

impl Middleware for Seen {
    fn process_outcome(&self, task: &TaskRecord, outcome: Outcome) -> Outcome {
        self.0
            .lock()
            .expect("seen")
            .push(format!("{}:{}", task.task, outcome.is_success()));
        outcome
    }
}

#[test]
fn queued_tasks_run_in_process_through_the_middleware() {
    let redis = RedisServer::start();
    let store = redis.store();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = App::new("tests")
        .task("add", |ctx: &TaskContext, (a, b): (i64, i64)| {
            ctx.set_meta("sum", a + b)?;
            Ok::<(), String>(())
        })
        .task("refuse", |_: &TaskContext, why: String| {
            Err::<(), String>(why)
        })
        .task(
            "explode",
            |_: &TaskContext, _: serde_json::Value| -> Result<(), String> { panic!("kaboom") },
        )
        .middleware(Seen(Arc::clone(&seen)));
    let high = store.queue("high");
    let low = store.queue("low");
    let add = low.enqueue("add", &json!([2, 3])).expect("enqueue");
    let refuse = high.enqueue("refuse", &json!("no stock")).expect("enqueue");
    let explode = low.enqueue("explode", &json!(null)).expect("enqueue");

    let report = run_queued(&app, &store, &["high", "low"]).expect("run");

    assert_eq!(report.succeeded, std::slice::from_ref(&add));
    assert_eq!(report.failed.len(), 2);
    assert_eq!(report.failed[0], (refuse.clone(), "no stock".to_owned()));
    assert_eq!(report.failed[1].0, explode);
    assert!(
        report.failed[1].1.starts_with("panicked: kaboom"),
        "{:?}",
        report.failed[1]
    );
    let t = store.task(&add).expect("record");
    assert_eq!(t.status, TaskStatus::Finished);
    assert_eq!(t.meta["sum"], json!(5));
    assert_eq!(
        store.task(&refuse).expect("record").status,
        TaskStatus::Failed
    );
    assert_eq!(
        *seen.lock().expect("seen"),
        ["refuse:false", "add:true", "explode:false"]
    );
    assert!(store.worker_infos().expect("workers").is_empty());
}

#[test]
fn tasks_enqueued_in_process_run_in_the_same_call_and_held_ones_wait_for_success() {
    use redis_tasks::Child;

    let redis = RedisServer::start();
    let store = redis.store();
    let app = App::new("tests")
        .task("split", |ctx: &TaskContext, (n, fail): (u32, bool)| {
            for i in 0..n {
                let child = Child::new("leaf", &i).map_err(|e| e.to_string())?;
                ctx.enqueue(child.on_success()).map_err(|e| e.to_string())?;
            }
            let now = Child::new("leaf", &100).map_err(|e| e.to_string())?;
            ctx.enqueue(now).map_err(|e| e.to_string())?;
            if fail { Err("no".to_owned()) } else { Ok(()) }
        })
        .task("leaf", |_: &TaskContext, _: u32| Ok::<(), String>(()));
    let ok = store
        .queue("q")
        .enqueue("split", &json!([2, false]))
        .expect("ok");
    let bad = store
        .queue("q")
        .enqueue("split", &json!([2, true]))
        .expect("bad");

    let report = run_queued(&app, &store, &["q"]).expect("run");

    // ok, bad, then ok's now-child and held children, bad's now-child.
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, bad);
    assert_eq!(report.succeeded.len(), 1 + 2 + 2, "{report:?}");
    assert_eq!(report.succeeded[0], ok);
    for id in &report.succeeded[1..] {
        assert_eq!(store.task(id).expect("leaf").task, "leaf");
    }
}
