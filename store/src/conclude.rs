//! One transition for every ending of a fetched task: the caller says how
//! the run ended ([`Ending`]) and this module picks the script (finish,
//! fail, cancel, retry, requeue), in the partition the task's
//! [`Lease`] names, or, on a busy slot, the finish that also takes the
//! slot's next task.

use jiff::Timestamp;

use crate::children::{self, HeldChild};
use crate::part::Part;
use crate::{Fetched, Lease, Store, StoreError};
use redis_tasks_protocol::model::TaskStatus;

/// How a run ended, as far as Redis is concerned.
#[derive(Debug, Clone, Copy)]
pub enum Ending<'a> {
    /// Finished, with the JSON text of its result when it returned one,
    /// releasing the tasks it asked for on success.
    Finished {
        /// The task's return value as JSON text.
        result: Option<&'a str>,
        /// Tasks written in the same step ([`Store::hold_child`]).
        children: &'a [HeldChild],
    },
    /// Failed for good, with the error text.
    Failed {
        /// Why.
        error: &'a str,
    },
    /// Canceled while running (the canceled registry; the record expires).
    Canceled {
        /// Why, as recorded.
        error: &'a str,
    },
    /// Expired: its expiry passed before its next attempt was due (the
    /// expired registry), with the error text.
    Expired {
        /// Why, as recorded.
        error: &'a str,
    },
    /// Failed, with another attempt due at `at` (the delayed set).
    RetryAt {
        /// Why this attempt failed.
        error: &'a str,
        /// When the next attempt is due.
        at: Timestamp,
    },
    /// Interrupted: back to the front of its queue, `reason` noted in its
    /// aborted runs (empty: handed back unstarted, nothing noted).
    Requeue {
        /// Why the attempt ended.
        reason: &'a str,
    },
}

/// An ending the finish script records: its status, error, result and
/// the children it releases.
struct FinalEnd<'a> {
    status: TaskStatus,
    error: Option<&'a str>,
    result: Option<&'a str>,
    children: &'a [HeldChild],
}

impl<'a> Ending<'a> {
    /// What the finish script records for a finished, failed or expired
    /// task, else `None`.
    fn final_end(&self) -> Option<FinalEnd<'a>> {
        let (status, error, result, children) = match *self {
            Ending::Finished { result, children } => (TaskStatus::Finished, None, result, children),
            Ending::Failed { error } => (TaskStatus::Failed, Some(error), None, &[][..]),
            Ending::Expired { error } => (TaskStatus::Expired, Some(error), None, &[][..]),
            _ => return None,
        };
        Some(FinalEnd {
            status,
            error,
            result,
            children,
        })
    }
}

impl Store {
    /// Records `ending` for the task of `lease`, fenced on the slot's
    /// list in the task's partition: `Ok(false)` with nothing changed when
    /// the slot no longer holds it.
    pub fn conclude(
        &self,
        lease: &Lease,
        ending: Ending<'_>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.by_lease(lease)
            .conclude_named(&lease.slot, &lease.id, ending, now)
    }

    /// [`conclude`](Store::conclude), and for a finished or failed task
    /// the slot's next task from `queues` in the same partition, in the
    /// same script call ([`Store::finish_and_fetch`]).
    pub fn conclude_and_fetch(
        &self,
        lease: &Lease,
        ending: Ending<'_>,
        queues: &[String],
        now: Timestamp,
    ) -> Result<(bool, Option<Fetched>), StoreError> {
        self.conclude_and_fetch_beside(lease, ending, queues, "", now)
    }

    /// [`conclude_and_fetch`](Store::conclude_and_fetch) for a slot that
    /// already runs its next task, `running` (taken ahead, see
    /// [`Store::fetch_ahead`]): the task taken here is read ahead too, and
    /// waits for `running` to end. An empty `running`: none.
    pub fn conclude_and_fetch_beside(
        &self,
        lease: &Lease,
        ending: Ending<'_>,
        queues: &[String],
        running: &str,
        now: Timestamp,
    ) -> Result<(bool, Option<Fetched>), StoreError> {
        let Some(end) = ending.final_end() else {
            return Ok((self.conclude(lease, ending, now)?, None));
        };
        let part = self.by_lease(lease);
        let children = children::encode(end.children, now, part.opts.max_task_timeout)?;
        part.finish_and_fetch(
            lease, end.status, end.error, end.result, &children, queues, running, now,
        )
    }

    /// [`conclude`](Store::conclude) for a task named by slot and id only
    /// (recovery of a dead slot): tried, fenced, in each partition.
    pub fn conclude_named(
        &self,
        slot: &str,
        id: &str,
        ending: Ending<'_>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.fenced(|p| p.conclude_named(slot, id, ending, now))
    }
}

impl Part {
    /// [`Store::conclude_named`] in this partition: the script for
    /// `ending`, fenced on the slot's list here.
    pub(crate) fn conclude_named(
        &self,
        slot: &str,
        id: &str,
        ending: Ending<'_>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        if let Some(end) = ending.final_end() {
            let children = children::encode(end.children, now, self.opts.max_task_timeout)?;
            return self
                .finish_with_result(slot, id, end.status, end.error, end.result, &children, now);
        }
        match ending {
            Ending::Canceled { error } => self.finish_canceled(slot, id, error, now),
            Ending::RetryAt { error, at } => self.schedule_retry(slot, id, error, at, now),
            Ending::Requeue { reason } => self.requeue_interrupted(slot, id, reason, now),
            Ending::Finished { .. } | Ending::Failed { .. } | Ending::Expired { .. } => Ok(false),
        }
    }
}
