//! Node-pressure protection: what to do about the node's memory when it runs
//! short, decided from one reading at a time.
//!
//! Pure: the shell samples the readings (`MemAvailable`, the PSI averages of
//! the agent's parent cgroup) every `check_every` and hands them here with
//! the runs that could be acted on; [`PressureWatch::step`] returns at most
//! one action per reading, and the shell carries it out through the state
//! machine (a freeze and a requeue are events; a release lets the scheduling
//! pass resume the run).
//!
//! # Hysteresis
//!
//! A reading is *high* when any signal is past its trigger, *low* when every
//! signal is back on the safe side of its release level, and in the *band*
//! in between. The watch acts only after `trigger_after` high readings in a
//! row, and needs as many again after each action: the PSI averages take
//! seconds to show what a freeze did, and acting on every reading would
//! freeze everything before the first freeze could tell. It releases a run
//! only after the readings stayed low for `release_after`, one run per such
//! stretch. A reading in the band resets both counts and does nothing, so
//! readings that swing around one threshold never make it flap.
//!
//! # Order
//!
//! Under pressure it first requeues a run frozen for pressure for at least
//! `requeue_after` (freezing keeps memory charged; stopping the run frees
//! it), lowest priority first; otherwise it freezes the lowest-priority
//! running run whose preemption mode allows preemption. Runs of
//! `preemption: never` are never chosen. Releases go the other way: the
//! highest-priority frozen run first.

use std::cmp::Reverse;
use std::fmt;
use std::time::Duration;

use super::policy::PreemptionMode;
use crate::spec::Priority;
use crate::vocab::{Bytes, RunId, Timestamp};

/// An amount of memory, absolute or as a share of the node's total.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryAmount {
    Bytes(Bytes),
    /// Percent of `MemTotal`, 0 to 100.
    Percent(f64),
}

impl MemoryAmount {
    /// The amount on a node with `total` bytes of memory; `None` for a
    /// percentage when the total is not known.
    pub fn resolve(self, total: Option<Bytes>) -> Option<Bytes> {
        match self {
            MemoryAmount::Bytes(b) => Some(b),
            MemoryAmount::Percent(p) => {
                total.map(|t| Bytes((t.get() as f64 * p / 100.0).round() as u64))
            }
        }
    }

    /// Twice as much: the default release level of a trigger.
    pub fn doubled(self) -> MemoryAmount {
        match self {
            MemoryAmount::Bytes(b) => MemoryAmount::Bytes(Bytes(b.get().saturating_mul(2))),
            MemoryAmount::Percent(p) => MemoryAmount::Percent((p * 2.0).min(100.0)),
        }
    }
}

impl fmt::Display for MemoryAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryAmount::Bytes(b) => write!(f, "{b}"),
            MemoryAmount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// The agent's `pressure` settings (see `docs/config.md`). At least one
/// trigger is set; each release level is on the safe side of its trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// How often the readings are taken.
    pub check_every: Duration,
    /// High when `MemAvailable` is below this…
    pub available_below: Option<MemoryAmount>,
    /// …and low again at or above this.
    pub available_release: Option<MemoryAmount>,
    /// High when `memory.pressure` `some avg10` (percent) is above this…
    pub some_above: Option<f64>,
    /// …and low again at or below this.
    pub some_release: Option<f64>,
    /// High when `memory.pressure` `full avg10` (percent) is above this…
    pub full_above: Option<f64>,
    /// …and low again at or below this.
    pub full_release: Option<f64>,
    /// High readings in a row before each action.
    pub trigger_after: u32,
    /// Low readings for this long before each release.
    pub release_after: Duration,
    /// A run frozen for pressure this long while the readings stay high is
    /// requeued.
    pub requeue_after: Duration,
}

impl Default for Thresholds {
    /// The settings of `pressure: {}`: every field's documented default.
    fn default() -> Self {
        Thresholds {
            check_every: Duration::from_secs(2),
            available_below: Some(MemoryAmount::Percent(5.0)),
            available_release: Some(MemoryAmount::Percent(10.0)),
            some_above: Some(40.0),
            some_release: Some(20.0),
            full_above: Some(10.0),
            full_release: Some(5.0),
            trigger_after: 3,
            release_after: Duration::from_secs(30),
            requeue_after: Duration::from_secs(60),
        }
    }
}

/// One sample of the node's memory. A signal that could not be read is
/// `None`: it is neither high nor keeps the reading from being low.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    pub available: Option<Bytes>,
    pub total: Option<Bytes>,
    /// `some avg10` of `memory.pressure`, percent.
    pub some_avg10: Option<f64>,
    /// `full avg10` of `memory.pressure`, percent.
    pub full_avg10: Option<f64>,
}

