//! The scheduler's Redis side: exactly-once enqueue per run time, the lock
//! fence, the singleton check, first sight of an entry.

use std::time::Duration;

use jiff::Timestamp;
use redis_tasks::store::{RunResult, SCHEDULER_LOCK, ScheduledRun};

use crate::support::RedisServer;

fn run<'a>(
    at: Timestamp,
    singleton: bool,
    args: &'a serde_json::Value,
) -> ScheduledRun<'a, serde_json::Value> {
    ScheduledRun {
        entry: "tick",
        at,
        task: "noop",
        args,
        queue: "default",
        singleton,
    }
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

#[test]
fn a_run_is_enqueued_once_and_only_by_the_lock_holder() {
    let redis = RedisServer::start();
    let store = redis.store();
    let args = serde_json::json!([1]);
    let ttl = Duration::from_secs(30);
    assert!(store.try_lock(SCHEDULER_LOCK, "a", ttl).expect("lock"));
    assert!(!store.try_lock(SCHEDULER_LOCK, "b", ttl).expect("lock"));

    let at = ts("2026-01-01T10:00:00Z");
    // Not the holder: nothing written.
    assert_eq!(
        store
            .enqueue_scheduled("b", &run(at, false, &args))
            .expect("enqueue"),
        RunResult::LockLost
    );
    assert_eq!(store.queue("default").count().expect("count"), 0);

    let first = store
        .enqueue_scheduled("a", &run(at, false, &args))
        .expect("enqueue");
    let RunResult::Enqueued(id) = first else {
        panic!("expected an enqueue, got {first:?}");
    };
    assert_eq!(store.task(&id).expect("record").args, args);
    // The same run again, or an earlier one: already handled.
    for again in [at, ts("2026-01-01T09:59:00Z")] {
        assert_eq!(
            store
                .enqueue_scheduled("a", &run(again, false, &args))
                .expect("enqueue"),
            RunResult::AlreadyDone
        );
    }
    assert_eq!(store.queue("default").ids(0, 10).expect("ids"), [id]);
    assert_eq!(store.schedule_last_run("tick").expect("last"), Some(at));

    // A takeover by another token still sees the run as done.
    assert!(store.release_lock(SCHEDULER_LOCK, "a").expect("release"));
    assert!(store.try_lock(SCHEDULER_LOCK, "b", ttl).expect("lock"));
    assert_eq!(
        store
            .enqueue_scheduled("b", &run(at, false, &args))
            .expect("enqueue"),
        RunResult::AlreadyDone
    );
    assert!(matches!(
        store
            .enqueue_scheduled("b", &run(ts("2026-01-01T10:01:00Z"), false, &args))
            .expect("enqueue"),
        RunResult::Enqueued(_)
    ));
    assert_eq!(store.queue("default").count().expect("count"), 2);
}

#[test]
fn a_singleton_skips_while_its_previous_task_is_queued() {
    let redis = RedisServer::start();
    let store = redis.store();
    let args = serde_json::Value::Null;
    assert!(
        store
            .try_lock(SCHEDULER_LOCK, "a", Duration::from_secs(30))
            .expect("lock")
    );
    let RunResult::Enqueued(first) = store
        .enqueue_scheduled("a", &run(ts("2026-01-01T10:00:00Z"), true, &args))
        .expect("enqueue")
    else {
        panic!("first run not enqueued");
    };
    let second = ts("2026-01-01T10:01:00Z");
    assert_eq!(
        store
            .enqueue_scheduled("a", &run(second, true, &args))
            .expect("enqueue"),
        RunResult::Busy {
            previous: first.clone(),
            status: "queued".into()
        }
    );
    // The skipped run counts as handled.
    assert_eq!(store.schedule_last_run("tick").expect("last"), Some(second));
    // Once the previous task is gone from the queue, the next run goes in.
    store.cancel(&first).expect("cancel");
    assert!(matches!(
        store
            .enqueue_scheduled("a", &run(ts("2026-01-01T10:02:00Z"), true, &args))
            .expect("enqueue"),
        RunResult::Enqueued(_)
    ));
}

#[test]
fn first_sight_of_an_entry_stores_now_and_later_calls_keep_it() {
    let redis = RedisServer::start();
    let store = redis.store();
    let t1 = ts("2026-01-01T10:00:00.5Z");
    assert_eq!(
        store.schedule_init("tick", "a", t1).expect("init"),
        None,
        "no lock, no write"
    );
    assert_eq!(store.schedule_last_run("tick").expect("last"), None);
    assert!(
        store
            .try_lock(SCHEDULER_LOCK, "a", Duration::from_secs(30))
            .expect("lock")
    );
    assert_eq!(
        store.schedule_init("tick", "a", t1).expect("init"),
        Some(t1)
    );
    let later = ts("2026-01-01T11:00:00Z");
    assert_eq!(
        store.schedule_init("tick", "a", later).expect("init"),
        Some(t1)
    );
}
