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
//!
//! # Backfill
//!
//! The first run that does not fit and for which no preemption makes room
//! is the head of the queue: it gets a [`Reservation`] (reported as a
//! [`Step::Reserve`]), and the runs after it that fit now start only if they
//! cannot delay its reserved start (see [`backfill`](super::backfill) for
//! the rules). The others are reported as [`Step::Deferred`] and keep
//! waiting. Only the head holds a reservation: one is enough for the head to
//! start, and each run becomes the head in its turn.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::time::Duration;

use super::backfill::Reservation;
use super::policy::PreemptionMode;
use crate::placement::{
    victims, Assignment, Candidate, Ledger, PlacementError, Rank, ReleaseMode, Request,
};
use crate::spec::Priority;
use crate::topology::Topology;
use crate::vocab::{RunId, Timestamp};

/// A run waiting for CPUs and memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub priority: Priority,
    pub request: Request,
    /// `Some` for a frozen run: what it holds while frozen (its memory).
    pub suspended: Option<Assignment>,
    /// How long it holds a placement at most once started: its timeout left
    /// plus its stop grace; `None` without a timeout.
    pub limit: Option<Duration>,
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
    /// When it has released its placement at the latest, if it has a
    /// timeout and its timeout clock is running (see
    /// [`backfill`](super::backfill)).
    pub ends_by: Option<Timestamp>,
    /// Frozen for a preemption: it ends only after the pass resumes it.
    pub suspended: bool,
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
    /// `for_run`, the head of the queue, holds a reservation: it starts by
    /// `start` at the latest if the runs holding placements end by their
    /// bounds (`None`: unknown, it waits for runs without one).
    Reserve { for_run: RunId, start: Option<Timestamp> },
    /// `run` fits now but could delay the reserved start of `for_run`; it
    /// keeps waiting.
    Deferred { run: RunId, for_run: RunId },
}

/// Runs one pass at `now`. `waiting` is in arrival order (the queue's order
/// for pending runs, suspension order for frozen ones); `preempting` is
/// whether earlier preemptions are still under way.
pub fn pass(
    topology: &Topology,
    ledger: &mut Ledger,
    waiting: Vec<Waiting>,
    active: &[Active],
    preempting: bool,
    now: Timestamp,
) -> Vec<Step> {
    let mut waiting = waiting;
    // Stable: arrival order is kept within each class.
    waiting.sort_by_key(|w| (Reverse(w.priority), w.suspended.is_none()));
    let mut steps = Vec::new();
    let mut asked = false;
    let mut reservation: Option<Reservation> = None;
    // Runs placed or resumed by this pass, with their end bounds: the
    // head's start depends on them too.
    let mut started: Vec<Active> = Vec::new();
    for w in waiting {
        let owner = w.request.owner.clone();
        if let Some(held) = &w.suspended {
            if ledger.release(held).is_err() {
                continue;
            }
        }
        match ledger.admit(topology, &w.request) {
            Ok(assignment) => {
                if let Some(r) = &mut reservation {
                    if !r.admits(topology, &assignment, w.suspended.as_ref(), w.limit, now) {
                        ledger.release(&assignment).expect("just admitted");
                        if let Some(held) = &w.suspended {
                            ledger.record(held.clone()).expect("a holding just released fits back");
                        }
                        steps.push(Step::Deferred { run: owner, for_run: r.head.clone() });
                        continue;
                    }
                }
                if reservation.is_none() {
                    started.push(Active {
                        run: owner.clone(),
                        priority: w.priority,
                        mode: PreemptionMode::Never,
                        preemptible: false,
                        ends_by: w.limit.map(|l| now.plus(l)),
                        suspended: false,
                    });
                }
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
        if reservation.is_none() && chosen.is_none() && !preempting {
            // Computed while its own frozen holding is off the ledger: the
            // head reuses that memory.
            let started_ids: BTreeSet<&RunId> = started.iter().map(|s| &s.run).collect();
            let holders: Vec<Active> = active
                .iter()
                .filter(|a| !started_ids.contains(&a.run))
                .chain(&started)
                .cloned()
                .collect();
            reservation = Reservation::new(topology, ledger, &w.request, &holders, now);
            if let Some(r) = &reservation {
                steps.push(Step::Reserve { for_run: owner.clone(), start: r.start() });
            }
        }
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

    const T0: Timestamp = Timestamp::EPOCH;

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
        Waiting { priority: p(priority), request, suspended: None, limit: None }
    }

    fn active(id: &str, priority: u16, mode: PreemptionMode) -> Active {
        Active {
            run: RunId::new(id),
            priority: p(priority),
            mode,
            preemptible: true,
            ends_by: None,
            suspended: false,
        }
    }

    fn placed(steps: &[Step]) -> Vec<&str> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Place { assignment } | Step::Resume { assignment } => {
                    Some(assignment.owner.as_str())
                }
                Step::Preempt { .. }
                | Step::NotPlaced { .. }
                | Step::Reserve { .. }
                | Step::Deferred { .. } => None,
            })
            .collect()
    }

    /// The steps that change something.
    fn decided(steps: &[Step]) -> Vec<&Step> {
        steps
            .iter()
            .filter(|s| {
                !matches!(s, Step::NotPlaced { .. } | Step::Reserve { .. } | Step::Deferred { .. })
            })
            .collect()
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
        let steps = pass(&topo, &mut l, waiting, &[], false, T0);
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
        let steps = pass(&topo, &mut l, waiting, &running, false, T0);
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
        let steps = pass(&topo, &mut l, vec![pending("high-1", 90, 1)], &running, true, T0);
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
            let steps = pass(&topo, &mut l, vec![pending("high-1", 90, 1)], &[running], false, T0);
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
        let frozen =
            Waiting { priority: p(10), request, suspended: Some(held.clone()), limit: None };
        // No room while high-1 holds the CPU: the holding stays.
        let steps = pass(&topo, &mut l, vec![frozen.clone()], &[], false, T0);
        assert!(decided(&steps).is_empty());
        assert_eq!(l.get(&RunId::new("low-1")), Some(&held));
        let high = l.get(&RunId::new("high-1")).unwrap().clone();
        l.release(&high).unwrap();
        let steps = pass(&topo, &mut l, vec![pending("mid-1", 10, 1), frozen], &[], false, T0);
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
        let waiting =
            vec![Waiting { priority: p(90), request: big("high-1"), suspended: None, limit: None }];
        // Freezing frees no memory: a suspend victim does not help.
        let steps = pass(
            &topo,
            &mut l,
            waiting.clone(),
            &[active("low-1", 10, PreemptionMode::Suspend)],
            false,
            T0,
        );
        assert!(decided(&steps).is_empty(), "{steps:?}");
        let steps = pass(
            &topo,
            &mut l,
            waiting,
            &[active("low-1", 10, PreemptionMode::Requeue)],
            false,
            T0,
        );
        assert!(
            matches!(&decided(&steps)[..], [Step::Preempt { victims, .. }] if victims[0].1 == PreemptionMode::Requeue)
        );
    }
}
