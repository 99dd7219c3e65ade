//! A busy slot reads its next task ahead while the current one runs
//! (docs/performance.md): a task read ahead behind a slow one goes back to
//! its queue, one canceled while it waits never runs, and one its
//! supervisor dies with is recovered like the running one.

use std::time::Duration;

use nix::sys::signal::Signal;
use redis_tasks::TaskStatus;
use redis_tasks::store::CancelResult;
use serde_json::json;

use super::{Demo, error_of};
use crate::support::wait_until;

/// Enqueues a quick task, one that runs until `gate` exists, and `then`:
/// a supervisor started afterwards takes the slow one with the quick
/// one's end, so it reads `then` ahead while the slow one runs.
fn quick_slow_then(demo: &Demo, gate: &str, then: (&str, serde_json::Value)) -> (String, String) {
    demo.enqueue("pid", json!({}));
    let slow = demo.enqueue("wait_for_file", json!({"path": demo.path(gate)}));
    let then = demo.enqueue(then.0, then.1);
    (slow, then)
}

#[test]
fn a_task_read_ahead_behind_a_slow_one_goes_back_to_its_queue() {
    let demo = Demo::new();
    let (slow, next) = quick_slow_then(&demo, "gate", ("pid", json!({})));
    let mut running = demo.start(&["--concurrency", "1"], &[]);
    demo.wait_status(&slow, TaskStatus::Running, Duration::from_secs(30));
    // Held by a slot busy with a slow task it would wait for nothing: it
    // is queued again, for any slot to take.
    wait_until(
        "the task read ahead to be queued again",
        Duration::from_secs(30),
        || {
            demo.task(&next).status == TaskStatus::Queued
                && demo.queue_ids("default") == [next.clone()]
        },
    );
    std::fs::write(demo.path("gate"), "").expect("open the gate");
    let slow = demo.wait_ended(&slow, Duration::from_secs(30));
    let next = demo.wait_ended(&next, Duration::from_secs(30));
    assert_eq!(next.status, TaskStatus::Finished, "{next:#?}");
    assert!(next.aborted_runs.is_empty(), "{next:#?}");
    // Its start is its real one, after the slow task, not its fetch.
    assert!(
        next.started_at >= slow.ended_at,
        "{next:#?}\n{slow:#?}\n{}",
        running.log()
    );
    running.stop();
}

#[test]
fn a_task_canceled_while_read_ahead_never_runs() {
    let demo = Demo::new();
    let marker = demo.path("victim.ran");
    let args = json!({"path": marker, "text": "ran"});
    let (slow, victim) = quick_slow_then(&demo, "gate", ("write_file", args));
    // The task read ahead waits as long as the slow task runs.
    let mut running = demo.start(
        &["--concurrency", "1"],
        &[("REDIS_TASKS_TEST_READ_AHEAD_WAIT_MS", "600000")],
    );
    demo.wait_status(&slow, TaskStatus::Running, Duration::from_secs(30));
    // Read ahead, it reads as running: its supervisor is asked.
    demo.wait_status(&victim, TaskStatus::Running, Duration::from_secs(30));
    let asked = demo.store.cancel_task(&victim).expect("cancel");
    assert!(matches!(asked, CancelResult::Requested), "{asked:?}");
    let t = demo.wait_status(&victim, TaskStatus::Canceled, Duration::from_secs(30));
    assert_eq!(
        t.error.as_deref(),
        Some("canceled before it started"),
        "{t:#?}"
    );
    assert_eq!(demo.task(&slow).status, TaskStatus::Running);
    std::fs::write(demo.path("gate"), "").expect("open the gate");
    let slow = demo.wait_ended(&slow, Duration::from_secs(30));
    assert_eq!(slow.status, TaskStatus::Finished, "{slow:#?}");
    // The slot goes on, and the canceled task never ran.
    let after = demo.enqueue("pid", json!({}));
    let after = demo.wait_ended(&after, Duration::from_secs(30));
    assert_eq!(after.status, TaskStatus::Finished, "{after:#?}");
    assert!(!marker.exists(), "the canceled task ran\n{}", running.log());
    assert_eq!(demo.task(&victim).status, TaskStatus::Canceled);
    running.stop();
}

#[test]
fn a_supervisor_killed_while_a_task_waits_read_ahead_loses_neither() {
    let demo = Demo::new();
    let marks = demo.path("marks");
    let (slow, waiting) = quick_slow_then(
        &demo,
        "gate",
        ("reentrant_mark", json!({"path": marks, "secs": 0})),
    );
    let env = [
        ("REDIS_TASKS_TEST_READ_AHEAD_WAIT_MS", "600000"),
        ("RT_WORKER_HEARTBEAT_TIMEOUT", "3600"),
    ];
    let mut first = demo.start(&["--concurrency", "1", "--instance", "box1"], &env);
    demo.wait_status(&slow, TaskStatus::Running, Duration::from_secs(30));
    demo.wait_status(&waiting, TaskStatus::Running, Duration::from_secs(30));
    first.signal(Signal::SIGKILL);
    first.wait_exit(Duration::from_secs(60));

    // The restart recovers both: the slow task (plain) as an interrupted
    // run, and the one read ahead (reentrant) back at the front of its
    // queue, run once, for good.
    std::fs::write(demo.path("gate"), "").expect("open the gate");
    let mut second = demo.start(&["--concurrency", "1", "--instance", "box1"], &[]);
    let t = demo.wait_ended(&slow, Duration::from_secs(30));
    assert_eq!(error_of(&t), "worker died", "{t:#?}");
    let t = demo.wait_ended(&waiting, Duration::from_secs(30));
    assert_eq!(t.status, TaskStatus::Finished, "{t:#?}\n{}", second.log());
    let ran = std::fs::read_to_string(&marks).unwrap_or_default();
    assert_eq!(ran.lines().count(), 1, "{ran:?}");
    second.stop();
}
