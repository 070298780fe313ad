//! The supervisor: every run the agent manages, driven through the run state
//! machine.
//!
//! Each event goes through [`transition()`]; the resulting state is written
//! to the store *before* any of its actions is carried out, so that what the
//! agent does is always explained by what it has recorded, and a restarted
//! agent picks up from the record (see [`recovery`](super::recovery)). The
//! actions then update the ledger and the queue here, and go to the run's
//! operation task ([`RunOps`]) for anything that touches the kernel.
//!
//! Besides events, the supervisor reacts to the job set (a run per job
//! version, changes taken over by the run under way, removals) and runs the
//! scheduling pass ([`preempt::pass`]) after every change.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tracing::{debug, error, info, warn, Span};

use crate::api::protocol::EventLine;
use crate::api::EventFeed;
use crate::dynamic_user::{self, DynamicUserError};
use crate::metrics::agent::PlacementOutcome;
use crate::placement::{Assignment, Ledger};
use crate::scheduler::{
    transition, Action, Event, Jitter, Moment, OomPolicy, Phase, RunEvent, RunState, StopIntent,
    StopReason, Timestamp,
};
use crate::spec::{self, AdmissionRules, JobSpec};
use crate::store::{ExitInfo, JobVersion, LaunchInfo, Retention, RunStore};
use crate::topology::{CpuSet, Topology};
use crate::vocab::parse_run_id;
use crate::vocab::Bytes;
use crate::vocab::RunId;
use crate::watch::FileChange;

use super::clock::Clock;
use super::cron::{CronJobs, CronSettings};
use super::error::AgentError;
use super::job::{self, RunMeta};
use super::ops::{Op, RunOps};
use super::preempt::{self, Active, Step, Waiting};
use super::queue::RunQueue;
use super::reconcile::{FileNote, JobDirectory};
use super::runtime::{FinalStats, LaunchPlan, LiveSettings, Observation, Observed, Runtime, Sink};
use super::telemetry::Telemetry;
use super::timers::Timers;

/// The agent settings the supervisor decides with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Run directories go under `<runs_dir>/<run>/`.
    pub runs_dir: PathBuf,
    /// SIGTERM-to-SIGKILL grace of jobs that set none.
    pub default_grace: Duration,
    /// A run is not preempted before it has run this long.
    pub min_runtime_before_preemption: Duration,
    /// Which jobs the agent runs at all; holds the `default_user` and the
    /// `dynamic_users` range.
    pub admission: AdmissionRules,
    /// Where the host's accounts and processes are read, to keep dynamic
    /// uids clear of them.
    pub host_ids: crate::dynamic_user::HostRoots,
}

/// One run the agent manages.
#[derive(Debug)]
pub(super) struct Run {
    pub job: crate::vocab::JobName,
    /// The version it runs (or will); `None` only between an agent restart
    /// and the first reading of the jobs directory.
    pub spec: Option<Arc<JobSpec>>,
    pub meta: RunMeta,
    pub fingerprint: String,
    pub state: RunState,
    pub assignment: Option<Assignment>,
    pub launch: Option<LaunchInfo>,
    /// Names the current attempt in observations.
    pub epoch: u64,
    pub ops: RunOps,
    /// How the latest attempt ended, with its accounting.
    pub exit: Option<ExitInfo>,
    /// A launch is under way on the run's operation task.
    pub launching: bool,
    /// Its job is gone and it is finishing (`on_removal: finish`).
    pub removed: bool,
    /// When it was frozen, for resume order.
    pub suspended_at: u64,
    /// Its current attempt's span: every line logged about the run, here
    /// and on its operation task, is in it.
    pub span: Span,
}

impl Run {
    /// Queues `op` on the run's operation task, for its current attempt.
    fn send(&self, op: Op) {
        self.ops.send(self.epoch, op, self.span.clone());
    }
}

/// The span of attempt `attempt` of run `run`: the job, the run id and the
/// attempt on every line logged about it (`run{job=etl run=etl-3 attempt=2}:`
/// in text logs, the `span` object in JSON logs).
pub(super) fn run_span(job: &crate::vocab::JobName, run: &RunId, attempt: u32) -> Span {
    tracing::info_span!("run", job = %job, run = %run, attempt)
}

pub struct Supervisor<R: Runtime, S: RunStore> {
    pub(super) settings: Settings,
    pub(super) topology: Topology,
    pub(super) ledger: Ledger,
    pub(super) store: S,
    pub(super) runtime: Arc<R>,
    pub(super) clock: Clock,
    pub(super) sink: Sink,
    pub(super) jobs: JobDirectory,
    pub(super) runs: BTreeMap<RunId, Run>,
    pub(super) by_job: HashMap<crate::vocab::JobName, RunId>,
    pub(super) queue: RunQueue,
    pub(super) timers: Timers,
    /// Victims of preemptions under way.
    pub(super) preempting: BTreeSet<RunId>,
    /// The shared pool last written to the shared-pool runs' cpusets.
    pub(super) pool: CpuSet,
    pub(super) next_epoch: u64,
    pub(super) suspensions: u64,
    rng: u64,
    /// The jobs directory has been read once: runs without a job can be told
    /// from runs whose job is not known yet.
    pub(super) files_read: bool,
    /// When a running run becomes old enough to be preempted while runs are
    /// waiting: the scheduling pass must run again then, even if nothing
    /// else happens.
    rescan_at: Option<Timestamp>,
    /// Recurring jobs (see [`cron`](super::cron)).
    pub(super) cron: CronJobs,
    /// Metrics and API views, when the agent serves them.
    pub(super) telemetry: Option<Telemetry>,
    /// Why the store cannot be written, while it cannot (see
    /// [`store_fault`](super::store_fault)).
    pub(super) store_problem: Option<String>,
    /// Runs frozen by hand: the scheduling pass leaves them frozen.
    pub(super) held: BTreeSet<RunId>,
    /// Recovery is taking over the runs of an earlier agent.
    pub(super) recovering: bool,
    /// Every transition and run event, to followers of `corral events -f`.
    pub(super) feed: EventFeed,
    /// Waiting runs the scheduling pass could not place, with the outcome
    /// last counted for them: a run that keeps waiting for the same reason
    /// is counted once, not on every pass.
    pub(super) unplaced: HashMap<RunId, PlacementOutcome>,
    /// Hands out the jobs' dynamic uids (recorded in `store`).
    uids: dynamic_user::Allocator,
    /// The plan of the run being placed now, built before its placement
    /// was recorded; its launch takes it.
    placing: Option<LaunchPlan>,
}

