//! A recurring job's scheduling state: what the agent persists so that a restart neither
//! runs a firing twice nor forgets a run it must not overlap or a firing waiting its turn.
//!
//! The agent drives it with two events: a tick, when the job's next firing is due (and once
//! at start-up), and the end of one of the job's runs. Each returns the [`Action`]s to
//! carry out and the journal records to write. The agent persists the new state and the
//! records together, *then* carries out the actions: a crash in between loses at most the
//! start of a run, never repeats one. After a restart it reloads the state, calls
//! [`CronState::run_ended`] for runs that ended meanwhile (their shims recorded how), repeats
//! [`CronState::pending_stops`], and ticks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::catch_up::plan_catch_up;
use super::concurrency::{
    on_fire, on_run_finished, AfterRun, FireDecision, RunSummary, SkipReason,
};
use super::job::CronJob;
use super::journal::{FiringOutcome, FiringRecord};
use crate::placement::RunId;

/// The persisted scheduling state of one recurring job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronState {
    /// Every firing scheduled at or before this instant has been decided. `None` until the
    /// job's first tick: a job new to the agent catches nothing up.
    pub last_considered: Option<DateTime<Utc>>,
    /// A firing waiting for the job's runs to end (`queue`), or for the runs it replaces to
    /// stop (`replace`).
    pub queued: Option<DateTime<Utc>>,
    /// The job's runs that have started and not ended, oldest first.
    pub active: Vec<RunSummary>,
}

/// Something for the agent to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a run of the job, with this id, for this firing.
    Start { run: RunId, scheduled: DateTime<Utc> },
    /// Stop a run gracefully (SIGTERM, the grace period, SIGKILL).
    Stop { run: RunId },
}

/// What one event produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decisions {
    pub actions: Vec<Action>,
    /// Journal records, to be written with the state.
    pub records: Vec<FiringRecord>,
    /// When to tick next: when the next firing is due. `None`: never again.
    pub wake_at: Option<DateTime<Utc>>,
}

impl CronState {
    /// Decides every firing due by `now`. `max_starts` caps the runs one tick starts;
    /// `new_run` names a run about to be started.
    pub fn tick(
        &mut self,
        job: &CronJob<'_>,
        now: DateTime<Utc>,
        max_starts: u32,
        new_run: &mut dyn FnMut() -> RunId,
    ) -> Decisions {
        let mut out = Decisions::default();
        self.settle_queue(job, now, new_run, &mut out);
        let plan = plan_catch_up(job, self.last_considered, now, max_starts);
        if let Some(missed) = plan.missed {
            out.records.push(FiringRecord {
                job: job.name.clone(),
                scheduled: missed.first,
                decided_at: now,
                outcome: FiringOutcome::Missed {
                    count: missed.count,
                    last: missed.last,
                    suspended: job.recurrence.suspend,
                },
            });
        }
        for scheduled in plan.to_start {
            self.fire(job, scheduled, now, new_run, &mut out);
        }
        self.last_considered = Some(plan.last_considered);
        out.wake_at = self.wake_at(job);
        out
    }

    /// One of the job's runs ended (or was found ended after a restart): the firing waiting
    /// for it may start.
    pub fn run_ended(
        &mut self,
        job: &CronJob<'_>,
        run: &RunId,
        now: DateTime<Utc>,
        new_run: &mut dyn FnMut() -> RunId,
    ) -> Decisions {
        let mut out = Decisions::default();
        self.active.retain(|r| &r.run != run);
        self.settle_queue(job, now, new_run, &mut out);
        out.wake_at = self.wake_at(job);
        out
    }

    /// Stops decided before a restart, which may not have been carried out. Stopping a run
    /// twice is harmless; not stopping it would leave the replacing firing waiting forever.
    pub fn pending_stops(&self) -> Vec<Action> {
        self.active
            .iter()
            .filter(|r| r.stopping)
            .map(|r| Action::Stop { run: r.run.clone() })
            .collect()
    }

    /// When the job's next firing is due, once it has ticked.
    pub fn wake_at(&self, job: &CronJob<'_>) -> Option<DateTime<Utc>> {
        job.next_due(self.last_considered?).map(|due| due.at)
    }

    fn fire(
        &mut self,
        job: &CronJob<'_>,
        scheduled: DateTime<Utc>,
        now: DateTime<Utc>,
        new_run: &mut dyn FnMut() -> RunId,
        out: &mut Decisions,
    ) {
        match on_fire(job.recurrence.concurrency, &self.active, self.queued.is_some()) {
            FireDecision::Start => self.start(job, scheduled, now, new_run, out),
            FireDecision::Skip { reason } => out.records.push(skipped(job, scheduled, now, reason)),
            FireDecision::ReplaceThenStart { stop } => {
                for run in stop {
                    if let Some(active) = self.active.iter_mut().find(|r| r.run == run) {
                        active.stopping = true;
                    }
                    out.actions.push(Action::Stop { run });
                }
                if let Some(waiting) = self.queued.replace(scheduled) {
                    out.records.push(skipped(job, waiting, now, SkipReason::Superseded));
                }
            }
            FireDecision::Queue => self.queued = Some(scheduled),
        }
    }

    fn settle_queue(
        &mut self,
        job: &CronJob<'_>,
        now: DateTime<Utc>,
        new_run: &mut dyn FnMut() -> RunId,
        out: &mut Decisions,
    ) {
        match on_run_finished(&self.active, self.queued, |t| job.may_start(t, now)) {
            AfterRun::Nothing => {}
            AfterRun::Start { scheduled } => {
                self.queued = None;
                self.start(job, scheduled, now, new_run, out);
            }
            AfterRun::Drop { scheduled, reason } => {
                self.queued = None;
                out.records.push(skipped(job, scheduled, now, reason));
            }
        }
    }

    fn start(
        &mut self,
        job: &CronJob<'_>,
        scheduled: DateTime<Utc>,
        now: DateTime<Utc>,
        new_run: &mut dyn FnMut() -> RunId,
        out: &mut Decisions,
    ) {
        let run = new_run();
        self.active.push(RunSummary { run: run.clone(), scheduled, stopping: false });
        out.records.push(FiringRecord {
            job: job.name.clone(),
            scheduled,
            decided_at: now,
            outcome: FiringOutcome::started(run.clone(), job.due(scheduled), now),
        });
        out.actions.push(Action::Start { run, scheduled });
    }
}

fn skipped(
    job: &CronJob<'_>,
    scheduled: DateTime<Utc>,
    now: DateTime<Utc>,
    reason: SkipReason,
) -> FiringRecord {
    FiringRecord {
        job: job.name.clone(),
        scheduled,
        decided_at: now,
        outcome: FiringOutcome::Skipped { reason },
    }
}
