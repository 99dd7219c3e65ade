//! Bad data under our prefix holds up a task, never strands it: with a
//! registry key briefly of the wrong type, a finishing task's outcome waits
//! in its slot, and is recorded once the key is mended; the slot then
//! fetches again, without a restart. And a normal stop says nothing
//! alarming about the fork server it ends.

use std::fs;
use std::time::Duration;

use redis_tasks::TaskStatus;
use serde_json::json;

use super::Demo;
use crate::support::wait_until;

#[test]
fn a_wrong_type_registry_key_delays_an_outcome_until_it_is_mended() {
    let demo = Demo::new();
    let gate = demo.path("gate");
    let id = demo.enqueue("wait_for_file", json!({ "path": gate }));
    let mut sup = demo.start(&["--concurrency", "1"], &[]);
    demo.wait_status(&id, TaskStatus::Running, Duration::from_secs(60));

    let mut redis = demo.redis.client();
    let finished = format!("{}:finished", demo.store.prefix());
    redis::cmd("SET")
        .arg(&finished)
        .arg("not a sorted set")
        .query::<()>(&mut redis)
        .expect("break the registry key");
    fs::write(&gate, "").expect("gate");
    wait_until(
        "the slot to retry recording the outcome",
        Duration::from_secs(60),
        || sup.log().contains("cannot record an outcome"),
    );
    // The outcome waits; the task is not lost, nor given up.
    assert_eq!(demo.task(&id).status, TaskStatus::Running);

    redis::cmd("DEL")
        .arg(&finished)
        .query::<()>(&mut redis)
        .expect("mend the registry key");
    let t = demo.wait_ended(&id, Duration::from_secs(60));
    assert_eq!(t.status, TaskStatus::Finished, "{}", sup.log());
    // The same slot takes new work.
    let next = demo.enqueue("noop", json!(null));
    let t = demo.wait_ended(&next, Duration::from_secs(60));
    assert_eq!(t.status, TaskStatus::Finished, "{}", sup.log());
    sup.stop();
}

#[test]
fn a_normal_stop_does_not_warn_about_the_fork_server() {
    let demo = Demo::new();
    let id = demo.enqueue("noop", json!(null));
    let mut sup = demo.start(&["--concurrency", "1", "--max-tasks-per-child", "1"], &[]);
    demo.wait_ended(&id, Duration::from_secs(60));
    sup.stop();
    let log = sup.log();
    assert!(log.contains("supervisor stopped"), "{log}");
    assert!(!log.contains("fork server ended"), "{log}");
}
