//! Reading task records, canceling queued tasks and updating a task's meta.

use redis::Value;

use super::record::{RawHash, hash_from_value, parse_record};
use super::{Store, StoreError, calls};
use crate::part::Part;
use redis_tasks_protocol::model::{TaskRecord, TaskStatus};

impl Store {
    /// The record of task `id`.
    pub fn task(&self, id: &str) -> Result<TaskRecord, StoreError> {
        self.find(id, |p| p.task(id))
    }

    /// The records of several tasks in one round trip, in the order asked;
    /// each one that cannot be read is an `Err` in its place.
    pub fn tasks(&self, ids: &[String]) -> Result<Vec<Result<TaskRecord, StoreError>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One round trip per partition: each id's record is in one.
        let mut out: Vec<Result<TaskRecord, StoreError>> = Vec::new();
        self.fenced(|part| {
            if out.is_empty() {
                out = part.tasks(ids)?;
            } else {
                let missing: Vec<usize> = (0..ids.len())
                    .filter(|&i| matches!(out[i], Err(StoreError::NotFound { .. })))
                    .collect();
                let wanted: Vec<String> = missing.iter().map(|&i| ids[i].clone()).collect();
                for (i, found) in missing.into_iter().zip(part.tasks(&wanted)?) {
                    if !matches!(found, Err(StoreError::NotFound { .. })) {
                        out[i] = found;
                    }
                }
            }
            Ok(!out
                .iter()
                .any(|r| matches!(r, Err(StoreError::NotFound { .. }))))
        })?;
        Ok(out)
    }

    /// Cancels a task that waits in its queue or in the delayed set:
    /// removes it from there, marks it canceled and lets its record expire
    /// after the registry TTL. (A running task: [`Store::cancel_task`].)
    ///
    /// Any other state is refused with nothing changed:
    /// [`StoreError::NotQueued`] for another status, [`StoreError::Taken`]
    /// when a worker already moved it out of its queue.
    pub fn cancel(&self, id: &str) -> Result<(), StoreError> {
        self.locate(id)?.cancel(id)
    }

    /// Merges `updates` into the task's `meta` object (keys in `updates`
    /// replace those in the record; others stay), atomically: the record is
    /// watched and the write retried if it changed in between. A merged
    /// object over `max_args_bytes` is refused ([`StoreError::MetaTooLarge`])
    /// with nothing written.
    pub fn update_meta(
        &self,
        id: &str,
        updates: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), StoreError> {
        self.locate(id)?.update_meta(id, updates)
    }
}

impl Part {
    /// Up to `len` task ids from position `offset` of a queue (`list`) or a
    /// registry (`zset`).
    pub(crate) fn id_range(
        &self,
        key: &str,
        kind: &'static str,
        offset: usize,
        len: usize,
    ) -> Result<Vec<String>, StoreError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let command = if kind == "list" { "LRANGE" } else { "ZRANGE" };
        let end = offset.saturating_add(len - 1);
        self.read(&[(key, kind)], |c, _| {
            redis::cmd(command).arg(key).arg(offset).arg(end).query(c)
        })
    }

    pub(crate) fn task(&self, id: &str) -> Result<TaskRecord, StoreError> {
        let key = self.keys().task(id);
        let cmd = calls::read_task(self.keys(), id);
        let value: Value = self.read(&[(&key, "hash")], |c, _| cmd.query(c))?;
        calls::task_reply(id, value)
    }

    pub(crate) fn tasks(
        &self,
        ids: &[String],
    ) -> Result<Vec<Result<TaskRecord, StoreError>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HGETALL").arg(self.keys().task(id));
        }
        pipe.ignore_errors();
        let values: Vec<Value> = self.read(&[], |c, _| pipe.query(c))?;
        if values.len() != ids.len() {
            return Err(StoreError::UnexpectedReply {
                what: "HGETALL pipeline",
                detail: format!("{} replies for {} ids", values.len(), ids.len()),
            });
        }
        Ok(ids
            .iter()
            .zip(values)
            .map(|(id, value)| self.record_from_reply(id, value))
            .collect())
    }

    fn record_from_reply(&self, id: &str, value: Value) -> Result<TaskRecord, StoreError> {
        match value {
            Value::ServerError(e) => {
                // Classify the error as if it came from a lone HGETALL, so a
                // key of the wrong type is named.
                let key = self.keys().task(id);
                let err = redis::RedisError::from(e);
                match self.run(&[(&key, "hash")], |_, _| Err::<(), _>(err)) {
                    Err(e) => Err(e),
                    Ok(()) => Err(StoreError::NotFound { id: id.to_owned() }),
                }
            }
            other => parse_record(id, &hash_from_value("HGETALL", other)?),
        }
    }

    pub(crate) fn cancel(&self, id: &str) -> Result<(), StoreError> {
        let inv = calls::cancel(self.keys(), id, self.registry_ttl());
        let reply: Vec<Value> = self.run(&[], |c, _| inv.invoke(c))?;
        match calls::cancel_reply(id, reply)? {
            calls::CancelReply::Done => Ok(()),
            calls::CancelReply::Status(TaskStatus::Scheduled) if self.cancel_scheduled(id)? => {
                Ok(())
            }
            calls::CancelReply::Status(status) => Err(StoreError::NotQueued {
                id: id.to_owned(),
                status,
            }),
        }
    }

    pub(crate) fn update_meta(
        &self,
        id: &str,
        updates: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), StoreError> {
        let key = self.keys().task(id);
        let outcome: Result<(), StoreError> = self.run(&[(&key, "hash")], |c, _| {
            redis::transaction(c, &[&key], |c, pipe| {
                let value: Value = redis::cmd("HGETALL").arg(&key).query(c)?;
                let hash: RawHash = match hash_from_value("HGETALL", value) {
                    Ok(h) => h,
                    Err(e) => return Ok(Some(Err(e))),
                };
                if hash.is_empty() {
                    return Ok(Some(Err(StoreError::NotFound { id: id.to_owned() })));
                }
                let mut meta = match parse_record(id, &hash) {
                    Ok(rec) => rec.meta,
                    Err(e) => return Ok(Some(Err(e))),
                };
                for (k, v) in updates {
                    meta.insert(k.clone(), v.clone());
                }
                let text = serde_json::Value::Object(meta).to_string();
                let size = u64::try_from(text.len()).unwrap_or(u64::MAX);
                if size > self.max_args_bytes() {
                    // Updates with new keys each time would grow it
                    // without end (and the record a fetch may load).
                    return Ok(Some(Err(StoreError::MetaTooLarge {
                        id: id.to_owned(),
                        size,
                        limit: self.max_args_bytes(),
                    })));
                }
                pipe.cmd("HSET")
                    .arg(&key)
                    .arg("meta")
                    .arg(text)
                    .ignore()
                    .query::<Option<()>>(c)
                    .map(|done| done.map(Ok))
            })
        })?;
        outcome
    }
}
