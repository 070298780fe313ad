//! The agent's own counters and histograms: things that happen, counted as
//! they happen (gauges of things that *are* come from the snapshot at scrape
//! time instead).
//!
//! Every label value comes from a closed enum here, and every series of a
//! labelled counter exists from the start at 0, so `rate()` and
//! `increase()` see the first event rather than a series appearing at 1.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

use crate::placement::PlacementError;
use crate::scheduler::cron::FiringOutcome;
use crate::scheduler::{Phase, PreemptionMode};

/// A closed set of label values.
pub trait LabelValue: Copy + 'static {
    const KEY: &'static str;
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;
}

macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident, $key:literal { $($(#[$vdoc:meta])* $variant:ident => $value:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl LabelValue for $name {
            const KEY: &'static str = $key;
            const ALL: &'static [Self] = &[$($name::$variant),+];
            fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $value),+
                }
            }
        }
    };
}

label_enum!(
    /// What a placement attempt came to.
    PlacementOutcome, "outcome" {
        Placed => "placed",
        /// Valid, but no room now: the run stays queued.
        NoFit => "no_fit",
        /// Refused for any other reason (an invalid request, a ledger
        /// inconsistency).
        Refused => "refused",
    }
);

impl PlacementOutcome {
    pub fn of<T>(result: &Result<T, PlacementError>) -> PlacementOutcome {
        match result {
            Ok(_) => PlacementOutcome::Placed,
            Err(error) => PlacementOutcome::of_error(error),
        }
    }

    pub fn of_error(error: &PlacementError) -> PlacementOutcome {
        match error {
            PlacementError::NoFit { .. } => PlacementOutcome::NoFit,
            _ => PlacementOutcome::Refused,
        }
    }
}

label_enum!(
    /// How a run was preempted.
    PreemptKind, "mode" {
        /// Frozen; thawed later.
        Suspend => "suspend",
        /// Stopped and queued again.
        Requeue => "requeue",
    }
);

impl PreemptKind {
    /// `None` for [`PreemptionMode::Never`], which is never preempted.
    pub fn of(mode: PreemptionMode) -> Option<PreemptKind> {
        match mode {
            PreemptionMode::Suspend => Some(PreemptKind::Suspend),
            PreemptionMode::Requeue => Some(PreemptKind::Requeue),
            PreemptionMode::Never => None,
        }
    }
}

label_enum!(
    /// What the OOM policy did about a run that reached its memory limit.
    OomAction, "action" {
        /// Raised the limit and let the run go on in place.
        Grow => "grow",
        /// Killed it and queued it again (with a larger limit).
        Requeue => "requeue",
        /// Failed the attempt.
        Fail => "fail",
    }
);

label_enum!(
    /// How a run at its memory limit came to the OOM policy's notice.
    OomReached, "reached" {
        /// Stopped at its limit (v1: paused by the kernel; v2: frozen at
        /// `memory.high`), nothing killed: the policy acted on a whole job.
        Paused => "paused",
        /// The kernel's OOM killer got there first (a fail policy, or a job
        /// that allocated faster than it could be frozen).
        Killed => "killed",
    }
);

label_enum!(
    /// What became of a cron firing.
    CronOutcome, "outcome" {
        Started => "started",
        /// Started, but later than the firing was due.
        Late => "late",
        /// Not started, by the job's concurrency policy.
        Skipped => "skipped",
        /// Fell due while nothing could start it.
        Missed => "missed",
    }
);

impl CronOutcome {
    /// The outcome and how many firings the record stands for.
    pub fn of(outcome: &FiringOutcome) -> (CronOutcome, u64) {
        match outcome {
            FiringOutcome::Started { .. } => (CronOutcome::Started, 1),
            FiringOutcome::Late { .. } => (CronOutcome::Late, 1),
            FiringOutcome::Skipped { .. } => (CronOutcome::Skipped, 1),
            FiringOutcome::Missed { count, .. } => (CronOutcome::Missed, *count),
        }
    }
}

label_enum!(
    /// How a run ended for good.
    EndState, "state" {
        Succeeded => "succeeded",
        Failed => "failed",
        Killed => "killed",
    }
);

impl EndState {
    /// `None` for a phase that is not an end.
    pub fn of(phase: &Phase) -> Option<EndState> {
        match phase {
            Phase::Succeeded => Some(EndState::Succeeded),
            Phase::Failed { .. } => Some(EndState::Failed),
            Phase::Killed { .. } => Some(EndState::Killed),
            _ => None,
        }
    }
}

label_enum!(
    /// Why the HTTP endpoint turned a connection away.
    RefusedReason, "reason" {
        /// `http.max_connections` were open: accepted and closed at once.
        MaxConnections => "max_connections",
        /// `accept` itself failed (out of descriptors, mostly): the
        /// connection waits in the kernel's queue while the agent backs off.
        AcceptError => "accept_error",
    }
);

