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
//! With partitioned data the slot tries each partition in turn (the one it
//! last used first, then the home partitions of its queues, then the rest)
//! and blocks on the first queue's home partition for at most
//! [`PARTITIONED_BLOCK_CAP`], so work in another partition waits at most
//! that long when every slot is idle.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use redis::Value;

use super::record::{hash_from_value, parse_record, score, text_of, time_text, unknown_fields};
use super::{Store, StoreError, scripts};
use redis_tasks_protocol::model::{TaskRecord, TaskStatus};

/// The longest a slot of partitioned data blocks on one partition before
/// it looks at all of them again.
pub const PARTITIONED_BLOCK_CAP: Duration = Duration::from_secs(1);

/// Room in the description's limit beyond `max_args_bytes`, for the task
/// function's name around the arguments.
const DESCRIPTION_SLACK: u64 = 64 * 1024;

/// Room in the whole record's limit beyond its large fields, for times,
/// errors, attempts and aborted runs.
const RECORD_SLACK: u64 = 1024 * 1024;

/// What a slot holds while it runs a task it fetched: which task, where it
/// came from, and where its record lives. Every later write for the task
/// (meta, progress, its ending) goes through [`Store::leased`], so it
/// reaches the partition the task was fetched from without looking for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The slot that took the task.
    pub slot: String,
    /// The task id.
    pub id: String,
    /// The queue whose list the id was taken from. This, never the
    /// record's `queue` field, decides the task's isolation profile and
    /// its labels; a record that names another queue is not run.
    pub queue: String,
    /// The partition the task was fetched from (0 for unpartitioned data).
    pub partition: usize,
}

/// A task a slot took and marked running.
#[derive(Debug)]
pub struct Fetched {
    /// The task id (now in the slot's private list).
    pub id: String,
    /// The slot's hold on the task.
    pub lease: Lease,
    /// Its record, or why it cannot be read or run (the caller should then
    /// fail the task with that text through [`Store::finish`]): corrupt,
    /// too large to load ([`StoreError::RecordTooLarge`]), or naming
    /// another queue than the one it was fetched from.
    pub record: Result<TaskRecord, StoreError>,
    /// Fields of the task hash that are not part of the schema (written by
    /// a raw producer, perhaps misspelt), sorted; the supervisor logs each
    /// name once.
    pub unknown_fields: Vec<String>,
}

/// What a fetch or start script answered.
enum Answer {
    Nothing,
    Missing,
    Task(Box<Fetched>),
    /// A record this code did not write; the id is back in its queue.
    Foreign(StoreError),
}

