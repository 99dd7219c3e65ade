//! The per-minute history of endings: how many tasks of a queue finished,
//! failed, were retried or canceled in each minute of the last 72 hours,
//! with the spread of their run times and queue waits.
//!
//! The ending scripts write it (`scripts/history.rs`: one `HINCRBY` per
//! ending into `P:history:<queue>:<hour>`), the busy slot's finish with
//! the field worked out here ([`Tally`]); this module reads it back,
//! merged over every partition, and computes percentiles from the
//! log-scale buckets. Fields that do not parse (the keys may hold anything)
//! are skipped. See docs/redis-schema.md, "History".

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use redis::Value;

use redis_tasks_protocol::model::TaskStatus;

use crate::keys::Keys;
use crate::part::Part;
use crate::record::hash_from_value;
use crate::{Store, StoreError};

/// How far back the history goes: 72 hours (the keys live a few hours
/// longer, so that a whole 72-hour window is always there).
pub const HISTORY_SPAN: Duration = Duration::from_secs(72 * 3600);

/// The number of log-scale buckets of a [`Histogram`].
pub const BUCKETS: usize = 64;

/// Counts of durations in log-scale buckets: bucket 0 holds those under
/// 1 ms, bucket `b` (1..=63) those in `[2^((b-1)/2), 2^(b/2))` ms. A
/// percentile is reported as the geometric middle of the bucket holding
/// its rank, so it is within a factor of 2^(1/4) (about 19%) of the truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: [u64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: [0; BUCKETS],
        }
    }
}

impl Histogram {
    /// Adds `n` durations in `bucket` (clamped to the last bucket).
    pub fn add(&mut self, bucket: usize, n: u64) {
        let b = bucket.min(BUCKETS - 1);
        self.counts[b] = self.counts[b].saturating_add(n);
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (b, n) in other.counts.iter().enumerate() {
            self.add(b, *n);
        }
    }

    /// How many durations it holds.
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0, |a, n| a.saturating_add(*n))
    }

    /// The duration below which fraction `q` (0 to 1) of them lie, as the
    /// middle of its bucket; `None` when empty.
    pub fn percentile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        // The rank of the wanted one, 1-based: at least the first.
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (b, n) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(*n);
            if seen >= rank {
                return Some(bucket_middle(b));
            }
        }
        Some(bucket_middle(BUCKETS - 1))
    }
}

/// How long a history hash lives past the start of its hour, in hours (the
/// scripts' `tally` writes the same figure).
const KEEP_HOURS: i64 = 76;

/// The bucket of a duration of `secs` seconds: 0 under 1 ms (or not a
/// number), else `floor(2 log2(ms)) + 1`, at most 63 (the scripts'
/// `bucket` of `history_lib`).
fn bucket(secs: f64) -> usize {
    if secs.is_nan() || secs < 0.001 {
        return 0;
    }
    // In 1..=63 here, so the cast neither wraps nor truncates.
    ((2.0 * (secs * 1000.0).ln() / 2f64.ln()).floor() + 1.0).clamp(1.0, 63.0) as usize
}

/// One ending's count, worked out by the caller so that the ending script
/// only adds it (parsing and bucketing in Lua cost several microseconds
/// of Redis time per task): `HINCRBY key field 1`, and `EXPIREAT key
/// expire_at` when that made the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) key: String,
    pub(crate) field: String,
    pub(crate) expire_at: i64,
}

impl Tally {
    /// The count of a run of queue `queue` that ended `status` at `now`,
    /// having started at `started` after waiting since `waited_from`; none
    /// for an ending the history does not count (only finished and failed
    /// runs end through a slot's finish).
    pub(crate) fn of_run(
        keys: &Keys,
        queue: &str,
        status: TaskStatus,
        now: Timestamp,
        started: Timestamp,
        waited_from: Timestamp,
    ) -> Option<Tally> {
        let kind = match status {
            TaskStatus::Finished => "f",
            TaskStatus::Failed => "x",
            _ => return None,
        };
        if queue.is_empty() {
            return None;
        }
        let secs = |from: Timestamp, to: Timestamp| {
            (to.as_microsecond() - from.as_microsecond()) as f64 / 1e6
        };
        let run = bucket(secs(started, now));
        let wait = bucket(secs(waited_from, started));
        let t = now.as_second();
        let hour = t.div_euclid(3600);
        Some(Tally {
            key: keys.history(queue, hour),
            field: format!("{}:{kind}:{run}:{wait}", t.div_euclid(60).rem_euclid(60)),
            expire_at: (hour + KEEP_HOURS) * 3600,
        })
    }
}

