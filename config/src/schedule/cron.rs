//! Five-field crontab expressions, matched on local civil time.
//!
//! Parsing and the search for "the next matching minute after this wall-clock
//! time" come from the `croner` crate. Croner can also resolve time zones
//! itself; we never let it: it only ever sees civil datetimes with no time
//! zone (through the `Wall` adapter below), and the conversion to UTC goes
//! through our own smearing in [`super::smear`].
//!
//! Accepted: minute, hour, day of month, month and day of week, with `*`,
//! lists (`1,15`), ranges (`1-5`), steps (`*/15`, `0-30/10`), month and weekday
//! names (`JAN`, `mon-fri`, any case), `7` for Sunday, and the shortcuts
//! `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily` and `@hourly`. When
//! both day fields are restricted a day matches if EITHER matches, as in
//! Vixie cron. Croner's extensions (`L`, `W`, `#`, `?`) are accepted too.
//! Seconds and year fields are rejected.

use std::cmp::Ordering;

use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use croner::{CivilDate, CivilDateTime, CivilTime, Cron, CronDateTime, Resolution, Weekday};
use jiff::SignedDuration;
use jiff::civil::{DateTime, date};

use super::ScheduleError;

/// A parsed crontab expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSchedule {
    expr: String,
    // Boxed: croner's pattern is large, and `Schedule` holds this inline.
    cron: Box<Cron>,
}

impl CronSchedule {
    /// Parses a five-field crontab expression (or an `@daily`-style
    /// shortcut). An expression that can never match (`0 0 30 2 *`) is
    /// rejected as well.
    pub fn parse(expr: &str) -> Result<CronSchedule, ScheduleError> {
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(expr)
            .map_err(|err| ScheduleError::InvalidCron {
                expr: expr.to_owned(),
                reason: reason(&err),
            })?;
        let schedule = CronSchedule {
            expr: expr.trim().to_owned(),
            cron: Box::new(cron),
        };
        // Every day-of-month/month combination repeats within eight years
        // (29 February included), so a search from any date finds a match
        // unless there is none.
        if schedule
            .next_civil(date(2000, 1, 1).at(0, 0, 0, 0))
            .is_none()
        {
            return Err(ScheduleError::CronNeverMatches {
                expr: expr.to_owned(),
            });
        }
        Ok(schedule)
    }

    /// The expression as written (surrounding whitespace removed).
    pub fn expression(&self) -> &str {
        &self.expr
    }

    /// The first matching local minute strictly after `after`.
    pub(crate) fn next_civil(&self, after: DateTime) -> Option<DateTime> {
        self.cron
            .find_next_occurrence(&Wall(after), false)
            .ok()
            .map(|wall| wall.0)
    }
}

/// Croner's messages start with a capital and end with a full stop; ours do
/// neither.
fn reason(err: &CronError) -> String {
    let text = match err {
        CronError::EmptyPattern => return "it is empty".to_owned(),
        CronError::InvalidPattern(msg)
        | CronError::IllegalCharacters(msg)
        | CronError::ComponentError(msg) => msg.clone(),
        other => other.to_string(),
    };
    let text = text.trim().trim_end_matches('.');
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "it cannot be read".to_owned(),
    }
}

/// A civil (wall-clock) datetime with no time zone, as croner's search needs.
///
/// With no time zone every wall-clock time happens exactly once, so croner's
/// own daylight-saving handling never comes into play.
#[derive(Debug, Clone, Copy)]
struct Wall(DateTime);

impl CronDateTime for Wall {
    fn to_civil(&self) -> CivilDateTime {
        let dt = self.0;
        // jiff keeps every part in range, so the unchecked constructors hold.
        CivilDateTime::new(
            CivilDate::from_parts_unchecked(
                i32::from(dt.year()),
                u32::from(dt.month().unsigned_abs()),
                u32::from(dt.day().unsigned_abs()),
            ),
            CivilTime::from_parts_unchecked(
                u32::from(dt.hour().unsigned_abs()),
                u32::from(dt.minute().unsigned_abs()),
                u32::from(dt.second().unsigned_abs()),
            ),
        )
    }

    fn civil_weekday(&self) -> Weekday {
        Weekday::from_days_from_sunday(u32::from(
            self.0.weekday().to_sunday_zero_offset().unsigned_abs(),
        ))
    }

    fn resolve_civil(&self, civil: CivilDateTime) -> Result<Resolution<Wall>, CronError> {
        let part = |value: u32| i8::try_from(value).map_err(|_| CronError::InvalidDate);
        let year = i16::try_from(civil.year()).map_err(|_| CronError::InvalidDate)?;
        let dt = DateTime::new(
            year,
            part(civil.month())?,
            part(civil.day())?,
            part(civil.hour())?,
            part(civil.minute())?,
            part(civil.second())?,
            0,
        )
        .map_err(|_| CronError::InvalidDate)?;
        Ok(Resolution::Single(Wall(dt)))
    }

