//! Whether a request fits, from per-node counts alone.
//!
//! Placement checks this before choosing CPUs, and the preemption search
//! evaluates it for thousands of candidate releases, so it works on counts
//! (free CPUs and free memory per node) rather than on CPU sets.

use std::fmt::Write as _;

use crate::topology::{NodeId, Topology};
use crate::vocab::Bytes;

use super::ledger::Ledger;
use super::request::Request;
use crate::vocab::NumaPolicy;

/// Free resources of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeRoom {
    pub id: NodeId,
    /// Shared-pool CPUs on the node: what exclusive requests can take.
    pub free_cpus: usize,
    /// Allowed and with memory left after reservations.
    pub memory_node: bool,
    pub free_memory: u64,
}

/// Free resources of the machine, node by node in node order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Availability {
    pub nodes: Vec<NodeRoom>,
    pub free_cpus: usize,
    pub min_shared: usize,
}

/// A request reduced to what fitting depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Demand {
    /// Exclusive CPUs; 0 for a shared-pool request.
    pub cpus: usize,
    pub numa: NumaPolicy,
    pub memory: u64,
}

impl Demand {
    pub fn of(request: &Request) -> Demand {
        Demand {
            cpus: request.exclusive_cpus(),
            numa: request.numa,
            memory: request.accounted_memory(),
        }
    }
}

impl Availability {
    pub fn new(topology: &Topology, ledger: &Ledger) -> Availability {
        let mut nodes: Vec<NodeRoom> = topology
            .nodes()
            .keys()
            .map(|&id| NodeRoom {
                id,
                free_cpus: 0,
                memory_node: ledger.memory_capacity(id) > Bytes::ZERO,
                free_memory: ledger.memory_free(id).get(),
            })
            .collect();
        let mut free_cpus = 0;
        for cpu in ledger.shared_pool().iter() {
            let Some(info) = topology.cpu(cpu) else { continue };
            if let Ok(index) = nodes.binary_search_by_key(&info.node, |n| n.id) {
                nodes[index].free_cpus += 1;
                free_cpus += 1;
            }
        }
        Availability { nodes, free_cpus, min_shared: ledger.config().min_shared_cpus }
    }

    /// Adds resources a release would return: `cpus` exclusive CPUs and
    /// `memory` bytes on the node at `index`.
    pub fn give(&mut self, index: usize, cpus: usize, memory: u64) {
        let node = &mut self.nodes[index];
        node.free_cpus += cpus;
        node.free_memory += memory;
        self.free_cpus += cpus;
    }

    /// Undoes [`Availability::give`].
    pub fn take(&mut self, index: usize, cpus: usize, memory: u64) {
        let node = &mut self.nodes[index];
        node.free_cpus -= cpus;
        node.free_memory -= memory;
        self.free_cpus -= cpus;
    }

    pub fn index(&self, node: NodeId) -> Option<usize> {
        self.nodes.binary_search_by_key(&node, |n| n.id).ok()
    }

    /// Free memory on all memory nodes together.
    pub fn free_memory(&self) -> u64 {
        self.nodes.iter().filter(|n| n.memory_node).map(|n| n.free_memory).sum()
    }

    /// Whether `place` succeeds for `demand`. The two must agree: the
    /// preemption search trusts this answer.
    pub fn fits(&self, demand: &Demand) -> bool {
        let k = demand.cpus;
        if k > 0 && self.free_cpus < k + self.min_shared {
            return false;
        }
        if k > 0 && demand.numa == NumaPolicy::SingleNode {
            return self.nodes.iter().any(|n| self.single_node_fits(n, demand));
        }
        // Shared pool, prefer and none: CPUs and memory may come from
        // different nodes, so totals decide.
        self.free_memory() >= demand.memory
    }

    pub fn single_node_fits(&self, node: &NodeRoom, demand: &Demand) -> bool {
        node.memory_node && node.free_cpus >= demand.cpus && node.free_memory >= demand.memory
    }

    /// Why `demand` does not fit, for [`super::PlacementError::NoFit`].
    pub fn explain(&self, demand: &Demand) -> String {
        let k = demand.cpus;
        if k > 0 && self.free_cpus < k + self.min_shared {
            return format!(
                "{k} exclusive CPUs requested, {} in the shared pool, which keeps at least {}",
                self.free_cpus, self.min_shared
            );
        }
        if k > 0 && demand.numa == NumaPolicy::SingleNode {
            let mut reason = format!(
                "no single node has {k} free CPUs and {} free memory (",
                Bytes(demand.memory).human()
            );
            for (i, node) in self.nodes.iter().enumerate() {
                let sep = if i == 0 { "" } else { "; " };
                let memory = if node.memory_node {
                    Bytes(node.free_memory).human().to_string()
                } else {
                    "no memory".to_owned()
                };
                let _ = write!(reason, "{sep}{}: {} CPUs, {memory}", node.id, node.free_cpus);
            }
            reason.push(')');
            return reason;
        }
        format!(
            "{} of memory requested, {} not yet charged on the allowed nodes",
            Bytes(demand.memory).human(),
            Bytes(self.free_memory()).human()
        )
    }
}
