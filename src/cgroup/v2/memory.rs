//! v2 `memory`: `memory.max`, `memory.low`, `memory.high`, `memory.swap.max`,
//! `memory.oom.group`, statistics and `memory.events`.
//!
//! The soft limit maps to `memory.low`, not `memory.high`: a v1 soft limit
//! only matters under memory pressure, where groups above it are reclaimed
//! first, and `memory.low` is exactly that (memory below it is protected,
//! usage above it is reclaimed first). `memory.high` instead throttles the
//! job as soon as it crosses the value, pressure or not; that is a limit, so
//! it is its own setting.
//!
//! With [`OomMode::FreezeAtHigh`] `memory.high` is taken by the pause point
//! instead: it goes at the hard limit and `memory.max` [`freeze_margin`]
//! above it. Crossing `memory.high` does not stop a job, it only throttles
//! it (the kernel reclaims and makes the allocator sleep on its way back to
//! user space) and counts a `high` event, whose inotify notification wakes
//! the agent to freeze it. The margin is room for what the job allocates
//! between the event and the freeze; a job that allocates faster than that
//! reaches `memory.max` and is OOM-killed as a whole.

use crate::cgroup::plan::{Builder, PlanProblem, Target};
use crate::cgroup::resources::{OomMode, Resources};
use crate::cgroup::stats::{flat_keyed, MemoryStats};

pub const MAX: &str = "memory.max";
pub const LOW: &str = "memory.low";
pub const HIGH: &str = "memory.high";
pub const SWAP_MAX: &str = "memory.swap.max";
pub const OOM_GROUP: &str = "memory.oom.group";
pub const CURRENT: &str = "memory.current";
pub const PEAK: &str = "memory.peak";
pub const SWAP_CURRENT: &str = "memory.swap.current";
pub const STAT: &str = "memory.stat";
pub const EVENTS: &str = "memory.events";

/// Least room above the hard limit for a job frozen at `memory.high`.
pub const FREEZE_MARGIN_MIN: u64 = 16 << 20;
/// Most room above the hard limit: a job frozen at its limit holds at most
/// this much more than it asked for.
pub const FREEZE_MARGIN_MAX: u64 = 1 << 30;

/// How far above `hard` `memory.max` goes for a job frozen at `memory.high`
/// ([`OomMode::FreezeAtHigh`]): a tenth of the limit, at least 16 MiB (the
/// overshoot of a throttled job before the freeze is a few MiB, see
/// docs/spec.md) and at most 1 GiB.
pub fn freeze_margin(hard: u64) -> u64 {
    (hard / 10).clamp(FREEZE_MARGIN_MIN, FREEZE_MARGIN_MAX)
}

/// Whether a job cgroup whose `memory.high` reads `high` and `memory.max`
/// reads `max` was set up with `memory.high` as its pause point
/// ([`OomMode::FreezeAtHigh`]): `max` is exactly the freeze margin above
/// `high`. (A throttle set by hand the same distance below the limit would
/// read the same; it would then be frozen at its throttle, which under
/// `oom.action: fail` ends the job as reaching its limit would.)
pub fn pauses_at_high(high: &str, max: &str) -> bool {
    match (high.trim().parse::<u64>(), max.trim().parse::<u64>()) {
        (Ok(high), Ok(max)) => high.checked_add(freeze_margin(high)) == Some(max),
        _ => false,
    }
}

fn bytes_or(value: Option<u64>, default: &str) -> String {
    value.map_or_else(|| default.to_owned(), |v| v.to_string())
}

