//! When scheduled tasks run.
//!
//! A schedule names local wall-clock times in the settings' time zone. Every
//! kind works in two steps, so that daylight-saving changes are handled in one
//! place only:
//!
//! 1. find the next matching LOCAL civil datetime (no time zone involved);
//! 2. turn it into a UTC instant through the smearing in [`smear`], which makes
//!    every local time exist exactly once, so a job is neither skipped in
//!    spring nor run twice in autumn.
//!
//! # Layout
//!
//! - [`duration`]: `90m`, `1h30m`, `1800s`; shared by settings and the CLI.
//! - [`clock`]: `"HH:MM"` times of day and the `daily` kind.
//! - [`every`]: a fixed interval counted from a start time each local day.
//! - [`cron`]: five-field crontab expressions (parsed by `croner`).
//! - [`smear`]: local time to UTC and back.
//! - [`entry`]: a `[schedule.ID]` entry of the settings file.
//!
//! The scheduler process that acts on these (locking, catch-up, enqueueing)
//! is not part of this module.

pub mod clock;
pub mod cron;
pub mod duration;
pub mod entry;
pub mod every;
pub mod smear;

use std::fmt;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

pub use clock::{Daily, format_time_of_day, parse_time_of_day};
pub use cron::CronSchedule;
pub use duration::{format_duration, parse_duration};
pub use entry::ScheduleEntry;
pub use every::{Every, stable_phase};
pub use smear::{local_to_utc, utc_to_local};

/// A schedule that cannot be used as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The crontab expression could not be parsed.
    #[error("invalid cron expression {expr:?}: {reason}")]
    InvalidCron {
        /// The expression as given.
        expr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The crontab expression parses but names no date that exists.
    #[error("cron expression {expr:?} never matches a real date")]
    CronNeverMatches {
        /// The expression as given.
        expr: String,
    },
    /// A length of time could not be read.
    #[error(
        "invalid duration {text:?}: {reason} (examples: \"90m\", \"5h\", \"1800s\", \"1h30m\")"
    )]
    InvalidDuration {
        /// The text as given.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An `every` interval of zero.
    #[error("an `every` interval must be at least one second")]
    ZeroInterval,
    /// An `every` interval of 12 hours or more.
    #[error(
        "`every` interval {interval} is too long: it must be shorter than 12 hours (use cron or daily for rarer runs)"
    )]
    IntervalTooLong {
        /// The interval, written like `12h`.
        interval: String,
    },
    /// A time of day that is not `"HH:MM"`.
    #[error("invalid time of day {text:?}: expected \"HH:MM\" from 00:00 to 23:59")]
    InvalidTimeOfDay {
        /// The text as given.
        text: String,
    },
    /// A time zone name the time zone database does not know.
    #[error(
        "unknown time zone {name:?}: expected an IANA name such as \"Europe/Berlin\" or \"UTC\""
    )]
    UnknownTimeZone {
        /// The name as given.
        name: String,
    },
}

/// Looks up a time zone by its IANA name (`Europe/Berlin`, `UTC`) in the
/// system's time zone database. `UTC` works even without a database.
pub fn parse_time_zone(name: &str) -> Result<TimeZone, ScheduleError> {
    let name = name.trim();
    if name.eq_ignore_ascii_case("UTC") {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|_| ScheduleError::UnknownTimeZone {
        name: name.to_owned(),
    })
}

/// One of the schedule kinds (docs/scheduler.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// A crontab expression.
    Cron(CronSchedule),
    /// A fixed interval since a start time each local day.
    Every(Every),
    /// Once a day at a local time (`once_per_day`).
    Daily(Daily),
}

/// One run of a schedule: when it happens and the local time it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// The UTC instant of the run.
    pub at: Timestamp,
    /// The local wall-clock time the schedule named. Around a smeared
    /// daylight-saving change this is the smeared local time of `at`.
    pub local: DateTime,
}

/// How many local matches [`Schedule::next_run_after`] tries before giving
/// up. Only a local time repeated by an unsmeared offset change (or a
/// rounding nanosecond) ever costs more than one.
const MAX_CANDIDATES: usize = 10_000;

impl Schedule {
    /// The first local civil datetime strictly after `after` that this
    /// schedule names, with no time zone involved.
    pub fn next_civil_after(&self, after: DateTime) -> Option<DateTime> {
        match self {
            Schedule::Cron(cron) => cron.next_civil(after),
            Schedule::Every(every) => every.next_civil(after),
            Schedule::Daily(daily) => daily.next_civil(after),
        }
    }

    /// The first run strictly after the instant `after`, in time zone `tz`.
    ///
    /// `None` when the schedule has no run left before the end of the
    /// supported range of years.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        self.next_run_after(after, tz).map(|run| run.at)
    }

    /// Like [`Schedule::next_after`], also giving the local time of the run.
    pub fn next_run_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Run> {
        let (mut cursor, inclusive) = smear::search_start(after, tz);
        if inclusive {
            // `next_civil_after` is strict; step back to include the start.
            cursor = cursor
                .checked_sub(jiff::SignedDuration::from_nanos(1))
                .ok()?;
        }
        for _ in 0..MAX_CANDIDATES {
            let local = self.next_civil_after(cursor)?;
            let at = local_to_utc(local, tz)?;
            if at > after {
                return Some(Run { at, local });
            }
            cursor = local;
        }
        None
    }

    /// The runs strictly after `after`, in order.
    pub fn runs_after<'a>(
        &'a self,
        after: Timestamp,
        tz: &'a TimeZone,
    ) -> impl Iterator<Item = Run> + 'a {
        let mut last = after;
        std::iter::from_fn(move || {
            let run = self.next_run_after(last, tz)?;
            last = run.at;
            Some(run)
        })
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Cron(cron) => write!(f, "cron {:?}", cron.expression()),
            Schedule::Every(every) => write!(f, "every {}", every.describe()),
            Schedule::Daily(daily) => write!(f, "daily at {}", format_time_of_day(daily.at())),
        }
    }
}

#[cfg(test)]
mod tests;
