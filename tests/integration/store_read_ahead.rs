//! A busy slot reads its next task ahead: `Store::fetch_ahead` and
//! `Store::conclude_and_fetch_beside` take a task while the slot's list
//! holds the one running (and nothing else), the slot's hash goes on
//! naming the running one, nothing is read ahead under flow settings, and
//! a task read ahead goes back to its queue unstarted, or ends canceled
//! when its cancel was asked while it waited.

use std::time::Duration;

use jiff::Timestamp;
use redis_tasks::store::{CancelResult, Ending, Fetched, Limit, SlotInfo};
use redis_tasks::{StoreError, TaskStatus};

use crate::support::RedisServer;

fn queues() -> Vec<String> {
    vec!["q".to_owned()]
}

fn slot(id: &str) -> SlotInfo {
    SlotInfo {
        id: id.into(),
        description: "host.1/1".into(),
        queues: queues(),
        supervisor: "sup".into(),
        host: "host".into(),
        pid: 1,
        started_at: Timestamp::now(),
    }
}

fn current_task(c: &mut redis::Connection, key: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg(key)
        .arg("current_task")
        .query(c)
        .expect("hget")
}

fn finished() -> Ending<'static> {
    Ending::Finished {
        result: None,
        children: &[],
    }
}

/// Slot `s1`, registered, with `n` tasks enqueued on `q` and the first
/// of them fetched: the ids in order, and the running one.
fn running_slot(store: &redis_tasks::Store, n: usize) -> (Vec<String>, Fetched) {
    store.register_slot(&slot("s1")).expect("register");
    let ids: Vec<String> = (0..n)
        .map(|i| store.queue("q").enqueue("t", &i).expect("enqueue"))
        .collect();
    let first = store
        .fetch("s1", &queues(), Duration::ZERO)
        .expect("fetch")
        .expect("the first task");
    assert_eq!(first.id, ids[0]);
    (ids, first)
}

#[test]
fn a_running_slot_takes_its_next_task_ahead_and_the_one_after_with_the_end() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    let q = queues();
    let (ids, a) = running_slot(&store, 4);

    let b = store
        .fetch_ahead(&a.lease, &q)
        .expect("read ahead")
        .expect("b");
    assert_eq!(b.id, ids[1]);
    assert_eq!(n.held("s1"), vec![ids[0].clone(), ids[1].clone()]);
    assert_eq!(store.task(&b.id).expect("b").status, TaskStatus::Running);
    // The hash names the task that runs, not the one waiting.
    assert_eq!(
        current_task(&mut c, &n.slot_in("q", "s1")),
        Some(ids[0].clone())
    );

    // `a` ends while `b` runs: the task after `b` is taken ahead.
    let (done, after) = store
        .conclude_and_fetch_beside(&a.lease, finished(), &q, &b.id, Timestamp::now())
        .expect("end beside b");
    assert!(done);
    let after = after.expect("the task after b");
    assert_eq!(after.id, ids[2]);
    assert_eq!(store.task(&ids[0]).expect("a").status, TaskStatus::Finished);
    assert_eq!(n.held("s1"), vec![ids[1].clone(), ids[2].clone()]);
    assert_eq!(
        current_task(&mut c, &n.slot_in("q", "s1")),
        Some(ids[1].clone())
    );

    // Two held: nothing more is taken, ahead or not.
    assert!(matches!(
        store.fetch_ahead(&b.lease, &q),
        Err(StoreError::SlotBusy { .. })
    ));
    assert!(matches!(
        store.fetch("s1", &q, Duration::ZERO),
        Err(StoreError::SlotBusy { .. })
    ));
    assert_eq!(store.queue("q").count().expect("count"), 1);
}

#[test]
fn nothing_is_read_ahead_from_a_queue_under_flow_settings() {
    let server = RedisServer::start();
    let store = server.store();
    store.register_slot(&slot("s1")).expect("register");
    store
        .limit_queue("q", Limit::Concurrency(5))
        .expect("limit");
    let q = queues();
    for i in 0..3 {
        store.queue("q").enqueue("t", &i).expect("enqueue");
    }
    let a = store
        .fetch("s1", &q, Duration::ZERO)
        .expect("fetch")
        .expect("a");
    // A task waiting in a supervisor would hold one of the permits.
    assert!(store.fetch_ahead(&a.lease, &q).expect("ahead").is_none());
    assert_eq!(store.queue("q").count().expect("count"), 2);
}

#[test]
fn a_task_read_ahead_goes_back_unstarted_or_ends_canceled_if_asked() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    let q = queues();
    let (ids, a) = running_slot(&store, 3);
    let b = store.fetch_ahead(&a.lease, &q).expect("ahead").expect("b");

    // Handed back: at the front of its queue, queued, no aborted run;
    // the slot still runs `a`.
    assert!(
        store
            .release_unstarted("s1", &b.id, Timestamp::now())
            .expect("release")
    );
    let rec = store.task(&b.id).expect("b");
    assert_eq!(rec.status, TaskStatus::Queued);
    assert!(rec.started_at.is_none());
    assert!(rec.aborted_runs.is_empty());
    assert_eq!(
        store.queue("q").ids(0, 10).expect("ids"),
        vec![ids[1].clone(), ids[2].clone()]
    );
    assert_eq!(n.held("s1"), vec![ids[0].clone()]);
    assert_eq!(
        current_task(&mut c, &n.slot_in("q", "s1")),
        Some(ids[0].clone())
    );

    // Read ahead again, and canceled while it waits (it reads as
    // running): handing it back ends it canceled instead.
    let b = store
        .fetch_ahead(&a.lease, &q)
        .expect("ahead")
        .expect("b again");
    assert_eq!(b.id, ids[1]);
    assert!(matches!(
        store.cancel_task(&b.id).expect("cancel"),
        CancelResult::Requested
    ));
    assert!(
        store
            .release_unstarted("s1", &b.id, Timestamp::now())
            .expect("release")
    );
    assert_eq!(store.task(&b.id).expect("b").status, TaskStatus::Canceled);
    assert_eq!(
        store.queue("q").ids(0, 10).expect("ids"),
        vec![ids[2].clone()]
    );
    assert_eq!(n.held("s1"), vec![ids[0].clone()]);
    assert!(store.cancel_requests().expect("requests").is_empty());
}
