//! Unique enqueue: a uniqueness key held by a live task makes a second
//! enqueue return that task's id and write nothing, decided inside the
//! enqueue script (many racing producers, one task); the key is freed when
//! the task ends (finished, failed, canceled) or vanishes.

use std::sync::{Arc, Barrier};

use redis_tasks::testing::run_queued;
use redis_tasks::{App, EnqueueOptions, Enqueued, StoreError, TaskContext, TaskStatus};
use serde_json::json;

use crate::support::{RedisServer, snapshot};

fn unique(key: &str) -> EnqueueOptions {
    EnqueueOptions::new().unique(key)
}

#[test]
fn many_racing_producers_create_one_task() {
    let server = RedisServer::start();
    let n = server.names();
    const PRODUCERS: usize = 16;
    const TRIES: usize = 20;
    let barrier = Arc::new(Barrier::new(PRODUCERS));
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|n| {
            let store = server.store();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                (0..TRIES)
                    .map(|i| {
                        store
                            .queue("imports")
                            .enqueue_with_outcome(
                                "import",
                                &json!([42, n, i]),
                                &unique("import:42"),
                            )
                            .expect("enqueue")
                    })
                    .collect::<Vec<Enqueued>>()
            })
        })
        .collect();
    let all: Vec<Enqueued> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("producer thread"))
        .collect();
    let new: Vec<&Enqueued> = all.iter().filter(|e| e.is_new()).collect();
    assert_eq!(new.len(), 1, "exactly one enqueue writes: {new:?}");
    let id = new[0].id().to_owned();
    assert!(
        all.iter().all(|e| e.id() == id),
        "every producer got the same id"
    );
    let store = server.store();
    assert_eq!(
        store.queue("imports").ids(0, 100).expect("ids"),
        vec![id.clone()]
    );
    let record = store.task(&id).expect("record");
    assert_eq!(record.unique.as_deref(), Some("import:42"));
    let mut c = server.client();
    let held: String = redis::cmd("GET")
        .arg(n.home("import:42").unique("import:42"))
        .query(&mut c)
        .expect("get");
    assert_eq!(held, id);
}

#[test]
fn the_key_is_freed_when_the_task_ends_and_a_new_task_can_take_it() {
    let server = RedisServer::start();
    let store = server.store();
    let app = App::new("t")
        .task("ok", |_: &TaskContext, _: serde_json::Value| {
            Ok::<_, String>(1)
        })
        .task("bad", |_: &TaskContext, _: serde_json::Value| {
            Err::<(), _>("no")
        });
    let q = store.queue("default");
    for task in ["ok", "bad"] {
        let key = format!("k:{task}");
        let first = q
            .enqueue_with(task, &json!(null), &unique(&key))
            .expect("enqueue");
        // The plain variant says nothing but returns the existing id.
        let again = q
            .enqueue_with(task, &json!(null), &unique(&key))
            .expect("enqueue");
        assert_eq!(again, first);
        let report = run_queued(&app, &store, &["default"]).expect("run");
        assert_eq!(
            report.succeeded.len() + report.failed.len(),
            1,
            "{report:?}"
        );
        let next = q
            .enqueue_with_outcome(task, &json!(null), &unique(&key))
            .expect("enqueue");
        assert!(
            next.is_new(),
            "{task}: the key was freed at the end: {next:?}"
        );
        assert_ne!(next.id(), first);
        run_queued(&app, &store, &["default"]).expect("run");
    }
}

#[test]
fn cancel_and_emptying_a_queue_free_the_key_and_maintenance_frees_stale_ones() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let q = store.queue("default");
    let a = q
        .enqueue_with("t", &json!(1), &unique("u"))
        .expect("enqueue");
    store.cancel(&a).expect("cancel");
    assert_eq!(store.task(&a).expect("record").status, TaskStatus::Canceled);
    let b = q
        .enqueue_with_outcome("t", &json!(2), &unique("u"))
        .expect("enqueue");
    assert!(b.is_new());
    assert_eq!(q.empty().expect("empty"), 1);
    let mut c = server.client();
    let exists: i64 = redis::cmd("EXISTS")
        .arg(n.home("u").unique("u"))
        .query(&mut c)
        .expect("exists");
    assert_eq!(exists, 0, "emptying the queue freed the key");

    // A key whose task vanished some other way is free for enqueue, and
    // maintenance deletes it.
    let d = q
        .enqueue_with("t", &json!(3), &unique("gone"))
        .expect("enqueue");
    let live = q
        .enqueue_with("t", &json!(4), &unique("live"))
        .expect("enqueue");
    let _: i64 = redis::cmd("DEL")
        .arg(n.task_of(&d))
        .query(&mut c)
        .expect("del");
    assert_eq!(store.free_stale_unique_keys().expect("free"), 1);
    let held: Option<String> = redis::cmd("GET")
        .arg(n.home("live").unique("live"))
        .query(&mut c)
        .expect("get");
    assert_eq!(
        held.as_deref(),
        Some(live.as_str()),
        "a live task keeps its key"
    );
    let e = q
        .enqueue_with_outcome("t", &json!(5), &unique("gone"))
        .expect("enqueue");
    assert!(e.is_new());
}

#[test]
fn bad_uniqueness_keys_and_foreign_keys_are_refused_with_nothing_written() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    for key in ["", "a\nb", &"x".repeat(513)] {
        let err = store
            .queue("default")
            .enqueue_with("t", &json!(1), &unique(key))
            .expect_err("refused");
        assert!(err.to_string().contains("uniqueness key"), "{err}");
    }
    let _: () = redis::cmd("LPUSH")
        .arg(n.home("taken").unique("taken"))
        .arg("x")
        .query(&mut c)
        .expect("lpush");
    let before = snapshot(&mut c);
    let err = store
        .queue("default")
        .enqueue_with("t", &json!(1), &unique("taken"))
        .expect_err("wrong type");
    assert!(matches!(err, StoreError::WrongType { .. }), "{err}");
    assert_eq!(snapshot(&mut c), before);
}

#[test]
fn a_delayed_task_holds_its_key_until_it_is_canceled() {
    let server = RedisServer::start();
    let store = server.store();
    let queue = store.queue("imports");
    let later = unique("import:7").delay(std::time::Duration::from_secs(3600));
    let first = queue
        .enqueue_with_outcome("import", &json!([7]), &later)
        .expect("enqueue");
    let Enqueued::New(id) = first else {
        panic!("the first enqueue wrote nothing: {first:?}")
    };
    let t = store.task(&id).expect("record");
    assert_eq!(t.status, TaskStatus::Scheduled);
    assert_eq!(t.unique.as_deref(), Some("import:7"));
    assert!(t.run_at.is_some(), "{t:#?}");
    assert_eq!(
        queue.count().expect("count"),
        0,
        "a delayed task was queued"
    );

    // Scheduled counts as live: the same key, due now or later, is taken.
    for options in [unique("import:7"), later.clone()] {
        let again = queue
            .enqueue_with_outcome("import", &json!([7]), &options)
            .expect("enqueue");
        assert_eq!(again, Enqueued::Existing(id.clone()));
    }

    // Canceling the scheduled task frees the key.
    assert_eq!(
        store.cancel_task(&id).expect("cancel"),
        redis_tasks::CancelResult::Canceled
    );
    let next = queue
        .enqueue_with_outcome("import", &json!([7]), &unique("import:7"))
        .expect("enqueue");
    assert!(next.is_new(), "{next:?}");
    assert_ne!(next.id(), id);
}
