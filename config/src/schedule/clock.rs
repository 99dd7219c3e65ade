//! Times of day written as `"HH:MM"`, and the `daily` schedule built on them.

use jiff::civil::{DateTime, Time};

use super::ScheduleError;

/// Reads a local time of day written as `"HH:MM"` (24-hour clock, `00:00`
/// to `23:59`, two digits each).
pub fn parse_time_of_day(text: &str) -> Result<Time, ScheduleError> {
    let bad = || ScheduleError::InvalidTimeOfDay {
        text: text.to_owned(),
    };
    let (hours, minutes) = text.trim().split_once(':').ok_or_else(bad)?;
    let two_digits = |part: &str| -> Option<i8> {
        if part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let hour = two_digits(hours).filter(|h| *h < 24).ok_or_else(bad)?;
    let minute = two_digits(minutes).filter(|m| *m < 60).ok_or_else(bad)?;
    Time::new(hour, minute, 0, 0).map_err(|_| bad())
}

/// Writes a time of day as `"HH:MM"`, or `"HH:MM:SS"` when it has seconds.
pub fn format_time_of_day(time: Time) -> String {
    if time.second() == 0 {
        format!("{:02}:{:02}", time.hour(), time.minute())
    } else {
        format!(
            "{:02}:{:02}:{:02}",
            time.hour(),
            time.minute(),
            time.second()
        )
    }
}

/// Once a day at a fixed local time (the original's `once_per_day`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Daily {
    at: Time,
}

impl Daily {
    /// A run every local day at `at` (sub-second parts are dropped).
    pub fn new(at: Time) -> Daily {
        Daily {
            at: Time::new(at.hour(), at.minute(), at.second(), 0).unwrap_or(at),
        }
    }

    /// The local time of day it runs at.
    pub fn at(&self) -> Time {
        self.at
    }

    /// The first local run strictly after `after`.
    pub(crate) fn next_civil(&self, after: DateTime) -> Option<DateTime> {
        let today = after.date().to_datetime(self.at);
        if today > after {
            return Some(today);
        }
        Some(after.date().tomorrow().ok()?.to_datetime(self.at))
    }
}

#[cfg(test)]
mod tests {
    use jiff::civil::{date, time};

    use super::*;

    #[test]
    fn reads_hours_and_minutes() {
        assert_eq!(parse_time_of_day("00:00"), Ok(time(0, 0, 0, 0)));
        assert_eq!(parse_time_of_day("08:05"), Ok(time(8, 5, 0, 0)));
        assert_eq!(parse_time_of_day(" 23:59 "), Ok(time(23, 59, 0, 0)));
        for text in [
            "", "8:05", "08:5", "24:00", "12:60", "12", "12:00:00", "ab:cd", "-1:00", "12-30",
        ] {
            assert_eq!(
                parse_time_of_day(text),
                Err(ScheduleError::InvalidTimeOfDay {
                    text: text.to_owned()
                }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn formats_what_it_reads() {
        assert_eq!(format_time_of_day(time(8, 5, 0, 0)), "08:05");
        assert_eq!(format_time_of_day(time(8, 5, 9, 0)), "08:05:09");
    }

    #[test]
    fn daily_runs_today_if_still_ahead_else_tomorrow() {
        let daily = Daily::new(time(3, 0, 0, 0));
        let day = date(2024, 2, 28);
        assert_eq!(
            daily.next_civil(day.at(2, 59, 59, 999)),
            Some(day.at(3, 0, 0, 0))
        );
        // Strictly after: the run at exactly `after` is not returned again.
        assert_eq!(
            daily.next_civil(day.at(3, 0, 0, 0)),
            Some(date(2024, 2, 29).at(3, 0, 0, 0))
        );
        assert_eq!(
            daily.next_civil(date(2024, 12, 31).at(23, 0, 0, 0)),
            Some(date(2025, 1, 1).at(3, 0, 0, 0))
        );
    }
}
