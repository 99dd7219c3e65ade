//! The delayed set and cancel requests.
//!
//! Tasks due later (a delayed enqueue, a retry after its backoff) wait in
//! the sorted set `P:scheduled`, scored by when they are due, with status
//! `scheduled`. Every supervisor calls [`Store::promote_due`] often; one
//! script moves each due task to the tail of its queue and drops it from
//! the set in the same step, so a task is promoted exactly once however
//! many supervisors race.
//!
//! A running task is canceled through its supervisor: [`Store::cancel_task`]
//! records a request in `P:cancel_requests`, each supervisor reads the
//! requests ([`Store::cancel_requests`]) and the one whose slot runs the
//! task kills it and records it `canceled` ([`Store::finish_canceled`],
//! which also drops the request).

use jiff::Timestamp;
use redis::Value;
use redis_tasks_protocol::model::TaskStatus;

use super::part::Part;
use super::record::{score, time_text};
use super::{Store, StoreError, calls, scripts};

/// What one promotion pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Promoted {
    /// Tasks moved to their queue.
    pub moved: u64,
    /// When the next task in the delayed set is due, if any.
    pub next_due: Option<Timestamp>,
}

/// What [`Store::cancel_task`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelResult {
    /// The task was queued or scheduled and is now canceled.
    Canceled,
    /// The task is running: its supervisor was asked to stop it, which
    /// takes a moment (its status becomes `canceled` then).
    Requested,
}

