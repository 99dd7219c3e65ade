//! Point 1 and 2 of "contain hostile tasks": nothing a task starts outlives
//! it (double fork and `setsid` included), and a worker process that dies
//! is seen dying, even while a child of it holds its socket open.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use redis_tasks::TaskStatus;
use serde_json::json;

use super::{Demo, error_of, is_gone};
use crate::support::wait_until;

/// A process a hostile task left behind; killed on drop so a failing test
/// leaves nothing running.
struct Escaped(i32);

impl Drop for Escaped {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0), Signal::SIGKILL);
    }
}

/// Waits for the pid a demo task wrote to `path`.
fn escaped_pid(path: &Path) -> Escaped {
    let mut pid = None;
    wait_until(
        "the escaped process to write its pid",
        Duration::from_secs(30),
        || {
            pid = fs::read_to_string(path)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()));
            pid.is_some()
        },
    );
    Escaped(pid.expect("pid"))
}

/// Waits until `pid` is gone; returns how long that took.
fn wait_gone(what: &str, pid: &Escaped) -> Duration {
    let start = Instant::now();
    wait_until(what, Duration::from_secs(10), || is_gone(pid.0));
    start.elapsed()
}

#[test]
fn a_setsid_grandchild_dies_with_its_successful_task() {
    let demo = Demo::new();
    let mut running = demo.start(&["--concurrency", "1"], &[]);
    let path = demo.path("grandchild.pid");
    let id = demo.enqueue("orphan", json!({"path": path, "secs": 0.0}));
    demo.wait_status(&id, TaskStatus::Finished, Duration::from_secs(30));
    let ended = Instant::now();
    let grandchild = escaped_pid(&path);
    let took = wait_gone("the grandchild to die after its task", &grandchild);
    eprintln!(
        "grandchild gone {:?} after the outcome was seen",
        ended.elapsed().min(took)
    );
    running.stop();
}

#[test]
fn a_setsid_grandchild_dies_at_its_task_timeout() {
    let demo = Demo::new();
    let mut running = demo.start(&["--concurrency", "1"], &[]);
    let path = demo.path("grandchild.pid");
    let id = demo.enqueue("orphan_timeout", json!({"path": path, "secs": 60.0}));
    let grandchild = escaped_pid(&path);
    let t = demo.wait_ended(&id, Duration::from_secs(30));
    assert_eq!(error_of(&t), "timeout (1 s) reached");
    let took = wait_gone("the grandchild to die at the timeout", &grandchild);
    eprintln!("grandchild gone {took:?} after the outcome was seen");
    running.stop();
}

#[test]
fn a_setsid_grandchild_dies_at_a_graceful_stop() {
    let demo = Demo::new();
    let mut running = demo.start(&["--concurrency", "1"], &[]);
    let path = demo.path("grandchild.pid");
    let id = demo.enqueue("orphan", json!({"path": path, "secs": 60.0}));
    let grandchild = escaped_pid(&path);
    demo.wait_status(&id, TaskStatus::Running, Duration::from_secs(30));
    running.stop();
    let took = wait_gone("the grandchild to die with the supervisor", &grandchild);
    eprintln!("grandchild gone {took:?} after the supervisor exited");
}

#[test]
fn a_setsid_grandchild_of_a_fork_server_worker_dies_with_its_task() {
    let demo = Demo::new();
    let mut running = demo.start(&["--concurrency", "1", "--max-tasks-per-child", "1"], &[]);
    let path = demo.path("grandchild.pid");
    let id = demo.enqueue("orphan", json!({"path": path, "secs": 0.0}));
    demo.wait_status(&id, TaskStatus::Finished, Duration::from_secs(30));
    let grandchild = escaped_pid(&path);
    let took = wait_gone("the grandchild to die after its task", &grandchild);
    eprintln!("grandchild gone {took:?} after the outcome was seen");
    running.stop();
}

/// What the supervisor logs at start when it cannot give worker processes
/// a PID namespace (no CAP_SYS_ADMIN).
const NO_PID_NAMESPACE: &str = "no PID namespace for worker processes";

