//! Finding the tasks of a registry that match a filter (queue, task name,
//! text in the error, ended since), for actions on many tasks at once
//! (`failed requeue --queue Q --error-contains TEXT`, the dashboard's
//! "all matching").
//!
//! Bounded on big registries: the registry is read in windows of
//! [`FILTER_WINDOW`] entries by rank, each window one script that looks at
//! its records inside Redis and returns only the matching ids, so no
//! record crosses the network and no call holds Redis for long. A filter
//! `since` starts at the first entry that ended then (a registry is
//! scored by end time).

use jiff::Timestamp;
use redis::Value;

use crate::part::Part;
use crate::record::{score, text_of};
use crate::registry::registry_key;
use crate::{RegistryKind, Store, StoreError, scripts};

/// How many registry entries one filter script looks at.
pub const FILTER_WINDOW: usize = 1000;

/// Which tasks of a registry an action is for; every field that is set
/// must match (an empty filter matches every task).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Enqueued on this queue.
    pub queue: Option<String>,
    /// Of this task function.
    pub task: Option<String>,
    /// Its error text contains this (case-sensitive, plain text).
    pub error_contains: Option<String>,
    /// Ended at or after this time.
    pub since: Option<Timestamp>,
}

impl Store {
    /// The ids of registry `kind` that match `filter`, oldest end first in
    /// each partition.
    pub fn matching(
        &self,
        kind: RegistryKind,
        filter: &TaskFilter,
    ) -> Result<Vec<String>, StoreError> {
        Ok(self.each(|p| p.matching(kind, filter))?.concat())
    }
}

impl Part {
    fn matching(&self, kind: RegistryKind, filter: &TaskFilter) -> Result<Vec<String>, StoreError> {
        let key = registry_key(self.keys(), kind);
        // The first entry that ended at or after `since`.
        let mut rank: i64 = match filter.since {
            None => 0,
            Some(since) => self.read(&[(&key, "zset")], |c, _| {
                redis::cmd("ZCOUNT")
                    .arg(&key)
                    .arg("-inf")
                    .arg(format!("({}", score(since)))
                    .query(c)
            })?,
        };
        let mut ids = Vec::new();
        loop {
            let reply: Vec<Value> = self.read(&[(&key, "zset")], |c, keys| {
                scripts::FILTER_REGISTRY
                    .key(&key)
                    .arg(keys.prefix())
                    .arg(rank)
                    .arg(FILTER_WINDOW)
                    .arg(filter.queue.as_deref().unwrap_or(""))
                    .arg(filter.task.as_deref().unwrap_or(""))
                    .arg(filter.error_contains.as_deref().unwrap_or(""))
                    .invoke(c)
            })?;
            let mut it = reply.into_iter();
            let seen: i64 = match it.next() {
                Some(Value::Int(n)) => n,
                other => {
                    return Err(StoreError::UnexpectedReply {
                        what: "filter registry",
                        detail: format!("{other:?}"),
                    });
                }
            };
            for v in it {
                ids.push(text_of("filter registry", v)?);
            }
            if seen < FILTER_WINDOW as i64 {
                return Ok(ids);
            }
            rank += seen;
        }
    }
}
