//! The shipped unit `systemd/redis-tasks@.service` under a real systemd
//! (PID 1 of private namespaces, see `harness`), driving the demo binary.
//!
//! - `harness` (with `setup` and `procs`): boots and drives a private
//!   systemd, and cleans up after it.
//! - `lifecycle`: start is active only after READY=1 (Redis reachable);
//!   `systemctl status` shows the STATUS line, Redis state included;
//!   `systemctl stop` while a reentrant task runs drains, requeues it,
//!   records everything and ends inside the stop timeout.
//! - `scaling`: `systemctl kill --kill-whom=main -s SIGTTIN/SIGTTOU`
//!   changes the number of worker processes in the unit's cgroup; a plain
//!   `systemctl kill -s SIGTTIN` to the whole cgroup disturbs none of them.
//! - `reload`: `systemctl reload` goes reloading -> active and replaces
//!   every worker process without interrupting a task.
//! - `containment`: with the unit as shipped, worker processes get
//!   cgroups of their own, `kill(-1)` from a task spares the supervisor,
//!   and a task ends at its timeout.
//! - `watchdog`: a supervisor stopped with SIGSTOP (so it sends no
//!   WATCHDOG=1) is killed and restarted by the watchdog; a healthy one is
//!   not.
//!
//! Each test boots its own systemd; where root, namespaces or systemd are
//! missing it prints why and passes, unless
//! `REDIS_TASKS_REQUIRE_SYSTEMD_TEST=1` makes that a failure (CI).
//! Run with `cargo test --test integration systemd`.

mod containment;
mod harness;
mod lifecycle;
mod procs;
mod reload;
mod scaling;
mod setup;
mod watchdog;

use std::time::Duration;

use redis_tasks::{Store, TaskStatus};
use serde_json::Value;

use crate::support::wait_until;

/// Enqueues on `default`.
fn enqueue(store: &Store, task: &str, args: Value) -> String {
    store
        .queue("default")
        .enqueue(task, &args)
        .expect("enqueue")
}

/// Waits until task `id` has `status`.
fn wait_status(store: &Store, id: &str, status: TaskStatus, timeout: Duration) {
    wait_until(&format!("task {id} to be {status}"), timeout, || {
        store.task(id).is_ok_and(|t| t.status == status)
    });
}

/// The number of slots registered in Redis.
fn slots(store: &Store) -> usize {
    store.worker_infos().map(|w| w.len()).unwrap_or(usize::MAX)
}
