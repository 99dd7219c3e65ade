//! Which runs of an entry are due now, with the catch-up rules: pure
//! arithmetic on instants, so it is tested without a clock or Redis.
//!
//! - A run is due when it is after the entry's last handled run and not
//!   after `now`.
//! - Runs older than `now - max_catchup` are skipped (the downtime was too
//!   long for them to still make sense). A run less than [`ON_TIME_GRACE`]
//!   late is never skipped, so a scheduler that wakes up a little late (or
//!   waited out a short Redis hiccup) still enqueues it, whatever the limit.
//! - A singleton entry runs at most once to catch up: only the latest due
//!   run is returned. A non-singleton entry gets every due run inside the
//!   limit, oldest first.

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use redis_tasks_config::schedule::Schedule;

/// Never more runs than this in one catch-up (an `every = "1s"` entry
/// behind by a day would otherwise produce 86 400 tasks at once).
pub const MAX_CATCHUP_RUNS: usize = 1_000;

/// How late a run may be and still count as on time rather than missed.
pub const ON_TIME_GRACE: Duration = Duration::from_secs(60);

/// The due runs of one entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DueRuns {
    /// Runs to enqueue now, oldest first.
    pub runs: Vec<Timestamp>,
    /// Whether runs after `last` were left out: older than the catch-up
    /// limit, or (singleton) folded into the latest one, or over
    /// [`MAX_CATCHUP_RUNS`].
    pub skipped: bool,
}

/// The runs of `schedule` (in `tz`) due at `now` for an entry whose last
/// handled run is `last`.
pub fn due_runs(
    schedule: &Schedule,
    tz: &TimeZone,
    last: Timestamp,
    now: Timestamp,
    max_catchup: Duration,
    singleton: bool,
) -> DueRuns {
    let catchup =
        SignedDuration::try_from(max_catchup.max(ON_TIME_GRACE)).unwrap_or(SignedDuration::MAX);
    let limit = now.checked_sub(catchup).unwrap_or(Timestamp::MIN);
    let mut out = DueRuns::default();
    // Anything between `last` and the limit is skipped without being listed.
    let start = if last < limit {
        out.skipped = schedule
            .next_after(last, tz)
            .is_some_and(|first| first < limit);
        limit
            .checked_sub(SignedDuration::from_nanos(1))
            .unwrap_or(limit)
    } else {
        last
    };
    let last_us = last.as_microsecond();
    for run in schedule.runs_after(start, tz) {
        if run.at > now {
            break;
        }
        // `last` is stored with microsecond precision: a run that rounds
        // down to it is the one already handled.
        if run.at.as_microsecond() <= last_us {
            continue;
        }
        if out.runs.len() == MAX_CATCHUP_RUNS {
            out.skipped = true;
            out.runs.remove(0);
        }
        out.runs.push(run.at);
    }
    if singleton && out.runs.len() > 1 {
        let latest = out.runs.pop();
        out.runs = latest.into_iter().collect();
        out.skipped = true;
    }
    out
}

