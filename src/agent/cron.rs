//! Recurring jobs under the agent: the pure cron engine ([`crate::scheduler::cron`])
//! wired to the supervisor, the store and the clock.
//!
//! Each recurring job has a [`CronState`]: the last time it was considered,
//! the firing waiting its turn (`queue`, `replace`) and its runs under way.
//! The engine is asked what to do at three moments:
//!
//! - when the job's next firing is due ([`CronState::tick`]): the agent wakes
//!   at [`CronJobs::next_wake`], through the main loop's next deadline, on
//!   the injected clock's calendar time (see [`clock`](super::clock));
//! - when one of its runs ends ([`CronState::run_ended`]), from the
//!   supervisor's `finish`;
//! - when its file is read or changes, which also ticks it: after a restart
//!   that is the catch-up over the downtime.
//!
//! Every step goes the same way: the engine decides on a copy of the state;
//! the store records the new state, the step's journal entries and the runs
//! they start in **one transaction** ([`CronJournal::commit_cron`](crate::store::CronJournal::commit_cron)); only then
//! are runs queued (and placed by the scheduling pass like any other run) or
//! stopped. A crash before the commit loses the step: it is decided again at
//! restart, and a firing that is then late counts as missed (`catch_up`
//! decides). A crash after it finds the runs in the store and the firings
//! decided: nothing starts twice, and the state still says which runs a
//! `forbid` firing must not overlap and which firing waits its turn.
//!
//! Runs of recurring jobs are ordinary runs of the supervisor (restart, OOM,
//! timeout, preemption policies apply), but they are not "the run under way"
//! of their job (see `RunTable` in [`runs`](super::runs)): a job may have several (`allow`), and they are
//! found through the cron state instead.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use tracing::{info, warn};

use crate::api::{Accepted, ControlError};
use crate::metrics::events::CronFired;
use crate::metrics::{Event as _, Metrics};
use crate::scheduler::cron::{self, CronJob, CronState, Decisions, FiringOutcome};
use crate::scheduler::{RunMeta, RunState};
use crate::spec::{JobSpec, Recurrence};
use crate::store::{CronDecision, Decided, JobVersion, RunStore};
use crate::vocab::parse_run_id;
use crate::vocab::run_id;
use crate::vocab::JobName;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

use super::error::AgentError;

/// The environment variable that tells a run of a recurring job the firing
/// it is for: the scheduled time, RFC 3339 in UTC (`2026-05-01T12:10:00Z`).
pub const SCHEDULED_AT_ENV: &str = "CORRAL_SCHEDULED_AT";

/// Journal entries kept per job; older ones are pruned with each step.
/// Enough for weeks of an hourly job, and a bound for a per-second one.
pub const JOURNAL_KEEP: u32 = 1000;

/// What the agent's configuration says about recurring jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSettings {
    /// The zone of schedules without `timezone`.
    pub default_tz: Tz,
    /// This machine's name, for the jitter offsets (the host name, as
    /// `corral schedule` uses).
    pub node: String,
    /// The most runs one step of one job starts (see `catch_up_limit`).
    pub catch_up_limit: u32,
}

impl Default for CronSettings {
    fn default() -> Self {
        CronSettings { default_tz: Tz::UTC, node: String::new(), catch_up_limit: 100 }
    }
}

/// The recurring jobs the agent knows.
#[derive(Debug, Default)]
pub struct CronJobs {
    pub(super) settings: CronSettings,
    jobs: BTreeMap<JobName, Scheduled>,
    /// The agent is shutting down: nothing more fires.
    stopped: bool,
}

#[derive(Debug)]
struct Scheduled {
    state: CronState,
    /// The version in force; `None` after a restart until the jobs directory
    /// has been read.
    spec: Option<Arc<JobSpec>>,
    /// When to tick it next; `None` while suspended or before its file is read.
    wake_at: Option<Timestamp>,
}

impl CronJobs {
    pub fn new(settings: CronSettings) -> CronJobs {
        CronJobs { settings, ..CronJobs::default() }
    }

    /// When the next firing of any job is due.
    pub fn next_wake(&self) -> Option<Timestamp> {
        if self.stopped {
            return None;
        }
        self.jobs.values().filter_map(|j| j.wake_at).min()
    }

    /// When `job` is next due (its jitter included), for the metrics and API;
    /// `None` for a one-shot or suspended job.
    pub fn next_fire(&self, job: &JobName) -> Option<DateTime<Utc>> {
        self.jobs.get(job)?.wake_at?.to_datetime()
    }

