//! What a firing does while the job's previous run is still going: the `concurrency` field.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::spec::Concurrency;
use crate::vocab::RunId;

/// A run of the job that has started and not yet ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run: RunId,
    /// The firing it was started for.
    pub scheduled: DateTime<Utc>,
    /// It has been asked to stop, to make way for a newer firing (`replace`).
    pub stopping: bool,
}

/// Why a firing did not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// `forbid`: a previous run was still going.
    Overlap,
    /// `queue`: a previous run was still going and another firing was already waiting.
    QueueFull,
    /// `replace`: the firing was waiting for the runs it replaced to stop when a newer one
    /// came and took its place.
    Superseded,
    /// It waited (`queue`, `replace`) past its `starting_deadline`.
    DeadlineExceeded,
}

impl SkipReason {
    /// The reason as one word, as the journal and logs record it.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Overlap => "overlap",
            SkipReason::QueueFull => "queue_full",
            SkipReason::Superseded => "superseded",
            SkipReason::DeadlineExceeded => "deadline_exceeded",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SkipReason::Overlap => "the previous run was still going (concurrency: forbid)",
            SkipReason::QueueFull => {
                "the previous run was still going and a firing was already waiting (concurrency: queue)"
            }
            SkipReason::Superseded => "a newer firing replaced it while it waited (concurrency: replace)",
            SkipReason::DeadlineExceeded => "it waited past its starting_deadline",
        })
    }
}

/// What a firing does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverlapDecision {
    /// Start a run now.
    Start,
    /// Start nothing; the firing is recorded as skipped.
    Skip { reason: SkipReason },
    /// Ask these runs to stop (gracefully: SIGTERM, then SIGKILL after the grace period),
    /// and start a run once no run of the job is left. The firing waits in the job's queue
    /// slot; one that waited there already is superseded. `stop` leaves out runs already
    /// stopping, so it may be empty.
    ReplaceThenStart { stop: Vec<RunId> },
    /// Start a run once no run of the job is left; the firing waits in the queue slot.
    Queue,
}

/// Decides what a firing does, given the job's runs still going and whether a firing is
/// already waiting for them to end.
pub fn on_fire(policy: Concurrency, active: &[RunSummary], queued: bool) -> OverlapDecision {
    if active.is_empty() {
        // Nothing to wait for. (A waiting firing is started when the last run ends, so one
        // can only be left over here if the policy was changed from `queue` to another.)
        return OverlapDecision::Start;
    }
    match policy {
        Concurrency::Allow => OverlapDecision::Start,
        Concurrency::Forbid => OverlapDecision::Skip { reason: SkipReason::Overlap },
        Concurrency::Replace => OverlapDecision::ReplaceThenStart {
            stop: active.iter().filter(|r| !r.stopping).map(|r| r.run.clone()).collect(),
        },
        Concurrency::Queue if queued => OverlapDecision::Skip { reason: SkipReason::QueueFull },
        Concurrency::Queue => OverlapDecision::Queue,
    }
}

/// What becomes of the firing waiting in the queue slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterRun {
    /// Nothing waits, or it waits on.
    Nothing,
    /// Start the waiting firing now.
    Start { scheduled: DateTime<Utc> },
    /// Drop the waiting firing.
    Drop { scheduled: DateTime<Utc>, reason: SkipReason },
}

/// Decides, when one of the job's runs ends, whether the firing waiting for the job's runs
/// to end starts now. `still_active` are the runs left; `may_start` says whether a firing is
/// still within its starting deadline. A firing past its deadline is dropped even while runs
/// are left, so the agent also asks this on every tick: a stale firing must not hold the
/// slot and turn newer ones away as `QueueFull`.
pub fn on_run_finished(
    still_active: &[RunSummary],
    queued: Option<DateTime<Utc>>,
    may_start: impl FnOnce(DateTime<Utc>) -> bool,
) -> AfterRun {
    match queued {
        None => AfterRun::Nothing,
        Some(scheduled) if !may_start(scheduled) => {
            AfterRun::Drop { scheduled, reason: SkipReason::DeadlineExceeded }
        }
        Some(_) if !still_active.is_empty() => AfterRun::Nothing,
        Some(scheduled) => AfterRun::Start { scheduled },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cron::testutil::utc;

    fn run(id: &str, stopping: bool) -> RunSummary {
        RunSummary { run: RunId::new(id), scheduled: utc("2026-01-01T00:00:00Z"), stopping }
    }

    #[test]
    fn nothing_running_starts_under_every_policy() {
        for policy in
            [Concurrency::Allow, Concurrency::Forbid, Concurrency::Replace, Concurrency::Queue]
        {
            assert_eq!(on_fire(policy, &[], false), OverlapDecision::Start, "{policy:?}");
        }
    }

    #[test]
    fn allow_starts_alongside() {
        assert_eq!(on_fire(Concurrency::Allow, &[run("a", false)], false), OverlapDecision::Start);
    }

    #[test]
    fn forbid_skips_while_a_run_is_going() {
        assert_eq!(
            on_fire(Concurrency::Forbid, &[run("a", false)], false),
            OverlapDecision::Skip { reason: SkipReason::Overlap }
        );
        // A run being stopped is still going.
        assert_eq!(
            on_fire(Concurrency::Forbid, &[run("a", true)], false),
            OverlapDecision::Skip { reason: SkipReason::Overlap }
        );
    }

    #[test]
    fn replace_stops_what_is_not_stopping_yet() {
        assert_eq!(
            on_fire(Concurrency::Replace, &[run("a", false), run("b", true)], false),
            OverlapDecision::ReplaceThenStart { stop: vec![RunId::new("a")] }
        );
        assert_eq!(
            on_fire(Concurrency::Replace, &[run("b", true)], true),
            OverlapDecision::ReplaceThenStart { stop: vec![] }
        );
    }

    #[test]
    fn queue_holds_one_and_skips_the_next() {
        assert_eq!(on_fire(Concurrency::Queue, &[run("a", false)], false), OverlapDecision::Queue);
        assert_eq!(
            on_fire(Concurrency::Queue, &[run("a", false)], true),
            OverlapDecision::Skip { reason: SkipReason::QueueFull }
        );
    }

    #[test]
    fn the_waiting_firing_starts_when_the_last_run_ends() {
        let t = utc("2026-01-01T00:05:00Z");
        assert_eq!(on_run_finished(&[], None, |_| true), AfterRun::Nothing);
        assert_eq!(on_run_finished(&[run("b", false)], Some(t), |_| true), AfterRun::Nothing);
        assert_eq!(on_run_finished(&[], Some(t), |_| true), AfterRun::Start { scheduled: t });
        let dropped = AfterRun::Drop { scheduled: t, reason: SkipReason::DeadlineExceeded };
        assert_eq!(on_run_finished(&[], Some(t), |_| false), dropped);
        assert_eq!(on_run_finished(&[run("b", false)], Some(t), |_| false), dropped);
    }
}
