//! Containment under the shipped unit as it is (issue 20, build point 7):
//! worker processes get cgroups of their own (the unit delegates a
//! subtree, and its other settings must not make the tree read-only), a
//! hostile task cannot kill the supervisor (`kill(-1)` as the service
//! user) and no task outlives its timeout.

use std::fs;
use std::time::Duration;

use redis_tasks::protocol::TaskStatus;
use serde_json::json;

use super::harness;
use super::{enqueue, wait_status};
use crate::support::wait_until;

#[test]
fn under_the_shipped_unit_workers_get_cgroups_and_timeouts_hold() {
    let Some(sd) = harness::boot() else { return };
    sd.install_unit();
    let unit = sd.add_instance("contain", 1, None);
    sd.systemctl(&["start", "--no-block", &unit]);
    sd.wait_state(&unit, "active", Duration::from_secs(60));
    let main = sd.main_pid(&unit).expect("main pid");
    let log = sd.supervisor_log("contain");
    assert!(
        log.contains("worker processes run in cgroups of their own"),
        "no worker cgroups under the shipped unit:\n{log}"
    );

    // A running task's worker process sits in a worker cgroup of its own.
    let store = sd.store();
    let sleeper = enqueue(store, "sleep", json!({"secs": 3}));
    wait_status(
        store,
        &sleeper,
        TaskStatus::Running,
        Duration::from_secs(30),
    );
    let mut cgroup = String::new();
    wait_until(
        "a worker process in a worker cgroup",
        Duration::from_secs(30),
        || {
            sd.worker_pids(&unit).iter().any(|pid| {
                cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
                cgroup.contains("/redis-tasks.")
            })
        },
    );
    wait_status(
        store,
        &sleeper,
        TaskStatus::Finished,
        Duration::from_secs(30),
    );

    // A task past its timeout (1 s) ends by it.
    let late = enqueue(store, "quick_timeout", json!({"secs": 60}));
    wait_until("the late task to end", Duration::from_secs(30), || {
        store
            .task(&late)
            .is_ok_and(|t| matches!(t.status, TaskStatus::Finished | TaskStatus::Failed))
    });
    let t = store.task(&late).expect("record");
    assert_eq!(
        t.error.as_deref(),
        Some("timeout (1 s) reached"),
        "{}",
        sd.supervisor_log("contain")
    );
    assert_eq!(sd.main_pid(&unit), Some(main), "the supervisor was killed");
    assert_eq!(sd.show(&unit, "NRestarts"), "0");
    assert_eq!(sd.show(&unit, "ActiveState"), "active");
}

/// `kill(-1)` from a task of a profile with an isolation key reaches
/// nothing outside its own worker process tree: not the supervisor, which
/// runs as the same user under the shipped unit. The worker process's own
/// PID namespace (made without root through a user namespace, which the
/// unit's `RestrictNamespaces=` allows) is what stops it.
#[test]
fn under_the_shipped_unit_a_hostile_task_cannot_kill_the_supervisor() {
    let Some(sd) = harness::boot() else { return };
    sd.install_unit();
    let unit = sd.add_instance("killer", 1, None);
    let settings = sd.settings_path("killer");
    let mut text = fs::read_to_string(&settings).expect("settings");
    text.push_str("worker_queues = [\"untrusted\"]\n[queues.untrusted]\nseccomp = true\n");
    fs::write(&settings, text).expect("settings");
    sd.systemctl(&["start", "--no-block", &unit]);
    sd.wait_state(&unit, "active", Duration::from_secs(60));
    let main = sd.main_pid(&unit).expect("main pid");
    let store = sd.store();
    let killer = store
        .queue("untrusted")
        .enqueue("kill_everyone", &json!(null))
        .expect("enqueue");
    wait_until("kill_everyone to end", Duration::from_secs(60), || {
        store
            .task(&killer)
            .is_ok_and(|t| matches!(t.status, TaskStatus::Finished | TaskStatus::Failed))
    });
    let t = store.task(&killer).expect("record");
    // The attack ran (it did not fail to start, say): either the signal
    // went out and reached nothing that matters, or (in the worker's own
    // PID namespace) there was nobody but itself and its init to send it to.
    let alone = t.meta.get("kill") == Some(&json!("No such process (os error 3)"));
    assert!(t.result == Some(json!("sent")) || alone, "{t:#?}");
    assert_eq!(sd.main_pid(&unit), Some(main), "the supervisor was killed");
    assert_eq!(sd.show(&unit, "NRestarts"), "0");
}
