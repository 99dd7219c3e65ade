//! Worker slots: registration, heartbeats, dead slots, reclaiming their
//! tasks, supervisor ids, and locks.

use std::time::Duration;

use jiff::Timestamp;
use redis_tasks::store::SlotInfo;
use redis_tasks::{StoreError, TaskStatus};

use crate::support::{RedisServer, snapshot, wait_until};

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn slot(id: &str, supervisor: &str, at: Timestamp) -> SlotInfo {
    SlotInfo {
        id: id.to_owned(),
        description: format!("box.42/{id}"),
        queues: vec!["high".into(), "default".into()],
        supervisor: supervisor.to_owned(),
        host: "box".into(),
        pid: 42,
        started_at: at,
    }
}

#[test]
fn registered_slots_show_in_worker_infos() {
    let server = RedisServer::start();
    let store = server.store();
    let t0 = ts("2026-03-01T10:00:00Z");
    let before = Timestamp::now();
    store
        .register_slot(&slot("b", "sup1", t0))
        .expect("register b");
    store
        .register_slot(&slot("a", "sup1", t0))
        .expect("register a");
    let infos = store.worker_infos().expect("infos");
    assert_eq!(infos.len(), 2);
    let a = &infos[0];
    assert_eq!(a.id, "a");
    assert_eq!(a.description, "box.42/a");
    assert_eq!(a.queues, vec!["high", "default"]);
    assert_eq!(a.state, "idle");
    assert_eq!(a.current_task, None);
    assert_eq!(
        (a.supervisor.as_str(), a.host.as_str(), a.pid),
        ("sup1", "box", Some(42))
    );
    // The first heartbeat is the time of registration, not started_at: a
    // slot registered again after Redis lost its data must not look dead.
    assert_eq!(a.started_at, Some(t0));
    assert!(
        a.heartbeat_at.is_some_and(|h| h >= before),
        "{:?}",
        a.heartbeat_at
    );
    assert_eq!(store.slot_pid("a").expect("pid"), Some(42));
    assert_eq!(store.slot_pid("nobody").expect("pid"), None);
}

#[test]
fn heartbeats_move_scores_and_report_lost_hashes() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    let t0 = ts("2026-03-01T10:00:00Z");
    let t1 = ts("2026-03-01T10:00:10Z");
    store
        .register_slot(&slot("a", "sup", t0))
        .expect("register");
    store
        .register_slot(&slot("b", "sup", t0))
        .expect("register");
    redis::cmd("DEL")
        .arg(n.slot("b"))
        .exec(&mut c)
        .expect("del");
    let lost = store
        .heartbeat(&["a".to_owned(), "b".to_owned()], t1)
        .expect("heartbeat");
    assert_eq!(lost, vec!["b"]);
    let score: f64 = redis::cmd("ZSCORE")
        .arg(n.first().workers())
        .arg("a")
        .query(&mut c)
        .expect("zscore");
    assert_eq!(score, t1.as_second() as f64);
    let infos = store.worker_infos().expect("infos");
    assert_eq!(infos[0].heartbeat_at, Some(t1));
    assert!(store.heartbeat(&[], t1).expect("nothing").is_empty());
}

#[test]
fn dead_slots_are_those_with_old_heartbeats() {
    let server = RedisServer::start();
    let store = server.store();
    let t0 = ts("2026-03-01T10:00:00Z");
    store
        .register_slot(&slot("old", "sup", t0))
        .expect("register");
    store
        .register_slot(&slot("new", "sup", t0))
        .expect("register");
    store.heartbeat(&["old".to_owned()], t0).expect("heartbeat");
    store
        .heartbeat(&["new".to_owned()], ts("2026-03-01T10:00:50Z"))
        .expect("heartbeat");
    let now = ts("2026-03-01T10:01:00Z");
    let timeout = Duration::from_secs(60);
    assert_eq!(store.dead_slots(now, timeout).expect("dead"), vec!["old"]);
    assert!(
        store
            .dead_slots(ts("2026-03-01T10:00:59Z"), timeout)
            .expect("dead")
            .is_empty()
    );
}

#[test]
fn deregister_refuses_a_busy_slot() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    let t0 = Timestamp::now();
    store
        .register_slot(&slot("s", "sup", t0))
        .expect("register");
    let id = store.queue("default").enqueue("t", &()).expect("enqueue");
    store
        .fetch("s", &["default".to_owned()], Duration::ZERO)
        .expect("fetch")
        .expect("task");
    // Nothing changes where the slot is busy (on partitioned data it
    // leaves the partitions where it holds nothing).
    let busy = format!("{}:", n.home("default").prefix());
    let here = |c: &mut redis::Connection| {
        let mut all = snapshot(c);
        all.retain(|(key, _, _)| key.starts_with(&busy));
        all
    };
    let before = here(&mut c);
    assert!(matches!(
        store.deregister_slot("s"),
        Err(StoreError::SlotBusy { ids, .. }) if ids == vec![id.clone()]
    ));
    assert_eq!(here(&mut c), before);
    store
        .finish("s", &id, TaskStatus::Finished, None, t0)
        .expect("finish");
    store.deregister_slot("s").expect("deregister");
    assert!(store.worker_infos().expect("infos").is_empty());
    let n: u64 = redis::cmd("EXISTS")
        .arg(n.slot("s"))
        .query(&mut c)
        .expect("exists");
    assert_eq!(n, 0);
}

