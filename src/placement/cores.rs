//! Choosing exclusive CPUs among the cores of the chosen nodes.
//!
//! # SMT
//!
//! SMT siblings share a core's execution units and caches, so an exclusive
//! run wants whole cores and wants no other exclusive run on its cores. CPUs
//! are taken in three passes:
//!
//! 1. whole *clean* cores (no sibling held exclusively by another run), while
//!    a core's free CPUs do not exceed what is still needed: a 4-CPU request
//!    on SMT-2 gets two whole cores;
//! 2. what is left (an odd request's last CPU) from one clean core, which is
//!    then split: its unused sibling stays in the shared pool rather than
//!    idle, so an odd request costs no capacity; shared-pool work may run
//!    beside the exclusive thread;
//! 3. only when no clean core remains, free CPUs of cores another exclusive
//!    run already uses: such sharing happens only when unavoidable.
//!
//! Within each pass, nearer nodes come first (the order the node choice
//! ranked them in), then larger free parts, then lower CPU numbers, so the
//! result is deterministic and packed onto few cores.

use std::cmp::Reverse;

use crate::topology::{CpuId, CpuSet, NodeId, Topology};

struct Slot {
    rank: usize,
    free: Vec<CpuId>,
    clean: bool,
    taken: bool,
}

/// `k` CPUs from `pool` on `nodes` (ranked, nearest first). The caller
/// guarantees the pool has `k` CPUs there.
pub(crate) fn pick_cpus(
    topology: &Topology,
    pool: &CpuSet,
    held: &CpuSet,
    nodes: &[NodeId],
    k: usize,
) -> CpuSet {
    let mut slots: Vec<Slot> = topology
        .cores()
        .iter()
        .filter_map(|core| {
            let rank = nodes.iter().position(|&n| n == core.node)?;
            let free: Vec<CpuId> = core.cpus.iter().filter(|&cpu| pool.contains(cpu)).collect();
            if free.is_empty() {
                return None;
            }
            Some(Slot { rank, free, clean: core.cpus.is_disjoint(held), taken: false })
        })
        .collect();
    slots.sort_by_key(|s| (s.rank, Reverse(s.free.len()), s.free[0]));

    let mut chosen = CpuSet::new();
    let mut remaining = k;
    for slot in slots.iter_mut().filter(|s| s.clean) {
        if remaining == 0 {
            break;
        }
        if slot.free.len() <= remaining {
            chosen.extend(slot.free.iter().copied());
            remaining -= slot.free.len();
            slot.taken = true;
        }
    }
    if remaining > 0 {
        // Every untaken clean core has more free CPUs than needed now; the
        // smallest of the nearest is the tightest split.
        let split = slots
            .iter_mut()
            .filter(|s| s.clean && !s.taken)
            .min_by_key(|s| (s.rank, s.free.len(), s.free[0]));
        if let Some(slot) = split {
            chosen.extend(slot.free[..remaining].iter().copied());
            remaining = 0;
            slot.taken = true;
        }
    }
    if remaining > 0 {
        let mut shared: Vec<&Slot> = slots.iter().filter(|s| !s.clean).collect();
        shared.sort_by_key(|s| (s.rank, s.free[0]));
        for cpu in shared.iter().flat_map(|s| s.free.iter()).take(remaining) {
            chosen.insert(*cpu);
            remaining -= 1;
        }
    }
    debug_assert_eq!(remaining, 0, "caller checked that {k} CPUs are free on {nodes:?}");
    chosen
}
