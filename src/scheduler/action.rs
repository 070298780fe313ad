//! What the shell must do after a transition, in order.

use std::time::Duration;

use crate::placement::Assignment;
use crate::vocab::Bytes;
use crate::vocab::RunId;

use super::event::ExitStatus;
use super::policy::PreemptionMode;
use super::state::Outcome;
use crate::spec::JobSignal;
use crate::vocab::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Put the run in the placement queue.
    Enqueue,
    /// Take the run out of the placement queue: it left `Pending` without
    /// being placed.
    Dequeue,
    /// Start the job in a container on `assignment`, hard memory limit
    /// `memory_limit`.
    Launch {
        assignment: Assignment,
        memory_limit: Option<Bytes>,
    },
    /// Re-attach to the run's existing processes after an agent restart:
    /// exit status, OOM and freezer notifications.
    Watch,
    Freeze,
    Thaw,
    /// Raise the hard limit in place (and re-charge the ledger); the run's
    /// other settings go to its cgroup with it.
    SetMemoryLimit(Bytes),
    /// Send the run's current settings (its job's resources, its cpuset,
    /// its hard limit) to its cgroup: its job changed.
    UpdateSettings,
    /// The job's stop signal ([`Policy::stop_signal`](super::Policy::stop_signal),
    /// SIGTERM unless the job names another) to the job's init process,
    /// which passes it on to the job.
    Terminate,
    /// `signal` to the job's init process, which passes it on to the job;
    /// nothing else follows from it (the `timeout_signal` warning).
    Signal(JobSignal),
    /// SIGKILL to every process in the run's cgroup. The shell thaws the
    /// cgroup afterwards if it is frozen: a frozen cgroup-v1 task does not
    /// act on SIGKILL until thawed.
    KillAll,
    /// The run is frozen: its exclusive CPUs go back to the shared pool while
    /// its memory stays charged ([`Ledger::suspend`](crate::placement::Ledger::suspend)).
    YieldCpus,
    /// Return the run's placement to the ledger.
    ReleasePlacement,
    /// Deliver the timer's event at `at`. A timer re-armed replaces the old
    /// one of the same kind; a stale timer firing is harmless (the
    /// transition checks the deadline again).
    ArmTimer {
        timer: Timer,
        at: Timestamp,
    },
    /// Store the exit status of the attempt that just ended.
    RecordExit(ExitStatus),
    /// Store something that happened to the run (OOM, preemption, …).
    RecordEvent(RunEvent),
    /// The run is over for good.
    RecordOutcome(Outcome),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// Delivers [`Event::TimeoutElapsed`](super::Event::TimeoutElapsed).
    ActiveDeadline,
    /// Delivers [`Event::GraceElapsed`](super::Event::GraceElapsed).
    StopGrace,
    /// Delivers [`Event::BackoffElapsed`](super::Event::BackoffElapsed).
    Backoff,
    /// Delivers [`Event::TimeoutSignalDue`](super::Event::TimeoutSignalDue).
    TimeoutSignal,
}

/// Noteworthy things that happened to a run, kept in its history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RunEvent {
    /// The run reached its hard limit.
    Oom { limit: Option<Bytes> },
    /// The kernel's OOM killer killed one of its processes.
    OomKilled,
    /// The limit was raised in place.
    MemoryGrown { from: Bytes, to: Bytes },
    /// Killed and queued again with a larger limit.
    OomRequeued { from: Option<Bytes>, to: Option<Bytes> },
    /// Preempted to make room for `by`.
    Preempted { by: RunId, mode: PreemptionMode },
    /// Thawed after a suspension.
    Resumed,
    /// An operator let a run they froze by hand run again; it resumes when
    /// there is room ([`Resumed`](RunEvent::Resumed) then).
    Released,
    /// The attempt ended and another follows after `delay`.
    RestartScheduled { restart: u32, delay: Duration },
    /// The `timeout_signal` was sent, `before` ahead of the timeout.
    TimeoutSignalled { signal: JobSignal, before: Duration },
    /// Frozen because the node's memory ran short; `reading` is what
    /// crossed a threshold.
    PressureFrozen { reading: String },
    /// Frozen for pressure, and the pressure persisted: stopped and queued
    /// again with its attempt.
    PressureRequeued { reading: String },
    /// The pressure is over: it may resume when there is room
    /// ([`Resumed`](RunEvent::Resumed) then).
    PressureReleased { reading: String },
}

impl RunEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            RunEvent::Oom { .. } => "oom",
            RunEvent::OomKilled => "oom-killed",
            RunEvent::MemoryGrown { .. } => "memory-grown",
            RunEvent::OomRequeued { .. } => "oom-requeued",
            RunEvent::Preempted { .. } => "preempted",
            RunEvent::Resumed => "resumed",
            RunEvent::Released => "released",
            RunEvent::RestartScheduled { .. } => "restart-scheduled",
            RunEvent::TimeoutSignalled { .. } => "timeout-signalled",
            RunEvent::PressureFrozen { .. } => "pressure-frozen",
            RunEvent::PressureRequeued { .. } => "pressure-requeued",
            RunEvent::PressureReleased { .. } => "pressure-released",
        }
    }

    /// The other run involved, if any: who preempted this one.
    pub fn other_run(&self) -> Option<&RunId> {
        match self {
            RunEvent::Preempted { by, .. } => Some(by),
            _ => None,
        }
    }
}
