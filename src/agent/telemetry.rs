//! What the agent shows the outside: after every turn of the main loop the
//! supervisor publishes a snapshot of its state (`AgentState`) for the
//! metrics collector and the views the read-only API serves; transitions and
//! recorded events are counted as they happen ([`crate::metrics::events`]).
//! [`Telemetry`] owns what this needs between turns: the runs' open
//! statistics files and the placement failures already counted.
//!
//! Nothing here blocks the loop on a scrape: the HTTP side reads what was
//! last published (an `Arc` swap), and reads the runs' cgroup files itself
//! through [`StatsHandle`]s opened once per attempt.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use crate::api::model::{FileStatus, JobView, NodeView, PressureView, RunListing, RunView};
use crate::api::{ApiError, ApiSource, Freshness};
use crate::cgroup::LayoutKind;
use crate::metrics::agent::{
    EndState, LabelValue as _, OomAction, OomReached, PlacementOutcome, PreemptKind,
    PressureActionKind, StallLine,
};
use crate::metrics::events::{
    Event as _, OomHandled, PlacementFailed, PressureActed, RunEnded, RunLaunched, RunPlaced,
    RunPreempted,
};
use crate::metrics::{
    ArrayCounts, FinishedRun, JobInfo, LiveRun, Metrics, NumaAllocation, PublishedSnapshot,
    Snapshot, SpecFiles, StatsHandle,
};
use crate::placement::Ledger;
use crate::placement::{CpuGrant, PlacementError};
use crate::scheduler::run_meta::preemption_mode;
use crate::scheduler::{FailReason, Outcome, Phase, RunEvent, RunState};
use crate::spec::{DefaultUser, JobSpec};
use crate::store::{RunStore, SqliteStore};
use crate::topology::Topology;
use crate::vocab::JobName;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

use super::cron::CronJobs;
use super::error::AgentError;
use super::reconcile::{FileProblem, JobDirectory};
use super::runs::{Run, RunTable};
use super::runtime::Runtime;

/// The views the API serves, as last published.
#[derive(Debug, Clone)]
pub struct ApiViews {
    /// The jobs directory has been read and earlier runs taken over.
    pub ready: bool,
    /// Why the store cannot be written, while it cannot: the agent takes no
    /// new work then.
    pub store_problem: Option<String>,
    /// Why the cluster cannot be used, in cluster mode, while it cannot:
    /// local runs go on, cluster runs may be fenced.
    pub cluster_problem: Option<String>,
    pub jobs: Vec<JobView>,
    pub node: NodeView,
    /// Live runs' statistics, for run details.
    pub stats: HashMap<RunId, StatsHandle>,
    /// Waiting runs held back for the reservation of the head of the queue,
    /// with the head.
    pub reserved: HashMap<RunId, RunId>,
}

/// Where the supervisor publishes, and what it counts into.
pub struct Telemetry {
    pub metrics: Arc<Metrics>,
    pub snapshot: Arc<PublishedSnapshot>,
    pub views: Arc<RwLock<Option<Arc<ApiViews>>>>,
    pub layout: Option<LayoutKind>,
    /// Per run: the launch its handle was opened for, and the handle.
    handles: HashMap<RunId, ((u32, u64), StatsHandle)>,
    /// Waiting runs the scheduling pass could not place, with the outcome
    /// last counted for them: a run that keeps waiting for the same reason
    /// is counted once, not on every pass.
    unplaced: HashMap<RunId, PlacementOutcome>,
    /// Told what each publish includes, for the HTTP answers that wait for it.
    pub fresh: Option<Arc<Freshness>>,
    /// Node-pressure protection at its last reading, for `/v1/node`.
    pressure: Option<PressureView>,
}

