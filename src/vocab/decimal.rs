//! Fixed-point decimals as files write them (`1.5`, `2`, `0.25`), held as whole numbers of
//! their smallest step: with three places, `1.5` is 1500.
//!
//! Parsing goes through the text, never a float, so `0.1` is exactly one tenth. Signs,
//! exponents and a bare `.5` or `1.` are refused: a limit should read the same to everyone.

use std::fmt;

/// Why a decimal does not parse; each caller words it for its own field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalError {
    /// Not digits, or digits with one `.` between them.
    NotANumber,
    /// More decimal places than the value can hold.
    TooManyPlaces,
    /// Beyond `u64` once scaled.
    TooLarge,
}

/// Parses `text` with at most `places` decimal places into steps of 10^-`places`.
pub fn parse(text: &str, places: u32) -> Result<u64, DecimalError> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (text.contains('.') && !digits(fraction)) {
        return Err(DecimalError::NotANumber);
    }
    let missing = places.checked_sub(fraction.len() as u32).ok_or(DecimalError::TooManyPlaces)?;
    let whole: u64 = whole.parse().map_err(|_| DecimalError::TooLarge)?;
    // At most `places` digits, so this fits; empty is zero.
    let fraction: u64 = fraction.parse().unwrap_or(0) * 10u64.pow(missing);
    whole
        .checked_mul(10u64.pow(places))
        .and_then(|w| w.checked_add(fraction))
        .ok_or(DecimalError::TooLarge)
}

/// Writes `steps` of 10^-`places` the way [`parse`] reads them, without trailing zeros:
/// 1500 with three places is `1.5`, 2000 is `2`.
pub fn write(f: &mut fmt::Formatter<'_>, steps: u64, places: u32) -> fmt::Result {
    let scale = 10u64.pow(places);
    let (whole, fraction) = (steps / scale, steps % scale);
    if fraction == 0 {
        write!(f, "{whole}")
    } else {
        let digits = format!("{fraction:0width$}", width = places as usize);
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct Shown(u64, u32);

    impl fmt::Display for Shown {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write(f, self.0, self.1)
        }
    }

    #[test]
    fn whole_numbers_and_fractions_scale_to_steps() {
        assert_eq!(parse("1.5", 3), Ok(1500));
        assert_eq!(parse("2", 2), Ok(200));
        assert_eq!(parse("0.25", 3), Ok(250));
        assert_eq!(parse("0.005", 3), Ok(5));
        assert_eq!(parse("007.10", 2), Ok(710));
        assert_eq!(parse("3", 0), Ok(3));
    }

    #[test]
    fn malformed_text_says_which_way_it_is_wrong() {
        for bad in ["", ".", "1.", ".5", "-1", "+1", "1e3", "1.2.3", "1 ", "x"] {
            assert_eq!(parse(bad, 3), Err(DecimalError::NotANumber), "{bad:?}");
        }
        assert_eq!(parse("1.234", 2), Err(DecimalError::TooManyPlaces));
        assert_eq!(parse("1.5", 0), Err(DecimalError::TooManyPlaces));
        assert_eq!(parse("99999999999999999999", 0), Err(DecimalError::TooLarge));
        assert_eq!(parse("18446744073709552", 3), Err(DecimalError::TooLarge));
    }

    #[test]
    fn written_without_trailing_zeros() {
        assert_eq!(Shown(1500, 3).to_string(), "1.5");
        assert_eq!(Shown(2000, 3).to_string(), "2");
        assert_eq!(Shown(5, 3).to_string(), "0.005");
        assert_eq!(Shown(105, 2).to_string(), "1.05");
        assert_eq!(Shown(0, 2).to_string(), "0");
    }

    proptest! {
        #[test]
        fn write_then_parse_round_trips(steps: u64, places in 0u32..=6) {
            prop_assert_eq!(parse(&Shown(steps, places).to_string(), places), Ok(steps));
        }
    }
}