    /// The job whose cron state lists `run` among its runs under way.
    pub fn owner(&self, run: &RunId) -> Option<&JobName> {
        self.jobs
            .iter()
            .find(|(_, j)| j.state.active.iter().any(|r| &r.run == run))
            .map(|(name, _)| name)
    }

    /// The firing `run` was started for.
    pub fn scheduled_of(&self, run: &RunId) -> Option<DateTime<Utc>> {
        self.jobs
            .values()
            .flat_map(|j| &j.state.active)
            .find(|r| &r.run == run)
            .map(|r| r.scheduled)
    }

    /// The variables a run of a recurring job gets beside its job's `env`.
    pub fn env_for(&self, run: &RunId) -> BTreeMap<String, String> {
        self.scheduled_of(run)
            .map(|t| (SCHEDULED_AT_ENV.to_owned(), t.to_rfc3339_opts(SecondsFormat::Secs, true)))
            .into_iter()
            .collect()
    }

    /// The job's cron state, as last committed.
    pub fn state(&self, job: &JobName) -> Option<&CronState> {
        self.jobs.get(job).map(|j| &j.state)
    }

    fn job<'a>(&'a self, name: &'a JobName, recurrence: &'a Recurrence) -> CronJob<'a> {
        CronJob::new(name, recurrence, self.settings.default_tz, &self.settings.node)
    }

    fn due(&self, now: Timestamp) -> Vec<JobName> {
        self.jobs
            .iter()
            .filter(|(_, j)| j.wake_at.is_some_and(|at| at <= now))
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// Whether a new version of a job moves its firings (as opposed to changing
/// what a firing does).
fn timing_changed(old: &Recurrence, new: &Recurrence) -> bool {
    old.schedule.as_str() != new.schedule.as_str()
        || old.timezone != new.timezone
        || old.jitter != new.jitter
}

fn instant(t: Timestamp) -> DateTime<Utc> {
    t.to_datetime().unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Names the runs one step starts: the job's next ids, in order, as the
/// store will make them in the step's transaction.
struct NextIds {
    job: JobName,
    seq: u64,
}

impl NextIds {
    fn new(job: &JobName, next: &RunId) -> NextIds {
        let seq = parse_run_id(next).map_or(1, |(_, seq)| seq);
        NextIds { job: job.clone(), seq }
    }

    fn take(&mut self) -> RunId {
        let id = run_id(&self.job, self.seq);
        self.seq += 1;
        id
    }
}

/// What a step of the cron engine asks of the supervisor, once the step is
/// on record.
#[derive(Debug)]
pub(super) enum CronOrder {
    /// Queue a run the step created in the store.
    Start(Box<NewRun>),
    /// Stop `run` gracefully: `by` replaces it (`concurrency: replace`).
    Stop { run: RunId, by: String },
}

/// Run `run` of `job`, created in the store in state `initial`.
#[derive(Debug)]
pub(super) struct NewRun {
    pub run: RunId,
    pub job: JobName,
    pub spec: Arc<JobSpec>,
    pub meta: RunMeta,
    pub fingerprint: String,
    pub initial: RunState,
}

/// What a cron step records with and reads the time from.
pub(super) struct CronStep<'a, S: RunStore> {
    pub store: &'a mut S,
    /// Now on the runs' time line: the new runs' creation time.
    pub now: Timestamp,
    /// Now on the calendar, which firings are decided on.
    pub calendar: Timestamp,
    /// Stop grace of jobs that set none, for the new runs' policy.
    pub default_grace: Duration,
    /// Where each decision on record is counted, when the agent counts.
    pub metrics: Option<&'a Metrics>,
}

impl CronJobs {
    /// Reads every recurring job's cron state (at start, before the runs are
    /// re-adopted, so that the runs of recurring jobs are known as such).
    pub(super) fn load<S: RunStore>(&mut self, store: &S) -> Result<(), AgentError> {
        for (name, state) in store.cron_states()? {
            self.jobs.insert(name, Scheduled { state, spec: None, wake_at: None });
        }
        Ok(())
    }

    /// After re-adoption: runs a state lists that are not `live` (they ended
    /// and the agent stopped before it noted it) leave the state.
    pub(super) fn recovered<S: RunStore>(
        &mut self,
        step: &mut CronStep<'_, S>,
        live: impl Fn(&RunId) -> bool,
    ) -> Result<Vec<CronOrder>, AgentError> {
        let mut orders = Vec::new();
        let names: Vec<JobName> = self.jobs.keys().cloned().collect();
        for name in names {
            let entry = &self.jobs[&name];
            let mut state = entry.state.clone();
            state.active.retain(|r| live(&r.run));
            if state != entry.state {
                orders.extend(self.commit(step, &name, None, state, Decisions::default())?);
            }
        }
        Ok(orders)
    }

    /// The agent is shutting down: no firing starts anything any more.
    pub(super) fn stop(&mut self) {
        self.stopped = true;
    }

    /// Job `name` is no longer recurring: its schedule is forgotten. Returns
    /// its runs under way, oldest first, if it was recurring.
    pub(super) fn forget<S: RunStore>(
        &mut self,
        store: &mut S,
        name: &JobName,
    ) -> Result<Option<Vec<RunId>>, AgentError> {
        let Some(entry) = self.jobs.remove(name) else { return Ok(None) };
        store.forget_cron(name)?;
        Ok(Some(entry.state.active.into_iter().map(|r| r.run).collect()))
    }

    /// `spec`, recurring, is now the version of job `name` in force; returns
    /// the version it replaces (`None` the first time the job is seen since
    /// the agent started).
    pub(super) fn set_version(
        &mut self,
        name: &JobName,
        spec: &Arc<JobSpec>,
    ) -> Option<Arc<JobSpec>> {
        let entry = self.jobs.entry(name.clone()).or_insert_with(|| Scheduled {
            state: CronState::default(),
            spec: None,
            wake_at: None,
        });
        entry.spec.replace(Arc::clone(spec))
    }

    /// The stops the state decided that may not have been carried out before
    /// a restart.
    pub(super) fn pending_stops(&self, name: &JobName) -> Vec<CronOrder> {
        let Some(entry) = self.jobs.get(name) else { return Vec::new() };
        entry
            .state
            .pending_stops()
            .into_iter()
            .filter_map(|action| match action {
                cron::CronAction::Stop { run } => Some(self.stop_order(name, run)),
                cron::CronAction::Start { .. } => None,
            })
            .collect()
    }

    /// After a new version `new` of `name` replaced `old`: if its firings
    /// moved, the schedule applies from the next firing.
    pub(super) fn reschedule<S: RunStore>(
        &mut self,
        step: &mut CronStep<'_, S>,
        name: &JobName,
        old: &JobSpec,
        new: &Arc<JobSpec>,
    ) -> Result<Vec<CronOrder>, AgentError> {
        let (Some(old_rec), Some(new_rec)) = (&old.recurrence, &new.recurrence) else {
            return Ok(Vec::new());
        };
        if !timing_changed(old_rec, new_rec) {
            return Ok(Vec::new());
        }
        let Some(entry) = self.jobs.get(name) else { return Ok(Vec::new()) };
        let mut state = entry.state.clone();
        state.reschedule(&self.job(name, new_rec), instant(step.calendar));
        // The tick that follows sets the wake-up.
        let orders = self.commit(step, name, Some(new), state, Decisions::default())?;
        info!(job = %name, schedule = new_rec.schedule.as_str(), "schedule changed: it applies from the next firing");
        Ok(orders)
    }

    /// The runs under way of recurring job `name`, oldest first.
    pub(super) fn active_runs(&self, name: &JobName) -> Vec<RunId> {
        self.jobs
            .get(name)
            .map_or_else(Vec::new, |j| j.state.active.iter().map(|r| r.run.clone()).collect())
    }

    /// Says when `name` fires next, once its version is in force.
    pub(super) fn log_next(&self, name: &JobName, spec: &JobSpec) {
        let wake_at = self.jobs.get(name).and_then(|j| j.wake_at);
        match (wake_at.and_then(Timestamp::to_datetime), spec.recurrence.as_ref()) {
            (Some(at), _) => info!(
                job = %name,
                "recurring job: next run due at {}",
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
            (None, Some(r)) if r.suspend => {
                info!(job = %name, "recurring job suspended: nothing starts until its file resumes it")
            }
            _ => info!(job = %name, "recurring job: its schedule fires no more"),
        }
    }

    /// Jobs known from the store whose file has not been read: once the
    /// jobs directory has been read, their files are gone.
    pub(super) fn unread(&self) -> Vec<JobName> {
        self.jobs.iter().filter(|(_, j)| j.spec.is_none()).map(|(n, _)| n.clone()).collect()
    }

    /// Ticks every job whose next firing is due at `step.calendar`.
    pub(super) fn wake<S: RunStore>(
        &mut self,
        step: &mut CronStep<'_, S>,
    ) -> Result<Vec<CronOrder>, AgentError> {
        let mut orders = Vec::new();
        if self.stopped {
            return Ok(orders);
        }
        for name in self.due(step.calendar) {
            if let Some(spec) = self.jobs.get(&name).and_then(|j| j.spec.clone()) {
                orders.extend(self.tick(step, &name, &spec)?);
            }
        }
        Ok(orders)
    }

    /// Run `run` of job `job` is over: the firing waiting for it may start.
    pub(super) fn run_finished<S: RunStore>(
        &mut self,
        step: &mut CronStep<'_, S>,
        job: &JobName,
        run: &RunId,
    ) -> Result<Vec<CronOrder>, AgentError> {
        let Some(entry) = self.jobs.get(job) else { return Ok(Vec::new()) };
        if !entry.state.active.iter().any(|r| &r.run == run) {
            return Ok(Vec::new());
        }
        let mut state = entry.state.clone();
        let spec = entry.spec.clone();
        let recurrence = spec.as_ref().and_then(|s| s.recurrence.as_ref());
        let decisions = match (recurrence, self.stopped) {
            (Some(recurrence), false) => {
                let now = instant(step.calendar);
                let next = step.store.next_run_id(job)?;
                let mut ids = NextIds::new(job, &next);
                let cron_job = self.job(job, recurrence);
                state.run_ended(&cron_job, run, now, &mut || ids.take())
            }
            // Its file has not been read since a restart, or the agent is
            // stopping: the run leaves the state, and the next tick decides
            // what waits.
            _ => {
                state.active.retain(|r| &r.run != run);
                Decisions {
                    wake_at: entry.wake_at.and_then(|t| t.to_datetime()),
                    ..Decisions::default()
                }
            }
        };
        self.commit(step, job, spec.as_ref(), state, decisions)
    }

    /// Decides every firing of `name` due now, under version `spec`.
    pub(super) fn tick<S: RunStore>(
        &mut self,
        step: &mut CronStep<'_, S>,
        name: &JobName,
        spec: &Arc<JobSpec>,
    ) -> Result<Vec<CronOrder>, AgentError> {
        let Some(recurrence) = &spec.recurrence else { return Ok(Vec::new()) };
        if self.stopped {
            return Ok(Vec::new());
        }
        let Some(entry) = self.jobs.get(name) else { return Ok(Vec::new()) };
        let mut state = entry.state.clone();
        let now = instant(step.calendar);
        let next = step.store.next_run_id(name)?;
        let mut ids = NextIds::new(name, &next);
        let job = self.job(name, recurrence);
        let mut decisions = state.tick(&job, now, self.settings.catch_up_limit, &mut || ids.take());
        if recurrence.suspend {
            // A suspended job is looked at again when its file changes (or
            // the agent restarts), not at each of its firings: its firings
            // are then recorded as missed while suspended, in one entry.
            decisions.wake_at = None;
        }
        self.commit(step, name, Some(spec), state, decisions)
    }

    /// Fires recurring job `name` now, on request. Answers what became of
    /// the firing, or why there is none, with what to carry out.
    pub(super) fn trigger<S: RunStore>(
        &mut self,
        step: &mut CronStep<'_, S>,
        name: &JobName,
    ) -> Result<(Result<Accepted, ControlError>, Vec<CronOrder>), AgentError> {
        let refused = |why: ControlError| Ok((Err(why), Vec::new()));
        let Some(entry) = self.jobs.get(name) else {
            return refused(ControlError::NotScheduled { job: name.clone() });
        };
        if self.stopped {
            return refused(ControlError::ShuttingDown);
        }
        let Some(spec) = entry.spec.clone() else {
            return refused(ControlError::JobNotRead { job: name.clone() });
        };
        let Some(recurrence) = &spec.recurrence else {
            return refused(ControlError::NotRecurring { job: name.clone() });
        };
        let mut state = entry.state.clone();
        let now = instant(step.calendar);
        let next = step.store.next_run_id(name)?;
        let mut ids = NextIds::new(name, &next);
        let job = self.job(name, recurrence);
        let mut decisions = state.trigger(&job, now, &mut || ids.take());
        if recurrence.suspend {
            decisions.wake_at = None;
        }
        let outcome = match decisions.records.first().map(|r| &r.outcome) {
            Some(FiringOutcome::Started { run } | FiringOutcome::Late { run, .. }) => {
                Ok(Accepted::Started { run: run.clone() })
            }
            Some(FiringOutcome::Skipped { reason }) => {
                Err(ControlError::Skipped { reason: reason.to_string() })
            }
            _ if state.queued == Some(now) => Ok(Accepted::QueuedBehind),
            _ => Err(ControlError::NotStarted),
        };
        let orders = self.commit(step, name, Some(&spec), state, decisions)?;
        Ok((outcome, orders))
    }

    /// Records the step (state, journal, new runs) in one transaction, then
    /// says what to carry out.
    fn commit<S: RunStore>(
        &mut self,
        step: &mut CronStep<'_, S>,
        name: &JobName,
        spec: Option<&Arc<JobSpec>>,
        mut state: CronState,
        decisions: Decisions,
    ) -> Result<Vec<CronOrder>, AgentError> {
        let Some(entry) = self.jobs.get_mut(name) else { return Ok(Vec::new()) };
        let wake_at = decisions.wake_at.map(Timestamp::from);
        if state == entry.state && decisions.records.is_empty() && decisions.actions.is_empty() {
            entry.wake_at = wake_at;
            return Ok(Vec::new());
        }
        // The run each start creates, as the store records it and as it is
        // then queued.
        let mut new_runs: HashMap<RunId, RunState> = HashMap::new();
        // Every run one step starts is of the same version, worked out once.
        let mut version: Option<(RunMeta, JobVersion)> = None;
        let mut batch = Vec::with_capacity(decisions.records.len());
        for record in &decisions.records {
            let decision = match &record.outcome {
                FiringOutcome::Started { run } | FiringOutcome::Late { run, .. } => {
                    let spec = spec.expect("only a known version starts runs");
                    // Runs live on the supervisor's time line; decisions on the calendar's.
                    let initial = RunState::new(spec.resources.memory.hard, step.now);
                    let (_, version) = version.get_or_insert_with(|| {
                        let meta = RunMeta::of(spec, step.default_grace);
                        let version = super::job::version(&meta, spec);
                        (meta, version)
                    });
                    new_runs.insert(run.clone(), initial.clone());
                    CronDecision::Start { run: run.clone(), initial, version: version.clone() }
                }
                FiringOutcome::Skipped { reason } => {
                    CronDecision::Skip { reason: reason.as_str().to_owned() }
                }
                FiringOutcome::Missed { count, last, suspended } => CronDecision::Missed {
                    count: *count,
                    last: Timestamp::from(*last),
                    suspended: *suspended,
                },
            };
            batch.push((Timestamp::from(record.scheduled), decision));
        }
        let answers = step.store.commit_cron(name, &state, step.calendar, &batch, JOURNAL_KEEP)?;
        // Only a store that lost its cron state but kept its journal says a
        // firing was decided before; its run is then not started again.
        for (answer, record) in answers.iter().zip(&decisions.records) {
            if let Decided::AlreadyDecided(earlier) = answer {
                warn!(job = %name, scheduled = %record.scheduled, "firing already decided ({:?}); not deciding it again", earlier.outcome);
                if let Some(run) = record.outcome.run() {
                    new_runs.remove(run);
                    state.active.retain(|r| &r.run != run);
                }
            }
        }
        entry.state = state;
        entry.wake_at = wake_at;
        if let Some(metrics) = step.metrics {
            for (answer, record) in answers.iter().zip(&decisions.records) {
                if matches!(answer, Decided::Recorded { .. }) {
                    // One line and one count per decision, at the moment it is on record.
                    CronFired { record }.emit(metrics.agent());
                }
            }
        }
        // Carried out only now that they are on record.
        let mut orders = Vec::new();
        for action in decisions.actions {
            match action {
                cron::CronAction::Start { run, .. } => {
                    let (Some(initial), Some(spec), Some((meta, version))) =
                        (new_runs.remove(&run), spec, &version)
                    else {
                        continue;
                    };
                    orders.push(CronOrder::Start(Box::new(NewRun {
                        run,
                        job: name.clone(),
                        spec: Arc::clone(spec),
                        meta: meta.clone(),
                        fingerprint: version.fingerprint.clone(),
                        initial,
                    })));
                }
                cron::CronAction::Stop { run } => orders.push(self.stop_order(name, run)),
            }
        }
        Ok(orders)
    }

    /// Stops `run` gracefully for the firing of `name` that replaces it.
    fn stop_order(&self, name: &JobName, run: RunId) -> CronOrder {
        let waiting = self.jobs.get(name).and_then(|j| j.state.queued);
        let by = match waiting {
            Some(t) => format!(
                "the firing scheduled at {} (concurrency: replace)",
                t.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
            None => "a newer firing (concurrency: replace)".to_owned(),
        };
        CronOrder::Stop { run, by }
    }
}

#[cfg(test)]
mod tests;
