//! v1 `memory`: hard and soft limits, memory+swap, OOM control, statistics.
//!
//! The kernel keeps `memory.limit_in_bytes <= memory.memsw.limit_in_bytes` at
//! every moment and refuses a write that would break it, so the two are
//! written in an order that depends on where the limits are now; see
//! `limit_order`.

use crate::cgroup::layout::Controller;
use crate::cgroup::plan::{Builder, PlanProblem, Target};
use crate::cgroup::resources::{OomMode, Resources};
use crate::cgroup::stats::{flat_keyed, MemoryStats};

pub const LIMIT: &str = "memory.limit_in_bytes";
pub const SOFT_LIMIT: &str = "memory.soft_limit_in_bytes";
pub const MEMSW_LIMIT: &str = "memory.memsw.limit_in_bytes";
pub const OOM_CONTROL: &str = "memory.oom_control";
pub const USAGE: &str = "memory.usage_in_bytes";
pub const MAX_USAGE: &str = "memory.max_usage_in_bytes";
pub const FAILCNT: &str = "memory.failcnt";
pub const MEMSW_FAILCNT: &str = "memory.memsw.failcnt";
pub const STAT: &str = "memory.stat";
pub const EVENT_CONTROL: &str = "cgroup.event_control";

const TARGET: Target = Target::V1(Controller::Memory);
/// v1 accepts -1 for "no limit" in every limit file.
const UNLIMITED: &str = "-1";

/// Which of the two limits to write first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitOrder {
    MemswFirst,
    LimitFirst,
}

/// With the invariant `limit <= memsw` before and after: if the new memsw
/// value is at least the current limit, writing memsw first keeps it (and
/// then the new limit, at most the new memsw, fits). Otherwise the limit goes
/// first: the new limit is at most the new memsw, which is below the current
/// limit and hence below the current memsw. `None` means unlimited.
pub(crate) fn limit_order(new_memsw: Option<u64>, current_limit: Option<u64>) -> LimitOrder {
    let new_memsw = new_memsw.unwrap_or(u64::MAX);
    let current_limit = current_limit.unwrap_or(u64::MAX);
    if new_memsw >= current_limit {
        LimitOrder::MemswFirst
    } else {
        LimitOrder::LimitFirst
    }
}

fn bytes(value: Option<u64>) -> String {
    value.map_or_else(|| UNLIMITED.to_owned(), |v| v.to_string())
}

pub(crate) fn plan(res: &Resources, b: &mut Builder<'_>) {
    let mem = res.memory;
    // First, so that a lowered limit that the job already exceeds pauses it
    // rather than killing it when the caller asked for a pause.
    match res.oom {
        OomMode::PauseAtLimit => b.write(TARGET, OOM_CONTROL, 1),
        OomMode::Kill if b.updating() => b.write(TARGET, OOM_CONTROL, 0),
        OomMode::Kill => {}
        OomMode::FreezeAtHigh => b.problem(PlanProblem::Unsupported {
            setting: "freeze at memory high",
            reason: "cgroup v1 has no memory.high; pause at the hard limit instead",
        }),
    }
    if mem.soft_bytes.is_some() || b.updating() {
        b.write(TARGET, SOFT_LIMIT, bytes(mem.soft_bytes));
    }
    if mem.high_bytes.is_some() {
        b.skip(
            "memory high limit",
            "cgroup v1 has no throttling limit; only the hard limit is enforced",
        );
    }

    let limit = (mem.hard_bytes.is_some() || b.updating()).then_some(mem.hard_bytes);
    let memsw = if b.ctx.memsw {
        match (mem.hard_bytes, mem.swap_bytes) {
            (Some(hard), Some(swap)) => Some(Some(hard.saturating_add(swap))),
            _ if b.updating() => Some(None),
            _ => None,
        }
    } else {
        if mem.swap_bytes.is_some() {
            b.skip(
                "swap limit",
                "swap accounting is off (no memory.memsw.* files): swap use is not limited",
            );
        }
        None
    };
    match (limit, memsw) {
        (Some(limit), Some(memsw)) => match limit_order(memsw, b.ctx.current_memory_limit) {
            LimitOrder::MemswFirst => {
                b.write(TARGET, MEMSW_LIMIT, bytes(memsw));
                b.write(TARGET, LIMIT, bytes(limit));
            }
            LimitOrder::LimitFirst => {
                b.write(TARGET, LIMIT, bytes(limit));
                b.write(TARGET, MEMSW_LIMIT, bytes(memsw));
            }
        },
        (Some(limit), None) => b.write(TARGET, LIMIT, bytes(limit)),
        (None, Some(memsw)) => b.write(TARGET, MEMSW_LIMIT, bytes(memsw)),
        (None, None) => {}
    }
}

