//! Facts the shell reports about a run. Events say what happened, never
//! what to do; [`transition`](super::transition()) decides that.

use std::fmt;

use crate::placement::Assignment;
use crate::vocab::Bytes;
use crate::vocab::RunId;

use super::state::StopReason;

/// How a process ended, as `waitpid` (or the shim's status file) tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// The exit code as a shell reports it: the code, or 128 + the signal
    /// number for a process killed by a signal.
    pub fn shell_code(self) -> i64 {
        match self {
            ExitStatus::Code(code) => i64::from(code),
            ExitStatus::Signal(signal) => 128 + i64::from(signal),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The allocator granted CPUs and memory.
    Placed(Assignment),
    /// The job's init process exists; `start_time` is its start time in
    /// clock ticks since boot (`/proc/PID/stat` field 22), which with the
    /// pid identifies it even after pid reuse.
    Launched {
        pid: u32,
        start_time: u64,
    },
    LaunchFailed {
        detail: String,
    },
    /// The run cannot be started on this host as its job stands: its launch
    /// plan, checked before the placement is committed, was refused (root
    /// not allowed, no dynamic uid, a container configuration the container
    /// layer rejects). Trying again would be refused again, so the run
    /// fails without restarts.
    Refused {
        detail: String,
    },
    /// The job's init process exited.
    Exited(ExitStatus),
    /// The process is gone and no exit status was recorded.
    Lost {
        detail: String,
    },
    /// The kernel reports the cgroup frozen.
    Frozen,
    /// The kernel reports the cgroup thawed.
    Thawed,
    /// The cgroup reached its hard memory limit.
    OomNotified,
    /// The kernel's OOM killer killed a process of the run.
    OomKilled,
    /// The run's memory notifications could not be set up: it would run
    /// with no OOM handling.
    WatchFailed {
        detail: String,
    },
    /// The preemption planner chose this run to be frozen for `by`.
    PreemptSuspend {
        by: RunId,
    },
    /// The preemption planner chose this run to be stopped and queued again for `by`.
    PreemptRequeue {
        by: RunId,
    },
    /// An operator asked for the run to be stopped gracefully and queued
    /// again with its attempt (`corral requeue`), whatever its preemption
    /// mode: the requeue-preemption path, without a preemption on record.
    RequeueRequested,
    /// An operator asked for the run to be frozen (`corral freeze`), whatever
    /// its preemption mode. It stays suspended by
    /// [`SuspendedBy::Operator`](super::SuspendedBy::Operator) until the
    /// agent sends [`Event::Resume`] for the thaw.
    SuspendRequested,
    /// The run that caused a suspension no longer needs the room.
    Resume,
    /// The node's memory ran short: freeze the run (the suspend path) if
    /// its preemption mode is not `never`. `cause` is the reading that
    /// crossed a threshold.
    PressureFreeze {
        cause: String,
    },
    /// The pressure persisted: stop the run frozen for it and queue it
    /// again with its attempt (the requeue path).
    PressureRequeue {
        cause: String,
    },
    /// This node cannot renew its cluster lease: freeze the cluster run
    /// (the suspend path, whatever its preemption mode), as
    /// [`SuspendedBy::Fence`](super::SuspendedBy::Fence). `cause` says why.
    /// A run frozen for another run or for pressure stays frozen, now for
    /// the fence; one frozen by hand stays the operator's.
    FenceFreeze {
        cause: String,
    },
    /// The cluster run was bound elsewhere while this node had it frozen:
    /// kill it at once, frozen, without a stop grace (which would thaw it
    /// to let it handle SIGTERM).
    Superseded {
        cluster_run: String,
    },
    StopRequested {
        reason: StopReason,
    },
    /// A new version of the run's job is in force; `memory_hard` is its hard
    /// memory limit. The run takes it under the new version's policy: the
    /// limit of a run under way is raised, never lowered.
    JobChanged {
        memory_hard: Option<Bytes>,
    },
    /// The run's job is gone from the jobs directory. With `finish`
    /// (`on_removal: finish`) a run with processes finishes its attempt and
    /// nothing more; otherwise it is stopped.
    JobRemoved {
        finish: bool,
    },
    /// After an agent restart: the launch recorded as under way never
    /// started a process, and its run directory is spent (one serves one
    /// start). The run stays placed under a new placement time, which names
    /// a fresh directory, and is started again.
    NeverStarted {
        detail: String,
    },
    /// Timers, armed by [`Action::ArmTimer`](super::Action::ArmTimer).
    TimeoutElapsed,
    GraceElapsed,
    BackoffElapsed,
    /// The attempt's running time reached its `timeout_signal` point.
    TimeoutSignalDue,
    /// Every job a blocked run comes after has ended as asked: it may queue.
    Released,
    /// A job a blocked run comes after can no longer end as asked.
    DependencyFailed {
        detail: String,
    },
    /// A blocked run's job changed what it comes after: what it waits for
    /// now, as [`Phase::Blocked`](super::Phase::Blocked) tells it.
    AfterChanged {
        after: String,
    },
    /// The agent restarted and found this run in the store; for runs with
    /// processes, the shell has checked that the recorded process is still
    /// the same one (pid and start time).
    AdoptedAfterRestart,
}

impl Event {
    /// A stable name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Placed(_) => "placed",
            Event::Launched { .. } => "launched",
            Event::LaunchFailed { .. } => "launch-failed",
            Event::Refused { .. } => "refused",
            Event::Exited(_) => "exited",
            Event::Lost { .. } => "lost",
            Event::Frozen => "frozen",
            Event::Thawed => "thawed",
            Event::OomNotified => "oom-notified",
            Event::OomKilled => "oom-killed",
            Event::WatchFailed { .. } => "watch-failed",
            Event::PreemptSuspend { .. } => "preempt-suspend",
            Event::PreemptRequeue { .. } => "preempt-requeue",
            Event::SuspendRequested => "suspend-requested",
            Event::RequeueRequested => "requeue-requested",
            Event::Resume => "resume",
            Event::PressureFreeze { .. } => "pressure-freeze",
            Event::PressureRequeue { .. } => "pressure-requeue",
            Event::FenceFreeze { .. } => "fence-freeze",
            Event::Superseded { .. } => "superseded",
            Event::StopRequested { .. } => "stop-requested",
            Event::JobChanged { .. } => "job-changed",
            Event::JobRemoved { .. } => "job-removed",
            Event::NeverStarted { .. } => "never-started",
            Event::TimeoutElapsed => "timeout-elapsed",
            Event::GraceElapsed => "grace-elapsed",
            Event::BackoffElapsed => "backoff-elapsed",
            Event::TimeoutSignalDue => "timeout-signal-due",
            Event::Released => "released",
            Event::DependencyFailed { .. } => "dependency-failed",
            Event::AfterChanged { .. } => "after-changed",
            Event::AdoptedAfterRestart => "adopted-after-restart",
        }
    }
}
