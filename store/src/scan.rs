//! Searching a listing (a registry, the delayed set, a queue) for the
//! tasks that match a [`TaskFilter`], a bounded slice at a time.
//!
//! The listing is read in windows of [`FILTER_WINDOW`] entries by rank,
//! each window one script ([`scripts::FILTER_LISTING`]) that looks at its
//! records inside Redis and returns only the matching ids with their
//! ranks, so no record crosses the network and no call holds Redis for
//! long. A scan stops at the end of the listing, at a number of matches, or
//! when its time budget is spent, and then hands back a [`ScanCursor`] to
//! go on from: a page of the dashboard never scans more than one budget.
//!
//! Positions are ranks: registries are scanned newest first (downwards
//! from the top rank), the delayed set soonest due first and a queue in
//! the order its tasks run (upwards from rank 0). A task added to a
//! registry meanwhile does not move the ranks below a cursor; one removed
//! below it (a registry trimmed, a queue's head fetched) makes the next
//! slice pass over as many entries.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use redis::Value;

use crate::part::Part;
use crate::record::{score, text_of};
use crate::registry::registry_key;
use crate::{RegistryKind, Store, StoreError, TaskFilter, scripts};

/// How many listing entries one filter script looks at.
pub const FILTER_WINDOW: usize = 1000;

/// A listing of task ids that can be searched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// A registry of ended tasks, newest first; time is the end time.
    Registry(RegistryKind),
    /// The delayed set, soonest due first; time is when a task is due.
    Delayed,
    /// A queue, in the order its tasks run; time is the enqueue time.
    Queue(String),
}

impl Listing {
    fn key(&self, part: &Part) -> String {
        match self {
            Listing::Registry(kind) => registry_key(part.keys(), *kind),
            Listing::Delayed => part.keys().scheduled(),
            Listing::Queue(name) => part.keys().queue(name),
        }
    }

    fn key_type(&self) -> &'static str {
        match self {
            Listing::Queue(_) => "list",
            _ => "zset",
        }
    }

    fn newest_first(&self) -> bool {
        matches!(self, Listing::Registry(_))
    }
}

/// Where a scan goes on: a partition (in the order the listing visits
/// them) and, inside it, the next rank (`None`: its start). Downwards
/// (registries) the rank is the exclusive upper end of what is left;
/// upwards, the first rank left. Written `part` or `part.rank`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanCursor {
    /// The partition's place in the listing's order.
    pub part: usize,
    /// The rank to go on from; `None` at the partition's start.
    pub rank: Option<u64>,
}

impl ScanCursor {
    /// The start of a listing.
    pub const START: ScanCursor = ScanCursor {
        part: 0,
        rank: None,
    };
}

impl fmt::Display for ScanCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rank {
            None => write!(f, "{}", self.part),
            Some(rank) => write!(f, "{}.{rank}", self.part),
        }
    }
}

/// A text that is not a [`ScanCursor`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a search cursor (give PART or PART.RANK, numbers)")]
pub struct BadCursor;

impl FromStr for ScanCursor {
    type Err = BadCursor;

    fn from_str(s: &str) -> Result<ScanCursor, BadCursor> {
        let (part, rank) = match s.split_once('.') {
            Some((part, rank)) => (part, Some(rank.parse().map_err(|_| BadCursor)?)),
            None => (s, None),
        };
        Ok(ScanCursor {
            part: part.parse().map_err(|_| BadCursor)?,
            rank,
        })
    }
}

/// What [`Store::scan`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// The matching ids in the listing's order, each with the cursor just
    /// after it (to start a next page there).
    pub found: Vec<(String, ScanCursor)>,
    /// Where the scan stopped before the end (matches or time budget
    /// reached); `None` when it reached the end of the listing.
    pub next: Option<ScanCursor>,
    /// How many entries it looked at.
    pub looked: u64,
    /// How many windows (script calls) it took.
    pub windows: u64,
}

