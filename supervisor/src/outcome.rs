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

use jiff::{SignedDuration, Timestamp};
use redis_tasks_protocol::{Failure, FailureClass, FailureKind, Outcome, RetryPolicy, TaskRecord};
use redis_tasks_store::{Ending, HeldChild, Store, StoreError};

use crate::metrics::Ended;
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
    /// The task function's retry policy (a task's own, stored with it by
    /// its producer, wins).
    pub retry: Option<RetryPolicy>,
}

impl Policy {
    /// The policy for task function `task` (not reentrant when the binary
    /// does not know it).
    pub fn for_task(registry: &TaskRegistry, task: &str, max_aborted_runs: u32) -> Policy {
        let def = registry.get(task);
        Policy {
            reentrant: def.is_some_and(|def| def.options().reentrant),
            max_aborted_runs,
            retry: def.and_then(|def| def.options().retry),
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
    /// The attempt failed and the retry policy gives the task another one:
    /// it waits in the delayed set until `failure.next_attempt`.
    Retry {
        /// How the attempt ended, with the time of the next one.
        failure: Failure,
    },
}

/// Decides what happens to `record` whose run ended with `ended`, and runs
/// `process_outcome` when that is a final outcome.
///
/// A failure the retry policy (the task's own, else the task function's)
/// gives another attempt reaches `process_outcome` with
/// [`Failure::next_attempt`] set; what `process_outcome` returns decides:
/// a failure still carrying a time is retried then, one without is final,
/// a success ends the task as finished.
pub fn conclude(
    record: &TaskRecord,
    ended: Outcome,
    policy: Policy,
    chain: &MiddlewareChain,
) -> Conclusion {
    match settle(ended, policy, record.aborted_runs.len()) {
        Conclusion::Record(outcome) => {
            let retry = record.retry.or(policy.retry);
            let outcome = plan_retry(
                outcome,
                retry.as_ref(),
                retries_done(record),
                Timestamp::now(),
                fastrand::f64(),
            );
            let outcome = expire_retry(outcome, record.expires_at);
            match chain.process_outcome(record, outcome) {
                Outcome::Failure(failure) if failure.next_attempt.is_some() => {
                    Conclusion::Retry { failure }
                }
                outcome => Conclusion::Record(outcome),
            }
        }
        other => other,
    }
}

/// How many retries the task has had since its last final ending: the
/// attempts at the end of its record that a retry followed. A task that a
/// person requeued after its final failure (`failed requeue`) starts
/// afresh with its whole policy.
pub fn retries_done(record: &TaskRecord) -> usize {
    record
        .attempts
        .iter()
        .rev()
        .take_while(|a| a.next_attempt_at.is_some())
        .count()
}

/// Sets [`Failure::next_attempt`] on a failure that `retry` gives another
/// attempt (pure: `now` and the jitter's `random` in `[0, 1)` come from
/// the caller). `retries_done` is [`retries_done`] of the record.
pub fn plan_retry(
    outcome: Outcome,
    retry: Option<&RetryPolicy>,
    retries_done: usize,
    now: Timestamp,
    random: f64,
) -> Outcome {
    let (Outcome::Failure(mut failure), Some(retry)) = (outcome.clone(), retry) else {
        return outcome;
    };
    if !retry.retries(&failure.kind, retries_done) {
        return outcome;
    }
    let number = u32::try_from(retries_done)
        .unwrap_or(u32::MAX)
        .saturating_add(1);
    let delay = retry.delay(number, random);
    let at = SignedDuration::try_from(delay)
        .ok()
        .and_then(|d| now.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX);
    failure.next_attempt = Some(at);
    Outcome::Failure(failure)
}

/// A failure whose planned retry would come at or after the task's
/// expiry `expires_at` becomes final: [`FailureKind::Expired`], naming
/// the attempt's error (pure). Anything else is returned unchanged.
pub fn expire_retry(outcome: Outcome, expires_at: Option<Timestamp>) -> Outcome {
    match (outcome, expires_at) {
        (Outcome::Failure(failure), Some(at))
            if failure.next_attempt.is_some_and(|next| next >= at) =>
        {
            Outcome::failure(FailureKind::Expired {
                at,
                last_error: Some(failure.message()),
            })
        }
        (outcome, _) => outcome,
    }
}

/// Shows `record`, which a fetch ended as expired before it started, to
/// `process_outcome` (as [`FailureKind::Expired`]). The task is recorded
/// already: what the chain returns changes nothing.
pub fn report_expired(record: &TaskRecord, chain: &MiddlewareChain) {
    let at = record
        .expires_at
        .or(record.ended_at)
        .unwrap_or_else(Timestamp::now);
    let outcome = Outcome::failure(FailureKind::Expired {
        at,
        last_error: None,
    });
    let _ = chain.process_outcome(record, outcome);
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
        self.write_with_result(store, slot, id, (None, &[]), now)
    }

    /// Like [`write`](Conclusion::write), storing `result` (the task's
    /// return value as JSON text) and writing `children` (the tasks it
    /// asked for on success) when the conclusion is a success; a failure
    /// (also one a middleware made of a success) stores and writes none.
    pub fn write_with_result(
        &self,
        store: &Store,
        slot: &str,
        id: &str,
        (result, children): (Option<&str>, &[HeldChild]),
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let text = self.error_text();
        store.conclude_named(slot, id, self.ending(result, children, &text, now), now)
    }

    /// The text recorded with this conclusion: the failure's message, or
    /// the requeue's reason.
    pub fn error_text(&self) -> String {
        match self {
            Conclusion::Record(Outcome::Failure(failure)) | Conclusion::Retry { failure } => {
                failure.message()
            }
            Conclusion::Requeue { reason } => reason.clone(),
            Conclusion::Record(Outcome::Success) => String::new(),
        }
    }

    /// The one place a conclusion becomes the store's [`Ending`] (which
    /// picks the script): `text` is [`error_text`](Self::error_text),
    /// `result` and `children` are kept for a success only, a retry without a time is due
    /// `now`.
    pub fn ending<'a>(
        &'a self,
        result: Option<&'a str>,
        children: &'a [HeldChild],
        text: &'a str,
        now: Timestamp,
    ) -> Ending<'a> {
        match self {
            Conclusion::Requeue { .. } => Ending::Requeue { reason: text },
            Conclusion::Retry { failure } => Ending::RetryAt {
                error: text,
                at: failure.next_attempt.unwrap_or(now),
            },
            Conclusion::Record(Outcome::Failure(failure))
                if failure.kind.class() == FailureClass::Canceled =>
            {
                Ending::Canceled { error: text }
            }
            Conclusion::Record(Outcome::Failure(failure))
                if failure.kind.class() == FailureClass::Expired =>
            {
                Ending::Expired { error: text }
            }
            Conclusion::Record(Outcome::Failure(_)) => Ending::Failed { error: text },
            Conclusion::Record(Outcome::Success) => Ending::Finished { result, children },
        }
    }

    /// How the metrics and the counters name this conclusion once written.
    pub(crate) fn ended(&self) -> Ended {
        match self {
            Conclusion::Requeue { .. } => Ended::Requeued,
            Conclusion::Retry { .. } => Ended::Retried,
            Conclusion::Record(Outcome::Success) => Ended::Finished,
            Conclusion::Record(Outcome::Failure(f)) if f.kind.class() == FailureClass::Canceled => {
                Ended::Canceled
            }
            Conclusion::Record(Outcome::Failure(f)) if f.kind.class() == FailureClass::Expired => {
                Ended::Expired
            }
            Conclusion::Record(Outcome::Failure(_)) => Ended::Failed,
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
    let class = kind.class();
    let interrupted = matches!(class, FailureClass::Shutdown | FailureClass::Crash);
    if !(policy.reentrant && interrupted) {
        return Conclusion::Record(Outcome::failure(kind));
    }
    let bounded = class != FailureClass::Shutdown;
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
            retry: None,
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
    fn a_retry_is_planned_after_the_backoff_while_retries_are_left() {
        let now: Timestamp = "2026-11-29T08:00:00Z".parse().expect("time");
        let retry = RetryPolicy::new(2)
            .base(std::time::Duration::from_secs(10))
            .jitter(redis_tasks_protocol::Jitter::None);
        let failed = Outcome::failure(FailureKind::Error("no".into()));
        let first = plan_retry(failed.clone(), Some(&retry), 0, now, 0.5);
        assert_eq!(
            first.next_attempt(),
            Some(now + SignedDuration::from_secs(10))
        );
        let second = plan_retry(failed.clone(), Some(&retry), 1, now, 0.5);
        assert_eq!(
            second.next_attempt(),
            Some(now + SignedDuration::from_secs(20))
        );
        assert_eq!(
            plan_retry(failed.clone(), Some(&retry), 2, now, 0.5),
            failed
        );
        assert_eq!(plan_retry(failed.clone(), None, 0, now, 0.5), failed);
        assert_eq!(
            plan_retry(Outcome::Success, Some(&retry), 0, now, 0.5),
            Outcome::Success
        );
        let timeout = Outcome::failure(FailureKind::Timeout { secs: 1 });
        assert_eq!(
            plan_retry(timeout.clone(), Some(&retry), 0, now, 0.5),
            timeout
        );
    }

    #[test]
    fn a_retry_due_at_or_after_the_expiry_is_not_made_and_expiry_is_never_retried() {
        let now: Timestamp = "2026-11-29T08:00:00Z".parse().expect("time");
        let retry = RetryPolicy::new(5)
            .base(std::time::Duration::from_secs(10))
            .jitter(redis_tasks_protocol::Jitter::None);
        let failed = Outcome::failure(FailureKind::Error("no".into()));
        let planned = plan_retry(failed, Some(&retry), 0, now, 0.5);
        let later = now + SignedDuration::from_secs(60);
        assert_eq!(expire_retry(planned.clone(), Some(later)), planned);
        assert_eq!(expire_retry(planned.clone(), None), planned);
        let soon = now + SignedDuration::from_secs(5);
        let expired = expire_retry(planned, Some(soon));
        assert_eq!(
            expired,
            Outcome::failure(FailureKind::Expired {
                at: soon,
                last_error: Some("no".into())
            })
        );
        assert_eq!(expired.status(), redis_tasks_protocol::TaskStatus::Expired);
        assert_eq!(
            plan_retry(expired.clone(), Some(&retry), 0, now, 0.5),
            expired
        );
        let conclusion = Conclusion::Record(expired);
        let text = conclusion.error_text();
        assert!(text.contains("expired at") && text.contains("no"), "{text}");
        assert!(matches!(
            conclusion.ending(None, &[], &text, now),
            Ending::Expired { error } if error == text
        ));
        assert_eq!(conclusion.ended(), Ended::Expired);
        // A final failure stays as it is.
        let last = Outcome::failure(FailureKind::Error("no".into()));
        assert_eq!(expire_retry(last.clone(), Some(soon)), last);
    }

    /// A `process_outcome` that stops retries (`Stop`) or marks failures
    /// handled (`Handle`).
    #[derive(Debug)]
    pub(super) enum Judge {
        Stop,
        Handle,
    }

    impl redis_tasks_worker::Middleware for Judge {
        fn process_outcome(&self, _: &TaskRecord, outcome: Outcome) -> Outcome {
            match (self, outcome) {
                (Judge::Stop, Outcome::Failure(mut f)) => {
                    f.next_attempt = None;
                    Outcome::Failure(f)
                }
                (Judge::Handle, Outcome::Failure(_)) => Outcome::Success,
                (_, other) => other,
            }
        }
    }

    fn retrying_record() -> TaskRecord {
        let mut record = record_at("2026-11-29T08:00:00Z");
        record.retry = Some(RetryPolicy::new(3));
        record
    }

    pub(super) fn record_at(t: &str) -> TaskRecord {
        let t: Timestamp = t.parse().expect("time");
        serde_json::from_value(serde_json::json!({
            "id": "a", "task": "t", "args": [], "status": "running", "queue": "q",
            "description": "t()", "error": null, "enqueued_at": t, "started_at": t,
            "ended_at": null, "meta": {}, "aborted_runs": [], "timeout": null,
            "retry": null, "attempts": [], "run_at": null
        }))
        .expect("record")
    }

    pub(super) fn chain(judge: Option<Judge>) -> MiddlewareChain {
        let items: Vec<std::sync::Arc<dyn redis_tasks_worker::Middleware>> = judge
            .into_iter()
            .map(|j| std::sync::Arc::new(j) as std::sync::Arc<dyn redis_tasks_worker::Middleware>)
            .collect();
        MiddlewareChain::select(&items, &[]).expect("chain")
    }

    #[test]
    fn process_outcome_may_stop_a_retry_or_mark_the_failure_handled() {
        let failed = || Outcome::failure(FailureKind::Error("no".into()));
        let record = retrying_record();
        let plain = conclude(&record, failed(), policy(false), &chain(None));
        assert!(
            matches!(&plain, Conclusion::Retry { failure } if failure.next_attempt.is_some()),
            "{plain:?}"
        );
        assert_eq!(
            conclude(&record, failed(), policy(false), &chain(Some(Judge::Stop))),
            Conclusion::Record(failed())
        );
        assert_eq!(
            conclude(
                &record,
                failed(),
                policy(false),
                &chain(Some(Judge::Handle))
            ),
            Conclusion::Record(Outcome::Success)
        );
        // The task function's policy applies when the task has none.
        let bare = record_at("2026-11-29T08:00:00Z");
        let with_fn_policy = Policy {
            retry: Some(RetryPolicy::new(1)),
            ..policy(false)
        };
        assert!(matches!(
            conclude(&bare, failed(), with_fn_policy, &chain(None)),
            Conclusion::Retry { .. }
        ));
        assert_eq!(
            conclude(&bare, failed(), policy(false), &chain(None)),
            Conclusion::Record(failed())
        );
    }

    #[test]
    fn retries_are_counted_since_the_last_final_ending() {
        use redis_tasks_protocol::{Attempt, TaskStatus};
        let t: Timestamp = "2026-11-29T08:00:00Z".parse().expect("time");
        let attempt = |next: bool| Attempt {
            started_at: Some(t),
            ended_at: t,
            status: TaskStatus::Failed,
            error: Some("no".into()),
            next_attempt_at: next.then_some(t),
        };
        let mut record = record_at("2026-11-29T08:00:00Z");
        assert_eq!(retries_done(&record), 0);
        record.attempts = vec![attempt(true), attempt(true)];
        assert_eq!(retries_done(&record), 2);
        // Failed for good, then requeued by hand: a fresh start.
        record.attempts.push(attempt(false));
        assert_eq!(retries_done(&record), 0);
        record.attempts.push(attempt(true));
        assert_eq!(retries_done(&record), 1);
    }

    #[test]
    fn a_canceled_run_is_final_even_for_reentrant_tasks() {
        assert_eq!(
            settle(Outcome::failure(FailureKind::Canceled), policy(true), 0),
            failure(FailureKind::Canceled)
        );
        assert_eq!(
            Outcome::failure(FailureKind::Canceled).status(),
            redis_tasks_protocol::TaskStatus::Canceled
        );
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

/// Property tests: whatever a record holds (a raw producer writes any
/// number, any policy that parses, any history), planning its run and its
/// ending does not panic, and every time it derives stays in range.
#[cfg(test)]
mod properties {
    use std::time::{Duration, Instant};

    use jiff::Timestamp;
    use proptest::prelude::*;
    use redis_tasks_protocol::retry::Attempt;
    use redis_tasks_protocol::{ExitReason, FailureKind, Outcome, RetryPolicy, TaskStatus};

    use super::{Policy, conclude, plan_retry, retries_done, settle};
    use crate::slot::capped_timeout;

    fn kinds() -> impl Strategy<Value = FailureKind> {
        prop_oneof![
            ".{0,20}".prop_map(FailureKind::Error),
            ".{0,20}".prop_map(FailureKind::Panic),
            any::<i32>().prop_map(|s| FailureKind::Crashed(ExitReason::Signal(s))),
            any::<u64>().prop_map(|secs| FailureKind::Timeout { secs }),
            Just(FailureKind::Shutdown),
            Just(FailureKind::WorkerDied),
            Just(FailureKind::Canceled),
            ".{0,20}".prop_map(FailureKind::StartFailed),
            (timestamps(), proptest::option::of(".{0,20}"))
                .prop_map(|(at, last_error)| FailureKind::Expired { at, last_error }),
        ]
    }

    fn timestamps() -> impl Strategy<Value = Timestamp> {
        (Timestamp::MIN.as_second()..=Timestamp::MAX.as_second())
            .prop_map(|s| Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH))
    }

    /// A retry policy as a raw producer could write it: any numbers at all;
    /// only those that pass `from_json` (as when a record is read) count.
    fn policies() -> impl Strategy<Value = Option<RetryPolicy>> {
        (any::<u32>(), any::<f64>(), any::<f64>(), any::<f64>()).prop_map(
            |(max_retries, base, factor, cap)| {
                let json = serde_json::json!({
                    "max_retries": max_retries, "base": base, "factor": factor, "cap": cap
                });
                RetryPolicy::from_json(&json.to_string()).ok()
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_record_timeout_gives_a_deadline(secs in any::<u64>(), max in 1u64..=u64::MAX) {
            let timeout = capped_timeout(Duration::from_secs(secs), Duration::from_secs(max));
            prop_assert!(timeout <= Duration::from_secs(max));
            // The run loop's deadline: checked, never an overflow panic.
            let _ = Instant::now().checked_add(timeout);
        }

        #[test]
        fn planning_any_ending_of_any_record_does_not_panic(
            kind in kinds(),
            policy in policies(),
            done in 0usize..2000,
            aborted in any::<usize>(),
            max_aborted_runs in any::<u32>(),
            reentrant in any::<bool>(),
            now in timestamps(),
            random in any::<f64>(),
        ) {
            let ended = Outcome::failure(kind);
            let planned = plan_retry(ended.clone(), policy.as_ref(), done, now, random);
            if let Outcome::Failure(f) = &planned
                && let Some(at) = f.next_attempt {
                    prop_assert!(at >= now);
                }
            if matches!(ended, Outcome::Failure(ref f) if f.kind.class() == redis_tasks_protocol::FailureClass::Expired) {
                prop_assert_eq!(&planned, &ended, "an expiry is never retried");
            }
            let p = Policy { reentrant, max_aborted_runs, retry: policy };
            let _ = settle(ended, p, aborted);
        }

        #[test]
        fn concluding_a_record_with_any_history_does_not_panic(
            kind in kinds(),
            policy in policies(),
            attempts in 0usize..50,
            aborted in 0usize..50,
            timeout in any::<Option<u64>>(),
            expires_at in proptest::option::of(timestamps()),
        ) {
            let mut record = super::tests::record_at("2026-11-29T08:00:00Z");
            record.retry = policy;
            record.timeout = timeout;
            record.expires_at = expires_at;
            let at: Timestamp = "2026-11-29T08:00:00Z".parse().expect("time");
            record.attempts = (0..attempts)
                .map(|_| Attempt {
                    started_at: Some(at),
                    ended_at: at,
                    status: TaskStatus::Failed,
                    error: None,
                    next_attempt_at: Some(Timestamp::MAX),
                })
                .collect();
            record.aborted_runs = (0..aborted)
                .map(|_| serde_json::from_value(serde_json::json!({
                    "started_at": at, "ended_at": at, "reason": "x"
                })).expect("run"))
                .collect();
            prop_assert_eq!(retries_done(&record), attempts);
            let p = Policy { reentrant: true, max_aborted_runs: 3, retry: None };
            let chain = super::tests::chain(None);
            let _ = conclude(&record, Outcome::failure(kind), p, &chain);
        }
    }
}
