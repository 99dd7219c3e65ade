//! A busy slot's one round trip: `Store::finish_and_fetch` records a
//! task's end and takes the slot's next task in one script call, fenced
//! like `finish`, and a key of the wrong type on that path (met by the
//! commands themselves, without `TYPE` calls) is named with nothing
//! changed.

use std::time::Duration;

use jiff::Timestamp;
use redis_tasks::store::SlotInfo;
use redis_tasks::{StoreError, TaskStatus};

use crate::support::{RedisServer, snapshot};

fn queues(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn slot(id: &str) -> SlotInfo {
    SlotInfo {
        id: id.into(),
        description: "host.1/1".into(),
        queues: queues(&["q"]),
        supervisor: "sup".into(),
        host: "host".into(),
        pid: 1,
        started_at: Timestamp::now(),
    }
}

fn field(c: &mut redis::Connection, key: &str, f: &str) -> Option<String> {
    redis::cmd("HGET").arg(key).arg(f).query(c).expect("hget")
}

#[test]
fn finishing_takes_the_next_task_in_the_same_call() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    store.register_slot(&slot("s1")).expect("register");
    let q = queues(&["q"]);
    let a = store.queue("q").enqueue("t", &1).expect("a");
    let b = store.queue("q").enqueue("t", &2).expect("b");
    let first = store
        .fetch("s1", &q, Duration::ZERO)
        .expect("fetch")
        .expect("a task");
    assert_eq!(first.id, a);

    let (done, next) = store
        .finish_and_fetch(
            &first.lease,
            TaskStatus::Finished,
            None,
            Some("42"),
            &q,
            Timestamp::now(),
        )
        .expect("finish and fetch");
    assert!(done);
    let next = next.expect("the next task came with the reply");
    assert_eq!(next.id, b);
    assert_eq!(next.lease.queue, "q");
    let rec = store.task(&a).expect("a");
    assert_eq!(rec.status, TaskStatus::Finished);
    assert_eq!(rec.result, Some(serde_json::json!(42)));
    assert_eq!(store.finished().count().expect("count"), 1);
    assert_eq!(n.held("s1"), vec![b.clone()]);
    assert_eq!(store.task(&b).expect("b").status, TaskStatus::Running);
    assert_eq!(
        field(&mut c, &n.slot_in("q", "s1"), "state").as_deref(),
        Some("busy")
    );
    assert_eq!(
        field(&mut c, &n.slot_in("q", "s1"), "current_task"),
        Some(b.clone())
    );

    // Nothing left: the end is recorded and the slot goes idle.
    let (done, none) = store
        .finish_and_fetch(
            &next.lease,
            TaskStatus::Failed,
            Some("boom"),
            None,
            &q,
            Timestamp::now(),
        )
        .expect("finish, nothing next");
    assert!(done);
    assert!(none.is_none());
    let rec = store.task(&b).expect("b");
    assert_eq!(rec.status, TaskStatus::Failed);
    assert_eq!(rec.error.as_deref(), Some("boom"));
    assert!(n.held("s1").is_empty());
    assert_eq!(
        field(&mut c, &n.slot_in("q", "s1"), "state").as_deref(),
        Some("idle")
    );

    // Fenced: a slot that no longer holds the task changes nothing and
    // takes nothing, even with work waiting.
    store.queue("q").enqueue("t", &3).expect("c");
    let before = snapshot(&mut c);
    let (done, none) = store
        .finish_and_fetch(
            &next.lease,
            TaskStatus::Finished,
            None,
            None,
            &q,
            Timestamp::now(),
        )
        .expect("fenced");
    assert!(!done);
    assert!(none.is_none());
    assert_eq!(snapshot(&mut c), before);
}

#[test]
fn a_registry_of_the_wrong_type_is_named_and_nothing_changes() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    store.register_slot(&slot("s1")).expect("register");
    let q = queues(&["q"]);
    store.queue("q").enqueue("t", &1).expect("a");
    store.queue("q").enqueue("t", &2).expect("b");
    let first = store
        .fetch("s1", &q, Duration::ZERO)
        .expect("fetch")
        .expect("a task");
    let finished = n.home("q").finished();
    redis::cmd("SET")
        .arg(&finished)
        .arg("x")
        .exec(&mut c)
        .expect("set");
    let before = snapshot(&mut c);
    // The registry is written after the fence: the fence is undone.
    let err = store
        .finish_and_fetch(
            &first.lease,
            TaskStatus::Finished,
            None,
            None,
            &q,
            Timestamp::now(),
        )
        .expect_err("wrong type");
    assert!(
        matches!(&err, StoreError::WrongType { key, .. } if *key == finished),
        "{err}"
    );
    assert_eq!(snapshot(&mut c), before);
    let err = store
        .finish(
            "s1",
            &first.id,
            TaskStatus::Finished,
            None,
            Timestamp::now(),
        )
        .expect_err("wrong type");
    assert!(
        matches!(&err, StoreError::WrongType { key, .. } if *key == finished),
        "{err}"
    );
    assert_eq!(snapshot(&mut c), before);

    // The worker hash and the record: met by their first command, before
    // any write.
    redis::cmd("DEL").arg(&finished).exec(&mut c).expect("del");
    for (key, value) in [(n.slot_in("q", "s1"), "x"), (n.task("q", &first.id), "y")] {
        let mut saved: Vec<u8> = redis::cmd("DUMP").arg(&key).query(&mut c).expect("dump");
        redis::cmd("DEL").arg(&key).exec(&mut c).expect("del");
        redis::cmd("SET")
            .arg(&key)
            .arg(value)
            .exec(&mut c)
            .expect("set");
        let before = snapshot(&mut c);
        let err = store
            .finish_and_fetch(
                &first.lease,
                TaskStatus::Finished,
                None,
                None,
                &q,
                Timestamp::now(),
            )
            .expect_err("wrong type");
        assert!(
            matches!(&err, StoreError::WrongType { key: k, .. } if *k == key),
            "{err}"
        );
        assert_eq!(snapshot(&mut c), before);
        redis::cmd("DEL").arg(&key).exec(&mut c).expect("del");
        redis::cmd("RESTORE")
            .arg(&key)
            .arg(0)
            .arg(std::mem::take(&mut saved))
            .exec(&mut c)
            .expect("restore");
    }
    let (done, next) = store
        .finish_and_fetch(
            &first.lease,
            TaskStatus::Finished,
            None,
            None,
            &q,
            Timestamp::now(),
        )
        .expect("all mended");
    assert!(done);
    assert!(next.is_some());
}
