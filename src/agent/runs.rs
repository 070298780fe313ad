//! The runs the agent manages, and which of them is each job's run under way.
//!
//! `RunTable` owns both, so that "the run under way of a job" always names
//! a run the agent manages: a run leaves the index when it leaves the table.
//! Runs of recurring jobs are in the table but, except for a job that stops
//! being recurring, not in the index (see [`cron`](super::cron)).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tracing::Span;

use crate::placement::Assignment;
use crate::scheduler::{ExitStatus, Jitter, Phase, RunMeta, RunState};
use crate::spec::{JobSignal, JobSpec};
use crate::store::{ExitInfo, LaunchInfo};
use crate::vocab::Bytes;
use crate::vocab::JobName;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

use super::ops::{Op, RunOps};
use super::runtime::FinalStats;

/// Where the current attempt's launch is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LaunchState {
    /// Nothing started for this attempt (yet).
    NotStarted,
    /// A launch is under way on the run's operation task.
    Launching,
    /// Its init process exists.
    Launched(LaunchInfo),
}

impl LaunchState {
    /// The launched process, once there is one.
    pub fn info(&self) -> Option<&LaunchInfo> {
        match self {
            LaunchState::Launched(info) => Some(info),
            LaunchState::NotStarted | LaunchState::Launching => None,
        }
    }

    /// A launch was sent to the run's operation task: the attempt's cgroup
    /// exists, or will before any later operation runs there.
    pub fn begun(&self) -> bool {
        !matches!(self, LaunchState::NotStarted)
    }
}

/// One run the agent manages.
#[derive(Debug)]
pub(super) struct Run {
    pub job: JobName,
    /// The version it runs (or will); `None` only between an agent restart
    /// and the first reading of the jobs directory.
    pub spec: Option<Arc<JobSpec>>,
    pub meta: RunMeta,
    pub fingerprint: String,
    pub state: RunState,
    pub assignment: Option<Assignment>,
    pub launch: LaunchState,
    /// Names the current attempt in observations.
    pub epoch: u64,
    pub ops: RunOps,
    /// How the latest attempt ended, with its accounting.
    pub exit: Option<ExitInfo>,
    /// When it was frozen, for resume order.
    pub suspended_at: u64,
    /// The head of the queue this waiting run is held back for (it fits,
    /// but starting could delay the head's reserved start); set by each
    /// scheduling pass, never stored.
    pub reserved_for: Option<RunId>,
    /// Its current attempt's span: every line logged about the run, here
    /// and on its operation task, is in it.
    pub span: Span,
}

impl Run {
    /// A run in `state` with nothing started, placed or ended yet; `spec`
    /// is `None` for a run re-adopted before its job is read.
    pub fn new(
        job: JobName,
        spec: Option<Arc<JobSpec>>,
        meta: RunMeta,
        fingerprint: String,
        state: RunState,
        ops: RunOps,
        span: Span,
    ) -> Run {
        Run {
            job,
            spec,
            meta,
            fingerprint,
            state,
            assignment: None,
            launch: LaunchState::NotStarted,
            epoch: 0,
            ops,
            exit: None,
            suspended_at: 0,
            reserved_for: None,
            span,
        }
    }

    /// Queues `op` on the run's operation task, for its current attempt.
    pub fn send(&self, op: Op) {
        self.ops.send(self.epoch, op, self.span.clone());
    }

    /// Watches the attempt's processes, once launched, as attempt `epoch`.
    pub fn watch(&mut self, epoch: u64) {
        self.epoch = epoch;
        if let Some(launch) = self.launch.info() {
            self.send(Op::Watch(launch.clone()));
        }
    }

    /// Asks the attempt's processes, once launched, to stop: the job's
    /// stop signal (SIGTERM unless it names another).
    pub fn terminate(&self) {
        self.signal(self.meta.policy.stop_signal);
    }

    /// Sends `signal` to the attempt's init, once launched, which passes it
    /// on to the job.
    pub fn signal(&self, signal: JobSignal) {
        if let Some(launch) = self.launch.info() {
            self.send(Op::Signal(launch.clone(), super::ops::nix_signal(signal)));
        }
    }

    /// The run's cgroup may hold processes of this attempt whose settings
    /// must follow its placement and limit.
    pub fn has_live_cgroup(&self) -> bool {
        self.state.phase.may_have_processes() && self.launch.begun()
    }
}

/// The span of attempt `attempt` of run `run`: the job, the run id and the
/// attempt on every line logged about it (`run{job=etl run=etl-3 attempt=2}:`
/// in text logs, the `span` object in JSON logs).
pub(super) fn run_span(job: &JobName, run: &RunId, attempt: u32) -> Span {
    tracing::info_span!("run", job = %job, run = %run, attempt)
}

/// Every run the agent manages, by id, and each one-shot job's run under way.
#[derive(Debug, Default)]
pub(super) struct RunTable {
    runs: BTreeMap<RunId, Run>,
    /// Only ids of runs in `runs`, each of the job it is filed under.
    current: HashMap<JobName, RunId>,
}

