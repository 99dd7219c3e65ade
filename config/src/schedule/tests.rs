//! Whole-schedule behaviour: next runs across daylight-saving changes, in
//! many zones, for every kind.

use std::collections::BTreeMap;

use jiff::civil::{Date, Time, date, time};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::*;

fn zone(name: &str) -> TimeZone {
    parse_time_zone(name).expect("time zone in the system database")
}

fn utc(text: &str) -> Timestamp {
    text.parse().expect("a valid RFC 3339 instant")
}

fn cron(expr: &str) -> Schedule {
    Schedule::Cron(CronSchedule::parse(expr).expect("valid cron"))
}

fn daily(at: Time) -> Schedule {
    Schedule::Daily(Daily::new(at))
}

fn every(secs: u64, start: Time) -> Schedule {
    Schedule::Every(Every::new(secs, Some(start), "test").expect("valid interval"))
}

/// Zones the year-long checks run in.
const ZONES: [&str; 10] = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Europe/London",
    "Pacific/Chatham",
    "UTC",
];

/// The current year, so that the checks also cover this year's changes.
fn this_year() -> i16 {
    TimeZone::UTC.to_datetime(Timestamp::now()).year()
}

/// Runs from the start of local `year` up to its end, as local date -> count.
fn runs_per_local_day(schedule: &Schedule, tz: &TimeZone, year: i16) -> BTreeMap<Date, usize> {
    let start = local_to_utc(date(year, 1, 1).at(0, 0, 0, 0), tz).expect("in range");
    let before = start
        .checked_sub(SignedDuration::from_nanos(1))
        .expect("in range");
    let mut counts = BTreeMap::new();
    let mut last = before;
    for run in schedule.runs_after(before, tz) {
        assert!(run.at > last, "runs go forward: {} after {last}", run.at);
        let back = utc_to_local(run.at, tz);
        let drift = back.duration_since(run.local);
        // Its instant shows its local time (exactly, or one nanosecond late
        // where the smeared clock runs fast); unsmeared skipped times run at
        // the change instead, within the day.
        assert!(
            drift >= SignedDuration::ZERO
                && (drift <= SignedDuration::from_nanos(1) || back.date() == run.local.date()),
            "{run:?} shows {back}"
        );
        last = run.at;
        if run.local.year() != year {
            break;
        }
        *counts.entry(run.local.date()).or_insert(0) += 1;
    }
    counts
}

fn days_in(year: i16) -> usize {
    if date(year, 1, 1).in_leap_year() {
        366
    } else {
        365
    }
}

/// Times of day that fall into the changed hours somewhere.
const TRICKY_TIMES: [(i8, i8); 10] = [
    (0, 0),
    (0, 30),
    (1, 0),
    (1, 45),
    (2, 0),
    (2, 17),
    (2, 30),
    (2, 59),
    (3, 0),
    (23, 59),
];

