//! Where a run is in its life, and what it carries from attempt to attempt.

use std::fmt;
use std::time::Duration;

use crate::vocab::Bytes;
use crate::vocab::RunId;

use super::event::ExitStatus;
use crate::vocab::Timestamp;

/// A run's whole decision-relevant state. Serializable: the store keeps it
/// verbatim so that a restarted agent resumes every run exactly where it was.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunState {
    pub phase: Phase,
    /// When `phase` was entered.
    pub since: Timestamp,
    /// Which try this is, from 1. Restarts and OOM requeues start a new try;
    /// a preemption requeue does not (the job did nothing wrong).
    pub attempt: u32,
    /// Restarts used, against [`RestartPolicy::attempts`](super::RestartPolicy::attempts).
    pub restarts: u32,
    /// OOM requeues used, against the requeue policy's `max`.
    pub oom_requeues: u32,
    /// The hard memory limit of the next or current attempt. OOM handling
    /// raises it; nothing lowers it.
    pub memory_limit: Option<Bytes>,
    /// Running time of this attempt before the current stretch in
    /// [`Phase::Running`]: the part of the active deadline already spent.
    pub active: Duration,
    /// The kernel's OOM killer hit this attempt, so its end is an OOM ending
    /// whatever the exit status says.
    pub oom_killed: bool,
}

impl RunState {
    /// A new run, waiting for placement.
    pub fn new(memory_limit: Option<Bytes>, now: Timestamp) -> RunState {
        RunState {
            phase: Phase::Pending,
            since: now,
            attempt: 1,
            restarts: 0,
            oom_requeues: 0,
            memory_limit,
            active: Duration::ZERO,
            oom_killed: false,
        }
    }

    pub fn is_terminal(&self) -> bool {
        self.phase.is_terminal()
    }

    /// Running time of the current attempt at `now`.
    pub fn active_at(&self, now: Timestamp) -> Duration {
        match self.phase {
            Phase::Running { since } => self.active.saturating_add(now.since(since)),
            _ => self.active,
        }
    }
}

/// The phases of a run.
///
/// ```text
/// Pending ─Placed→ Placed ─Launched→ Running ⇄ Suspended
///                                     │  ↘ OomPaused → Running | Stopping
///                                     ↓
///        Stopping (TERM, grace, KILL) → Killed | Pending | (ending)
/// (ending) → Succeeded | Failed | BackoffWaiting → Pending
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "phase", rename_all = "kebab-case")]
pub enum Phase {
    /// Waiting in the queue for CPUs and memory.
    Pending,
    /// Placement held; the launch is under way.
    Placed,
    Running {
        /// Start of the current running stretch (launch, resume or grow).
        since: Timestamp,
    },
    /// Frozen to make room for `by`.
    Suspended {
        by: RunId,
        /// The kernel has reported the cgroup frozen.
        frozen: bool,
        /// An OOM notification arrived while frozen. Under cgroup v1 with the
        /// OOM killer disabled the task stays parked at the limit and the
        /// kernel does not notify again, so the OOM policy must run at resume.
        oom_pending: bool,
    },
    /// Frozen at the memory limit while the OOM policy decides.
    OomPaused {
        /// The kernel has reported the cgroup frozen.
        frozen: bool,
    },
    /// SIGTERM sent; every process is killed at `deadline` if still there.
    Stopping {
        intent: StopIntent,
        deadline: Timestamp,
        /// Every process has been sent SIGKILL.
        escalated: bool,
    },
    /// The attempt ended and the restart policy asked for another after a wait.
    BackoffWaiting {
        until: Timestamp,
        /// How the previous attempt failed; `None` after a success under
        /// `restart: always`.
        after: Option<FailReason>,
    },
    Succeeded,
    Failed {
        reason: FailReason,
    },
    Killed {
        reason: StopReason,
    },
}

