//! The canceled registry at the store level: each of the three ways a
//! task ends canceled (queued, scheduled, running) enters it; a
//! `P:canceled` of the wrong type stops a cancel before it writes
//! anything; maintenance trims it with the other registries; the bounded
//! filter searches it.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use redis_tasks::protocol::TaskStatus;
use redis_tasks::store::{RegistryKind, SlotInfo, TaskFilter};
use redis_tasks::{CancelResult, StoreError};
use serde_json::json;

use crate::support::{RedisServer, snapshot};

fn slot(server: &RedisServer) -> SlotInfo {
    crate::support::registered_slot(&server.store(), "sup-0", &["default"])
}

/// Makes `P:canceled` a string in every partition.
fn break_registry(server: &RedisServer) {
    let n = server.names();
    let mut c = server.client();
    for p in 0..n.partitions() {
        redis::cmd("SET")
            .arg(server.store().key_names(p).canceled())
            .arg("x")
            .exec(&mut c)
            .expect("set");
    }
}

fn mend_registry(server: &RedisServer) {
    let n = server.names();
    let mut c = server.client();
    for p in 0..n.partitions() {
        redis::cmd("DEL")
            .arg(server.store().key_names(p).canceled())
            .exec(&mut c)
            .expect("del");
    }
}

#[test]
fn every_cancel_path_enters_the_task_in_the_registry() {
    let server = RedisServer::start();
    let store = server.store();
    let q = store.queue("default");
    let queued = q.enqueue("send", &json!([1])).expect("enqueue");
    let scheduled = q
        .enqueue_in(Duration::from_secs(600), "send", &json!([2]))
        .expect("enqueue_in");
    assert_eq!(
        store.cancel_task(&queued).expect("cancel"),
        CancelResult::Canceled
    );
    assert_eq!(
        store.cancel_task(&scheduled).expect("cancel"),
        CancelResult::Canceled
    );
    // A running one: its supervisor records it canceled.
    let s = slot(&server);
    let running = q.enqueue("send", &json!([3])).expect("enqueue");
    let fetched = store
        .fetch(&s.id, &s.queues, Duration::ZERO)
        .expect("fetch")
        .expect("a task");
    assert_eq!(fetched.id, running);
    assert!(
        store
            .finish_canceled(&s.id, &running, "canceled while running", Timestamp::now())
            .expect("finish")
    );
    let registry = store.canceled();
    assert_eq!(registry.count().expect("count"), 3);
    // Oldest first, in the order they were canceled.
    assert_eq!(
        registry.ids(0, 10).expect("ids"),
        [queued.clone(), scheduled.clone(), running.clone()]
    );
    for rec in registry.tasks(0, 10).expect("tasks") {
        assert_eq!(rec.expect("record").status, TaskStatus::Canceled);
    }
    // None of them is in another registry.
    for kind in [
        RegistryKind::Failed,
        RegistryKind::Finished,
        RegistryKind::Expired,
    ] {
        assert_eq!(store.registry(kind).count().expect("count"), 0, "{kind:?}");
    }
    // Delete takes the entry and the record, once.
    assert!(
        store
            .delete_ended(RegistryKind::Canceled, &queued)
            .expect("delete")
    );
    assert!(
        !store
            .delete_ended(RegistryKind::Canceled, &queued)
            .expect("again")
    );
    assert!(matches!(
        store.task(&queued),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(registry.count().expect("count"), 2);
}

#[test]
fn a_registry_of_the_wrong_type_stops_every_cancel_with_nothing_changed() {
    let server = RedisServer::start();
    let store = server.store();
    let mut c = server.client();
    let q = store.queue("default");
    let queued = q.enqueue("send", &json!([1])).expect("enqueue");
    let scheduled = q
        .enqueue_in(Duration::from_secs(600), "send", &json!([2]))
        .expect("enqueue_in");
    let s = slot(&server);
    let running = q.enqueue("send", &json!([3])).expect("enqueue");
    // `queued` is at the head of the queue: take it out of the way first.
    let first = store
        .fetch(&s.id, &s.queues, Duration::ZERO)
        .expect("fetch")
        .expect("a task");
    assert_eq!(first.id, queued);
    assert!(
        store
            .finish(&s.id, &queued, TaskStatus::Finished, None, Timestamp::now())
            .expect("finish")
    );
    let again = q.enqueue("send", &json!([4])).expect("enqueue");
    let fetched = store
        .fetch(&s.id, &s.queues, Duration::ZERO)
        .expect("fetch")
        .expect("a task");
    assert_eq!(fetched.id, running);
    break_registry(&server);
    let before = snapshot(&mut c);
    for id in [&again, &scheduled] {
        match store.cancel_task(id) {
            Err(StoreError::WrongType { key, .. }) => assert!(key.ends_with(":canceled"), "{key}"),
            other => panic!("expected a wrong type, got {other:?}"),
        }
    }
    match store.finish_canceled(&s.id, &running, "canceled", Timestamp::now()) {
        Err(StoreError::WrongType { key, .. }) => assert!(key.ends_with(":canceled"), "{key}"),
        other => panic!("expected a wrong type, got {other:?}"),
    }
    assert_eq!(snapshot(&mut c), before);
    // Mended, the same calls go through: nothing was lost.
    mend_registry(&server);
    assert_eq!(
        store.cancel_task(&again).expect("cancel"),
        CancelResult::Canceled
    );
    assert_eq!(
        store.cancel_task(&scheduled).expect("cancel"),
        CancelResult::Canceled
    );
    assert!(
        store
            .finish_canceled(&s.id, &running, "canceled", Timestamp::now())
            .expect("finish")
    );
    assert_eq!(store.canceled().count().expect("count"), 3);
}

#[test]
fn maintenance_trims_old_entries_with_their_records() {
    let server = RedisServer::start();
    let store = server.store();
    let mut c = server.client();
    let q = store.queue("default");
    let s = slot(&server);
    let old = q.enqueue("send", &json!([1])).expect("enqueue");
    store
        .fetch(&s.id, &s.queues, Duration::ZERO)
        .expect("fetch")
        .expect("a task");
    let long_ago = Timestamp::now() - SignedDuration::from_hours(24 * 8);
    assert!(
        store
            .finish_canceled(&s.id, &old, "canceled", long_ago)
            .expect("finish")
    );
    let recent = q.enqueue("send", &json!([2])).expect("enqueue");
    assert_eq!(
        store.cancel_task(&recent).expect("cancel"),
        CancelResult::Canceled
    );
    let week = Duration::from_secs(604_800);
    assert_eq!(
        store
            .expire_registries(Timestamp::now(), week)
            .expect("expire"),
        1
    );
    assert!(matches!(store.task(&old), Err(StoreError::NotFound { .. })));
    assert_eq!(
        store.canceled().ids(0, 10).expect("ids"),
        vec![recent.clone()]
    );
    assert_eq!(
        store.task(&recent).expect("record").status,
        TaskStatus::Canceled
    );
    let before = snapshot(&mut c);
    assert_eq!(
        store
            .expire_registries(Timestamp::now(), week)
            .expect("again"),
        0
    );
    assert_eq!(snapshot(&mut c), before);
}

#[test]
fn the_filter_searches_the_canceled_registry() {
    let server = RedisServer::start();
    let store = server.store();
    let mut ids = Vec::new();
    for (queue, task) in [("mail", "send"), ("mail", "bounce"), ("other", "send")] {
        let id = store
            .queue(queue)
            .enqueue(task, &json!([]))
            .expect("enqueue");
        assert_eq!(
            store.cancel_task(&id).expect("cancel"),
            CancelResult::Canceled
        );
        ids.push(id);
    }
    let find = |filter: TaskFilter| {
        let mut found = store
            .matching(RegistryKind::Canceled, &filter)
            .expect("matching");
        found.sort();
        found
    };
    let mut sends = vec![ids[0].clone(), ids[2].clone()];
    sends.sort();
    assert_eq!(
        find(TaskFilter {
            task: Some("send".to_owned()),
            ..TaskFilter::default()
        }),
        sends
    );
    assert_eq!(
        find(TaskFilter {
            queue: Some("mail".to_owned()),
            task: Some("send".to_owned()),
            ..TaskFilter::default()
        }),
        [ids[0].clone()]
    );
}
