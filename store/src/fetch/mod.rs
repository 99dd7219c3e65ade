//! Taking a task into a worker slot, and recording how its run ended.
//!
//! Reliable fetch: a task id is moved from its queue into the slot's private
//! list `P:worker:<slot>:task` in the same atomic step that marks it running,
//! so a crash at any point leaves it somewhere maintenance can find it.
//! The end of a run is fenced: it is recorded only if the slot still holds
//! the id, so a slot that lost its task to maintenance cannot overwrite the
//! outcome.
//!
//! How a slot waits for work lives behind [`Store::fetch`] alone: today it
//! tries every queue at once, then blocks on the first queue only (`BLMOVE`),
//! so new work on the main queue is seen at once and lower-priority queues
//! within one `block` period.
//!
//! With partitioned data the slot tries each partition in turn (the one
//! its last lease names first, [`Store::fetch_after`], then the home
//! partitions of its queues, then the rest)
//! and blocks on the first queue's home partition for at most
//! [`PARTITIONED_BLOCK_CAP`], so work in another partition waits at most
//! that long when every slot is idle.
//!
//! `reply.rs` reads the scripts' answers into a [`Fetched`] task and its
//! [`Lease`].

use std::time::{Duration, Instant};

use jiff::Timestamp;
use redis::Value;

use super::history::Tally;
use super::part::Part;
use super::record::{score, time_text};
use super::{Store, StoreError, scripts};
use redis_tasks_protocol::model::TaskStatus;

mod expired;
mod function;
mod reply;

pub(crate) use expired::ExpiredNotes;
pub use expired::{ExpiredTask, MAX_EXPIRED_NOTES};
pub(crate) use function::Functions;
use reply::Answer;
pub use reply::{Fetched, Lease};

/// The longest a slot of partitioned data blocks on one partition before
/// it looks at all of them again.
pub const PARTITIONED_BLOCK_CAP: Duration = Duration::from_secs(1);

/// The longest an idle slot goes without looking again at a queue that
/// flow control holds back (paused, every permit taken). It is woken
/// sooner by every step that could let a task through (an enqueue, a
/// promotion, a requeue, a freed permit, a change of the flow settings:
/// the scripts' `poke`) and when a rate window opens; this bound is only a
/// safety net (a wake token lost with a Redis restart, say).
pub const HELD_RECHECK: Duration = Duration::from_secs(1);

impl Store {
    /// Takes the next task for `slot` from the first non-empty queue of
    /// `queues` and marks it running; waits up to `block` for work on the
    /// first queue when all are empty (no wait for a zero `block`).
    ///
    /// An id whose record is missing is moved to the failed registry with a
    /// minimal record (error "task record missing") and the fetch goes on.
    /// A task whose `expires_at` has passed (Redis's clock) is never
    /// started: it ends `expired` in the expired registry, the fetch goes
    /// on, and [`Store::take_expired`] hands it to the caller.
    /// An id whose record this code did not write (no `task` field: the
    /// Python original's, say) goes back to the head of its queue, its
    /// record untouched, and the fetch fails with
    /// [`StoreError::ForeignTask`].
    /// Fails with [`StoreError::SlotBusy`] if the slot still holds a task.
    pub fn fetch(
        &self,
        slot: &str,
        queues: &[String],
        block: Duration,
    ) -> Result<Option<Fetched>, StoreError> {
        self.fetch_after(slot, queues, block, None)
    }

    /// [`fetch`](Store::fetch) for a slot whose last task had lease
    /// `last`: on partitioned data that task's partition is looked at
    /// first, so an id a lost reply left in the slot's list there is met
    /// at once (as [`StoreError::SlotBusy`], to be handed back) rather
    /// than after the partitions before it run dry. The slot keeps its
    /// last lease; the store keeps nothing.
    pub fn fetch_after(
        &self,
        slot: &str,
        queues: &[String],
        block: Duration,
        last: Option<&Lease>,
    ) -> Result<Option<Fetched>, StoreError> {
        if queues.is_empty() {
            return Ok(None);
        }
        let (order, home) = self.fetch_order(queues, last.map(|l| l.partition));
        fetch_in_order(&order, home, slot, queues, block)
    }