#[test]
fn supervisors_find_their_slots_and_their_previous_id() {
    let server = RedisServer::start();
    let store = server.store();
    let t0 = Timestamp::now();
    store
        .register_slot(&slot("a1", "sup-a", t0))
        .expect("register");
    store
        .register_slot(&slot("a2", "sup-a", t0))
        .expect("register");
    store
        .register_slot(&slot("b1", "sup-b", t0))
        .expect("register");
    let mut mine = store.slots_of_supervisor("sup-a").expect("slots");
    mine.sort();
    assert_eq!(mine, vec!["a1", "a2"]);
    assert!(
        store
            .slots_of_supervisor("nobody")
            .expect("slots")
            .is_empty()
    );
    assert_eq!(store.supervisor_id("box", "main").expect("get"), None);
    store
        .set_supervisor_id("box", "main", "sup-a")
        .expect("set");
    assert_eq!(
        store.supervisor_id("box", "main").expect("get").as_deref(),
        Some("sup-a")
    );
    assert_eq!(store.supervisor_id("box", "other").expect("get"), None);
}

#[test]
fn reclaim_requeues_unstarted_tasks_at_the_front_and_returns_running_ones() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    let t0 = ts("2026-03-01T10:00:00Z");
    let now = ts("2026-03-01T10:05:00Z");
    store
        .register_slot(&slot("dead", "sup", t0))
        .expect("register");
    store
        .register_slot(&slot("dead2", "sup", t0))
        .expect("register");
    store
        .heartbeat(&["dead".to_owned(), "dead2".to_owned()], t0)
        .expect("heartbeat");
    let q = store.queue("default");
    let running = q.enqueue("t", &1).expect("running");
    let unstarted = q.enqueue("t", &2).expect("unstarted");
    let waiting = q.enqueue("t", &3).expect("waiting");
    store
        .fetch("dead", &["default".to_owned()], Duration::ZERO)
        .expect("fetch")
        .expect("task");
    // The first half of a blocking fetch: moved, not started yet.
    redis::cmd("LMOVE")
        .arg(n.queue("default"))
        .arg(n.slot_list("default", "dead2"))
        .arg("LEFT")
        .arg("RIGHT")
        .exec(&mut c)
        .expect("lmove");

    let r = store.reclaim_slot("dead", now).expect("reclaim");
    assert_eq!((r.requeued, r.running), (vec![], vec![running.clone()]));
    let r = store.reclaim_slot("dead2", now).expect("reclaim");
    assert_eq!((r.requeued, r.running), (vec![unstarted.clone()], vec![]));
    assert_eq!(q.ids(0, 10).expect("ids"), vec![unstarted, waiting]);
    assert_eq!(n.held("dead"), vec![running.clone()]);
    // The caller records the outcome with the dead slot's id, then removes
    // the slot.
    assert!(
        store
            .finish(
                "dead",
                &running,
                TaskStatus::Failed,
                Some("worker died"),
                now
            )
            .expect("finish")
    );
    let rec = store.task(&running).expect("task");
    assert_eq!(rec.error.as_deref(), Some("worker died"));
    store.deregister_slot("dead").expect("deregister");
    store.deregister_slot("dead2").expect("deregister");
    assert!(store.worker_infos().expect("infos").is_empty());
    assert!(n.held("dead").is_empty());
    let found: u64 = redis::cmd("EXISTS")
        .arg(n.slot("dead"))
        .arg(n.slot("dead2"))
        .query(&mut c)
        .expect("exists");
    assert_eq!(found, 0);
}

#[test]
fn a_slot_that_heartbeats_after_now_is_not_reclaimed() {
    let server = RedisServer::start();
    let store = server.store();
    let mut c = server.client();
    let t0 = ts("2026-03-01T10:00:00Z");
    store
        .register_slot(&slot("slow", "sup", t0))
        .expect("register");
    store.queue("default").enqueue("t", &()).expect("enqueue");
    store
        .fetch("slow", &["default".to_owned()], Duration::ZERO)
        .expect("fetch")
        .expect("task");
    store
        .heartbeat(&["slow".to_owned()], ts("2026-03-01T10:02:00Z"))
        .expect("heartbeat");
    let before = snapshot(&mut c);
    let r = store
        .reclaim_slot("slow", ts("2026-03-01T10:01:00Z"))
        .expect("reclaim");
    assert_eq!(r, Default::default());
    assert_eq!(snapshot(&mut c), before);
}

#[test]
fn locks_have_one_owner_and_expire() {
    let server = RedisServer::start();
    let store = server.store();
    let long = Duration::from_secs(60);
    assert!(store.try_lock("maintenance", "me", long).expect("lock"));
    assert!(!store.try_lock("maintenance", "you", long).expect("lock"));
    assert!(store.try_lock("maintenance", "me", long).expect("extend"));
    assert!(!store.release_lock("maintenance", "you").expect("release"));
    assert!(
        !store
            .try_lock("maintenance", "you", long)
            .expect("still mine")
    );
    assert!(store.release_lock("maintenance", "me").expect("release"));
    assert!(
        store
            .try_lock("maintenance", "you", Duration::from_millis(50))
            .expect("lock")
    );
    wait_until("the lock to expire", Duration::from_secs(20), || {
        store.try_lock("maintenance", "me", long).expect("lock")
    });
    assert!(
        store
            .try_lock("scheduler", "you", long)
            .expect("other lock")
    );
}
