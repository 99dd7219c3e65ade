//! A task cannot reach into the process that started it. With the
//! defaults a task runs as the supervisor's own user, so only the
//! supervisor's (and the fork server's) non-dumpable flag stands between it
//! and the Redis password in their environment and their authenticated
//! Redis sockets; and a worker process's own flag keeps the tasks of
//! other slots out of it. These tests run the supervisor as `nobody`: as root the
//! test would prove nothing, since root may read any process.

use std::fs;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use redis_tasks::TaskStatus;
use serde_json::json;

use super::{Demo, Running, demo_bin_for_everyone, error_of, root_or_skip};

const NOBODY: u32 = 65534;
const SECRET: &str = "hunter2-not-for-tasks";

/// A supervisor running as `nobody`, with a secret in its environment.
fn start_as_nobody(demo: &Demo, args: &[&str]) -> Running {
    let log = demo.path(&format!("nobody-{}.log", args.len()));
    let file = fs::File::create(&log).expect("log file");
    let child = Command::new(demo_bin_for_everyone())
        .arg("worker")
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("REDIS_URL", demo.redis.url())
        .env("DEMO_SECRET", SECRET)
        .env("RUST_LOG", "debug")
        .uid(NOBODY)
        .gid(NOBODY)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .spawn()
        .expect("start the demo as nobody");
    Running { child, log }
}

fn check_parent_is_out_of_reach(args: &[&str]) {
    let demo = Demo::new();
    let mut sup = start_as_nobody(&demo, args);

    let peek = demo.enqueue("peek_parent", json!({"file": "environ"}));
    let t = demo.wait_ended(&peek, Duration::from_secs(60));
    let read = t
        .meta
        .get("read")
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(!read.contains(SECRET), "the task read the secret: {read}");
    assert_eq!(t.status, TaskStatus::Failed, "{}", sup.log());
    assert!(
        error_of(&t).contains("Permission denied"),
        "{}",
        error_of(&t)
    );

    let steal = demo.enqueue("steal_parent_fds", json!(null));
    let t = demo.wait_ended(&steal, Duration::from_secs(60));
    assert_eq!(t.status, TaskStatus::Finished, "{}", error_of(&t));
    assert_eq!(t.meta.get("stolen"), Some(&json!(0)), "{:?}", t.meta);
    sup.stop();
}

#[test]
fn a_task_cannot_read_the_supervisors_environment_or_copy_its_descriptors() {
    if root_or_skip("to run the supervisor as another user") {
        check_parent_is_out_of_reach(&["--concurrency", "1"]);
    }
}

#[test]
fn a_task_cannot_read_the_fork_servers_environment_or_copy_its_descriptors() {
    if root_or_skip("to run the supervisor as another user") {
        check_parent_is_out_of_reach(&["--concurrency", "1", "--max-tasks-per-child", "1"]);
    }
}

#[test]
fn a_task_cannot_read_a_sibling_worker_process_of_the_same_user() {
    if !root_or_skip("to run the supervisor as another user") {
        return;
    }
    for args in [
        ["--concurrency", "2", "--max-tasks-per-child", "1000"],
        ["--concurrency", "2", "--max-tasks-per-child", "1"],
    ] {
        let demo = Demo::new();
        let mut sup = start_as_nobody(&demo, &args);
        // One slot runs a long task; the task of the other looks for it.
        let victim = demo.enqueue("sleep", json!({"secs": 60}));
        demo.wait_status(&victim, TaskStatus::Running, Duration::from_secs(60));
        let id = demo.enqueue("reach_siblings", json!(null));
        let t = demo.wait_ended(&id, Duration::from_secs(60));
        assert_eq!(t.status, TaskStatus::Finished, "{}", error_of(&t));
        assert_eq!(
            t.meta.get("reached"),
            Some(&json!(0)),
            "{args:?}: {:?}",
            t.meta
        );
        sup.stop();
    }
}