/// How far a scan may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLimits {
    /// Stop after this many matches.
    pub max_found: usize,
    /// Stop at the end of the first window after this long (a scan looks
    /// at one window at least, so that a cursor always moves on).
    pub budget: Option<Duration>,
}

impl Store {
    /// The tasks of `listing` that match `filter`, from `from` on, within
    /// `limits`. Each window is one read-only script over at most
    /// [`FILTER_WINDOW`] entries; the budget is checked between windows.
    pub fn scan(
        &self,
        listing: &Listing,
        filter: &TaskFilter,
        from: ScanCursor,
        limits: ScanLimits,
    ) -> Result<Scan, StoreError> {
        let parts: Vec<&Part> = match listing {
            Listing::Queue(name) => self.around(name).collect(),
            _ => self.parts().collect(),
        };
        let started = Instant::now();
        let mut scan = Scan::default();
        let mut cursor = from;
        while let Some(part) = parts.get(cursor.part) {
            let done = part.scan(listing, filter, &mut cursor, limits, started, &mut scan)?;
            if !done {
                scan.next = Some(cursor);
                return Ok(scan);
            }
            cursor = ScanCursor {
                part: cursor.part + 1,
                rank: None,
            };
        }
        Ok(scan)
    }

    /// The ids of registry `kind` that match `filter`, oldest end first in
    /// each partition (the whole registry, window by window), so that
    /// requeueing them keeps the order they failed in.
    pub fn matching(
        &self,
        kind: RegistryKind,
        filter: &TaskFilter,
    ) -> Result<Vec<String>, StoreError> {
        let limits = ScanLimits {
            max_found: usize::MAX,
            budget: None,
        };
        let scan = self.scan(&Listing::Registry(kind), filter, ScanCursor::START, limits)?;
        Ok(scan.found.into_iter().rev().map(|(id, _)| id).collect())
    }
}

impl Part {
    /// The ranks `[floor, ceiling)` of the listing's entries that the
    /// filter's time range can match (the whole listing unless its time
    /// is the score).
    fn rank_bounds(
        &self,
        key: &str,
        listing: &Listing,
        filter: &TaskFilter,
    ) -> Result<(u64, u64), StoreError> {
        let kt = listing.key_type();
        if kt == "list" {
            let len = self.read(&[(key, kt)], |c, _| redis::cmd("LLEN").arg(key).query(c))?;
            return Ok((0, len));
        }
        let below = |bound: String| {
            self.read(&[(key, kt)], |c, _| {
                redis::cmd("ZCOUNT")
                    .arg(key)
                    .arg("-inf")
                    .arg(bound)
                    .query::<u64>(c)
            })
        };
        let floor = match filter.since {
            Some(t) => below(format!("({}", score(t)))?,
            None => 0,
        };
        let ceiling = match filter.until {
            Some(t) => below(score(t))?,
            None => self.read(&[(key, kt)], |c, _| redis::cmd("ZCARD").arg(key).query(c))?,
        };
        Ok((floor, ceiling.max(floor)))
    }

    /// Scans this partition from `cursor` (updated as it goes); `true`
    /// when it reached the partition's end, `false` when a limit stopped
    /// it.
    fn scan(
        &self,
        listing: &Listing,
        filter: &TaskFilter,
        cursor: &mut ScanCursor,
        limits: ScanLimits,
        started: Instant,
        scan: &mut Scan,
    ) -> Result<bool, StoreError> {
        let key = listing.key(self);
        let (floor, ceiling) = self.rank_bounds(&key, listing, filter)?;
        let down = listing.newest_first();
        let mut at = match (cursor.rank, down) {
            (None, true) => ceiling,
            (None, false) => floor,
            (Some(r), true) => r.min(ceiling),
            (Some(r), false) => r.max(floor),
        };
        let window = FILTER_WINDOW as u64;
        loop {
            cursor.rank = Some(at);
            let (lo, hi) = if down {
                if at <= floor {
                    return Ok(true);
                }
                (at.saturating_sub(window).max(floor), at - 1)
            } else {
                if at >= ceiling {
                    return Ok(true);
                }
                (at, (at + window).min(ceiling) - 1)
            };
            let spent = limits.budget.is_some_and(|b| started.elapsed() >= b);
            if scan.found.len() >= limits.max_found || (spent && scan.windows > 0) {
                return Ok(false);
            }
            let most = limits.max_found - scan.found.len();
            let (looked, matches) =
                self.filter_window(&key, listing, filter, lo, hi, down, most)?;
            scan.looked += looked;
            scan.windows += 1;
            for (id, rank) in matches {
                let after = if down { rank } else { rank + 1 };
                scan.found.push((
                    id,
                    ScanCursor {
                        part: cursor.part,
                        rank: Some(after),
                    },
                ));
            }
            at = if down {
                at.saturating_sub(looked)
            } else {
                at + looked
            };
            if looked == 0 {
                // The listing shrank under the window: nothing more here.
                return Ok(true);
            }
        }
    }

