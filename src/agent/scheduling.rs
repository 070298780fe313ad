//! What the scheduling pass keeps between passes: the preemptions under
//! way, the shared pool last written to the shared-pool runs' cpusets, when
//! the pass must run again though nothing happens, and the order frozen runs
//! resume in.
//!
//! `Scheduling::pass` hands the pure pass ([`preempt::pass`]) the runs as
//! [`placing`] sees them and returns its steps; the
//! supervisor carries them out, and tells this component what became of
//! them (a victim taken, a run frozen, a preemption over).

use std::collections::BTreeSet;
use std::time::Duration;

use tracing::{debug, info, warn, Span};

use crate::placement::{Assignment, Ledger};
use crate::scheduler::preempt::{self, Step};
use crate::scheduler::{Event, PreemptionMode, RunQueue};
use crate::spec::Priority;
use crate::store::RunStore;
use crate::topology::{CpuSet, Topology};
use crate::vocab::{Bytes, RunId, Timestamp};

use super::error::AgentError;
use super::placing;
use super::runs::{LaunchState, Run, RunTable};
use super::telemetry::Telemetry;

#[derive(Debug)]
pub(super) struct Scheduling {
    /// Victims of preemptions under way.
    preempting: BTreeSet<RunId>,
    /// The shared pool last written to the shared-pool runs' cpusets.
    pool: CpuSet,
    /// When a running run becomes old enough to be preempted while runs are
    /// waiting: the pass must run again then, even if nothing else happens.
    rescan_at: Option<Timestamp>,
    /// Freezes so far: a frozen run's number is its place in the resume order.
    freezes: u64,
    /// The head of the queue holding a reservation after the last pass, and
    /// its reserved start.
    reservation: Option<(RunId, Option<Timestamp>)>,
    /// Runs the last pass held back for the reservation.
    deferred: BTreeSet<RunId>,
}

/// What one scheduling pass is handed.
pub(super) struct PassInput<'a> {
    pub topology: &'a Topology,
    pub ledger: &'a mut Ledger,
    pub queue: &'a RunQueue,
    pub runs: &'a RunTable,
    /// Runs frozen by hand, which the pass leaves frozen.
    pub held: &'a BTreeSet<RunId>,
    pub now: Timestamp,
    pub min_runtime: Duration,
    pub telemetry: Option<&'a mut Telemetry>,
    /// The node is under memory pressure: no pending run is placed (frozen
    /// runs may still resume on the memory they hold).
    pub hold_pending: bool,
}

impl Scheduling {
    /// With the shared pool of `ledger` as the one the runs' cpusets have.
    pub fn new(ledger: &Ledger) -> Scheduling {
        Scheduling {
            preempting: BTreeSet::new(),
            pool: ledger.shared_pool().clone(),
            rescan_at: None,
            freezes: 0,
            reservation: None,
            deferred: BTreeSet::new(),
        }
    }

    /// When the pass must run again, though nothing else happens.
    pub fn rescan_at(&self) -> Option<Timestamp> {
        self.rescan_at
    }

    /// The agent woke at `now`: the pass that follows every wake-up is the
    /// rescan that was due.
    pub fn woke(&mut self, now: Timestamp) {
        if self.rescan_at.is_some_and(|at| at <= now) {
            self.rescan_at = None;
        }
    }