impl<R: Runtime, S: RunStore> Supervisor<R, S> {
    pub fn new(
        settings: Settings,
        topology: Topology,
        ledger: Ledger,
        store: S,
        runtime: Arc<R>,
        clock: Clock,
        sink: Sink,
    ) -> Supervisor<R, S> {
        let seed = clock.now().as_millis() as u64 ^ (u64::from(std::process::id()) << 32);
        Supervisor {
            uids: dynamic_user::Allocator::new(settings.host_ids.clone()),
            settings,
            pool: ledger.shared_pool().clone(),
            topology,
            ledger,
            store,
            runtime,
            clock,
            sink,
            jobs: JobDirectory::new(),
            runs: BTreeMap::new(),
            by_job: HashMap::new(),
            queue: RunQueue::new(),
            timers: Timers::default(),
            preempting: BTreeSet::new(),
            next_epoch: 1,
            suspensions: 0,
            rng: seed | 1,
            files_read: false,
            rescan_at: None,
            cron: CronJobs::new(CronSettings::default()),
            telemetry: None,
            held: BTreeSet::new(),
            store_problem: None,
            recovering: false,
            feed: EventFeed::new(),
            unplaced: HashMap::new(),
            placing: None,
        }
    }

    /// The agent settings for recurring jobs; set before [`recover`](Self::recover).
    pub fn set_cron_settings(&mut self, settings: CronSettings) {
        self.cron.settings = settings;
    }

    /// No firing starts anything from now on (the agent is shutting down).
    pub fn stop_firing(&mut self) {
        self.cron_stop();
    }

    /// Runs not yet over.
    pub fn live_runs(&self) -> usize {
        self.runs.len()
    }

    /// Runs whose launch is under way.
    pub fn launches_under_way(&self) -> usize {
        self.runs.values().filter(|r| r.launching).count()
    }