    /// Records the end of a run: `status` ([`TaskStatus::Finished`],
    /// [`TaskStatus::Failed`], or [`TaskStatus::Expired`] for a retry that
    /// would come after the task's expiry), `ended_at = now`, the error text, the
    /// registry entry, and the slot back to idle.
    ///
    /// Fenced: only if `slot` still holds `id` in its private list; returns
    /// `false` and changes nothing otherwise.
    pub fn finish(
        &self,
        slot: &str,
        id: &str,
        status: TaskStatus,
        error: Option<&str>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.finish_with_result(slot, id, status, error, None, now)
    }

    /// Like [`finish`](Store::finish), also storing `result` (the JSON text
    /// of the task's return value) in the record's `result` field. Every
    /// final end also frees the task's uniqueness key and wakes those
    /// waiting for it ([`Store::wait_for_end`]).
    pub fn finish_with_result(
        &self,
        slot: &str,
        id: &str,
        status: TaskStatus,
        error: Option<&str>,
        result: Option<&str>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.fenced(|p| p.finish_with_result(slot, id, status, error, result, "", now))
    }

    /// Records a final end of the task of `lease` as
    /// [`finish_with_result`](Store::finish_with_result) does and, when the
    /// slot held it, takes the slot's next task from `queues` in the same
    /// partition, all in one round trip (a busy slot's path: one script
    /// call per task). Returns whether the end was recorded, and the next
    /// task when there was one; a next task that cannot be read from the
    /// reply is left in the slot's list, where the next
    /// [`fetch`](Store::fetch) meets it as [`StoreError::SlotBusy`].
    pub fn finish_and_fetch(
        &self,
        lease: &Lease,
        status: TaskStatus,
        error: Option<&str>,
        result: Option<&str>,
        queues: &[String],
        now: Timestamp,
    ) -> Result<(bool, Option<Fetched>), StoreError> {
        self.by_lease(lease)
            .finish_and_fetch(lease, status, error, result, "", queues, "", now)
    }

    /// Puts an interrupted task back at the FRONT of its origin queue:
    /// appends `{started_at, ended_at: now, reason}` to its aborted runs,
    /// sets it queued and clears its start time; the slot goes idle.
    ///
    /// Fenced like [`finish`](Store::finish): returns `false` and changes
    /// nothing when the slot does not hold `id`.
    pub fn requeue_interrupted(
        &self,
        slot: &str,
        id: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.fenced(|p| p.requeue_interrupted(slot, id, reason, now))
    }

    /// Hands a task this slot fetched but did not start back to the FRONT
    /// of its queue, as if it had never been fetched (no aborted run is
    /// noted). Fenced like [`Store::finish`]; returns whether the slot held
    /// the task. A supervisor uses it when a shutdown or a pause begins
    /// while a fetch was already under way, and for a task read ahead
    /// that waited too long ([`Store::fetch_ahead`]).
    ///
    /// A task whose cancel was asked while the slot held it (it read as
    /// running) does not go back: it ends canceled, unstarted.
    pub fn release_unstarted(
        &self,
        slot: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.fenced(|p| p.release_unstarted(slot, id, now))
    }

    /// Takes `running`'s slot's next task from `queues` while that task
    /// runs (a read-ahead), in `running`'s partition, without blocking:
    /// the slot's list may hold `running` and the task taken, nothing
    /// else. The task taken is marked running, like any fetched one, and
    /// waits in the supervisor for `running` to end; the slot hands it
    /// back ([`Store::release_unstarted`]) if that takes long. Nothing is
    /// read ahead from a partition with flow settings (a waiting task
    /// would hold a permit).
    pub fn fetch_ahead(
        &self,
        running: &Lease,
        queues: &[String],
    ) -> Result<Option<Fetched>, StoreError> {
        if queues.is_empty() {
            return Ok(None);
        }
        let part = self.by_lease(running);
        match part.try_fetch(&running.slot, queues, &running.id, running.partition)? {
            Answer::Foreign(e) => Err(e),
            Answer::Task(f) => Ok(Some(*f)),
            _ => Ok(None),
        }
    }
}