impl Telemetry {
    /// `snapshot` is the source `metrics` was made with.
    pub fn new(
        metrics: Arc<Metrics>,
        snapshot: Arc<PublishedSnapshot>,
        layout: Option<LayoutKind>,
    ) -> Telemetry {
        Telemetry {
            metrics,
            snapshot,
            views: Arc::new(RwLock::new(None)),
            layout,
            handles: HashMap::new(),
            unplaced: HashMap::new(),
            fresh: None,
            pressure: None,
        }
    }
}

/// What a live run uses, for `corral ps`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct LiveUsage {
    pub cpu_percent: Option<f64>,
    pub memory_bytes: Option<u64>,
}

/// What a snapshot is made of: the agent's state after a turn of its main
/// loop, borrowed for the moment of publishing.
pub(super) struct AgentState<'a, R: Runtime, S: RunStore> {
    pub runs: &'a RunTable,
    pub jobs: &'a JobDirectory,
    pub cron: &'a CronJobs,
    pub queue_length: usize,
    pub topology: &'a Topology,
    pub ledger: &'a Ledger,
    pub store: &'a S,
    /// Opens the statistics files of runs launched since the last snapshot.
    pub runtime: &'a R,
    pub store_problem: Option<&'a str>,
    pub cluster_problem: Option<&'a str>,
    /// The jobs directory has been read and earlier runs taken over.
    pub ready: bool,
    /// Who jobs without a `user` run as.
    pub default_user: &'a DefaultUser,
}

impl Telemetry {
    /// Puts the runs that ended within the metrics' retention back in the
    /// scrape, with their final counters as the store recorded them, newest
    /// first up to the metrics' cap. Returns how many.
    ///
    /// Called once at start, after recovery and before the endpoint serves.
    /// That covers both the runs that ended before the previous agent stopped
    /// and those recovery found ended while no agent ran: recovery finalizes
    /// them before telemetry is set, so nothing else pushes them. A run that
    /// ends later is pushed as it ends; the retained runs are keyed by run
    /// id, so no run is in the scrape twice.
    ///
    /// A run's retention counts from its `finished_at`: for a run that ended
    /// while the agent was down, the moment recovery learned of it, so
    /// Prometheus, which could not have seen it end, still gets the whole
    /// retention to see it.
    pub(super) fn restore_finished<S: RunStore>(
        &self,
        store: &S,
        now: Timestamp,
    ) -> Result<usize, AgentError> {
        let config = self.metrics.config();
        let since = now.minus(config.finished_retention);
        let records = store.finished_since(since, config.max_finished_runs)?;
        let mut restored = 0;
        for run in records.iter().filter_map(FinishedRun::from_record) {
            self.metrics.run_finished(run);
            restored += 1;
        }
        Ok(restored)
    }