    fn checked_add_seconds(&self, seconds: i64) -> Option<Wall> {
        self.0
            .checked_add(SignedDuration::from_secs(seconds))
            .ok()
            .map(Wall)
    }

    fn cmp_instant(&self, other: &Wall) -> Ordering {
        self.0.cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(expr: &str, after: DateTime) -> DateTime {
        CronSchedule::parse(expr)
            .expect("valid expression")
            .next_civil(after)
            .expect("a next run")
    }

    #[test]
    fn fields_lists_ranges_steps_and_names() {
        let after = date(2024, 1, 1).at(0, 0, 0, 0); // a Monday
        assert_eq!(
            next("*/15 * * * *", after),
            date(2024, 1, 1).at(0, 15, 0, 0)
        );
        assert_eq!(next("5,35 2 * * *", after), date(2024, 1, 1).at(2, 5, 0, 0));
        assert_eq!(
            next("0 9-17/4 * * *", after),
            date(2024, 1, 1).at(9, 0, 0, 0)
        );
        assert_eq!(
            next("0 12 * * sat,sun", after),
            date(2024, 1, 6).at(12, 0, 0, 0)
        );
        assert_eq!(next("0 12 * * 7", after), date(2024, 1, 7).at(12, 0, 0, 0));
        assert_eq!(
            next("0 12 * * MON-FRI", after),
            date(2024, 1, 1).at(12, 0, 0, 0)
        );
        assert_eq!(
            next("30 4 1 mar *", after),
            date(2024, 3, 1).at(4, 30, 0, 0)
        );
        assert_eq!(next("0 0 29 2 *", after), date(2024, 2, 29).at(0, 0, 0, 0));
        assert_eq!(
            next("0 0 29 2 *", date(2024, 3, 1).at(0, 0, 0, 0)),
            date(2028, 2, 29).at(0, 0, 0, 0)
        );
    }

    #[test]
    fn day_fields_combine_with_or_when_both_are_restricted() {
        // The 13th, or any Friday: Friday 5 January comes first.
        let after = date(2024, 1, 1).at(0, 0, 0, 0);
        assert_eq!(next("0 0 13 * fri", after), date(2024, 1, 5).at(0, 0, 0, 0));
        assert_eq!(
            next("0 0 13 * fri", date(2024, 1, 12).at(0, 0, 0, 0)),
            date(2024, 1, 13).at(0, 0, 0, 0)
        );
    }

    #[test]
    fn shortcuts() {
        let after = date(2024, 5, 17).at(10, 20, 0, 0);
        assert_eq!(next("@daily", after), date(2024, 5, 18).at(0, 0, 0, 0));
        assert_eq!(next("@hourly", after), date(2024, 5, 17).at(11, 0, 0, 0));
        assert_eq!(next("@weekly", after), date(2024, 5, 19).at(0, 0, 0, 0));
        assert_eq!(next("@monthly", after), date(2024, 6, 1).at(0, 0, 0, 0));
        assert_eq!(next("@yearly", after), date(2025, 1, 1).at(0, 0, 0, 0));
    }

    #[test]
    fn strictly_after_even_inside_a_second() {
        let expr = "17 2 * * *";
        assert_eq!(
            next(expr, date(2024, 1, 1).at(2, 16, 59, 999_999_999)),
            date(2024, 1, 1).at(2, 17, 0, 0)
        );
        assert_eq!(
            next(expr, date(2024, 1, 1).at(2, 17, 0, 0)),
            date(2024, 1, 2).at(2, 17, 0, 0)
        );
        assert_eq!(
            next(expr, date(2024, 1, 1).at(2, 17, 0, 1)),
            date(2024, 1, 2).at(2, 17, 0, 0)
        );
    }

    #[test]
    fn rejects_bad_expressions_with_a_reason() {
        for expr in [
            "",
            "* * * *",
            "0 * * * * *",
            "0 0 * * * 2024",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "5-1 * * * *",
            "*/0 * * * *",
            "a b c d e",
            "@reboot",
        ] {
            match CronSchedule::parse(expr) {
                Err(ScheduleError::InvalidCron { expr: got, reason }) => {
                    assert_eq!(got, expr);
                    assert!(!reason.is_empty());
                    assert!(!reason.ends_with('.'), "{reason}");
                }
                other => panic!("{expr:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn rejects_expressions_that_never_match() {
        assert_eq!(
            CronSchedule::parse("0 0 30 2 *"),
            Err(ScheduleError::CronNeverMatches {
                expr: "0 0 30 2 *".to_owned()
            })
        );
        assert!(CronSchedule::parse("0 0 31 */2 *").is_ok());
    }
}