impl Store {
    /// Takes the next task for `slot` from the first non-empty queue of
    /// `queues` and marks it running; waits up to `block` for work on the
    /// first queue when all are empty (no wait for a zero `block`).
    ///
    /// An id whose record is missing is moved to the failed registry with a
    /// minimal record (error "task record missing") and the fetch goes on.
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
        let Some(first) = queues.first() else {
            return Ok(None);
        };
        if self.routed().is_some() {
            return self.fetch_partitioned(slot, queues, block);
        }
        let deadline = Instant::now() + block;
        loop {
            match self.try_fetch(slot, queues, 0)? {
                Answer::Foreign(e) => return Err(e),
                Answer::Task(f) => return Ok(Some(*f)),
                Answer::Nothing | Answer::Missing => {}
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return Ok(None);
            }
            let Some(id) = self.wait_for(slot, first, wait)? else {
                return Ok(None);
            };
            match self.start(slot, &id, first, 0)? {
                Answer::Foreign(e) => return Err(e),
                Answer::Task(f) => return Ok(Some(*f)),
                Answer::Nothing => return Ok(None),
                Answer::Missing => continue,
            }
        }
    }

    /// The store that holds the task of `lease`: its partition's on
    /// partitioned data, else this one. Writes for a fetched task go here.
    pub fn leased(&self, lease: &Lease) -> &Store {
        self.parts().get(lease.partition).unwrap_or(self)
    }

    /// [`fetch`](Store::fetch) over the partitions of partitioned data.
    ///
    /// The partition a slot used last is tried first, and noted before any
    /// step whose reply may be lost: a task stranded in a slot's list by a
    /// lost reply is then met by the next fetch as [`StoreError::SlotBusy`]
    /// (and handed back), as without partitions.
    fn fetch_partitioned(
        &self,
        slot: &str,
        queues: &[String],
        block: Duration,
    ) -> Result<Option<Fetched>, StoreError> {
        let parts = self.parts();
        let count = parts.len();
        let homes: Vec<usize> = queues
            .iter()
            .map(|q| crate::partition::of(q, count))
            .collect();
        let mut order: Vec<usize> = self.held_partition(slot).into_iter().collect();
        for i in homes.iter().copied().chain(0..count) {
            if !order.contains(&i) {
                order.push(i);
            }
        }
        let first = &queues[0];
        let deadline = Instant::now() + block;
        loop {
            for &i in &order {
                self.note_held(slot, i);
                match parts[i].try_fetch(slot, queues, i)? {
                    Answer::Foreign(e) => return Err(e),
                    Answer::Task(f) => return Ok(Some(*f)),
                    Answer::Nothing | Answer::Missing => {}
                }
            }
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(PARTITIONED_BLOCK_CAP);
            if wait.is_zero() {
                return Ok(None);
            }
            let home = &parts[homes[0]];
            self.note_held(slot, homes[0]);
            let Some(id) = home.wait_for(slot, first, wait)? else {
                continue;
            };
            match home.start(slot, &id, first, homes[0])? {
                Answer::Foreign(e) => return Err(e),
                Answer::Task(f) => return Ok(Some(*f)),
                Answer::Nothing => return Ok(None),
                Answer::Missing => continue,
            }
        }
    }

    /// The size limits the fetch script holds a record to, in its order:
    /// args, description, meta, result, the whole record; with the
    /// setting each comes from.
    fn record_limits(&self) -> [(u64, &'static str); 5] {
        let args = self.max_args_bytes;
        let description = args.saturating_add(DESCRIPTION_SLACK);
        let result = self.max_result_bytes;
        let whole = args
            .saturating_add(description)
            .saturating_add(args)
            .saturating_add(result)
            .saturating_add(RECORD_SLACK);
        [
            (args, "max_args_bytes"),
            (description, "max_args_bytes plus 64 KiB"),
            (args, "max_args_bytes"),
            (result, "max_result_bytes"),
            (whole, "the record limit (the field limits plus 1 MiB)"),
        ]
    }

    /// One non-blocking attempt over all queues; `partition` is this
    /// store's index among the partitions (0 when unpartitioned).
    fn try_fetch(
        &self,
        slot: &str,
        queues: &[String],
        partition: usize,
    ) -> Result<Answer, StoreError> {
        let now = Timestamp::now();
        let limits = self.record_limits();
        let value: Value = self.run_blocking(Duration::ZERO, &[], |c, keys| {
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
        let value: Value = self.run_blocking(Duration::ZERO, &[], |c, keys| {
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
            inv.invoke(c)
        })?;
        self.answer(slot, value, partition)
    }

    fn answer(&self, slot: &str, value: Value, partition: usize) -> Result<Answer, StoreError> {
        let items = match value {
            Value::Nil => return Ok(Answer::Nothing),
            Value::Array(items) => items,
            other => {
                return Err(StoreError::UnexpectedReply {
                    what: "fetch",
                    detail: format!("{other:?}"),
                });
            }
        };
        let mut it = items.into_iter();
        let kind = match it.next() {
            Some(v) => text_of("fetch", v)?,
            None => return Ok(Answer::Nothing),
        };
        match kind.as_str() {
            "missing" => Ok(Answer::Missing),
            "foreign" => {
                let id = it
                    .next()
                    .map(|v| text_of("fetch", v))
                    .transpose()?
                    .unwrap_or_default();
                let queue = it
                    .next()
                    .map(|v| text_of("fetch", v))
                    .transpose()?
                    .unwrap_or_default();
                Ok(Answer::Foreign(StoreError::ForeignTask {
                    key: self.keys().task(&id),
                    id,
                    queue,
                }))
            }
            "busy" => {
                let ids = it
                    .next()
                    .map(redis::from_redis_value::<Vec<String>>)
                    .transpose()
                    .map_err(|e| StoreError::UnexpectedReply {
                        what: "fetch",
                        detail: e.to_string(),
                    })?
                    .unwrap_or_default();
                Err(StoreError::SlotBusy {
                    slot: slot.to_owned(),
                    ids,
                })
            }
            "task" => {
                let id = next_text(&mut it, "no task id")?;
                let hash = it
                    .next()
                    .ok_or_else(|| missing("no task fields"))
                    .and_then(|v| hash_from_value("fetch", v));
                let queue = next_text(&mut it, "no queue")?;
                let unknown_fields = hash.as_ref().map(unknown_fields).unwrap_or_default();
                let record = hash
                    .and_then(|hash| parse_record(&id, &hash))
                    .and_then(|record| from_its_queue(record, &queue));
                Ok(self.fetched(slot, id, queue, partition, record, unknown_fields))
            }
            "oversize" => {
                let id = next_text(&mut it, "no task id")?;
                let queue = next_text(&mut it, "no queue")?;
                let field = next_text(&mut it, "no field")?;
                let size = next_number(&mut it)?;
                let index = usize::try_from(next_number(&mut it)?).unwrap_or(usize::MAX);
                let (limit, setting) = self
                    .record_limits()
                    .get(index.wrapping_sub(1))
                    .copied()
                    .ok_or_else(|| missing("no such limit"))?;
                let record = Err(StoreError::RecordTooLarge {
                    id: id.clone(),
                    field,
                    size,
                    limit,
                    setting,
                });
                Ok(self.fetched(slot, id, queue, partition, record, Vec::new()))
            }
            other => Err(StoreError::UnexpectedReply {
                what: "fetch",
                detail: format!("unknown answer {other:?}"),
            }),
        }
    }

    fn fetched(
        &self,
        slot: &str,
        id: String,
        queue: String,
        partition: usize,
        record: Result<TaskRecord, StoreError>,
        unknown_fields: Vec<String>,
    ) -> Answer {
        let lease = Lease {
            slot: slot.to_owned(),
            id: id.clone(),
            queue,
            partition,
        };
        Answer::Task(Box::new(Fetched {
            id,
            lease,
            record,
            unknown_fields,
        }))
    }

    /// Records the end of a run: `status` ([`TaskStatus::Finished`] or
    /// [`TaskStatus::Failed`]), `ended_at = now`, the error text, the
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
        if self.routed().is_some() {
            return self.fenced(slot, |p| {
                p.finish_with_result(slot, id, status, error, result, now)
            });
        }
        let registry = match status {
            TaskStatus::Finished => self.keys().finished(),
            TaskStatus::Failed => self.keys().failed(),
            other => return Err(StoreError::NotFinal { status: other }),
        };
        let done: i64 = self.run(&[], |c, keys| {
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
                .invoke(c)
        })?;
        Ok(done == 1)
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
        if self.routed().is_some() {
            return self.fenced(slot, |p| p.requeue_interrupted(slot, id, reason, now));
        }
        let done: i64 = self.run(&[], |c, keys| {
            scripts::REQUEUE_INTERRUPTED
                .key(keys.worker_task(slot))
                .key(keys.worker(slot))
                .key(keys.task(id))
                .key(keys.queues())
                .arg(keys.prefix())
                .arg(id)
                .arg(time_text(now))
                .arg(reason)
                .arg(score(now))
                .invoke(c)
        })?;
        Ok(done == 1)
    }

    /// Hands a task this slot fetched but did not start back to the FRONT
    /// of its queue, as if it had never been fetched (no aborted run is
    /// noted). Fenced like [`Store::finish`]; returns whether the slot held
    /// the task. A supervisor uses it when a shutdown or a pause begins
    /// while a fetch was already under way.
    pub fn release_unstarted(
        &self,
        slot: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.requeue_interrupted(slot, id, "", now)
    }
}

fn missing(detail: &str) -> StoreError {
    StoreError::UnexpectedReply {
        what: "fetch",
        detail: detail.to_owned(),
    }
}

fn next_text(it: &mut impl Iterator<Item = Value>, none: &str) -> Result<String, StoreError> {
    match it.next() {
        Some(v) => text_of("fetch", v),
        None => Err(missing(none)),
    }
}

fn next_number(it: &mut impl Iterator<Item = Value>) -> Result<u64, StoreError> {
    match it.next() {
        Some(Value::Int(n)) => u64::try_from(n).map_err(|_| missing("negative size")),
        other => Err(missing(&format!("expected a number, got {other:?}"))),
    }
}

/// `record`, unless it names another queue than `fetched_from`, the list
/// its id was taken from. Such a record was written by someone else than
/// our producers (every one of them pushes an id onto the list its record
/// names), and running it would let a field of the record choose the
/// queue's profile: it fails as corrupt, naming both queues.
fn from_its_queue(record: TaskRecord, fetched_from: &str) -> Result<TaskRecord, StoreError> {
    if record.queue == fetched_from {
        return Ok(record);
    }
    Err(StoreError::Corrupt {
        id: record.id,
        field: "queue".to_owned(),
        reason: format!(
            "the record names queue {:?} but the task was fetched from queue {fetched_from:?}; \
             it is not run under another queue's profile",
            record.queue
        ),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use redis::Value;

    use super::{Answer, Store, from_its_queue};
    use crate::record::parse_record;

    /// Replies of any shape (a script of another version, a proxy in
    /// between, a hostile server).
    fn values() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            any::<i64>().prop_map(Value::Int),
            proptest::sample::select(vec![
                "task", "oversize", "busy", "foreign", "missing", "x", "args", "q"
            ])
            .prop_map(|s| Value::BulkString(s.as_bytes().to_vec())),
            proptest::collection::vec(any::<u8>(), 0..12).prop_map(Value::BulkString),
            Just(Value::Okay),
        ];
        leaf.prop_recursive(3, 24, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Value::Map),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Whatever the fetch script answers, reading the answer is a task,
        /// nothing, or an error: never a panic.
        #[test]
        fn any_fetch_reply_is_read_without_panic(value in values(), partition in 0usize..4) {
            // No connection is made: only the reply is read.
            let store = Store::open("redis://127.0.0.1:9", "p").expect("store");
            if let Ok(Answer::Task(f)) = store.answer("s", value, partition) {
                prop_assert_eq!(&f.lease.id, &f.id);
                prop_assert_eq!(f.lease.partition, partition);
            }
        }
    }

    #[test]
    fn a_record_naming_another_queue_is_refused_naming_both() {
        let hash = [
            ("task", "t"),
            ("args", "[]"),
            ("status", "queued"),
            ("queue", "default"),
            ("enqueued_at", "2026-11-25T08:17:26Z"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
        .collect();
        let record = parse_record("id1", &hash).expect("record");
        assert!(from_its_queue(record.clone(), "default").is_ok());
        let e = from_its_queue(record, "untrusted").expect_err("mismatch");
        let text = e.to_string();
        assert!(
            text.contains("\"default\"") && text.contains("\"untrusted\""),
            "{text}"
        );
    }
}