    /// Places what can be placed, resumes what can be resumed, preempts for
    /// the most important run that does not fit: the steps, in order. The
    /// ledger holds the placements the steps hand out.
    pub fn pass(&mut self, input: PassInput<'_>) -> Vec<Step> {
        let PassInput {
            topology,
            ledger,
            queue,
            runs,
            held,
            now,
            min_runtime,
            telemetry,
            hold_pending,
        } = input;
        let mut waiting = placing::waiting(queue, runs, held);
        if hold_pending {
            waiting.retain(|w| w.suspended.is_some());
        }
        if waiting.is_empty() {
            // Nothing to place, resume or preempt for: the pass follows every
            // turn of the main loop, and usually ends here.
            self.rescan_at = None;
            if let Some(t) = telemetry {
                t.still_waiting(&BTreeSet::new());
            }
            return Vec::new();
        }
        self.rescan_at = placing::next_preemptible(runs, now, min_runtime);
        // Forget the failures of runs no longer waiting: placed, or over.
        let waiting_ids: BTreeSet<&RunId> = waiting.iter().map(|w| &w.request.owner).collect();
        if let Some(t) = telemetry {
            t.still_waiting(&waiting_ids);
        }
        let active = placing::active(runs, now, min_runtime);
        preempt::pass(topology, ledger, waiting, &active, !self.preempting.is_empty(), now)
    }

    /// Notes the reservation and the runs held back for it in the pass's
    /// `steps`: on each run (for `corral ps` and `show`), and in the log at
    /// debug level when they change (the pass follows every turn of the
    /// main loop).
    pub fn note_reservation(&mut self, runs: &mut RunTable, steps: &[Step]) {
        let mut reservation = None;
        let mut deferred = BTreeSet::new();
        for step in steps {
            match step {
                Step::Reserve { for_run, start } => reservation = Some((for_run.clone(), *start)),
                Step::Deferred { run, for_run } => {
                    deferred.insert(run.clone());
                    let Some(r) = runs.get_mut(run) else { continue };
                    if r.reserved_for.as_ref() != Some(for_run) {
                        debug!(
                            parent: &r.span, reserved_for = %for_run,
                            "held back: it fits, but starting it could delay the reserved start of {for_run}"
                        );
                        r.reserved_for = Some(for_run.clone());
                    }
                }
                _ => {}
            }
        }
        for id in self.deferred.difference(&deferred) {
            if let Some(r) = runs.get_mut(id) {
                r.reserved_for = None;
            }
        }
        self.deferred = deferred;
        if reservation == self.reservation {
            return;
        }
        match &reservation {
            Some((head, Some(start))) => debug!(
                run = %head,
                "reservation for the head of the queue: it starts by {start} at the latest if the runs holding placements end by their timeouts"
            ),
            Some((head, None)) => debug!(
                run = %head,
                "reservation for the head of the queue: its start is unknown (it waits for runs without a timeout), so lower runs may only take what it does not ask for"
            ),
            None => {
                if let Some((head, _)) = &self.reservation {
                    debug!(run = %head, "no reservation any more");
                }
            }
        }
        self.reservation = reservation;
    }

    /// `victim` took the preemption it was chosen for.
    pub fn preempting(&mut self, victim: RunId) {
        self.preempting.insert(victim);
    }

    /// `run` is no victim of a preemption under way any more: frozen, its
    /// placement released, its freeze failed, or over.
    pub fn preempted(&mut self, run: &RunId) {
        self.preempting.remove(run);
    }

    /// A run was frozen: its place in the resume order.
    pub fn frozen(&mut self) -> u64 {
        self.freezes += 1;
        self.freezes
    }

    /// The shared pool, when it changed since it was last written to the
    /// shared-pool runs' cpusets (an exclusive run started or ended, a run
    /// was frozen); from now on it counts as written.
    pub fn pool_changed(&mut self, ledger: &Ledger) -> Option<&CpuSet> {
        if ledger.shared_pool() == &self.pool {
            return None;
        }
        self.pool = ledger.shared_pool().clone();
        debug!(pool = %self.pool, "shared pool changed");
        Some(&self.pool)
    }
}

