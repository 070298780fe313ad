//! How a job's OOM policy meets the kernel: which [`OomMode`] its cgroup
//! gets. (How far a limit grows is the run state machine's decision,
//! [`crate::scheduler`]; the cgroup's limits for a limit in force are
//! [`super::plan::memory_limits`].)
//!
//! | Policy | Host can pause at the limit (v1 memory controller) | Memory on v2, with a freezer | Neither |
//! |---|---|---|---|
//! | `fail` | `Kill`: the kernel's OOM killer ends the job (v2: all of it, `memory.oom.group`) | `Kill` | `Kill` |
//! | `grow`, `requeue` | `PauseAtLimit`: the job stops at its limit (`under_oom 1`) and whoever watches the cgroup's events decides: raise the limit, or kill the job as a whole | `FreezeAtHigh`: throttled at its limit (`memory.high`), frozen by whoever watches `memory.events`, who then decides the same | `Kill`; the OOM kill is the event to act on |
//!
//! Pausing instead of killing matters for `grow` (the job goes on after the
//! limit is raised) and `requeue` (the job is stopped as a whole, not one
//! process picked by the OOM killer). The v1 pause is the kernel's
//! (`oom_kill_disable`), so it happens even before anyone reads the event;
//! see [`OomMode::PauseAtLimit`] for allocations inside system calls,
//! which fail instead of pausing. The v2 pause is the watcher's freeze, so
//! a job that allocates faster than the watcher reacts is killed at
//! `memory.max` instead (see [`OomMode::FreezeAtHigh`]).

use crate::cgroup::{Capabilities, FreezerKind, OomMode};
use crate::spec::OomPolicy;

/// The cgroup OOM mode for `policy` on a host with `capabilities`.
pub fn oom_mode(policy: &OomPolicy, capabilities: &Capabilities) -> OomMode {
    match policy {
        OomPolicy::Grow { .. } | OomPolicy::Requeue { .. } if capabilities.pause_at_limit => {
            OomMode::PauseAtLimit
        }
        // Without a v1 memory controller the job's memory is limited on v2
        // (or not at all, when nothing can be paused anyway).
        OomPolicy::Grow { .. } | OomPolicy::Requeue { .. }
            if capabilities.freezer != FreezerKind::None =>
        {
            OomMode::FreezeAtHigh
        }
        _ => OomMode::Kill,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::KillKind;
    use crate::vocab::Bytes;
    use crate::vocab::Factor;

    fn caps(pause_at_limit: bool) -> Capabilities {
        caps_with(pause_at_limit, FreezerKind::V2)
    }

    fn caps_with(pause_at_limit: bool, freezer: FreezerKind) -> Capabilities {
        Capabilities {
            freezer,
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
        assert_eq!(oom_mode(&OomPolicy::Fail, &caps(false)), OomMode::Kill);
        assert_eq!(oom_mode(&grow, &caps(false)), OomMode::FreezeAtHigh);
        assert_eq!(oom_mode(&requeue, &caps(false)), OomMode::FreezeAtHigh);
    }

    #[test]
    fn v1_freezer_with_v2_memory_still_freezes_at_high() {
        let grow = grow_policy(160, 48);
        assert_eq!(oom_mode(&grow, &caps_with(false, FreezerKind::V1)), OomMode::FreezeAtHigh);
    }

    #[test]
    fn without_a_freezer_nothing_can_pause_and_the_kill_is_the_event() {
        let grow = grow_policy(160, 48);
        assert_eq!(oom_mode(&grow, &caps_with(false, FreezerKind::None)), OomMode::Kill);
    }
}
