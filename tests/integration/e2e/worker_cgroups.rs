//! Worker processes in cgroups of their own (cgroup v2): everything a task
//! starts is found in its worker process's cgroup and dies with it, and
//! what a dead supervisor's workers left running is killed at the next
//! start-up. Skipped, saying why, where the host gives no cgroup v2 that
//! this process may write.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use redis_tasks::TaskStatus;
use serde_json::json;

use super::{Demo, Running, is_gone};
use crate::support::wait_until;

/// What the supervisor logs when worker processes get no cgroups.
const NO_CGROUPS: &str = "worker processes run without cgroups of their own";

/// The cgroup v2 mount point, from this process's mount table.
fn cgroup2_mount() -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

/// The cgroup v2 path of process `pid` (`0::/path`).
fn cgroup_of(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
}

/// Whether the supervisor said it runs without worker cgroups (printed as
/// the reason to skip).
fn without_cgroups(running: &Running) -> bool {
    wait_until(
        "the supervisor to log its worker cgroups",
        Duration::from_secs(30),
        || running.log().contains("cgroups of their own"),
    );
    match running.log().lines().find(|l| l.contains(NO_CGROUPS)) {
        Some(line) => {
            eprintln!("skipped: {line}");
            true
        }
        None => false,
    }
}

#[test]
fn what_a_task_starts_lives_in_its_worker_cgroup_and_dies_with_it() {
    let demo = Demo::new();
    let mut running = demo.start(&["--concurrency", "1"], &[("RUST_LOG", "info")]);
    if without_cgroups(&running) {
        running.stop();
        return;
    }
    let path = demo.path("grandchild.pid");
    let id = demo.enqueue("orphan", json!({"path": path, "secs": 60.0}));
    demo.wait_status(&id, TaskStatus::Running, Duration::from_secs(30));
    let mut pid = 0;
    wait_until("the grandchild's pid", Duration::from_secs(30), || {
        pid = fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        pid > 0
    });
    let cgroup = cgroup_of(pid).expect("the grandchild's cgroup");
    eprintln!("the escaped grandchild {pid} is in cgroup {cgroup}");
    let base = format!("/redis-tasks.{}/w", running.pid());
    assert!(
        cgroup.contains(&base),
        "the setsid grandchild is in {cgroup}, not in its worker's cgroup ({base}N)"
    );
    let dir = cgroup2_mount()
        .expect("a cgroup2 mount")
        .join(cgroup.trim_start_matches('/'));
    assert!(dir.is_dir(), "{} is not there", dir.display());
    running.stop();
    wait_until("the grandchild to die", Duration::from_secs(10), || {
        is_gone(pid)
    });
    wait_until(
        "the worker cgroup to be removed",
        Duration::from_secs(10),
        || !dir.exists() && !dir.parent().is_some_and(|p| p.exists()),
    );
}

#[test]
fn a_dead_supervisors_leftovers_are_killed_at_start() {
    let Some(mount) = cgroup2_mount() else {
        eprintln!("skipped: no cgroup v2 hierarchy is mounted");
        return;
    };
    // The supervisor starts in this process's cgroup and cleans up there.
    let own = cgroup_of(std::process::id() as i32).expect("own cgroup");
    let own_dir = mount.join(own.trim_start_matches('/'));
    // A pid that is gone: a process that ran and was reaped.
    let mut gone = Command::new("true").spawn().expect("true");
    let dead_pid = gone.id();
    gone.wait().expect("wait");
    let stale = own_dir.join(format!("redis-tasks.{dead_pid}"));
    let worker = stale.join("w0");
    if let Err(e) = fs::create_dir_all(&worker) {
        eprintln!("skipped: cannot create {}: {e}", worker.display());
        return;
    }
    let mut left = Command::new("sleep")
        .arg("600")
        .stdin(Stdio::null())
        .spawn()
        .expect("sleep");
    let left_pid = left.id() as i32;
    // A supervisor another test starts meanwhile may remove this empty
    // stale cgroup first (the very cleanup under test): make it again.
    let mut moved = Err(std::io::Error::other("not tried"));
    for _ in 0..20 {
        moved = fs::create_dir_all(&worker)
            .and_then(|()| fs::write(worker.join("cgroup.procs"), left_pid.to_string()));
        if moved.is_ok() {
            break;
        }
    }
    moved.expect("move into the cgroup");

    let demo = Demo::new();
    let mut running = demo.start(&["--concurrency", "1"], &[("RUST_LOG", "info")]);
    if without_cgroups(&running) {
        let _ = kill(Pid::from_raw(left_pid), Signal::SIGKILL);
        let _ = left.wait();
        let _ = fs::remove_dir(&worker);
        let _ = fs::remove_dir(&stale);
        running.stop();
        return;
    }
    wait_until(
        "the leftover process to be killed",
        Duration::from_secs(30),
        || matches!(left.try_wait(), Ok(Some(_))),
    );
    wait_until(
        "the dead supervisor's cgroup to be removed",
        Duration::from_secs(30),
        || !stale.exists(),
    );
    running.stop();
}
