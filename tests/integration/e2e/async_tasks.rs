//! Async task functions (`App::task_async`, feature `async`) end exactly
//! like synchronous ones: result, error, panic, crash, timeout, shutdown,
//! isolation, `process_outcome`, with reused and with fresh processes.

use std::fs;
use std::time::Duration;

use nix::sys::signal::Signal;
use redis_tasks::protocol::TaskStatus;
use serde_json::json;

use super::{Demo, error_of};

#[test]
fn async_tasks_end_like_sync_ones_in_reused_processes() {
    every_ending(&["--concurrency", "2"]);
}

#[test]
fn async_tasks_end_like_sync_ones_in_fresh_processes() {
    every_ending(&["--concurrency", "2", "--max-tasks-per-child", "1"]);
}

fn every_ending(args: &[&str]) {
    let demo = Demo::new();
    let sleep = demo.enqueue("async_sleep", json!({"secs": 0.01}));
    let again = demo.enqueue("async_sleep", json!({"secs": 0.01}));
    let fail = demo.enqueue("async_fail", json!({"message": "card declined"}));
    let panic = demo.enqueue("async_panic", json!({"message": "index out of range"}));
    let abort = demo.enqueue("async_abort", json!(null));
    let timeout = demo.enqueue("async_quick_timeout", json!({"secs": 60}));
    let bad_args = demo.enqueue("async_sleep", json!({"seconds": "x"}));
    let sync_after = demo.enqueue("add", json!({"a": 1, "b": 2}));
    let all = [
        &sleep,
        &again,
        &fail,
        &panic,
        &abort,
        &timeout,
        &bad_args,
        &sync_after,
    ];
    demo.burst(args);

    for id in [&sleep, &again] {
        let t = demo.task(id);
        assert_eq!(t.status, TaskStatus::Finished, "{t:?}");
        let result = t.result.expect("result");
        assert_eq!(result["slept"], json!(0.01));
        assert!(
            result["setup_pid"].is_u64(),
            "setup state reachable: {result}"
        );
    }
    assert_eq!(error_of(&demo.task(&fail)), "card declined");
    let text = error_of(&demo.task(&panic)).to_owned();
    assert!(
        text.starts_with("panicked: index out of range at ") && text.contains("async_tasks.rs:"),
        "{text}"
    );
    assert_eq!(
        error_of(&demo.task(&abort)),
        "worker process killed by signal 6 (SIGABRT)"
    );
    assert_eq!(error_of(&demo.task(&timeout)), "timeout (1 s) reached");
    assert!(
        error_of(&demo.task(&bad_args)).starts_with(r#"invalid arguments for task "async_sleep""#),
        "{}",
        error_of(&demo.task(&bad_args))
    );
    assert_eq!(demo.task(&sync_after).status, TaskStatus::Finished);
    // process_outcome saw each ending once.
    for id in all {
        assert_eq!(demo.outcomes_of(id).len(), 1, "{id}: {:?}", demo.outcomes());
    }
}

#[test]
fn sigterm_interrupts_an_awaiting_task_like_a_sync_one() {
    let demo = Demo::new();
    let id = demo.enqueue("async_sleep", json!({"secs": 120}));
    let mut sup = demo.start(&["--concurrency", "1"], &[]);
    demo.wait_status(&id, TaskStatus::Running, Duration::from_secs(60));
    sup.signal(Signal::SIGTERM);
    assert_eq!(
        sup.wait_exit(Duration::from_secs(60)),
        Some(0),
        "{}",
        sup.log()
    );
    assert_eq!(error_of(&demo.task(&id)), "worker shutdown");
}

#[test]
fn an_async_task_runs_under_an_isolation_profile() {
    let demo = Demo::new();
    let id = demo
        .store
        .queue("untrusted")
        .enqueue("async_sleep", &json!({"secs": 0.01}))
        .expect("enqueue");
    let settings = demo.path("settings.toml");
    fs::write(
        &settings,
        "[queues.untrusted]\nseccomp = true\nread_only_paths = [\"/\"]\nopen_files_limit = 64\n",
    )
    .expect("write settings");
    let mut cmd = demo.cmd_with(super::demo_bin_for_everyone());
    cmd.args(["worker", "--burst", "--config"])
        .arg(&settings)
        .arg("untrusted")
        .timeout(Duration::from_secs(120));
    cmd.run();
    let t = demo.task(&id);
    if t.status == TaskStatus::Failed && error_of(&t).starts_with("isolation not applied") {
        eprintln!(
            "skipped: this kernel cannot apply the profile: {}",
            error_of(&t)
        );
        return;
    }
    assert_eq!(t.status, TaskStatus::Finished, "{t:?}");
}