label_enum!(
    /// Which of the HTTP endpoint's deadlines closed a connection.
    HttpDeadline, "phase" {
        /// The request's head did not arrive within `header_timeout`.
        Header => "header",
        /// A kept-alive connection sent no next request within `idle_timeout`.
        Idle => "idle",
        /// The request and its response took longer than `request_timeout`.
        Request => "request",
    }
);

label_enum!(
    /// What node-pressure protection did to a run.
    PressureActionKind, "action" {
        /// Froze it (the suspend path).
        Freeze => "freeze",
        /// Stopped it, frozen, and queued it again: the pressure persisted.
        Requeue => "requeue",
        /// Let it resume: the pressure is over.
        Release => "release",
    }
);

label_enum!(
    /// Which PSI line a stall gauge reads.
    StallLine, "kind" {
        /// Some tasks stalled.
        Some => "some",
        /// Every non-idle task stalled at once.
        Full => "full",
    }
);

type Labels = [(&'static str, &'static str); 1];

/// A counter family over one closed label.
#[derive(Debug, Clone)]
pub struct LabelledCounter<L> {
    family: Family<Labels, Counter>,
    _label: std::marker::PhantomData<L>,
}

impl<L: LabelValue> LabelledCounter<L> {
    fn register(registry: &mut Registry, name: &str, help: &str) -> Self {
        let family = Family::<Labels, Counter>::default();
        for value in L::ALL {
            drop(family.get_or_create(&[(L::KEY, value.as_str())]));
        }
        registry.register(name, help, family.clone());
        LabelledCounter { family, _label: std::marker::PhantomData }
    }

    pub fn inc(&self, value: L) {
        self.inc_by(value, 1);
    }

    pub fn inc_by(&self, value: L, n: u64) {
        self.family.get_or_create(&[(L::KEY, value.as_str())]).inc_by(n);
    }

    pub fn get(&self, value: L) -> u64 {
        self.family.get_or_create(&[(L::KEY, value.as_str())]).get()
    }
}

/// A counter with two labels, each from a closed set; every combination
/// exists from the start at 0.
#[derive(Debug, Clone)]
pub struct LabelledCounter2<A, B> {
    family: Family<[(&'static str, &'static str); 2], Counter>,
    _labels: std::marker::PhantomData<(A, B)>,
}

impl<A: LabelValue, B: LabelValue> LabelledCounter2<A, B> {
    fn register(registry: &mut Registry, name: &str, help: &str) -> Self {
        let family = Family::<[(&'static str, &'static str); 2], Counter>::default();
        for a in A::ALL {
            for b in B::ALL {
                drop(family.get_or_create(&Self::labels(*a, *b)));
            }
        }
        registry.register(name, help, family.clone());
        LabelledCounter2 { family, _labels: std::marker::PhantomData }
    }

    fn labels(a: A, b: B) -> [(&'static str, &'static str); 2] {
        [(A::KEY, a.as_str()), (B::KEY, b.as_str())]
    }

    pub fn inc(&self, a: A, b: B) {
        self.family.get_or_create(&Self::labels(a, b)).inc();
    }

    pub fn get(&self, a: A, b: B) -> u64 {
        self.family.get_or_create(&Self::labels(a, b)).get()
    }
}

/// The agent's event counters and latency histograms, registered in the
/// metrics registry. Cheap to clone; clones count into the same series.
#[derive(Debug, Clone)]
pub struct AgentMetrics {
    pub placement_decisions: LabelledCounter<PlacementOutcome>,
    pub preemptions: LabelledCounter<PreemptKind>,
    pub oom_events: LabelledCounter2<OomAction, OomReached>,
    pub cron_firings: LabelledCounter<CronOutcome>,
    pub runs_ended: LabelledCounter<EndState>,
    pub http_refused: LabelledCounter<RefusedReason>,
    pub http_timed_out: LabelledCounter<HttpDeadline>,
    /// From a run entering the queue to its placement.
    pub scheduling_delay: Histogram,
    /// From placement to the run's process running.
    pub launch_latency: Histogram,
    /// Transactions the agent committed to its store, as of the last turn
    /// of its main loop.
    pub store_commits: Counter,
    pub pressure_actions: LabelledCounter<PressureActionKind>,
    /// The last pressure reading (set only when pressure protection is on).
    pub pressure_stall: Family<Labels, Gauge<f64, AtomicU64>>,
    pub pressure_available: Gauge<f64, AtomicU64>,
    pub pressure_holding: Gauge,
}