impl Scheduling {
    /// Frozen run `id` lends its CPUs: the placement it holds now goes on
    /// record, and it gets its place in the resume order.
    pub fn lend_cpus<S: RunStore>(
        &mut self,
        ledger: &mut Ledger,
        store: &mut S,
        id: &RunId,
        run: &mut Run,
    ) -> Result<(), AgentError> {
        self.preempted(id);
        match ledger.suspend(id) {
            Ok(held) => {
                store.set_placement(id, Some(&held))?;
                run.suspended_at = self.frozen();
                run.assignment = Some(held);
            }
            Err(e) => warn!(parent: &run.span, "frozen, but its CPUs could not be lent: {e}"),
        }
        Ok(())
    }

    /// Run `id` gives its placement back (its attempt is over, or was
    /// never started): off the ledger. The transition that asked for it put
    /// the release on record with it.
    pub fn release(&mut self, ledger: &mut Ledger, id: &RunId, run: &mut Run) {
        self.preempted(id);
        if run.launch == LaunchState::Launching {
            run.launch = LaunchState::NotStarted;
        }
        if let Some(held) = run.assignment.take() {
            if let Err(e) = ledger.release(&held) {
                debug!(parent: &run.span, "placement already released: {e}");
            }
        }
    }
}

/// The events that preempt `victims` for `for_run` (of `priority`), which
/// does not fit otherwise; each preemption is logged on its victim's span.
pub(super) fn preemptions(
    runs: &RunTable,
    for_run: &RunId,
    priority: Priority,
    victims: Vec<(RunId, PreemptionMode)>,
) -> Vec<(RunId, Event)> {
    let who = runs.get(for_run).map(|r| r.job.to_string()).unwrap_or_default();
    let mut events = Vec::new();
    for (victim, mode) in victims {
        let Some(v) = runs.get(&victim) else { continue };
        info!(
            parent: &v.span, preempted_by = %for_run,
            "preempting {victim} (job {}, priority {}) by {mode} for {for_run} (job {who}, priority {priority}), which does not fit otherwise",
            v.job, v.meta.priority
        );
        let event = match mode {
            PreemptionMode::Suspend => Event::PreemptSuspend { by: for_run.clone() },
            PreemptionMode::Requeue => Event::PreemptRequeue { by: for_run.clone() },
            PreemptionMode::Never => continue,
        };
        events.push((victim, event));
    }
    events
}

