//! Recording what became of a slot's task: the conclusion written to
//! Redis (retried while Redis fails), counted in the metrics and logged at
//! info with the run's duration (docs/observability.md), and the ending of
//! a task whose handling panicked.

use std::sync::atomic::Ordering;

use jiff::Timestamp;
use redis_tasks_protocol::{FailureClass, FailureKind, Outcome};
use redis_tasks_store::{HeldChild, Lease, Store, StoreError};
use tracing::{debug, error, info, warn};

use super::Slot;
use crate::backoff::Backoff;
use crate::error_reports::FailedEnding;
use crate::outcome::Conclusion;
use crate::shared::Mode;

/// What the end-of-task log line says about the run.
pub(super) struct RunInfo {
    pub(super) name: String,
    /// Whether this binary registers the name (for metric labels).
    pub(super) known: bool,
    /// The queue the task was fetched from.
    pub(super) queue: String,
    pub(super) duration: std::time::Duration,
    /// Which run of the task this was (1 for the first).
    pub(super) attempt: usize,
    /// The trace the task was enqueued in, if any.
    pub(super) trace_id: Option<String>,
}

/// A task's end that its slot writes once the next task runs: the next
/// one was read ahead, so its run starts first and this write (which also
/// reads the one after ahead) overlaps it (`Slot::overlap`).
pub(crate) struct PendingEnd {
    pub(super) lease: Lease,
    pub(super) description: String,
    pub(super) conclusion: Conclusion,
    pub(super) result: Option<String>,
    pub(super) children: Vec<HeldChild>,
    pub(super) run: Option<RunInfo>,
}

/// What a write of an end also does.
#[derive(Clone, Copy)]
enum Then<'a> {
    /// Nothing: the end alone.
    Nothing,
    /// Takes the slot's next task when the slot goes on fetching.
    Fetch,
    /// Takes the next task ahead, beside this task that runs meanwhile.
    FetchBeside(&'a str),
}

impl Slot {
    /// A panic while handling the task of `lease` (a bug: nothing a
    /// record or a worker process sends should cause one) ends that task
    /// as failed, with the panic's text, and leaves the slot as new: its
    /// worker process (if any survived the unwinding) is retired and the
    /// loop fetches again. The supervisor goes on serving and stopping.
    pub(super) fn after_panic(&mut self, lease: &Lease, panic: &(dyn std::any::Any + Send)) {
        let text = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        error!(slot = %self.id, task = %lease.id, queue = %lease.queue, "slot panicked while handling the task ({text}); the task is failed and the slot starts afresh");
        if let Some(process) = self.process.take() {
            self.shared.retire(process);
        }
        // Not a crash of the task's own (never retried or requeued): the
        // supervisor failed, and its worker process, if any, was killed.
        let why = format!(
            "the supervisor's slot panicked while handling the task ({text}); the task was stopped"
        );
        let conclusion = Conclusion::Record(Outcome::failure(FailureKind::Invalid(why)));
        self.write(
            lease,
            "task whose slot failed",
            &conclusion,
            (None, &[]),
            None,
        );
        self.shared.metrics.slot_progress(self.index, None, false);
        self.update_view(|v| {
            v.task = None;
            v.pid = None;
        });
    }

    /// Writes a conclusion (retrying while Redis fails) with the task's
    /// result and the children it releases if it finished, counts it and
    /// logs it (at info, with the run's duration, see
    /// docs/observability.md). An end still pending is written first.
    ///
    /// One store call for every ending ([`Store::conclude`]); a finished
    /// or failed task of a slot that goes on fetching also takes the
    /// slot's next task in the same round trip
    /// ([`Store::conclude_and_fetch`]); the loop runs it next
    /// (`self.next`).
    pub(super) fn write(
        &mut self,
        lease: &Lease,
        description: &str,
        conclusion: &Conclusion,
        (result, children): (Option<&str>, &[HeldChild]),
        run: Option<&RunInfo>,
    ) {
        self.write_pending();
        let written = self.store_end(lease, conclusion, (result, children), Then::Fetch, true);
        self.report_end(written, lease, description, conclusion, run);
    }

    /// Writes the end left pending, if any, alone (retrying while Redis
    /// fails): before anything else the slot records or hands back.
    pub(super) fn write_pending(&mut self) {
        if let Some(end) = self.pending.take() {
            self.write_end(end, Then::Nothing, true);
        }
    }

