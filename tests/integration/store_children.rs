//! Tasks held for the end of the task that asked for them
//! (`Store::hold_child`): written by the same script that records it
//! finished, never by any other ending, and a key of the wrong type on
//! their way aborts the whole end with nothing changed.

use std::time::Duration;

use jiff::Timestamp;
use redis_tasks::store::{Ending, SlotInfo};
use redis_tasks::{EnqueueOptions, StoreError, TaskStatus};
use serde_json::json;

use crate::support::{RedisServer, snapshot};

fn slot(id: &str) -> SlotInfo {
    SlotInfo {
        id: id.into(),
        description: "host.1/1".into(),
        queues: vec!["q".into()],
        supervisor: "sup".into(),
        host: "host".into(),
        pid: 1,
        started_at: Timestamp::now(),
    }
}

#[test]
fn children_are_written_with_the_finish_and_by_no_other_ending() {
    let server = RedisServer::start();
    let store = server.store();
    store.register_slot(&slot("s1")).expect("register");
    let q = vec!["q".to_owned()];
    store.queue("q").enqueue("parent", &1).expect("a");
    store.queue("q").enqueue("parent", &2).expect("b");
    let first = store
        .fetch("s1", &q, Duration::ZERO)
        .expect("fetch")
        .expect("a task");
    let now_child = store
        .hold_child("kids", "noop", &json!({"i": 0}), EnqueueOptions::new())
        .expect("hold");
    let later = store
        .hold_child(
            "kids",
            "noop",
            &json!({"i": 1}),
            EnqueueOptions::new()
                .delay(Duration::from_secs(600))
                .timeout(Duration::from_secs(5))
                .expires_in(Duration::from_secs(3600)),
        )
        .expect("hold");
    // Held: nothing written yet.
    assert!(matches!(
        store.task(now_child.id()),
        Err(StoreError::NotFound { .. })
    ));
    let children = [now_child.clone(), later.clone()];
    let (done, next) = store
        .conclude_and_fetch(
            &first.lease,
            Ending::Finished {
                result: None,
                children: &children,
            },
            &q,
            Timestamp::now(),
        )
        .expect("finish");
    assert!(done);
    let queued = store.task(now_child.id()).expect("written");
    assert_eq!(
        (queued.status, queued.queue.as_str(), queued.args.clone()),
        (TaskStatus::Queued, "kids", json!({"i": 0}))
    );
    assert_eq!(
        store.queue("kids").ids(0, 10).expect("ids"),
        vec![now_child.id().to_owned()]
    );
    let delayed = store.task(later.id()).expect("written");
    assert_eq!(delayed.status, TaskStatus::Scheduled);
    assert_eq!(delayed.timeout, Some(5));
    assert!(
        delayed.expires_at.is_some(),
        "the expiry travels with a held task"
    );
    assert!(store.queues().expect("queues").contains(&"kids".to_owned()));

    // The second task fails: a failure takes no children, and a finish
    // the slot no longer holds writes none either.
    let second = next.expect("the next task");
    let orphan = store
        .hold_child("kids", "noop", &json!({"i": 2}), EnqueueOptions::new())
        .expect("hold");
    assert!(
        store
            .conclude(
                &second.lease,
                Ending::Failed { error: "boom" },
                Timestamp::now()
            )
            .expect("fail")
    );
    let again = [orphan.clone()];
    let done = store
        .conclude(
            &second.lease,
            Ending::Finished {
                result: None,
                children: &again,
            },
            Timestamp::now(),
        )
        .expect("fenced");
    assert!(!done, "the slot no longer holds the task");
    assert!(matches!(
        store.task(orphan.id()),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.queue("kids").count().expect("count"), 1);
}

#[test]
fn a_child_queue_of_the_wrong_type_aborts_the_finish_with_nothing_changed() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    store.register_slot(&slot("s1")).expect("register");
    let q = vec!["q".to_owned()];
    store.queue("q").enqueue("parent", &1).expect("a");
    let first = store
        .fetch("s1", &q, Duration::ZERO)
        .expect("fetch")
        .expect("a task");
    let child = store
        .hold_child("kids", "noop", &1, EnqueueOptions::new())
        .expect("hold");
    // Children are written in the partition of the task that asked.
    let bad = n.home_of_task(&first.id).queue("kids");
    redis::cmd("SET")
        .arg(&bad)
        .arg("x")
        .exec(&mut c)
        .expect("set");
    let before = snapshot(&mut c);
    let children = [child];
    let err = store
        .conclude(
            &first.lease,
            Ending::Finished {
                result: None,
                children: &children,
            },
            Timestamp::now(),
        )
        .expect_err("wrong type");
    assert!(
        matches!(&err, StoreError::WrongType { key, .. } if *key == bad),
        "{err}"
    );
    assert_eq!(snapshot(&mut c), before);
    assert_eq!(n.held("s1"), vec![first.id.clone()]);
}

#[test]
fn held_children_are_checked_when_asked_for() {
    let server = RedisServer::start();
    let store = server.store();
    let unique = store.hold_child(
        "kids",
        "noop",
        &1,
        EnqueueOptions::new().unique("one-at-a-time"),
    );
    assert!(
        matches!(
            unique,
            Err(StoreError::InvalidOption {
                option: "unique",
                ..
            })
        ),
        "{unique:?}"
    );
    assert!(
        store
            .hold_child("bad name", "noop", &1, EnqueueOptions::new())
            .is_err()
    );
    assert!(
        store
            .hold_child("kids", "", &1, EnqueueOptions::new())
            .is_err()
    );
    let zero = store.hold_child(
        "kids",
        "noop",
        &1,
        EnqueueOptions::new().timeout(Duration::ZERO),
    );
    assert!(zero.is_err(), "{zero:?}");
}
