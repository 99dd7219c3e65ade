//! Scaling a running instance with signals, as docs/systemd.md shows.

use std::time::Duration;

use serde_json::json;

use super::harness::{self, Systemd, is_alive};
use super::{enqueue, slots};
use crate::support::wait_until;

/// Waits until the instance has `n` slots in Redis and `n` worker
/// processes in its cgroup (every slot is kept busy by the test).
fn wait_for_slots(sd: &Systemd, unit: &str, n: usize) {
    let store = sd.store();
    let mut seen = (0, 0);
    wait_until(
        &format!("{n} slots and {n} worker processes"),
        Duration::from_secs(60),
        || {
            seen = (slots(store), sd.worker_pids(unit).len());
            seen == (n, n)
        },
    );
}

#[test]
fn signals_to_the_main_process_scale_and_signals_to_the_cgroup_disturb_no_worker() {
    let Some(sd) = harness::boot() else { return };
    sd.install_unit();
    let unit = sd.add_instance("scale", 2, None);
    sd.systemctl(&["start", "--no-block", &unit]);
    sd.wait_state(&unit, "active", Duration::from_secs(60));
    let main = sd.main_pid(&unit).expect("main pid");

    // Enough one-second tasks to keep every slot busy for the whole test,
    // so each slot has a worker process.
    let store = sd.store();
    let ids: Vec<String> = (0..120)
        .map(|_| enqueue(store, "sleep", json!({"secs": 1})))
        .collect();
    wait_for_slots(&sd, &unit, 2);

    let kill_main = |signal: &str| {
        sd.systemctl(&["kill", "--kill-whom=main", "-s", signal, &unit]);
    };
    kill_main("SIGTTIN");
    wait_for_slots(&sd, &unit, 3);
    kill_main("SIGTTOU");
    wait_for_slots(&sd, &unit, 2);
    kill_main("SIGTTOU");
    wait_for_slots(&sd, &unit, 1);

    // To every process of the unit: the supervisor adds a slot, its worker
    // processes ignore the signal.
    let workers = sd.worker_pids(&unit);
    sd.systemctl(&["kill", "-s", "SIGTTIN", &unit]);
    wait_for_slots(&sd, &unit, 2);
    for pid in &workers {
        assert!(
            is_alive(*pid),
            "worker process {pid} did not survive SIGTTIN"
        );
    }
    assert_eq!(
        sd.main_pid(&unit),
        Some(main),
        "the supervisor was restarted"
    );
    assert_eq!(sd.show(&unit, "NRestarts"), "0");
    assert_eq!(sd.show(&unit, "ActiveState"), "active");

    // Nothing failed, nothing was lost.
    assert_eq!(store.failed().count().expect("failed"), 0);
    let records = store.tasks(&ids).expect("records");
    assert!(
        records.iter().all(Result::is_ok),
        "a task record is missing"
    );
}
