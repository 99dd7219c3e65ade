//! Start-up recovery of a previous incarnation is not fooled by its pid:
//! a pid now used by another process, or held by a zombie, does not make
//! the previous incarnation "still running".

use std::process::{Command, Stdio};
use std::time::Duration;

use jiff::Timestamp;
use redis_tasks::TaskStatus;
use redis_tasks::store::{Incarnation, ProcessIdentity, SlotInfo};
use redis_tasks::supervisor::config::hostname;
use redis_tasks::supervisor::liveness;
use serde_json::json;

use super::{Demo, error_of};
use crate::support::wait_until;

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
    let mut me = liveness::current().expect("own identity");
    me.start_time = me.start_time.saturating_sub(1);
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
        liveness::stat_of(pid).is_some_and(|s| s.state == 'Z')
    });
    let stat = liveness::stat_of(pid).expect("zombie stat");
    let zombie = ProcessIdentity {
        pid,
        start_time: stat.start_time,
        boot_id: liveness::boot_id().expect("boot id"),
    };
    let id = crashed_incarnation(&demo, zombie);
    restart_recovers(&demo, &id);
    child.wait().expect("reap the zombie");
}
