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

use crate::cgroup::CgroupError;
use crate::container::ContainerError;
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
#[derive(Debug, Clone)]
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
    /// An operation on the run failed; the error says which.
    Failed(RuntimeError),
}

/// An observation of one attempt: `epoch` names the attempt (the agent gives
/// each launch or adoption a new one) so that late reports about an earlier
/// attempt are recognised and dropped.
#[derive(Debug, Clone)]
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

/// What the agent asked of the runtime for one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Launch,
    Watch,
    Freeze,
    Thaw,
    Signal,
    Kill,
    Update,
    Remove,
    Probe,
    /// Reading its accounting.
    Stats,
    /// Listing the runs that have a cgroup.
    List,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::Launch => "launch",
            Operation::Watch => "watch",
            Operation::Freeze => "freeze",
            Operation::Thaw => "thaw",
            Operation::Signal => "signal",
            Operation::Kill => "kill",
            Operation::Update => "update",
            Operation::Remove => "remove",
            Operation::Probe => "probe",
            Operation::Stats => "stats",
            Operation::List => "list",
        })
    }
}

/// Why an operation failed, as the layer that failed reported it.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// The blocking task carrying the operation panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// A freeze found the job OOM-killed: the kernel reached it first, and a
    /// dying job is not paused at its limit.
    #[error("the kernel OOM-killed {kills} of its processes before it was frozen")]
    OomKilledFirst { kills: u64 },
}

/// A failed operation on a run. Shared, not copied, when its report is kept
/// to be delivered again (the underlying errors cannot be cloned).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op} {run}: {cause}")]
pub struct RuntimeError {
    pub op: Operation,
    pub run: RunId,
    pub cause: Arc<Cause>,
}

impl RuntimeError {
    pub fn new(op: Operation, run: &RunId, cause: impl Into<Cause>) -> RuntimeError {
        RuntimeError { op, run: run.clone(), cause: Arc::new(cause.into()) }
    }

    /// Whether it failed because the run's cgroup is no longer there: removed
    /// by someone else, which kills what ran in it, so the run's end is on
    /// its way from its watch.
    pub fn is_cgroup_gone(&self) -> bool {
        match &*self.cause {
            Cause::Cgroup(e) => e.is_gone(),
            _ => false,
        }
    }

    /// Whether the operation found the job OOM-killed by the kernel.
    pub fn is_oom_kill(&self) -> bool {
        matches!(*self.cause, Cause::OomKilledFirst { .. })
    }

    /// Whether the kernel did not confirm a freeze, thaw or kill in time.
    pub fn timed_out(&self) -> bool {
        matches!(
            *self.cause,
            Cause::Cgroup(CgroupError::FreezerTimeout { .. } | CgroupError::KillTimeout { .. })
        )
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

#[cfg(test)]
mod tests {
    use std::io;
    use std::time::Duration;

    use super::*;

    fn failed(cause: impl Into<Cause>) -> RuntimeError {
        RuntimeError::new(Operation::Freeze, &RunId::new("a-1"), cause)
    }

    #[test]
    fn a_failure_says_whether_the_cgroup_is_gone_or_the_kernel_was_too_slow() {
        let gone = failed(CgroupError::Write {
            path: "/sys/fs/cgroup/unified/corral/a-1/cgroup.freeze".into(),
            value: "1".into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        });
        assert!(gone.is_cgroup_gone() && !gone.timed_out());
        let busy = failed(CgroupError::Write {
            path: "/sys/fs/cgroup/unified/corral/a-1/cgroup.freeze".into(),
            value: "1".into(),
            source: io::Error::from_raw_os_error(libc::EBUSY),
        });
        assert!(!busy.is_cgroup_gone() && !busy.timed_out());
        let slow = failed(CgroupError::FreezerTimeout {
            path: "/sys/fs/cgroup/unified/corral/a-1".into(),
            wanted: "frozen",
            state: "freezing".into(),
            timeout: Duration::from_secs(10),
        });
        assert!(slow.timed_out() && !slow.is_cgroup_gone());
        // A run whose init is gone is not a cgroup that is gone.
        let lost = failed(ContainerError::Lost { run_dir: "/runs/a-1".into() });
        assert!(!lost.is_cgroup_gone());
        assert_eq!(
            slow.to_string(),
            "freeze a-1: cgroup /sys/fs/cgroup/unified/corral/a-1 did not reach frozen within \
             10s; it is stuck in freezing"
        );
    }
}