impl AgentMetrics {
    pub(super) fn register(registry: &mut Registry) -> AgentMetrics {
        let placement_decisions = LabelledCounter::register(
            registry,
            "placement_decisions",
            "Placement attempts by outcome: placed, no_fit (no room now; the run stays queued), refused",
        );
        let preemptions = LabelledCounter::register(
            registry,
            "preemptions",
            "Runs preempted to make room for higher-priority runs, by mode (suspend: frozen, requeue: stopped and queued again)",
        );
        let oom_events = LabelledCounter2::register(
            registry,
            "oom_events",
            "Runs that reached their memory limit, by the action the OOM policy took (grow, requeue, fail) and how the limit was reached (paused: stopped there, nothing killed; killed: the kernel OOM-killed first)",
        );
        let cron_firings = LabelledCounter::register(
            registry,
            "cron_firings",
            "Cron firings by outcome: started, late (started after it was due), skipped (concurrency policy), missed",
        );
        let runs_ended = LabelledCounter::register(
            registry,
            "runs_ended",
            "Runs that ended for good, by final state",
        );
        let http_refused = LabelledCounter::register(
            registry,
            "http_connections_refused",
            "Connections to the HTTP endpoint turned away, by reason: max_connections (closed at once), accept_error (accept failed; the agent backed off)",
        );
        let http_timed_out = LabelledCounter::register(
            registry,
            "http_connections_timed_out",
            "HTTP connections the endpoint closed at a deadline, by phase: header (request head too slow), idle (no next request), request (request and response too slow)",
        );
        // 1 ms to ~17 min: an idle node places at once, a busy one queues
        // runs for as long as the jobs before them take.
        let scheduling_delay = Histogram::new(exponential_buckets(0.001, 4.0, 11));
        registry.register_with_unit(
            "scheduling_delay",
            "Time from a run entering the queue to its placement",
            Unit::Seconds,
            scheduling_delay.clone(),
        );
        // 0.5 ms to ~4 s: a contained start is a couple of milliseconds; a
        // large rootfs or a loaded machine stretches it.
        let launch_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register_with_unit(
            "launch_latency",
            "Time from a run's placement to its process running in its container",
            Unit::Seconds,
            launch_latency.clone(),
        );
        let store_commits = Counter::default();
        registry.register(
            "store_commits",
            "Transactions the agent committed to its state database (each one atomic write), as of the end of the agent's last main-loop turn",
            store_commits.clone(),
        );
        let pressure_actions = LabelledCounter::register(
            registry,
            "pressure_actions",
            "What node-pressure protection did to runs, by action: freeze, requeue (frozen and the pressure persisted), release (the pressure is over; the run resumes when there is room)",
        );
        let pressure_stall = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        // Every line from the start, like the counters' labels: 0 until the
        // first check (and for good while pressure protection is off).
        for line in StallLine::ALL {
            drop(pressure_stall.get_or_create(&[(StallLine::KEY, line.as_str())]));
        }
        registry.register(
            "pressure_memory_stall_avg10_ratio",
            "Share of time (0 to 1) tasks under the agent's parent cgroup stalled on memory over the last 10 s, by PSI line (some, full), at the last pressure check",
            pressure_stall.clone(),
        );
        let pressure_available = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "pressure_memory_available",
            "MemAvailable at the last pressure check",
            Unit::Bytes,
            pressure_available.clone(),
        );
        let pressure_holding = Gauge::default();
        registry.register(
            "pressure_holding",
            "1 while node-pressure protection holds new runs back (the node is under memory pressure, or runs frozen for it are not released yet), else 0",
            pressure_holding.clone(),
        );
        AgentMetrics {
            pressure_actions,
            pressure_stall,
            pressure_available,
            pressure_holding,
            store_commits,
            placement_decisions,
            preemptions,
            oom_events,
            cron_firings,
            runs_ended,
            http_refused,
            http_timed_out,
            scheduling_delay,
            launch_latency,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::FailReason;
    use crate::vocab::RunId;

    #[test]
    fn label_values_are_snake_case_and_distinct() {
        fn check<L: LabelValue>() {
            let values: Vec<_> = L::ALL.iter().map(|v| v.as_str()).collect();
            for v in &values {
                assert!(v.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{v}");
            }
            let mut unique = values.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), values.len());
        }
        check::<PlacementOutcome>();
        check::<PreemptKind>();
        check::<OomAction>();
        check::<OomReached>();
        check::<CronOutcome>();
        check::<EndState>();
        check::<RefusedReason>();
        check::<HttpDeadline>();
    }

    #[test]
    fn outcomes_map_from_the_core_types() {
        let owner = RunId::new("a-1");
        assert_eq!(PlacementOutcome::of(&Ok::<(), _>(())), PlacementOutcome::Placed);
        let no_fit = PlacementError::NoFit { owner: owner.clone(), reason: "full".into() };
        assert_eq!(PlacementOutcome::of::<()>(&Err(no_fit)), PlacementOutcome::NoFit);
        let bad = PlacementError::EmptyCpus { owner };
        assert_eq!(PlacementOutcome::of::<()>(&Err(bad)), PlacementOutcome::Refused);
        assert_eq!(PreemptKind::of(PreemptionMode::Never), None);
        assert_eq!(PreemptKind::of(PreemptionMode::Suspend), Some(PreemptKind::Suspend));
        assert_eq!(EndState::of(&Phase::Pending), None);
        assert_eq!(
            EndState::of(&Phase::Failed { reason: FailReason::Oom }),
            Some(EndState::Failed)
        );
        let missed = FiringOutcome::Missed {
            count: 5,
            last: chrono::DateTime::UNIX_EPOCH,
            suspended: false,
        };
        assert_eq!(CronOutcome::of(&missed), (CronOutcome::Missed, 5));
    }
}
