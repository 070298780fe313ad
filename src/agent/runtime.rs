//! What the agent needs from the machine to run jobs, as one trait: start an
//! attempt, watch it, freeze, thaw, signal, kill, change its resources, read
//! how it ended, find it again after a restart.
//!
//! The supervisor is written against [`Runtime`] only. [`host`](super::host)
//! implements it with cgroups and containers; the unit tests use an
//! in-memory fake that records every call.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use nix::sys::signal::Signal;
use tokio::sync::mpsc;

pub use crate::launch::FinalStats;
use crate::launch::{LaunchError, RunInputs, RunPlan};
use crate::metrics::StatsHandle;
use crate::placement::Assignment;
use crate::scheduler::ExitStatus;
use crate::spec::JobSpec;
use crate::store::LaunchInfo;
use crate::topology::CpuSet;
use crate::vocab::Bytes;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

/// Everything needed to start one attempt of a run: its final plan, built
/// ([`Runtime::plan`]) and checked before the run's placement was
/// committed. Nothing changes it afterwards.
#[derive(Debug, Clone)]
pub struct LaunchPlan {
    pub attempt: u32,
    pub plan: RunPlan,
}

impl LaunchPlan {
    pub fn run(&self) -> &RunId {
        &self.plan.run
    }

    /// The placement's directory, named from the run and its placement
    /// time, so a restarted agent finds it again.
    pub fn run_dir(&self) -> &Path {
        &self.plan.container.run_dir
    }
}

/// A running attempt's settings that may change while it runs.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    pub spec: Arc<JobSpec>,
    pub assignment: Assignment,
    pub cpus: CpuSet,
    /// The hard limit in force; the other memory limits follow it
    /// ([`crate::launch::memory_limits`]).
    pub memory_limit: Option<Bytes>,
}

/// Something the runtime saw happen to an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    Launched(LaunchInfo),
    LaunchFailed(String),
    /// The job ended; `stats` were read once whatever it left in its cgroup
    /// was killed, before the cgroup was removed.
    Exited {
        status: ExitStatus,
        at: Timestamp,
        stats: FinalStats,
    },
    /// The job ended with `status` after its cgroup was removed by someone
    /// other than the agent: its processes were killed behind the agent's
    /// back, and its accounting went with the cgroup.
    CgroupRemoved {
        status: ExitStatus,
        at: Timestamp,
    },
    /// No process and no recorded exit status.
    Lost(String),
    /// The run reached its hard memory limit.
    Oom,
    /// The kernel's OOM killer killed one of its processes.
    OomKilled,
    /// A freeze asked for is confirmed by the kernel.
    Frozen,
    /// An operation on the run failed.
    Failed {
        op: &'static str,
        error: String,
    },
}

/// An observation of one attempt: `epoch` names the attempt (the agent gives
/// each launch or adoption a new one) so that late reports about an earlier
/// attempt are recognised and dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub run: RunId,
    pub epoch: u64,
    pub what: Observed,
}

pub type Sink = mpsc::UnboundedSender<Observation>;

/// Where an attempt stands, judged without being its parent.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// The attempt's processes are there: the same processes as launched
    /// (pid and start time checked).
    Running { launch: LaunchInfo },
    /// It ended and its exit status was recorded.
    Finished { launch: LaunchInfo, status: ExitStatus, at: Timestamp },
    /// Started, but nothing records how it ended.
    Lost { detail: String },
    /// A start was begun but the job never ran: no record of it running,
    /// and nothing left that could still start it.
    NeverRan { detail: String },
    /// The run directory was never used: nothing was started.
    NotStarted,
}

#[derive(Debug, thiserror::Error)]
#[error("{op} {run}: {detail}")]
pub struct RuntimeError {
    pub op: &'static str,
    pub run: RunId,
    pub detail: String,
}

impl RuntimeError {
    pub fn new(op: &'static str, run: &RunId, detail: impl ToString) -> RuntimeError {
        RuntimeError { op, run: run.clone(), detail: detail.to_string() }
    }
}

/// The machine, as the supervisor uses it. Operations on one run are issued
/// one at a time, in order; operations on different runs may overlap.
pub trait Runtime: Send + Sync + 'static {
    /// The final plan of one placement of a run of `spec`. Pure: built from
    /// the host's facts the runtime gathered once (agent configuration,
    /// cgroup capabilities, where a run's cgroup is), nothing read or
    /// written. A job the host would refuse (root not allowed, a dynamic
    /// uid out of range, a container configuration the container layer
    /// rejects) is refused here, before anything is created.
    fn plan(&self, spec: &JobSpec, run: &RunInputs<'_>) -> Result<RunPlan, LaunchError>;

    /// Creates the attempt's cgroup and starts it; returns once the job's
    /// program runs (or could not be started).
    fn launch(
        &self,
        plan: LaunchPlan,
    ) -> impl Future<Output = Result<LaunchInfo, RuntimeError>> + Send;

    /// Reports the attempt's end and its memory events to `sink`, tagged
    /// with `epoch`, from now until it ends.
    fn watch(
        &self,
        run: &RunId,
        launch: &LaunchInfo,
        epoch: u64,
        sink: Sink,
    ) -> Result<(), RuntimeError>;

    /// Returns once every process of the run is stopped (kernel-confirmed),
    /// or is parked at its memory limit, where it cannot run either.
    fn freeze(&self, run: &RunId) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    fn thaw(&self, run: &RunId) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Sends `signal` to the job's init, if it is still the process launched.
    fn signal(&self, run: &RunId, launch: &LaunchInfo, signal: Signal) -> Result<(), RuntimeError>;

    /// Kills every process of the run (thawing it if need be); returns once
    /// they are gone.
    fn kill_all(&self, run: &RunId) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Applies `settings` to the running attempt: cpuset, memory limits, CPU
    /// weight and quota, pids.
    fn update(&self, run: &RunId, settings: &LiveSettings) -> Result<(), RuntimeError>;

    /// Removes the run's cgroup, killing anything left in it first.
    fn remove(&self, run: &RunId) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Where the attempt in `run_dir` stands.
    fn probe(&self, run: &RunId, run_dir: &Path) -> Result<Probe, RuntimeError>;

    /// The run's accounting, read now.
    fn stats(&self, run: &RunId) -> Option<FinalStats>;

    /// The run's statistics files, opened once for repeated reading by
    /// scrapes; `None` where it has no cgroup (or none can be read).
    fn stats_handle(&self, run: &RunId) -> Option<StatsHandle> {
        let _ = run;
        None
    }

    /// Runs that have a cgroup under the agent's parent, with their current
    /// cpuset where it can be read.
    fn live_runs(&self) -> Result<Vec<(RunId, Option<CpuSet>)>, RuntimeError>;
}