impl fmt::Display for Reading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(a) = self.available {
            parts.push(format!("MemAvailable={a}"));
        }
        if let Some(s) = self.some_avg10 {
            parts.push(format!("memory.some avg10={s:.2}"));
        }
        if let Some(s) = self.full_avg10 {
            parts.push(format!("memory.full avg10={s:.2}"));
        }
        if parts.is_empty() {
            return f.write_str("no reading");
        }
        f.write_str(&parts.join(", "))
    }
}

/// Where a reading stands against the thresholds.
#[derive(Debug, Clone, PartialEq)]
pub enum Level {
    /// Past a trigger; the text names the signals and their thresholds
    /// ("memory.some avg10=34.20 above 20").
    High(String),
    /// Between release and trigger: nothing changes.
    Band,
    /// Every signal on the safe side of its release level.
    Low,
}

impl Thresholds {
    pub fn classify(&self, r: &Reading) -> Level {
        let mut high = Vec::new();
        let mut low = true;
        let available_at = |m: Option<MemoryAmount>| m.and_then(|m| m.resolve(r.total));
        if let Some(a) = r.available {
            if let Some(below) = available_at(self.available_below) {
                if a < below {
                    high.push(format!("MemAvailable={a} below {below}"));
                }
            }
            if available_at(self.available_release).is_some_and(|release| a < release) {
                low = false;
            }
        }
        for (value, above, release, name) in [
            (r.some_avg10, self.some_above, self.some_release, "memory.some avg10"),
            (r.full_avg10, self.full_above, self.full_release, "memory.full avg10"),
        ] {
            let Some(v) = value else { continue };
            if let Some(t) = above {
                if v > t {
                    high.push(format!("{name}={v:.2} above {t}"));
                }
            }
            if release.is_some_and(|release| v > release) {
                low = false;
            }
        }
        if !high.is_empty() {
            Level::High(high.join(", "))
        } else if low {
            Level::Low
        } else {
            Level::Band
        }
    }
}

/// A run the watch could act on.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub run: RunId,
    pub priority: Priority,
    pub mode: PreemptionMode,
    pub state: CandidateState,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CandidateState {
    /// Running, not frozen, stopping or paused at its limit.
    Running,
    /// Frozen for pressure since `since`; `released` once the watch let it
    /// resume (it waits for room in the scheduling pass meanwhile).
    Frozen { since: Timestamp, released: bool },
}

/// What to do about one run.
#[derive(Debug, Clone, PartialEq)]
pub enum PressureAction {
    /// Freeze it (the suspend path preemption uses).
    Freeze { run: RunId, cause: String },
    /// Stop it and queue it again, same attempt (it is frozen for pressure).
    Requeue { run: RunId, cause: String },
    /// Let the frozen run resume when the scheduling pass has room.
    Release { run: RunId, cause: String },
}

impl PressureAction {
    pub fn run(&self) -> &RunId {
        match self {
            PressureAction::Freeze { run, .. }
            | PressureAction::Requeue { run, .. }
            | PressureAction::Release { run, .. } => run,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            PressureAction::Freeze { .. } => "freeze",
            PressureAction::Requeue { .. } => "requeue",
            PressureAction::Release { .. } => "release",
        }
    }
}

/// What one reading came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub level: Level,
    pub action: Option<PressureAction>,
    /// New runs are held back (not placed): the node is under pressure, or
    /// runs frozen for it are not all released yet.
    pub holding: bool,
    /// Holding started or ended with this reading.
    pub began: bool,
    pub ended: bool,
}

/// The hysteresis state between readings. A restarted agent starts from
/// [`PressureWatch::default`]; the runs frozen for pressure are in the
/// store, and they keep new runs held until released.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PressureWatch {
    /// High readings in a row since the last action.
    above: u32,
    /// Start of the current stretch of low readings (or of the last release).
    low_since: Option<Timestamp>,
    /// The readings crossed a trigger and have not been low long enough
    /// since with every frozen run released.
    active: bool,
    /// New runs were held back after the last reading.
    holding: bool,
}

