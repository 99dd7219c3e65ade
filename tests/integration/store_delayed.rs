//! The delayed set, per-enqueue options and cancel requests at the store
//! level: delayed enqueue and promotion (exactly once under racing
//! promoters), a time in the past, cancel of a scheduled task, the raw
//! commands of `docs/redis-schema.md`, a retry's way through the delayed
//! set with its attempts, and the cancel request of a running task.

use std::collections::HashSet;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use redis_tasks::protocol::TaskStatus;
use redis_tasks::store::SlotInfo;
use redis_tasks::{CancelResult, EnqueueOptions, RetryPolicy, StoreError};
use serde_json::json;

use crate::support::RedisServer;

fn later(secs: i64) -> Timestamp {
    Timestamp::now() + SignedDuration::from_secs(secs)
}

fn slot(server: &RedisServer, name: &str) -> SlotInfo {
    crate::support::registered_slot(&server.store(), name, &["default"])
}

#[test]
fn a_delayed_task_waits_scheduled_and_is_promoted_once_when_due() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let q = store.queue("default");
    let id = q
        .enqueue_in(Duration::from_secs(600), "send", &json!([1]))
        .expect("enqueue_in");
    let rec = store.task(&id).expect("record");
    assert_eq!(rec.status, TaskStatus::Scheduled);
    let due = rec.run_at.expect("run_at");
    assert!(due > later(590) && due < later(610), "{due}");
    assert_eq!(q.count().expect("count"), 0);
    assert_eq!(store.scheduled_count().expect("count"), 1);
    let mut conn = server.client();
    let score: f64 = redis::cmd("ZSCORE")
        .arg(n.home("default").scheduled())
        .arg(&id)
        .query(&mut conn)
        .expect("zscore");
    assert!((score - due.as_millisecond() as f64 / 1000.0).abs() < 0.01);

    let early = store.promote_due(Timestamp::now(), 100).expect("promote");
    assert_eq!(early.moved, 0);
    assert!(
        early
            .next_due
            .is_some_and(|t| (t - due).abs() < SignedDuration::from_millis(1))
    );
    let done = store.promote_due(later(601), 100).expect("promote");
    assert_eq!((done.moved, done.next_due), (1, None));
    let rec = store.task(&id).expect("record");
    assert_eq!(rec.status, TaskStatus::Queued);
    assert_eq!(rec.run_at, None);
    assert_eq!(q.ids(0, 10).expect("ids"), std::slice::from_ref(&id));
    // A second pass finds nothing: promoted once.
    assert_eq!(
        store.promote_due(later(700), 100).expect("promote").moved,
        0
    );
    assert_eq!(q.count().expect("count"), 1);
}

#[test]
fn a_time_in_the_past_queues_at_once() {
    let server = RedisServer::start();
    let store = server.store();
    let q = store.queue("default");
    let id = q
        .enqueue_at(later(-86_400), "send", &json!([]))
        .expect("enqueue_at");
    assert_eq!(store.task(&id).expect("record").status, TaskStatus::Queued);
    assert_eq!(q.ids(0, 10).expect("ids"), [id]);
    assert_eq!(store.scheduled_count().expect("count"), 0);
}

