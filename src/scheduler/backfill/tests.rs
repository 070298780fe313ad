//! The reservation and the backfill around it, through the scheduling pass:
//! examples first, then properties over random machines states, and a
//! simulated time line in which a stream of small runs keeps arriving.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use crate::placement::{place, Ledger, PlacementConfig, Request};
use crate::scheduler::preempt::{pass, Active, Step, Waiting};
use crate::scheduler::PreemptionMode;
use crate::spec::Priority;
use crate::topology::testing::fixture;
use crate::topology::Topology;
use crate::vocab::{Bytes, NumaPolicy, RunId, Timestamp};

use super::Reservation;

const NOW: Timestamp = Timestamp::EPOCH;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn at(n: u64) -> Timestamp {
    NOW.plus(secs(n))
}

fn p(n: u16) -> Priority {
    Priority::new(n).unwrap()
}

/// The single memory node's capacity in eighths: requests are sized in them.
fn eighth(ledger: &Ledger) -> u64 {
    let node = ledger.memory_nodes().iter().next().unwrap();
    ledger.memory_capacity(node).get() / 8
}

/// A request for `cpus` exclusive CPUs (0: the shared pool) and `eighths`
/// of the machine's memory.
fn request(ledger: &Ledger, id: &str, cpus: u32, eighths: u64) -> Request {
    let r = if cpus == 0 {
        Request::shared(RunId::new(id))
    } else {
        Request::exclusive(RunId::new(id), cpus)
    };
    if eighths == 0 {
        r
    } else {
        r.with_memory(Bytes(eighth(ledger) * eighths))
    }
}

fn waiting(request: Request, priority: u16, limit: Option<u64>) -> Waiting {
    Waiting { priority: p(priority), request, suspended: None, limit: limit.map(secs) }
}

/// A run holding a placement that may not be preempted.
fn holder(id: &str, ends_by: Option<Timestamp>) -> Active {
    Active {
        run: RunId::new(id),
        priority: p(1),
        mode: PreemptionMode::Never,
        preemptible: false,
        ends_by,
        suspended: false,
    }
}

fn started(steps: &[Step]) -> Vec<&str> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Place { assignment } | Step::Resume { assignment } => {
                Some(assignment.owner.as_str())
            }
            _ => None,
        })
        .collect()
}

fn deferred(steps: &[Step]) -> Vec<&str> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Deferred { run, .. } => Some(run.as_str()),
            _ => None,
        })
        .collect()
}

fn reserved(steps: &[Step]) -> Option<(&str, Option<Timestamp>)> {
    steps.iter().find_map(|s| match s {
        Step::Reserve { for_run, start } => Some((for_run.as_str(), *start)),
        _ => None,
    })
}

/// vm-2cpu: one exclusive CPU at most (the pool keeps one), one node.
/// `long-1` holds half the memory until 100 s; `big-1` (priority 90) wants
/// three quarters, so it starts at 100 s.
fn half_taken() -> (Topology, Ledger, Vec<Active>) {
    let topo = fixture("vm-2cpu");
    let mut ledger = Ledger::new(&topo, PlacementConfig::default()).unwrap();
    ledger.admit(&topo, &request(&ledger, "long-1", 0, 4)).unwrap();
    (topo, ledger, vec![holder("long-1", Some(at(100)))])
}

#[test]
fn the_head_reserves_and_only_runs_that_cannot_delay_it_go_ahead() {
    let (topo, mut ledger, active) = half_taken();
    let big = request(&ledger, "big-1", 0, 6);
    let queue = vec![
        waiting(big, 90, Some(3600)),
        // Ends by 60 s, before the head's start.
        waiting(request(&ledger, "short-1", 0, 3), 10, Some(60)),
        // Still holds its eighth at 100 s, where the head leaves two over.
        waiting(request(&ledger, "long-2", 0, 1), 10, Some(500)),
        // No room now: short-1 and long-2 took the free half.
        waiting(request(&ledger, "open-1", 0, 1), 10, None),
        waiting(request(&ledger, "open-2", 0, 1), 10, None),
    ];
    let steps = pass(&topo, &mut ledger, queue, &active, false, NOW);
    assert_eq!(reserved(&steps), Some(("big-1", Some(at(100)))));
    assert_eq!(started(&steps), ["short-1", "long-2"]);
    assert_eq!(deferred(&steps), Vec::<&str>::new());
    let held = steps.iter().filter(|s| matches!(s, Step::NotPlaced { .. })).count();
    assert_eq!(held, 3, "big-1, open-1 and open-2 are not placed: {steps:?}");
}

