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
//! of their job (`by_job`): a job may have several (`allow`), and they are
//! found through the cron state instead.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use tracing::{info, warn};

use crate::metrics::events::CronFired;
use crate::metrics::Event as _;
use crate::scheduler::cron::{self, CronJob, CronState, Decisions, FiringOutcome};
use crate::scheduler::{Event, RunState, StopReason};
use crate::spec::{JobSpec, Recurrence};
use crate::store::{CronDecision, Decided, JobVersion, RunStore};
use crate::vocab::parse_run_id;
use crate::vocab::run_id;
use crate::vocab::JobName;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

use super::error::AgentError;
use super::job::RunMeta;
use super::runtime::Runtime;
use super::supervisor::Supervisor;

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

impl<R: Runtime, S: RunStore> Supervisor<R, S> {
    /// Reads every recurring job's cron state (at start, before the runs are
    /// re-adopted, so that the runs of recurring jobs are known as such).
    pub(super) fn cron_load(&mut self) -> Result<(), AgentError> {
        for (name, state) in self.store.cron_states()? {
            self.cron.jobs.insert(name, Scheduled { state, spec: None, wake_at: None });
        }
        Ok(())
    }

    /// After re-adoption: runs a state lists that the store has as over (they
    /// ended and the agent stopped before it noted it) leave the state.
    pub(super) fn cron_recovered(&mut self) -> Result<(), AgentError> {
        let names: Vec<JobName> = self.cron.jobs.keys().cloned().collect();
        for name in names {
            let entry = &self.cron.jobs[&name];
            let mut state = entry.state.clone();
            state.active.retain(|r| self.runs.contains_key(&r.run));
            if state != entry.state {
                self.cron_commit(&name, None, state, Decisions::default())?;
            }
        }
        Ok(())
    }

    /// The agent is shutting down: no firing starts anything any more.
    pub(super) fn cron_stop(&mut self) {
        self.cron.stopped = true;
    }

    /// `spec` is now the version of job `name` in force (added or changed).
    /// Its cron side: the schedule starts or follows the change, its runs
    /// under way take the new version, and it ticks.
    pub(super) fn cron_job_in_force(
        &mut self,
        name: &JobName,
        spec: &Arc<JobSpec>,
    ) -> Result<(), AgentError> {
        if spec.recurrence.is_none() {
            if let Some(entry) = self.cron.jobs.remove(name) {
                // No longer recurring: its newest run is the job's run under way.
                self.store.forget_cron(name)?;
                info!(job = %name, "the job has no schedule any more: nothing fires from now on");
                if let Some(newest) = entry.state.active.last() {
                    self.by_job.entry(name.clone()).or_insert_with(|| newest.run.clone());
                }
                for run in entry.state.active {
                    self.take_over(&run.run, Arc::clone(spec))?;
                }
            }
            return Ok(());
        }
        let entry = self.cron.jobs.entry(name.clone()).or_insert_with(|| Scheduled {
            state: CronState::default(),
            spec: None,
            wake_at: None,
        });
        match entry.spec.replace(Arc::clone(spec)) {
            None => {
                // First sight since the agent started: stops decided before a
                // restart may not have been carried out.
                for action in entry.state.pending_stops() {
                    if let cron::CronAction::Stop { run } = action {
                        self.cron_stop_run(name, &run)?;
                    }
                }
            }
            Some(old) => {
                // What fell due under the old version is decided by it.
                self.cron_tick(name, &old)?;
                if let (Some(old_rec), Some(new_rec)) = (&old.recurrence, &spec.recurrence) {
                    if timing_changed(old_rec, new_rec) {
                        let now = instant(self.clock.calendar());
                        let job = self.cron.job(name, new_rec);
                        let mut state = self.cron.jobs[name].state.clone();
                        state.reschedule(&job, now);
                        // The tick below sets the wake-up.
                        self.cron_commit(name, Some(spec), state, Decisions::default())?;
                        info!(job = %name, schedule = new_rec.schedule.as_str(), "schedule changed: it applies from the next firing");
                    }
                }
            }
        }
        let runs: Vec<RunId> =
            self.cron.jobs[name].state.active.iter().map(|r| r.run.clone()).collect();
        for run in runs {
            self.take_over(&run, Arc::clone(spec))?;
        }
        self.cron_tick(name, spec)?;
        let wake_at = self.cron.jobs.get(name).and_then(|j| j.wake_at);
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
        Ok(())
    }

