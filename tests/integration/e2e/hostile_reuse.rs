//! Build point 1 of "contain hostile tasks, round two": a reused worker
//! process is alone with its socket before it gets the next task. The
//! `forge_next` task (examples/demo/hostile_clone.rs) starts a process with
//! `clone(CLONE_PARENT)`, a child of the supervisor rather than of the
//! worker process, which stops the worker process and answers the next
//! `Run` on its socket with a forged success. It races the supervisor, so
//! the test runs several trials.

use std::time::Duration;

use redis_tasks::TaskStatus;
use serde_json::json;

use super::Demo;

#[test]
fn a_process_started_with_clone_parent_cannot_answer_for_the_next_task() {
    let demo = Demo::new();
    let mut running = demo.start(&["--concurrency", "1"], &[]);
    let dir = demo.path("ran");
    std::fs::create_dir(&dir).expect("marker dir");
    let mut wrong = Vec::new();
    for trial in 0..6 {
        // Both at once: the victim's Run follows the forger's task at once.
        let forger = demo.enqueue("forge_next", json!({}));
        let victim = demo.enqueue("victim", json!({ "dir": dir }));
        demo.wait_ended(&forger, Duration::from_secs(60));
        let t = demo.wait_ended(&victim, Duration::from_secs(60));
        let ran = dir.join(&victim).exists();
        let own = t.status == TaskStatus::Finished && t.result == Some(json!(victim));
        if !ran || !own {
            wrong.push(format!(
                "trial {trial}: victim {} with result {:?}, error {:?}; its code ran: {ran}",
                t.status, t.result, t.error
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "victims not run or answered by the forger:\n{}",
        wrong.join("\n")
    );
    running.stop();
}

/// Defence in depth: under `seccomp = true` the clone itself is refused
/// (and `clone3`, whose flags a filter cannot read, fails with ENOSYS).
#[test]
fn clone_parent_is_blocked_under_seccomp() {
    let demo = Demo::new();
    let id = demo
        .store
        .queue("untrusted")
        .enqueue("forge_next", &json!({}))
        .expect("enqueue");
    let config = demo.path("settings.toml");
    std::fs::write(&config, "[queues.untrusted]\nseccomp = true\n").expect("settings");
    let mut cmd = demo.cmd_with(super::demo_bin_for_everyone());
    cmd.args(["worker", "--burst", "--concurrency", "1", "--config"])
        .arg(&config)
        .arg("untrusted")
        .timeout(Duration::from_secs(120));
    cmd.run();
    let error = super::error_of(&demo.task(&id)).to_owned();
    if error.starts_with("isolation not applied (seccomp:") {
        eprintln!("skipped: this machine cannot apply seccomp: {error}");
        return;
    }
    assert_eq!(error, "blocked system call clone");
}

/// The supervisor names what it killed: processes outside the worker
/// process's tree, not a limit or a crash of the task.
#[test]
fn the_kill_of_a_forger_is_named_in_the_log() {
    let demo = Demo::new();
    let mut running = demo.start(&["--concurrency", "1"], &[]);
    let dir = demo.path("ran");
    std::fs::create_dir(&dir).expect("marker dir");
    let forger = demo.enqueue("forge_next", json!({}));
    demo.wait_ended(&forger, Duration::from_secs(60));
    let victim = demo.enqueue("victim", json!({ "dir": dir }));
    let t = demo.wait_ended(&victim, Duration::from_secs(60));
    assert_eq!(t.result, Some(json!(victim)), "{t:#?}");
    let log = running.log();
    assert!(
        log.contains("outside its worker process's tree")
            || log.contains("that no worker process owns"),
        "{log}"
    );
    running.stop();
}