#[test]
fn a_run_without_a_timeout_waits_where_it_would_take_what_the_head_needs() {
    let (topo, mut ledger, active) = half_taken();
    let queue = vec![
        waiting(request(&ledger, "big-1", 0, 7), 90, None),
        waiting(request(&ledger, "open-1", 0, 2), 10, None),
        waiting(request(&ledger, "short-1", 0, 2), 10, Some(99)),
        waiting(request(&ledger, "tiny-1", 0, 1), 10, None),
    ];
    let steps = pass(&topo, &mut ledger, queue, &active, false, NOW);
    assert_eq!(reserved(&steps), Some(("big-1", Some(at(100)))));
    // One eighth is left over at 100 s: tiny-1 takes it; open-1 would take
    // two; short-1 is gone by then.
    assert_eq!(started(&steps), ["short-1", "tiny-1"]);
    assert_eq!(deferred(&steps), ["open-1"]);
    let holding = ledger.get(&RunId::new("open-1"));
    assert_eq!(holding, None, "a deferred run leaves nothing on the ledger");
}

#[test]
fn an_unknown_start_lets_through_only_what_the_head_does_not_ask_for() {
    let topo = fixture("vm-2cpu");
    let mut ledger = Ledger::new(&topo, PlacementConfig::default()).unwrap();
    ledger.admit(&topo, &request(&ledger, "long-1", 1, 4)).unwrap();
    let active = [holder("long-1", None)];
    let queue = vec![
        // Wants the exclusive CPU long-1 holds, and memory.
        waiting(request(&ledger, "big-1", 1, 2), 90, Some(10)),
        waiting(request(&ledger, "mem-1", 0, 1), 10, Some(1)),
        waiting(request(&ledger, "bare-1", 0, 0), 10, None),
    ];
    let steps = pass(&topo, &mut ledger, queue, &active, false, NOW);
    assert_eq!(reserved(&steps), Some(("big-1", None)));
    assert_eq!(started(&steps), ["bare-1"]);
    assert_eq!(deferred(&steps), ["mem-1"]);
}

#[test]
fn a_head_that_could_never_fit_reserves_nothing() {
    let (topo, mut ledger, active) = half_taken();
    let too_big = Request::shared(RunId::new("huge-1")).with_memory(Bytes(u64::MAX / 2));
    let queue = vec![waiting(too_big, 90, None), waiting(request(&ledger, "a-1", 0, 2), 10, None)];
    let steps = pass(&topo, &mut ledger, queue, &active, false, NOW);
    assert_eq!(reserved(&steps), None);
    assert_eq!(started(&steps), ["a-1"]);
}

#[test]
fn preemption_still_comes_first_and_reserves_nothing() {
    let (topo, mut ledger, _) = half_taken();
    let active = [Active {
        preemptible: true,
        mode: PreemptionMode::Requeue,
        ..holder("long-1", Some(at(100)))
    }];
    let queue = vec![
        waiting(request(&ledger, "big-1", 0, 6), 90, None),
        waiting(request(&ledger, "open-1", 0, 1), 10, None),
    ];
    let steps = pass(&topo, &mut ledger, queue, &active, false, NOW);
    assert!(matches!(steps.last(), Some(Step::Preempt { .. })), "{steps:?}");
    assert_eq!(reserved(&steps), None);
    assert!(started(&steps).is_empty());
}

