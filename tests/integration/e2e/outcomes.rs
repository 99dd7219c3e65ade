//! Every ending a task can cause by itself is recorded, and
//! `process_outcome` sees each one exactly once.

use std::time::Duration;

use redis_tasks::protocol::TaskStatus;
use serde_json::json;

use super::{Demo, error_of};

#[test]
fn burst_records_the_right_outcome_for_every_kind_of_ending() {
    every_kind_of_ending(&["--concurrency", "2"]);
}

/// The same with a fresh worker process for every task, forked by the fork
/// server: its exit reports must read exactly like those of a child of ours.
#[test]
fn fresh_processes_from_the_fork_server_record_the_same_outcomes() {
    every_kind_of_ending(&["--concurrency", "2", "--max-tasks-per-child", "1"]);
}

fn every_kind_of_ending(args: &[&str]) {
    let demo = Demo::new();
    let noop = demo.enqueue("noop", json!({"anything": [1, 2]}));
    let fail = demo.enqueue("fail", json!({"message": "card declined"}));
    let panic = demo.enqueue("panic", json!({"message": "index out of range"}));
    let abort = demo.enqueue("abort", json!(null));
    let segv = demo.enqueue("segfault", json!(null));
    let exit = demo.enqueue("exit", json!({"code": 3}));
    let timeout = demo.enqueue("quick_timeout", json!({"secs": 60}));
    let unknown = demo.enqueue("no_such_task", json!([]));
    let bad_args = demo.enqueue("sleep", json!({"seconds": "x"}));
    let sleep = demo.enqueue("sleep", json!({"secs": 0.05}));
    let all = [
        &noop, &fail, &panic, &abort, &segv, &exit, &timeout, &unknown, &bad_args, &sleep,
    ];

    let out = demo.burst(args);
    assert!(out.status.success());

    assert_eq!(demo.task(&noop).status, TaskStatus::Finished);
    assert_eq!(demo.task(&sleep).status, TaskStatus::Finished);
    assert_eq!(error_of(&demo.task(&fail)), "card declined");
    let text = error_of(&demo.task(&panic)).to_owned();
    assert!(
        text.starts_with("panicked: index out of range at ") && text.contains("demo/main.rs:"),
        "{text}"
    );
    assert_eq!(
        error_of(&demo.task(&abort)),
        "worker process killed by signal 6 (SIGABRT)"
    );
    assert_eq!(
        error_of(&demo.task(&segv)),
        "worker process killed by signal 11 (SIGSEGV)"
    );
    assert_eq!(
        error_of(&demo.task(&exit)),
        "worker process exited with code 3"
    );
    assert_eq!(error_of(&demo.task(&timeout)), "timeout (1 s) reached");
    assert!(error_of(&demo.task(&unknown)).contains("unknown task function \"no_such_task\""));
    assert!(error_of(&demo.task(&bad_args)).contains("invalid arguments for task \"sleep\""));

    // One outcome-log line per final outcome, agreeing with Redis.
    let outcomes = demo.outcomes();
    assert_eq!(outcomes.len(), all.len(), "{outcomes:#?}");
    for id in all {
        let lines = demo.outcomes_of(id);
        assert_eq!(lines.len(), 1, "task {id}: {outcomes:#?}");
        let record = demo.task(id);
        let expected = if record.status == TaskStatus::Finished {
            "success"
        } else {
            "failure"
        };
        assert_eq!(lines[0]["outcome"], expected);
        assert_eq!(lines[0]["error"].as_str(), record.error.as_deref());
    }
    // Nothing left behind: queues empty, registries hold everything.
    assert!(demo.queue_ids("default").is_empty());
    assert_eq!(demo.store.finished().count().expect("count"), 2);
    assert_eq!(demo.store.failed().count().expect("count"), 8);
}

#[test]
fn the_timeout_kills_the_whole_process_group() {
    timeout_kills_the_group(&[]);
}

#[test]
fn the_timeout_kills_the_whole_group_of_a_forked_worker_process() {
    timeout_kills_the_group(&["--max-tasks-per-child", "1"]);
}

