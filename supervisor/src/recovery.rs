//! Giving an outcome to the tasks of slots that died.
//!
//! Two paths lead here: maintenance (one supervisor at a time, under a lock)
//! finds slots whose heartbeat is older than `worker_heartbeat_timeout`, and
//! a supervisor starting on the same host with the same instance name finds
//! the slots of its own previous incarnation and does not wait for their
//! heartbeats to age. Either way, a task that was moved to the dead slot but
//! not started goes back to the front of its queue, and a task that was
//! running gets the outcome "worker died" (a reentrant one is requeued),
//! which `process_outcome` sees like any other.
//!
//! The dead slot's own id fences every write: if its supervisor was only
//! slow and records the outcome first, ours is refused, and the other way
//! round.

use jiff::Timestamp;
use redis_tasks_protocol::{FailureKind, Outcome};
use redis_tasks_store::{Store, StoreError};
use tracing::{info, warn};

use crate::error_reports::FailedEnding;
use crate::outcome::{Conclusion, Policy, conclude};
use crate::shared::Shared;

/// What recovering one slot did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// Tasks put back at the front of their queue, never started.
    pub requeued: usize,
    /// Running tasks given an outcome (or requeued, when reentrant).
    pub settled: usize,
}

/// Recovers the tasks of `dead_slot` and removes the slot.
pub(crate) fn recover_slot(
    store: &Store,
    shared: &Shared,
    dead_slot: &str,
) -> Result<Recovered, StoreError> {
    let current = shared.current();
    let reclaimed = store.reclaim_slot(dead_slot, Timestamp::now())?;
    let mut done = Recovered {
        requeued: reclaimed.requeued.len(),
        settled: 0,
    };
    for id in &reclaimed.requeued {
        info!(slot = dead_slot, task = %id, "task of a dead slot put back at the front of its queue");
    }
    for id in &reclaimed.running {
        let (description, conclusion, coordinates) = match store.task(id) {
            Ok(record) => {
                let policy = Policy::for_task(
                    &shared.registry,
                    &record.task,
                    current.config.settings.max_aborted_runs,
                );
                let ended = Outcome::failure(FailureKind::WorkerDied);
                let conclusion = conclude(&record, ended, policy, &current.chain);
                let trace_id = record
                    .traceparent
                    .as_deref()
                    .and_then(|t| redis_tasks_protocol::TraceParent::parse(t).ok())
                    .map(|t| t.trace_id);
                let coordinates = (
                    record.task.clone(),
                    record.queue.clone(),
                    record.attempts.len() + 1,
                    trace_id,
                );
                // The call text carries the arguments: logged only when asked for.
                let call = if current.config.settings.log_task_args {
                    record.description
                } else {
                    record.task
                };
                (call, conclusion, coordinates)
            }
            Err(e) => {
                warn!(slot = dead_slot, task = %id, "task of a dead slot has no readable record: {e}");
                let detail = format!("worker died; task record unreadable: {e}");
                let unknown = ("(unreadable)".to_owned(), String::new(), 1, None);
                (id.clone(), Conclusion::unreadable(detail), unknown)
            }
        };
        if conclusion.write(store, dead_slot, id, Timestamp::now())? {
            done.settled += 1;
            if let Conclusion::Record(Outcome::Failure(failure)) = &conclusion {
                let (task, queue, attempt, trace_id) = &coordinates;
                shared.reports.failed(FailedEnding {
                    id,
                    task,
                    queue,
                    attempt: *attempt,
                    failure,
                    trace_id: trace_id.as_deref(),
                });
            }
            info!(slot = dead_slot, task = %id, "{description} recovered from a dead slot");
        }
    }
    store.bury_slot(
        dead_slot,
        Timestamp::now(),
        current.config.settings.dead_worker_expiry(),
    )?;
    Ok(done)
}
