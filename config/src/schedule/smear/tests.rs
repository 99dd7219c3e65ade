//! Exact conversions around known changes, and properties over many zones.

use jiff::civil::{DateTime, date};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::*;
use crate::schedule::parse_time_zone;

fn zone(name: &str) -> TimeZone {
    parse_time_zone(name).expect("time zone in the system database")
}

fn utc(text: &str) -> Timestamp {
    text.parse().expect("a valid RFC 3339 instant")
}

/// Asserts both directions of one local <-> UTC pair.
fn pair(tz: &str, local: DateTime, instant: &str) {
    let tz = zone(tz);
    assert_eq!(
        local_to_utc(local, &tz),
        Some(utc(instant)),
        "{local} -> UTC"
    );
    assert_eq!(utc_to_local(utc(instant), &tz), local, "{instant} -> local");
}

#[test]
fn spec_examples_europe_berlin_2017() {
    pair(
        "Europe/Berlin",
        date(2017, 3, 26).at(2, 17, 30, 0),
        "2017-03-26T00:51:40Z",
    );
    pair(
        "Europe/Berlin",
        date(2017, 10, 29).at(2, 30, 0, 0),
        "2017-10-29T01:00:00Z",
    );
}

#[test]
fn berlin_windows_meet_the_ordinary_clock_at_both_ends() {
    // Spring: real [00:00Z, 02:00Z] carries local [01:00, 04:00].
    pair(
        "Europe/Berlin",
        date(2017, 3, 26).at(1, 0, 0, 0),
        "2017-03-26T00:00:00Z",
    );
    pair(
        "Europe/Berlin",
        date(2017, 3, 26).at(2, 30, 0, 0),
        "2017-03-26T01:00:00Z",
    );
    pair(
        "Europe/Berlin",
        date(2017, 3, 26).at(4, 0, 0, 0),
        "2017-03-26T02:00:00Z",
    );
    pair(
        "Europe/Berlin",
        date(2017, 3, 26).at(0, 59, 59, 0),
        "2017-03-25T23:59:59Z",
    );
    pair(
        "Europe/Berlin",
        date(2017, 3, 26).at(4, 0, 1, 0),
        "2017-03-26T02:00:01Z",
    );
    // Autumn: real [00:00Z, 02:00Z] carries local [02:00, 03:00].
    pair(
        "Europe/Berlin",
        date(2017, 10, 29).at(2, 0, 0, 0),
        "2017-10-29T00:00:00Z",
    );
    pair(
        "Europe/Berlin",
        date(2017, 10, 29).at(3, 0, 0, 0),
        "2017-10-29T02:00:00Z",
    );
    pair(
        "Europe/Berlin",
        date(2017, 10, 29).at(1, 59, 59, 0),
        "2017-10-28T23:59:59Z",
    );
    pair(
        "Europe/Berlin",
        date(2017, 10, 29).at(3, 0, 1, 0),
        "2017-10-29T02:00:01Z",
    );
    // A local minute lasts 40 s in spring and 120 s in autumn.
    pair(
        "Europe/Berlin",
        date(2017, 3, 26).at(2, 1, 0, 0),
        "2017-03-26T00:40:40Z",
    );
    pair(
        "Europe/Berlin",
        date(2017, 10, 29).at(2, 1, 0, 0),
        "2017-10-29T00:02:00Z",
    );
}

#[test]
fn america_new_york_2017() {
    // 12 March 07:00Z: EST (-5) -> EDT (-4); local [01:00, 04:00].
    pair(
        "America/New_York",
        date(2017, 3, 12).at(2, 30, 0, 0),
        "2017-03-12T07:00:00Z",
    );
    pair(
        "America/New_York",
        date(2017, 3, 12).at(1, 0, 0, 0),
        "2017-03-12T06:00:00Z",
    );
    // 5 November 06:00Z: EDT (-4) -> EST (-5); local [01:00, 02:00].
    pair(
        "America/New_York",
        date(2017, 11, 5).at(1, 30, 0, 0),
        "2017-11-05T06:00:00Z",
    );
    pair(
        "America/New_York",
        date(2017, 11, 5).at(2, 0, 0, 0),
        "2017-11-05T07:00:00Z",
    );
}