    /// One [`scripts::FILTER_LISTING`] call: entries looked at, and the
    /// matches with their ranks.
    #[allow(clippy::too_many_arguments)]
    fn filter_window(
        &self,
        key: &str,
        listing: &Listing,
        filter: &TaskFilter,
        lo: u64,
        hi: u64,
        down: bool,
        most: usize,
    ) -> Result<(u64, Vec<(String, u64)>), StoreError> {
        let kt = listing.key_type();
        let (tsrc, from, to) = match listing {
            Listing::Queue(_) => (
                "enqueued_at",
                filter.since.map(second_text).unwrap_or_default(),
                filter.until.map(second_text).unwrap_or_default(),
            ),
            // The ranks already bound a score's range.
            _ => ("", String::new(), String::new()),
        };
        let reply: Vec<Value> = self.read(&[(key, kt)], |c, keys| {
            scripts::FILTER_LISTING
                .key(key)
                .arg(keys.prefix())
                .arg(kt)
                .arg(lo)
                .arg(hi)
                .arg(if down { "desc" } else { "asc" })
                .arg(most.min(FILTER_WINDOW))
                .arg(filter.queue.as_deref().unwrap_or(""))
                .arg(filter.task.as_deref().unwrap_or(""))
                .arg(filter.error_contains.as_deref().unwrap_or(""))
                .arg(filter.text.as_deref().unwrap_or(""))
                .arg(tsrc)
                .arg(&from)
                .arg(&to)
                .invoke(c)
        })?;
        let bad = |detail: String| StoreError::UnexpectedReply {
            what: "filter listing",
            detail,
        };
        let mut it = reply.into_iter();
        let looked = match it.next() {
            Some(Value::Int(n)) => u64::try_from(n).map_err(|_| bad(n.to_string()))?,
            other => return Err(bad(format!("{other:?}"))),
        };
        let mut matches = Vec::new();
        while let Some(id) = it.next() {
            let id = text_of("filter listing", id)?;
            let rank = match it.next() {
                Some(Value::Int(n)) => u64::try_from(n).map_err(|_| bad(n.to_string()))?,
                other => return Err(bad(format!("{other:?}"))),
            };
            matches.push((id, rank));
        }
        Ok((looked, matches))
    }
}

/// `2026-11-25T08:17:26`: a time as a record's field starts, to the
/// second (what the script compares).
fn second_text(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_written_and_read_back() {
        for c in [
            ScanCursor::START,
            ScanCursor {
                part: 2,
                rank: Some(1500),
            },
        ] {
            assert_eq!(c.to_string().parse::<ScanCursor>(), Ok(c));
        }
        assert_eq!("3".parse::<ScanCursor>().map(|c| c.rank), Ok(None));
        for bad in ["", "x", "1.", "1.-2", "-1", "1.2.3"] {
            assert!(bad.parse::<ScanCursor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn times_are_cut_to_the_second() {
        let t: jiff::Timestamp = "2026-11-25T08:17:26.123456Z".parse().expect("time");
        assert_eq!(second_text(t), "2026-11-25T08:17:26");
    }
}
