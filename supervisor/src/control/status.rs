//! The one-line status (systemd's STATUS=) and the SIGUSR1 dump.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::notify::StatusSummary;
use crate::shared::Shared;

use super::slots::SlotSet;

/// The facts behind the status line now.
pub(super) fn summary(
    shared: &Shared,
    slots: &SlotSet,
    mode: Option<&'static str>,
) -> StatusSummary {
    let busy = slots
        .slots
        .values()
        .filter(|h| h.view().task.is_some())
        .count();
    StatusSummary {
        mode,
        busy,
        idle: slots.slots.len().saturating_sub(busy),
        finished: shared.counters.finished.load(Ordering::Relaxed),
        failed: shared.counters.failed.load(Ordering::Relaxed),
        redis_down_since: shared.redis_down_since(),
    }
}

/// A one-screen dump of every slot, for the log.
pub(super) fn dump(
    shared: &Shared,
    slots: &SlotSet,
    supervisor_id: &str,
    started: Instant,
    mode: Option<&'static str>,
) -> String {
    let current = shared.current();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "supervisor {supervisor_id} ({}), up {:.0?}; {}",
        current.config.description,
        started.elapsed(),
        summary(shared, slots, mode)
    );
    let _ = writeln!(
        out,
        "queues: {}; slots wanted: {}; worker processes replaced after {} task(s); reload generation {}",
        current.config.queues.join(", "),
        slots.desired,
        current.config.max_tasks_per_child,
        current.generation
    );
    for (id, handle) in &slots.slots {
        let view = handle.view();
        let pid = view.pid.map_or("-".to_owned(), |p| p.to_string());
        let retiring = if view.retiring { " (retiring)" } else { "" };
        match &view.task {
            Some((task, description, since)) => {
                let _ = writeln!(
                    out,
                    "  {id}{retiring}: busy {:.1?} with {description} [{task}], worker pid {pid}",
                    since.elapsed()
                );
            }
            None => {
                let _ = writeln!(out, "  {id}{retiring}: idle, worker pid {pid}");
            }
        }
    }
    out
}

/// The resident set size of process `pid`, from `/proc/<pid>/status`.
pub(super) fn resident_bytes_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}