#[test]
fn a_frozen_run_resumes_when_the_head_waits_for_its_memory() {
    let topo = fixture("vm-2cpu");
    let mut ledger = Ledger::new(&topo, PlacementConfig::default()).unwrap();
    let frozen_request = request(&ledger, "frozen-1", 1, 4);
    ledger.admit(&topo, &frozen_request).unwrap();
    let holding = ledger.suspend(&RunId::new("frozen-1")).unwrap();
    let active = [Active { suspended: true, ..holder("frozen-1", None) }];
    let queue = vec![
        waiting(request(&ledger, "big-1", 1, 6), 90, None),
        Waiting { priority: p(10), request: frozen_request, suspended: Some(holding), limit: None },
    ];
    let steps = pass(&topo, &mut ledger, queue, &active, false, NOW);
    assert_eq!(reserved(&steps), Some(("big-1", None)));
    // Only its end frees the memory big-1 waits for.
    assert_eq!(started(&steps), ["frozen-1"]);
}

// ---- Properties ----

/// A random request: exclusive CPUs (0 for the shared pool), NUMA policy,
/// memory in eighths of a node.
type Shape = (u32, usize, u64);

fn shape(max_cpus: u32) -> impl Strategy<Value = Shape> {
    (0..=max_cpus, 0usize..3, 0u64..=6)
}

fn make(topo: &Topology, ledger: &Ledger, id: &str, (cpus, numa, eighths): Shape) -> Request {
    let cpus = cpus % (max_cpus(topo) + 1);
    let numa = [NumaPolicy::None, NumaPolicy::Prefer, NumaPolicy::SingleNode][numa];
    let r = request(ledger, id, cpus, eighths);
    if cpus > 0 {
        r.with_numa(numa)
    } else {
        r
    }
}

fn machines() -> Vec<Topology> {
    vec![fixture("vm-2cpu"), fixture("dual-socket-snc")]
}

fn max_cpus(topo: &Topology) -> u32 {
    // Large enough to contend on the big machine, within what fits at all.
    (topo.online_cpus().len() as u32 / 3).max(1)
}

/// A machine with runs on it and their end bounds (`None`: no timeout).
struct Busy {
    topo: Topology,
    ledger: Ledger,
    active: Vec<Active>,
}

fn busy(machine: usize, running: &[(Shape, Option<u64>)]) -> Busy {
    let topo = machines().swap_remove(machine);
    let mut ledger = Ledger::new(&topo, PlacementConfig::default()).unwrap();
    let mut active = Vec::new();
    for (i, (shape, end)) in running.iter().enumerate() {
        let id = format!("run-{i}");
        let r = make(&topo, &ledger, &id, *shape);
        if ledger.admit(&topo, &r).is_ok() {
            active.push(holder(&id, end.map(at)));
        }
    }
    Busy { topo, ledger, active }
}

fn queue_of(busy: &Busy, queued: &[(Shape, u16, Option<u64>)]) -> Vec<Waiting> {
    queued
        .iter()
        .enumerate()
        .map(|(i, (shape, priority, limit))| {
            let r = make(&busy.topo, &busy.ledger, &format!("q-{i}"), *shape);
            waiting(r, *priority, *limit)
        })
        .filter(|w| crate::placement::place::validate(&w.request).is_ok())
        .collect()
}

fn running() -> impl Strategy<Value = Vec<(Shape, Option<u64>)>> {
    prop::collection::vec((shape(21), prop::option::weighted(0.7, 1u64..200)), 0..8)
}

fn queued() -> impl Strategy<Value = Vec<(Shape, u16, Option<u64>)>> {
    prop::collection::vec((shape(21), 0u16..4, prop::option::weighted(0.6, 1u64..200)), 1..12)
}

/// The runs the pass started, as holders with their end bounds.
fn holders_after(steps: &[Step], queue: &[Waiting], before: &[Active]) -> Vec<Active> {
    let limits: BTreeMap<&RunId, Option<Duration>> =
        queue.iter().map(|w| (&w.request.owner, w.limit)).collect();
    let mut all = before.to_vec();
    for s in steps {
        if let Step::Place { assignment } = s {
            let limit = limits[&assignment.owner];
            all.push(holder(assignment.owner.as_str(), limit.map(|l| NOW.plus(l))));
        }
    }
    all
}

fn request_of<'a>(queue: &'a [Waiting], run: &str) -> &'a Request {
    &queue.iter().find(|w| w.request.owner.as_str() == run).unwrap().request
}