    /// Publishes `agent` after a turn of the main loop. Opens the statistics
    /// files of runs launched since the last turn and lets go of those of
    /// runs that no longer have processes.
    pub(super) fn publish<R: Runtime, S: RunStore>(&mut self, agent: &AgentState<'_, R, S>) {
        // The store counts its commits; the counter catches up once a turn.
        // Commits happen on the main loop only, so the state about to be
        // published includes every one counted here.
        let committed = agent.store.commits();
        let commits = &self.metrics.agent().store_commits;
        commits.inc_by(committed.saturating_sub(commits.get()));
        self.handles.retain(|id, (launch, _)| {
            agent.runs.get(id).is_some_and(|r| {
                r.state.phase.may_have_processes() && launch_key(r) == Some(*launch)
            })
        });
        for (id, run) in agent.runs.iter() {
            let Some(key) = launch_key(run) else { continue };
            if run.state.phase.may_have_processes() && !self.handles.contains_key(id) {
                if let Some(handle) = agent.runtime.stats_handle(id) {
                    self.handles.insert(id.clone(), (key, handle));
                }
            }
        }

        let runs: Vec<LiveRun> = agent
            .runs
            .iter()
            .filter(|(_, run)| !array_pending(run))
            .map(|(id, run)| live_run(id, run, self.handles.get(id).map(|(_, h)| h.clone())))
            .collect();
        let arrays = array_counts(agent.runs);
        let jobs: Vec<JobInfo> = agent
            .jobs
            .jobs()
            .iter()
            .map(|j| JobInfo {
                job: j.spec.name.clone(),
                priority: j.spec.priority.get(),
                preemption: preemption_mode(j.spec.preemption),
                scheduled: j.spec.recurrence.is_some(),
                user: user_of(&j.spec, agent.default_user),
                next_fire: agent.cron.next_fire(&j.spec.name).map(SystemTime::from),
            })
            .collect();
        let (valid, invalid) = agent.jobs.file_counts();
        let queue_length = agent.queue_length as u64;
        self.snapshot.publish(Snapshot {
            runs,
            jobs,
            queue_length,
            held_back: agent.runs.values().filter(|r| r.reserved_for.is_some()).count() as u64,
            spec_files: SpecFiles { valid, invalid },
            layout: self.layout,
            numa: NumaAllocation::from_ledger(agent.topology, agent.ledger),
            store_unwritable: agent.store_problem.is_some(),
            arrays,
        });

        let views = ApiViews {
            ready: agent.ready,
            store_problem: agent.store_problem.map(str::to_owned),
            cluster_problem: agent.cluster_problem.map(str::to_owned),
            jobs: job_views(agent),
            node: NodeView {
                pressure: self.pressure.clone(),
                ..NodeView::new(agent.topology, agent.ledger, self.layout, queue_length)
            },
            stats: self.handles.iter().map(|(id, (_, h))| (id.clone(), h.clone())).collect(),
            reserved: agent
                .runs
                .iter()
                .filter_map(|(id, r)| Some((id.clone(), r.reserved_for.clone()?)))
                .collect(),
        };
        *self.views.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(views));
        if let Some(fresh) = &self.fresh {
            fresh.published(committed);
        }
    }

    /// The CPU the current attempt of `run` used since it was launched, as a
    /// percentage of one CPU: its cgroup's CPU usage (read through the
    /// handle the metrics use) over the wall time since launch; and the
    /// memory it uses now. Neither when the run has no processes, or no
    /// statistics to read.
    pub(super) fn live_usage(&self, id: &RunId, run: &Run, now: Timestamp) -> LiveUsage {
        let read = || {
            if !run.state.phase.may_have_processes() {
                return None;
            }
            let launch = run.launch.info()?;
            let (key, handle) = self.handles.get(id)?;
            if launch_key(run) != Some(*key) {
                return None;
            }
            let stats = handle.read_usage().ok()?;
            Some(LiveUsage {
                cpu_percent: stats
                    .cpu
                    .usage_ns
                    .map(|ns| cpu_share(ns, now.since(launch.launched_at))),
                memory_bytes: stats.memory.usage_bytes,
            })
        };
        read().unwrap_or_default()
    }

    /// Counts a pending run the scheduling pass could not place: once when
    /// it first fails, and again only when the outcome changes (`no_fit` to
    /// `refused` or back), not on every pass while it keeps waiting. Frozen
    /// runs waiting to resume are not counted, as their resumes are not.
    pub(super) fn count_not_placed(&mut self, id: &RunId, run: &Run, error: &PlacementError) {
        if !matches!(run.state.phase, Phase::Pending) {
            return;
        }
        let outcome = PlacementOutcome::of_error(error);
        if self.unplaced.insert(id.clone(), outcome) == Some(outcome) {
            return;
        }
        PlacementFailed { job: &run.job, run: id, error }.emit(self.metrics.agent());
    }

    /// Forgets the placement failures of runs no longer waiting (placed, or
    /// over): the next failure of a run is counted afresh.
    pub(super) fn still_waiting(&mut self, waiting: &BTreeSet<&RunId>) {
        self.unplaced.retain(|id, _| waiting.contains(id));
    }

    /// Counts a transition of `run` that happened: `before` is the state it
    /// left.
    pub(super) fn count_transition(
        &self,
        id: &RunId,
        run: &Run,
        before: &RunState,
        now: Timestamp,
    ) {
        let _in_run = run.span.enter();
        let agent = self.metrics.agent();
        match (&before.phase, &run.state.phase) {
            (Phase::Pending, Phase::Placed) => {
                RunPlaced { job: &run.job, run: id, waited: now.since(before.since) }.emit(agent)
            }
            (Phase::Placed, Phase::Running { .. }) => {
                RunLaunched { job: &run.job, run: id, took: now.since(before.since) }.emit(agent)
            }
            _ => {}
        }
    }

    /// Counts an event recorded in a run's history.
    pub(super) fn count_event(&self, id: &RunId, run: &Run, event: &RunEvent) {
        let _in_run = run.span.enter();
        let agent = self.metrics.agent();
        match event {
            RunEvent::Preempted { by, mode } => {
                if let Some(mode) = PreemptKind::of(*mode) {
                    RunPreempted { job: &run.job, run: id, by, mode }.emit(agent);
                }
            }
            // Grown in place: the run was stopped at its limit, alive.
            RunEvent::MemoryGrown { .. } => OomHandled {
                job: &run.job,
                run: id,
                action: OomAction::Grow,
                reached: OomReached::Paused,
            }
            .emit(agent),
            RunEvent::PressureFrozen { reading }
            | RunEvent::PressureRequeued { reading }
            | RunEvent::PressureReleased { reading } => {
                let action = match event {
                    RunEvent::PressureFrozen { .. } => PressureActionKind::Freeze,
                    RunEvent::PressureRequeued { .. } => PressureActionKind::Requeue,
                    _ => PressureActionKind::Release,
                };
                PressureActed { job: &run.job, run: id, action, reading }.emit(agent)
            }
            RunEvent::OomRequeued { .. } => OomHandled {
                job: &run.job,
                run: id,
                action: OomAction::Requeue,
                reached: oom_reached(run),
            }
            .emit(agent),
            _ => {}
        }
    }

    /// Shows the last pressure reading and whether new runs are held back.
    pub(super) fn pressure_reading(
        &mut self,
        reading: &crate::scheduler::pressure::Reading,
        level: &crate::scheduler::pressure::Level,
        holding: bool,
    ) {
        use crate::scheduler::pressure::Level;
        let (level, reading_text) = match level {
            Level::High(cause) => ("high", format!("{reading}: {cause}")),
            Level::Band => ("band", reading.to_string()),
            Level::Low => ("low", reading.to_string()),
        };
        self.pressure = Some(PressureView { holding, level, reading: reading_text });
        let agent = self.metrics.agent();
        for (line, value) in
            [(StallLine::Some, reading.some_avg10), (StallLine::Full, reading.full_avg10)]
        {
            if let Some(v) = value {
                // PSI gives percent; the metric is in base units.
                let ratio = v / 100.0;
                agent.pressure_stall.get_or_create(&[(StallLine::KEY, line.as_str())]).set(ratio);
            }
        }
        if let Some(a) = reading.available {
            agent.pressure_available.set(a.get() as f64);
        }
        agent.pressure_holding.set(i64::from(holding));
    }

    /// Counts a run's end and keeps its final counters in the scrape.
    pub(super) fn count_outcome(
        &self,
        id: &RunId,
        run: &Run,
        outcome: &Outcome,
        reason: &str,
        now: Timestamp,
    ) {
        let _in_run = run.span.enter();
        let agent = self.metrics.agent();
        if let Outcome::Failed { reason: FailReason::Oom } = outcome {
            let reached = oom_reached(run);
            OomHandled { job: &run.job, run: id, action: OomAction::Fail, reached }.emit(agent);
        }
        if let Some(state) = EndState::of(&run.state.phase) {
            RunEnded { job: &run.job, run: id, state, detail: reason }.emit(agent);
        }
        let exit = run.exit.as_ref();
        self.metrics.run_finished(FinishedRun {
            job: run.job.clone(),
            run: id.clone(),
            phase: run.state.phase.clone(),
            ended_at: SystemTime::from(now),
            cpu_seconds: exit.map_or(0.0, |e| e.cpu_seconds),
            peak_memory: exit.and_then(|e| e.peak_memory),
            oom_kills: exit.map_or(0, |e| e.oom_kills),
            exit: exit.map(|e| e.status),
        });
    }
}