pub(crate) fn plan(res: &Resources, b: &mut Builder<'_>) {
    let t = Target::Unified;
    let mem = res.memory;
    match res.oom {
        // A job is one unit: an OOM kill takes all of it rather than leaving
        // a half-dead job running.
        OomMode::Kill | OomMode::FreezeAtHigh => b.write(t, OOM_GROUP, 1),
        OomMode::PauseAtLimit => b.problem(PlanProblem::Unsupported {
            setting: "pause at memory limit",
            reason: "cgroup v2 cannot stop a job at its hard limit; set a memory high \
                     limit below it to throttle the job and watch its events instead",
        }),
    }
    if mem.soft_bytes.is_some() || b.updating() {
        b.write(t, LOW, bytes_or(mem.soft_bytes, "0"));
    }
    let (high, max) = match (res.oom, mem.hard_bytes) {
        (OomMode::FreezeAtHigh, Some(hard)) => {
            if mem.high_bytes.is_some_and(|high| high < hard) {
                b.skip(
                    "memory high limit",
                    "memory.high is the pause point at the hard limit for oom grow and \
                     requeue; only the hard limit is enforced",
                );
            }
            (Some(hard), Some(hard.saturating_add(freeze_margin(hard))))
        }
        _ => (mem.high_bytes, mem.hard_bytes),
    };
    // high before max: when both go down, the job is throttled before the
    // new maximum can OOM-kill it.
    if high.is_some() || b.updating() {
        b.write(t, HIGH, bytes_or(high, "max"));
    }
    if max.is_some() || b.updating() {
        b.write(t, MAX, bytes_or(max, "max"));
    }
    if b.ctx.swap_max {
        if mem.swap_bytes.is_some() || b.updating() {
            b.write(t, SWAP_MAX, bytes_or(mem.swap_bytes, "max"));
        }
    } else if mem.swap_bytes.is_some() {
        b.skip(
            "swap limit",
            "swap accounting is off (no memory.swap.max): swap use is not limited",
        );
    }
}

/// Fills `memory` from v2 `memory.stat`; returns `inactive_file`.
pub fn parse_stat(text: &str, memory: &mut MemoryStats) -> Option<u64> {
    let mut inactive_file = None;
    for (key, value) in flat_keyed(text) {
        match key {
            "anon" => memory.anon_bytes = Some(value),
            "file" => memory.file_bytes = Some(value),
            "inactive_file" => inactive_file = Some(value),
            _ => {}
        }
    }
    inactive_file
}

/// Counters of `memory.events` (each counts occurrences since creation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryEventCounts {
    pub low: u64,
    pub high: u64,
    pub max: u64,
    pub oom: u64,
    pub oom_kill: u64,
    pub oom_group_kill: u64,
}

