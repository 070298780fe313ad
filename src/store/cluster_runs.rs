//! Cluster runs on record: which local run each binding became.
//!
//! A binding (cluster run X, attempt A, bound to this node) becomes one
//! local run, created in the same transaction as the row that maps
//! (X, A) to it. A binding seen again — the watch replayed after a
//! reconnection, or the listing an agent reads when it starts — finds its
//! row and creates nothing, so no binding ever runs twice on a node. The row
//! keeps the binding's job text, so that a restarted agent compiles the same
//! job again for the run (the job record in etcd may have changed since).
//! Rows outlive their runs' pruning on purpose: a pruned run's binding,
//! replayed, must still be known as taken.

use crate::scheduler::RunState;
use crate::vocab::{JobName, RunId, Timestamp};

use super::error::StoreError;
use super::records::JobVersion;

/// What a binding leaves on record beside its local run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMapping {
    /// The cluster's run id (`{job}-{revision}` or `{job}-{firing time}`).
    pub cluster_run: String,
    pub attempt: u32,
    /// The local run it became.
    pub node_run: RunId,
    pub job: JobName,
    /// The file the job came from, for messages.
    pub file: String,
    /// The whole text of that file, as bound.
    pub source: String,
    /// A hard memory limit replacing the job's (an OOM requeue's), bytes.
    pub memory_hard: Option<u64>,
    pub bound_at: Timestamp,
    /// The node gave the attempt back after taking it.
    pub handed_back: Option<HandedBack>,
}

/// Why a node gave back an attempt it had taken, on record before the
/// scheduler is told and before the local run is stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandedBack {
    pub reason: String,
    /// The memory limit the next node must hold, bytes.
    pub needs_memory: Option<u64>,
    pub at: Timestamp,
}

/// The local run a binding is to become.
#[derive(Debug, Clone, Copy)]
pub struct NewClusterRun<'a> {
    pub cluster_run: &'a str,
    pub attempt: u32,
    pub job: &'a JobName,
    pub file: &'a str,
    pub source: &'a str,
    pub memory_hard: Option<u64>,
    pub initial: &'a RunState,
    pub version: &'a JobVersion,
    pub at: Timestamp,
}

pub trait ClusterRuns: Send {
    /// Creates the local run of `new` and its mapping in one transaction;
    /// `None` (and nothing written) when (cluster run, attempt) is mapped
    /// already.
    fn create_cluster_run(&mut self, new: &NewClusterRun<'_>) -> Result<Option<RunId>, StoreError>;

    /// The mapping of attempt `attempt` of cluster run `cluster_run`.
    fn cluster_mapping(
        &self,
        cluster_run: &str,
        attempt: u32,
    ) -> Result<Option<ClusterMapping>, StoreError>;

    /// The cluster run local run `node_run` runs, if it runs one.
    fn cluster_run_of(&self, node_run: &RunId) -> Result<Option<ClusterMapping>, StoreError>;

    /// The mappings whose local run is not over, oldest first.
    fn live_cluster_runs(&self) -> Result<Vec<ClusterMapping>, StoreError>;

    /// Records that attempt `attempt` of `cluster_run` is given back.
    fn set_handed_back(
        &mut self,
        cluster_run: &str,
        attempt: u32,
        back: &HandedBack,
    ) -> Result<(), StoreError>;
}
