//! `systemctl reload`: RELOADING=1 then READY=1, and every worker process
//! replaced after its current task, none interrupted.

use std::time::Duration;

use redis_tasks::protocol::TaskStatus;
use serde_json::json;

use super::harness::{self, is_alive};
use super::{enqueue, wait_status};
use crate::support::wait_until;

#[test]
fn reload_goes_through_reloading_and_replaces_every_worker_process() {
    let Some(sd) = harness::boot() else { return };
    sd.install_unit();
    let unit = sd.add_instance("reload", 2, None);
    sd.systemctl(&["start", "--no-block", &unit]);
    sd.wait_state(&unit, "active", Duration::from_secs(60));
    let main = sd.main_pid(&unit).expect("main pid");

    // Both slots busy, each on a worker process of the old generation.
    let store = sd.store();
    let running: Vec<String> = (0..2)
        .map(|_| enqueue(store, "sleep", json!({"secs": 4})))
        .collect();
    for id in &running {
        wait_status(store, id, TaskStatus::Running, Duration::from_secs(30));
    }
    let old = sd.worker_pids(&unit);
    assert_eq!(old.len(), 2, "worker processes: {old:?}");

    let mark = sd.pid1_log().len();
    sd.systemctl(&["reload", &unit]);
    // The supervisor said RELOADING=1 (with the clock systemd 253 wants),
    // then READY=1 once the new settings were in force; PID 1 took the
    // unit through "reload" back to "running".
    wait_until(
        "RELOADING=1 and then READY=1",
        Duration::from_secs(60),
        || {
            let sent = sd.notifications(&unit, mark);
            sent.iter()
                .position(|m| m.starts_with("RELOADING=1, MONOTONIC_USEC="))
                .is_some_and(|at| sent[at..].iter().any(|m| m == "READY=1"))
        },
    );
    let log = sd.pid1_log_since(mark);
    assert!(
        log.contains(&format!("{unit}: Changed running -> reload")),
        "{log}"
    );
    assert!(
        log.contains(&format!("{unit}: Changed reload -> running")),
        "{log}"
    );
    sd.wait_state(&unit, "active", Duration::from_secs(30));

    // The running tasks were not interrupted.
    for id in &running {
        wait_status(store, id, TaskStatus::Finished, Duration::from_secs(60));
    }
    // Every old worker process is gone, and new work runs on new ones.
    wait_until(
        "the old worker processes to exit",
        Duration::from_secs(60),
        || old.iter().all(|pid| !is_alive(*pid)),
    );
    let next: Vec<String> = (0..2)
        .map(|_| enqueue(store, "sleep", json!({"secs": 3})))
        .collect();
    for id in &next {
        wait_status(store, id, TaskStatus::Running, Duration::from_secs(30));
    }
    let new = sd.worker_pids(&unit);
    assert!(!new.is_empty(), "no worker process after reload");
    assert!(
        new.iter().all(|p| !old.contains(p)),
        "old {old:?}, new {new:?}"
    );
    for id in &next {
        wait_status(store, id, TaskStatus::Finished, Duration::from_secs(60));
    }

    // The same supervisor throughout.
    assert_eq!(sd.main_pid(&unit), Some(main));
    assert_eq!(sd.show(&unit, "NRestarts"), "0");
    assert_eq!(store.failed().count().expect("failed"), 0);
}
