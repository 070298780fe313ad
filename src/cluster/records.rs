//! The values corral keeps in etcd, as JSON (see [`super::keys`] for where).
//!
//! Anything with write access to the prefix can write any of these, so every
//! reader parses with [`decode`] and treats a value that does not parse, or
//! does not hold together, as a bad record to report, never to act on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::vocab::Timestamp;

/// Parses a record; the error names the key, for the report.
pub fn decode<T: for<'de> Deserialize<'de>>(key: &str, value: &[u8]) -> Result<T, BadRecord> {
    serde_json::from_slice(value)
        .map_err(|e| BadRecord { key: key.to_owned(), reason: e.to_string() })
}

/// Serializes a record.
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).expect("cluster records serialize")
}

/// A value under the prefix that is not what its key says it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad record at {key}: {reason}")]
pub struct BadRecord {
    pub key: String,
    pub reason: String,
}

/// A node, as its agent publishes it under its lease: it disappears when
/// the lease expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `v1`, `v2`, `hybrid`: as `corral doctor` names the host's cgroups.
    pub cgroup_mode: String,
    /// The agent's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// The agent's HTTP endpoint as other nodes reach it (for logs).
    pub api: Option<String>,
    /// What the node can give jobs at all: after `reserved_cpus` and
    /// `reserved_memory`.
    pub capacity: Capacity,
    /// What its runs hold now, local and cluster runs alike.
    pub allocated: Allocation,
    pub updated_at: Timestamp,
}

/// A node's allocatable resources.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Capacity {
    /// Allocatable CPUs.
    pub cpus: u32,
    /// Allocatable memory, bytes.
    pub memory: u64,
    /// The same per NUMA node; one entry on a machine without NUMA.
    pub numa: Vec<NumaCapacity>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NumaCapacity {
    pub node: u32,
    pub cpus: u32,
    pub memory: u64,
}

/// What a node's runs hold.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Allocation {
    /// CPUs held exclusively.
    pub exclusive_cpus: u32,
    /// Memory charged (hard limits of placed runs), bytes.
    pub memory: u64,
    /// The same per NUMA node.
    pub numa: Vec<NumaCapacity>,
    /// Runs holding a placement (local and cluster).
    pub runs: u32,
    /// Runs waiting on the node (local and cluster).
    pub pending: u32,
}

/// A job applied to the cluster (`corral apply`). The text is the whole
/// file it came from; the job is the one named `name` in it, compiled
/// again by the scheduler and by the node that runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub name: String,
    /// The file's path where it was applied, for messages.
    pub file: String,
    pub source: String,
    pub applied_at: Timestamp,
    /// `user@host` of whoever applied it.
    pub applied_by: String,
    /// The directory that publishes it (`publish_dir`), as
    /// `{node}:{absolute path}`; `None` for a job applied by hand. A
    /// publisher removes only its own jobs.
    #[serde(default)]
    pub origin: Option<String>,
}

/// A run of a cluster job: one for each version of a one-shot job, one per
/// firing of a recurring one. Written only by the scheduler, fenced by its
/// leadership.
///
/// Its id is `{job}-{n}`, with `n` the job record's revision for a one-shot
/// job and the firing's Unix time for a recurring one: a second scheduler
/// deciding the same run arrives at the same key, and creating it is
/// conditioned on its absence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRun {
    pub run: String,
    pub job: String,
    /// The revision of the job record this run runs.
    pub job_revision: i64,
    /// A recurring job's firing time.
    pub scheduled_for: Option<Timestamp>,
    pub created_at: Timestamp,
    /// 1 for the first binding; raised each time the run is bound anew.
    pub attempt: u32,
    pub state: ClusterRunState,
    /// A memory hard limit that replaces the job's (an OOM requeue's).
    pub memory_hard: Option<u64>,
    /// Nodes that handed this run back, with why; not chosen again until
    /// their published state changes.
    pub handed_back_by: BTreeMap<String, String>,
    /// Its job was deleted, or changed, and `on_removal: stop` applies.
    pub removed: bool,
    /// When each node in `handed_back_by` handed it back: the node is a
    /// candidate again once its record is newer than this.
    #[serde(default)]
    pub handed_back_at: BTreeMap<String, Timestamp>,
    /// When it last became pending (created, or handed back): the start of
    /// its scheduling latency.
    #[serde(default)]
    pub pending_since: Option<Timestamp>,
}

