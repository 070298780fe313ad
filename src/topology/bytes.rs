//! An amount of memory in bytes.

use std::fmt;

/// A memory size in bytes. sysfs and procfs print kibibytes (`kB` there means
/// 1024 bytes); job limits are bytes; this type is the one unit in between.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Bytes(pub u64);

impl Bytes {
    pub const ZERO: Bytes = Bytes(0);

    pub const fn from_kib(kib: u64) -> Bytes {
        Bytes(kib.saturating_mul(1024))
    }

    pub const fn from_mib(mib: u64) -> Bytes {
        Bytes(mib.saturating_mul(1024 * 1024))
    }

    pub const fn from_gib(gib: u64) -> Bytes {
        Bytes(gib.saturating_mul(1024 * 1024 * 1024))
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    pub fn saturating_sub(self, other: Bytes) -> Bytes {
        Bytes(self.0.saturating_sub(other.0))
    }
}

/// Binary units, one decimal where the amount is not a whole number of them:
/// `512 MiB`, `7.6 GiB`, `0 B`.
impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        let mut unit = 0;
        let mut scale = 1u64;
        while unit + 1 < UNITS.len() && self.0 / scale >= 1024 {
            scale *= 1024;
            unit += 1;
        }
        if self.0.is_multiple_of(scale) {
            write!(f, "{} {}", self.0 / scale, UNITS[unit])
        } else {
            write!(f, "{:.1} {}", self.0 as f64 / scale as f64, UNITS[unit])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_binary_units() {
        assert_eq!(Bytes(0).to_string(), "0 B");
        assert_eq!(Bytes(1023).to_string(), "1023 B");
        assert_eq!(Bytes::from_kib(1).to_string(), "1 KiB");
        assert_eq!(Bytes::from_mib(512).to_string(), "512 MiB");
        assert_eq!(Bytes::from_kib(7956692).to_string(), "7.6 GiB");
        assert_eq!(Bytes::from_gib(24).to_string(), "24 GiB");
    }

    #[test]
    fn kib_conversion_saturates() {
        assert_eq!(Bytes::from_kib(u64::MAX), Bytes(u64::MAX));
    }
}