/// The first run of `schedule` after both `last` and `now` (the next time
/// the entry needs attention), if there is one.
pub fn next_run(
    schedule: &Schedule,
    tz: &TimeZone,
    last: Timestamp,
    now: Timestamp,
) -> Option<Timestamp> {
    let from = last.max(now);
    let last_us = last.as_microsecond();
    schedule
        .runs_after(from, tz)
        .find(|run| run.at.as_microsecond() > last_us)
        .map(|run| run.at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_tasks_config::schedule::{CronSchedule, Daily, parse_time_of_day};

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn every_minute() -> Schedule {
        Schedule::Cron(CronSchedule::parse("* * * * *").expect("cron"))
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn nothing_is_due_before_the_next_run() {
        let s = every_minute();
        let due = due_runs(
            &s,
            &TimeZone::UTC,
            ts("2026-01-01T10:00:00Z"),
            ts("2026-01-01T10:00:59Z"),
            HOUR,
            true,
        );
        assert_eq!(due, DueRuns::default());
        assert_eq!(
            next_run(
                &s,
                &TimeZone::UTC,
                ts("2026-01-01T10:00:00Z"),
                ts("2026-01-01T10:00:59Z")
            ),
            Some(ts("2026-01-01T10:01:00Z"))
        );
    }

    #[test]
    fn a_run_exactly_at_now_is_due_once() {
        let s = every_minute();
        let now = ts("2026-01-01T10:01:00Z");
        let due = due_runs(
            &s,
            &TimeZone::UTC,
            ts("2026-01-01T10:00:00Z"),
            now,
            HOUR,
            true,
        );
        assert_eq!(due.runs, [now]);
        assert!(!due.skipped);
        let again = due_runs(&s, &TimeZone::UTC, now, now, HOUR, true);
        assert!(again.runs.is_empty());
    }

    #[test]
    fn non_singleton_entries_catch_up_every_run_inside_the_limit() {
        let s = every_minute();
        let last = ts("2026-01-01T08:00:00Z");
        let now = ts("2026-01-01T10:00:30Z");
        let due = due_runs(
            &s,
            &TimeZone::UTC,
            last,
            now,
            Duration::from_secs(300),
            false,
        );
        assert_eq!(
            due.runs,
            [
                ts("2026-01-01T09:56:00Z"),
                ts("2026-01-01T09:57:00Z"),
                ts("2026-01-01T09:58:00Z"),
                ts("2026-01-01T09:59:00Z"),
                ts("2026-01-01T10:00:00Z"),
            ]
        );
        assert!(due.skipped, "runs from 08:01 to 09:55 were skipped");
    }

    #[test]
    fn singleton_entries_catch_up_at_most_once() {
        let s = every_minute();
        let last = ts("2026-01-01T09:50:00Z");
        let now = ts("2026-01-01T10:00:30Z");
        let due = due_runs(&s, &TimeZone::UTC, last, now, HOUR, true);
        assert_eq!(due.runs, [ts("2026-01-01T10:00:00Z")]);
        assert!(due.skipped);
    }

    #[test]
    fn runs_older_than_the_limit_are_skipped_entirely() {
        let daily = Schedule::Daily(Daily::new(parse_time_of_day("03:00").expect("time")));
        let due = due_runs(
            &daily,
            &TimeZone::UTC,
            ts("2026-01-01T03:00:00Z"),
            ts("2026-01-03T12:00:00Z"),
            HOUR,
            false,
        );
        assert!(due.runs.is_empty());
        assert!(due.skipped);
        // A limit that reaches back far enough catches both days up.
        let due = due_runs(
            &daily,
            &TimeZone::UTC,
            ts("2026-01-01T03:00:00Z"),
            ts("2026-01-03T12:00:00Z"),
            Duration::from_secs(3 * 86_400),
            false,
        );
        assert_eq!(
            due.runs,
            [ts("2026-01-02T03:00:00Z"), ts("2026-01-03T03:00:00Z")]
        );
    }

    #[test]
    fn a_run_a_little_late_is_never_skipped() {
        let s = every_minute();
        let due = due_runs(
            &s,
            &TimeZone::UTC,
            ts("2026-01-01T10:00:00Z"),
            ts("2026-01-01T10:01:02Z"),
            Duration::ZERO,
            false,
        );
        assert_eq!(due.runs, [ts("2026-01-01T10:01:00Z")]);
    }

    #[test]
    fn a_run_rounded_to_the_stored_microsecond_is_not_repeated() {
        // Inside a smeared window runs fall between microseconds; the stored
        // last run is truncated and must still count as that run.
        let tz = TimeZone::get("Europe/Berlin").expect("tz");
        let s = Schedule::Cron(CronSchedule::parse("* * * * *").expect("cron"));
        let after = ts("2017-03-26T00:50:00Z");
        let run = s.next_after(after, &tz).expect("run");
        let stored = Timestamp::from_microsecond(run.as_microsecond()).expect("us");
        let due = due_runs(&s, &tz, stored, run, HOUR, false);
        assert!(due.runs.is_empty(), "{due:?}");
        let next = next_run(&s, &tz, stored, run).expect("next");
        assert!(next > run);
    }
}
