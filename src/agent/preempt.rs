//! One scheduling pass: which waiting runs start or resume now, and whom to
//! preempt for the most important one that does not fit.
//!
//! Pure: a function of the topology, the ledger, the waiting runs and the
//! running ones. It records the placements it decides in the ledger it is
//! given, so the caller's ledger always equals what it is about to do.
//!
//! # Order
//!
//! Waiting runs are the queued (pending) runs and the suspended runs the
//! kernel has confirmed frozen. They are tried by priority, higher first; at
//! equal priority a suspended run goes first (it started earlier), then
//! arrival order. A suspended run is re-placed from scratch: its cpuset may
//! differ from the one it had.
//!
//! # When a run does not fit
//!
//! The first run that does not fit asks [`victims()`] for the cheapest set of
//! lower-priority running runs whose release makes room, among those that may
//! be preempted: mode `suspend` or `requeue` (never `never`), running (not
//! already being suspended, stopped or paused at their memory limit) for at
//! least the minimum runtime. If there is such a set, the pass ends with a
//! [`Step::Preempt`]: nothing of lower priority may take the room being made.
//! If there is none, the run keeps waiting and the pass goes on with the
//! next runs, which may fit where it does not (a smaller request).
//!
//! Every waiting run tried that could not be given room is reported as a
//! [`Step::NotPlaced`], with the ledger's reason, so that the caller can
//! count placement failures; it changes nothing.
//!
//! While earlier preemptions are still under way (victims freezing or
//! stopping), the pass places nothing that does not fit and preempts no
//! more: the room being made is for the run that asked for it.

use std::cmp::Reverse;

use crate::placement::{
    victims, Assignment, Candidate, Ledger, PlacementError, Rank, ReleaseMode, Request, RunId,
};
use crate::scheduler::PreemptionMode;
use crate::spec::Priority;
use crate::topology::Topology;

/// A run waiting for CPUs and memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub priority: Priority,
    pub request: Request,
    /// `Some` for a frozen run: what it holds while frozen (its memory).
    pub suspended: Option<Assignment>,
}

/// A run that holds an assignment and might be preempted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    pub run: RunId,
    pub priority: Priority,
    pub mode: PreemptionMode,
    /// Running (not frozen, paused or stopping) for at least the minimum
    /// runtime before preemption.
    pub preemptible: bool,
}

/// What the pass decided, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A pending run got `assignment`; it is recorded in the ledger.
    Place { assignment: Assignment },
    /// A suspended run got `assignment` to resume on; recorded in place of
    /// its frozen holding.
    Resume { assignment: Assignment },
    /// Preempt `victims` (in this order) to make room for `for_run`.
    Preempt { for_run: RunId, priority: Priority, victims: Vec<(RunId, PreemptionMode)> },
    /// `run` was tried and could not be given room now; it keeps waiting.
    NotPlaced { run: RunId, error: PlacementError },
}

/// Runs one pass. `waiting` is in arrival order (the queue's order for
/// pending runs, suspension order for frozen ones); `preempting` is whether
/// earlier preemptions are still under way.
pub fn pass(
    topology: &Topology,
    ledger: &mut Ledger,
    waiting: Vec<Waiting>,
    active: &[Active],
    preempting: bool,
) -> Vec<Step> {
    let mut waiting = waiting;
    // Stable: arrival order is kept within each class.
    waiting.sort_by_key(|w| (Reverse(w.priority), w.suspended.is_none()));
    let mut steps = Vec::new();
    let mut asked = false;
    for w in waiting {
        let owner = w.request.owner.clone();
        if let Some(held) = &w.suspended {
            if ledger.release(held).is_err() {
                continue;
            }
        }
        match ledger.admit(topology, &w.request) {
            Ok(assignment) => {
                steps.push(if w.suspended.is_some() {
                    Step::Resume { assignment }
                } else {
                    Step::Place { assignment }
                });
                continue;
            }
            Err(error) => steps.push(Step::NotPlaced { run: owner.clone(), error }),
        }
        let chosen = if preempting || asked {
            None
        } else {
            asked = true;
            choose_victims(topology, ledger, &w, active)
        };
        if let Some(held) = &w.suspended {
            ledger.record(held.clone()).expect("a holding just released fits back");
        }
        if preempting {
            break;
        }
        if let Some(victims) = chosen {
            steps.push(Step::Preempt { for_run: owner, priority: w.priority, victims });
            break;
        }
    }
    steps
}