impl PressureWatch {
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Takes one reading at `now` with `candidates` as they stand.
    pub fn step(
        &mut self,
        t: &Thresholds,
        reading: &Reading,
        now: Timestamp,
        candidates: &[Candidate],
    ) -> Decision {
        let level = t.classify(reading);
        let mut action = None;
        match &level {
            Level::High(cause) => {
                self.low_since = None;
                self.above = self.above.saturating_add(1);
                if self.above >= t.trigger_after.max(1) {
                    self.active = true;
                    action = under_pressure(t, cause, now, candidates);
                    if action.is_some() {
                        self.above = 0;
                    }
                }
            }
            Level::Band => {
                self.above = 0;
                self.low_since = None;
            }
            Level::Low => {
                self.above = 0;
                let since = *self.low_since.get_or_insert(now);
                if now.since(since) >= t.release_after {
                    let frozen = unreleased(candidates)
                        .min_by_key(|(c, at)| (Reverse(c.priority), *at, c.run.clone()));
                    match frozen {
                        Some((c, _)) => {
                            let cause = format!(
                                "{reading}: below the release levels for {}",
                                crate::spec::duration::format(now.since(since))
                            );
                            action = Some(PressureAction::Release { run: c.run.clone(), cause });
                            // The next release waits for a stretch of its own.
                            self.low_since = Some(now);
                        }
                        None => self.active = false,
                    }
                }
            }
        }
        let released = match &action {
            Some(PressureAction::Release { run, .. }) => Some(run),
            _ => None,
        };
        let frozen_left = unreleased(candidates).any(|(c, _)| Some(&c.run) != released);
        let froze = matches!(action, Some(PressureAction::Freeze { .. }));
        let holding = self.active || frozen_left || froze;
        let was_holding = std::mem::replace(&mut self.holding, holding);
        Decision {
            level,
            action,
            holding,
            began: holding && !was_holding,
            ended: was_holding && !holding,
        }
    }
}

/// Frozen runs not released yet, with when they froze.
fn unreleased(candidates: &[Candidate]) -> impl Iterator<Item = (&Candidate, Timestamp)> {
    candidates.iter().filter_map(|c| match c.state {
        CandidateState::Frozen { since, released: false } => Some((c, since)),
        _ => None,
    })
}