impl Phase {
    pub fn is_terminal(&self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed { .. } | Phase::Killed { .. })
    }

    /// A stable lower-case name, used in logs, metrics labels and the store.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Placed => "placed",
            Phase::Running { .. } => "running",
            Phase::Suspended { .. } => "suspended",
            Phase::OomPaused { .. } => "oom-paused",
            Phase::Stopping { .. } => "stopping",
            Phase::BackoffWaiting { .. } => "backoff-waiting",
            Phase::Succeeded => "succeeded",
            Phase::Failed { .. } => "failed",
            Phase::Killed { .. } => "killed",
        }
    }

    /// Every phase name, for exhaustive checks (metrics, store constraints).
    pub const NAMES: [&'static str; 10] = [
        "pending",
        "placed",
        "running",
        "suspended",
        "oom-paused",
        "stopping",
        "backoff-waiting",
        "succeeded",
        "failed",
        "killed",
    ];

    /// Processes of the run may exist in this phase.
    pub fn may_have_processes(&self) -> bool {
        matches!(
            self,
            Phase::Placed
                | Phase::Running { .. }
                | Phase::Suspended { .. }
                | Phase::OomPaused { .. }
                | Phase::Stopping { .. }
        )
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a run is being stopped, which decides where it goes once its
/// processes are gone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "intent", rename_all = "kebab-case")]
pub enum StopIntent {
    /// For good: ends in [`Phase::Killed`].
    Stop { reason: StopReason },
    /// The active deadline passed: the attempt fails with [`FailReason::Timeout`].
    Timeout,
    /// Preempted by requeue: back to [`Phase::Pending`], same attempt.
    Requeue { by: RunId },
    /// Out of memory: the OOM policy decides at exit (requeue or fail).
    Oom,
}

/// Why a run was stopped for good.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "stop", rename_all = "kebab-case")]
pub enum StopReason {
    /// Its job file, or the job in it, is gone.
    JobRemoved,
    /// The job changed in a way that needs a fresh run.
    JobChanged,
    /// A newer run of a `concurrency: replace` job took its place.
    Replaced { by: RunId },
    /// Someone asked (CLI, API).
    Requested { by: String },
    /// Its memory notifications could not be set up, so a memory limit
    /// would go unhandled (never grown, never reported).
    Unwatched { detail: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lists_every_phase_once() {
        let by = RunId::new("x-1");
        let all = [
            Phase::Pending,
            Phase::Placed,
            Phase::Running { since: Timestamp::EPOCH },
            Phase::Suspended { by, frozen: false, oom_pending: false },
            Phase::OomPaused { frozen: false },
            Phase::Stopping {
                intent: StopIntent::Timeout,
                deadline: Timestamp::EPOCH,
                escalated: false,
            },
            Phase::BackoffWaiting { until: Timestamp::EPOCH, after: None },
            Phase::Succeeded,
            Phase::Failed { reason: FailReason::Timeout },
            Phase::Killed { reason: StopReason::JobRemoved },
        ];
        let names: Vec<_> = all.iter().map(Phase::name).collect();
        assert_eq!(names, Phase::NAMES);
        let terminal: Vec<_> = all.iter().filter(|p| p.is_terminal()).map(Phase::name).collect();
        assert_eq!(terminal, ["succeeded", "failed", "killed"]);
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::JobRemoved => f.write_str("job removed"),
            StopReason::JobChanged => f.write_str("job changed"),
            StopReason::Replaced { by } => write!(f, "replaced by {by}"),
            StopReason::Requested { by } => write!(f, "stop requested by {by}"),
            StopReason::Unwatched { detail } => {
                write!(f, "its memory notifications could not be set up: {detail}")
            }
        }
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "failure", rename_all = "kebab-case")]
pub enum FailReason {
    /// Non-zero exit code or death by signal.
    Exit {
        status: ExitStatus,
    },
    Timeout,
    /// Out of memory and the OOM policy had nothing left to try.
    Oom,
    LaunchFailed {
        detail: String,
    },
    /// The process vanished without a recorded exit status.
    Lost {
        detail: String,
    },
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::Exit { status } => write!(f, "{status}"),
            FailReason::Timeout => f.write_str("active deadline exceeded"),
            FailReason::Oom => f.write_str("out of memory"),
            FailReason::LaunchFailed { detail } => write!(f, "launch failed: {detail}"),
            FailReason::Lost { detail } => write!(f, "process lost: {detail}"),
        }
    }
}

/// How a run ended for good, for the store and metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    Succeeded,
    Failed { reason: FailReason },
    Killed { reason: StopReason },
}