#[test]
fn daily_runs_exactly_once_every_local_day_in_many_zones() {
    for name in ZONES {
        let tz = zone(name);
        for year in [2017, this_year()] {
            for (hour, minute) in TRICKY_TIMES {
                let schedule = daily(time(hour, minute, 0, 0));
                let counts = runs_per_local_day(&schedule, &tz, year);
                assert_eq!(
                    counts.len(),
                    days_in(year),
                    "{name} {year} {hour:02}:{minute:02}"
                );
                assert!(
                    counts.values().all(|n| *n == 1),
                    "{name} {year} {hour:02}:{minute:02}: {counts:?}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn daily_at_any_minute_runs_once_a_day(
        name in proptest::sample::select(ZONES.to_vec()),
        year in 2016_i16..2031,
        hour in 0_i8..24,
        minute in 0_i8..60,
    ) {
        let tz = zone(name);
        let counts = runs_per_local_day(&daily(time(hour, minute, 0, 0)), &tz, year);
        prop_assert_eq!(counts.len(), days_in(year));
        prop_assert!(counts.values().all(|n| *n == 1));
    }
}

#[test]
fn spec_examples_as_next_runs() {
    let berlin = zone("Europe/Berlin");
    let run = cron("17 2 * * *")
        .next_run_after(utc("2017-03-25T12:00:00Z"), &berlin)
        .expect("a run");
    // 02:17:00 local, 17 minutes into the fast clock: 17 * 40 s = 11m20s.
    assert_eq!(run.at, utc("2017-03-26T00:51:20Z"));
    assert_eq!(run.local, date(2017, 3, 26).at(2, 17, 0, 0));
    assert_eq!(
        daily(time(2, 30, 0, 0)).next_after(utc("2017-10-28T12:00:00Z"), &berlin),
        Some(utc("2017-10-29T01:00:00Z"))
    );
    let seconds = Schedule::Every(Every::new(30, Some(time(0, 0, 0, 0)), "x").expect("valid"));
    assert_eq!(
        seconds.next_after(utc("2017-03-26T00:51:30Z"), &berlin),
        Some(utc("2017-03-26T00:51:40Z")),
        "local 02:17:30 is 00:51:40Z"
    );
}

#[test]
fn next_after_is_strict() {
    let berlin = zone("Europe/Berlin");
    let schedule = daily(time(2, 30, 0, 0));
    let at = utc("2017-10-29T01:00:00Z");
    assert_eq!(
        schedule.next_after(at, &berlin),
        Some(utc("2017-10-30T01:30:00Z"))
    );
    let just_before = at
        .checked_sub(SignedDuration::from_nanos(1))
        .expect("in range");
    assert_eq!(schedule.next_after(just_before, &berlin), Some(at));
}

/// Counts the runs whose local date is `day`.
fn runs_on(schedule: &Schedule, tz: &TimeZone, day: Date) -> usize {
    let start = local_to_utc(day.at(0, 0, 0, 0), tz).expect("in range");
    let before = start
        .checked_sub(SignedDuration::from_nanos(1))
        .expect("in range");
    schedule
        .runs_after(before, tz)
        .take_while(|run| run.local.date() == day)
        .count()
}

/// The local dates on which `tz` changes its offset in `year`.
fn change_days(tz: &TimeZone, year: i16) -> Vec<Date> {
    let start = TimeZone::UTC
        .to_timestamp(date(year, 1, 1).at(0, 0, 0, 0))
        .expect("in range");
    tz.following(start)
        .take_while(|t| TimeZone::UTC.to_datetime(t.timestamp()).year() == year)
        .map(|t| tz.to_datetime(t.timestamp()).date())
        .collect()
}

#[test]
fn every_and_cron_keep_their_runs_on_change_days() {
    let quarter_hours = [cron("*/15 * * * *"), every(15 * 60, time(0, 0, 0, 0))];
    let hourly_at_half = [cron("30 * * * *"), every(3_600, time(0, 30, 0, 0))];
    for name in [
        "Europe/Berlin",
        "America/New_York",
        "Australia/Sydney",
        "Asia/Tokyo",
        "UTC",
    ] {
        let tz = zone(name);
        for year in [2017, this_year()] {
            let mut days = change_days(&tz, year);
            days.push(date(year, 6, 1));
            for day in days {
                for schedule in &quarter_hours {
                    assert_eq!(runs_on(schedule, &tz, day), 96, "{name} {day} {schedule}");
                }
                for schedule in &hourly_at_half {
                    assert_eq!(runs_on(schedule, &tz, day), 24, "{name} {day} {schedule}");
                }
                assert_eq!(runs_on(&cron("30 2 * * *"), &tz, day), 1, "{name} {day}");
                assert_eq!(
                    runs_on(&every(5 * 3_600, time(8, 0, 0, 0)), &tz, day),
                    4,
                    "{name} {day}"
                );
            }
        }
    }
}

#[test]
fn unsmeared_changes_collapse_skipped_runs_and_never_repeat() {
    let tz = zone("Australia/Lord_Howe");
    let quarter_hours = cron("*/15 * * * *");
    // 1 October 2017: local 02:00 and 02:15 do not exist; they run at the
    // change, together with 02:30.
    assert_eq!(runs_on(&quarter_hours, &tz, date(2017, 10, 1)), 94);
    // 2 April 2017: 01:30-02:00 happens twice; each time runs once.
    assert_eq!(runs_on(&quarter_hours, &tz, date(2017, 4, 2)), 96);
    // Asked during the second pass, the next run is after the repeat.
    let second_pass = utc("2017-04-01T15:10:00Z"); // local 01:40, again
    assert_eq!(
        quarter_hours
            .next_run_after(second_pass, &tz)
            .map(|run| run.local),
        Some(date(2017, 4, 2).at(2, 0, 0, 0))
    );
}

#[test]
fn describes_itself() {
    assert_eq!(cron("0 3 * * *").to_string(), "cron \"0 3 * * *\"");
    assert_eq!(
        every(5_400, time(8, 0, 0, 0)).to_string(),
        "every 1h30m from 08:00"
    );
    assert_eq!(daily(time(3, 0, 0, 0)).to_string(), "daily at 03:00");
}

#[test]
fn time_zone_names() {
    assert_eq!(parse_time_zone("UTC"), Ok(TimeZone::UTC));
    assert!(parse_time_zone("Europe/Berlin").is_ok());
    assert_eq!(
        parse_time_zone("Mars/Olympus_Mons"),
        Err(ScheduleError::UnknownTimeZone {
            name: "Mars/Olympus_Mons".to_owned()
        })
    );
}