    pub fn next_deadline(&self) -> Option<tokio::time::Instant> {
        let runs = [self.timers.next(), self.rescan_at].into_iter().flatten().min();
        let runs = runs.map(|at| self.clock.instant(at));
        // Firings are in calendar time, which may part from the runs' time line.
        let firings = self.cron.next_wake().map(|at| self.clock.calendar_instant(at));
        [runs, firings].into_iter().flatten().min()
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Says (in `/readyz` and the metrics) why the store cannot be written,
    /// or that it can again.
    pub fn set_store_problem(&mut self, problem: Option<String>) {
        self.store_problem = problem;
    }

    /// Whether a write to the store goes through now.
    pub fn check_writable(&mut self) -> Result<(), AgentError> {
        Ok(self.store.check_writable()?)
    }

    /// Creates the runs of one-shot jobs in force that have none and whose
    /// version has not run: after the store refused a write part-way
    /// through a batch of job files, the jobs after the refusal are in
    /// force without their runs. A job whose version has its run is left
    /// alone, so this never starts anything twice.
    pub fn revisit_jobs(&mut self) -> Result<(), AgentError> {
        if !self.files_read {
            return Ok(());
        }
        let without_run: Vec<crate::vocab::JobName> = self
            .jobs
            .jobs()
            .iter()
            .filter(|j| j.spec.recurrence.is_none() && !self.by_job.contains_key(&j.spec.name))
            .map(|j| j.spec.name.clone())
            .collect();
        for name in without_run {
            self.job_in_force(&name)?;
        }
        Ok(())
    }

    /// The span of run `id`'s current attempt; none for a run that is over.
    pub(super) fn span(&self, id: &RunId) -> Span {
        self.runs.get(id).map_or_else(Span::none, |run| run.span.clone())
    }

    /// The feed the supervisor announces what it records on.
    pub fn feed(&self) -> &EventFeed {
        &self.feed
    }

    // ---- The job set ----

    /// Applies one batch of job file changes; returns how the job set changed.
    pub fn apply_files(
        &mut self,
        changes: Vec<FileChange>,
    ) -> Result<spec::JobSetDiff, AgentError> {
        let reconciled = self.jobs.apply(changes, &self.settings.admission);
        for note in &reconciled.notes {
            log_note(note);
        }
        let diff = reconciled.diff;
        for name in diff.added.iter().chain(&diff.changed) {
            self.job_in_force(name)?;
        }
        for name in &diff.removed {
            self.job_gone(name)?;
        }
        if !self.files_read {
            self.files_read = true;
            self.cron_files_read()?;
            // Runs re-adopted after a restart whose job is no longer there.
            let orphans: Vec<crate::vocab::JobName> =
                self.by_job.keys().filter(|name| self.jobs.get(name).is_none()).cloned().collect();
            for name in orphans {
                self.job_gone(&name)?;
            }
            // Re-adopted runs whose job file has not changed still need it.
            let unlaunched: Vec<RunId> = self
                .runs
                .iter()
                .filter(|(_, r)| {
                    matches!(r.state.phase, Phase::Placed) && r.launch.is_none() && !r.launching
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in unlaunched {
                self.relaunch(&id)?;
            }
        }
        // Jobs removed now, or while the agent was down, whose runs are over.
        for allocation in self.store.job_uids()? {
            self.release_uid_if_unused(&allocation.job)?;
        }
        Ok(diff)
    }

    /// `name` was added or changed.
    fn job_in_force(&mut self, name: &crate::vocab::JobName) -> Result<(), AgentError> {
        let Some(found) = self.jobs.get(name) else { return Ok(()) };
        let spec = Arc::new(found.spec.clone());
        self.cron_job_in_force(name, &spec)?;
        if let Some(id) = self.by_job.get(name).cloned() {
            let stopping_for_good = self.runs.get(&id).is_some_and(|r| {
                matches!(r.state.phase, Phase::Stopping { intent: StopIntent::Stop { .. }, .. })
            });
            if !stopping_for_good {
                return self.take_over(&id, spec);
            }
            // Its run is on its way out (the file was removed and is back):
            // the job starts afresh beside it.
            self.by_job.remove(name);
        }
        if spec.recurrence.is_some() {
            debug!(job = %name, "recurring job: its runs are started by its schedule, not on load");
            return Ok(());
        }
        let meta = RunMeta::of(&spec, self.settings.default_grace);
        let version = meta.version(&spec);
        let latest = self.store.runs_for_job(name, 1)?;
        if let Some(latest) = latest.first() {
            // A run stopped because its file was removed does not count: the
            // file coming back asks for the job again.
            let removed = matches!(
                &latest.state.phase,
                Phase::Killed { reason: StopReason::JobRemoved } | Phase::Stopping { .. }
            );
            if !removed
                && latest.version.as_ref().is_some_and(|v| v.fingerprint == version.fingerprint)
            {
                debug!(job = %name, run = %latest.id, "this version of the job already has its run");
                return Ok(());
            }
        }
        self.create_run(name, spec, meta, version)
    }

    fn create_run(
        &mut self,
        name: &crate::vocab::JobName,
        spec: Arc<JobSpec>,
        meta: RunMeta,
        version: JobVersion,
    ) -> Result<(), AgentError> {
        let now = self.clock.now();
        let initial = RunState::new(spec.resources.memory.hard, now);
        let id = self.store.create_versioned_run(name, &initial, now, &version)?;
        self.by_job.insert(name.clone(), id.clone());
        self.add_run(id, name, spec, meta, version.fingerprint, initial);
        Ok(())
    }

    /// Queues run `id`, created in the store in state `initial`.
    pub(super) fn add_run(
        &mut self,
        id: RunId,
        name: &crate::vocab::JobName,
        spec: Arc<JobSpec>,
        meta: RunMeta,
        fingerprint: String,
        initial: RunState,
    ) {
        let span = run_span(name, &id, initial.attempt);
        info!(parent: &span, priority = meta.priority, "run queued");
        self.announce(|| {
            // As the store records a creation.
            EventLine::transition(
                initial.since,
                name.as_str(),
                id.as_str(),
                None,
                initial.phase.name(),
                "created",
            )
        });
        let ops = RunOps::spawn(Arc::clone(&self.runtime), id.clone(), self.sink.clone());
        self.queue.push(id.clone(), meta.priority());
        self.runs.insert(
            id,
            Run {
                job: name.clone(),
                spec: Some(spec),
                meta,
                fingerprint,
                state: initial,
                assignment: None,
                launch: None,
                epoch: 0,
                ops,
                exit: None,
                launching: false,
                removed: false,
                suspended_at: 0,
                span,
            },
        );
    }

    /// The run under way takes the job's new version: settings the kernel
    /// can change on a running job are applied now, the rest at its next
    /// attempt. See docs/agent.md for the field-by-field list.
    pub(super) fn take_over(&mut self, id: &RunId, spec: Arc<JobSpec>) -> Result<(), AgentError> {
        let now = self.clock.now();
        let default_grace = self.settings.default_grace;
        let Some(run) = self.runs.get_mut(id) else { return Ok(()) };
        let meta = RunMeta::of(&spec, default_grace);
        let version = meta.version(&spec);
        // A re-adopted run sees its job for the first time since the restart:
        // it changed if its fingerprint did.
        let first_sight = run.spec.is_none();
        let changed = match &run.spec {
            None => version.fingerprint != run.fingerprint,
            Some(old) => **old != *spec || run.removed,
        };
        if version.fingerprint != run.fingerprint || meta != run.meta {
            self.store.set_version(id, &version)?;
        }
        let run = self.runs.get_mut(id).expect("present above");
        run.fingerprint = version.fingerprint;
        run.meta = meta;
        run.spec = Some(Arc::clone(&spec));
        run.removed = false;
        self.queue.reprioritize(id, spec.priority);
        if !changed {
            return Ok(());
        }
        if !first_sight || run.state.phase.may_have_processes() {
            info!(parent: &run.span, "job changed: the run under way takes the new version \
                  (resources now where the kernel allows, command and environment at its next attempt)");
        }
        // The hard limit: raised for a run under way, never lowered (that
        // could push a running job straight into OOM); a run not started yet
        // takes the new value as it is.
        let state = run.state.clone();
        let new_hard = spec.resources.memory.hard;
        let not_started =
            matches!(state.phase, Phase::Pending) && state.attempt == 1 && state.oom_requeues == 0;
        let limit = if not_started {
            new_hard
        } else {
            match (state.memory_limit, new_hard) {
                (Some(old), Some(new)) => Some(old.max(new)),
                (old, _) => old,
            }
        };
        if limit != state.memory_limit {
            let mut next = state.clone();
            next.memory_limit = limit;
            let reason = format!(
                "job changed: hard memory limit {} for this run",
                limit.map_or("none".to_owned(), |l| l.to_string())
            );
            if state.phase.may_have_processes() {
                if let Some(l) = limit {
                    self.recharge(id, l);
                }
            }
            self.set_state(id, next, &reason, now)?;
        }
        let run = self.runs.get(id).expect("present above");
        if let Phase::Running { .. } = run.state.phase {
            if let Some(timeout) = run.meta.policy.timeout {
                let left = timeout.saturating_sub(run.state.active_at(now));
                self.timers.arm(id, crate::scheduler::Timer::ActiveDeadline, now.plus(left));
            }
        }
        self.push_settings(id);
        Ok(())
    }

    /// `name` is gone from the jobs directory.
    fn job_gone(&mut self, name: &crate::vocab::JobName) -> Result<(), AgentError> {
        self.cron_job_gone(name)?;
        let Some(id) = self.by_job.get(name).cloned() else { return Ok(()) };
        self.stop_for_removal(&id)
    }

    /// Stops run `id` of a removed job, or lets it finish (`on_removal`).
    pub(super) fn stop_for_removal(&mut self, id: &RunId) -> Result<(), AgentError> {
        let id = id.clone();
        let Some(run) = self.runs.get_mut(&id) else { return Ok(()) };
        if run.meta.finish_on_removal && run.state.phase.may_have_processes() {
            run.removed = true;
            // Finishing means this attempt only: nothing starts again.
            run.meta.policy.restart.on = crate::spec::RestartOn::Never;
            if let OomPolicy::Requeue { .. } = run.meta.policy.oom {
                run.meta.policy.oom = OomPolicy::Fail;
            }
            info!(parent: &run.span, "job removed: its run is left to finish (on_removal: finish)");
            return Ok(());
        }
        info!(parent: &run.span, "job removed: stopping its run");
        let needs_launch_report =
            matches!(run.state.phase, Phase::Placed) && !run.launching && run.launch.is_none();
        self.handle(&id, Event::StopRequested { reason: StopReason::JobRemoved })?;
        if needs_launch_report {
            // Re-adopted before it was started, and never will be.
            self.handle(
                &id,
                Event::LaunchFailed { detail: "not started: its job was removed".into() },
            )?;
        }
        Ok(())
    }

    // ---- Events ----

    /// Feeds `event` to the run's state machine, records the result and
    /// carries out its actions. Returns whether the event was accepted.
    pub(super) fn handle(&mut self, id: &RunId, event: Event) -> Result<bool, AgentError> {
        self.handle_at(id, event, self.clock.now())
    }

    /// [`handle`](Self::handle) at `now`: for an event something was named
    /// after already (a placement's run directory, by its time).
    fn handle_at(&mut self, id: &RunId, event: Event, now: Timestamp) -> Result<bool, AgentError> {
        let jitter = self.jitter();
        let Some(run) = self.runs.get(id) else {
            debug!(run = %id, event = event.name(), "event for a run that is over");
            return Ok(false);
        };
        let mut policy = run.meta.policy.clone();
        if let (Phase::OomPaused { frozen: false }, Event::Frozen) = (&run.state.phase, &event) {
            if let Some(why) = self.cannot_grow(run) {
                warn!(parent: &run.span, "cannot grow the memory limit: {why}; applying the failure path");
                policy.oom = OomPolicy::Fail;
            }
        }
        let t = match transition(&run.state, &event, &policy, Moment::new(now, jitter)) {
            Ok(t) => t,
            Err(e) => {
                warn!(parent: &run.span, "ignored: {e}");
                return Ok(false);
            }
        };
        if t.is_noop(&run.state) {
            debug!(parent: &run.span, "{}", t.reason);
            return Ok(true);
        }
        if let Event::Placed(assignment) = &event {
            // Before the transition: a run recorded as placed always has its
            // placement on record.
            self.store.set_placement(id, Some(assignment))?;
        }
        // How the run ended goes on record before the transition that says it
        // ended, so whoever reads a finished run from the store also finds its exit.
        for action in &t.actions {
            if let Action::RecordExit(status) = action {
                self.record_exit(id, *status, now)?;
            }
        }
        let run = self.runs.get_mut(id).expect("present above");
        self.store.record_transition(id, &run.state, &t.next, now, &t.reason)?;
        if t.next.attempt != run.state.attempt {
            // The transition that starts an attempt is its span's first line.
            run.span = run_span(&run.job, id, t.next.attempt);
        }
        let run = self.runs.get(id).expect("present above");
        let from = run.state.phase.name();
        let to = t.next.phase.name();
        self.announce(|| {
            EventLine::transition(now, run.job.as_str(), id.as_str(), Some(from), to, &t.reason)
        });
        if from != to {
            info!(parent: &run.span, from = %from, to = %to, "{}", t.reason);
        } else {
            debug!(parent: &run.span, phase = to, "{}", t.reason);
        }
        let run = self.runs.get_mut(id).expect("present above");
        let before = std::mem::replace(&mut run.state, t.next);
        self.count_transition(id, &before, now);
        // The transition is on record: every action it asks for is carried
        // out, even after one failed to record its part (a full disk), so
        // that the run is where the record says. The first failure is
        // reported once all are done.
        let mut failed = None;
        for action in t.actions {
            if let Err(e) = self.execute(id, action, &t.reason, now) {
                failed.get_or_insert(e);
            }
        }
        if self.runs.get(id).is_some_and(|r| r.state.is_terminal()) {
            if let Err(e) = self.finish(id) {
                failed.get_or_insert(e);
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(true),
        }
    }

    fn execute(
        &mut self,
        id: &RunId,
        action: Action,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), AgentError> {
        let Some(run) = self.runs.get_mut(id) else { return Ok(()) };
        match action {
            Action::Enqueue => self.queue.push(id.clone(), run.meta.priority()),
            Action::Dequeue => {
                self.queue.remove(id);
            }
            Action::Launch { assignment, memory_limit } => {
                self.execute_launch(id, assignment, memory_limit)?;
            }
            Action::Watch => {
                let epoch = self.next_epoch;
                self.next_epoch += 1;
                run.epoch = epoch;
                if let Some(launch) = run.launch.clone() {
                    run.send(Op::Watch(launch));
                }
            }
            Action::Freeze => run.send(Op::Freeze),
            Action::Thaw => run.send(Op::Thaw),
            Action::SetMemoryLimit(limit) => {
                self.recharge(id, limit);
                self.push_settings(id);
            }
            Action::Terminate => {
                if let Some(launch) = run.launch.clone() {
                    run.send(Op::Signal(launch, Signal::SIGTERM));
                }
            }
            Action::KillAll => run.send(Op::KillAll),
            Action::YieldCpus => {
                self.preempting.remove(id);
                match self.ledger.suspend(id) {
                    Ok(held) => {
                        self.store.set_placement(id, Some(&held))?;
                        self.suspensions += 1;
                        let run = self.runs.get_mut(id).expect("present");
                        run.assignment = Some(held);
                        run.suspended_at = self.suspensions;
                    }
                    Err(e) => {
                        warn!(parent: &self.span(id), "frozen, but its CPUs could not be lent: {e}")
                    }
                }
            }
            Action::ReleasePlacement => {
                self.preempting.remove(id);
                run.launching = false;
                if let Some(held) = run.assignment.take() {
                    if let Err(e) = self.ledger.release(&held) {
                        debug!(parent: &self.span(id), "placement already released: {e}");
                    }
                    self.store.set_placement(id, None)?;
                }
                let run = self.runs.get(id).expect("present");
                run.send(Op::Remove);
            }
            Action::ArmTimer { timer, at } => self.timers.arm(id, timer, at),
            // Recorded before the transition; see `handle`.
            Action::RecordExit(_) => {}
            // The transition's reason, logged above, says what happened.
            Action::RecordEvent(event) => self.record_event(id, &event, reason, now)?,
            // The transition into the terminal phase is logged with its reason.
            Action::RecordOutcome(outcome) => {
                debug!(parent: &self.span(id), "outcome: {outcome:?}");
                self.count_outcome(id, &outcome, reason, now);
            }
        }
        Ok(())
    }

    fn record_exit(
        &mut self,
        id: &RunId,
        status: crate::scheduler::ExitStatus,
        now: Timestamp,
    ) -> Result<(), AgentError> {
        let Some(run) = self.runs.get(id) else { return Ok(()) };
        let exit = match &run.exit {
            Some(exit) if exit.status == status => exit.clone(),
            _ => ExitInfo {
                status,
                exited_at: now,
                peak_memory: None,
                oom_kills: 0,
                cpu_seconds: 0.0,
            },
        };
        self.store.set_exit(id, &exit)?;
        Ok(())
    }

    /// The final plan of run `id` placed on `assignment` at `placed_at`,
    /// with the hard limit in force, the firing's environment and the job's
    /// dynamic uid. `Some(Err)` says why the host refuses the run; `None`
    /// when there is no run, or no job version, to plan.
    fn plan_launch(
        &mut self,
        id: &RunId,
        assignment: &Assignment,
        placed_at: Timestamp,
    ) -> Result<Option<Result<LaunchPlan, String>>, AgentError> {
        let Some(run) = self.runs.get(id) else { return Ok(None) };
        let Some(spec) = run.spec.clone() else {
            // Only re-adopted runs lack a spec, and they are not started
            // before the jobs directory has been read.
            warn!(parent: &run.span, "no job version to launch");
            return Ok(None);
        };
        let (attempt, memory_limit) = (run.state.attempt, run.state.memory_limit);
        let dynamic_uid = match self.dynamic_uid(&spec)? {
            Ok(uid) => uid,
            Err(detail) => return Ok(Some(Err(detail))),
        };
        let run_dir = run_dir(&self.settings.runs_dir, id, placed_at);
        let env = self.cron.env_for(id);
        let inputs = crate::launch::RunInputs {
            run: id,
            assignment,
            shared_pool: self.ledger.shared_pool(),
            memory_limit,
            run_dir: &run_dir,
            env: &env,
            dynamic_uid,
            tee_output: false,
        };
        Ok(Some(
            self.runtime
                .plan(&spec, &inputs)
                .map(|plan| LaunchPlan { attempt, plan })
                .map_err(|e| e.to_string()),
        ))
    }

    /// Starts an attempt of the run on `assignment`, on its operation task:
    /// with the plan built when it was placed, or (a run placed before an
    /// agent restart) one built now for the placement on record.
    pub(super) fn execute_launch(
        &mut self,
        id: &RunId,
        assignment: Assignment,
        memory_limit: Option<Bytes>,
    ) -> Result<(), AgentError> {
        let Some(run) = self.runs.get(id) else { return Ok(()) };
        let placed_at = run.state.since;
        let prepared = self.placing.take().filter(|p| {
            p.run() == id
                && p.plan.resources.memory.hard_bytes == memory_limit.map(Bytes::get)
                && p.run_dir() == run_dir(&self.settings.runs_dir, id, placed_at)
        });
        let plan = match prepared {
            Some(plan) => Ok(plan),
            None => match self.plan_launch(id, &assignment, placed_at)? {
                Some(plan) => plan,
                None => return Ok(()),
            },
        };
        let Some(run) = self.runs.get_mut(id) else { return Ok(()) };
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        run.epoch = epoch;
        run.launch = None;
        run.exit = None;
        run.launching = true;
        run.assignment = Some(assignment);
        match plan {
            Ok(plan) => run.send(Op::Launch(Box::new(plan))),
            // Placed before a restart, refused now (its job changed, or the
            // agent's configuration): the launch failed, and the state
            // machine decides.
            Err(detail) => {
                let _ = self.sink.send(Observation {
                    run: id.clone(),
                    epoch,
                    what: Observed::LaunchFailed(detail),
                });
            }
        }
        Ok(())
    }

    /// The uid a run of `spec` gets from the `dynamic_users` range, recorded
    /// in the store before the run is launched; `None` for a job with a
    /// `user`, or under a shared `default_user`. `Err` is why none could be
    /// had, for the run's refusal (store failures are the agent's).
    fn dynamic_uid(&mut self, spec: &JobSpec) -> Result<Result<Option<u32>, String>, AgentError> {
        if spec.user.is_some() || self.settings.admission.default_user != spec::DefaultUser::Dynamic
        {
            return Ok(Ok(None));
        }
        let range = self.settings.admission.dynamic_users;
        let now = self.clock.now();
        match self.uids.job_uid(&mut self.store, &spec.name, range, now) {
            Ok(uid) => Ok(Ok(Some(uid))),
            Err(DynamicUserError::Store(e)) => Err(e.into()),
            Err(e) => Ok(Err(e.to_string())),
        }
    }

    /// Gives up the dynamic uid of `job` once it is gone from the jobs
    /// directory and none of its runs may have processes left. (A process
    /// that escaped its run keeps the uid from being handed out again: see
    /// [`dynamic_user::allocate`].)
    pub(super) fn release_uid_if_unused(
        &mut self,
        job: &crate::vocab::JobName,
    ) -> Result<(), AgentError> {
        if !self.files_read
            || self.jobs.get(job).is_some()
            || self.runs.values().any(|r| r.job == *job)
        {
            return Ok(());
        }
        if let Some(uid) = self.store.release_uid(job)? {
            self.uids.released();
            info!(job = %job, "released dynamic uid {uid}");
        }
        Ok(())
    }

    /// A run reached a terminal phase: forget it and prune its job's history.
    fn finish(&mut self, id: &RunId) -> Result<(), AgentError> {
        self.timers.forget(id);
        self.queue.remove(id);
        self.preempting.remove(id);
        if let Some(run) = self.runs.remove(id) {
            if self.by_job.get(&run.job) == Some(id) {
                self.by_job.remove(&run.job);
            }
            if let Some(held) = &run.assignment {
                let _ = self.ledger.release(held);
            }
            let recurring = self.cron.owner(id).is_some();
            let keep = match (run.spec.as_ref().map(|s| s.recurrence.as_ref()), recurring) {
                // Exactly as the job says: a recurring job's runs are asked
                // for by its schedule, not by "has this version run".
                (Some(Some(r)), _) => {
                    Some(Retention { successful: r.history.successful, failed: r.history.failed })
                }
                // A recurring job's history is known once its file is read
                // again after a restart; its next run's end prunes.
                (None, true) => None,
                // At least one: "this version already has its run" reads it.
                _ => {
                    let history = spec::History::default();
                    Some(Retention {
                        successful: history.successful.max(1),
                        failed: history.failed.max(1),
                    })
                }
            };
            // The runs directory is listed only when records went: a run
            // ending rarely pushes one out. (Files a crash left behind after
            // their record was pruned go with the job's next prune.)
            if let Some(keep) = keep {
                if self.store.prune(&run.job, keep)? > 0 {
                    self.prune_run_dirs(&run.job)?;
                }
            }
            self.cron_run_finished(&run.job, id)?;
            self.release_uid_if_unused(&run.job)?;
        }
        Ok(())
    }

    /// Deletes the run directories (logs, status, config) of `job`'s runs
    /// whose records are gone: a pruned run takes its files with it.
    fn prune_run_dirs(&self, job: &crate::vocab::JobName) -> Result<(), AgentError> {
        let kept: std::collections::HashSet<RunId> =
            self.store.runs_for_job(job, usize::MAX)?.into_iter().map(|r| r.id).collect();
        let Ok(entries) = std::fs::read_dir(&self.settings.runs_dir) else { return Ok(()) };
        let stale: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let id = RunId::new(e.file_name().to_str()?.to_owned());
                let (of, _) = parse_run_id(&id)?;
                (&of == job && !kept.contains(&id)).then(|| e.path())
            })
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        debug!(job = %job, dirs = stale.len(), "removing the files of pruned runs");
        // Logs can be large: removed off the main loop.
        tokio::task::spawn_blocking(move || {
            for dir in stale {
                remove_dir(&dir);
            }
        });
        Ok(())
    }

    /// Records a state change the shell makes itself (not the state machine):
    /// a run taking a changed job's settings.
    pub(super) fn set_state(
        &mut self,
        id: &RunId,
        next: RunState,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), AgentError> {
        let run = self.runs.get_mut(id).expect("caller checked");
        self.store.record_transition(id, &run.state, &next, now, reason)?;
        let (from, to) = (run.state.phase.name(), next.phase.name());
        run.state = next;
        let run = &self.runs[id];
        self.announce(|| {
            EventLine::transition(now, run.job.as_str(), id.as_str(), Some(from), to, reason)
        });
        Ok(())
    }

    /// Records something that happened to run `id`, counts it and announces it.
    pub(super) fn record_event(
        &mut self,
        id: &RunId,
        event: &RunEvent,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), AgentError> {
        self.store.record_event(id, now, event, reason)?;
        self.count_event(id, event);
        if let Some(run) = self.runs.get(id) {
            self.announce(|| {
                EventLine::run_event(now, run.job.as_str(), id.as_str(), event.kind(), reason)
            });
        }
        Ok(())
    }

    /// Sends what `line` builds to followers of the feed, once it is on record.
    fn announce(&self, line: impl FnOnce() -> EventLine) {
        if self.feed.is_followed() {
            self.feed.announce(line());
        }
    }

    /// Something the runtime saw.
    pub fn observe(&mut self, obs: Observation) -> Result<(), AgentError> {
        let id = obs.run;
        let Some(run) = self.runs.get_mut(&id) else { return Ok(()) };
        if obs.epoch != run.epoch {
            debug!(parent: &run.span, "dropped a report about an earlier attempt: {:?}", obs.what);
            return Ok(());
        }
        match obs.what {
            Observed::Launched(launch) => {
                run.launching = false;
                run.launch = Some(launch.clone());
                self.store.set_launch(&id, &launch)?;
                self.handle(
                    &id,
                    Event::Launched { pid: launch.init_pid, start_time: launch.pid_start_time },
                )?;
            }
            Observed::LaunchFailed(detail) => {
                run.launching = false;
                warn!(parent: &run.span, "launch failed: {detail}");
                self.handle(&id, Event::LaunchFailed { detail })?;
            }
            Observed::Exited { status, at, stats } => {
                run.exit = Some(exit_info(status, at, stats));
                self.exited(&id, status)?;
            }
            Observed::CgroupRemoved { status, at } => {
                run.exit = Some(exit_info(status, at, FinalStats::default()));
                // The exit status the shim saw goes on record first, as for
                // any end; the accounting went with the cgroup.
                self.record_exit(&id, status, self.clock.now())?;
                // Lost, not Exited: the job did not end by itself, and what
                // ended it is known only from the missing cgroup.
                let detail = format!(
                    "{status} after its cgroup was removed by someone other than the agent"
                );
                self.handle(&id, Event::Lost { detail })?;
            }
            Observed::Lost(detail) => {
                self.handle(&id, Event::Lost { detail })?;
            }
            Observed::Oom => {
                self.handle(&id, Event::OomNotified)?;
            }
            Observed::OomKilled => {
                self.handle(&id, Event::OomKilled)?;
            }
            Observed::Frozen => {
                self.handle(&id, Event::Frozen)?;
            }
            Observed::Failed { op, error } => {
                warn!(parent: &run.span, "{op} failed: {error}");
                match (&run.state.phase, op) {
                    // The freeze did not happen: the run is not suspended after all.
                    (Phase::Suspended { frozen: false, .. }, "freeze") => {
                        self.preempting.remove(&id);
                        self.handle(&id, Event::Resume)?;
                    }
                    // Paused at its limit it cannot run anyway: decide now.
                    (Phase::OomPaused { frozen: false }, "freeze") => {
                        self.handle(&id, Event::Frozen)?;
                    }
                    (_, "watch") => {
                        self.handle(&id, Event::WatchFailed { detail: error })?;
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The run's processes ended with `status`, its accounting read into
    /// `exit`: by this agent's watch, or found by recovery.
    pub(super) fn exited(
        &mut self,
        id: &RunId,
        status: crate::scheduler::ExitStatus,
    ) -> Result<(), AgentError> {
        // Counted by the cgroup but not reported by the kernel's notification
        // first: a kernel OOM kill is an OOM, never an unexplained signal.
        let unreported_oom_kill = self.runs.get(id).is_some_and(|r| {
            r.exit.as_ref().is_some_and(|e| e.oom_kills > 0) && !r.state.oom_killed
        });
        if unreported_oom_kill {
            self.handle(id, Event::OomKilled)?;
        }
        self.handle(id, Event::Exited(status))?;
        Ok(())
    }

    /// Delivers due timers.
    pub fn fire_timers(&mut self) -> Result<(), AgentError> {
        let now = self.clock.now();
        if self.rescan_at.is_some_and(|at| at <= now) {
            // The pass that follows every wake-up is what was wanted.
            self.rescan_at = None;
        }
        for (id, event) in self.timers.due(now) {
            self.handle(&id, event)?;
        }
        self.cron_wake(self.clock.calendar())
    }

    // ---- Scheduling ----

    /// Places what can be placed, resumes what can be resumed, preempts for
    /// the most important run that does not fit; then brings the shared
    /// pool's cpusets up to date.
    pub fn schedule(&mut self) -> Result<(), AgentError> {
        if !self.files_read {
            return Ok(());
        }
        let now = self.clock.now();
        let mut waiting = Vec::new();
        for (id, priority) in self.queue.iter() {
            let Some(run) = self.runs.get(id) else { continue };
            let Some(spec) = &run.spec else { continue };
            let request = job::request(spec, id, run.state.memory_limit);
            waiting.push(Waiting { priority, request, suspended: None });
        }
        let mut frozen: Vec<(&RunId, &Run)> = self
            .runs
            .iter()
            .filter(|(_, r)| matches!(r.state.phase, Phase::Suspended { frozen: true, .. }))
            .filter(|(id, _)| !self.held.contains(*id))
            .collect();
        frozen.sort_by_key(|(_, r)| r.suspended_at);
        for (id, run) in frozen {
            let (Some(spec), Some(held)) = (&run.spec, &run.assignment) else { continue };
            let request = job::request(spec, id, run.state.memory_limit);
            waiting.push(Waiting {
                priority: run.meta.priority(),
                request,
                suspended: Some(held.clone()),
            });
        }
        if waiting.is_empty() {
            // Nothing to place, resume or preempt for: the pass follows every
            // turn of the main loop, and usually ends here.
            self.rescan_at = None;
            self.unplaced.clear();
            self.sync_pool();
            return Ok(());
        }
        let min_runtime = self.settings.min_runtime_before_preemption;
        self.rescan_at = self
            .runs
            .values()
            .filter(|r| r.meta.policy.preemption != crate::scheduler::PreemptionMode::Never)
            .filter_map(|r| match r.state.phase {
                Phase::Running { since } if now.since(since) < min_runtime => {
                    Some(since.plus(min_runtime))
                }
                _ => None,
            })
            .min();
        // Forget the failures of runs no longer waiting: placed, or over.
        let waiting_ids: BTreeSet<&RunId> = waiting.iter().map(|w| &w.request.owner).collect();
        self.unplaced.retain(|id, _| waiting_ids.contains(id));
        let active: Vec<Active> = self
            .runs
            .iter()
            .filter(|(_, r)| r.assignment.is_some() && !r.removed)
            .map(|(id, r)| Active {
                run: id.clone(),
                priority: r.meta.priority(),
                mode: r.meta.policy.preemption,
                preemptible: matches!(r.state.phase, Phase::Running { since } if now.since(since) >= min_runtime),
            })
            .collect();
        let steps = preempt::pass(
            &self.topology,
            &mut self.ledger,
            waiting,
            &active,
            !self.preempting.is_empty(),
        );
        for step in steps {
            self.carry_out(step)?;
        }
        self.sync_pool();
        Ok(())
    }

    fn carry_out(&mut self, step: Step) -> Result<(), AgentError> {
        match step {
            Step::NotPlaced { run, error } => self.count_not_placed(&run, &error),
            Step::Place { assignment } => {
                let id = assignment.owner.clone();
                self.queue.remove(&id);
                // The plan is built and checked before the placement is
                // recorded: a run the host refuses fails as refused, and
                // never holds a placement for a launch that cannot happen.
                let placed_at = self.clock.now();
                let plan = match self.plan_launch(&id, &assignment, placed_at) {
                    Ok(Some(Ok(plan))) => plan,
                    Ok(Some(Err(detail))) => {
                        let _ = self.ledger.release(&assignment);
                        warn!(parent: &self.span(&id), "not started: {detail}");
                        let refused = self.handle_at(&id, Event::Refused { detail }, placed_at);
                        if refused.is_err() {
                            // Its refusal could not be recorded: it waits again.
                            if let Some(run) = self.runs.get(&id) {
                                self.queue.push(id.clone(), run.meta.priority());
                            }
                        }
                        refused?;
                        return Ok(());
                    }
                    Ok(None) => {
                        let _ = self.ledger.release(&assignment);
                        return Ok(());
                    }
                    Err(e) => {
                        // Not placed after all (its uid could not be
                        // recorded): it waits again.
                        let _ = self.ledger.release(&assignment);
                        if let Some(run) = self.runs.get(&id) {
                            self.queue.push(id.clone(), run.meta.priority());
                        }
                        return Err(e);
                    }
                };
                if let Some(run) = self.runs.get_mut(&id) {
                    run.assignment = Some(assignment.clone());
                }
                self.placing = Some(plan);
                let placed = self.handle_at(&id, Event::Placed(assignment.clone()), placed_at);
                // Taken by the launch the placement asked for, if it was recorded.
                self.placing = None;
                if !matches!(placed, Ok(true)) {
                    let _ = self.ledger.release(&assignment);
                    if let Some(run) = self.runs.get_mut(&id) {
                        run.assignment = None;
                        // Not placed after all (its placement could not be
                        // recorded): it waits again.
                        if placed.is_err() && matches!(run.state.phase, Phase::Pending) {
                            self.queue.push(id.clone(), run.meta.priority());
                        }
                    }
                }
                placed?;
            }
            Step::Resume { assignment } => {
                let id = assignment.owner.clone();
                self.store.set_placement(&id, Some(&assignment))?;
                if let Some(run) = self.runs.get_mut(&id) {
                    run.assignment = Some(assignment);
                }
                // The new cpuset is written before the thaw.
                self.push_settings(&id);
                self.handle(&id, Event::Resume)?;
            }
            Step::Preempt { for_run, priority, victims } => {
                let who = self.runs.get(&for_run).map(|r| r.job.to_string()).unwrap_or_default();
                for (victim, mode) in victims {
                    let Some(v) = self.runs.get(&victim) else { continue };
                    info!(
                        parent: &v.span, preempted_by = %for_run,
                        "preempting {victim} (job {}, priority {}) by {mode} for {for_run} (job {who}, priority {priority}), which does not fit otherwise",
                        v.job, v.meta.priority
                    );
                    let event = match mode {
                        crate::scheduler::PreemptionMode::Suspend => {
                            Event::PreemptSuspend { by: for_run.clone() }
                        }
                        crate::scheduler::PreemptionMode::Requeue => {
                            Event::PreemptRequeue { by: for_run.clone() }
                        }
                        crate::scheduler::PreemptionMode::Never => continue,
                    };
                    if self.handle(&victim, event)? {
                        self.preempting.insert(victim);
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes the shared pool into the cpusets of shared-pool runs when it
    /// changed (an exclusive run started or ended, a run was frozen).
    fn sync_pool(&mut self) {
        if self.ledger.shared_pool() == &self.pool {
            return;
        }
        self.pool = self.ledger.shared_pool().clone();
        debug!(pool = %self.pool, "shared pool changed");
        let shared: Vec<RunId> = self
            .runs
            .iter()
            .filter(|(_, r)| {
                r.assignment.as_ref().is_some_and(Assignment::is_shared)
                    && r.state.phase.may_have_processes()
                    && (r.launch.is_some() || r.launching)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in shared {
            self.push_settings(&id);
        }
    }

    /// Sends the run's current settings (spec resources, cpuset, limit) to
    /// its cgroup.
    fn push_settings(&self, id: &RunId) {
        let Some(run) = self.runs.get(id) else { return };
        let (Some(spec), Some(assignment)) = (&run.spec, &run.assignment) else { return };
        if !run.state.phase.may_have_processes() || (run.launch.is_none() && !run.launching) {
            return;
        }
        let settings = LiveSettings {
            spec: Arc::clone(spec),
            cpus: assignment.cpuset(self.ledger.shared_pool()),
            assignment: assignment.clone(),
            memory_limit: run.state.memory_limit,
        };
        run.send(Op::Update(Box::new(settings)));
    }

    /// Why growing the run's limit one step would not fit in its nodes'
    /// free memory, if it would not.
    fn cannot_grow(&self, run: &Run) -> Option<String> {
        let OomPolicy::Grow { step, ceiling } = run.meta.policy.oom else { return None };
        let limit = run.state.memory_limit?;
        let grown = Bytes(limit.get().saturating_add(step.get())).min(ceiling);
        let extra = grown.saturating_sub(limit);
        let held = run.assignment.as_ref()?;
        let free: u64 = held.mems.iter().map(|n| self.ledger.memory_free(n).get()).sum();
        (extra.get() > free)
            .then(|| format!("{extra} more needed, {} free on its nodes", Bytes(free)))
    }

    /// Charges the run's placement for a hard limit of `limit`. Where the
    /// nodes do not have the memory, the old charge stays (and the limit is
    /// raised all the same: the run is already using the memory).
    fn recharge(&mut self, id: &RunId, limit: Bytes) {
        let Some(held) = self.runs.get(id).and_then(|r| r.assignment.clone()) else { return };
        let mut wanted = held.clone();
        let mut extra = limit.saturating_sub(held.memory_total()).get();
        for node in held.mems.iter() {
            if extra == 0 {
                break;
            }
            let take = extra.min(self.ledger.memory_free(node).get());
            let entry = wanted.memory.entry(node).or_insert(Bytes::ZERO);
            *entry = Bytes(entry.get() + take);
            extra -= take;
        }
        if wanted == held {
            return;
        }
        if self.ledger.release(&held).is_err() {
            return;
        }
        match self.ledger.record(wanted.clone()) {
            Ok(_) => {
                if let Err(e) = self.store.set_placement(id, Some(&wanted)) {
                    error!(parent: &self.span(id), "cannot store the new memory charge: {e}");
                }
                if let Some(run) = self.runs.get_mut(id) {
                    run.assignment = Some(wanted);
                }
            }
            Err(e) => {
                warn!(parent: &self.span(id), "memory charge unchanged: {e}");
                let _ = self.ledger.record(held);
            }
        }
    }

    // ---- Shutdown ----

    /// Stops every run for good (agent shutdown with `stop_jobs_on_exit`).
    pub fn stop_all(&mut self, by: &str) -> Result<(), AgentError> {
        let ids: Vec<RunId> = self.runs.keys().cloned().collect();
        for id in ids {
            self.handle(
                &id,
                Event::StopRequested { reason: StopReason::Requested { by: by.to_owned() } },
            )?;
        }
        Ok(())
    }

    fn jitter(&mut self) -> Jitter {
        // xorshift64: the backoff jitter needs spread, not cryptography.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        Jitter::new((self.rng >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// Where one placement of a run keeps its files (the layout `corral run`
/// uses too).
pub use crate::launch::run_dir;

/// How an attempt ended, with the accounting read from its cgroup.
pub(super) fn exit_info(
    status: crate::scheduler::ExitStatus,
    at: Timestamp,
    stats: FinalStats,
) -> ExitInfo {
    ExitInfo {
        status,
        exited_at: at,
        peak_memory: stats.peak_memory_bytes.map(Bytes),
        oom_kills: stats.oom_kills.unwrap_or(0),
        cpu_seconds: stats.cpu_seconds.unwrap_or(0.0),
    }
}

fn remove_dir(dir: &std::path::Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            warn!("cannot remove the files of a pruned run, {}: {e}", dir.display());
        }
    }
}

fn log_note(note: &FileNote) {
    let names = |jobs: &[crate::vocab::JobName]| {
        jobs.iter().map(|j| j.as_str()).collect::<Vec<_>>().join(", ")
    };
    match note {
        FileNote::Loaded { path, jobs } => {
            info!(file = %path.display(), "job file loaded: {}", names(jobs))
        }
        FileNote::Invalid { path, problems, kept } => {
            let kept = if kept.is_empty() {
                "no earlier version is in force".to_owned()
            } else {
                format!("its last good version stays in force ({})", names(kept))
            };
            error!(file = %path.display(), "job file not applied, {kept}: {}", problems.join("; "))
        }
        FileNote::Refused { path, reason, kept } => {
            let kept = if kept.is_empty() {
                String::new()
            } else {
                format!("; {} stay as last read", names(kept))
            };
            warn!(file = %path.display(), "job file refused: {reason}{kept}")
        }
        FileNote::Removed { path, jobs } => {
            info!(file = %path.display(), "job file removed: {}", names(jobs))
        }
    }
}
