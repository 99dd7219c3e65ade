//! The `every` schedule: a fixed interval counted from a start time each
//! local day.
//!
//! Runs fall at `start + k * interval` seconds after LOCAL midnight, for every
//! whole `k >= 0` that stays inside the day; the next day starts again at
//! `start`. So `every 5h from 08:00` runs at 08:00, 13:00, 18:00 and 23:00,
//! then 08:00 the next day. Counting on the local clock (and converting
//! through the smearing in [`super::smear`]) keeps the same runs on the days
//! the clocks change.
//!
//! Without an explicit start the phase is picked "at random" within the
//! interval, so that many entries with the same interval do not all fire in
//! the same second. The pick is a hash of the entry id, not a random number:
//! a restarted scheduler keeps the phase it had.

use jiff::civil::{DateTime, Time};

use super::ScheduleError;
use super::clock::format_time_of_day;
use super::duration::format_duration;

/// Nanoseconds in one second.
const NANOS: i64 = 1_000_000_000;
/// Seconds in one civil day.
const DAY_SECS: u64 = 86_400;

/// A fixed interval shorter than 12 hours, restarting each local day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Every {
    interval: u64,
    start: u64,
    start_given: bool,
}

impl Every {
    /// Intervals must be strictly shorter than this many seconds (12 hours).
    pub const MAX_INTERVAL_SECS: u64 = 12 * 3_600;

    /// An interval of `interval_secs` seconds starting at `start_at` each
    /// local day, or, without `start_at`, at a phase within the first interval
    /// derived from `entry_id` (see [`stable_phase`]).
    pub fn new(
        interval_secs: u64,
        start_at: Option<Time>,
        entry_id: &str,
    ) -> Result<Every, ScheduleError> {
        if interval_secs == 0 {
            return Err(ScheduleError::ZeroInterval);
        }
        if interval_secs >= Every::MAX_INTERVAL_SECS {
            return Err(ScheduleError::IntervalTooLong {
                interval: format_duration(interval_secs),
            });
        }
        let (start, start_given) = match start_at {
            Some(at) => (seconds_of_day(at), true),
            None => (stable_phase(entry_id, interval_secs), false),
        };
        Ok(Every {
            interval: interval_secs,
            start,
            start_given,
        })
    }

    /// The interval, in seconds.
    pub fn interval_secs(&self) -> u64 {
        self.interval
    }

    /// Seconds after local midnight of each day's first run.
    pub fn start_secs(&self) -> u64 {
        self.start
    }

    /// Whether the start was given (`start_at`) rather than derived from the
    /// entry id.
    pub fn start_given(&self) -> bool {
        self.start_given
    }

    /// The first local run strictly after `after`.
    pub(crate) fn next_civil(&self, after: DateTime) -> Option<DateTime> {
        let time = after.time();
        let now_ns = (i64::from(time.hour()) * 3_600
            + i64::from(time.minute()) * 60
            + i64::from(time.second()))
            * NANOS
            + i64::from(time.subsec_nanosecond());
        let start_ns = i64::try_from(self.start).ok()? * NANOS;
        let interval_ns = i64::try_from(self.interval).ok()? * NANOS;
        let next_ns = if now_ns < start_ns {
            start_ns
        } else {
            start_ns + ((now_ns - start_ns) / interval_ns + 1) * interval_ns
        };
        let day_ns = i64::try_from(DAY_SECS).ok()? * NANOS;
        let (date, secs) = if next_ns < day_ns {
            (after.date(), next_ns / NANOS)
        } else {
            (after.date().tomorrow().ok()?, start_ns / NANOS)
        };
        let at = Time::new(
            i8::try_from(secs / 3_600).ok()?,
            i8::try_from(secs / 60 % 60).ok()?,
            i8::try_from(secs % 60).ok()?,
            0,
        )
        .ok()?;
        Some(date.to_datetime(at))
    }

    /// How it is written in settings and shown in logs: `1h30m from 08:00`.
    pub(crate) fn describe(&self) -> String {
        let at = Time::new(
            i8::try_from(self.start / 3_600).unwrap_or(0),
            i8::try_from(self.start / 60 % 60).unwrap_or(0),
            i8::try_from(self.start % 60).unwrap_or(0),
            0,
        )
        .unwrap_or(Time::midnight());
        let from = format_time_of_day(at);
        if self.start_given {
            format!("{} from {from}", format_duration(self.interval))
        } else {
            format!(
                "{} from {from} (phase from the entry id)",
                format_duration(self.interval)
            )
        }
    }
}