    /// Job `name` is gone from the jobs directory: its schedule stops, and its
    /// runs under way are stopped or left to finish (`on_removal`).
    pub(super) fn cron_job_gone(&mut self, name: &JobName) -> Result<(), AgentError> {
        let Some(entry) = self.cron.jobs.remove(name) else { return Ok(()) };
        self.store.forget_cron(name)?;
        info!(job = %name, "recurring job removed: its schedule stops");
        for run in entry.state.active {
            self.stop_for_removal(&run.run)?;
        }
        Ok(())
    }

    /// The jobs directory has been read for the first time: recurring jobs
    /// known from the store whose file is gone are removed.
    pub(super) fn cron_files_read(&mut self) -> Result<(), AgentError> {
        let gone: Vec<JobName> = self
            .cron
            .jobs
            .iter()
            .filter(|(_, j)| j.spec.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            self.cron_job_gone(&name)?;
        }
        Ok(())
    }

    /// Ticks every job whose next firing is due at `now`.
    pub(super) fn cron_wake(&mut self, now: Timestamp) -> Result<(), AgentError> {
        if self.cron.stopped {
            return Ok(());
        }
        for name in self.cron.due(now) {
            if let Some(spec) = self.cron.jobs.get(&name).and_then(|j| j.spec.clone()) {
                self.cron_tick(&name, &spec)?;
            }
        }
        Ok(())
    }

