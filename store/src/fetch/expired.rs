//! Tasks a fetch found past their expiry: the fetch script ends each as
//! `expired` (never started) and goes on to the next task; its reply
//! names them, and they wait here, per partition, until the slot that
//! fetched takes them ([`Store::take_expired`]) to show them to
//! `process_outcome` and count them.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use redis::Value;

use crate::part::Part;
use crate::record::{hash_from_value, parse_record, text_of};
use crate::{Store, StoreError};
use redis_tasks_protocol::model::TaskRecord;

/// How many expired tasks a store keeps for [`Store::take_expired`]; a
/// program that fetches without ever taking them loses the oldest notes
/// (the tasks themselves are in the expired registry all the same).
pub const MAX_EXPIRED_NOTES: usize = 10_000;

/// A task that a fetch ended as `expired`: its expiry passed before it
/// started. It is in the expired registry already; this is the note of it.
#[derive(Debug)]
pub struct ExpiredTask {
    /// The task id.
    pub id: String,
    /// The queue it was taken from.
    pub queue: String,
    /// The partition it lives in (0 for unpartitioned data).
    pub partition: usize,
    /// Its record as it was ended (status `expired`), or why it cannot be
    /// read: a record over the size limits is not loaded (its note lacks
    /// `args` and reads as corrupt).
    pub record: Result<TaskRecord, StoreError>,
}

/// The notes of one partition, oldest first.
#[derive(Debug, Default)]
pub(crate) struct ExpiredNotes(Mutex<VecDeque<ExpiredTask>>);

impl ExpiredNotes {
    fn push(&self, task: ExpiredTask) {
        let mut notes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if notes.len() >= MAX_EXPIRED_NOTES {
            notes.pop_front();
        }
        notes.push_back(task);
    }

    fn take(&self) -> Vec<ExpiredTask> {
        let mut notes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        notes.drain(..).collect()
    }
}

impl Store {
    /// The tasks that this store's fetches ended as expired since the
    /// last call, oldest first (see [`Store::fetch`]).
    pub fn take_expired(&self) -> Vec<ExpiredTask> {
        self.parts
            .iter()
            .flat_map(|part| part.expired.take())
            .collect()
    }
}

impl Part {
    /// Notes the `{id, queue, fields}` items of a fetch script's
    /// `expired` answer; an item that cannot be read is skipped (the task
    /// is in the registry all the same).
    pub(super) fn note_expired(&self, items: Value, partition: usize) {
        let Value::Array(items) = items else {
            return;
        };
        for item in items {
            let Value::Array(parts) = item else {
                continue;
            };
            let mut it = parts.into_iter();
            let (Some(id), Some(queue), Some(fields)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let (Ok(id), Ok(queue)) = (text_of("fetch", id), text_of("fetch", queue)) else {
                continue;
            };
            let record = hash_from_value("fetch", fields).and_then(|hash| parse_record(&id, &hash));
            self.expired.push(ExpiredTask {
                id,
                queue,
                partition,
                record,
            });
        }
    }
}
