//! Redis going away and coming back: nothing is lost, the supervisor says
//! so in its log and carries on.

use std::fs;
use std::time::Duration;

use redis_tasks::protocol::TaskStatus;
use serde_json::json;

use super::Demo;
use crate::support::wait_until;

#[test]
fn an_outcome_reached_while_redis_is_down_is_recorded_when_it_returns() {
    let mut demo = Demo::new();
    // The task ends when the gate file appears, not on a clock: it must
    // end while Redis is down, however long stopping Redis takes.
    let gate = demo.path("gate");
    let id = demo.enqueue("wait_for_file", json!({ "path": gate }));
    let mut sup = demo.start(&["--concurrency", "1"], &[]);
    demo.wait_status(&id, TaskStatus::Running, Duration::from_secs(30));
    demo.redis.stop_keeping_data();
    fs::write(&gate, "").expect("gate");
    // The task ends while Redis is down; the slot retries with backoff.
    wait_until(
        "the slot to retry recording",
        Duration::from_secs(60),
        || sup.log().contains("cannot record an outcome"),
    );
    demo.redis.start_again();
    let t = demo.wait_status(&id, TaskStatus::Finished, Duration::from_secs(60));
    assert!(t.error.is_none());
    assert_eq!(demo.outcomes_of(&id).len(), 1);
    // And it keeps serving.
    let next = demo.enqueue("noop", json!(null));
    demo.wait_status(&next, TaskStatus::Finished, Duration::from_secs(60));
    sup.stop();
}

#[test]
fn slots_register_again_after_redis_lost_its_data() {
    let demo = Demo::new();
    let mut sup = demo.start(&["--concurrency", "2"], &[]);
    wait_until("two registered slots", Duration::from_secs(30), || {
        demo.store.worker_infos().is_ok_and(|w| w.len() == 2)
    });
    let mut conn = demo.redis.client();
    let _: () = redis::cmd("FLUSHALL").query(&mut conn).expect("FLUSHALL");
    wait_until(
        "the slots to register again",
        Duration::from_secs(30),
        || demo.store.worker_infos().is_ok_and(|w| w.len() == 2),
    );
    let id = demo.enqueue("noop", json!(null));
    demo.wait_status(&id, TaskStatus::Finished, Duration::from_secs(30));
    sup.stop();
}
