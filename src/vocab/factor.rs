//! Multipliers: how much more memory a run requeued after an OOM gets.

use std::fmt;

use super::decimal;
use super::Bytes;

/// A multiplier in hundredths: `Factor::from_hundredths(150)` is ×1.5, written `1.5`.
/// Integer so that memory sizes scale exactly and the same way everywhere.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Factor(u32);

impl Factor {
    pub const ONE: Factor = Factor(100);

    pub const fn from_hundredths(h: u32) -> Factor {
        Factor(h)
    }

    pub const fn hundredths(self) -> u32 {
        self.0
    }

    /// `bytes` times this factor, rounded down, saturating.
    pub fn apply(self, bytes: Bytes) -> Bytes {
        self.checked_apply(bytes).unwrap_or(Bytes(u64::MAX))
    }

    /// `bytes` times this factor, rounded down; `None` on overflow.
    pub fn checked_apply(self, bytes: Bytes) -> Option<Bytes> {
        let scaled = u128::from(bytes.get()) * u128::from(self.0) / 100;
        u64::try_from(scaled).ok().map(Bytes)
    }
}

/// Two decimals at most, as job files write it: `1.5`, `1.05`, `2`.
impl fmt::Display for Factor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        decimal::write(f, self.0.into(), 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_scales_exactly_and_saturates() {
        assert_eq!(Factor::from_hundredths(150).apply(Bytes::from_mib(100)), Bytes::from_mib(150));
        assert_eq!(Factor::ONE.apply(Bytes(7)), Bytes(7));
        assert_eq!(Factor::from_hundredths(1000).apply(Bytes(u64::MAX)), Bytes(u64::MAX));
        assert_eq!(Factor::from_hundredths(200).checked_apply(Bytes(u64::MAX)), None);
    }

    #[test]
    fn stored_as_hundredths_and_printed_as_written() {
        assert_eq!(serde_json::to_string(&Factor::from_hundredths(150)).unwrap(), "150");
        assert_eq!(Factor::from_hundredths(105).to_string(), "1.05");
        assert_eq!(Factor::ONE.to_string(), "1");
    }
}