#[test]
fn a_setsid_grandchild_dies_when_the_supervisor_is_killed() {
    // By exec, then forked by the fork server.
    for per_child in ["1000", "1"] {
        let demo = Demo::new();
        let running = demo.start(
            &["--concurrency", "1", "--max-tasks-per-child", per_child],
            &[],
        );
        let path = demo.path("grandchild.pid");
        demo.enqueue("orphan", json!({"path": path, "secs": 60.0}));
        let grandchild = escaped_pid(&path);
        if let Some(line) = running.log().lines().find(|l| l.contains(NO_PID_NAMESPACE)) {
            eprintln!("skipped: this host allows no PID namespace here: {line}");
            return;
        }
        running.signal(Signal::SIGKILL);
        let took = wait_gone("the grandchild to die with the supervisor", &grandchild);
        eprintln!("max-tasks-per-child {per_child}: grandchild gone {took:?} after the SIGKILL");
    }
}

#[test]
fn a_crash_behind_a_child_holding_the_socket_is_recorded_at_once() {
    for fork_server in [false, true] {
        let demo = Demo::new();
        let per_child = if fork_server { "1" } else { "1000" };
        let mut running = demo.start(
            &["--concurrency", "1", "--max-tasks-per-child", per_child],
            &[],
        );
        let path = demo.path("holder.pid");
        let id = demo.enqueue("fork_holder_abort", json!({"path": path}));
        // The default timeout is minutes: only seeing the exit ends it here.
        let t = demo.wait_ended(&id, Duration::from_secs(20));
        assert_eq!(error_of(&t), "worker process killed by signal 6 (SIGABRT)");
        let took = t
            .ended_at
            .zip(t.started_at)
            .map(|(e, s)| e.duration_since(s));
        eprintln!("fork server {fork_server}: recorded {took:?} after the start");
        let holder = escaped_pid(&path);
        wait_gone("the child holding the socket to die", &holder);
        running.stop();
    }
}

/// The children of `pid` named `rt-pidns-anchor`: the init of the worker
/// processes' PID namespace.
fn anchors_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .filter(|p| {
                    fs::read_to_string(format!("/proc/{p}/comm"))
                        .is_ok_and(|c| c.trim() == "rt-pidns-anchor")
                }),
        );
    }
    out
}

#[test]
fn worker_processes_start_outside_a_pid_namespace_whose_anchor_was_killed() {
    let demo = Demo::new();
    let mut running = demo.start(&["--concurrency", "1"], &[]);
    let first = demo.enqueue("pid", json!(null));
    demo.wait_status(&first, TaskStatus::Finished, Duration::from_secs(30));
    let anchors = anchors_of(running.pid());
    if anchors.is_empty() {
        eprintln!("skipped: the supervisor has no PID namespace here");
        running.stop();
        return;
    }
    // Everything in the namespace dies with its init, the idle worker
    // process too; the next task gets one started outside.
    let _ = kill(Pid::from_raw(anchors[0]), Signal::SIGKILL);
    // The idle worker process dies with the namespace; once it has, the
    // next task cannot be handed to it.
    let old = demo.task(&first).meta["pid"].as_i64().expect("pid in meta") as i32;
    wait_until(
        "the idle worker process to die",
        Duration::from_secs(30),
        || is_gone(old),
    );
    let next = demo.enqueue("pid", json!(null));
    demo.wait_status(&next, TaskStatus::Finished, Duration::from_secs(30));
    assert!(
        running
            .log()
            .contains("the worker processes' PID namespace is gone"),
        "{}",
        running.log()
    );
    wait_until("the anchor to be reaped", Duration::from_secs(60), || {
        anchors_of(running.pid()).is_empty()
    });
    running.stop();
}

#[test]
fn children_the_program_had_before_the_supervisor_started_are_left_alone() {
    let demo = Demo::new();
    let path = demo.path("before.pid");
    let path_text = path.to_str().expect("utf-8 path");
    let mut running = demo.start(
        &["--concurrency", "1"],
        &[("DEMO_CHILD_BEFORE_START", path_text)],
    );
    let before = escaped_pid(&path);
    // Tasks run and end (each end is followed by a sweep for orphans),
    // and many sweeps pass (one every 50 ms) while they do.
    for _ in 0..3 {
        let id = demo.enqueue("sleep", json!({"secs": 0.2}));
        demo.wait_status(&id, TaskStatus::Finished, Duration::from_secs(30));
    }
    assert!(!is_gone(before.0), "the program's own child was killed");
    running.stop();
}
