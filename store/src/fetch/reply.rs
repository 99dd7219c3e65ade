//! What a fetch answers: the slot's [`Lease`] on the task and its record,
//! read from the fetch script's reply, or why the task cannot run (a
//! record too large to load, corrupt, or naming another queue than the
//! list it was taken from). Also the size limits the script checks a
//! record against before loading it.

use jiff::Timestamp;
use redis::Value;

use crate::StoreError;
use crate::part::Part;
use crate::record::{hash_from_value, parse_record, text_of, unknown_fields};
use redis_tasks_protocol::model::TaskRecord;

/// Room in the description's limit beyond `max_args_bytes`, for the task
/// function's name around the arguments.
const DESCRIPTION_SLACK: u64 = 64 * 1024;

/// Room in the whole record's limit beyond its large fields, for times,
/// errors, attempts and aborted runs.
const RECORD_SLACK: u64 = 1024 * 1024;

/// What a slot holds while it runs a task it fetched: which task, where it
/// came from, and where its record lives. Every later write for the task
/// (meta, progress, its ending) goes through [`Store::leased`](crate::Store::leased), so it
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
    /// When the run started and its wait began, from the record read at
    /// the fetch (none when it could not be read).
    pub(crate) times: Option<RunTimes>,
}

/// The two times of a run the history counts (docs/redis-schema.md,
/// "History"), kept from the fetch so that the finish works out the
/// history's field itself (`history::Tally`) instead of Lua parsing them
/// from the record's texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunTimes {
    /// The record's `started_at`.
    pub(crate) started: Timestamp,
    /// The due time of its retry (the last attempt's `next_attempt_at`),
    /// else `enqueued_at`.
    pub(crate) waited_from: Timestamp,
}

impl RunTimes {
    fn of(record: &TaskRecord) -> Option<RunTimes> {
        Some(RunTimes {
            started: record.started_at?,
            waited_from: record
                .attempts
                .iter()
                .rev()
                .find_map(|a| a.next_attempt_at)
                .unwrap_or(record.enqueued_at),
        })
    }
}

/// A task a slot took and marked running.
#[derive(Debug)]
pub struct Fetched {
    /// The task id (now in the slot's private list).
    pub id: String,
    /// The slot's hold on the task.
    pub lease: Lease,
    /// Its record, or why it cannot be read or run (the caller should then
    /// fail the task with that text through [`Store::finish`](crate::Store::finish)): corrupt,
    /// too large to load ([`StoreError::RecordTooLarge`]), or naming
    /// another queue than the one it was fetched from.
    pub record: Result<TaskRecord, StoreError>,
    /// Fields of the task hash that are not part of the schema (written by
    /// a raw producer, perhaps misspelt), sorted; the supervisor logs each
    /// name once.
    pub unknown_fields: Vec<String>,
}

/// What a fetch or start script answered.
pub(super) enum Answer {
    Nothing,
    Missing,
    Task(Box<Fetched>),
    /// A record this code did not write; the id is back in its queue.
    Foreign(StoreError),
    /// Nothing taken, and flow control held these queues back (paused, no
    /// permit free, or the rate window full); `wait`: when the window of
    /// one of them lets a start through, when known.
    Held {
        queues: Vec<String>,
        wait: Option<std::time::Duration>,
    },
}

impl Part {
    /// The size limits the fetch script holds a record to, in its order:
    /// args, description, meta, result, the whole record; with the
    /// setting each comes from.
    pub(super) fn record_limits(&self) -> [(u64, &'static str); 5] {
        let args = self.opts.max_args_bytes;
        let description = args.saturating_add(DESCRIPTION_SLACK);
        let result = self.opts.max_result_bytes;
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

    pub(super) fn answer(
        &self,
        slot: &str,
        value: Value,
        partition: usize,
    ) -> Result<Answer, StoreError> {
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
            "expired" => {
                if let Some(items) = it.next() {
                    self.note_expired(items, partition);
                }
                // The script wraps its answer once: a nested wrapper is
                // not one of its replies (and would recurse).
                match it.next().unwrap_or(Value::Nil) {
                    Value::Array(inner)
                        if inner.first().is_some_and(
                            |v| matches!(v, Value::BulkString(b) if b == b"expired"),
                        ) =>
                    {
                        Err(missing("nested expired answer"))
                    }
                    rest => self.answer(slot, rest, partition),
                }
            }
            "missing" => Ok(Answer::Missing),
            "held" => {
                let ms = next_number(&mut it)?;
                let queues = it
                    .map(|v| text_of("fetch", v))
                    .collect::<Result<Vec<_>, _>>()?;
                let wait = (ms > 0).then(|| std::time::Duration::from_millis(ms));
                Ok(Answer::Held { queues, wait })
            }
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
            times: record.as_ref().ok().and_then(RunTimes::of),
        };
        Answer::Task(Box::new(Fetched {
            id,
            lease,
            record,
            unknown_fields,
        }))
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

    use super::{Answer, from_its_queue};
    use crate::Store;
    use crate::record::parse_record;

    /// Replies of any shape (a script of another version, a proxy in
    /// between, a hostile server).
    fn values() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            any::<i64>().prop_map(Value::Int),
            proptest::sample::select(vec![
                "task", "oversize", "busy", "foreign", "missing", "expired", "x", "args", "q"
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
            if let Ok(Answer::Task(f)) = store.zero().answer("s", value, partition) {
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