/// The one action for a high reading: a requeue that is due, else a freeze.
fn under_pressure(
    t: &Thresholds,
    cause: &str,
    now: Timestamp,
    candidates: &[Candidate],
) -> Option<PressureAction> {
    let movable = |c: &&Candidate| c.mode != PreemptionMode::Never;
    let due = candidates
        .iter()
        .filter(movable)
        .filter_map(|c| match c.state {
            CandidateState::Frozen { since, .. } if now.since(since) >= t.requeue_after => {
                Some((c, since))
            }
            _ => None,
        })
        .min_by_key(|(c, since)| (c.priority, *since, c.run.clone()));
    if let Some((c, since)) = due {
        let frozen_for = crate::spec::duration::format(now.since(since));
        let cause = format!("{cause}; frozen for {frozen_for}");
        return Some(PressureAction::Requeue { run: c.run.clone(), cause });
    }
    candidates
        .iter()
        .filter(movable)
        .filter(|c| c.state == CandidateState::Running)
        .min_by_key(|c| (c.priority, c.run.clone()))
        .map(|c| PressureAction::Freeze { run: c.run.clone(), cause: cause.to_owned() })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn t() -> Thresholds {
        Thresholds {
            check_every: Duration::from_secs(1),
            available_below: Some(MemoryAmount::Bytes(Bytes::from_mib(100))),
            available_release: Some(MemoryAmount::Bytes(Bytes::from_mib(200))),
            some_above: Some(20.0),
            some_release: Some(10.0),
            full_above: None,
            full_release: None,
            trigger_after: 3,
            release_after: Duration::from_secs(5),
            requeue_after: Duration::from_secs(10),
        }
    }

    fn some(v: f64) -> Reading {
        Reading {
            available: Some(Bytes::from_gib(8)),
            total: Some(Bytes::from_gib(16)),
            some_avg10: Some(v),
            full_avg10: None,
        }
    }

    fn at(secs: u64) -> Timestamp {
        Timestamp::EPOCH.plus(Duration::from_secs(secs))
    }

    fn running(id: &str, priority: u16, mode: PreemptionMode) -> Candidate {
        Candidate {
            run: RunId::new(id),
            priority: Priority::new(priority).unwrap(),
            mode,
            state: CandidateState::Running,
        }
    }

    fn frozen(id: &str, priority: u16, since: u64) -> Candidate {
        Candidate {
            state: CandidateState::Frozen { since: at(since), released: false },
            ..running(id, priority, PreemptionMode::Suspend)
        }
    }

    #[test]
    fn classify_names_the_signal_and_its_threshold() {
        assert_eq!(
            t().classify(&some(34.2)),
            Level::High("memory.some avg10=34.20 above 20".into())
        );
        assert_eq!(t().classify(&some(15.0)), Level::Band);
        assert_eq!(t().classify(&some(10.0)), Level::Low);
        let short = Reading { available: Some(Bytes::from_mib(50)), ..some(0.0) };
        assert!(matches!(t().classify(&short), Level::High(c) if c.starts_with("MemAvailable=50")));
        let between = Reading { available: Some(Bytes::from_mib(150)), ..some(0.0) };
        assert_eq!(t().classify(&between), Level::Band);
        // Percentages are of MemTotal: 5% of 16 GiB.
        let pct = Thresholds {
            available_below: Some(MemoryAmount::Percent(5.0)),
            available_release: Some(MemoryAmount::Percent(10.0)),
            ..t()
        };
        let r = Reading { available: Some(Bytes::from_mib(800)), ..some(0.0) };
        assert!(matches!(pct.classify(&r), Level::High(_)));
        // A signal that could not be read neither triggers nor blocks a release.
        assert_eq!(t().classify(&Reading::default()), Level::Low);
    }

    #[test]
    fn freezes_lowest_priority_first_one_step_at_a_time_then_requeues_then_releases() {
        let t = t();
        let mut w = PressureWatch::default();
        let runs = vec![
            running("keep-1", 1, PreemptionMode::Never),
            running("mid-1", 50, PreemptionMode::Suspend),
            running("low-1", 10, PreemptionMode::Requeue),
        ];
        assert_eq!(w.step(&t, &some(30.0), at(0), &runs).action, None);
        assert_eq!(w.step(&t, &some(30.0), at(1), &runs).action, None);
        let d = w.step(&t, &some(30.0), at(2), &runs);
        assert!(d.holding && d.began);
        assert_eq!(
            d.action,
            Some(PressureAction::Freeze {
                run: RunId::new("low-1"),
                cause: "memory.some avg10=30.00 above 20".into()
            })
        );
        // Each action needs trigger_after high readings of its own.
        let runs = vec![runs[0].clone(), runs[1].clone(), frozen("low-1", 10, 2)];
        assert_eq!(w.step(&t, &some(30.0), at(3), &runs).action, None);
        assert_eq!(w.step(&t, &some(30.0), at(4), &runs).action, None);
        let d = w.step(&t, &some(30.0), at(5), &runs);
        assert!(
            matches!(d.action, Some(PressureAction::Freeze { run, .. }) if run.as_str() == "mid-1")
        );
        // Frozen for requeue_after and still high: requeued, lowest first.
        let runs = vec![runs[0].clone(), frozen("mid-1", 50, 5), frozen("low-1", 10, 2)];
        for s in 6..8 {
            assert_eq!(w.step(&t, &some(30.0), at(s), &runs).action, None);
        }
        let d = w.step(&t, &some(30.0), at(12), &runs);
        assert!(
            matches!(d.action, Some(PressureAction::Requeue { run, .. }) if run.as_str() == "low-1")
        );
        // Low for release_after: the highest-priority frozen run first.
        let runs = vec![runs[0].clone(), frozen("mid-1", 50, 5)];
        assert_eq!(w.step(&t, &some(1.0), at(20), &runs).action, None);
        assert!(w.step(&t, &some(1.0), at(24), &runs).holding);
        let d = w.step(&t, &some(1.0), at(25), &runs);
        assert!(
            matches!(d.action, Some(PressureAction::Release { run, .. }) if run.as_str() == "mid-1")
        );
        assert!(d.holding, "the watch is still active until a quiet stretch with nothing frozen");
        let runs = vec![runs[0].clone()];
        assert!(w.step(&t, &some(1.0), at(29), &runs).holding);
        let d = w.step(&t, &some(1.0), at(30), &runs);
        assert!(!d.holding && d.ended && d.action.is_none());
    }

    #[test]
    fn runs_frozen_before_a_restart_hold_new_runs_and_are_released_when_quiet() {
        let t = t();
        let mut w = PressureWatch::default();
        let runs = vec![frozen("low-1", 10, 0)];
        let d = w.step(&t, &some(15.0), at(100), &runs);
        assert!(d.holding && d.began && d.action.is_none());
        w.step(&t, &some(1.0), at(101), &runs);
        let d = w.step(&t, &some(1.0), at(106), &runs);
        assert!(matches!(d.action, Some(PressureAction::Release { .. })));
        assert!(!d.holding && d.ended);
    }

    fn reading_strategy() -> impl Strategy<Value = f64> {
        prop_oneof![0.0..10.0f64, 10.0..=20.0f64, 20.0..100.0f64]
    }

    fn candidates_strategy() -> impl Strategy<Value = Vec<Candidate>> {
        prop::collection::vec((0u16..5, 0u8..3, prop::option::of((0u64..50, any::<bool>()))), 0..6)
            .prop_map(|specs| {
                specs
                    .into_iter()
                    .enumerate()
                    .map(|(i, (p, mode, frozen))| Candidate {
                        run: RunId::new(format!("r-{i}")),
                        priority: Priority::new(p).unwrap(),
                        mode: [
                            PreemptionMode::Suspend,
                            PreemptionMode::Requeue,
                            PreemptionMode::Never,
                        ][usize::from(mode)],
                        state: match frozen {
                            Some((since, released)) => {
                                CandidateState::Frozen { since: at(since), released }
                            }
                            None => CandidateState::Running,
                        },
                    })
                    .collect()
            })
    }

    proptest! {
        /// Readings that swing inside the band (between release and
        /// trigger) never act and never hold new runs.
        #[test]
        fn readings_inside_the_band_never_act(values in prop::collection::vec(10.01..=20.0f64, 1..60)) {
            let t = t();
            let mut w = PressureWatch::default();
            let runs = vec![running("a-1", 1, PreemptionMode::Suspend)];
            for (i, v) in values.iter().enumerate() {
                let d = w.step(&t, &some(*v), at(i as u64), &runs);
                prop_assert_eq!(d.action, None);
                prop_assert!(!d.holding);
            }
        }

        /// High spikes shorter than `trigger_after`, between readings below
        /// the trigger, never freeze or requeue anything.
        #[test]
        fn spikes_shorter_than_the_trigger_never_act(
            spikes in prop::collection::vec((1u32..3, 0.0..=20.0f64), 1..30),
        ) {
            let t = t();
            let mut w = PressureWatch::default();
            let runs = vec![running("a-1", 1, PreemptionMode::Suspend)];
            let mut clock = 0;
            for (len, calm) in spikes {
                for _ in 0..len {
                    clock += 1;
                    prop_assert_eq!(w.step(&t, &some(50.0), at(clock), &runs).action, None);
                }
                clock += 1;
                prop_assert_eq!(w.step(&t, &some(calm), at(clock), &runs).action, None);
            }
        }

        /// Whatever the readings: at most one action per reading; runs of
        /// `preemption: never` are never chosen; a freeze takes the
        /// lowest-priority running run that may be preempted; a requeue
        /// takes a run frozen for at least `requeue_after`; a release
        /// follows `release_after` of low readings and takes an unreleased
        /// frozen run of the highest priority.
        #[test]
        fn actions_follow_the_rules(
            steps in prop::collection::vec((reading_strategy(), candidates_strategy()), 1..60),
        ) {
            let t = t();
            let mut w = PressureWatch::default();
            let mut low_run: Option<u64> = None;
            for (i, (v, cands)) in steps.iter().enumerate() {
                let now = 50 + i as u64;
                let d = w.step(&t, &some(*v), at(now), cands);
                let low = *v <= 10.0;
                let low_from = if low { *low_run.get_or_insert(now) } else { low_run = None; now };
                let Some(action) = d.action else { continue };
                let chosen = cands.iter().find(|c| &c.run == action.run()).expect("a candidate");
                let is_release = matches!(action, PressureAction::Release { .. });
                prop_assert!(chosen.mode != PreemptionMode::Never || is_release, "{:?}", action);
                match &action {
                    PressureAction::Freeze { .. } => {
                        prop_assert!(*v > 20.0);
                        prop_assert_eq!(chosen.state, CandidateState::Running);
                        let lowest = cands.iter()
                            .filter(|c| c.mode != PreemptionMode::Never && c.state == CandidateState::Running)
                            .map(|c| c.priority).min();
                        prop_assert_eq!(Some(chosen.priority), lowest);
                    }
                    PressureAction::Requeue { .. } => {
                        prop_assert!(*v > 20.0);
                        let CandidateState::Frozen { since, .. } = chosen.state else {
                            return Err(TestCaseError::fail("requeued a running run"));
                        };
                        prop_assert!(at(now).since(since) >= t.requeue_after);
                    }
                    PressureAction::Release { .. } => {
                        prop_assert!(low);
                        prop_assert!(now - low_from >= t.release_after.as_secs());
                        let unreleased_frozen =
                            matches!(chosen.state, CandidateState::Frozen { released: false, .. });
                        prop_assert!(unreleased_frozen, "{:?}", chosen);
                        let highest = unreleased(cands).map(|(c, _)| c.priority).max();
                        prop_assert_eq!(Some(chosen.priority), highest);
                        low_run = Some(now);
                    }
                }
            }
        }
    }
}