#[test]
fn australia_sydney_2017_southern_hemisphere() {
    // 2 April: AEDT (+11) -> AEST (+10) at 16:00Z the day before.
    pair(
        "Australia/Sydney",
        date(2017, 4, 2).at(2, 30, 0, 0),
        "2017-04-01T16:00:00Z",
    );
    // 1 October: AEST (+10) -> AEDT (+11) at 16:00Z the day before.
    pair(
        "Australia/Sydney",
        date(2017, 10, 1).at(2, 30, 0, 0),
        "2017-09-30T16:00:00Z",
    );
}

#[test]
fn zones_without_changes_convert_plainly() {
    pair(
        "Asia/Tokyo",
        date(2017, 3, 26).at(2, 17, 30, 0),
        "2017-03-25T17:17:30Z",
    );
    pair(
        "Asia/Kolkata",
        date(2017, 10, 29).at(2, 30, 0, 0),
        "2017-10-28T21:00:00Z",
    );
    pair(
        "UTC",
        date(2017, 3, 26).at(2, 17, 30, 0),
        "2017-03-26T02:17:30Z",
    );
}

#[test]
fn lord_howe_half_hour_changes_are_not_smeared() {
    let tz = zone("Australia/Lord_Howe");
    // 2 April 2017 02:00 LHDT (+11) -> 01:30 LHST (+10:30) at 15:00Z the day
    // before: a repeated local half hour means its first occurrence.
    let repeated = date(2017, 4, 2).at(1, 45, 0, 0);
    assert_eq!(
        local_to_utc(repeated, &tz),
        Some(utc("2017-04-01T14:45:00Z"))
    );
    assert_eq!(utc_to_local(utc("2017-04-01T14:45:00Z"), &tz), repeated);
    assert_eq!(utc_to_local(utc("2017-04-01T15:15:00Z"), &tz), repeated);
    // 1 October 2017 02:00 LHST (+10:30) -> 02:30 LHDT (+11) at 15:30Z the
    // day before: a skipped local time means the instant of the change.
    let skipped = date(2017, 10, 1).at(2, 15, 0, 0);
    assert_eq!(
        local_to_utc(skipped, &tz),
        Some(utc("2017-09-30T15:30:00Z"))
    );
    assert_eq!(
        local_to_utc(date(2017, 10, 1).at(2, 30, 0, 0), &tz),
        Some(utc("2017-09-30T15:30:00Z"))
    );
    assert_eq!(
        local_to_utc(date(2017, 10, 1).at(1, 59, 0, 0), &tz),
        Some(utc("2017-09-30T15:29:00Z"))
    );
}

/// Zones every property runs in.
const ZONES: [&str; 9] = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Europe/London",
    "UTC",
];

/// Zones whose changes in the tested years are all one hour, so that every
/// change is smeared.
const SMEARED_ZONES: [&str; 8] = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "America/Santiago",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Europe/London",
    "UTC",
];

/// An instant near an offset change of `zone` in `year` (or anywhere in the
/// year when the zone has none), `delta` nanoseconds away from it.
fn instant_near_change(tz: &TimeZone, year: i16, which: usize, delta: i64) -> Timestamp {
    let start = TimeZone::UTC
        .to_timestamp(date(year, 1, 1).at(0, 0, 0, 0))
        .expect("start of year");
    let base = tz
        .following(start)
        .take_while(|t| t.timestamp().as_second() < start.as_second() + 366 * 86_400)
        .nth(which % 2)
        .map_or(start, |t| t.timestamp());
    base.checked_add(SignedDuration::from_nanos(delta))
        .expect("in range")
}