/// The phase (seconds after local midnight, below `interval_secs`) used for an
/// `every` entry without `start_at`.
///
/// It is the 64-bit FNV-1a hash of the entry id's UTF-8 bytes, modulo the
/// interval: spread out like a random pick, yet the same for the same id on
/// every run, machine and version, so restarting the scheduler keeps the
/// phase. Returns 0 for an interval of 0.
pub fn stable_phase(entry_id: &str, interval_secs: u64) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    if interval_secs == 0 {
        return 0;
    }
    let hash = entry_id.bytes().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    hash % interval_secs
}

/// Seconds after midnight of a time of day, sub-seconds dropped.
fn seconds_of_day(at: Time) -> u64 {
    // Each part is non-negative and in range: jiff checks them.
    u64::try_from(
        i64::from(at.hour()) * 3_600 + i64::from(at.minute()) * 60 + i64::from(at.second()),
    )
    .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use jiff::civil::{date, time};

    use super::*;

    fn runs_on(every: &Every, day: jiff::civil::Date) -> Vec<Time> {
        let mut out = Vec::new();
        let mut cursor = day
            .yesterday()
            .expect("yesterday")
            .at(23, 59, 59, 999_999_999);
        while let Some(next) = every.next_civil(cursor) {
            if next.date() != day {
                break;
            }
            out.push(next.time());
            cursor = next;
        }
        out
    }

    #[test]
    fn runs_from_start_each_day_and_restarts_the_next_day() {
        let every = Every::new(5 * 3_600, Some(time(8, 0, 0, 0)), "x").expect("valid");
        assert_eq!(
            runs_on(&every, date(2024, 3, 1)),
            vec![
                time(8, 0, 0, 0),
                time(13, 0, 0, 0),
                time(18, 0, 0, 0),
                time(23, 0, 0, 0)
            ]
        );
        assert_eq!(
            every.next_civil(date(2024, 3, 1).at(23, 0, 0, 0)),
            Some(date(2024, 3, 2).at(8, 0, 0, 0))
        );
        assert_eq!(
            every.next_civil(date(2024, 3, 1).at(12, 59, 59, 999_999_999)),
            Some(date(2024, 3, 1).at(13, 0, 0, 0))
        );
    }

    #[test]
    fn a_start_after_the_first_interval_leaves_the_morning_empty() {
        let every = Every::new(90 * 60, Some(time(21, 0, 0, 0)), "x").expect("valid");
        assert_eq!(
            runs_on(&every, date(2024, 3, 1)),
            vec![time(21, 0, 0, 0), time(22, 30, 0, 0)]
        );
    }

    #[test]
    fn phase_is_stable_and_inside_the_interval() {
        for id in ["", "nightly", "cleanup", "report-42"] {
            for interval in [1, 7, 60, 3_600, 43_199] {
                let phase = stable_phase(id, interval);
                assert!(phase < interval);
                assert_eq!(phase, stable_phase(id, interval));
            }
        }
        // Pinned values: changing the hash would move every deployed entry.
        // FNV-1a("nightly") = 0x7e30_8d76_80db_5f8a.
        assert_eq!(stable_phase("nightly", 3_600), 2_858);
        assert_eq!(stable_phase("", 3_600), 437);
        assert_ne!(stable_phase("a", 3_600), stable_phase("b", 3_600));
        let every = Every::new(600, None, "cleanup").expect("valid");
        assert_eq!(every.start_secs(), stable_phase("cleanup", 600));
        assert!(!every.start_given());
    }

    #[test]
    fn rejects_zero_and_long_intervals() {
        assert_eq!(Every::new(0, None, "x"), Err(ScheduleError::ZeroInterval));
        assert!(matches!(
            Every::new(12 * 3_600, None, "x"),
            Err(ScheduleError::IntervalTooLong { .. })
        ));
        assert!(Every::new(12 * 3_600 - 1, None, "x").is_ok());
    }
}