/// Who a job runs as, as metrics label it and the API says it: its `user`,
/// or the default (`dynamic`: a uid of its own).
fn user_of(spec: &JobSpec, default_user: &DefaultUser) -> String {
    match &spec.user {
        Some(user) => user.to_string(),
        None => default_user.to_string(),
    }
}

fn job_views<R: Runtime, S: RunStore>(agent: &AgentState<'_, R, S>) -> Vec<JobView> {
    // The view is best effort: a store that cannot be read now shows no
    // uids rather than no jobs.
    let uids: HashMap<JobName, u32> = agent
        .store
        .job_uids()
        .map(|all| all.into_iter().map(|a| (a.job, a.uid)).collect())
        .unwrap_or_default();
    let mut runs_of: HashMap<&JobName, Vec<RunListing>> = HashMap::new();
    for (id, run) in agent.runs.iter() {
        runs_of.entry(&run.job).or_default().push(RunListing::new(
            id.clone(),
            &run.state.phase,
            run.state.since,
        ));
    }
    agent
        .jobs
        .jobs()
        .iter()
        .map(|j| {
            let problem = agent.jobs.problem(&j.origin.file);
            JobView {
                name: j.spec.name.clone(),
                file: Some(j.origin.file.display().to_string()),
                file_status: if problem.is_some() {
                    FileStatus::Invalid
                } else {
                    FileStatus::Valid
                },
                problems: problem.map(FileProblem::redacted_lines).unwrap_or_default(),
                priority: j.spec.priority.get(),
                preemption: preemption_mode(j.spec.preemption),
                schedule: j.spec.recurrence.as_ref().map(|r| r.schedule.as_str().to_owned()),
                next_fire: agent.cron.next_fire(&j.spec.name),
                user: user_of(&j.spec, agent.default_user),
                dynamic_uid: uids.get(&j.spec.name).copied(),
                runs: runs_of.remove(&j.spec.name).unwrap_or_default(),
            }
        })
        .collect()
}