/// [`fetch`](Store::fetch) over `order` (the parts in the order the slot
/// tries them, [`Store::fetch_order`]): each part's fetch script in turn,
/// then a blocking wait on `home` (the first queue's partition), for at
/// most [`PARTITIONED_BLOCK_CAP`] when there are other parts to look at
/// again. Every part's fetch script refuses while the slot's list there
/// holds an id, so a task stranded by a lost reply is met as
/// [`StoreError::SlotBusy`] (and handed back) by the first fetch that
/// reaches its partition.
fn fetch_in_order(
    order: &[&Part],
    home: &Part,
    slot: &str,
    queues: &[String],
    block: Duration,
) -> Result<Option<Fetched>, StoreError> {
    let first = &queues[0];
    let cap = if order.len() > 1 {
        PARTITIONED_BLOCK_CAP
    } else {
        block
    };
    let deadline = Instant::now() + block;
    loop {
        let mut held: Vec<String> = Vec::new();
        let mut window: Option<Duration> = None;
        for part in order {
            match part.try_fetch(slot, queues, "", part.index)? {
                Answer::Foreign(e) => return Err(e),
                Answer::Task(f) => return Ok(Some(*f)),
                Answer::Held { queues, wait } => {
                    held.extend(queues);
                    window = match (window, wait) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                Answer::Nothing | Answer::Missing => {}
            }
        }
        let mut wait = deadline.saturating_duration_since(Instant::now()).min(cap);
        if let Some(window) = window {
            // Tasks held back by a rate limit (of a queue or a task
            // function) are looked at again when its window opens.
            wait = wait.min(window);
        }
        if !held.is_empty() {
            // A slot with a queue held back by flow control never blocks
            // on a queue (a blocking move could take a task past a limit,
            // and would not see a permit freed elsewhere): the fetch
            // script put it in `P:flow:waiting`, and any step that could
            // let a task through pokes it; a rate window that opens ends
            // the wait too.
            wait = wait.min(HELD_RECHECK);
            if wait.is_zero() {
                return Ok(None);
            }
            home.wait_for_flow(slot, wait)?;
            continue;
        }
        if wait.is_zero() {
            return Ok(None);
        }
        let Some(id) = home.wait_for(slot, first, wait)? else {
            continue;
        };
        match home.start(slot, &id, first, home.index)? {
            Answer::Foreign(e) => return Err(e),
            Answer::Task(f) => return Ok(Some(*f)),
            Answer::Nothing => return Ok(None),
            Answer::Missing | Answer::Held { .. } => continue,
        }
    }
}

impl Part {
    /// One non-blocking attempt over all queues; `partition` is this
    /// part's index among the partitions (0 when unpartitioned); `keep`:
    /// the task the slot runs meanwhile (a read-ahead), or empty.
    fn try_fetch(
        &self,
        slot: &str,
        queues: &[String],
        keep: &str,
        partition: usize,
    ) -> Result<Answer, StoreError> {
        let now = Timestamp::now();
        let limits = self.record_limits();
        let expected = self.fetch_keys(slot, queues);
        let expected: Vec<(&str, &'static str)> =
            expected.iter().map(|(k, t)| (k.as_str(), *t)).collect();
        let value: Value = self.run_blocking(Duration::ZERO, &expected, |c, keys| {
            let mut inv = scripts::FETCH.prepare_invoke();
            inv.key(keys.worker_task(slot)).key(keys.worker(slot));
            for q in queues {
                inv.key(keys.queue(q));
            }
            inv.arg(keys.prefix())
                .arg(slot)
                .arg(time_text(now))
                .arg(score(now));
            for (limit, _) in limits {
                inv.arg(limit);
            }
            inv.arg(self.registry_ttl()).arg(keep);
            for q in queues {
                inv.arg(q);
            }
            inv.invoke(c)
        })?;
        self.answer(slot, value, partition)
    }

    /// Blocks up to `wait` for an id on `queue`, moving it into the slot's
    /// list.
    fn wait_for(
        &self,
        slot: &str,
        queue: &str,
        wait: Duration,
    ) -> Result<Option<String>, StoreError> {
        let qk = self.keys().queue(queue);
        let lk = self.keys().worker_task(slot);
        // Redis reads a timeout of 0 as "forever": never send less than 1 ms.
        let secs = wait.as_secs_f64().max(0.001);
        self.run_blocking(wait, &[(&qk, "list"), (&lk, "list")], |c, _| {
            redis::cmd("BLMOVE")
                .arg(&qk)
                .arg(&lk)
                .arg("LEFT")
                .arg("RIGHT")
                .arg(format!("{secs:.3}"))
                .query(c)
        })
    }

    /// Waits up to `wait` for a poke: the fetch script that held back
    /// `slot`'s queues put it in `P:flow:waiting`, and a step that could
    /// let a task through pushes a token on its `P:flow:wake:<slot>`.
    fn wait_for_flow(&self, slot: &str, wait: Duration) -> Result<(), StoreError> {
        let wake = self.keys().flow_wake(slot);
        let secs = wait.as_secs_f64().max(0.001);
        self.run_blocking(wait, &[(&wake, "list")], |c, _| {
            redis::cmd("BLPOP")
                .arg(&wake)
                .arg(format!("{secs:.3}"))
                .query::<Option<(String, String)>>(c)
        })?;
        Ok(())
    }

    /// Marks the id a blocking move put into the slot's list as running.
    fn start(
        &self,
        slot: &str,
        id: &str,
        queue: &str,
        partition: usize,
    ) -> Result<Answer, StoreError> {
        let now = Timestamp::now();
        let limits = self.record_limits();
        let expected = self.fetch_keys(slot, &[]);
        let expected: Vec<(&str, &'static str)> =
            expected.iter().map(|(k, t)| (k.as_str(), *t)).collect();
        let value: Value = self.run_blocking(Duration::ZERO, &expected, |c, keys| {
            let mut inv = scripts::START.prepare_invoke();
            inv.key(keys.worker_task(slot))
                .key(keys.worker(slot))
                .arg(keys.prefix())
                .arg(slot)
                .arg(id)
                .arg(time_text(now))
                .arg(score(now))
                .arg(queue);
            for (limit, _) in limits {
                inv.arg(limit);
            }
            inv.arg(self.registry_ttl());
            inv.invoke(c)
        })?;
        self.answer(slot, value, partition)
    }

    /// [`Store::finish_with_result`] in this partition; a finished task
    /// also releases `children` (their JSON rows, `children::encode`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finish_with_result(
        &self,
        slot: &str,
        id: &str,
        status: TaskStatus,
        error: Option<&str>,
        result: Option<&str>,
        children: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let registry = match status {
            TaskStatus::Finished => self.keys().finished(),
            TaskStatus::Failed => self.keys().failed(),
            TaskStatus::Expired => self.keys().expired(),
            other => return Err(StoreError::NotFinal { status: other }),
        };
        let expected = self.finish_keys(slot, id, &registry);
        let expected: Vec<(&str, &'static str)> =
            expected.iter().map(|(k, t)| (k.as_str(), *t)).collect();
        let done: i64 = self.run(&expected, |c, keys| {
            scripts::FINISH
                .key(keys.worker_task(slot))
                .key(keys.worker(slot))
                .key(keys.task(id))
                .key(&registry)
                .arg(keys.prefix())
                .arg(id)
                .arg(status.as_str())
                .arg(time_text(now))
                .arg(score(now))
                .arg(error.unwrap_or(""))
                .arg(result.unwrap_or(""))
                .arg(self.registry_ttl())
                .arg(children)
                .invoke(c)
        })?;
        Ok(done == 1)
    }

    /// [`Store::finish_and_fetch`] in this partition, releasing
    /// `children` as [`Part::finish_with_result`] does; `keep`: the task
    /// the slot runs meanwhile, the next one taken is read ahead (see
    /// [`Store::fetch_ahead`]), or empty.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finish_and_fetch(
        &self,
        lease: &Lease,
        status: TaskStatus,
        error: Option<&str>,
        result: Option<&str>,
        children: &str,
        queues: &[String],
        keep: &str,
        now: Timestamp,
    ) -> Result<(bool, Option<Fetched>), StoreError> {
        let (slot, id) = (lease.slot.as_str(), lease.id.as_str());
        let registry = match status {
            TaskStatus::Finished => self.keys().finished(),
            TaskStatus::Failed => self.keys().failed(),
            TaskStatus::Expired => self.keys().expired(),
            other => return Err(StoreError::NotFinal { status: other }),
        };
        let limits = self.record_limits();
        let mut expected = self.finish_keys(slot, id, &registry);
        expected.extend(queues.iter().map(|q| (self.keys().queue(q), "list")));
        let expected: Vec<(&str, &'static str)> =
            expected.iter().map(|(k, t)| (k.as_str(), *t)).collect();
        let tally = lease.times.and_then(|t| {
            Tally::of_run(
                self.keys(),
                &lease.queue,
                status,
                now,
                t.started,
                t.waited_from,
            )
        });
        let (done, next): (i64, Value) = self.run(&expected, |c, keys| {
            let mut key_list = vec![
                keys.worker_task(slot),
                keys.worker(slot),
                keys.task(id),
                registry.clone(),
            ];
            key_list.extend(queues.iter().map(|q| keys.queue(q)));
            let mut args: Vec<String> = [
                keys.prefix(),
                id,
                status.as_str(),
                &time_text(now),
                &score(now),
                error.unwrap_or(""),
                result.unwrap_or(""),
            ]
            .iter()
            .map(|a| (*a).to_owned())
            .collect();
            args.push(self.registry_ttl().to_string());
            args.push(slot.to_owned());
            args.extend(limits.iter().map(|(limit, _)| limit.to_string()));
            args.push(children.to_owned());
            match &tally {
                Some(t) => args.extend([t.key.clone(), t.field.clone(), t.expire_at.to_string()]),
                None => args.extend([String::new(), String::new(), String::new()]),
            }
            args.push(keep.to_owned());
            args.extend(queues.iter().cloned());
            let reply = self.functions.call(
                c,
                &scripts::TASK_PATH,
                &scripts::FINISH_FETCH,
                &key_list,
                &args,
            )?;
            redis::from_redis_value(reply).map_err(redis::RedisError::from)
        })?;
        let next = match self.answer(slot, next, lease.partition) {
            Ok(Answer::Task(f)) => Some(*f),
            _ => None,
        };
        Ok((done == 1, next))
    }

    /// The keys a fetch meets, with their types, to name the culprit of a
    /// `WRONGTYPE` error.
    fn fetch_keys(&self, slot: &str, queues: &[String]) -> Vec<(String, &'static str)> {
        let keys = self.keys();
        let mut all = vec![
            (keys.worker_task(slot), "list"),
            (keys.worker(slot), "hash"),
            (keys.flow(), "hash"),
        ];
        all.extend(queues.iter().map(|q| (keys.queue(q), "list")));
        all
    }

    /// The keys a finish meets, with their types (as [`Self::fetch_keys`]).
    fn finish_keys(&self, slot: &str, id: &str, registry: &str) -> Vec<(String, &'static str)> {
        let keys = self.keys();
        vec![
            (keys.worker_task(slot), "list"),
            (keys.worker(slot), "hash"),
            (keys.task(id), "hash"),
            (registry.to_owned(), "zset"),
            (keys.flow(), "hash"),
        ]
    }

    /// [`Store::requeue_interrupted`] in this partition.
    pub(crate) fn requeue_interrupted(
        &self,
        slot: &str,
        id: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(self.requeue_script(slot, id, reason, now)? == 1)
    }

    /// [`Store::release_unstarted`] in this partition: a task whose cancel
    /// was asked meanwhile ends canceled instead.
    pub(crate) fn release_unstarted(
        &self,
        slot: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        match self.requeue_script(slot, id, "", now)? {
            2 => self.finish_canceled(slot, id, "canceled before it started", now),
            done => Ok(done == 1),
        }
    }

    /// The requeue script's answer: 1 done, 0 not held, 2 a cancel asked
    /// for a task handed back unstarted (nothing changed).
    fn requeue_script(
        &self,
        slot: &str,
        id: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        self.run(&[], |c, keys| {
            scripts::REQUEUE_INTERRUPTED
                .key(keys.worker_task(slot))
                .key(keys.worker(slot))
                .key(keys.task(id))
                .key(keys.queues())
                .key(keys.cancel_requests())
                .arg(keys.prefix())
                .arg(id)
                .arg(time_text(now))
                .arg(reason)
                .arg(score(now))
                .invoke(c)
        })
    }
}
