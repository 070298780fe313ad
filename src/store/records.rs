//! What the store keeps about a run.

use std::path::PathBuf;

use crate::placement::Assignment;
use crate::scheduler::{ExitStatus, RunEvent, RunState};
use crate::vocab::Bytes;
use crate::vocab::JobName;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

/// How to find a run's processes again after an agent restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchInfo {
    /// The per-run shim that outlives the agent and records the exit status.
    pub shim_pid: u32,
    /// The job's init process (pid 1 of its pid namespace), as seen from the host.
    pub init_pid: u32,
    /// Start time of `init_pid` in clock ticks since boot (`/proc/PID/stat`
    /// field 22): a pid alone may have been reused by the time it is checked.
    pub pid_start_time: u64,
    /// Where the run's status file, logs and rootfs live.
    pub run_dir: PathBuf,
    pub launched_at: Timestamp,
}

/// How an attempt ended, with its accounting.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitInfo {
    pub status: ExitStatus,
    pub exited_at: Timestamp,
    pub peak_memory: Option<Bytes>,
    pub oom_kills: u64,
    pub cpu_seconds: f64,
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: RunId,
    pub job: JobName,
    /// The run's number within its job.
    pub seq: u64,
    pub state: RunState,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// When the run reached a terminal phase.
    pub finished_at: Option<Timestamp>,
    pub assignment: Option<Assignment>,
    /// The latest attempt's launch.
    pub launch: Option<LaunchInfo>,
    /// The latest attempt's exit.
    pub exit: Option<ExitInfo>,
    /// The version of its job the run is for, if its creator said.
    pub version: Option<JobVersion>,
}

/// Which version of its job a run is for. Both parts are the creator's own
/// encoding; the store only keeps them with the run, atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobVersion {
    /// Equal for equal job definitions.
    pub fingerprint: String,
    /// What the creator needs to know about the job without reading it again.
    pub meta: String,
}

/// One entry of a run's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRecord {
    /// 1 for the run's creation, then counting up.
    pub n: u32,
    pub at: Timestamp,
    /// `None` for the creation.
    pub from: Option<String>,
    pub to: String,
    pub reason: String,
}

/// Something that happened to a run (OOM, preemption, …), in its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub n: u32,
    pub at: Timestamp,
    pub event: RunEvent,
    pub reason: String,
}

/// A run with its whole history.
#[derive(Debug, Clone, PartialEq)]
pub struct RunDetail {
    pub record: RunRecord,
    pub transitions: Vec<TransitionRecord>,
    pub events: Vec<EventRecord>,
}

/// How many finished runs of a job to keep. Killed runs count as failed:
/// both are runs that did not do their work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub successful: u32,
    pub failed: u32,
}