#[test]
fn racing_promoters_move_each_due_task_exactly_once() {
    let server = RedisServer::start();
    let store = server.store();
    let calls: Vec<(&str, serde_json::Value)> = (0..600).map(|i| ("send", json!([i]))).collect();
    let options = EnqueueOptions::new().delay(Duration::from_millis(300));
    let ids = store
        .queue("default")
        .enqueue_many_with(&calls, &options)
        .expect("enqueue_many_with");
    assert_eq!(store.scheduled_count().expect("count"), 600);
    let moved: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let mine = store.independent().expect("store");
                s.spawn(move || {
                    let mut moved = 0;
                    while mine.scheduled_count().expect("count") > 0 {
                        // Small batches, so that the promoters interleave.
                        moved += mine
                            .promote_due(Timestamp::now(), 7)
                            .expect("promote")
                            .moved;
                    }
                    moved
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    assert_eq!(moved, 600);
    let queued = store.queue("default").ids(0, 1000).expect("ids");
    assert_eq!(queued.len(), 600);
    let unique: HashSet<&String> = queued.iter().collect();
    assert_eq!(unique.len(), 600);
    assert!(ids.iter().all(|id| unique.contains(id)));
}

#[test]
fn a_scheduled_task_can_be_canceled_and_is_never_promoted() {
    let server = RedisServer::start();
    let store = server.store();
    let id = store
        .queue("default")
        .enqueue_in(Duration::from_secs(60), "send", &json!([]))
        .expect("enqueue_in");
    assert_eq!(
        store.cancel_task(&id).expect("cancel"),
        CancelResult::Canceled
    );
    let rec = store.task(&id).expect("record");
    assert_eq!(rec.status, TaskStatus::Canceled);
    assert!(rec.ended_at.is_some());
    assert_eq!(store.scheduled_count().expect("count"), 0);
    assert_eq!(store.promote_due(later(120), 10).expect("promote").moved, 0);
    assert_eq!(store.queue("default").count().expect("count"), 0);
    // Canceling again says what it is, and changes nothing.
    match store.cancel_task(&id) {
        Err(StoreError::NotQueued { status, .. }) => assert_eq!(status, TaskStatus::Canceled),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn raw_commands_enqueue_a_delayed_task_with_options_as_documented() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut conn = server.client();
    let due = later(30);
    let score = format!("{:.6}", due.as_microsecond() as f64 / 1e6);
    redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(n.home("mail").task("raw-1"))
        .arg(&[
            ("task", "send_report"),
            ("args", "[42]"),
            ("status", "scheduled"),
            ("queue", "mail"),
            ("enqueued_at", &Timestamp::now().to_string()),
            ("run_at", &due.to_string()),
            ("timeout", "30"),
            ("retry", r#"{"max_retries": 5, "base": 2}"#),
        ])
        .ignore()
        .cmd("ZADD")
        .arg(n.home("mail").scheduled())
        .arg(&score)
        .arg("raw-1")
        .ignore()
        .cmd("SADD")
        .arg(n.home("mail").queues())
        .arg("mail")
        .ignore()
        .query::<()>(&mut conn)
        .expect("raw enqueue");
    let rec = store.task("raw-1").expect("record");
    assert_eq!(rec.status, TaskStatus::Scheduled);
    assert_eq!(rec.timeout, Some(30));
    let retry = rec.retry.expect("retry");
    assert_eq!(retry.max_retries, 5);
    assert_eq!(retry.base, Duration::from_secs(2));
    assert_eq!(retry.cap, RetryPolicy::new(0).cap);
    assert_eq!(store.promote_due(later(31), 10).expect("promote").moved, 1);
    assert_eq!(store.queue("mail").ids(0, 10).expect("ids"), ["raw-1"]);
}

#[test]
fn per_enqueue_timeout_and_retry_are_stored_and_bad_ones_refused() {
    let server = RedisServer::start();
    let store = server.store();
    let q = store.queue("default");
    let policy = RetryPolicy::new(4).base(Duration::from_millis(250));
    let options = EnqueueOptions::new()
        .timeout(Duration::from_secs(30))
        .retry(policy);
    let id = q
        .enqueue_with("send", &json!([]), &options)
        .expect("enqueue");
    let rec = store.task(&id).expect("record");
    assert_eq!(rec.status, TaskStatus::Queued);
    assert_eq!(rec.timeout, Some(30));
    assert_eq!(rec.retry, Some(policy));
    let plain = q.enqueue("send", &json!([])).expect("enqueue");
    assert_eq!(store.task(&plain).expect("record").timeout, None);

    let mut conn = server.client();
    let before = crate::support::snapshot(&mut conn);
    let zero = EnqueueOptions::new().timeout(Duration::ZERO);
    assert!(matches!(
        q.enqueue_with("send", &json!([]), &zero),
        Err(StoreError::InvalidOption {
            option: "timeout",
            ..
        })
    ));
    assert_eq!(crate::support::snapshot(&mut conn), before);
}

#[test]
fn a_retry_goes_through_the_delayed_set_and_keeps_every_attempt() {
    let server = RedisServer::start();
    let store = server.store();
    let s = slot(&server, "s1");
    let id = store
        .queue("default")
        .enqueue("send", &json!([]))
        .expect("enqueue");
    let fetched = store
        .fetch(&s.id, &s.queues, Duration::ZERO)
        .expect("fetch")
        .expect("a task");
    assert_eq!(fetched.id, id);
    let at = later(5);
    assert!(
        store
            .schedule_retry(&s.id, &id, "boom", at, Timestamp::now())
            .expect("retry")
    );
    let rec = store.task(&id).expect("record");
    assert_eq!(rec.status, TaskStatus::Scheduled);
    assert_eq!(rec.error.as_deref(), Some("boom"));
    assert_eq!(rec.attempts.len(), 1);
    assert_eq!(rec.attempts[0].status, TaskStatus::Failed);
    assert!(rec.attempts[0].started_at.is_some());
    assert_eq!(
        rec.attempts[0].next_attempt_at,
        Some(rec.run_at.expect("run_at"))
    );
    // Fenced: the slot no longer holds it.
    assert!(
        !store
            .schedule_retry(&s.id, &id, "again", at, Timestamp::now())
            .expect("retry")
    );

    assert_eq!(store.promote_due(later(6), 10).expect("promote").moved, 1);
    store
        .fetch(&s.id, &s.queues, Duration::ZERO)
        .expect("fetch")
        .expect("a task");
    assert!(
        store
            .finish(&s.id, &id, TaskStatus::Finished, None, Timestamp::now())
            .expect("finish")
    );
    let rec = store.task(&id).expect("record");
    assert_eq!(rec.status, TaskStatus::Finished);
    assert_eq!(rec.attempts.len(), 2);
    assert_eq!(rec.attempts[1].status, TaskStatus::Finished);
    assert_eq!(rec.attempts[1].error, None);
    assert_eq!(rec.attempts[1].next_attempt_at, None);
}

#[test]
fn a_cancel_request_reaches_the_slot_and_is_dropped_once_recorded() {
    let server = RedisServer::start();
    let store = server.store();
    let s = slot(&server, "sup-0");
    let id = store
        .queue("default")
        .enqueue("send", &json!([]))
        .expect("enqueue");
    store
        .fetch(&s.id, &s.queues, Duration::ZERO)
        .expect("fetch")
        .expect("a task");
    assert!(
        !store
            .wait_for_wake("sup", Duration::from_millis(1))
            .expect("wait")
    );
    assert_eq!(
        store.cancel_task(&id).expect("cancel"),
        CancelResult::Requested
    );
    assert_eq!(store.task(&id).expect("record").status, TaskStatus::Running);
    // The supervisor running it (`sup`, from its slot's hash) is woken.
    assert!(
        store
            .wait_for_wake("sup", Duration::from_secs(5))
            .expect("wait")
    );
    assert!(
        !store
            .wait_for_wake("sup", Duration::from_millis(1))
            .expect("wait")
    );
    assert_eq!(
        store.cancel_requests().expect("requests"),
        [(id.clone(), s.id.clone())]
    );
    assert!(
        store
            .finish_canceled(&s.id, &id, "canceled while running", Timestamp::now())
            .expect("finish")
    );
    let rec = store.task(&id).expect("record");
    assert_eq!(rec.status, TaskStatus::Canceled);
    assert_eq!(rec.error.as_deref(), Some("canceled while running"));
    assert!(store.cancel_requests().expect("requests").is_empty());
    assert_eq!(store.finished().count().expect("count"), 0);
    assert_eq!(store.failed().count().expect("count"), 0);
    // A request for a task that is not running is refused or dropped.
    match store.cancel_task(&id) {
        Err(StoreError::NotQueued { status, .. }) => assert_eq!(status, TaskStatus::Canceled),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_retry_clears_the_progress_of_the_failed_attempt() {
    let server = RedisServer::start();
    let store = server.store();
    let s = slot(&server, "s1");
    let id = store
        .queue("default")
        .enqueue("send", &json!([]))
        .expect("enqueue");
    store
        .fetch(&s.id, &s.queues, Duration::ZERO)
        .expect("fetch")
        .expect("a task");
    let report = redis_tasks::protocol::Progress::new(3, Some(10), "halfway there");
    assert!(store.set_progress(&id, &report).expect("progress"));
    assert!(store.progress(&id).expect("read").is_some());
    assert!(
        store
            .schedule_retry(&s.id, &id, "boom", later(60), Timestamp::now())
            .expect("retry")
    );
    assert_eq!(store.progress(&id).expect("read"), None);
    assert_eq!(
        store.task(&id).expect("record").status,
        TaskStatus::Scheduled
    );
    // A task without progress is retried the same.
    assert_eq!(store.promote_due(later(61), 10).expect("promote").moved, 1);
    store
        .fetch(&s.id, &s.queues, Duration::ZERO)
        .expect("fetch")
        .expect("a task");
    assert!(
        store
            .schedule_retry(&s.id, &id, "again", later(60), Timestamp::now())
            .expect("retry")
    );
    assert_eq!(store.progress(&id).expect("read"), None);
}
