//! Durations: `500ms`, `90s`, `10m`, `2h`, `1d`, and compounds such as `1h30m`.
//!
//! Units go from largest to smallest, each at most once, with whole numbers only: `1h30m`,
//! never `90m30m`, `30m1h` or `1.5h`. That keeps every duration in a job file readable at a
//! glance and makes typos (`1h30` — thirty what?) errors instead of guesses. The precision
//! is one millisecond; `0` on its own is accepted as zero.

use std::fmt;
use std::time::Duration;

/// The longest duration a file may ask for. Far beyond any real timeout, and small enough
/// that adding it to a clock reading can never overflow.
pub const MAX: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Why a duration does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("it is empty")]
    Empty,
    #[error("it contains whitespace; write it without spaces, like 1h30m")]
    Whitespace,
    #[error("it is negative")]
    Negative,
    #[error("a number has no unit; add one of d, h, m, s, ms (for example 30s)")]
    MissingUnit,
    #[error("a unit has no number in front of it")]
    NoNumber,
    #[error("fractions are not supported; combine units instead (1h30m, not 1.5h)")]
    Fraction,
    #[error("unknown unit `{unit}`; use d, h, m, s or ms")]
    UnknownUnit { unit: String },
    #[error(
        "`{unit}` is repeated or out of order; write units from largest to smallest, each once"
    )]
    UnitOrder { unit: &'static str },
    #[error("it is longer than the longest allowed duration, 36500d")]
    TooLong,
}

/// Units, largest first, with their length in milliseconds.
const UNITS: &[(&str, u64)] =
    &[("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Parses a duration as written in job and agent files.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    if input.chars().any(char::is_whitespace) {
        return Err(DurationError::Whitespace);
    }
    if input.starts_with('-') {
        return Err(DurationError::Negative);
    }
    if input == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = input;
    let mut total_ms: u64 = 0;
    // Index into UNITS of the next unit allowed: enforces largest-to-smallest, each once.
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(if rest.starts_with('.') {
                DurationError::Fraction
            } else {
                DurationError::NoNumber
            });
        }
        let (number, after) = rest.split_at(digits);
        if after.starts_with('.') {
            return Err(DurationError::Fraction);
        }
        let unit_len = after.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(after.len());
        if unit_len == 0 {
            return Err(if after.is_empty() {
                DurationError::MissingUnit
            } else {
                DurationError::NoNumber
            });
        }
        let (unit, after) = after.split_at(unit_len);
        let index = UNITS
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(|| DurationError::UnknownUnit { unit: unit.to_owned() })?;
        if index < next_unit {
            return Err(DurationError::UnitOrder { unit: UNITS[index].0 });
        }
        next_unit = index + 1;
        // Any number too big for u64 is far beyond MAX anyway.
        let count: u64 = number.parse().map_err(|_| DurationError::TooLong)?;
        total_ms = count
            .checked_mul(UNITS[index].1)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or(DurationError::TooLong)?;
        rest = after;
    }
    let duration = Duration::from_millis(total_ms);
    if duration > MAX {
        return Err(DurationError::TooLong);
    }
    Ok(duration)
}

/// A duration printed the way files write it (`1h30m`, `500ms`, `0s`); below-millisecond
/// parts are dropped.
pub struct Display(pub Duration);

impl fmt::Display for Display {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, length) in UNITS {
            let count = ms / length;
            if count > 0 {
                write!(f, "{count}{unit}")?;
                ms %= length;
            }
        }
        Ok(())
    }
}

/// Shorthand for `duration::Display(d).to_string()`.
pub fn format(duration: Duration) -> String {
    Display(duration).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(s: &str) -> Duration {
        parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn err(s: &str) -> DurationError {
        parse(s).expect_err(s)
    }

    #[test]
    fn single_units() {
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("90s"), Duration::from_secs(90));
        assert_eq!(ok("10m"), Duration::from_secs(600));
        assert_eq!(ok("2h"), Duration::from_secs(7200));
        assert_eq!(ok("1d"), Duration::from_secs(86_400));
    }

    #[test]
    fn compounds_largest_unit_first() {
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("1d2h3m4s5ms"), Duration::from_millis(93_784_005));
        assert_eq!(ok("1m500ms"), Duration::from_millis(60_500));
        assert_eq!(ok("90m"), Duration::from_secs(5400), "a unit may exceed the next one up");
    }

    #[test]
    fn malformed_durations_say_what_is_wrong() {
        assert_eq!(err(""), DurationError::Empty);
        assert_eq!(err("1h 30m"), DurationError::Whitespace);
        assert_eq!(err("-5s"), DurationError::Negative);
        assert_eq!(err("30"), DurationError::MissingUnit);
        assert_eq!(err("1h30"), DurationError::MissingUnit);
        assert_eq!(err("s"), DurationError::NoNumber);
        assert_eq!(err("1h-5m"), DurationError::NoNumber);
        assert_eq!(err("1.5h"), DurationError::Fraction);
        assert_eq!(err(".5h"), DurationError::Fraction);
        assert_eq!(err("5sec"), DurationError::UnknownUnit { unit: "sec".into() });
        assert_eq!(err("5us"), DurationError::UnknownUnit { unit: "us".into() });
        assert_eq!(err("5H"), DurationError::UnknownUnit { unit: "H".into() });
        assert_eq!(err("30m1h"), DurationError::UnitOrder { unit: "h" });
        assert_eq!(err("1m1m"), DurationError::UnitOrder { unit: "m" });
        assert_eq!(err("5s_"), DurationError::NoNumber);
    }

    #[test]
    fn overflow_and_absurd_lengths_are_errors() {
        assert_eq!(ok("36500d"), MAX);
        assert_eq!(err("36501d"), DurationError::TooLong);
        assert_eq!(err("36500d1ms"), DurationError::TooLong);
        assert_eq!(err("18446744073709551615d"), DurationError::TooLong);
        assert_eq!(err("99999999999999999999999s"), DurationError::TooLong);
        assert_eq!(err("18446744073709551615ms"), DurationError::TooLong);
    }

    #[test]
    fn display_is_canonical() {
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_millis(500)), "500ms");
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_secs(86_400 + 1)), "1d1s");
        assert_eq!(format(Duration::from_micros(1500)), "1ms");
    }

    proptest! {
        #[test]
        fn display_round_trips(ms in 0..=MAX.as_millis() as u64) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse(&format(d)), Ok(d));
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,40}") {
            let _ = parse(&s);
        }

        #[test]
        fn duration_shaped_strings_never_panic(s in "([0-9]{0,22}(d|h|m|s|ms|x|\\.)?){0,6}") {
            let _ = parse(&s);
        }
    }
}