    /// Tries once to write the end left pending while `running` (the task
    /// read ahead) runs, taking the task after it ahead in the same
    /// round trip; on an error the end stays pending (written, with
    /// retries, before the slot's next write).
    pub(super) fn write_pending_beside(&mut self, running: &str) {
        if let Some(end) = self.pending.take() {
            self.pending = self.write_end(end, Then::FetchBeside(running), false);
        }
    }

    /// Writes `end` ([`Self::store_end`]) and reports it; an end that one
    /// try (no `retry`) could not write comes back, to stay pending.
    fn write_end(&mut self, end: PendingEnd, then: Then, retry: bool) -> Option<PendingEnd> {
        let both = (end.result.as_deref(), end.children.as_slice());
        let written = self.store_end(&end.lease, &end.conclusion, both, then, retry);
        if written.is_none() && !retry {
            return Some(end);
        }
        self.report_end(
            written,
            &end.lease,
            &end.description,
            &end.conclusion,
            end.run.as_ref(),
        );
        None
    }

    /// The store call of an end: `Some(whether the slot held the task)`,
    /// or `None` when Redis failed (after one try unless `retry`; with
    /// `retry`, only when giving up during a stop). Sets `self.next` to
    /// the task taken with it.
    fn store_end(
        &mut self,
        lease: &Lease,
        conclusion: &Conclusion,
        (result, children): (Option<&str>, &[HeldChild]),
        then: Then,
        retry: bool,
    ) -> Option<bool> {
        let queues = match then {
            Then::Nothing => None,
            Then::Fetch | Then::FetchBeside(_) => self
                .shared
                .mode()
                .fetches()
                .then(|| self.shared.current().config.fetch_order(super::random))
                .filter(|q| !q.is_empty()),
        };
        let running = match then {
            Then::FetchBeside(id) => id,
            Then::Nothing | Then::Fetch => "",
        };
        let mut next = None;
        let text = conclusion.error_text();
        let mut op = |store: &Store, now: Timestamp| {
            let ending = conclusion.ending(result, children, &text, now);
            match &queues {
                Some(queues) => {
                    let (done, fetched) =
                        store.conclude_and_fetch_beside(lease, ending, queues, running, now)?;
                    next = fetched;
                    Ok(done)
                }
                None => store.conclude(lease, ending, now),
            }
        };
        let written = if retry {
            self.with_redis("record an outcome", op)
        } else {
            match op(&self.store, Timestamp::now()) {
                Ok(done) => {
                    self.shared.note_redis_ok();
                    Some(done)
                }
                Err(e) => {
                    if e.is_connection_error() {
                        self.shared.note_redis_error(&e);
                    }
                    debug!(slot = %self.id, task = %lease.id, "cannot record an outcome beside the next run ({e}); it is written after that run");
                    None
                }
            }
        };
        if next.is_some() {
            self.next = next;
        }
        written
    }

