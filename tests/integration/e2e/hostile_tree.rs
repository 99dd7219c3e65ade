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

#[test]
#[ignore = "needs the worker processes in a PID namespace; not done yet (see docs/security.md)"]
fn a_setsid_grandchild_dies_when_the_supervisor_is_killed() {
    let demo = Demo::new();
    let running = demo.start(&["--concurrency", "1"], &[]);
    let path = demo.path("grandchild.pid");
    demo.enqueue("orphan", json!({"path": path, "secs": 60.0}));
    let grandchild = escaped_pid(&path);
    running.signal(Signal::SIGKILL);
    wait_gone("the grandchild to die with the supervisor", &grandchild);
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
