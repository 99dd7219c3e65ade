//! Finding the tasks of a registry that match a filter (queue, task name,
//! text in the error, text in the error or the description, ended since),
//! for actions on many tasks at once
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
use crate::unique::glob_escape;
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
    /// Its error text or its description contains this (case-sensitive,
    /// plain text): the dashboard's free-text filter.
    pub text: Option<String>,
    /// Ended at or after this time.
    pub since: Option<Timestamp>,
}

/// How many entries one `ZSCAN` step of [`Store::ids_with_prefix`] asks
/// for.
const PREFIX_SCAN_COUNT: usize = 500;

/// What [`Store::ids_with_prefix`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdSearch {
    /// The ids found, each with its registry, in the order found.
    pub found: Vec<(RegistryKind, String)>,
    /// Whether every registry was looked at whole: `false` when a cap
    /// stopped the search (there may be more).
    pub complete: bool,
}

impl Store {
    /// The ids of registries `kinds` that start with `prefix`, found with
    /// `ZSCAN MATCH prefix*`: at most `max_found` ids, and about
    /// `budget` entries looked at in each registry (of each partition), so
    /// a search costs a few bounded steps however big the registries are.
    pub fn ids_with_prefix(
        &self,
        kinds: &[RegistryKind],
        prefix: &str,
        max_found: usize,
        budget: usize,
    ) -> Result<IdSearch, StoreError> {
        let mut search = IdSearch {
            found: Vec::new(),
            complete: true,
        };
        let pattern = format!("{}*", glob_escape(prefix));
        self.each(|p| {
            for &kind in kinds {
                p.scan_prefix(kind, &pattern, max_found, budget, &mut search)?;
            }
            Ok(())
        })?;
        Ok(search)
    }

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
    fn scan_prefix(
        &self,
        kind: RegistryKind,
        pattern: &str,
        max_found: usize,
        budget: usize,
        search: &mut IdSearch,
    ) -> Result<(), StoreError> {
        let key = registry_key(self.keys(), kind);
        let mut cursor: u64 = 0;
        let mut looked = 0;
        loop {
            if search.found.len() >= max_found || looked >= budget {
                search.complete = false;
                return Ok(());
            }
            let (next, pairs): (u64, Vec<String>) = self.read(&[(&key, "zset")], |c, _| {
                redis::cmd("ZSCAN")
                    .arg(&key)
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(PREFIX_SCAN_COUNT)
                    .query(c)
            })?;
            looked += PREFIX_SCAN_COUNT;
            // Member, score, member, score...
            for id in pairs.into_iter().step_by(2) {
                if search.found.len() >= max_found {
                    search.complete = false;
                    return Ok(());
                }
                search.found.push((kind, id));
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

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
                    .arg(filter.text.as_deref().unwrap_or(""))
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
