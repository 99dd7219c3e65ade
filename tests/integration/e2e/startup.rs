//! Refusing to start rather than failing every task, and a worker process
//! that cannot start once the supervisor runs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use redis_tasks::protocol::TaskStatus;
use serde_json::json;

use super::{Demo, demo_bin, error_of};

#[test]
fn a_failing_middleware_check_refuses_to_start_and_touches_nothing() {
    let demo = Demo::new();
    let id = demo.enqueue("noop", json!(null));
    let mut cmd = demo.cmd();
    cmd.args(["worker", "--burst"])
        .env("DEMO_OUTCOME_LOG", "/nonexistent-dir/outcomes.jsonl");
    let out = cmd.fails();
    assert!(
        out.stderr
            .contains("middleware \"OutcomeLog\" failed its start-up check"),
        "{}",
        out.stderr
    );
    assert_eq!(demo.task(&id).status, TaskStatus::Queued);
    assert_eq!(demo.queue_ids("default"), [id]);
}

#[test]
fn a_worker_binary_that_cannot_start_refuses_to_start() {
    let demo = Demo::new();
    let id = demo.enqueue("noop", json!(null));
    let out = demo
        .cmd()
        .args(["worker", "--burst", "--worker-exe", "/bin/false"])
        .fails();
    assert!(
        out.stderr.contains("worker process failed to start")
            && out
                .stderr
                .contains("exited with code 1 before its handshake"),
        "{}",
        out.stderr
    );
    assert_eq!(demo.task(&id).status, TaskStatus::Queued);
}

#[test]
fn a_worker_process_that_fails_to_start_mid_run_fails_its_task() {
    let demo = Demo::new();
    // A wrapper that starts the real worker only while the marker exists.
    let marker = demo.path("marker");
    fs::write(&marker, "").expect("marker");
    let wrapper = demo.path("wrapper.sh");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n[ -e '{}' ] || exit 3\nexec '{}' \"$@\"\n",
            marker.display(),
            demo_bin().display()
        ),
    )
    .expect("wrapper");
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).expect("chmod");

    // The first task runs until the gate file appears, so the marker is
    // surely gone before it ends.
    let gate = demo.path("gate");
    let first = demo.enqueue("wait_for_file", json!({ "path": gate }));
    let second = demo.enqueue("noop", json!(null));
    let third = demo.enqueue("noop", json!(null));
    let wrapper_arg = wrapper.to_string_lossy().into_owned();
    let mut sup = demo.start(
        &[
            "--concurrency",
            "1",
            "--max-tasks-per-child",
            "1",
            "--worker-exe",
            &wrapper_arg,
        ],
        &[],
    );
    // The start-up probe's process runs the first task; the marker goes
    // while it runs, so no process started later can start. The second
    // task's process may have been prepared (a spare) before that; the
    // third's is started after the second task began, surely without it.
    demo.wait_status(&first, TaskStatus::Running, Duration::from_secs(30));
    let _ = fs::remove_file(&marker);
    fs::write(&gate, "").expect("gate");
    demo.wait_status(&first, TaskStatus::Finished, Duration::from_secs(60));
    demo.wait_ended(&second, Duration::from_secs(60));
    let t = demo.wait_ended(&third, Duration::from_secs(60));
    let text = error_of(&t).to_owned();
    assert!(
        text.starts_with("worker failed to start: ") || text.contains("before taking the task"),
        "{text}"
    );
    assert_eq!(demo.outcomes_of(&second).len(), 1);
    assert_eq!(demo.outcomes_of(&third).len(), 1);
    sup.signal(nix::sys::signal::Signal::SIGTERM);
    sup.wait_exit(Duration::from_secs(30));
}
