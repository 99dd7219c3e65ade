//! A rate limit as the settings file and the admin command write it:
//! `N/PERIOD`, at most `N` starts in any window of `PERIOD`
//! (docs/flow-control.md).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A rate limit: at most `max` starts in any window of `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Starts allowed per window (at least 1).
    pub max: u32,
    /// The window's length (at least 1 ms).
    pub period: Duration,
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.period.as_millis();
        let (n, unit) = [(3_600_000, "h"), (60_000, "m"), (1000, "s")]
            .into_iter()
            .find(|(n, _)| ms.is_multiple_of(*n))
            .unwrap_or((1, "ms"));
        write!(f, "{}/{}{unit}", self.max, ms / n)
    }
}

/// Why a rate text does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rate {text:?}: {reason} (expected N/PERIOD, for example 50/1s, 100/1m, 3/500ms)")]
pub struct RateError {
    text: String,
    reason: &'static str,
}

impl FromStr for Rate {
    type Err = RateError;

    /// Reads `N/PERIOD`: `N` a whole number from 1, `PERIOD` a whole
    /// number with a unit (`ms`, `s`, `m`, `h`; `1s` may be written `s`).
    fn from_str(text: &str) -> Result<Rate, RateError> {
        let bad = |reason| RateError {
            text: text.to_owned(),
            reason,
        };
        let (max, period) = text.trim().split_once('/').ok_or(bad("no '/'"))?;
        let max: u32 = max
            .trim()
            .parse()
            .map_err(|_| bad("N is not a whole number"))?;
        if max == 0 {
            return Err(bad("N must be at least 1"));
        }
        let period = period.trim();
        let split = period
            .find(|c: char| !c.is_ascii_digit())
            .ok_or(bad("the period has no unit"))?;
        let (count, unit) = period.split_at(split);
        let count: u64 = if count.is_empty() {
            1
        } else {
            count.parse().map_err(|_| bad("the period is too long"))?
        };
        let unit_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad("the period's unit is not ms, s, m or h")),
        };
        let ms = count
            .checked_mul(unit_ms)
            .filter(|ms| (1..=7 * 24 * 3_600_000).contains(ms))
            .ok_or(bad("the period must be from 1 ms to 7 days"))?;
        Ok(Rate {
            max,
            period: Duration::from_millis(ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_and_print() {
        let r: Rate = "50/1s".parse().expect("rate");
        assert_eq!(r.max, 50);
        assert_eq!(r.period, Duration::from_secs(1));
        assert_eq!(r.to_string(), "50/1s");
        assert_eq!(
            "3/500ms".parse::<Rate>().map(|r| r.to_string()),
            Ok("3/500ms".to_owned())
        );
        assert_eq!(
            "10/m".parse::<Rate>().map(|r| r.period),
            Ok(Duration::from_secs(60))
        );
        assert_eq!(
            "2/90m".parse::<Rate>().map(|r| r.to_string()),
            Ok("2/90m".to_owned())
        );
        for bad in [
            "", "50", "0/1s", "x/1s", "5/1", "5/1d", "5/0s", "5/9999h", "-1/1s",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }
}