/// The representative duration of bucket `b`: 0.5 ms for bucket 0, else
/// the geometric middle of its range, `2^((b - 0.5)/2)` ms.
pub fn bucket_middle(b: usize) -> Duration {
    if b == 0 {
        return Duration::from_micros(500);
    }
    let ms = 2f64.powf((b as f64 - 0.5) / 2.0);
    Duration::from_secs_f64(ms / 1000.0)
}

/// The endings of one minute (of one queue, or of all of them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MinuteStats {
    /// The minute, in minutes since the unix epoch.
    pub minute: i64,
    /// Tasks that finished.
    pub finished: u64,
    /// Tasks that failed for good.
    pub failed: u64,
    /// Attempts that failed and were sent to a retry.
    pub retried: u64,
    /// Tasks canceled (queued, scheduled or running).
    pub canceled: u64,
    /// Run times of the endings that had a run (all but the cancels of
    /// tasks that never started).
    pub run: Histogram,
    /// Queue waits of the same endings: from enqueue (or from the due time
    /// of a retry) to the start of the run.
    pub wait: Histogram,
}

impl MinuteStats {
    /// Every ending counted.
    pub fn total(&self) -> u64 {
        [self.finished, self.failed, self.retried, self.canceled]
            .iter()
            .fold(0, |a, n| a.saturating_add(*n))
    }

    /// Adds the counts of `other` (another queue's, partition's or
    /// minute's) to these.
    pub fn merge(&mut self, other: &MinuteStats) {
        self.finished = self.finished.saturating_add(other.finished);
        self.failed = self.failed.saturating_add(other.failed);
        self.retried = self.retried.saturating_add(other.retried);
        self.canceled = self.canceled.saturating_add(other.canceled);
        self.run.merge(&other.run);
        self.wait.merge(&other.wait);
    }

    /// Adds `n` endings of one field of a history hash
    /// (`<minute>:<kind>:<run>:<wait>`, the minute already read); false
    /// when the kind is unknown.
    fn add_field(&mut self, kind: &str, run: &str, wait: &str, n: u64) -> bool {
        match kind {
            "f" => self.finished = self.finished.saturating_add(n),
            "x" => self.failed = self.failed.saturating_add(n),
            "r" => self.retried = self.retried.saturating_add(n),
            "c" => self.canceled = self.canceled.saturating_add(n),
            _ => return false,
        }
        // `-`: it never ran (a cancel before its start).
        if let (Ok(r), Ok(w)) = (run.parse::<usize>(), wait.parse::<usize>()) {
            self.run.add(r, n);
            self.wait.add(w, n);
        }
        true
    }
}

/// Adds the fields of the history hash of hour `hour` into `out`, by
/// minute, keeping the minutes in `[from, to]`.
fn add_hash(out: &mut BTreeMap<i64, MinuteStats>, hour: i64, hash: Value, from: i64, to: i64) {
    let Ok(fields) = hash_from_value("HGETALL", hash) else {
        return;
    };
    for (field, value) in fields {
        let mut parts = field.split(':');
        let (Some(m), Some(kind), Some(run), Some(wait), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            continue;
        };
        let Ok(m) = m.parse::<i64>() else { continue };
        let Some(n) = std::str::from_utf8(&value)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        if !(0..60).contains(&m) {
            continue;
        }
        let minute = hour * 60 + m;
        if minute < from || minute > to {
            continue;
        }
        let entry = out.entry(minute).or_insert_with(|| MinuteStats {
            minute,
            ..MinuteStats::default()
        });
        entry.add_field(kind, run, wait, n);
    }
}