/// Charges `held` in `ledger` for a hard limit of `limit`: the new charge,
/// when it changed. Where the nodes do not have the memory, the old charge
/// stays (and the limit is raised all the same: the run is already using
/// the memory).
pub(super) fn recharge(
    ledger: &mut Ledger,
    held: &Assignment,
    limit: Bytes,
    span: &Span,
) -> Option<Assignment> {
    let wanted = placing::charged_for(ledger, held, limit);
    if &wanted == held || ledger.release(held).is_err() {
        return None;
    }
    match ledger.record(wanted.clone()) {
        Ok(_) => Some(wanted),
        Err(e) => {
            warn!(parent: span, "memory charge unchanged: {e}");
            let _ = ledger.record(held.clone());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::runs::testing;
    use crate::scheduler::Phase;

    const RUNNING: Phase = Phase::Running { since: Timestamp::EPOCH };

    #[tokio::test]
    async fn each_victim_gets_the_event_of_its_mode_and_never_mode_victims_none() {
        let mut runs = RunTable::default();
        for id in ["low-1", "mid-1", "keep-1", "want-1"] {
            runs.insert(RunId::new(id), testing::run(id, RUNNING, 10));
        }
        let victims = vec![
            (RunId::new("low-1"), PreemptionMode::Suspend),
            (RunId::new("mid-1"), PreemptionMode::Requeue),
            (RunId::new("keep-1"), PreemptionMode::Never),
            // Over since the pass chose it.
            (RunId::new("gone-1"), PreemptionMode::Suspend),
        ];
        let by = RunId::new("want-1");
        let events = preemptions(&runs, &by, Priority::DEFAULT, victims);
        assert_eq!(
            events,
            [
                (RunId::new("low-1"), Event::PreemptSuspend { by: by.clone() }),
                (RunId::new("mid-1"), Event::PreemptRequeue { by }),
            ]
        );
    }

    #[tokio::test]
    async fn held_back_runs_are_marked_for_as_long_as_the_passes_hold_them_back() {
        let topology = crate::topology::testing::fixture("vm-2cpu");
        let ledger = Ledger::new(&topology, Default::default()).unwrap();
        let mut scheduling = Scheduling::new(&ledger);
        let mut runs = RunTable::default();
        for id in ["big-1", "a-1", "b-1"] {
            runs.insert(RunId::new(id), testing::run(id, Phase::Pending, 10));
        }
        let head = RunId::new("big-1");
        let reserve = Step::Reserve { for_run: head.clone(), start: None };
        let deferred = |id: &str| Step::Deferred { run: RunId::new(id), for_run: head.clone() };
        let marks = |runs: &RunTable| -> Vec<(String, Option<RunId>)> {
            runs.iter().map(|(id, r)| (id.to_string(), r.reserved_for.clone())).collect()
        };
        scheduling
            .note_reservation(&mut runs, &[reserve.clone(), deferred("a-1"), deferred("b-1")]);
        assert_eq!(
            marks(&runs),
            [
                ("a-1".into(), Some(head.clone())),
                ("b-1".into(), Some(head.clone())),
                ("big-1".into(), None)
            ]
        );
        // b-1 started, or fits the leftovers now.
        scheduling.note_reservation(&mut runs, &[reserve, deferred("a-1")]);
        assert_eq!(runs.get(&RunId::new("b-1")).unwrap().reserved_for, None);
        assert_eq!(runs.get(&RunId::new("a-1")).unwrap().reserved_for, Some(head));
        // The head started: no reservation, nothing held back.
        scheduling.note_reservation(&mut runs, &[]);
        assert!(marks(&runs).iter().all(|(_, m)| m.is_none()));
    }

    #[test]
    fn frozen_runs_are_numbered_in_the_order_they_froze() {
        let topology = crate::topology::testing::fixture("vm-2cpu");
        let ledger = Ledger::new(&topology, Default::default()).unwrap();
        let mut scheduling = Scheduling::new(&ledger);
        let first = scheduling.frozen();
        assert!(scheduling.frozen() > first);
    }

    #[test]
    fn a_rescan_due_is_dropped_when_the_agent_wakes_for_it_and_kept_before() {
        let topology = crate::topology::testing::fixture("vm-2cpu");
        let ledger = Ledger::new(&topology, Default::default()).unwrap();
        let mut scheduling = Scheduling::new(&ledger);
        let at = Timestamp::EPOCH.plus(Duration::from_secs(10));
        scheduling.rescan_at = Some(at);
        scheduling.woke(Timestamp::EPOCH.plus(Duration::from_secs(9)));
        assert_eq!(scheduling.rescan_at(), Some(at));
        scheduling.woke(at);
        assert_eq!(scheduling.rescan_at(), None);
    }

    #[test]
    fn the_pool_counts_as_changed_once() {
        let topology = crate::topology::testing::fixture("vm-2cpu");
        let mut ledger = Ledger::new(&topology, Default::default()).unwrap();
        let mut scheduling = Scheduling::new(&ledger);
        assert_eq!(scheduling.pool_changed(&ledger), None);
        let cpu = ledger.shared_pool().iter().last().expect("a CPU in the pool");
        let exclusive = Assignment {
            owner: RunId::new("x-1"),
            cpus: crate::placement::CpuGrant::Exclusive(CpuSet::from_iter([cpu])),
            mems: "0".parse().unwrap(),
            memory: Default::default(),
        };
        ledger.record(exclusive).unwrap();
        assert!(scheduling.pool_changed(&ledger).is_some_and(|p| !p.contains(cpu)));
        assert_eq!(scheduling.pool_changed(&ledger), None);
    }
}