    /// Counts and logs an end once its write came back.
    fn report_end(
        &mut self,
        written: Option<bool>,
        lease: &Lease,
        description: &str,
        conclusion: &Conclusion,
        run: Option<&RunInfo>,
    ) {
        let id = lease.id.as_str();
        let (name, secs) = run.map_or(("", 0.0), |r| (r.name.as_str(), r.duration.as_secs_f64()));
        let queue = lease.queue.as_str();
        let slot = self.id.as_str();
        if let (Some(run), Some(true)) = (run, written) {
            let known = run.known.then_some(run.name.as_str());
            self.shared
                .metrics
                .task_ended(&run.queue, known, conclusion.ended(), run.duration);
        }
        if let (Some(true), Conclusion::Record(Outcome::Failure(failure))) = (written, conclusion)
            && failure.kind.class() != FailureClass::Canceled
        {
            self.shared.reports.failed(FailedEnding {
                id,
                task: if name.is_empty() {
                    "(unreadable)"
                } else {
                    name
                },
                queue,
                attempt: run.map_or(1, |r| r.attempt),
                failure,
                trace_id: run.and_then(|r| r.trace_id.as_deref()),
            });
        }
        match (written, conclusion) {
            (Some(true), Conclusion::Requeue { reason }) => {
                self.shared
                    .counters
                    .requeued
                    .fetch_add(1, Ordering::Relaxed);
                info!(task = %id, name, queue, slot, duration_s = secs, outcome = "requeued", "{description} requeued at the front of its queue after {secs:.3} s: {reason}");
            }
            (Some(true), Conclusion::Record(Outcome::Success)) => {
                self.shared
                    .counters
                    .finished
                    .fetch_add(1, Ordering::Relaxed);
                info!(task = %id, name, queue, slot, duration_s = secs, outcome = "finished", "{description} finished in {secs:.3} s");
            }
            (Some(true), Conclusion::Retry { failure }) => {
                let at = failure
                    .next_attempt
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                info!(task = %id, name, queue, slot, duration_s = secs, outcome = "retried", "{description} failed after {secs:.3} s: {failure}; retry due at {at}");
            }
            (Some(true), Conclusion::Record(Outcome::Failure(failure)))
                if failure.kind.class() == FailureClass::Canceled =>
            {
                self.shared
                    .counters
                    .canceled
                    .fetch_add(1, Ordering::Relaxed);
                info!(task = %id, name, queue, slot, duration_s = secs, outcome = "canceled", "{description} canceled while running after {secs:.3} s");
            }
            (Some(true), Conclusion::Record(Outcome::Failure(failure)))
                if failure.kind.class() == FailureClass::Expired =>
            {
                info!(task = %id, name, queue, slot, duration_s = secs, outcome = "expired", "{description} failed after {secs:.3} s and is not retried: {failure}");
            }
            (Some(true), Conclusion::Record(Outcome::Failure(failure)))
                if failure.kind.class() == FailureClass::Invalid =>
            {
                // Bad input (an unknown task, arguments of the wrong type)
                // comes from a producer, not from the task: someone must
                // look at the producer, so it is a warning.
                self.shared.counters.failed.fetch_add(1, Ordering::Relaxed);
                warn!(task = %id, name, queue, slot, duration_s = secs, outcome = "failed", "{description} was not run: {failure} (fix the producer that enqueued it)");
            }
            (Some(true), Conclusion::Record(Outcome::Failure(failure))) => {
                self.shared.counters.failed.fetch_add(1, Ordering::Relaxed);
                info!(task = %id, name, queue, slot, duration_s = secs, outcome = "failed", "{description} failed after {secs:.3} s: {failure}");
            }
            (Some(false), _) => warn!(
                task = %id,
                "outcome not recorded: this slot no longer holds the task (recovered elsewhere)"
            ),
            (None, _) => {}
        }
    }

    /// Runs a Redis write, retrying with [`Backoff`] until it works: while
    /// Redis is unreachable, and also on other errors (a key of the wrong
    /// type under our prefix, say), which someone may mend; the task stays
    /// in this slot's list meanwhile and the slot fetches nothing else.
    /// It gives up (returning `None`) on a permanent error during a
    /// graceful shutdown, and after a few attempts of any kind during an
    /// immediate one: the task then stays in this slot's list, where
    /// recovery finds it at the next start.
    pub(super) fn with_redis<T>(
        &self,
        what: &str,
        mut op: impl FnMut(&Store, Timestamp) -> Result<T, StoreError>,
    ) -> Option<T> {
        let mut backoff = Backoff::new();
        loop {
            match op(&self.store, Timestamp::now()) {
                Ok(value) => {
                    self.shared.note_redis_ok();
                    return Some(value);
                }
                Err(e) => {
                    let connection = e.is_connection_error();
                    if connection {
                        self.shared.note_redis_error(&e);
                    }
                    // An outage during a graceful stop is waited out (the
                    // outcome is worth it); an immediate stop waits less.
                    let give_up = match self.shared.mode() {
                        Mode::StoppingNow => backoff.failures() >= 3,
                        Mode::Stopping => !connection && backoff.failures() >= 1,
                        Mode::Serving | Mode::Quiet => false,
                    };
                    if give_up {
                        error!(slot = %self.id, "giving up: cannot {what} ({e}); recovery will handle the task at the next start");
                        return None;
                    }
                    let wait = backoff.next_wait();
                    if connection {
                        warn!(slot = %self.id, "cannot {what} ({e}); retrying in {wait:?}");
                    } else {
                        error!(slot = %self.id, "cannot {what} ({e}); retrying in {wait:?} (mend the data, or stop the supervisor: recovery takes over at the next start)");
                    }
                    // Waits, but wakes for a command (a shutdown).
                    let _ = self.commands.rx.recv_timeout(wait);
                }
            }
        }
    }
}
