//! Task results: a task's return value stored in its record, waited for
//! from a producer without polling, read with `task result`, limited by
//! `max_result_bytes`; uniqueness keys across a requeue and maintenance.

use std::time::Duration;

use redis_tasks::protocol::TaskStatus;
use serde_json::{Value, json};

use super::{Demo, error_of};

#[test]
fn a_returned_value_is_stored_and_a_waiting_producer_gets_it() {
    let demo = Demo::new();
    let id = demo.enqueue("add", json!({"a": 2, "b": 40}));
    let unit = demo.enqueue("noop", json!(null));
    // The waiter blocks before any supervisor runs.
    let waiter = {
        let store = demo.store.independent().expect("store");
        let id = id.clone();
        std::thread::spawn(move || store.wait_for_end(&id, Duration::from_secs(120)))
    };
    let mut sup = demo.start(&["--concurrency", "1"], &[]);
    let record = waiter
        .join()
        .expect("waiter thread")
        .expect("wait")
        .expect("the task ended within the wait");
    assert_eq!(record.status, TaskStatus::Finished);
    assert_eq!(record.result, Some(json!({"sum": 42, "task": id})));
    #[derive(serde::Deserialize)]
    struct Sum {
        sum: i64,
    }
    let sum: Sum = record.result_as().expect("typed").expect("some");
    assert_eq!(sum.sum, 42);
    let unit = demo
        .store
        .wait_for_end(&unit, Duration::from_secs(120))
        .expect("wait")
        .expect("ended");
    assert_eq!(unit.status, TaskStatus::Finished);
    assert_eq!(unit.result, None, "a task returning () stores no result");
    sup.stop();

    // The command line: the result alone, as JSON, and in `task show --json`.
    let printed = demo
        .cmd()
        .args(["task", "result", &id, "--wait", "30s"])
        .stdout();
    let value: Value = serde_json::from_str(&printed).expect("json");
    assert_eq!(value["sum"], 42);
    let shown = demo.cmd().args(["task", "show", &id, "--json"]).stdout();
    let shown: Value = serde_json::from_str(&shown).expect("json");
    assert_eq!(shown["result"]["sum"], 42);
    let js = demo.cmd().args(["task", "result", &id, "--json"]).stdout();
    let js: Value = serde_json::from_str(&js).expect("json");
    assert_eq!(js["status"], "finished");
    assert_eq!(js["result"]["sum"], 42);
}

#[test]
fn waiting_ends_at_the_timeout_and_task_result_says_why() {
    let demo = Demo::new();
    let id = demo.enqueue("add", json!({"a": 1, "b": 1}));
    // No supervisor: the task stays queued.
    let waited = demo
        .store
        .wait_for_end(&id, Duration::from_millis(300))
        .expect("wait");
    assert!(waited.is_none(), "{waited:?}");
    let out = demo
        .cmd()
        .args(["task", "result", &id, "--wait", "1s"])
        .fails();
    assert!(
        out.stderr.contains("did not end within 1 s (it is queued)"),
        "{}",
        out.stderr
    );
    let out = demo.cmd().args(["task", "result", &id]).fails();
    assert!(out.stderr.contains("no result yet"), "{}", out.stderr);
    // A canceled task wakes its waiters too.
    let waiter = {
        let store = demo.store.independent().expect("store");
        let id = id.clone();
        std::thread::spawn(move || store.wait_for_end(&id, Duration::from_secs(120)))
    };
    demo.store.cancel(&id).expect("cancel");
    let record = waiter
        .join()
        .expect("thread")
        .expect("wait")
        .expect("ended");
    assert_eq!(record.status, TaskStatus::Canceled);
    let out = demo.cmd().args(["task", "result", &id]).fails();
    assert!(out.stderr.contains("was canceled"), "{}", out.stderr);
}

#[test]
fn a_result_over_max_result_bytes_fails_the_task_naming_the_setting() {
    let demo = Demo::new();
    let big = demo.enqueue("text", json!({"len": 200}));
    let small = demo.enqueue("text", json!({"len": 10}));
    let mut cmd = demo.cmd();
    cmd.env("RT_MAX_RESULT_BYTES", "100")
        .args(["worker", "--burst", "--concurrency", "1"])
        .timeout(Duration::from_secs(120));
    cmd.run();
    let failed = demo.task(&big);
    assert_eq!(
        error_of(&failed),
        "result of 202 bytes is over max_result_bytes (100); not stored"
    );
    assert_eq!(failed.result, None);
    // process_outcome saw the failure.
    let seen = demo.outcomes_of(&big);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(demo.task(&small).result, Some(json!("xxxxxxxxxx")));
    let out = demo.cmd().args(["task", "result", &big]).fails();
    assert!(
        out.stderr.contains("failed: result of 202 bytes"),
        "{}",
        out.stderr
    );
}

#[test]
fn uniqueness_survives_a_requeue_and_maintenance_frees_keys_of_vanished_tasks() {
    use redis_tasks::EnqueueOptions;
    let demo = Demo::new();
    let unique = EnqueueOptions::new().unique("nightly");
    let q = demo.store.queue("default");
    let id = q
        .enqueue_with("reentrant_sleep", &json!({"secs": 120}), &unique)
        .expect("enqueue");
    let mut sup = demo.start(&["--concurrency", "1"], &[]);
    demo.wait_status(&id, TaskStatus::Running, Duration::from_secs(60));
    // Running: a second enqueue gets the running task.
    let again = q
        .enqueue_with_outcome("reentrant_sleep", &json!({"secs": 1}), &unique)
        .expect("enqueue");
    assert_eq!(again, redis_tasks::Enqueued::Existing(id.clone()));
    sup.stop();
    // Interrupted and requeued (not ended): it still holds the key.
    assert_eq!(demo.task(&id).status, TaskStatus::Queued);
    let again = q
        .enqueue_with_outcome("reentrant_sleep", &json!({"secs": 1}), &unique)
        .expect("enqueue");
    assert_eq!(again, redis_tasks::Enqueued::Existing(id.clone()));

    // A task that vanishes without ending (its record deleted by hand):
    // maintenance of a running supervisor frees its key.
    let gone = q
        .enqueue_with("noop", &json!(null), &EnqueueOptions::new().unique("gone"))
        .expect("enqueue");
    let mut c = demo.redis.client();
    let _: i64 = redis::cmd("DEL")
        .arg(format!("redis_tasks:task:{gone}"))
        .query(&mut c)
        .expect("del");
    let _: i64 = redis::cmd("LREM")
        .arg("redis_tasks:queue:default")
        .arg(0)
        .arg(&gone)
        .query(&mut c)
        .expect("lrem");
    let _: i64 = redis::cmd("LREM")
        .arg("redis_tasks:queue:default")
        .arg(0)
        .arg(&id)
        .query(&mut c)
        .expect("lrem");
    let mut sup = demo.start(&["--concurrency", "1"], &[]);
    crate::support::wait_until(
        "maintenance to free the key",
        Duration::from_secs(60),
        || {
            redis::cmd("EXISTS")
                .arg("redis_tasks:unique:gone")
                .query::<i64>(&mut c)
                .is_ok_and(|n| n == 0)
        },
    );
    // The requeued task (taken out of its list above so that it does not
    // run here) still has status queued: its key is kept.
    let held: Option<String> = redis::cmd("GET")
        .arg("redis_tasks:unique:nightly")
        .query(&mut c)
        .expect("get");
    assert_eq!(held.as_deref(), Some(id.as_str()));
    sup.stop();
}
