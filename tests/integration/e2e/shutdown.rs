//! Graceful and immediate shutdown: every running task ends with a recorded
//! outcome, reentrant ones go back to the front of their queue.

use std::time::Duration;

use nix::sys::signal::Signal;
use redis_tasks::protocol::TaskStatus;
use serde_json::json;

use super::{Demo, error_of};

#[test]
fn sigterm_fails_plain_tasks_and_requeues_reentrant_ones_at_the_front() {
    let demo = Demo::new();
    let plain = demo.enqueue("sleep", json!({"secs": 600}));
    let reentrant = demo.enqueue("reentrant_sleep", json!({"secs": 600}));
    let mut sup = demo.start(&["--concurrency", "2"], &[]);
    demo.wait_status(&plain, TaskStatus::Running, Duration::from_secs(30));
    demo.wait_status(&reentrant, TaskStatus::Running, Duration::from_secs(30));
    // Something else waits in the queue behind them.
    let waiting = demo.enqueue("noop", json!(null));

    sup.stop();

    assert_eq!(error_of(&demo.task(&plain)), "worker shutdown");
    let t = demo.task(&reentrant);
    assert_eq!(t.status, TaskStatus::Queued);
    assert_eq!(t.aborted_runs.len(), 1);
    assert_eq!(t.aborted_runs[0].reason, "worker shutdown");
    assert!(t.aborted_runs[0].started_at.is_some());
    assert_eq!(
        demo.queue_ids("default"),
        [reentrant.clone(), waiting.clone()]
    );
    // process_outcome saw the failure, not the requeue.
    assert_eq!(demo.outcomes_of(&plain).len(), 1);
    assert!(demo.outcomes_of(&reentrant).is_empty());
    // The supervisor deregistered its slots.
    assert!(demo.store.worker_infos().expect("workers").is_empty());
}

#[test]
fn a_postpone_shutdown_guard_lets_the_task_finish() {
    let demo = Demo::new();
    let id = demo.enqueue("guarded_sleep", json!({"secs": 2}));
    let mut sup = demo.start(&["--concurrency", "1"], &[]);
    wait_guarded(&demo, &id);
    sup.stop();
    let t = demo.task(&id);
    assert_eq!(t.status, TaskStatus::Finished, "{t:#?}");
    assert_eq!(demo.outcomes_of(&id)[0]["outcome"], "success");
}

#[test]
fn a_second_sigterm_kills_at_once_and_still_records() {
    let demo = Demo::new();
    let id = demo.enqueue("guarded_sleep", json!({"secs": 600}));
    let mut sup = demo.start(&["--concurrency", "1"], &[]);
    wait_guarded(&demo, &id);
    sup.signal(Signal::SIGTERM);
    // The guard holds the first request back; the second one does not wait.
    super::super::support::wait_until(
        "the first request to be logged",
        Duration::from_secs(60),
        || sup.log().contains("graceful shutdown"),
    );
    sup.stop();
    assert_eq!(error_of(&demo.task(&id)), "worker shutdown");
    assert_eq!(demo.outcomes_of(&id).len(), 1);
}

/// Waits until the task holds its postpone-shutdown guard.
fn wait_guarded(demo: &Demo, id: &str) {
    super::super::support::wait_until(
        "the task to hold its guard",
        Duration::from_secs(30),
        || {
            demo.store
                .task(id)
                .is_ok_and(|t| t.meta.get("guarded") == Some(&json!(true)))
        },
    );
}
