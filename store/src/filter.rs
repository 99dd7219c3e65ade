//! Which tasks a listing is searched for (queue, task name, text in the
//! error, text in the error or the description, a time range), and the
//! search of registries by id prefix,
//! for actions on many tasks at once
//! (`failed requeue --queue Q --error-contains TEXT`, the dashboard's
//! "all matching").
//!
//! The search itself, window by window inside Redis with a cursor to go
//! on from, is `scan.rs`.

use jiff::Timestamp;
use redis_tasks_protocol::model::TaskRecord;

use crate::part::Part;
use crate::registry::registry_key;
use crate::unique::glob_escape;
use crate::{RegistryKind, Store, StoreError};

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
    /// At or after this time: the end time in a registry, the due time
    /// in the delayed set, the enqueue time in a queue (to the second).
    pub since: Option<Timestamp>,
    /// At or before this time (the same time as `since`).
    pub until: Option<Timestamp>,
}

impl TaskFilter {
    /// Whether `record` matches, `time` being its time in the listing
    /// (for the time range): the same rules as the filter script, for
    /// tasks already read (the running ones).
    pub fn matches(&self, record: &TaskRecord, time: Option<Timestamp>) -> bool {
        let has = |v: Option<&str>, text: &str| v.is_some_and(|v| v.contains(text));
        self.queue.as_ref().is_none_or(|q| *q == record.queue)
            && self.task.as_ref().is_none_or(|t| *t == record.task)
            && self
                .error_contains
                .as_ref()
                .is_none_or(|e| has(record.error.as_deref(), e))
            && self.text.as_ref().is_none_or(|t| {
                has(record.error.as_deref(), t) || record.description.contains(t.as_str())
            })
            && self.since.is_none_or(|s| time.is_some_and(|t| t >= s))
            && self.until.is_none_or(|u| time.is_some_and(|t| t <= u))
    }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{RawHash, parse_record};

    fn record(fields: &[(&str, &str)]) -> TaskRecord {
        let hash: RawHash = [("task", "render"), ("args", "null"), ("status", "running")]
            .iter()
            .chain(fields)
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect();
        parse_record("t1", &hash).expect("record")
    }

    #[test]
    fn a_read_record_is_matched_like_the_script_does() {
        let r = record(&[
            ("queue", "mail"),
            ("description", "render(pdf)"),
            ("enqueued_at", "2026-11-25T08:17:26Z"),
        ]);
        let t: Timestamp = "2026-11-25T08:00:00Z".parse().expect("time");
        let f = |filter: TaskFilter| filter.matches(&r, Some(t));
        assert!(f(TaskFilter::default()));
        assert!(f(TaskFilter {
            queue: Some("mail".to_owned()),
            text: Some("pdf".to_owned()),
            since: Some(t),
            until: Some(t),
            ..TaskFilter::default()
        }));
        assert!(!f(TaskFilter {
            queue: Some("mai".to_owned()),
            ..TaskFilter::default()
        }));
        assert!(!f(TaskFilter {
            error_contains: Some("pdf".to_owned()),
            ..TaskFilter::default()
        }));
        assert!(!f(TaskFilter {
            since: Some(t + jiff::SignedDuration::from_secs(1)),
            ..TaskFilter::default()
        }));
        assert!(
            !TaskFilter {
                until: Some(t),
                ..TaskFilter::default()
            }
            .matches(&r, None)
        );
    }
}
