//! `dead_worker_ttl`: a dead slot, once recovered, leaves the live slots but
//! stays visible (state `dead`) for that long, then maintenance forgets it.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use redis_tasks::StoreError;
use redis_tasks::store::SlotInfo;

use crate::support::{Cmd, RedisServer};

fn slot(id: &str, at: Timestamp) -> SlotInfo {
    SlotInfo {
        id: id.to_owned(),
        description: format!("box.42/{id}"),
        queues: vec!["default".into()],
        supervisor: "sup1".into(),
        host: "box".into(),
        pid: 42,
        started_at: at,
    }
}

#[test]
fn a_buried_slot_shows_as_dead_for_its_ttl_then_is_forgotten() {
    let server = RedisServer::start();
    let store = server.store();
    // Registration heartbeats with the real clock.
    let t0 = Timestamp::now();
    store.register_slot(&slot("gone", t0)).expect("register");
    store.register_slot(&slot("alive", t0)).expect("register");
    let ttl = Duration::from_secs(3600);
    let died = t0 + SignedDuration::from_secs(120);
    store.reclaim_slot("gone", died).expect("reclaim");
    store.bury_slot("gone", died, ttl).expect("bury");

    // No longer live: maintenance will not find it dead again.
    let dead = store
        .dead_slots(
            died + SignedDuration::from_secs(600),
            Duration::from_secs(60),
        )
        .expect("dead slots");
    assert_eq!(dead, ["alive"]);
    let infos = store.worker_infos().expect("infos");
    let states: Vec<(&str, &str)> = infos
        .iter()
        .map(|w| (w.id.as_str(), w.state.as_str()))
        .collect();
    assert_eq!(states, [("alive", "idle"), ("gone", "dead")]);
    let out = Cmd::admin(&server.url()).args(["info", "--json"]).stdout();
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    let shown: Vec<&str> = json["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .filter(|w| w["state"] == "dead")
        .filter_map(|w| w["id"].as_str())
        .collect();
    assert_eq!(shown, ["gone"]);

    // Within the ttl maintenance keeps it; after it, it is forgotten.
    let within = died + SignedDuration::from_secs(3599);
    assert_eq!(store.expire_dead_slots(within, ttl).expect("expire"), 0);
    let after = died + SignedDuration::from_secs(3601);
    assert_eq!(store.expire_dead_slots(after, ttl).expect("expire"), 1);
    let ids: Vec<String> = store
        .worker_infos()
        .expect("infos")
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(ids, ["alive"]);
}

#[test]
fn a_slot_that_still_holds_a_task_is_not_buried() {
    let server = RedisServer::start();
    let store = server.store();
    let t0 = Timestamp::now();
    let id = store
        .queue("default")
        .enqueue("t", &serde_json::json!(null))
        .expect("enqueue");
    store.register_slot(&slot("s", t0)).expect("register");
    store
        .fetch("s", &["default".to_owned()], Duration::ZERO)
        .expect("fetch")
        .expect("a task");
    match store.bury_slot("s", t0, Duration::from_secs(60)) {
        Err(StoreError::SlotBusy { ids, .. }) => assert_eq!(ids, [id]),
        other => panic!("expected SlotBusy, got {other:?}"),
    }
}
