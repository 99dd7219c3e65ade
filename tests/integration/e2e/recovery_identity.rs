//! Start-up recovery of a previous incarnation is not fooled by its pid:
//! a pid now used by another process, or held by a zombie, does not make
//! the previous incarnation "still running".

use std::process::{Command, Stdio};
use std::time::Duration;

use jiff::Timestamp;
use redis_tasks::TaskStatus;
use redis_tasks::store::{Incarnation, ProcessIdentity, SlotInfo};
use serde_json::json;

use super::{Demo, error_of};
use crate::support::wait_until;

/// This host's name, as the supervisor records it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_owned()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .expect("boot id")
        .trim()
        .to_owned()
}

/// State and start time (clock ticks since boot) of `pid`, read here
/// rather than through the code under test.
fn state_and_start(pid: u32) -> Option<(char, u64)> {
    let line = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &line[line.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, start time field 22.
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// Leaves Redis as a previous incarnation `old` of instance `box1` on this
/// host would after a crash: a slot of it holding a running task, and the
/// instance mapping naming `process`. Returns the task id.
fn crashed_incarnation(demo: &Demo, process: ProcessIdentity) -> String {
    let id = demo.enqueue("sleep", json!({"secs": 600}));
    let slot = SlotInfo {
        id: "old-0".into(),
        description: "old/0".into(),
        queues: vec!["default".into()],
        supervisor: "old".into(),
        host: hostname(),
        pid: process.pid,
        started_at: Timestamp::now(),
    };
    demo.store
        .register_slot(&slot)
        .expect("register the old slot");
    let fetched = demo
        .store
        .fetch("old-0", &["default".to_owned()], Duration::ZERO)
        .expect("fetch")
        .expect("the task");
    assert_eq!(fetched.id, id);
    demo.store
        .set_incarnation(
            &hostname(),
            "box1",
            &Incarnation {
                supervisor_id: "old".into(),
                process: Some(process),
            },
        )
        .expect("instance mapping");
    assert_eq!(demo.task(&id).status, TaskStatus::Running);
    id
}

/// Starts a supervisor as instance `box1` with a far heartbeat timeout, so
/// only start-up recovery can end the task, and checks it does.
fn restart_recovers(demo: &Demo, id: &str) {
    let env = [("RT_WORKER_HEARTBEAT_TIMEOUT", "3600")];
    let mut second = demo.start(&["--concurrency", "1", "--instance", "box1"], &env);
    let t = demo.wait_ended(id, Duration::from_secs(30));
    assert_eq!(error_of(&t), "worker died");
    assert_eq!(demo.outcomes_of(id).len(), 1);
    second.stop();
}

#[test]
fn a_reused_pid_does_not_stop_recovery_at_start_up() {
    let demo = Demo::new();
    // The pid is this test process's, alive, but it started at another time
    // than the recorded one: the pid was reused.
    let pid = std::process::id();
    let (_, start_time) = state_and_start(pid).expect("own stat");
    let me = ProcessIdentity {
        pid,
        start_time: start_time.saturating_sub(1),
        boot_id: boot_id(),
    };
    let id = crashed_incarnation(&demo, me);
    restart_recovers(&demo, &id);
}

#[test]
fn a_zombie_previous_incarnation_does_not_stop_recovery_at_start_up() {
    let demo = Demo::new();
    // A child that exits and is not reaped yet: a zombie with the recorded
    // pid, start time and boot.
    let mut child = Command::new("true")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn true");
    let pid = child.id();
    wait_until("the child to be a zombie", Duration::from_secs(10), || {
        state_and_start(pid).is_some_and(|(state, _)| state == 'Z')
    });
    let (_, start_time) = state_and_start(pid).expect("zombie stat");
    let zombie = ProcessIdentity {
        pid,
        start_time,
        boot_id: boot_id(),
    };
    let id = crashed_incarnation(&demo, zombie);
    restart_recovers(&demo, &id);
    child.wait().expect("reap the zombie");
}
