//! Reading task records, canceling queued tasks and updating a task's meta.

use jiff::Timestamp;
use redis::Value;

use super::record::{RawHash, hash_from_value, parse_record, text_of, time_text};
use super::{Store, StoreError, scripts};
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
        let value: Value = self.read(&[(&key, "hash")], |c, _| {
            redis::cmd("HGETALL").arg(&key).query(c)
        })?;
        parse_record(id, &hash_from_value("HGETALL", value)?)
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
        let key = self.keys().task(id);
        let now = time_text(Timestamp::now());
        let reply: Vec<Value> = self.run(&[], |c, keys| {
            scripts::CANCEL
                .key(&key)
                .arg(keys.prefix())
                .arg(id)
                .arg(&now)
                .arg(self.registry_ttl())
                .invoke(c)
        })?;
        let mut it = reply.into_iter();
        let kind = match it.next() {
            Some(v) => text_of("cancel", v)?,
            None => String::new(),
        };
        let corrupt = |field: &str, reason: String| StoreError::Corrupt {
            id: id.to_owned(),
            field: field.to_owned(),
            reason,
        };
        match kind.as_str() {
            "ok" => Ok(()),
            "missing" => Err(StoreError::NotFound { id: id.to_owned() }),
            "taken" => Err(StoreError::Taken { id: id.to_owned() }),
            "noqueue" => Err(corrupt("queue", "missing".to_owned())),
            "status" => {
                let word = match it.next() {
                    Some(v) => text_of("cancel", v)?,
                    None => String::new(),
                };
                if word.is_empty() {
                    return Err(corrupt("status", "missing".to_owned()));
                }
                let status: TaskStatus =
                    word.parse()
                        .map_err(|e: redis_tasks_protocol::model::UnknownStatus| {
                            corrupt("status", e.to_string())
                        })?;
                if status == TaskStatus::Scheduled && self.cancel_scheduled(id)? {
                    return Ok(());
                }
                Err(StoreError::NotQueued {
                    id: id.to_owned(),
                    status,
                })
            }
            other => Err(StoreError::UnexpectedReply {
                what: "cancel",
                detail: format!("unknown answer {other:?}"),
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
