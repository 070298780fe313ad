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
        waiting.push(Waiting { priority, request, suspended: None, limit: limit(run) });
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
            limit: limit(run),
        });
    }
    waiting
}

/// The runs holding a placement, with their end bounds for the head's
/// reservation; the pass may weigh them for preemption, except a run left
/// to finish after its job was removed.
pub(super) fn active(runs: &RunTable, now: Timestamp, min_runtime: Duration) -> Vec<Active> {
    runs.iter()
        .filter(|(_, r)| r.assignment.is_some())
        .map(|(id, r)| Active {
            run: id.clone(),
            priority: r.meta.priority(),
            mode: r.meta.policy.preemption,
            preemptible: !r.state.finishing
                && matches!(r.state.phase, Phase::Running { since } if now.since(since) >= min_runtime),
            ends_by: ends_by(r, now),
            suspended: matches!(r.state.phase, Phase::Suspended { .. }),
        })
        .collect()
}

/// How long `run` holds a placement at most once started: the running time
/// its timeout leaves, plus the stop grace that follows the timeout.
fn limit(run: &Run) -> Option<Duration> {
    let policy = &run.meta.policy;
    policy.timeout.map(|t| t.saturating_sub(run.state.active) + policy.stop_grace)
}

/// When `run`, holding a placement, releases it at the latest: its timeout
/// runs only while it runs, so a frozen run (suspended, or paused at its
/// memory limit) has no bound; a stopping run is killed at its deadline.
fn ends_by(run: &Run, now: Timestamp) -> Option<Timestamp> {
    match run.state.phase {
        Phase::Stopping { escalated: true, .. } => Some(now),
        Phase::Stopping { deadline, .. } => Some(deadline.max(now)),
        Phase::Running { since } => {
            limit(run).map(|l| now.plus(l.saturating_sub(now.since(since))))
        }
        // Being launched: its running time starts about now.
        Phase::Placed => limit(run).map(|l| now.plus(l)),
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::runs::testing;
    use crate::scheduler::{StopIntent, SuspendedBy};

    fn t(s: u64) -> Timestamp {
        Timestamp::EPOCH.plus(Duration::from_secs(s))
    }

    /// A run in `phase` with a one-minute timeout, 20 s of it spent before
    /// its current stretch, and a 5 s stop grace.
    fn timed(phase: Phase) -> Run {
        let mut run = testing::run("a-1", phase, 10);
        run.meta.policy.timeout = Some(Duration::from_secs(60));
        run.meta.policy.stop_grace = Duration::from_secs(5);
        run.state.active = Duration::from_secs(20);
        run
    }

    #[tokio::test]
    async fn end_bounds_are_the_running_time_left_plus_the_stop_grace() {
        let running = timed(Phase::Running { since: t(100) });
        assert_eq!(limit(&running), Some(Duration::from_secs(45)));
        assert_eq!(ends_by(&running, t(110)), Some(t(145)));
        // Past its bound (the timeout is being handled): any time now.
        assert_eq!(ends_by(&running, t(200)), Some(t(200)));
        // Being launched: its running time starts about now.
        assert_eq!(ends_by(&timed(Phase::Placed), t(110)), Some(t(155)));
        let stopping = |escalated| Phase::Stopping {
            intent: StopIntent::Timeout,
            deadline: t(130),
            escalated,
        };
        assert_eq!(ends_by(&timed(stopping(false)), t(110)), Some(t(130)));
        assert_eq!(ends_by(&timed(stopping(true)), t(110)), Some(t(110)));
    }

    #[tokio::test]
    async fn frozen_runs_and_runs_without_a_timeout_have_no_end_bound() {
        let suspended = Phase::Suspended {
            by: SuspendedBy::Run(RunId::new("b-1")),
            frozen: true,
            oom_pending: false,
        };
        assert_eq!(ends_by(&timed(suspended), t(110)), None);
        assert_eq!(ends_by(&timed(Phase::OomPaused { frozen: true }), t(110)), None);
        let open = testing::run("a-1", Phase::Running { since: t(100) }, 10);
        assert_eq!(limit(&open), None);
        assert_eq!(ends_by(&open, t(110)), None);
    }
}
