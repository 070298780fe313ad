//! The per-job rules the state machine applies: restarts, OOM handling,
//! preemption, timeout and stop grace.
//!
//! These are the scheduler's own inputs, compiled from a job spec by the
//! shell; the state machine never sees YAML.

use std::time::Duration;

use crate::spec::RestartOn;
use crate::vocab::Bytes;
use crate::vocab::Factor;

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

impl OomPolicy {
    /// The hard limit after one growth step from `limit`, if the policy
    /// grows and the step is a growth at all (not at the ceiling already).
    /// The one rule for growing: in place at the limit, and for the next
    /// attempt after an OOM kill.
    pub fn grown_limit(&self, limit: Option<Bytes>) -> Option<Bytes> {
        let OomPolicy::Grow { step, ceiling } = *self else { return None };
        let limit = limit?;
        let grown = Bytes(limit.get().saturating_add(step.get())).min(ceiling);
        (grown > limit).then_some(grown)
    }
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
    fn growth_is_one_step_up_to_the_ceiling() {
        let grow = OomPolicy::Grow { step: Bytes::from_mib(64), ceiling: Bytes::from_mib(160) };
        let mib = |n| Some(Bytes::from_mib(n));
        assert_eq!(grow.grown_limit(mib(64)), mib(128));
        assert_eq!(grow.grown_limit(mib(128)), mib(160), "capped at the ceiling");
        assert_eq!(grow.grown_limit(mib(160)), None, "at the ceiling: no growth");
        assert_eq!(grow.grown_limit(mib(200)), None, "above it: never lowered");
        assert_eq!(grow.grown_limit(None), None, "no limit: nothing to grow");
        assert_eq!(
            OomPolicy::Grow { step: Bytes(1), ceiling: Bytes(u64::MAX) }
                .grown_limit(Some(Bytes(u64::MAX))),
            None
        );
        assert_eq!(OomPolicy::Fail.grown_limit(mib(64)), None);
        let requeue =
            OomPolicy::Requeue { factor: Factor::from_hundredths(200), cap: None, max: 1 };
        assert_eq!(requeue.grown_limit(mib(64)), None);
    }
}