fn change_strategy() -> impl Strategy<Value = (&'static str, Timestamp)> {
    let reach = 4 * 3_600 * 1_000_000_000_i64;
    (
        proptest::sample::select(ZONES.to_vec()),
        2016_i16..2036,
        0_usize..2,
        -reach..reach,
    )
        .prop_map(|(name, year, which, delta)| {
            (name, instant_near_change(&zone(name), year, which, delta))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn local_to_utc_to_local_round_trips((name, instant) in change_strategy(), whole_second: bool) {
        let tz = zone(name);
        // Build a local time near the change, either to the second or to the
        // nanosecond.
        let mut local = tz.to_datetime(instant);
        if whole_second {
            local = local.with().subsec_nanosecond(0).build().expect("valid");
        }
        let skipped_unsmeared = matches!(
            tz.to_ambiguous_timestamp(local).offset(),
            AmbiguousOffset::Gap { .. }
        ) && local_to_utc(local, &tz).map(|t| smear_for_real(&tz, t.as_nanosecond()).is_none()) == Some(true);
        prop_assume!(!skipped_unsmeared, "a local time an unsmeared change skips has no instant of its own");
        let there = local_to_utc(local, &tz).expect("in range");
        let back = utc_to_local(there, &tz);
        let error = back.duration_since(local);
        prop_assert!(
            error >= SignedDuration::ZERO && error <= SignedDuration::from_nanos(1),
            "{name}: {local} -> {there} -> {back}"
        );
    }

    #[test]
    fn utc_to_local_is_monotonic(
        (name, instant) in change_strategy(),
        step in 1_i64..(3 * 3_600 * 1_000_000_000),
    ) {
        prop_assume!(SMEARED_ZONES.contains(&name));
        let tz = zone(name);
        let later = instant.checked_add(SignedDuration::from_nanos(step)).expect("in range");
        let (a, b) = (utc_to_local(instant, &tz), utc_to_local(later, &tz));
        prop_assert!(a <= b, "{name}: {instant} -> {a}, {later} -> {b}");
        if step >= 2 {
            prop_assert!(a < b, "{name}: {instant} -> {a}, {later} -> {b}");
        }
    }

    #[test]
    fn local_to_utc_never_goes_backwards(
        (name, instant) in change_strategy(),
        step in 1_i64..(3 * 3_600 * 1_000_000_000),
    ) {
        let tz = zone(name);
        let local = tz.to_datetime(instant);
        let later = local.checked_add(SignedDuration::from_nanos(step)).expect("in range");
        let (a, b) = (local_to_utc(local, &tz), local_to_utc(later, &tz));
        prop_assert!(a <= b, "{name}: {local} -> {a:?}, {later} -> {b:?}");
    }
}

#[test]
fn every_one_hour_change_this_decade_is_smeared_around_its_middle() {
    for name in SMEARED_ZONES {
        let tz = zone(name);
        for year in 2017..=2030 {
            for which in 0..2 {
                let change = instant_near_change(&tz, year, which, 0);
                let Some(shift) = shifts_near(&tz, change.as_nanosecond(), 0).pop() else {
                    continue;
                };
                assert!(shift.smeared, "{name} {year}: {shift:?}");
                // The change itself sits half an hour into local time past
                // the smaller of the two offsets' readings.
                let expected = civil(change.as_nanosecond() + shift.old.min(shift.new) + HOUR / 2)
                    .expect("in range");
                assert_eq!(utc_to_local(change, &tz), expected, "{name} {year}");
            }
        }
    }
}

#[test]
fn search_starts_after_an_unsmeared_repeat_already_seen() {
    let tz = zone("Australia/Lord_Howe");
    // Local 01:40 on 2 April 2017, first and second time round.
    let first = utc("2017-04-01T14:40:00Z");
    let second = utc("2017-04-01T15:10:00Z");
    assert_eq!(
        search_start(first, &tz),
        (date(2017, 4, 2).at(1, 40, 0, 0), false)
    );
    assert_eq!(
        search_start(second, &tz),
        (date(2017, 4, 2).at(2, 0, 0, 0), true)
    );
    // Smeared repeats need no such care: the smeared clock never repeats.
    let berlin = zone("Europe/Berlin");
    assert_eq!(
        search_start(utc("2017-10-29T01:00:00Z"), &berlin),
        (date(2017, 10, 29).at(2, 30, 0, 0), false)
    );
}