fn timeout_kills_the_group(args: &[&str]) {
    let demo = Demo::new();
    let id = demo.enqueue("spawn", json!({"children": 2, "secs": 600}));
    let out = {
        let mut cmd = demo.cmd();
        cmd.args(["worker", "--burst"])
            .args(args)
            .env("RT_DEFAULT_TASK_TIMEOUT", "2")
            .timeout(Duration::from_secs(60));
        cmd.run()
    };
    assert!(out.status.success());
    let t = demo.task(&id);
    assert_eq!(error_of(&t), "timeout (2 s) reached");
    let children: Vec<i32> = serde_json::from_value(t.meta["children"].clone()).expect("pids");
    assert_eq!(children.len(), 2);
    for pid in children {
        super::super::support::wait_until(
            &format!("grandchild {pid} to die"),
            Duration::from_secs(60),
            || super::is_gone(pid),
        );
    }
    let started = t.started_at.expect("started");
    let ended = t.ended_at.expect("ended");
    assert!(ended.duration_since(started) >= jiff::SignedDuration::from_secs(2));
}

#[test]
fn a_task_killed_from_outside_is_recorded_with_the_signal() {
    let demo = Demo::new();
    let id = demo.enqueue("sleep", json!({"secs": 600}));
    let mut sup = demo.start(&["--concurrency", "1"], &[]);
    demo.wait_status(&id, TaskStatus::Running, Duration::from_secs(30));
    let mut workers = Vec::new();
    super::super::support::wait_until("a worker process", Duration::from_secs(60), || {
        workers = super::children_of(sup.pid());
        !workers.is_empty()
    });
    for pid in &workers {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let t = demo.wait_ended(&id, Duration::from_secs(30));
    assert_eq!(
        error_of(&t),
        "worker process killed by signal 9 (SIGKILL) - out of memory?"
    );
    assert_eq!(demo.outcomes_of(&id).len(), 1);
    // The slot carries on with a fresh worker process.
    let next = demo.enqueue("noop", json!(null));
    demo.wait_status(&next, TaskStatus::Finished, Duration::from_secs(30));
    sup.stop();
}

#[test]
fn garbage_and_oversized_frames_are_protocol_violations() {
    let demo = Demo::new();
    let garbage = demo.enqueue("garbage", json!(null));
    let oversized = demo.enqueue("oversized", json!(null));
    let after = demo.enqueue("noop", json!(null));
    let out = demo.burst(&["--concurrency", "1"]);
    assert!(out.status.success());
    let text = error_of(&demo.task(&garbage)).to_owned();
    assert!(text.starts_with("protocol violation: "), "{text}");
    let text = error_of(&demo.task(&oversized)).to_owned();
    assert!(
        text.starts_with("protocol violation: ") && text.contains("over the"),
        "{text}"
    );
    assert_eq!(demo.task(&after).status, TaskStatus::Finished);
    assert_eq!(demo.outcomes().len(), 3);
}

#[test]
fn a_reentrant_task_that_always_crashes_stops_after_max_aborted_runs() {
    let demo = Demo::new();
    let id = demo.enqueue("reentrant_abort", json!(null));
    let out = demo.burst(&["--concurrency", "1"]);
    assert!(out.status.success());
    let t = demo.task(&id);
    assert_eq!(
        error_of(&t),
        "gave up after 4 aborted runs (last: worker process killed by signal 6 (SIGABRT))"
    );
    assert_eq!(t.aborted_runs.len(), 3, "{t:#?}");
    // process_outcome saw only the final outcome, not the requeues.
    assert_eq!(demo.outcomes_of(&id).len(), 1);
}

#[test]
fn meta_updates_reach_redis_while_the_task_runs() {
    let demo = Demo::new();
    let id = demo.enqueue("progress", json!({"steps": 5}));
    let out = demo.burst(&[]);
    assert!(out.status.success());
    let t = demo.task(&id);
    assert_eq!(t.status, TaskStatus::Finished);
    assert_eq!(t.meta["step"], json!(5));
}