/// The time of a delayed-set score (unix seconds); out of range means
/// "far away".
fn score_time(secs: f64) -> Timestamp {
    Timestamp::from_microsecond((secs * 1e6) as i64).unwrap_or(if secs < 0.0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

impl Store {
    /// Moves up to `batch` tasks due at `now` from the delayed set to the
    /// tail of their queues (status `queued`), each exactly once.
    pub fn promote_due(&self, now: Timestamp, batch: usize) -> Result<Promoted, StoreError> {
        let all = self.each(|p| p.promote_due(now, batch))?;
        Ok(Promoted {
            moved: all.iter().map(|p| p.moved).sum(),
            next_due: all.iter().filter_map(|p| p.next_due).min(),
        })
    }

    /// How many tasks wait in the delayed set.
    pub fn scheduled_count(&self) -> Result<u64, StoreError> {
        Ok(self.each(Part::scheduled_count)?.into_iter().sum())
    }

    /// How many tasks were canceled so far (queued, scheduled or running),
    /// counted by the scripts that cancel them.
    pub fn canceled_count(&self) -> Result<u64, StoreError> {
        Ok(self.each(Part::canceled_count)?.into_iter().sum())
    }

    /// Up to `len` ids of the delayed set from position `offset`, soonest
    /// due first.
    pub fn scheduled_ids(&self, offset: usize, len: usize) -> Result<Vec<String>, StoreError> {
        self.merged_range(|k| k.scheduled(), offset, len)
    }

    /// Up to `limit` tasks of the delayed set with when each is due,
    /// soonest first (`redis-tasks dashboard`'s delayed page). A task
    /// promoted or canceled meanwhile may still be listed: read its record
    /// for its status.
    pub fn scheduled_due(&self, limit: usize) -> Result<Vec<(String, Timestamp)>, StoreError> {
        let mut all = self.each(|p| p.scheduled_due(limit))?.concat();
        all.sort_by_key(|(_, at)| *at);
        all.truncate(limit);
        Ok(all)
    }

    /// Cancels a task in any state where that makes sense: a queued or
    /// scheduled one at once ([`Store::cancel`]), a running one by asking
    /// its supervisor ([`CancelResult::Requested`]). A task that has ended
    /// is refused with [`StoreError::NotQueued`] naming its status, with
    /// nothing changed.
    pub fn cancel_task(&self, id: &str) -> Result<CancelResult, StoreError> {
        let part = self.locate(id)?;
        let (result, woken) = part.cancel_here(id)?;
        // The script woke the supervisor in the task's partition; its
        // promoter sleeps on partition 0's wake list.
        if let Some(supervisor) = woken.filter(|_| part.index != self.zero().index) {
            self.zero().wake(&supervisor)?;
        }
        Ok(result)
    }

    /// Waits up to `wait` for a poke of supervisor `supervisor`'s wake list
    /// (a cancel request for one of its tasks); returns whether one came.
    /// Uses the blocking connection, like [`Store::fetch`].
    pub fn wait_for_wake(
        &self,
        supervisor: &str,
        wait: std::time::Duration,
    ) -> Result<bool, StoreError> {
        self.zero().wait_for_wake(supervisor, wait)
    }

    /// The pending cancel requests: `(task id, slot running it)` pairs.
    /// Requests whose task no longer runs are dropped on the way.
    pub fn cancel_requests(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self.each(Part::cancel_requests)?.concat())
    }

    /// Sends the failed attempt of task `id` in `slot` to the delayed set:
    /// the attempt (with `error` and `at`) goes into its `attempts`, it
    /// becomes `scheduled` until `at`, the slot goes idle. Fenced like
    /// [`Store::finish`].
    pub fn schedule_retry(
        &self,
        slot: &str,
        id: &str,
        error: &str,
        at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.fenced(|p| p.schedule_retry(slot, id, error, at, now))
    }

    /// Records that running task `id` in `slot` was canceled (status
    /// `canceled`, `error`, the record kept for the registry TTL) and drops
    /// its cancel request. Fenced like [`Store::finish`].
    pub fn finish_canceled(
        &self,
        slot: &str,
        id: &str,
        error: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.fenced(|p| p.finish_canceled(slot, id, error, now))
    }
}

impl Part {
    pub(crate) fn promote_due(&self, now: Timestamp, batch: usize) -> Result<Promoted, StoreError> {
        let (moved, next): (u64, String) = self.run(&[], |c, keys| {
            scripts::PROMOTE
                .key(keys.scheduled())
                .key(keys.queues())
                .arg(keys.prefix())
                .arg(score(now))
                .arg(batch.max(1))
                .arg(time_text(now))
                .invoke(c)
        })?;
        let next_due = if next.is_empty() {
            None
        } else {
            let secs: f64 = next.parse().map_err(|_| StoreError::UnexpectedReply {
                what: "promote",
                detail: format!("score {next:?}"),
            })?;
            Some(score_time(secs))
        };
        Ok(Promoted { moved, next_due })
    }

    pub(crate) fn scheduled_count(&self) -> Result<u64, StoreError> {
        let key = self.keys().scheduled();
        self.read(&[(&key, "zset")], |c, _| {
            redis::cmd("ZCARD").arg(&key).query(c)
        })
    }

    pub(crate) fn canceled_count(&self) -> Result<u64, StoreError> {
        let key = self.keys().canceled_count();
        self.read(&[(&key, "string")], |c, _| {
            let n: Option<u64> = redis::cmd("GET").arg(&key).query(c)?;
            Ok(n.unwrap_or(0))
        })
    }

    pub(crate) fn scheduled_due(
        &self,
        limit: usize,
    ) -> Result<Vec<(String, Timestamp)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.keys().scheduled();
        let pairs: Vec<(String, f64)> = self.read(&[(&key, "zset")], |c, _| {
            redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(limit - 1)
                .arg("WITHSCORES")
                .query(c)
        })?;
        Ok(pairs
            .into_iter()
            .map(|(id, secs)| (id, score_time(secs)))
            .collect())
    }

    /// Cancels a scheduled task; `false` when it is not scheduled (any
    /// more: it may have been promoted meanwhile).
    pub(crate) fn cancel_scheduled(&self, id: &str) -> Result<bool, StoreError> {
        let inv = calls::cancel_scheduled(self.keys(), id, self.registry_ttl());
        let done: i64 = self.run(&[], |c, _| inv.invoke(c))?;
        Ok(done == 1)
    }

    /// Wakes supervisor `supervisor`'s promoter, which sleeps on this
    /// part's wake list (partition 0's): for a cancel request recorded in
    /// another partition, whose script woke the list there.
    pub(crate) fn wake(&self, supervisor: &str) -> Result<(), StoreError> {
        let key = self.keys().wake(supervisor);
        let pipe = calls::wake(self.keys(), supervisor);
        self.run(&[(&key, "list")], |c, _| pipe.query::<()>(c))
    }

    /// [`cancel_task`](Store::cancel_task) in this partition; with a
    /// request, also the supervisor whose wake list it poked.
    pub(crate) fn cancel_here(
        &self,
        id: &str,
    ) -> Result<(CancelResult, Option<String>), StoreError> {
        // A task can move on between two steps (fetched, promoted): look
        // again a few times.
        let mut last = None;
        for round in 0..calls::CANCEL_ROUNDS {
            if let Some(pause) = calls::cancel_pause(round) {
                std::thread::sleep(pause);
            }
            match self.cancel(id) {
                Ok(()) => return Ok((CancelResult::Canceled, None)),
                Err(StoreError::NotQueued {
                    status: TaskStatus::Running,
                    ..
                })
                | Err(StoreError::Taken { .. }) => {}
                Err(e) => return Err(e),
            }
            match self.request_cancel(id)? {
                Ok(woken) => return Ok((CancelResult::Requested, woken)),
                Err(status) => {
                    if !matches!(status, TaskStatus::Queued | TaskStatus::Scheduled) {
                        return Err(StoreError::NotQueued {
                            id: id.to_owned(),
                            status,
                        });
                    }
                    last = Some(status);
                }
            }
        }
        Err(StoreError::NotQueued {
            id: id.to_owned(),
            status: last.unwrap_or(TaskStatus::Queued),
        })
    }

    /// Records a cancel request for a running task: `Ok` with the
    /// supervisor whose wake list was poked (if any), `Err(status)` when
    /// the task is not running.
    fn request_cancel(&self, id: &str) -> Result<Result<Option<String>, TaskStatus>, StoreError> {
        let inv = calls::request_cancel(self.keys(), id);
        let reply: Vec<Value> = self.run(&[], |c, _| inv.invoke(c))?;
        calls::request_cancel_reply(id, reply)
    }

    pub(crate) fn wait_for_wake(
        &self,
        supervisor: &str,
        wait: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let key = self.keys().wake(supervisor);
        // Redis reads a timeout of 0 as "forever": never send less than 1 ms.
        let secs = wait.as_secs_f64().max(0.001);
        let popped: Option<(String, String)> =
            self.run_blocking(wait, &[(&key, "list")], |c, _| {
                redis::cmd("BLPOP")
                    .arg(&key)
                    .arg(format!("{secs:.3}"))
                    .query(c)
            })?;
        Ok(popped.is_some())
    }

    pub(crate) fn cancel_requests(&self) -> Result<Vec<(String, String)>, StoreError> {
        let flat: Vec<String> = self.run(&[], |c, keys| {
            scripts::CANCEL_POLL
                .key(keys.cancel_requests())
                .arg(keys.prefix())
                .invoke(c)
        })?;
        Ok(flat
            .chunks(2)
            .filter_map(|pair| match pair {
                [id, slot] => Some((id.clone(), slot.clone())),
                _ => None,
            })
            .collect())
    }

    pub(crate) fn schedule_retry(
        &self,
        slot: &str,
        id: &str,
        error: &str,
        at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let done: i64 = self.run(&[], |c, keys| {
            scripts::SCHEDULE_RETRY
                .key(keys.worker_task(slot))
                .key(keys.worker(slot))
                .key(keys.task(id))
                .key(keys.scheduled())
                .arg(keys.prefix())
                .arg(id)
                .arg(time_text(now))
                .arg(error)
                .arg(time_text(at))
                .arg(score(at))
                .invoke(c)
        })?;
        Ok(done == 1)
    }

    pub(crate) fn finish_canceled(
        &self,
        slot: &str,
        id: &str,
        error: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let done: i64 = self.run(&[], |c, keys| {
            scripts::FINISH_CANCELED
                .key(keys.worker_task(slot))
                .key(keys.worker(slot))
                .key(keys.task(id))
                .key(keys.cancel_requests())
                .arg(keys.prefix())
                .arg(id)
                .arg(time_text(now))
                .arg(error)
                .arg(self.registry_ttl())
                .arg(score(now))
                .invoke(c)
        })?;
        Ok(done == 1)
    }
}
