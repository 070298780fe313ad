//! CPU amounts shared by the job spec and the cgroup layer.

use std::fmt;

use super::decimal::{self, DecimalError};

/// A CPU weight in cgroup v2 units: 1 to 10000, default 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuWeight(u16);

impl CpuWeight {
    pub const MIN: u16 = 1;
    pub const MAX: u16 = 10_000;
    pub const DEFAULT: CpuWeight = CpuWeight(100);

    pub fn new(weight: u16) -> Option<CpuWeight> {
        (Self::MIN..=Self::MAX).contains(&weight).then_some(CpuWeight(weight))
    }

    pub fn get(self) -> u16 {
        self.0
    }

    /// The value for cgroup v2 `cpu.weight`: the same number.
    pub fn v2_weight(self) -> u64 {
        u64::from(self.0)
    }

    /// The value for cgroup v1 `cpu.shares`: scaled so that the defaults match (weight 100
    /// = 1024 shares), the same conversion systemd makes, clamped to the kernel's 2..=262144.
    pub fn v1_shares(self) -> u64 {
        (u64::from(self.0) * 1024 / 100).clamp(2, 262_144)
    }
}

impl fmt::Display for CpuWeight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A CPU bandwidth cap in thousandths of a CPU: `1.5` CPUs is 1500, `500m` is 500.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MilliCpus(u32);

impl MilliCpus {
    /// The kernel refuses a quota under 1ms per period; at the default 100ms period that
    /// is a hundredth of a CPU.
    pub const MIN: u32 = 10;
    pub const MAX: u32 = 4_096_000;

    pub fn new(millis: u32) -> Option<MilliCpus> {
        (Self::MIN..=Self::MAX).contains(&millis).then_some(MilliCpus(millis))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// Parses `1.5`, `2`, `0.25` (CPUs, at most three decimals) or `500m` (millicpus).
    pub fn parse(text: &str) -> Result<MilliCpus, String> {
        let millis: u64 = if let Some(m) = text.strip_suffix('m') {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_digit()) {
                return Err("millicpus are a whole number followed by m, like 500m".into());
            }
            m.parse().map_err(|_| "it is too large".to_owned())?
        } else {
            decimal::parse(text, 3).map_err(|e| match e {
                DecimalError::NotANumber => {
                    "write a number of CPUs like 1.5, or millicpus like 500m"
                }
                DecimalError::TooManyPlaces => {
                    "at most three decimal places (a thousandth of a CPU)"
                }
                DecimalError::TooLarge => "it is too large",
            })?
        };
        u32::try_from(millis).ok().and_then(MilliCpus::new).ok_or_else(|| {
            format!("it must be between {}m and {} CPUs", Self::MIN, Self::MAX / 1000)
        })
    }

    /// The cgroup quota for a period of `period_us` microseconds (v1 `cpu.cfs_quota_us`,
    /// the first number of v2 `cpu.max`).
    pub fn quota_us(self, period_us: u64) -> u64 {
        u64::from(self.0) * period_us / 1000
    }
}

/// Prints as files write it: `1.5`, `2`, `0.25`, `0.005`.
impl fmt::Display for MilliCpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        decimal::write(f, self.0.into(), 3)
    }
}
