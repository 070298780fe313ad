//! Byte quantities: `512Mi`, `2G`, `1.5Gi`, `1048576`.
//!
//! One `Bytes` type serves every layer: job limits, per-node memory read from
//! sysfs (which prints kibibytes as `kB`), and cgroup counters.
//!
//! Binary units (`Ki Mi Gi Ti Pi Ei`, powers of 1024) are what the kernel's limits are
//! counted in and what most job files should use; decimal units (`K M G T P E`, powers of
//! 1000) are accepted because disk and network people think in them. A plain number is
//! bytes. A decimal fraction is accepted only when it comes to a whole number of bytes
//! (`1.5Gi` yes, `0.3Ki` no): a limit that silently rounds is a limit nobody wrote.

use std::fmt;
use std::str::FromStr;

/// A number of bytes.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Bytes(pub u64);

/// Why a quantity does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("it is empty")]
    Empty,
    #[error("it contains whitespace; write the number and unit together, like 512Mi")]
    Whitespace,
    #[error("it is negative")]
    Negative,
    #[error("it does not start with a number")]
    NoNumber,
    #[error("{0}")]
    UnknownUnit(UnitHint),
    #[error("it is not a whole number of bytes")]
    NotWhole,
    #[error("it has more than {max} decimal places", max = MAX_DECIMALS)]
    TooManyDecimals,
    #[error("it is larger than the largest quantity, 16Ei (2^64 - 1 bytes)")]
    Overflow,
}

/// What to say about a unit that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitHint {
    pub unit: String,
}

impl fmt::Display for UnitHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = self.unit.as_str();
        if unit == "B" {
            return f.write_str("a plain number is already bytes; drop the B");
        }
        let without_b = unit.strip_suffix(['B', 'b']).filter(|s| !s.is_empty());
        if let Some(stripped) =
            without_b.filter(|s| UNITS.iter().any(|(u, _)| u.eq_ignore_ascii_case(s)))
        {
            let base = stripped.chars().next().unwrap_or('M').to_ascii_uppercase();
            return write!(
                f,
                "unit `{unit}` is written without the B: use {base} (powers of 1000) or {base}i (powers of 1024)"
            );
        }
        if let Some(upper) = UNITS.iter().find(|(u, _)| u.eq_ignore_ascii_case(unit)) {
            return write!(
                f,
                "unknown unit `{unit}`; units are case-sensitive, did you mean `{}`?",
                upper.0
            );
        }
        write!(
            f,
            "unknown unit `{unit}`; use K, M, G, T, P, E (powers of 1000) or Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024)"
        )
    }
}

const MAX_DECIMALS: usize = 18;

const KI: u128 = 1 << 10;
const UNITS: &[(&str, u128)] = &[
    ("Ki", KI),
    ("Mi", KI.pow(2)),
    ("Gi", KI.pow(3)),
    ("Ti", KI.pow(4)),
    ("Pi", KI.pow(5)),
    ("Ei", KI.pow(6)),
    ("K", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("P", 1_000_000_000_000_000),
    ("E", 1_000_000_000_000_000_000),
];

impl Bytes {
    pub const ZERO: Bytes = Bytes(0);
    pub const KIB: Bytes = Bytes(1 << 10);
    pub const MIB: Bytes = Bytes(1 << 20);
    pub const GIB: Bytes = Bytes(1 << 30);

    pub const fn from_kib(kib: u64) -> Bytes {
        Bytes(kib.saturating_mul(1 << 10))
    }

    pub const fn from_mib(mib: u64) -> Bytes {
        Bytes(mib.saturating_mul(1 << 20))
    }

    pub const fn from_gib(gib: u64) -> Bytes {
        Bytes(gib.saturating_mul(1 << 30))
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// For people rather than job files: binary units with a space and one
    /// decimal where the amount is not whole (`512 MiB`, `7.6 GiB`, `0 B`).
    pub fn human(self) -> HumanBytes {
        HumanBytes(self)
    }

    pub fn checked_add(self, other: Bytes) -> Option<Bytes> {
        self.0.checked_add(other.0).map(Bytes)
    }

    pub fn saturating_sub(self, other: Bytes) -> Bytes {
        Bytes(self.0.saturating_sub(other.0))
    }

    pub fn parse(input: &str) -> Result<Bytes, QuantityError> {
        if input.is_empty() {
            return Err(QuantityError::Empty);
        }
        if input.chars().any(char::is_whitespace) {
            return Err(QuantityError::Whitespace);
        }
        if input.starts_with('-') {
            return Err(QuantityError::Negative);
        }
        let number_end =
            input.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(input.len());
        let (number, unit) = input.split_at(number_end);
        let (whole, fraction) = match number.split_once('.') {
            Some((whole, fraction)) => (whole, fraction),
            None => (number, ""),
        };
        if whole.is_empty()
            || (number.contains('.') && fraction.is_empty())
            || fraction.contains('.')
        {
            return Err(QuantityError::NoNumber);
        }
        if fraction.len() > MAX_DECIMALS {
            return Err(QuantityError::TooManyDecimals);
        }
        let multiplier = if unit.is_empty() {
            1
        } else {
            UNITS
                .iter()
                .find(|(u, _)| *u == unit)
                .map(|(_, m)| *m)
                .ok_or_else(|| QuantityError::UnknownUnit(UnitHint { unit: unit.to_owned() }))?
        };
        // Scaled integer arithmetic: 1.5Gi is (15 * 2^30) / 10. Everything stays below
        // 2^128 because the whole part is capped by the u64 check below before multiplying.
        let whole = whole.trim_start_matches('0');
        if whole.len() > 20 {
            return Err(QuantityError::Overflow);
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| QuantityError::Overflow)?
        };
        let fraction_value: u128 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().map_err(|_| QuantityError::NoNumber)?
        };
        let scale = 10u128.pow(fraction.len() as u32);
        let scaled = whole
            .checked_mul(scale)
            .and_then(|w| w.checked_add(fraction_value))
            .and_then(|n| n.checked_mul(multiplier))
            .ok_or(QuantityError::Overflow)?;
        if scaled % scale != 0 {
            return Err(QuantityError::NotWhole);
        }
        u64::try_from(scaled / scale).map(Bytes).map_err(|_| QuantityError::Overflow)
    }
}

