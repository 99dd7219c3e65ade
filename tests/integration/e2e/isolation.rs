//! What a worker process gets from its supervisor: a scrubbed environment,
//! no descriptor but stdio and its socket, and (with reuse) the same
//! process for many tasks.

use std::collections::BTreeSet;
use std::fs;

use redis_tasks::protocol::TaskStatus;
use serde_json::json;

use super::Demo;

#[test]
fn worker_processes_get_no_redis_settings_or_systemd_variables() {
    let demo = Demo::new();
    let path = demo.path("env.txt");
    let id = demo.enqueue("env", json!({"path": path}));
    let mut cmd = demo.cmd();
    cmd.args(["worker", "--burst"])
        .env("REDIS_PASSWORD", "hunter2")
        .env("NOTIFY_SOCKET", "/run/systemd/notify")
        .env("WATCHDOG_USEC", "1000000")
        .env("LANG", "C.UTF-8");
    assert!(cmd.run().status.success());
    assert_eq!(demo.task(&id).status, TaskStatus::Finished);
    let env = fs::read_to_string(&path).expect("env file");
    for line in env.lines() {
        let key = line.split('=').next().unwrap_or_default();
        assert!(
            !key.contains("REDIS") && !key.starts_with("RT_") && !key.starts_with("DEMO_"),
            "leaked {line}"
        );
        assert!(
            !["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"].contains(&key),
            "leaked {line}"
        );
    }
    assert!(!env.contains("hunter2"));
    assert!(
        env.lines().any(|l| l == "LANG=C.UTF-8"),
        "allow-listed LANG kept:\n{env}"
    );
}

#[test]
fn worker_processes_see_only_stdio_and_their_socket() {
    let demo = Demo::new();
    let path = demo.path("fds.txt");
    let id = demo.enqueue("fds", json!({"path": path}));
    assert!(demo.burst(&[]).status.success());
    assert_eq!(demo.task(&id).status, TaskStatus::Finished);
    let listing = fs::read_to_string(&path).expect("fds file");
    let mut sockets = BTreeSet::new();
    for line in listing.lines() {
        let (fd, target) = line.split_once(' ').expect("fd line");
        let fd: u32 = fd.parse().expect("fd number");
        if fd <= 2 {
            continue;
        }
        if target.starts_with("socket:") {
            sockets.insert(target.to_owned());
        } else {
            // The listing's own directory handle.
            assert!(
                target.contains("/fd"),
                "unexpected descriptor {line}\n{listing}"
            );
        }
    }
    // fd 3 and the reader thread's duplicate of it: one socket.
    assert_eq!(sockets.len(), 1, "{listing}");
}

#[test]
fn worker_processes_are_reused_up_to_max_tasks_per_child() {
    let demo = Demo::new();
    let ids: Vec<String> = (0..6).map(|_| demo.enqueue("pid", json!(null))).collect();
    assert!(
        demo.burst(&["--concurrency", "1", "--max-tasks-per-child", "3"])
            .status
            .success()
    );
    let pids: Vec<u64> = ids
        .iter()
        .map(|id| demo.task(id).meta["pid"].as_u64().expect("pid in meta"))
        .collect();
    assert_eq!(pids[0], pids[1]);
    assert_eq!(pids[1], pids[2]);
    assert_ne!(pids[2], pids[3]);
    assert_eq!(pids[3], pids[5]);

    let ids: Vec<String> = (0..3).map(|_| demo.enqueue("pid", json!(null))).collect();
    assert!(
        demo.burst(&["--concurrency", "1", "--max-tasks-per-child", "1"])
            .status
            .success()
    );
    let fresh: BTreeSet<u64> = ids
        .iter()
        .map(|id| demo.task(id).meta["pid"].as_u64().expect("pid in meta"))
        .collect();
    assert_eq!(fresh.len(), 3, "a fresh process for every task");
}

#[test]
fn retired_worker_processes_do_not_pile_up_with_a_fresh_process_per_task() {
    let demo = Demo::new();
    let ids: Vec<String> = (0..400)
        .map(|_| demo.enqueue("noop", json!(null)))
        .collect();
    let mut sup = demo.start(&["--concurrency", "2", "--max-tasks-per-child", "1"], &[]);
    let last = ids.last().expect("ids");
    demo.wait_status(
        last,
        TaskStatus::Finished,
        std::time::Duration::from_secs(120),
    );
    // Worker processes are children of the fork server, itself a child of
    // the supervisor. Retirement keeps up with the slots: only a handful
    // may be on their way out, not hundreds. Retiring is asynchronous, so
    // the count is waited for (a leak never gets there).
    let live = || -> usize {
        super::children_of(sup.pid())
            .into_iter()
            .map(|server| super::children_of(server).len())
            .sum()
    };
    crate::support::wait_until(
        "at most 20 live worker processes after the burst",
        std::time::Duration::from_secs(60),
        || live() <= 20,
    );
    sup.stop();
}
