//! A supervisor killed with SIGKILL loses nothing: its restart recovers its
//! tasks at once, and otherwise another supervisor's maintenance does once
//! its heartbeats stop.

use std::time::Duration;

use nix::sys::signal::Signal;
use redis_tasks::protocol::TaskStatus;
use serde_json::json;

use super::{Demo, children_of, error_of, is_gone};
use crate::support::wait_until;

#[test]
fn a_restart_recovers_the_previous_incarnations_tasks_at_once() {
    let demo = Demo::new();
    let plain = demo.enqueue("sleep", json!({"secs": 600}));
    let reentrant = demo.enqueue("reentrant_sleep", json!({"secs": 600}));
    // Heartbeat timeout far away: only the restart itself can recover.
    let env = [("RT_WORKER_HEARTBEAT_TIMEOUT", "3600")];
    let mut first = demo.start(&["--concurrency", "2", "--instance", "box1"], &env);
    demo.wait_status(&plain, TaskStatus::Running, Duration::from_secs(30));
    demo.wait_status(&reentrant, TaskStatus::Running, Duration::from_secs(30));
    let mut workers = Vec::new();
    wait_until("two worker processes", Duration::from_secs(60), || {
        workers = children_of(first.pid());
        workers.len() == 2
    });
    first.signal(Signal::SIGKILL);
    first.wait_exit(Duration::from_secs(60));
    // Worker processes die with their supervisor.
    for pid in &workers {
        wait_until(
            &format!("worker process {pid} to die"),
            Duration::from_secs(60),
            || is_gone(*pid),
        );
    }
    assert_eq!(demo.task(&plain).status, TaskStatus::Running);

    let mut second = demo.start(&["--concurrency", "1", "--instance", "box1"], &env);
    let t = demo.wait_ended(&plain, Duration::from_secs(30));
    assert_eq!(error_of(&t), "worker died");
    assert_eq!(demo.outcomes_of(&plain).len(), 1);
    // The reentrant task went back to the front of its queue and runs again.
    wait_until(
        "the reentrant task to run again",
        Duration::from_secs(30),
        || {
            demo.store
                .task(&reentrant)
                .is_ok_and(|t| t.status == TaskStatus::Running && t.aborted_runs.len() == 1)
        },
    );
    assert_eq!(demo.task(&reentrant).aborted_runs[0].reason, "worker died");
    assert!(demo.outcomes_of(&reentrant).is_empty());
    second.stop();
}

#[test]
fn another_supervisors_maintenance_recovers_a_dead_ones_tasks() {
    let demo = Demo::new();
    let id = demo.enqueue("sleep", json!({"secs": 600}));
    let mut first = demo.start(&["--concurrency", "1", "--instance", "a"], &[]);
    demo.wait_status(&id, TaskStatus::Running, Duration::from_secs(30));
    first.signal(Signal::SIGKILL);
    first.wait_exit(Duration::from_secs(60));

    // A supervisor on other queues, idle all along: its maintenance timer
    // still runs and finds the dead slot once the heartbeat is 3 s old.
    let mut other = demo.start(&["--concurrency", "1", "--instance", "b", "elsewhere"], &[]);
    let t = demo.wait_ended(&id, Duration::from_secs(60));
    assert_eq!(error_of(&t), "worker died");
    assert_eq!(demo.outcomes_of(&id).len(), 1);
    // Only the live supervisor's slot remains live; the dead one stays
    // visible as dead (dead_worker_ttl).
    wait_until(
        "the dead slot to be buried",
        Duration::from_secs(60),
        || {
            let workers = demo.store.worker_infos().expect("workers");
            let dead = workers.iter().filter(|w| w.state == "dead").count();
            dead == 1 && workers.len() == 2
        },
    );
    other.stop();
}
