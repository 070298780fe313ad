//! The per-job rules the state machine applies: restarts, OOM handling,
//! preemption, timeout and stop grace.
//!
//! These are the scheduler's own inputs, compiled from a job spec by the
//! shell; the state machine never sees YAML.

use std::time::Duration;

use crate::vocab::Bytes;

/// Everything about a job that the run state machine decides with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    pub restart: RestartPolicy,
    pub oom: OomPolicy,
    pub preemption: PreemptionMode,
    /// Longest *running* time of one attempt. Time spent frozen (suspended
    /// for preemption, or paused at the memory limit) does not count: a job
    /// must not fail its deadline because the agent chose to freeze it.
    pub timeout: Option<Duration>,
    /// Between SIGTERM and killing every process of the run.
    pub stop_grace: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            restart: RestartPolicy::default(),
            oom: OomPolicy::Fail,
            preemption: PreemptionMode::Never,
            timeout: None,
            stop_grace: Duration::from_secs(10),
        }
    }
}

/// Which endings lead to another attempt.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum RestartOn {
    #[default]
    Never,
    /// A non-zero exit, a signal, a timeout, a failed OOM policy, a failed
    /// launch or a lost process.
    Failure,
    /// Any ending, success included.
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RestartPolicy {
    pub on: RestartOn,
    /// Most restarts of one run (not counting the first attempt).
    pub attempts: u32,
    /// Wait before the first restart; doubles each time.
    pub backoff_min: Duration,
    /// Longest wait.
    pub backoff_max: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            on: RestartOn::Never,
            attempts: 0,
            backoff_min: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
        }
    }
}

/// A multiplier in hundredths: `Factor::from_hundredths(150)` is ×1.5.
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
        let scaled = u128::from(bytes.get()) * u128::from(self.0) / 100;
        Bytes(u64::try_from(scaled).unwrap_or(u64::MAX))
    }
}

/// What to do when a run reaches its hard memory limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OomPolicy {
    /// The attempt fails; the restart policy decides what follows.
    #[default]
    Fail,
    /// Kill the run and queue it again with its limit multiplied by `factor`
    /// (never above `cap`), at most `max` times; then fail.
    Requeue { factor: Factor, cap: Option<Bytes>, max: u32 },
    /// Raise the limit by `step` (never above `ceiling`) and thaw the run in
    /// place. If the kernel already killed a process, the run is queued again
    /// with the grown limit instead. At the ceiling, fail.
    Grow { step: Bytes, ceiling: Bytes },
}

/// What may be done to a run to make room for a higher-priority one.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum PreemptionMode {
    /// Freeze it and thaw it later; frees its CPUs, not its memory.
    Suspend,
    /// Stop it and queue it to start again from the beginning.
    Requeue,
    #[default]
    Never,
}

impl std::fmt::Display for PreemptionMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PreemptionMode::Suspend => "suspend",
            PreemptionMode::Requeue => "requeue",
            PreemptionMode::Never => "never",
        })
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
    }
}
