//! Results at the store level: what `finish` writes (result, `P:done:<id>`
//! with the registries' expiry), waiting for a task, and a failed task
//! requeued being waited for again.

use std::time::Duration;

use jiff::Timestamp;
use redis_tasks::TaskStatus;
use serde_json::json;

use crate::support::RedisServer;

fn slot(store: &redis_tasks::Store, id: &str) {
    store
        .register_slot(&redis_tasks::store::SlotInfo {
            id: id.into(),
            description: "test".into(),
            queues: vec!["default".into()],
            supervisor: "sup".into(),
            host: "host".into(),
            pid: 1,
            started_at: Timestamp::now(),
        })
        .expect("register");
}

#[test]
fn finish_stores_the_result_and_wakes_waiters_and_a_requeued_failure_waits_again() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store().with_registry_ttl(1000);
    slot(&store, "s");
    let q = store.queue("default");
    let ok = q.enqueue("t", &json!(1)).expect("enqueue");
    let bad = q.enqueue("t", &json!(2)).expect("enqueue");
    let queues = vec!["default".to_owned()];

    let f = store
        .fetch("s", &queues, Duration::ZERO)
        .expect("fetch")
        .expect("task");
    assert_eq!(f.id, ok);
    assert!(
        store
            .finish_with_result(
                "s",
                &ok,
                TaskStatus::Finished,
                None,
                Some(r#"{"n":1}"#),
                Timestamp::now()
            )
            .expect("finish")
    );
    let record = store
        .wait_for_end(&ok, Duration::from_secs(30))
        .expect("wait")
        .expect("ended");
    assert_eq!(record.result, Some(json!({"n": 1})));
    // Any timeout is accepted, however large.
    let again = store.wait_for_end(&ok, Duration::MAX).expect("wait");
    assert_eq!(again.map(|r| r.status), Some(TaskStatus::Finished));
    let mut c = server.client();
    let done: Vec<String> = redis::cmd("LRANGE")
        .arg(n.home_of_task(&ok).done(&ok))
        .arg(0)
        .arg(-1)
        .query(&mut c)
        .expect("lrange");
    assert_eq!(done, vec!["finished".to_owned()]);
    let ttl: i64 = redis::cmd("TTL")
        .arg(n.home_of_task(&ok).done(&ok))
        .query(&mut c)
        .expect("ttl");
    assert!((1..=1000).contains(&ttl), "{ttl}");

    // A failure stores no result, even if one is given.
    let f = store
        .fetch("s", &queues, Duration::ZERO)
        .expect("fetch")
        .expect("task");
    assert_eq!(f.id, bad);
    store
        .finish_with_result(
            "s",
            &bad,
            TaskStatus::Failed,
            Some("no"),
            None,
            Timestamp::now(),
        )
        .expect("finish");
    let failed = store
        .wait_for_end(&bad, Duration::from_secs(30))
        .expect("wait")
        .expect("ended");
    assert_eq!((failed.status, failed.result), (TaskStatus::Failed, None));
    // Requeued, it is live again: a waiter waits for its new run.
    let report = store
        .requeue_failed(std::slice::from_ref(&bad))
        .expect("requeue");
    assert!(report.rejected.is_empty(), "{report:?}");
    let waited = store
        .wait_for_end(&bad, Duration::from_millis(300))
        .expect("wait");
    assert!(waited.is_none(), "{waited:?}");
    // A missing task is an error, not a wait.
    assert!(store.wait_for_end("nope", Duration::from_secs(30)).is_err());
}

#[test]
fn a_tasks_output_is_stored_as_bytes_with_the_registries_expiry() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store().with_registry_ttl(1000);
    slot(&store, "s");
    let id = store
        .queue("default")
        .enqueue("t", &json!(1))
        .expect("enqueue");
    let silent = store
        .queue("default")
        .enqueue("t", &json!(2))
        .expect("enqueue");
    let f = store
        .fetch("s", &["default".to_owned()], Duration::ZERO)
        .expect("fetch")
        .expect("task");
    assert_eq!(f.id, id);
    let bytes = b"line one\n\xff\xfe not text\x1b[0m\n";
    store.save_output(&f.lease, bytes).expect("save");
    assert_eq!(
        store.task_output(&id).expect("read").as_deref(),
        Some(&bytes[..])
    );
    let mut c = server.client();
    let ttl: i64 = redis::cmd("TTL")
        .arg(n.home_of_task(&id).output(&id))
        .query(&mut c)
        .expect("ttl");
    assert!(ttl > 990 && ttl <= 1000, "{ttl}");
    // A later run's output replaces it.
    store.save_output(&f.lease, b"again\n").expect("save");
    assert_eq!(
        store.task_output(&id).expect("read").as_deref(),
        Some(&b"again\n"[..])
    );
    assert_eq!(store.task_output(&silent).expect("read"), None);
    let err = store.task_output("no-such-task").expect_err("unknown");
    assert!(
        matches!(err, redis_tasks::StoreError::NotFound { .. }),
        "{err}"
    );
}