impl Store {
    /// The endings of `queue` (of every queue for `None`) in each minute
    /// from `since` to `until` (both included, at most the last
    /// [`HISTORY_SPAN`] before `until`), merged over every partition,
    /// oldest first; minutes without endings are left out.
    pub fn history(
        &self,
        queue: Option<&str>,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<MinuteStats>, StoreError> {
        let to = until.as_second().div_euclid(60);
        let span_minutes = (HISTORY_SPAN.as_secs() / 60) as i64;
        let from = since.as_second().div_euclid(60).max(to - span_minutes);
        if from > to {
            return Ok(Vec::new());
        }
        let queues = match queue {
            Some(q) => vec![q.to_owned()],
            None => self.queues()?,
        };
        let hours: Vec<i64> = (from.div_euclid(60)..=to.div_euclid(60)).collect();
        let mut out = BTreeMap::new();
        for part in &self.parts {
            for (hour, hash) in part.history_hashes(&queues, &hours)? {
                add_hash(&mut out, hour, hash, from, to);
            }
        }
        Ok(out.into_values().collect())
    }
}

impl Part {
    /// The history hashes of `queues` for `hours` in this partition, as
    /// (hour, raw reply) pairs, read in one pipeline.
    fn history_hashes(
        &self,
        queues: &[String],
        hours: &[i64],
    ) -> Result<Vec<(i64, Value)>, StoreError> {
        if queues.is_empty() || hours.is_empty() {
            return Ok(Vec::new());
        }
        let replies: Vec<Value> = self.read(&[], |c, keys| {
            let mut pipe = redis::pipe();
            for q in queues {
                for hour in hours {
                    pipe.cmd("HGETALL").arg(keys.history(q, *hour));
                }
            }
            // A key of another type answers with an error: that hour is
            // skipped, the rest still read.
            pipe.ignore_errors();
            pipe.query(c)
        })?;
        let hour_of = queues.iter().flat_map(|_| hours.iter().copied());
        Ok(hour_of.zip(replies).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_bucket_holding_the_rank() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile(0.5), None);
        h.add(10, 90);
        h.add(20, 10);
        assert_eq!(h.percentile(0.5), Some(bucket_middle(10)));
        assert_eq!(h.percentile(0.95), Some(bucket_middle(20)));
        assert_eq!(h.percentile(0.0), Some(bucket_middle(10)));
        h.add(500, 1);
        assert_eq!(h.percentile(1.0), Some(bucket_middle(BUCKETS - 1)));
    }

    #[test]
    fn a_bucket_middle_lies_inside_its_range() {
        for b in 1..BUCKETS {
            let ms = bucket_middle(b).as_secs_f64() * 1000.0;
            let low = 2f64.powf((b as f64 - 1.0) / 2.0);
            assert!(ms >= low && ms < low * 2f64.sqrt(), "bucket {b}: {ms}");
        }
    }

    #[test]
    fn a_duration_lands_in_the_bucket_whose_middle_it_is() {
        for b in 0..BUCKETS {
            assert_eq!(bucket(bucket_middle(b).as_secs_f64()), b, "bucket {b}");
        }
        assert_eq!(bucket(f64::NAN), 0);
        assert_eq!(bucket(-1.0), 0);
        assert_eq!(bucket(0.001), 1);
        assert_eq!(bucket(0.0015), 2);
        assert_eq!(bucket(1e12), 63);
    }

    #[test]
    fn a_tally_names_the_hour_key_and_the_minute_field() {
        let keys = Keys::new("rt");
        let now: Timestamp = "2026-12-07T22:33:10Z".parse().expect("time");
        let started = now - jiff::SignedDuration::from_secs(3);
        let waited = started - jiff::SignedDuration::from_secs(60);
        let t = Tally::of_run(&keys, "mail", TaskStatus::Failed, now, started, waited)
            .expect("a failed run counts");
        let hour = now.as_second() / 3600;
        assert_eq!(t.key, keys.history("mail", hour));
        assert_eq!(t.field, format!("33:x:{}:{}", bucket(3.0), bucket(60.0)));
        assert_eq!(t.expire_at, (hour + 76) * 3600);
        let expired = Tally::of_run(&keys, "mail", TaskStatus::Expired, now, started, waited);
        assert_eq!(expired, None);
    }

    #[test]
    fn garbage_fields_are_skipped() {
        let mut out = BTreeMap::new();
        let hash = Value::Array(
            [
                ("3:f:4:2", "5"),
                ("3:c:-:-", "2"),
                ("3:q:1:1", "9"),
                ("61:f:1:1", "9"),
                ("x:f:1:1", "9"),
                ("3:f:1", "9"),
                ("3:x:1:1", "-4"),
                ("4:x:99999:1", "1"),
            ]
            .iter()
            .flat_map(|(f, v)| {
                [
                    Value::BulkString(f.as_bytes().to_vec()),
                    Value::BulkString(v.as_bytes().to_vec()),
                ]
            })
            .collect(),
        );
        add_hash(&mut out, 10, hash, 0, i64::MAX);
        let m3 = &out[&603];
        assert_eq!((m3.finished, m3.canceled, m3.failed), (5, 2, 0));
        assert_eq!((m3.run.count(), m3.wait.count()), (5, 5));
        assert_eq!(out[&604].run.percentile(0.5), Some(bucket_middle(63)));
        assert_eq!(out.len(), 2);
    }
}
