//! The runs as the placement side sees them: who waits for the scheduling
//! pass ([`Waiting`]), who holds CPUs and may be preempted ([`Active`]), the
//! settings a run's cgroup follows, and a placement's memory charge for a
//! raised limit. Functions of the runs and the ledger they are handed; the
//! supervisor records and carries out what follows from them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::placement::{Assignment, Ledger};
use crate::scheduler::preempt::{Active, Waiting};
use crate::scheduler::{Phase, PreemptionMode, RunQueue};
use crate::topology::CpuSet;
use crate::vocab::Bytes;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

use super::arrays::Caps;
use super::job;
use super::runs::{Run, RunTable};
use super::runtime::LiveSettings;

/// The runs the pass is to place or resume: the queue in its order, then
/// the frozen runs in the order they were frozen, except those frozen by
/// hand (`held`). An array's queued runs beyond the room under its
/// `parallel` cap are left out ([`Caps`]).
pub(super) fn waiting(queue: &RunQueue, runs: &RunTable, held: &BTreeSet<RunId>) -> Vec<Waiting> {
    let mut waiting = Vec::new();
    let mut caps = Caps::of(runs);
    for (id, priority) in queue.iter() {
        let Some(run) = runs.get(id) else { continue };
        let Some(spec) = &run.spec else { continue };
        if !caps.admit(run) {
            continue;
        }
        let request = job::request(spec, id, run.state.memory_limit);
        waiting.push(Waiting { priority, request, suspended: None });
    }
    let mut frozen: Vec<(&RunId, &Run)> = runs
        .iter()
        .filter(|(_, r)| matches!(r.state.phase, Phase::Suspended { frozen: true, .. }))
        .filter(|(id, _)| !held.contains(*id))
        .collect();
    frozen.sort_by_key(|(_, r)| r.suspended_at);
    for (id, run) in frozen {
        let (Some(spec), Some(holding)) = (&run.spec, &run.assignment) else { continue };
        let request = job::request(spec, id, run.state.memory_limit);
        waiting.push(Waiting {
            priority: run.meta.priority(),
            request,
            suspended: Some(holding.clone()),
        });
    }
    waiting
}

/// The runs holding a placement that the pass may weigh for preemption; a
/// run left to finish after its job was removed is not one of them.
pub(super) fn active(runs: &RunTable, now: Timestamp, min_runtime: Duration) -> Vec<Active> {
    runs.iter()
        .filter(|(_, r)| r.assignment.is_some() && !r.state.finishing)
        .map(|(id, r)| Active {
            run: id.clone(),
            priority: r.meta.priority(),
            mode: r.meta.policy.preemption,
            preemptible: matches!(r.state.phase, Phase::Running { since } if now.since(since) >= min_runtime),
        })
        .collect()
}

/// When the next running run becomes old enough to be preempted: the pass
/// must run again then, even if nothing else happens.
pub(super) fn next_preemptible(
    runs: &RunTable,
    now: Timestamp,
    min_runtime: Duration,
) -> Option<Timestamp> {
    runs.values()
        .filter(|r| r.meta.policy.preemption != PreemptionMode::Never)
        .filter_map(|r| match r.state.phase {
            Phase::Running { since } if now.since(since) < min_runtime => {
                Some(since.plus(min_runtime))
            }
            _ => None,
        })
        .min()
}

/// Shared-pool runs whose cgroups hold processes: their cpusets follow the
/// shared pool.
pub(super) fn shared_pool_runs(runs: &RunTable) -> Vec<RunId> {
    runs.iter()
        .filter(|(_, r)| {
            r.assignment.as_ref().is_some_and(Assignment::is_shared) && r.has_live_cgroup()
        })
        .map(|(id, _)| id.clone())
        .collect()
}

/// The settings `run`'s cgroup is to have now (its job's resources, its
/// cpuset with the shared pool as it is, its hard limit); none for a run
/// whose cgroup holds nothing of this attempt.
pub(super) fn live_settings(run: &Run, shared_pool: &CpuSet) -> Option<LiveSettings> {
    let (Some(spec), Some(assignment)) = (&run.spec, &run.assignment) else { return None };
    if !run.has_live_cgroup() {
        return None;
    }
    Some(LiveSettings {
        spec: Arc::clone(spec),
        cpus: assignment.cpuset(shared_pool),
        assignment: assignment.clone(),
        memory_limit: run.state.memory_limit,
    })
}

/// Free memory on the NUMA nodes of `held`: the room its run can grow in.
pub(super) fn free_on_nodes(ledger: &Ledger, held: &Assignment) -> Bytes {
    Bytes(held.mems.iter().map(|node| ledger.memory_free(node).get()).sum())
}

/// `held` charged for a hard limit of `limit`, as far as its nodes' free
/// memory goes (the rest stays uncharged: the run uses the memory anyway).
pub(super) fn charged_for(ledger: &Ledger, held: &Assignment, limit: Bytes) -> Assignment {
    let mut wanted = held.clone();
    let mut extra = limit.saturating_sub(held.memory_total()).get();
    for node in held.mems.iter() {
        if extra == 0 {
            break;
        }
        let take = extra.min(ledger.memory_free(node).get());
        let entry = wanted.memory.entry(node).or_insert(Bytes::ZERO);
        *entry = Bytes(entry.get() + take);
        extra -= take;
    }
    wanted
}
