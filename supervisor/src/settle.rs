//! Turning how a run ended into what happens to the task.
//!
//! Pure decisions, no I/O: a reentrant task that was interrupted goes back
//! to the front of its queue (a bounded number of times when the
//! interruption may be its own fault); everything else becomes a final
//! outcome for `process_outcome` and Redis.

use redis_tasks_protocol::ipc::TaskResult;
use redis_tasks_protocol::{FailureKind, Outcome};

/// How a run ended, before any policy is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// The worker process reported a result.
    Reported(TaskResult),
    /// The run was cut short; the supervisor names why.
    Aborted(FailureKind),
}

/// What to do with the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Record this final outcome (after `process_outcome`).
    Record(Outcome),
    /// Put the task back at the front of its queue; `reason` goes into its
    /// list of aborted runs.
    Requeue {
        /// Why the attempt ended.
        reason: String,
    },
}

/// Decides what happens to a task whose run ended as `end`.
///
/// `aborted_runs` is how many interrupted attempts the record already
/// lists; `max_aborted_runs` bounds requeues after crashes, deaths and
/// start failures of a reentrant task, so one that crashes every time
/// cannot loop forever. A shutdown always requeues a reentrant task (it is
/// not the task's fault); a timeout never does.
pub fn settle(
    end: RunEnd,
    reentrant: bool,
    aborted_runs: usize,
    max_aborted_runs: u32,
) -> Settlement {
    let kind = match end {
        RunEnd::Reported(TaskResult::Success) => return Settlement::Record(Outcome::Success),
        RunEnd::Reported(TaskResult::Error(text)) => FailureKind::Error(text),
        RunEnd::Reported(TaskResult::Panic(text)) => FailureKind::Panic(text),
        RunEnd::Reported(TaskResult::Invalid(text)) => FailureKind::Invalid(text),
        RunEnd::Aborted(kind) => kind,
    };
    let interrupted = matches!(
        kind,
        FailureKind::Shutdown
            | FailureKind::Crashed(_)
            | FailureKind::WorkerDied
            | FailureKind::StartFailed(_)
    );
    if !(reentrant && interrupted) {
        return Settlement::Record(Outcome::failure(kind));
    }
    let bounded = !matches!(kind, FailureKind::Shutdown);
    let runs = u32::try_from(aborted_runs).unwrap_or(u32::MAX);
    if bounded && runs >= max_aborted_runs {
        return Settlement::Record(Outcome::failure(FailureKind::TooManyAbortedRuns {
            runs: runs.saturating_add(1),
            last: kind.to_string(),
        }));
    }
    Settlement::Requeue {
        reason: kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_tasks_protocol::ExitReason;

    const SEGV: FailureKind = FailureKind::Crashed(ExitReason::Signal(11));

    fn failure(kind: FailureKind) -> Settlement {
        Settlement::Record(Outcome::failure(kind))
    }

    #[test]
    fn reported_results_become_outcomes() {
        let end = RunEnd::Reported(TaskResult::Success);
        assert_eq!(
            settle(end, true, 0, 3),
            Settlement::Record(Outcome::Success)
        );
        let end = RunEnd::Reported(TaskResult::Panic("boom at a.rs:1:1".into()));
        assert_eq!(
            settle(end, true, 0, 3),
            failure(FailureKind::Panic("boom at a.rs:1:1".into()))
        );
    }

    #[test]
    fn interruptions_fail_plain_tasks_and_requeue_reentrant_ones() {
        for kind in [SEGV, FailureKind::Shutdown, FailureKind::WorkerDied] {
            assert_eq!(
                settle(RunEnd::Aborted(kind.clone()), false, 0, 3),
                failure(kind.clone())
            );
            assert_eq!(
                settle(RunEnd::Aborted(kind.clone()), true, 0, 3),
                Settlement::Requeue {
                    reason: kind.to_string()
                }
            );
        }
    }

    #[test]
    fn timeouts_and_protocol_violations_are_never_requeued() {
        let timeout = FailureKind::Timeout { secs: 2 };
        assert_eq!(
            settle(RunEnd::Aborted(timeout.clone()), true, 0, 3),
            failure(timeout)
        );
        let bad = FailureKind::ProtocolViolation("garbage".into());
        assert_eq!(
            settle(RunEnd::Aborted(bad.clone()), true, 0, 3),
            failure(bad)
        );
    }

    #[test]
    fn crashes_requeue_at_most_max_aborted_runs_times() {
        assert!(matches!(
            settle(RunEnd::Aborted(SEGV), true, 2, 3),
            Settlement::Requeue { .. }
        ));
        assert_eq!(
            settle(RunEnd::Aborted(SEGV), true, 3, 3),
            failure(FailureKind::TooManyAbortedRuns {
                runs: 4,
                last: SEGV.to_string()
            })
        );
        // Shutdowns are not the task's fault and do not count against it.
        assert!(matches!(
            settle(RunEnd::Aborted(FailureKind::Shutdown), true, 10, 3),
            Settlement::Requeue { .. }
        ));
    }
}