impl RunTable {
    pub fn get(&self, id: &RunId) -> Option<&Run> {
        self.runs.get(id)
    }

    pub fn get_mut(&mut self, id: &RunId) -> Option<&mut Run> {
        self.runs.get_mut(id)
    }

    pub fn contains(&self, id: &RunId) -> bool {
        self.runs.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.runs.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&RunId, &Run)> {
        self.runs.iter()
    }

    pub fn values(&self) -> impl Iterator<Item = &Run> {
        self.runs.values()
    }

    pub fn ids(&self) -> Vec<RunId> {
        self.runs.keys().cloned().collect()
    }

    /// Adds run `id`, as no job's run under way (see [`make_current`](Self::make_current)).
    pub fn insert(&mut self, id: RunId, run: Run) {
        self.runs.insert(id, run);
    }

    /// Takes run `id` out; if it was its job's run under way, the job has
    /// none any more.
    pub fn remove(&mut self, id: &RunId) -> Option<Run> {
        let run = self.runs.remove(id)?;
        if self.current.get(&run.job) == Some(id) {
            self.current.remove(&run.job);
        }
        Some(run)
    }

    /// The run under way of one-shot job `job`.
    pub fn current(&self, job: &JobName) -> Option<&RunId> {
        self.current.get(job)
    }

    /// Makes run `id` its job's run under way, unless the job has one
    /// already. Returns whether it is now.
    pub fn make_current(&mut self, id: &RunId) -> bool {
        let Some(run) = self.runs.get(id) else { return false };
        let current = self.current.entry(run.job.clone()).or_insert_with(|| id.clone());
        current == id
    }

    /// `job` has no run under way any more; its run, if any, stays managed
    /// (it is on its way out while the job starts afresh).
    pub fn release_current(&mut self, job: &JobName) {
        self.current.remove(job);
    }

    /// Jobs that have a run under way.
    pub fn jobs_with_current(&self) -> Vec<JobName> {
        self.current.keys().cloned().collect()
    }

    /// Runs whose launch is under way.
    pub fn launches_under_way(&self) -> usize {
        self.runs.values().filter(|r| r.launch == LaunchState::Launching).count()
    }

    /// Runs recorded as placed whose launch was never sent: re-adopted runs
    /// an earlier agent placed but did not start.
    pub fn placed_not_launched(&self) -> Vec<RunId> {
        self.runs
            .iter()
            .filter(|(_, r)| {
                matches!(r.state.phase, Phase::Placed) && r.launch == LaunchState::NotStarted
            })
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// What goes on record for an attempt that ended with `status`: its exit
/// with the accounting, when that was read for this status; else the bare
/// status at `now`.
pub(super) fn exit_on_record(
    read: Option<&ExitInfo>,
    status: crate::scheduler::ExitStatus,
    now: Timestamp,
) -> ExitInfo {
    match read {
        Some(exit) if exit.status == status => exit.clone(),
        _ => ExitInfo { status, exited_at: now, peak_memory: None, oom_kills: 0, cpu_seconds: 0.0 },
    }
}

/// How an attempt ended, with the accounting read from its cgroup.
pub(super) fn exit_info(status: ExitStatus, at: Timestamp, stats: FinalStats) -> ExitInfo {
    ExitInfo {
        status,
        exited_at: at,
        peak_memory: stats.peak_memory_bytes.map(Bytes),
        oom_kills: stats.oom_kills.unwrap_or(0),
        cpu_seconds: stats.cpu_seconds.unwrap_or(0.0),
    }
}

/// Draws the backoff jitter of restarts.
#[derive(Debug)]
pub(super) struct JitterSource(u64);

impl JitterSource {
    pub fn new(seed: u64) -> JitterSource {
        // xorshift64 never leaves zero.
        JitterSource(seed | 1)
    }

    pub fn draw(&mut self) -> Jitter {
        // xorshift64: the backoff jitter needs spread, not cryptography.
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Jitter::new((self.0 >> 11) as f64 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests;

/// Runs for the unit tests of the supervisor's components.
#[cfg(test)]
pub(super) mod testing {
    use std::sync::Arc;

    use tokio::sync::mpsc;

    use super::*;
    use crate::agent::fake::FakeRuntime;
    use crate::scheduler::Policy;

    /// Run `id` (of the job its id names) in `phase`, at priority
    /// `priority`, its operations going to a fake machine. Needs a Tokio
    /// runtime, for its operation task.
    pub fn run(id: &str, phase: Phase, priority: u16) -> Run {
        let id = RunId::new(id);
        let (job, _) = crate::vocab::parse_run_id(&id).expect("a run id");
        let (sink, _) = mpsc::unbounded_channel();
        let ops = RunOps::spawn(Arc::new(FakeRuntime::new()), id, sink);
        let meta = RunMeta { priority, finish_on_removal: false, policy: Policy::default() };
        let state = RunState { phase, ..RunState::new(None, Timestamp::EPOCH) };
        Run::new(job, None, meta, String::new(), state, ops, Span::none())
    }
}
