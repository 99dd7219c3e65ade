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
use redis_tasks_protocol::{FailureKind, Outcome, TaskStatus};
use redis_tasks_store::{Store, StoreError};
use tracing::{info, warn};

use crate::settle::{RunEnd, Settlement, settle};
use crate::shared::Shared;

/// What recovering one slot did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
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
        let record = match store.task(id) {
            Ok(record) => record,
            Err(e) => {
                warn!(slot = dead_slot, task = %id, "task of a dead slot has no readable record: {e}");
                let text = format!("worker died; task record unreadable: {e}");
                store.finish(
                    dead_slot,
                    id,
                    TaskStatus::Failed,
                    Some(&text),
                    Timestamp::now(),
                )?;
                continue;
            }
        };
        let reentrant = shared
            .registry
            .get(&record.task)
            .is_some_and(|d| d.options().reentrant);
        let settlement = settle(
            RunEnd::Aborted(FailureKind::WorkerDied),
            reentrant,
            record.aborted_runs.len(),
            current.config.settings.max_aborted_runs,
        );
        let recorded = match settlement {
            Settlement::Requeue { reason } => {
                store.requeue_interrupted(dead_slot, id, &reason, Timestamp::now())?
            }
            Settlement::Record(outcome) => {
                let outcome = current.chain.process_outcome(&record, outcome);
                let (status, error) = match &outcome {
                    Outcome::Success => (TaskStatus::Finished, None),
                    Outcome::Failure(f) => (TaskStatus::Failed, Some(f.message())),
                };
                store.finish(dead_slot, id, status, error.as_deref(), Timestamp::now())?
            }
        };
        if recorded {
            done.settled += 1;
            info!(slot = dead_slot, task = %id, "{} recovered from a dead slot", record.description);
        }
    }
    store.deregister_slot(dead_slot)?;
    Ok(done)
}
