//! Task records read for display with every field cut to a size: what the
//! dashboard's pages and the admin command line's listings load.
//!
//! A raw producer can write a 100 MB argument; loading it whole to show one
//! line took the dashboard seconds and gigabytes per page. Here one Lua
//! script ([`scripts::CLIPPED_RECORD`]) sends at most `cap` bytes of each
//! field (and refuses a hash with more than [`MAX_FIELDS`] fields), with
//! each field's full size (`HSTRLEN`). A field cut short is listed in
//! [`TaskPreview::clipped`] with its size and its first bytes; the record
//! holds a stand-in for it where it is JSON (`null` arguments, no result,
//! empty meta), and the cut text where it is text (description, error).
//! The whole value is read on its own only when asked for
//! ([`Store::task_field`], with a cap of its own).

use redis::Value;
use redis_tasks_protocol::TaskRecord;

use crate::part::Part;
use crate::record::{RawHash, bytes_of, parse_record};
use crate::{Store, StoreError, scripts};

/// Most fields a record may have to be shown (ours have about twenty).
pub const MAX_FIELDS: usize = 64;

/// A field of a task record cut short for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clipped {
    /// The field's name (`args`, `description`, `meta`, `result`...).
    pub field: String,
    /// Its full size in bytes.
    pub size: u64,
    /// Its first bytes (up to the cap), as text (lossy UTF-8).
    pub head: String,
}

/// A task record for display: every field at most the cap it was read
/// with.
#[derive(Debug, Clone)]
pub struct TaskPreview {
    /// The record; a JSON field cut short holds a stand-in (see
    /// [`clipped`](Self::clipped)), a text field its first bytes.
    pub record: TaskRecord,
    /// The fields cut short.
    pub clipped: Vec<Clipped>,
}

impl TaskPreview {
    /// The cut of `field`, if it was cut.
    pub fn clip(&self, field: &str) -> Option<&Clipped> {
        self.clipped.iter().find(|c| c.field == field)
    }
}

/// What a JSON field cut short is replaced with before parsing (`None`:
/// dropped, as if absent).
fn stand_in(field: &str) -> Option<Option<&'static [u8]>> {
    match field {
        "args" => Some(Some(b"null")),
        "meta" => Some(Some(b"{}")),
        "attempts" | "aborted_runs" => Some(Some(b"[]")),
        "result" | "retry" | "progress" => Some(None),
        _ => None,
    }
}

impl Store {
    /// Task `id`'s record with each field cut to `cap` bytes.
    pub fn task_preview(&self, id: &str, cap: usize) -> Result<TaskPreview, StoreError> {
        self.find(id, |p| p.task_preview(id, cap))
    }

    /// [`task_preview`](Self::task_preview) of several tasks, in the order
    /// asked; each one that cannot be read is an `Err` in its place (a
    /// connection error is the whole call's).
    pub fn tasks_preview(
        &self,
        ids: &[String],
        cap: usize,
    ) -> Result<Vec<Result<TaskPreview, StoreError>>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.task_preview(id, cap) {
                Err(e) if e.is_connection_error() => return Err(e),
                read => out.push(read),
            }
        }
        Ok(out)
    }

    /// Field `field` of task `id`, whole if it is at most `max` bytes,
    /// else its first `max` bytes; with the field's full size. `None` when
    /// the record has no such field.
    pub fn task_field(
        &self,
        id: &str,
        field: &str,
        max: usize,
    ) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        self.find(id, |p| p.task_field(id, field, max))
    }
}

impl Part {
    pub(crate) fn task_preview(&self, id: &str, cap: usize) -> Result<TaskPreview, StoreError> {
        let key = self.keys().task(id);
        let value: Value = self.read(&[], |c, keys| {
            scripts::CLIPPED_RECORD
                .key(&key)
                .arg(keys.prefix())
                .arg(cap)
                .arg(MAX_FIELDS)
                .invoke(c)
        })?;
        preview_from(id, value)
    }

    pub(crate) fn task_field(
        &self,
        id: &str,
        field: &str,
        max: usize,
    ) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        let key = self.keys().task(id);
        let items: Vec<Value> = self.read(&[], |c, keys| {
            scripts::CLIPPED_FIELD
                .key(&key)
                .arg(keys.prefix())
                .arg(field)
                .arg(max)
                .invoke(c)
        })?;
        let bad = |detail: String| StoreError::UnexpectedReply {
            what: "CLIPPED_FIELD",
            detail,
        };
        let mut it = items.into_iter();
        match (it.next(), it.next(), it.next()) {
            (None, _, _) => Err(StoreError::NotFound { id: id.to_owned() }),
            (Some(Value::Int(0)), _, _) => Ok(None),
            (Some(Value::Int(1)), Some(value), Some(Value::Int(size))) => Ok(Some((
                bytes_of(value).map_err(bad)?,
                u64::try_from(size).unwrap_or(0),
            ))),
            other => Err(bad(format!("{other:?}"))),
        }
    }
}

/// The (field, value, full size) triples of a `CLIPPED_RECORD` reply.
fn triples(id: &str, value: Value) -> Result<Vec<(String, Vec<u8>, u64)>, StoreError> {
    let bad = |detail: String| StoreError::UnexpectedReply {
        what: "CLIPPED_RECORD",
        detail,
    };
    let items = match value {
        Value::Array(items) => items,
        Value::Nil => Vec::new(),
        other => return Err(bad(format!("expected an array, got {other:?}"))),
    };
    if items.is_empty() {
        return Err(StoreError::NotFound { id: id.to_owned() });
    }
    if items.len() % 3 != 0 {
        return Err(bad(format!("{} items, not triples", items.len())));
    }
    let mut out = Vec::with_capacity(items.len() / 3);
    let mut it = items.into_iter();
    while let (Some(f), Some(v), Some(n)) = (it.next(), it.next(), it.next()) {
        let field = String::from_utf8_lossy(&bytes_of(f).map_err(&bad)?).into_owned();
        let bytes = bytes_of(v).map_err(&bad)?;
        let size = match n {
            Value::Int(n) => u64::try_from(n).unwrap_or(0),
            other => return Err(bad(format!("size {other:?}"))),
        };
        out.push((field, bytes, size));
    }
    Ok(out)
}

fn preview_from(id: &str, value: Value) -> Result<TaskPreview, StoreError> {
    let mut hash = RawHash::new();
    let mut clipped = Vec::new();
    for (field, bytes, size) in triples(id, value)? {
        let cut = u64::try_from(bytes.len()).unwrap_or(u64::MAX) < size;
        if cut {
            clipped.push(Clipped {
                field: field.clone(),
                size,
                head: String::from_utf8_lossy(&bytes).into_owned(),
            });
            match stand_in(&field) {
                Some(Some(json)) => {
                    hash.insert(field, json.to_vec());
                }
                Some(None) => {}
                None => {
                    hash.insert(field, bytes);
                }
            }
        } else {
            hash.insert(field, bytes);
        }
    }
    let record = parse_record(id, &hash)?;
    Ok(TaskPreview { record, clipped })
}
