//! What the allocator handed a run.

use std::collections::BTreeMap;

use crate::topology::{CpuSet, NodeId, NodeSet};
use crate::vocab::Bytes;

use crate::vocab::RunId;

/// A run's CPUs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CpuGrant {
    /// CPUs no other run's assignment contains.
    Exclusive(CpuSet),
    /// The shared pool, which changes as exclusive runs come and go; the
    /// ledger says what it is now.
    Shared,
}

/// One run's share of the machine: the values for its `cpuset.cpus` and
/// `cpuset.mems`, and the memory charged against each node.
///
/// Serializable so the agent can keep it in the run record and hand it back
/// to [`super::Ledger::rebuild`] after a restart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Assignment {
    pub owner: RunId,
    pub cpus: CpuGrant,
    /// Memory nodes the run may allocate from. Never empty: the kernel
    /// refuses to run tasks in a cpuset without mems.
    pub mems: NodeSet,
    /// Memory charged per node; empty when the run's memory is not accounted.
    /// Only nodes in `mems` appear, and no zero entries.
    #[serde(default)]
    pub memory: BTreeMap<NodeId, Bytes>,
}

impl Assignment {
    pub fn exclusive_cpus(&self) -> Option<&CpuSet> {
        match &self.cpus {
            CpuGrant::Exclusive(set) => Some(set),
            CpuGrant::Shared => None,
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self.cpus, CpuGrant::Shared)
    }

    /// The value for the run's `cpuset.cpus`, given the current shared pool.
    pub fn cpuset(&self, shared_pool: &CpuSet) -> CpuSet {
        match &self.cpus {
            CpuGrant::Exclusive(set) => set.clone(),
            CpuGrant::Shared => shared_pool.clone(),
        }
    }

    /// Total memory charged.
    pub fn memory_total(&self) -> Bytes {
        Bytes(self.memory.values().map(|b| b.get()).sum())
    }
}
