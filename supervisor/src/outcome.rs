//! The one path from "how a run ended" to Redis.
//!
//! Every ending goes through here, whoever saw it: a slot whose task
//! finished, failed, crashed or timed out; recovery of a dead slot ("worker
//! died"); the in-process test runner of the facade crate. Two steps:
//!
//! 1. [`conclude`]: the policy ([`settle`], pure: a reentrant task that
//!    was interrupted goes back to the front of its queue, a bounded number
//!    of times when the interruption may be its own fault), then
//!    `process_outcome` on a final outcome.
//! 2. [`Conclusion::write`]: one atomic transition in Redis, fenced by the
//!    slot's id, so that of two supervisors recording the same task only
//!    the first one counts.
//!
//! Callers choose how to retry step 2 (a slot backs off while Redis is
//! down; recovery returns the error) but never repeat step 1, so
//! `process_outcome` runs once per ending.

use jiff::Timestamp;
use redis_tasks_protocol::{FailureKind, Outcome, TaskRecord};
use redis_tasks_store::{Store, StoreError};
use redis_tasks_worker::{MiddlewareChain, TaskRegistry};

/// What the task function's options and the settings say about retrying
/// an interrupted run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The task function is marked reentrant: an interrupted run may
    /// start again from the beginning.
    pub reentrant: bool,
    /// The `max_aborted_runs` setting: how often crashes, deaths and start
    /// failures may requeue a reentrant task.
    pub max_aborted_runs: u32,
}

impl Policy {
    /// The policy for task function `task` (not reentrant when the binary
    /// does not know it).
    pub fn for_task(registry: &TaskRegistry, task: &str, max_aborted_runs: u32) -> Policy {
        Policy {
            reentrant: registry
                .get(task)
                .is_some_and(|def| def.options().reentrant),
            max_aborted_runs,
        }
    }
}

/// What happens to a task whose run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conclusion {
    /// Record this final outcome.
    Record(Outcome),
    /// Put the task back at the front of its queue; `reason` goes into its
    /// list of aborted runs.
    Requeue {
        /// Why the attempt ended.
        reason: String,
    },
}

/// Decides what happens to `record` whose run ended with `ended`, and runs
/// `process_outcome` when that is a final outcome.
pub fn conclude(
    record: &TaskRecord,
    ended: Outcome,
    policy: Policy,
    chain: &MiddlewareChain,
) -> Conclusion {
    match settle(ended, policy, record.aborted_runs.len()) {
        Conclusion::Record(outcome) => Conclusion::Record(chain.process_outcome(record, outcome)),
        requeue @ Conclusion::Requeue { .. } => requeue,
    }
}

impl Conclusion {
    /// The ending of a task whose record cannot be read: a failure that
    /// `process_outcome` does not see (there is no record to show it).
    pub fn unreadable(detail: String) -> Conclusion {
        Conclusion::Record(Outcome::failure(FailureKind::Invalid(detail)))
    }

    /// Writes the conclusion for task `id` held by `slot`: `Ok(false)` when
    /// the slot no longer holds the task (someone else recorded it).
    pub fn write(
        &self,
        store: &Store,
        slot: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.write_with_result(store, slot, id, None, now)
    }

    /// Like [`write`](Conclusion::write), storing `result` (the task's
    /// return value as JSON text) when the conclusion is a success; a
    /// failure (also one a middleware made of a success) stores none.
    pub fn write_with_result(
        &self,
        store: &Store,
        slot: &str,
        id: &str,
        result: Option<&str>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        match self {
            Conclusion::Requeue { reason } => store.requeue_interrupted(slot, id, reason, now),
            Conclusion::Record(outcome) => store.finish_with_result(
                slot,
                id,
                outcome.status(),
                outcome.error_text().as_deref(),
                result.filter(|_| outcome.is_success()),
                now,
            ),
        }
    }
}

/// The policy alone (pure): whether `ended` is final, or an interruption
/// of a reentrant task that goes back to its queue. `aborted_runs` is how
/// many interrupted attempts the record already lists. A shutdown always
/// requeues a reentrant task (it is not the task's fault); a timeout never
/// does.
pub fn settle(ended: Outcome, policy: Policy, aborted_runs: usize) -> Conclusion {
    let kind = match ended {
        Outcome::Success => return Conclusion::Record(Outcome::Success),
        Outcome::Failure(failure) => failure.kind,
    };
    let interrupted = matches!(
        kind,
        FailureKind::Shutdown
            | FailureKind::Crashed(_)
            | FailureKind::KilledBySupervisor(_)
            | FailureKind::WorkerDied
            | FailureKind::StartFailed(_)
    );
    if !(policy.reentrant && interrupted) {
        return Conclusion::Record(Outcome::failure(kind));
    }
    let bounded = !matches!(kind, FailureKind::Shutdown);
    let runs = u32::try_from(aborted_runs).unwrap_or(u32::MAX);
    if bounded && runs >= policy.max_aborted_runs {
        return Conclusion::Record(Outcome::failure(FailureKind::TooManyAbortedRuns {
            runs: runs.saturating_add(1),
            last: kind.to_string(),
        }));
    }
    Conclusion::Requeue {
        reason: kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_tasks_protocol::ExitReason;

    const SEGV: FailureKind = FailureKind::Crashed(ExitReason::Signal(11));

    fn policy(reentrant: bool) -> Policy {
        Policy {
            reentrant,
            max_aborted_runs: 3,
        }
    }

    fn failure(kind: FailureKind) -> Conclusion {
        Conclusion::Record(Outcome::failure(kind))
    }

    #[test]
    fn reported_results_become_outcomes() {
        assert_eq!(
            settle(Outcome::Success, policy(true), 0),
            Conclusion::Record(Outcome::Success)
        );
        let panic = FailureKind::Panic("boom at a.rs:1:1".into());
        assert_eq!(
            settle(Outcome::failure(panic.clone()), policy(true), 0),
            failure(panic)
        );
    }

    #[test]
    fn interruptions_fail_plain_tasks_and_requeue_reentrant_ones() {
        for kind in [SEGV, FailureKind::Shutdown, FailureKind::WorkerDied] {
            assert_eq!(
                settle(Outcome::failure(kind.clone()), policy(false), 0),
                failure(kind.clone())
            );
            assert_eq!(
                settle(Outcome::failure(kind.clone()), policy(true), 0),
                Conclusion::Requeue {
                    reason: kind.to_string()
                }
            );
        }
    }

    #[test]
    fn timeouts_and_protocol_violations_are_never_requeued() {
        for kind in [
            FailureKind::Timeout { secs: 2 },
            FailureKind::ProtocolViolation("garbage".into()),
        ] {
            assert_eq!(
                settle(Outcome::failure(kind.clone()), policy(true), 0),
                failure(kind)
            );
        }
    }

    #[test]
    fn crashes_requeue_at_most_max_aborted_runs_times() {
        assert!(matches!(
            settle(Outcome::failure(SEGV), policy(true), 2),
            Conclusion::Requeue { .. }
        ));
        assert_eq!(
            settle(Outcome::failure(SEGV), policy(true), 3),
            failure(FailureKind::TooManyAbortedRuns {
                runs: 4,
                last: SEGV.to_string()
            })
        );
        // Shutdowns are not the task's fault and do not count against it.
        assert!(matches!(
            settle(Outcome::failure(FailureKind::Shutdown), policy(true), 10),
            Conclusion::Requeue { .. }
        ));
    }
}