    /// Run `run` of job `job` is over: the firing waiting for it may start.
    pub(super) fn cron_run_finished(
        &mut self,
        job: &JobName,
        run: &RunId,
    ) -> Result<(), AgentError> {
        let Some(entry) = self.cron.jobs.get(job) else { return Ok(()) };
        if !entry.state.active.iter().any(|r| &r.run == run) {
            return Ok(());
        }
        let mut state = entry.state.clone();
        let spec = entry.spec.clone();
        let recurrence = spec.as_ref().and_then(|s| s.recurrence.as_ref());
        let decisions = match (recurrence, self.cron.stopped) {
            (Some(recurrence), false) => {
                let now = instant(self.clock.calendar());
                let next = self.store.next_run_id(job)?;
                let mut ids = NextIds::new(job, &next);
                let cron_job = self.cron.job(job, recurrence);
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
        self.cron_commit(job, spec.as_ref(), state, decisions)
    }

    /// Decides every firing of `name` due now, under version `spec`.
    fn cron_tick(&mut self, name: &JobName, spec: &Arc<JobSpec>) -> Result<(), AgentError> {
        let Some(recurrence) = &spec.recurrence else { return Ok(()) };
        if self.cron.stopped {
            return Ok(());
        }
        let Some(entry) = self.cron.jobs.get(name) else { return Ok(()) };
        let mut state = entry.state.clone();
        let now = instant(self.clock.calendar());
        let next = self.store.next_run_id(name)?;
        let mut ids = NextIds::new(name, &next);
        let job = self.cron.job(name, recurrence);
        let mut decisions =
            state.tick(&job, now, self.cron.settings.catch_up_limit, &mut || ids.take());
        if recurrence.suspend {
            // A suspended job is looked at again when its file changes (or
            // the agent restarts), not at each of its firings: its firings
            // are then recorded as missed while suspended, in one entry.
            decisions.wake_at = None;
        }
        self.cron_commit(name, Some(spec), state, decisions)
    }

    /// Fires recurring job `name` now, on request. Answers what became of
    /// the firing, or why there is none.
    pub(super) fn cron_trigger(
        &mut self,
        name: &JobName,
    ) -> Result<Result<String, String>, AgentError> {
        let Some(entry) = self.cron.jobs.get(name) else {
            return Ok(Err(format!("{name} is not a recurring job the agent runs")));
        };
        if self.cron.stopped {
            return Ok(Err("the agent is shutting down".into()));
        }
        let Some(spec) = entry.spec.clone() else {
            return Ok(Err(format!("the job file of {name} has not been read yet")));
        };
        let Some(recurrence) = &spec.recurrence else {
            return Ok(Err(format!("{name} is not a recurring job")));
        };
        let mut state = entry.state.clone();
        let now = instant(self.clock.calendar());
        let next = self.store.next_run_id(name)?;
        let mut ids = NextIds::new(name, &next);
        let job = self.cron.job(name, recurrence);
        let mut decisions = state.trigger(&job, now, &mut || ids.take());
        if recurrence.suspend {
            decisions.wake_at = None;
        }
        let outcome = match decisions.records.first().map(|r| &r.outcome) {
            Some(FiringOutcome::Started { run } | FiringOutcome::Late { run, .. }) => {
                Ok(format!("started {run}"))
            }
            Some(FiringOutcome::Skipped { reason }) => Err(format!("not started: {reason}")),
            _ if state.queued == Some(now) => {
                Ok("queued behind the runs under way (concurrency: queue or replace)".into())
            }
            _ => Err("not started".into()),
        };
        self.cron_commit(name, Some(&spec), state, decisions)?;
        Ok(outcome)
    }

    /// Records the step (state, journal, new runs) in one transaction, then
    /// carries it out.
    fn cron_commit(
        &mut self,
        name: &JobName,
        spec: Option<&Arc<JobSpec>>,
        mut state: CronState,
        decisions: Decisions,
    ) -> Result<(), AgentError> {
        let Some(entry) = self.cron.jobs.get_mut(name) else { return Ok(()) };
        let wake_at = decisions.wake_at.map(Timestamp::from);
        if state == entry.state && decisions.records.is_empty() && decisions.actions.is_empty() {
            entry.wake_at = wake_at;
            return Ok(());
        }
        // Runs live on the supervisor's time line; decisions on the calendar's.
        let (now, decided_at) = (self.clock.now(), self.clock.calendar());
        // The run each start creates, as the store records it and as it is
        // then queued.
        let mut new_runs: HashMap<RunId, RunState> = HashMap::new();
        // Every run one step starts is of the same version, worked out once.
        let default_grace = self.settings.default_grace;
        let mut version: Option<(RunMeta, JobVersion)> = None;
        let mut batch = Vec::with_capacity(decisions.records.len());
        for record in &decisions.records {
            let decision = match &record.outcome {
                FiringOutcome::Started { run } | FiringOutcome::Late { run, .. } => {
                    let spec = spec.expect("only a known version starts runs");
                    let initial = RunState::new(spec.resources.memory.hard, now);
                    let (_, version) = version.get_or_insert_with(|| {
                        let meta = RunMeta::of(spec, default_grace);
                        let version = meta.version(spec);
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
        let answers = self.store.commit_cron(name, &state, decided_at, &batch, JOURNAL_KEEP)?;
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
        let entry = self.cron.jobs.get_mut(name).expect("present above");
        entry.state = state;
        entry.wake_at = wake_at;
        if let Some(t) = &self.telemetry {
            for (answer, record) in answers.iter().zip(&decisions.records) {
                if matches!(answer, Decided::Recorded { .. }) {
                    // One line and one count per decision, at the moment it is on record.
                    CronFired { record }.emit(t.metrics.agent());
                }
            }
        }
        // Carried out only now that they are on record.
        for action in decisions.actions {
            match action {
                cron::CronAction::Start { run, .. } => {
                    let (Some(initial), Some(spec), Some((meta, version))) =
                        (new_runs.remove(&run), spec, &version)
                    else {
                        continue;
                    };
                    let fingerprint = version.fingerprint.clone();
                    self.add_run(run, name, Arc::clone(spec), meta.clone(), fingerprint, initial);
                }
                cron::CronAction::Stop { run } => self.cron_stop_run(name, &run)?,
            }
        }
        Ok(())
    }

    /// Stops `run` gracefully for the firing that replaces it.
    fn cron_stop_run(&mut self, name: &JobName, run: &RunId) -> Result<(), AgentError> {
        let waiting = self.cron.jobs.get(name).and_then(|j| j.state.queued);
        let by = match waiting {
            Some(t) => format!(
                "the firing scheduled at {} (concurrency: replace)",
                t.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
            None => "a newer firing (concurrency: replace)".to_owned(),
        };
        info!(parent: &self.span(run), "stopping the run: {by} replaces it");
        self.handle(run, Event::StopRequested { reason: StopReason::Requested { by } })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
