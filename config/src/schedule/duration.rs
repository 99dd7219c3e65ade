//! Reading lengths of time written by people: `90m`, `5h`, `1800s`, `1h30m`.
//!
//! Settings files, environment variables and the `schedule next` command all
//! accept the same spelling, so there is one parser for it here.

use super::ScheduleError;

/// The units a duration may use, largest first, with their length in seconds.
const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// Reads a duration and returns it in whole seconds.
///
/// Accepted spellings:
/// - a bare whole number, counted in seconds (`1800`);
/// - one or more `<number><unit>` parts with the units `d`, `h`, `m` and `s`,
///   largest unit first and each unit at most once (`90m`, `5h`, `1h30m`,
///   `2d12h`, `1h0m30s`).
///
/// Surrounding whitespace is ignored; anything else (signs, fractions, spaces
/// between parts, repeated or out-of-order units) is an error. Zero is
/// accepted here; callers that need a positive length check for it.
pub fn parse_duration(text: &str) -> Result<u64, ScheduleError> {
    let bad = |reason: &'static str| ScheduleError::InvalidDuration {
        text: text.to_owned(),
        reason,
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(bad("it is empty"));
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return trimmed.parse().map_err(|_| bad("the number is too large"));
    }

    let mut total: u64 = 0;
    let mut rest = trimmed;
    // Index into UNITS of the smallest unit already used: later parts must
    // use a smaller one.
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad("expected a number before each unit (d, h, m, s)"));
        }
        let (number, tail) = rest.split_at(digits);
        let mut chars = tail.chars();
        let unit = chars
            .next()
            .ok_or_else(|| bad("the last number has no unit (d, h, m or s)"))?;
        let position = UNITS
            .iter()
            .position(|(name, _)| *name == unit)
            .ok_or_else(|| bad("units are d, h, m and s"))?;
        if position < next_unit {
            return Err(bad("units must go from largest to smallest, each once"));
        }
        next_unit = position + 1;
        let value: u64 = number.parse().map_err(|_| bad("the number is too large"))?;
        total = value
            .checked_mul(UNITS[position].1)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(|| bad("the number is too large"))?;
        rest = chars.as_str();
    }
    Ok(total)
}

/// Writes a number of seconds the way [`parse_duration`] reads it, using the
/// largest units that fit (`5400` -> `1h30m`, `0` -> `0s`).
pub fn format_duration(seconds: u64) -> String {
    if seconds == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let mut left = seconds;
    for (unit, size) in UNITS {
        let count = left / size;
        if count > 0 {
            out.push_str(&count.to_string());
            out.push(unit);
            left %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_spellings() {
        assert_eq!(parse_duration("90m"), Ok(5_400));
        assert_eq!(parse_duration("5h"), Ok(18_000));
        assert_eq!(parse_duration("1800s"), Ok(1_800));
        assert_eq!(parse_duration("1h30m"), Ok(5_400));
        assert_eq!(parse_duration("1h0m30s"), Ok(3_630));
        assert_eq!(parse_duration("2d12h"), Ok(216_000));
        assert_eq!(parse_duration("1800"), Ok(1_800));
        assert_eq!(parse_duration(" 10m "), Ok(600));
        assert_eq!(parse_duration("0s"), Ok(0));
    }

    #[test]
    fn rejects_what_it_cannot_read_for_sure() {
        for text in [
            "",
            "  ",
            "h",
            "1.5h",
            "-5m",
            "+5m",
            "5 m",
            "1h 30m",
            "30m1h",
            "1h1h",
            "5x",
            "10mm",
            "m10",
            "ten",
            "99999999999999999999s",
            "99999999999999999999",
        ] {
            let err = parse_duration(text).expect_err(text);
            assert!(
                matches!(err, ScheduleError::InvalidDuration { .. }),
                "{text}: {err}"
            );
        }
        let message = parse_duration("30m1h")
            .expect_err("out of order")
            .to_string();
        assert!(message.contains("\"30m1h\""), "{message}");
    }

    #[test]
    fn formats_back_to_the_same_seconds() {
        for secs in [
            0, 1, 59, 60, 61, 3_599, 3_600, 5_400, 86_399, 86_400, 200_000,
        ] {
            assert_eq!(parse_duration(&format_duration(secs)), Ok(secs));
        }
        assert_eq!(format_duration(5_400), "1h30m");
        assert_eq!(format_duration(90_061), "1d1h1m1s");
    }
}