/// CPU time used over `wall` time, as a percentage of one CPU.
fn cpu_share(usage_ns: u64, wall: Duration) -> f64 {
    if wall.is_zero() {
        return 0.0;
    }
    // Rounded to a tenth of a percent: more digits are noise in a table.
    let percent = usage_ns as f64 / wall.as_nanos() as f64 * 100.0;
    (percent * 10.0).round() / 10.0
}

/// Identifies the attempt a statistics handle was opened for.
fn launch_key(run: &Run) -> Option<(u32, u64)> {
    run.launch.info().map(|l| (l.init_pid, l.pid_start_time))
}

/// A run of an array still waiting in the queue: counted with its array
/// (`corral_array_runs`), without series of its own, so that the series an
/// array makes are bounded by the runs it has started, not by its indices.
fn array_pending(run: &Run) -> bool {
    matches!(run.state.phase, Phase::Pending)
        && run.spec.as_ref().is_some_and(|s| s.array.is_some())
}

/// The runs under way of every array, by state.
fn array_counts(runs: &RunTable) -> Vec<ArrayCounts> {
    let mut arrays: BTreeMap<&JobName, BTreeMap<&'static str, u64>> = BTreeMap::new();
    for run in runs.values() {
        if run.spec.as_ref().is_some_and(|s| s.array.is_some()) {
            *arrays.entry(&run.job).or_default().entry(run.state.phase.name()).or_default() += 1;
        }
    }
    arrays
        .into_iter()
        .map(|(array, by_state)| ArrayCounts {
            array: array.clone(),
            by_state: by_state.into_iter().collect(),
        })
        .collect()
}

