//! The JSON documents the read-only API serves. Field names are the
//! contract with scripts: snake_case, sizes in bytes, times as RFC 3339 UTC.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cgroup::{LayoutKind, Stats};
use crate::metrics::NumaAllocation;
use crate::placement::{Assignment, Ledger};
use crate::scheduler::{Phase, PreemptionMode, RunEvent};
use crate::store::RunDetail;
use crate::topology::{CpuSet, NodeId, Topology};
use crate::vocab::JobName;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

use super::run::{LiveFacts, RunFacts};

fn time(t: Timestamp) -> Option<DateTime<Utc>> {
    t.to_datetime()
}

/// `GET /v1/jobs` and `/v1/jobs/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    pub name: JobName,
    /// The job file it comes from.
    pub file: Option<String>,
    /// `valid`, or `invalid` when the file's latest version has problems
    /// (the last good version, if any, stays in force).
    pub file_status: FileStatus,
    /// Every problem in the file's latest version, with file, line and field.
    pub problems: Vec<String>,
    pub priority: u16,
    pub preemption: PreemptionMode,
    /// The cron expression, for recurring jobs.
    pub schedule: Option<String>,
    pub next_fire: Option<DateTime<Utc>>,
    /// Its `user`, or the agent's `default_user` (`dynamic` for a uid of
    /// its own).
    pub user: String,
    /// Its uid from the `dynamic_users` range, once its first run was
    /// given one.
    pub dynamic_uid: Option<u32>,
    /// Its runs that have not ended.
    pub runs: Vec<RunListing>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    Valid,
    Invalid,
}

/// A run in a job's list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunListing {
    pub id: RunId,
    pub state: &'static str,
    pub since: Option<DateTime<Utc>>,
}

impl RunListing {
    pub fn new(id: RunId, phase: &Phase, since: Timestamp) -> RunListing {
        RunListing { id, state: phase.name(), since: time(since) }
    }
}

/// `GET /v1/runs/{id}`: the stored record and history, and live numbers
/// while the run has a cgroup. Made by [`RunFacts::http`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunView {
    pub id: RunId,
    pub job: JobName,
    pub seq: u64,
    pub state: &'static str,
    /// The state with its details (who suspended it, until when it waits, …).
    pub phase: Phase,
    pub attempt: u32,
    pub restarts: u32,
    pub oom_requeues: u32,
    pub memory_limit_bytes: Option<u64>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// CPUs, memory nodes and memory placement gave it.
    pub placement: Option<Assignment>,
    /// While it waits though it fits: the head of the queue whose reserved
    /// start it could delay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved_for: Option<RunId>,
    /// The cluster run this local run runs, in cluster mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_run: Option<super::protocol::ClusterRunRef>,
    pub launch: Option<LaunchView>,
    pub exit: Option<ExitView>,
    pub transitions: Vec<TransitionView>,
    /// OOMs, preemptions, resumptions, restarts.
    pub events: Vec<EventView>,
    /// Read from its cgroup for this request; `None` once it has none.
    pub stats: Option<Stats>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LaunchView {
    pub shim_pid: u32,
    pub init_pid: u32,
    pub run_dir: String,
    pub launched_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExitView {
    /// The exit code, or 128 + the signal number.
    pub code: i64,
    pub signal: Option<i32>,
    pub exited_at: Option<DateTime<Utc>>,
    pub peak_memory_bytes: Option<u64>,
    pub oom_kills: u64,
    pub cpu_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransitionView {
    pub at: Option<DateTime<Utc>>,
    pub from: Option<String>,
    pub to: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventView {
    pub at: Option<DateTime<Utc>>,
    pub event: RunEvent,
    pub reason: String,
}

impl RunView {
    /// The document for a run read from the store, with its cgroup's statistics
    /// (see [`RunFacts::http`]).
    pub fn new(detail: RunDetail, stats: Option<Stats>) -> RunView {
        RunFacts::stored(&detail).with_live(LiveFacts { stats, ..LiveFacts::default() }).http()
    }
}

/// `GET /v1/node`: the machine, what is handed out, and the cgroup layout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeView {
    pub layout: Option<LayoutKind>,
    pub topology: Topology,
    /// CPUs placement may hand out.
    pub allocatable_cpus: CpuSet,
    /// Allocatable CPUs no run holds exclusively.
    pub shared_pool: CpuSet,
    pub numa_nodes: Vec<NumaNodeView>,
    /// Every placement in force.
    pub assignments: Vec<Assignment>,
    pub queue_length: u64,
    /// Node-pressure protection at its last reading; `null` while it is off.
    pub pressure: Option<PressureView>,
}

/// Node-pressure protection as of its last reading (see `docs/agent.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PressureView {
    /// New runs are held back.
    pub holding: bool,
    /// `high`, `band` or `low` against the thresholds.
    pub level: &'static str,
    /// The reading (`MemAvailable=…, memory.some avg10=…`), and for a high
    /// one what crossed which threshold.
    pub reading: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NumaNodeView {
    pub node: NodeId,
    pub allocatable_cpus: u32,
    pub allocated_cpus: u32,
    pub allocatable_memory_bytes: u64,
    pub allocated_memory_bytes: u64,
}

impl NodeView {
    pub fn new(
        topology: &Topology,
        ledger: &Ledger,
        layout: Option<LayoutKind>,
        queue_length: u64,
    ) -> NodeView {
        NodeView {
            layout,
            topology: topology.clone(),
            allocatable_cpus: ledger.allocatable().clone(),
            shared_pool: ledger.shared_pool().clone(),
            numa_nodes: NumaAllocation::from_ledger(topology, ledger)
                .into_iter()
                .map(|n| NumaNodeView {
                    node: n.node,
                    allocatable_cpus: n.allocatable_cpus,
                    allocated_cpus: n.allocated_cpus,
                    allocatable_memory_bytes: n.allocatable_memory.get(),
                    allocated_memory_bytes: n.allocated_memory.get(),
                })
                .collect(),
            assignments: ledger.assignments().cloned().collect(),
            queue_length,
            pressure: None,
        }
    }
}
