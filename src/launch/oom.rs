//! How a job's OOM policy meets the kernel: which [`OomMode`] its cgroup
//! gets, and the limits after one grow step.
//!
//! | Policy | Host can pause at the limit (v1 memory controller) | Host cannot (pure v2) |
//! |---|---|---|
//! | `fail` | `Kill`: the kernel's OOM killer ends the job (v2: all of it, `memory.oom.group`) | `Kill` |
//! | `grow`, `requeue` | `PauseAtLimit`: the job stops at its limit (`under_oom 1`) and whoever watches the cgroup's events decides: raise the limit, or kill the job as a whole | `Kill`; the OOM kill is the event to act on |
//!
//! Pausing instead of killing matters for `grow` (the job goes on after the
//! limit is raised) and `requeue` (the job is stopped as a whole, not one
//! process picked by the OOM killer). The pause is the kernel's
//! (`oom_kill_disable`), so it happens even before anyone reads the event;
//! see [`OomMode::PauseAtLimit`] for allocations inside system calls,
//! which fail instead of pausing.

use crate::cgroup::{Capabilities, OomMode, Resources};
use crate::spec::OomPolicy;

/// The cgroup OOM mode for `policy` on a host with `capabilities`.
pub fn oom_mode(policy: &OomPolicy, capabilities: &Capabilities) -> OomMode {
    match policy {
        OomPolicy::Grow { .. } | OomPolicy::Requeue { .. } if capabilities.pause_at_limit => {
            OomMode::PauseAtLimit
        }
        _ => OomMode::Kill,
    }
}

/// The resources after one grow step from `current`: the hard limit raised
/// by the policy's step but not beyond `grow_to`, and `high` (if set)
/// raised by as much. `None` when the policy is not `grow`, there is no
/// hard limit, or the limit is already at `grow_to`: the OOM is then fatal.
pub fn grow(current: &Resources, policy: &OomPolicy) -> Option<Resources> {
    let OomPolicy::Grow { to, step } = policy else { return None };
    let hard = current.memory.hard_bytes?;
    if hard >= to.get() {
        return None;
    }
    let grown = hard.saturating_add(step.get()).min(to.get());
    let added = grown - hard;
    let mut next = current.clone();
    next.memory.hard_bytes = Some(grown);
    next.memory.high_bytes =
        current.memory.high_bytes.map(|high| high.saturating_add(added).min(grown));
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::{FreezerKind, KillKind, MemoryLimits};
    use crate::vocab::Bytes;
    use crate::vocab::Factor;

    const MI: u64 = 1 << 20;

    fn caps(pause_at_limit: bool) -> Capabilities {
        Capabilities {
            freezer: FreezerKind::V2,
            kill: KillKind::CgroupKill,
            memsw: false,
            swap_max: false,
            populated_events: true,
            pressure: true,
            pause_at_limit,
        }
    }

    fn grow_policy(to_mi: u64, step_mi: u64) -> OomPolicy {
        OomPolicy::Grow { to: Bytes::from_mib(to_mi), step: Bytes::from_mib(step_mi) }
    }

    #[test]
    fn only_grow_and_requeue_pause_and_only_where_the_host_can() {
        let requeue = OomPolicy::Requeue { factor: Factor::ONE, max: 3 };
        let grow = grow_policy(160, 48);
        assert_eq!(oom_mode(&OomPolicy::Fail, &caps(true)), OomMode::Kill);
        assert_eq!(oom_mode(&grow, &caps(true)), OomMode::PauseAtLimit);
        assert_eq!(oom_mode(&requeue, &caps(true)), OomMode::PauseAtLimit);
        assert_eq!(oom_mode(&grow, &caps(false)), OomMode::Kill);
        assert_eq!(oom_mode(&requeue, &caps(false)), OomMode::Kill);
    }

    fn with_memory(hard: Option<u64>, high: Option<u64>) -> Resources {
        Resources {
            memory: MemoryLimits {
                hard_bytes: hard,
                high_bytes: high,
                soft_bytes: Some(8 * MI),
                swap_bytes: Some(0),
            },
            pids_max: Some(10),
            ..Resources::default()
        }
    }

    #[test]
    fn grow_steps_up_to_the_ceiling_then_stops() {
        let policy = grow_policy(160, 48);
        let first = grow(&with_memory(Some(64 * MI), None), &policy).unwrap();
        assert_eq!(first.memory.hard_bytes, Some(112 * MI));
        // Everything else stays as it was.
        assert_eq!(first.memory.soft_bytes, Some(8 * MI));
        assert_eq!(first.memory.swap_bytes, Some(0));
        assert_eq!(first.memory.high_bytes, None);
        assert_eq!(first.pids_max, Some(10));
        let second = grow(&first, &policy).unwrap();
        assert_eq!(second.memory.hard_bytes, Some(160 * MI), "the last step is cut at grow_to");
        assert_eq!(grow(&second, &policy), None);
    }

    #[test]
    fn high_grows_by_as_much_as_hard() {
        let policy = grow_policy(100, 30);
        let next = grow(&with_memory(Some(64 * MI), Some(48 * MI)), &policy).unwrap();
        assert_eq!(next.memory.hard_bytes, Some(94 * MI));
        assert_eq!(next.memory.high_bytes, Some(78 * MI));
    }

    #[test]
    fn nothing_to_grow_without_grow_or_without_a_hard_limit() {
        assert_eq!(grow(&with_memory(Some(64 * MI), None), &OomPolicy::Fail), None);
        assert_eq!(grow(&with_memory(None, None), &grow_policy(160, 48)), None);
    }
}