impl FromStr for Bytes {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Bytes::parse(s)
    }
}

/// See [`Bytes::human`].
#[derive(Debug, Clone, Copy)]
pub struct HumanBytes(Bytes);

impl fmt::Display for HumanBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        let bytes = self.0 .0;
        let mut unit = 0;
        let mut scale = 1u64;
        while unit + 1 < UNITS.len() && bytes / scale >= 1024 {
            scale *= 1024;
            unit += 1;
        }
        if bytes.is_multiple_of(scale) {
            write!(f, "{} {}", bytes / scale, UNITS[unit])
        } else {
            write!(f, "{:.1} {}", bytes as f64 / scale as f64, UNITS[unit])
        }
    }
}

/// Prints the shortest exact form, binary units first: `1Gi`, `1500M`, `1000`.
impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = u128::from(self.0);
        if n != 0 {
            // UNITS lists each family smallest first; search each family largest first.
            for family in [&UNITS[..6], &UNITS[6..]] {
                if let Some((unit, m)) = family.iter().rev().find(|(_, m)| n % m == 0) {
                    return write!(f, "{}{unit}", n / m);
                }
            }
        }
        write!(f, "{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_binary_units_for_people() {
        assert_eq!(Bytes(0).human().to_string(), "0 B");
        assert_eq!(Bytes(1023).human().to_string(), "1023 B");
        assert_eq!(Bytes::from_kib(1).human().to_string(), "1 KiB");
        assert_eq!(Bytes::from_mib(512).human().to_string(), "512 MiB");
        assert_eq!(Bytes::from_kib(7956692).human().to_string(), "7.6 GiB");
        assert_eq!(Bytes::from_gib(24).human().to_string(), "24 GiB");
    }

    #[test]
    fn unit_constructors_saturate() {
        assert_eq!(Bytes::from_kib(u64::MAX), Bytes(u64::MAX));
    }
    use proptest::prelude::*;

    fn ok(s: &str) -> u64 {
        Bytes::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}")).0
    }

    fn err(s: &str) -> QuantityError {
        Bytes::parse(s).expect_err(s)
    }

    #[test]
    fn plain_numbers_are_bytes() {
        assert_eq!(ok("0"), 0);
        assert_eq!(ok("1"), 1);
        assert_eq!(ok("1048576"), 1 << 20);
        assert_eq!(ok("007"), 7);
    }

    #[test]
    fn binary_and_decimal_units() {
        assert_eq!(ok("1Ki"), 1024);
        assert_eq!(ok("512Mi"), 512 << 20);
        assert_eq!(ok("2Gi"), 2 << 30);
        assert_eq!(ok("1Ti"), 1 << 40);
        assert_eq!(ok("1Pi"), 1 << 50);
        assert_eq!(ok("15Ei"), 15 << 60);
        assert_eq!(ok("1K"), 1_000);
        assert_eq!(ok("1M"), 1_000_000);
        assert_eq!(ok("3G"), 3_000_000_000);
        assert_eq!(ok("1T"), 1_000_000_000_000);
        assert_eq!(ok("1P"), 1_000_000_000_000_000);
        assert_eq!(ok("18E"), 18_000_000_000_000_000_000);
    }

    #[test]
    fn exact_fractions_are_accepted_inexact_ones_refused() {
        assert_eq!(ok("1.5Gi"), 3 << 29);
        assert_eq!(ok("0.5Ki"), 512);
        assert_eq!(ok("2.25M"), 2_250_000);
        assert_eq!(ok("1.000"), 1);
        assert_eq!(err("0.3Ki"), QuantityError::NotWhole);
        assert_eq!(err("1.5"), QuantityError::NotWhole);
        assert_eq!(err("0.0000000000000000001E"), QuantityError::TooManyDecimals);
    }

    #[test]
    fn malformed_quantities_say_what_is_wrong() {
        assert_eq!(err(""), QuantityError::Empty);
        assert_eq!(err("512 Mi"), QuantityError::Whitespace);
        assert_eq!(err(" 1Gi"), QuantityError::Whitespace);
        assert_eq!(err("-1Gi"), QuantityError::Negative);
        assert_eq!(err("Gi"), QuantityError::NoNumber);
        assert_eq!(err(".5Gi"), QuantityError::NoNumber);
        assert_eq!(err("1.Gi"), QuantityError::NoNumber);
        assert_eq!(err("1.2.3Gi"), QuantityError::NoNumber);
        assert_eq!(err("+1Gi"), QuantityError::NoNumber);
        assert!(matches!(err("1GB"), QuantityError::UnknownUnit(_)));
        assert!(matches!(err("1gi"), QuantityError::UnknownUnit(_)));
        assert!(matches!(err("1Gix"), QuantityError::UnknownUnit(_)));
        assert!(matches!(err("1e9"), QuantityError::UnknownUnit(_)));
    }

    #[test]
    fn unit_hints_are_specific() {
        assert_eq!(
            err("512MB").to_string(),
            "unit `MB` is written without the B: use M (powers of 1000) or Mi (powers of 1024)"
        );
        assert_eq!(
            err("1GiB").to_string(),
            "unit `GiB` is written without the B: use G (powers of 1000) or Gi (powers of 1024)"
        );
        assert_eq!(
            err("1gi").to_string(),
            "unknown unit `gi`; units are case-sensitive, did you mean `Gi`?"
        );
        assert_eq!(err("100B").to_string(), "a plain number is already bytes; drop the B");
        assert!(err("1x").to_string().starts_with("unknown unit `x`; use K, M"));
    }

    #[test]
    fn overflow_is_an_error_not_saturation() {
        assert_eq!(ok("18446744073709551615"), u64::MAX);
        assert_eq!(err("18446744073709551616"), QuantityError::Overflow);
        assert_eq!(err("16Ei"), QuantityError::Overflow);
        assert_eq!(err("19E"), QuantityError::Overflow);
        assert_eq!(err("99999999999999999999999999999999999999999Ki"), QuantityError::Overflow);
        assert_eq!(err("17179869184Gi"), QuantityError::Overflow);
    }

    #[test]
    fn display_is_the_shortest_exact_form() {
        assert_eq!(Bytes(0).to_string(), "0");
        assert_eq!(Bytes(1).to_string(), "1");
        assert_eq!(Bytes(1024).to_string(), "1Ki");
        assert_eq!(Bytes(1536).to_string(), "1536");
        assert_eq!(Bytes(1 << 30).to_string(), "1Gi");
        assert_eq!(Bytes(3 << 29).to_string(), "1536Mi");
        assert_eq!(Bytes(1_000_000).to_string(), "1M");
        assert_eq!(Bytes(1_500_000).to_string(), "1500K");
        assert_eq!(Bytes(u64::MAX).to_string(), "18446744073709551615");
    }

    proptest! {
        #[test]
        fn display_round_trips(n: u64) {
            prop_assert_eq!(Bytes::parse(&Bytes(n).to_string()), Ok(Bytes(n)));
        }

        #[test]
        fn number_with_unit_is_exact_or_overflow(n: u64, unit in 0usize..UNITS.len()) {
            let (name, multiplier) = UNITS[unit];
            let expected = u128::from(n) * multiplier;
            let parsed = Bytes::parse(&format!("{n}{name}"));
            if expected > u128::from(u64::MAX) {
                prop_assert_eq!(parsed, Err(QuantityError::Overflow));
            } else {
                prop_assert_eq!(parsed, Ok(Bytes(expected as u64)));
            }
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,40}") {
            let _ = Bytes::parse(&s);
        }

        #[test]
        fn quantity_shaped_strings_never_panic(s in "[0-9.]{0,30}(Ki|Mi|Gi|Ti|Pi|Ei|K|M|G|T|P|E|B|x)?") {
            let _ = Bytes::parse(&s);
        }
    }
}