/// Where a cluster run stands, from the scheduler's side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum ClusterRunState {
    /// Waiting for a node; `reason` says why none was chosen yet.
    Pending { reason: Option<String> },
    /// Bound to `node` as attempt `attempt` of the run.
    Bound { node: String, at: Timestamp },
    /// Bound to `node`, whose record disappeared (its lease expired) at
    /// `since`: the binding stays while the scheduler waits
    /// `node_loss_grace` for the node to come back, then the run is bound
    /// anew (`on_node_loss: reschedule`) or ends `lost` (`fail`).
    Lost { node: String, since: Timestamp },
    /// Ended on a node (or was removed before it was bound).
    Ended { outcome: String, at: Timestamp, node: Option<String> },
}

impl ClusterRunState {
    pub fn name(&self) -> &'static str {
        match self {
            ClusterRunState::Pending { .. } => "pending",
            ClusterRunState::Bound { .. } => "bound",
            ClusterRunState::Lost { .. } => "lost",
            ClusterRunState::Ended { .. } => "ended",
        }
    }
}

/// A run bound to a node: what the node needs to run it, whole, so that it
/// never reads the job record (which may have changed since).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub run: String,
    pub job: String,
    pub attempt: u32,
    pub job_revision: i64,
    pub file: String,
    pub source: String,
    pub memory_hard: Option<u64>,
    pub scheduled_for: Option<Timestamp>,
    /// The scheduler (node name) that bound it, and when.
    pub bound_by: String,
    pub bound_at: Timestamp,
}

/// How a cluster run is doing, as the node that runs it reports it. Only
/// that node writes it, and only for the attempt bound to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStatus {
    pub run: String,
    pub node: String,
    pub attempt: u32,
    /// The run's id on the node (`corral show` there, its logs).
    pub node_run: Option<String>,
    /// The node's phase name (`pending`, `running`, `suspended`, ...), or
    /// `handed-back`.
    pub phase: String,
    /// What `corral ps` says beside the phase.
    pub detail: Option<String>,
    pub ended: Option<RunEnd>,
    /// The node will not run this attempt: the scheduler binds it anew.
    pub handed_back: Option<HandBack>,
    /// The latest transitions, oldest first, at most [`STATUS_EVENTS`].
    pub events: Vec<StatusEvent>,
    pub updated_at: Timestamp,
}

/// Most transitions kept in a run's status record: the node's own store
/// has them all.
pub const STATUS_EVENTS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunEnd {
    /// `succeeded`, `failed`, `killed`.
    pub outcome: String,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub oom_kills: u32,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandBack {
    pub reason: String,
    /// An OOM requeue's grown memory limit, which the next node must hold.
    pub needs_memory: Option<u64>,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEvent {
    pub at: Timestamp,
    /// One line: `running`, `suspended by oom`, `exited 1`, ...
    pub what: String,
}

/// The active scheduler, under its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    pub node: String,
    pub since: Timestamp,
}

/// A recurring cluster job's last decided firing, so that a new leader
/// neither repeats nor skips firings (the same catch-up rules as a node's
/// cron journal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronCursor {
    pub job: String,
    pub job_revision: i64,
    pub last_fired: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_go_through_json_and_bad_ones_name_their_key() {
        let run = ClusterRun {
            run: "a-7".into(),
            job: "a".into(),
            job_revision: 7,
            scheduled_for: None,
            created_at: Timestamp::from_millis(1),
            attempt: 1,
            state: ClusterRunState::Bound { node: "n1".into(), at: Timestamp::from_millis(2) },
            memory_hard: None,
            handed_back_by: BTreeMap::new(),
            removed: false,
            handed_back_at: BTreeMap::new(),
            pending_since: None,
        };
        let back: ClusterRun = decode("/corral/runs/a-7", &encode(&run)).unwrap();
        assert_eq!(back, run);
        let text = String::from_utf8(encode(&run.state)).unwrap();
        assert!(text.contains("\"state\":\"bound\""), "{text}");
        let lost = ClusterRunState::Lost { node: "n1".into(), since: Timestamp::from_millis(3) };
        let text = String::from_utf8(encode(&lost)).unwrap();
        assert!(text.contains("\"state\":\"lost\""), "{text}");
        assert_eq!(decode::<ClusterRunState>("k", text.as_bytes()).unwrap(), lost);
        let bad = decode::<ClusterRun>("/corral/runs/x", b"{\"run\": 3}").unwrap_err();
        assert!(bad.to_string().starts_with("bad record at /corral/runs/x: "), "{bad}");
    }
}
