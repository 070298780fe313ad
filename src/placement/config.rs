//! The operator's limits on what placement may hand out.

use std::collections::BTreeMap;

use crate::topology::{CpuSet, NodeId};
use crate::vocab::Bytes;

/// Fixed inputs of placement, from the agent configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlacementConfig {
    /// CPUs left to the system (kernel threads, IRQs, sshd): in no run's
    /// cpuset, exclusive or shared.
    pub reserved_cpus: CpuSet,
    /// Memory per node that is never charged to runs: what the kernel, the
    /// agent and everything outside corral need there. Per node rather than a
    /// total because accounting is per node and the system's own memory sits
    /// mostly on node 0. Nodes not named reserve nothing.
    pub reserved_memory: BTreeMap<NodeId, Bytes>,
    /// CPUs the shared pool always keeps (at least 1): the agent itself and
    /// every shared-pool run execute there, so an exclusive request that
    /// would shrink the pool below this does not fit.
    pub min_shared_cpus: usize,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        PlacementConfig {
            reserved_cpus: CpuSet::new(),
            reserved_memory: BTreeMap::new(),
            min_shared_cpus: 1,
        }
    }
}