pub fn parse_events(text: &str) -> MemoryEventCounts {
    let mut out = MemoryEventCounts::default();
    for (key, value) in flat_keyed(text) {
        match key {
            "low" => out.low = value,
            "high" => out.high = value,
            "max" => out.max = value,
            "oom" => out.oom = value,
            "oom_kill" => out.oom_kill = value,
            "oom_group_kill" => out.oom_group_kill = value,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::plan::tests::{v2_ctx, writes_to};
    use crate::cgroup::plan::{plan, PlanMode};
    use crate::cgroup::resources::MemoryLimits;

    const MI: u64 = 1 << 20;

    #[test]
    fn limits_map_to_low_high_max_and_swap() {
        let res = Resources {
            memory: MemoryLimits {
                hard_bytes: Some(1024 * MI),
                soft_bytes: Some(512 * MI),
                high_bytes: Some(900 * MI),
                swap_bytes: Some(0),
            },
            ..Default::default()
        };
        let p = plan(&v2_ctx(PlanMode::Create), &res).unwrap();
        assert_eq!(
            writes_to(&p, "memory."),
            vec![
                (OOM_GROUP, "1"),
                (LOW, "536870912"),
                (HIGH, "943718400"),
                (MAX, "1073741824"),
                (SWAP_MAX, "0"),
            ]
        );
    }

    #[test]
    fn update_resets_to_kernel_defaults() {
        let p = plan(&v2_ctx(PlanMode::Update), &Resources::default()).unwrap();
        assert_eq!(
            writes_to(&p, "memory."),
            vec![(OOM_GROUP, "1"), (LOW, "0"), (HIGH, "max"), (MAX, "max"), (SWAP_MAX, "max")]
        );
    }

    #[test]
    fn pause_at_limit_is_refused_on_v2() {
        let res = Resources { oom: OomMode::PauseAtLimit, ..Default::default() };
        let err = plan(&v2_ctx(PlanMode::Create), &res).unwrap_err();
        assert!(err.to_string().contains("pause at memory limit"), "{err}");
    }

    fn freeze_at_high(hard: u64, high: Option<u64>) -> Resources {
        Resources {
            memory: MemoryLimits { hard_bytes: Some(hard), high_bytes: high, ..Default::default() },
            oom: OomMode::FreezeAtHigh,
            ..Default::default()
        }
    }

    #[test]
    fn freeze_at_high_puts_high_at_the_limit_and_max_a_margin_above() {
        let p = plan(&v2_ctx(PlanMode::Create), &freeze_at_high(64 * MI, None)).unwrap();
        assert_eq!(
            writes_to(&p, "memory."),
            vec![(OOM_GROUP, "1"), (HIGH, "67108864"), (MAX, "83886080")]
        );
        assert!(p.skipped.is_empty());
    }

    #[test]
    fn a_grown_limit_moves_high_and_max_together() {
        let p = plan(&v2_ctx(PlanMode::Update), &freeze_at_high(1024 * MI, None)).unwrap();
        assert_eq!(p.value_of(HIGH), Some("1073741824"));
        assert_eq!(p.value_of(MAX), Some((1024 * MI + 1024 * MI / 10).to_string().as_str()));
    }

    #[test]
    fn a_lower_high_gives_way_to_the_pause_point_and_says_so() {
        let p = plan(&v2_ctx(PlanMode::Create), &freeze_at_high(64 * MI, Some(48 * MI))).unwrap();
        assert_eq!(p.value_of(HIGH), Some("67108864"));
        assert_eq!(p.skipped[0].setting, "memory high limit");
    }

    #[test]
    fn freeze_at_high_without_a_hard_limit_sets_no_limits() {
        let res = Resources { oom: OomMode::FreezeAtHigh, ..Default::default() };
        let p = plan(&v2_ctx(PlanMode::Create), &res).unwrap();
        assert_eq!(writes_to(&p, "memory."), vec![(OOM_GROUP, "1")]);
    }

    #[test]
    fn the_margin_is_a_tenth_of_the_limit_within_its_bounds() {
        assert_eq!(freeze_margin(MI), FREEZE_MARGIN_MIN);
        assert_eq!(freeze_margin(160 * MI), FREEZE_MARGIN_MIN);
        assert_eq!(freeze_margin(1000 * MI), 100 * MI);
        assert_eq!(freeze_margin(64 << 30), FREEZE_MARGIN_MAX);
        assert_eq!(freeze_margin(u64::MAX), FREEZE_MARGIN_MAX);
    }

    #[test]
    fn the_pause_point_is_recognised_from_the_cgroup_files() {
        let p = plan(&v2_ctx(PlanMode::Create), &freeze_at_high(64 * MI, None)).unwrap();
        assert!(pauses_at_high(p.value_of(HIGH).unwrap(), p.value_of(MAX).unwrap()));
        assert!(pauses_at_high("1073741824\n", "1181116006\n"));
        assert!(!pauses_at_high("max\n", "max\n"));
        assert!(!pauses_at_high("41943040\n", "67108864\n"));
        assert!(!pauses_at_high("67108864\n", "max\n"));
    }

    #[test]
    fn swap_without_swap_accounting_is_skipped() {
        let mut ctx = v2_ctx(PlanMode::Create);
        ctx.swap_max = false;
        let res = Resources {
            memory: MemoryLimits {
                hard_bytes: Some(MI * 8),
                swap_bytes: Some(0),
                ..Default::default()
            },
            ..Default::default()
        };
        let p = plan(&ctx, &res).unwrap();
        assert_eq!(p.value_of(SWAP_MAX), None);
        assert_eq!(p.skipped[0].setting, "swap limit");
    }

    #[test]
    fn parses_memory_stat_and_events() {
        let mut m = MemoryStats::default();
        let inactive =
            parse_stat(include_str!("../../../tests/fixtures/cgroup/v2/memory.stat"), &mut m);
        assert_eq!(m.anon_bytes, Some(10_047_488));
        assert_eq!(m.file_bytes, Some(54_476_800));
        assert_eq!(inactive, Some(36_864_000));
        let events = parse_events(include_str!("../../../tests/fixtures/cgroup/v2/memory.events"));
        assert_eq!(
            events,
            MemoryEventCounts { low: 0, high: 12, max: 3, oom: 1, oom_kill: 1, oom_group_kill: 1 }
        );
    }
}