fn live_run(id: &RunId, run: &Run, stats: Option<StatsHandle>) -> LiveRun {
    let frozen = matches!(
        run.state.phase,
        Phase::Suspended { frozen: true, .. } | Phase::OomPaused { frozen: true }
    );
    let memory = run.spec.as_ref().map(|s| &s.resources.memory);
    LiveRun {
        job: run.job.clone(),
        run: id.clone(),
        phase: run.state.phase.clone(),
        frozen,
        exclusive_cpus: match run.assignment.as_ref().map(|a| &a.cpus) {
            Some(CpuGrant::Exclusive(cpus)) => u32::try_from(cpus.len()).unwrap_or(u32::MAX),
            _ => 0,
        },
        numa_nodes: run.assignment.as_ref().map(|a| a.mems.clone()).unwrap_or_default(),
        memory_soft_limit: memory.and_then(|m| m.soft),
        // The limit in force: an OOM policy may have grown it past the spec's.
        memory_hard_limit: run.state.memory_limit.or(memory.and_then(|m| m.hard)),
        stats,
    }
}

/// The agent's answers to the read-only API: the last published views, and
/// run details from the store through a connection of its own.
pub struct AgentApi {
    views: Arc<RwLock<Option<Arc<ApiViews>>>>,
    store: Mutex<SqliteStore>,
}

impl AgentApi {
    pub fn new(views: Arc<RwLock<Option<Arc<ApiViews>>>>, store: SqliteStore) -> AgentApi {
        AgentApi { views, store: Mutex::new(store) }
    }

    fn views(&self) -> Option<Arc<ApiViews>> {
        self.views.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl ApiSource for AgentApi {
    fn ready(&self) -> Result<(), String> {
        match self.views() {
            Some(v) if v.store_problem.is_some() => Err(format!(
                "the state database cannot be written, so no new work is taken ({})",
                v.store_problem.as_deref().unwrap_or_default()
            )),
            Some(v) if v.cluster_problem.is_some() => Err(format!(
                "the cluster is unavailable ({}); local runs go on",
                v.cluster_problem.as_deref().unwrap_or_default()
            )),
            Some(v) if v.ready => Ok(()),
            Some(_) => Err("reading the jobs directory".into()),
            None => Err("taking over the runs of the previous agent".into()),
        }
    }

    fn jobs(&self) -> Vec<JobView> {
        self.views().map(|v| v.jobs.clone()).unwrap_or_default()
    }

    fn job(&self, name: &JobName) -> Option<JobView> {
        self.views()?.jobs.iter().find(|j| &j.name == name).cloned()
    }

    fn run(&self, id: &RunId) -> Result<Option<RunView>, ApiError> {
        let store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        let detail = store.run(id)?;
        let Some(detail) = detail else { return Ok(None) };
        let cluster_run = crate::store::ClusterRuns::cluster_run_of(&*store, id)?.map(|m| {
            crate::api::protocol::ClusterRunRef { run: m.cluster_run, attempt: m.attempt }
        });
        drop(store);
        let views = self.views();
        let stats = views.as_ref().and_then(|v| v.stats.get(id).and_then(|h| h.read().ok()));
        let mut view = RunView::new(detail, stats);
        view.reserved_for = views.and_then(|v| v.reserved.get(id).cloned());
        view.cluster_run = cluster_run;
        Ok(Some(view))
    }

    fn node(&self) -> Option<NodeView> {
        self.views().map(|v| v.node.clone())
    }
}

/// How the attempt that just ended came to its OOM ending: the kernel's
/// count of OOM kills in its cgroup, read when it ended (a kill the agent
/// made after a pause is not the kernel's), or the kill the state machine
/// heard of.
fn oom_reached(run: &Run) -> OomReached {
    let kernel_kills = run.exit.as_ref().map_or(0, |e| e.oom_kills);
    if kernel_kills > 0 || run.state.oom_killed {
        OomReached::Killed
    } else {
        OomReached::Paused
    }
}