/// The runs whose preemption makes room for `w`, if any set does.
fn choose_victims(
    topology: &Topology,
    ledger: &Ledger,
    w: &Waiting,
    active: &[Active],
) -> Option<Vec<(RunId, PreemptionMode)>> {
    let candidates: Vec<Candidate> = active
        .iter()
        .filter(|a| a.preemptible && a.priority < w.priority && a.run != w.request.owner)
        .filter_map(|a| {
            let mode = match a.mode {
                PreemptionMode::Suspend => ReleaseMode::Suspend,
                PreemptionMode::Requeue => ReleaseMode::Requeue,
                PreemptionMode::Never => return None,
            };
            let priority = Rank(i32::from(a.priority.get()));
            Some(Candidate { owner: a.run.clone(), priority, mode })
        })
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let chosen = victims(topology, ledger, &w.request, &candidates)?;
    if chosen.is_empty() {
        return None;
    }
    let mode_of = |run: &RunId| active.iter().find(|a| &a.run == run).map(|a| a.mode);
    Some(chosen.into_iter().filter_map(|run| mode_of(&run).map(|m| (run, m))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::{CpuGrant, PlacementConfig};
    use crate::topology::testing::fixture;
    use crate::vocab::Bytes;

    fn vm() -> Topology {
        fixture("vm-2cpu")
    }

    fn p(n: u16) -> Priority {
        Priority::new(n).unwrap()
    }

    fn pending(id: &str, priority: u16, cpus: u32) -> Waiting {
        let request = if cpus == 0 {
            Request::shared(RunId::new(id))
        } else {
            Request::exclusive(RunId::new(id), cpus)
        };
        Waiting { priority: p(priority), request, suspended: None }
    }

    fn active(id: &str, priority: u16, mode: PreemptionMode) -> Active {
        Active { run: RunId::new(id), priority: p(priority), mode, preemptible: true }
    }

    fn placed(steps: &[Step]) -> Vec<&str> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Place { assignment } | Step::Resume { assignment } => {
                    Some(assignment.owner.as_str())
                }
                Step::Preempt { .. } | Step::NotPlaced { .. } => None,
            })
            .collect()
    }

    /// The steps that change something.
    fn decided(steps: &[Step]) -> Vec<&Step> {
        steps.iter().filter(|s| !matches!(s, Step::NotPlaced { .. })).collect()
    }

    fn not_placed(steps: &[Step]) -> Vec<&str> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::NotPlaced { run, .. } => Some(run.as_str()),
                _ => None,
            })
            .collect()
    }

    fn ledger(topo: &Topology) -> Ledger {
        Ledger::new(topo, PlacementConfig::default()).unwrap()
    }

    #[test]
    fn places_by_priority_and_backfills_what_fits() {
        let topo = vm();
        let mut l = ledger(&topo);
        // Two CPUs, one must stay shared: one exclusive run at a time.
        let waiting =
            vec![pending("low-1", 10, 1), pending("high-1", 90, 1), pending("shared-1", 10, 0)];
        let steps = pass(&topo, &mut l, waiting, &[], false);
        assert_eq!(placed(&steps), ["high-1", "shared-1"]);
        assert_eq!(not_placed(&steps), ["low-1"]);
        assert!(matches!(&steps[1], Step::NotPlaced { error: PlacementError::NoFit { .. }, .. }));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn preempts_a_lower_priority_suspendable_run_and_stops_there() {
        let topo = vm();
        let mut l = ledger(&topo);
        l.admit(&topo, &Request::exclusive(RunId::new("low-1"), 1)).unwrap();
        let running = [active("low-1", 10, PreemptionMode::Suspend)];
        let waiting = vec![pending("high-1", 90, 1), pending("shared-1", 5, 0)];
        let steps = pass(&topo, &mut l, waiting, &running, false);
        assert_eq!(not_placed(&steps), ["high-1"]);
        assert_eq!(
            decided(&steps),
            [&Step::Preempt {
                for_run: RunId::new("high-1"),
                priority: p(90),
                victims: vec![(RunId::new("low-1"), PreemptionMode::Suspend)],
            }]
        );
        // While it is under way, nothing else is tried.
        let steps = pass(&topo, &mut l, vec![pending("high-1", 90, 1)], &running, true);
        assert!(decided(&steps).is_empty());
    }

    #[test]
    fn never_equal_priority_or_young_runs_are_not_preempted() {
        let topo = vm();
        let mut l = ledger(&topo);
        l.admit(&topo, &Request::exclusive(RunId::new("a-1"), 1)).unwrap();
        for running in [
            active("a-1", 10, PreemptionMode::Never),
            active("a-1", 90, PreemptionMode::Suspend),
            Active { preemptible: false, ..active("a-1", 10, PreemptionMode::Suspend) },
        ] {
            let steps = pass(&topo, &mut l, vec![pending("high-1", 90, 1)], &[running], false);
            assert!(decided(&steps).is_empty(), "{steps:?}");
        }
    }

    #[test]
    fn a_frozen_run_resumes_once_there_is_room_again() {
        let topo = vm();
        let mut l = ledger(&topo);
        let request = Request::exclusive(RunId::new("low-1"), 1).with_memory(Bytes::from_mib(64));
        l.admit(&topo, &request).unwrap();
        let held = l.suspend(&RunId::new("low-1")).unwrap();
        assert_eq!(held.cpus, CpuGrant::Shared);
        l.admit(&topo, &Request::exclusive(RunId::new("high-1"), 1)).unwrap();
        let frozen = Waiting { priority: p(10), request, suspended: Some(held.clone()) };
        // No room while high-1 holds the CPU: the holding stays.
        let steps = pass(&topo, &mut l, vec![frozen.clone()], &[], false);
        assert!(decided(&steps).is_empty());
        assert_eq!(l.get(&RunId::new("low-1")), Some(&held));
        let high = l.get(&RunId::new("high-1")).unwrap().clone();
        l.release(&high).unwrap();
        let steps = pass(&topo, &mut l, vec![pending("mid-1", 10, 1), frozen], &[], false);
        assert_eq!(placed(&steps), ["low-1"], "the frozen run goes before a pending one");
        assert!(l.get(&RunId::new("low-1")).unwrap().exclusive_cpus().is_some());
    }

    #[test]
    fn requeue_victims_make_room_for_memory() {
        let topo = vm();
        let mut l = ledger(&topo);
        let capacity = l.memory_free(l.memory_nodes().iter().next().unwrap());
        let big = |id: &str| Request::shared(RunId::new(id)).with_memory(Bytes(capacity.get() - 1));
        l.admit(&topo, &big("low-1")).unwrap();
        let waiting = vec![Waiting { priority: p(90), request: big("high-1"), suspended: None }];
        // Freezing frees no memory: a suspend victim does not help.
        let steps = pass(
            &topo,
            &mut l,
            waiting.clone(),
            &[active("low-1", 10, PreemptionMode::Suspend)],
            false,
        );
        assert!(decided(&steps).is_empty(), "{steps:?}");
        let steps =
            pass(&topo, &mut l, waiting, &[active("low-1", 10, PreemptionMode::Requeue)], false);
        assert!(
            matches!(&decided(&steps)[..], [Step::Preempt { victims, .. }] if victims[0].1 == PreemptionMode::Requeue)
        );
    }
}