/// The runs started after the reservation was made: the backfilled ones.
fn backfilled(steps: &[Step]) -> Vec<&str> {
    let Some(from) = steps.iter().position(|s| matches!(s, Step::Reserve { .. })) else {
        return Vec::new();
    };
    started(&steps[from..])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The head's reserved start, recomputed once the pass has started what
    /// it started (each with its end bound), is no later than it was.
    #[test]
    fn the_reserved_start_never_moves_later_because_of_a_backfilled_run(
        machine in 0usize..2, running in running(), queued in queued(),
    ) {
        let mut b = busy(machine, &running);
        let queue = queue_of(&b, &queued);
        let steps = pass(&b.topo, &mut b.ledger, queue.clone(), &b.active, false, NOW);
        let Some((head, Some(start))) = reserved(&steps) else { return Ok(()) };
        let all = holders_after(&steps, &queue, &b.active);
        let again = Reservation::new(&b.topo, &b.ledger, request_of(&queue, head), &all, NOW)
            .expect("the head fits an empty machine");
        let later = again.start();
        prop_assert!(later.is_some_and(|s| s <= start), "{later:?} after {start:?}: {steps:?}");
    }

    /// Without any timeout, nothing that would take a kind of resource the
    /// head asks for goes ahead of it: once every run that held a placement
    /// before the head's turn has ended, the head fits beside whatever was
    /// backfilled.
    #[test]
    fn with_no_timeouts_a_run_that_does_not_fit_the_heads_leftovers_never_jumps_ahead(
        machine in 0usize..2, running in running(), queued in queued(),
    ) {
        let running: Vec<_> = running.into_iter().map(|(s, _)| (s, None)).collect();
        let queued: Vec<_> = queued.into_iter().map(|(s, pr, _)| (s, pr, None)).collect();
        let mut b = busy(machine, &running);
        let queue = queue_of(&b, &queued);
        let steps = pass(&b.topo, &mut b.ledger, queue.clone(), &b.active, false, NOW);
        let Some((head, start)) = reserved(&steps) else { return Ok(()) };
        prop_assert_eq!(start, None);
        let jumped = backfilled(&steps);
        let mut after = b.ledger.clone();
        for a in b.ledger.assignments() {
            if !jumped.contains(&a.owner.as_str()) {
                after.release(a).unwrap();
            }
        }
        prop_assert!(place(&b.topo, &after, request_of(&queue, head)).is_ok(),
            "{head} does not fit beside {jumped:?}: {steps:?}");
    }

    /// With the head blocked and one lower run behind it, that run starts
    /// at once exactly when it cannot delay the head: it ends by the head's
    /// start, or the head still fits at its start beside it.
    #[test]
    fn a_run_starts_at_once_exactly_when_it_cannot_delay_the_head(
        machine in 0usize..2, running in running(),
        head in shape(21), other in shape(21), limit in prop::option::of(1u64..200),
    ) {
        let b = busy(machine, &running);
        let queue = queue_of(&b, &[(head, 9, Some(50)), (other, 1, limit)]);
        prop_assume!(queue.len() == 2);
        let mut ledger = b.ledger.clone();
        let steps = pass(&b.topo, &mut ledger, queue.clone(), &b.active, false, NOW);
        // Only when the head itself waits, with a known start.
        let Some(("q-0", Some(start))) = reserved(&steps) else { return Ok(()) };
        // The lower run fits now, by itself.
        let Ok(placed) = place(&b.topo, &b.ledger, &queue[1].request) else { return Ok(()) };
        // The oracle: the machine at the head's start with the lower run on it.
        let mut then = b.ledger.clone();
        for a in &b.active {
            if a.ends_by.is_some_and(|e| e <= start) {
                then.release(&b.ledger.get(&a.run).unwrap().clone()).unwrap();
            }
        }
        then.record(placed).unwrap();
        let gone_by_then = limit.is_some_and(|l| at(l) <= start);
        let harmless = gone_by_then || place(&b.topo, &then, &queue[0].request).is_ok();
        prop_assert_eq!(started(&steps) == ["q-1"], harmless, "{:?}", steps);
        prop_assert_eq!(deferred(&steps) == ["q-1"], !harmless, "{:?}", steps);
    }

    /// Simulated time on the two-CPU machine: runs hold their placements
    /// until they end (never later than their timeouts), a high-priority run
    /// that does not fit arrives first, and small runs keep arriving every
    /// second. The head starts by the start reserved for it on arrival, when
    /// that was known, and in any case before the end of the time line; the
    /// start reserved for it never moves later from one second to the next.
    #[test]
    fn the_head_starts_though_small_runs_keep_arriving(
        machine in 0usize..2,
        initial in prop::collection::vec((shape(21), 1u64..60, prop::option::weighted(0.6, 0u64..30)), 1..5),
        head in shape(21),
        stream in prop::collection::vec((shape(21), 1u64..40, prop::option::weighted(0.5, 0u64..20)), 200),
    ) {
        let topo = machines().swap_remove(machine);
        let mut ledger = Ledger::new(&topo, PlacementConfig::default()).unwrap();
        // Running runs: id → (actual end, end bound).
        let mut live: BTreeMap<RunId, (u64, Option<u64>)> = BTreeMap::new();
        for (i, (shape, ran, slack)) in initial.iter().enumerate() {
            let r = make(&topo, &ledger, &format!("init-{i}"), *shape);
            if ledger.admit(&topo, &r).is_ok() {
                live.insert(r.owner.clone(), (*ran, slack.map(|s| ran + s)));
            }
        }
        let head = make(&topo, &ledger, "head-1", head);
        prop_assume!(crate::placement::place::validate(&head).is_ok());
        // It must not fit now, and must fit the empty machine.
        prop_assume!(place(&topo, &ledger, &head).is_err());
        let empty = Ledger::new(&topo, PlacementConfig::default()).unwrap();
        prop_assume!(place(&topo, &empty, &head).is_ok());
        let mut queue: Vec<Waiting> = vec![waiting(head, 90, None)];
        let mut first: Option<Option<Timestamp>> = None;
        let mut last_known: Option<Timestamp> = None;
        let horizon = 400u64;
        let mut head_started = None;
        for t in 0..horizon {
            let now = at(t);
            let ended: Vec<RunId> =
                live.iter().filter(|(_, (end, _))| *end <= t).map(|(id, _)| id.clone()).collect();
            for id in ended {
                live.remove(&id);
                let held = ledger.get(&id).unwrap().clone();
                ledger.release(&held).unwrap();
            }
            if let Some((shape, ran, slack)) = stream.get(t as usize) {
                let r = make(&topo, &ledger, &format!("s-{t}"), *shape);
                if crate::placement::place::validate(&r).is_ok() {
                    // A run ends by its timeout; the timeout is the limit.
                    queue.push(waiting(r, 10, slack.map(|s| ran + s)));
                    let _ = ran;
                }
            }
            let active: Vec<Active> = live
                .iter()
                .map(|(id, (_, bound))| holder(id.as_str(), bound.map(at)))
                .collect();
            let steps = pass(&topo, &mut ledger, queue.clone(), &active, false, now);
            if let Some((head_id, start)) = reserved(&steps) {
                if head_id == "head-1" {
                    first.get_or_insert(start);
                    if let (Some(before), Some(s)) = (last_known, start) {
                        prop_assert!(s <= before, "at {t}: start {s:?} after {before:?}");
                    }
                    if start.is_some() {
                        last_known = start;
                    }
                }
            }
            for id in started(&steps) {
                let w = queue.iter().position(|w| w.request.owner.as_str() == id).unwrap();
                let w = queue.remove(w);
                if id == "head-1" {
                    head_started = Some(t);
                    // It ends after the time line.
                    live.insert(w.request.owner.clone(), (horizon, None));
                    continue;
                }
                let limit = w.limit.map(|l| t + l.as_secs());
                // Small runs run for what their stream entry says, within
                // their timeout.
                let index: usize = id.trim_start_matches("s-").parse().unwrap();
                let ran = stream[index].1;
                live.insert(w.request.owner.clone(), (t + ran, limit));
            }
            if head_started.is_some() {
                break;
            }
        }
        let Some(started_at) = head_started else {
            return Err(TestCaseError::fail(format!("head-1 never started; first reservation {first:?}")));
        };
        if let Some(Some(start)) = first {
            prop_assert!(at(started_at) <= start, "started at {started_at}, reserved {start:?}");
        }
    }
}
