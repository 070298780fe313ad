//! How a job's OOM policy meets the kernel: which [`OomMode`] its cgroup
//! gets. (How far a limit grows is the run state machine's decision,
//! [`crate::scheduler`]; the cgroup's limits for a limit in force are
//! [`super::plan::memory_limits`].)
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

use crate::cgroup::{Capabilities, OomMode};
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::{FreezerKind, KillKind};
    use crate::vocab::Bytes;
    use crate::vocab::Factor;

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
}