/// `memory.stat` values corral reports. v1 prints the cgroup's own counters
/// and `total_*` ones that include descendants; the totals are used.
pub fn parse_stat(text: &str, memory: &mut MemoryStats) -> Option<u64> {
    let mut inactive_file = None;
    for (key, value) in flat_keyed(text) {
        match key {
            "total_rss" => memory.anon_bytes = Some(value),
            "total_cache" => memory.file_bytes = Some(value),
            // Present only with swap accounting on.
            "total_swap" => memory.swap_bytes = Some(value),
            "total_inactive_file" => inactive_file = Some(value),
            _ => {}
        }
    }
    inactive_file
}

/// The state in `memory.oom_control`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OomControl {
    pub oom_kill_disable: bool,
    /// The cgroup is at its limit and, with the killer disabled, stopped.
    pub under_oom: bool,
    /// Processes OOM-killed in this cgroup (kernel 4.13 and later).
    pub oom_kill: Option<u64>,
}

pub fn parse_oom_control(text: &str) -> OomControl {
    let mut out = OomControl::default();
    for (key, value) in flat_keyed(text) {
        match key {
            "oom_kill_disable" => out.oom_kill_disable = value != 0,
            "under_oom" => out.under_oom = value != 0,
            "oom_kill" => out.oom_kill = Some(value),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::plan::tests::{v1_ctx, writes_to};
    use crate::cgroup::plan::{plan, PlanMode};
    use crate::cgroup::resources::MemoryLimits;

    const MI: u64 = 1 << 20;

    fn mem(hard: Option<u64>, soft: Option<u64>, swap: Option<u64>) -> Resources {
        Resources {
            memory: MemoryLimits {
                hard_bytes: hard,
                soft_bytes: soft,
                high_bytes: None,
                swap_bytes: swap,
            },
            ..Default::default()
        }
    }

    #[test]
    fn hard_soft_and_swap_on_a_fresh_cgroup() {
        let p =
            plan(&v1_ctx(PlanMode::Create), &mem(Some(512 * MI), Some(256 * MI), Some(64 * MI)))
                .unwrap();
        // Fresh: both limits unlimited, so the limit goes first.
        assert_eq!(
            writes_to(&p, "memory."),
            vec![(SOFT_LIMIT, "268435456"), (LIMIT, "536870912"), (MEMSW_LIMIT, "603979776"),]
        );
    }

    #[test]
    fn raising_above_the_current_memsw_writes_memsw_first() {
        let mut ctx = v1_ctx(PlanMode::Update);
        ctx.current_memory_limit = Some(32 * MI);
        let p = plan(&ctx, &mem(Some(64 * MI), None, Some(0))).unwrap();
        let w = writes_to(&p, "memory.");
        let memsw = w.iter().position(|(f, _)| *f == MEMSW_LIMIT).unwrap();
        let limit = w.iter().position(|(f, _)| *f == LIMIT).unwrap();
        assert!(memsw < limit, "{w:?}");
        assert_eq!(w[memsw].1, "67108864");
    }

    #[test]
    fn lowering_writes_the_limit_first() {
        let mut ctx = v1_ctx(PlanMode::Update);
        ctx.current_memory_limit = Some(1024 * MI);
        let p = plan(&ctx, &mem(Some(64 * MI), None, Some(0))).unwrap();
        let w = writes_to(&p, "memory.");
        let memsw = w.iter().position(|(f, _)| *f == MEMSW_LIMIT).unwrap();
        let limit = w.iter().position(|(f, _)| *f == LIMIT).unwrap();
        assert!(limit < memsw, "{w:?}");
    }

    #[test]
    fn order_rule_holds_for_all_small_cases() {
        // Simulate the kernel's invariant over every combination of small limits.
        let vals = [Some(1u64), Some(2), Some(3), None];
        for cur_limit in vals {
            for cur_memsw in vals {
                let as_n = |v: Option<u64>| v.unwrap_or(u64::MAX);
                if as_n(cur_limit) > as_n(cur_memsw) {
                    continue;
                }
                for new_limit in vals {
                    for new_memsw in vals {
                        if as_n(new_limit) > as_n(new_memsw) {
                            continue;
                        }
                        let (mut l, mut m) = (as_n(cur_limit), as_n(cur_memsw));
                        let steps: [(bool, u64); 2] = match limit_order(new_memsw, cur_limit) {
                            LimitOrder::MemswFirst => {
                                [(false, as_n(new_memsw)), (true, as_n(new_limit))]
                            }
                            LimitOrder::LimitFirst => {
                                [(true, as_n(new_limit)), (false, as_n(new_memsw))]
                            }
                        };
                        for (is_limit, v) in steps {
                            if is_limit {
                                assert!(v <= m, "limit {v} > memsw {m}");
                                l = v;
                            } else {
                                assert!(v >= l, "memsw {v} < limit {l}");
                                m = v;
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn update_resets_everything_unset() {
        let p = plan(&v1_ctx(PlanMode::Update), &Resources::default()).unwrap();
        assert_eq!(
            writes_to(&p, "memory."),
            vec![(OOM_CONTROL, "0"), (SOFT_LIMIT, "-1"), (MEMSW_LIMIT, "-1"), (LIMIT, "-1")]
        );
    }

    #[test]
    fn pause_at_limit_disables_the_killer() {
        let res = Resources { oom: OomMode::PauseAtLimit, ..mem(Some(32 * MI), None, None) };
        let p = plan(&v1_ctx(PlanMode::Create), &res).unwrap();
        assert_eq!(writes_to(&p, "memory."), vec![(OOM_CONTROL, "1"), (LIMIT, "33554432")]);
    }

    #[test]
    fn high_and_swap_without_memsw_are_skipped_not_refused() {
        let mut ctx = v1_ctx(PlanMode::Create);
        ctx.memsw = false;
        let mut res = mem(Some(64 * MI), None, Some(MI));
        res.memory.high_bytes = Some(48 * MI);
        let p = plan(&ctx, &res).unwrap();
        assert_eq!(writes_to(&p, "memory."), vec![(LIMIT, "67108864")]);
        let skipped: Vec<_> = p.skipped.iter().map(|s| s.setting).collect();
        assert_eq!(skipped, vec!["memory high limit", "swap limit"]);
    }

    #[test]
    fn parses_real_memory_stat_and_oom_control() {
        let mut m = MemoryStats::default();
        let inactive =
            parse_stat(include_str!("../../../tests/fixtures/cgroup/v1/memory.stat"), &mut m);
        assert_eq!(inactive, Some(41_951_232));
        assert_eq!(m.anon_bytes, Some(0));
        assert_eq!(m.file_bytes, Some(42_090_496));
        assert_eq!(m.swap_bytes, Some(0));
        let oom = parse_oom_control(include_str!(
            "../../../tests/fixtures/cgroup/v1/memory.oom_control-paused"
        ));
        assert_eq!(oom, OomControl { oom_kill_disable: true, under_oom: true, oom_kill: Some(0) });
        let oom = parse_oom_control("oom_kill_disable 0\nunder_oom 0\n");
        assert_eq!(oom.oom_kill, None);
    }
}
