//! What a node publishes about itself: its allocatable capacity and what
//! its runs hold, per NUMA node. Pure: a function of the topology and the
//! ledger the agent places with, so the published view is the node's own
//! placement's view.

use std::collections::BTreeMap;

use crate::cluster::records::{Allocation, Capacity, NodeRecord, NumaCapacity};
use crate::placement::Ledger;
use crate::topology::Topology;
use crate::vocab::Timestamp;

/// What the main loop hands the cluster task at publish time; written to
/// etcd only when it differs from what was last written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeSummary {
    pub capacity: Capacity,
    pub allocated: Allocation,
}

/// What does not change while the agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub cgroup_mode: String,
    pub version: String,
    pub api: Option<String>,
}

impl NodeFacts {
    /// The record to put under the lease.
    pub fn record(&self, summary: &NodeSummary, now: Timestamp) -> NodeRecord {
        NodeRecord {
            name: self.name.clone(),
            labels: self.labels.clone(),
            cgroup_mode: self.cgroup_mode.clone(),
            version: self.version.clone(),
            api: self.api.clone(),
            capacity: summary.capacity.clone(),
            allocated: summary.allocated.clone(),
            updated_at: now,
        }
    }
}

/// What the node can give jobs at all: the ledger's allocatable CPUs
/// (online, allowed, not reserved) and its chargeable memory (after
/// `reserved_memory`), per NUMA node. A node with CPUs but no memory of its
/// own is listed with its CPUs; a memory-only node with its memory.
pub fn capacity(topology: &Topology, ledger: &Ledger) -> Capacity {
    let allocatable = ledger.allocatable();
    let numa: Vec<NumaCapacity> = topology
        .nodes()
        .iter()
        .map(|(id, node)| NumaCapacity {
            node: id.0,
            cpus: count(node.cpus.intersection(allocatable).len()),
            memory: ledger.memory_capacity(*id).get(),
        })
        .filter(|n| n.cpus > 0 || n.memory > 0)
        .collect();
    Capacity { cpus: count(allocatable.len()), memory: numa.iter().map(|n| n.memory).sum(), numa }
}

/// What the node's runs hold now: CPUs held exclusively and memory charged,
/// per NUMA node; `runs` holding a placement and `pending` waiting.
pub fn allocation(topology: &Topology, ledger: &Ledger, pending: usize) -> Allocation {
    let held = ledger.held_cpus();
    let numa: Vec<NumaCapacity> = topology
        .nodes()
        .iter()
        .map(|(id, node)| NumaCapacity {
            node: id.0,
            cpus: count(node.cpus.intersection(&held).len()),
            memory: ledger.memory_charged(*id).get(),
        })
        .filter(|n| n.cpus > 0 || n.memory > 0)
        .collect();
    Allocation {
        exclusive_cpus: count(held.len()),
        memory: numa.iter().map(|n| n.memory).sum(),
        numa,
        runs: count(ledger.len()),
        pending: count(pending),
    }
}

/// The summary the agent publishes.
pub fn summary(topology: &Topology, ledger: &Ledger, pending: usize) -> NodeSummary {
    NodeSummary {
        capacity: capacity(topology, ledger),
        allocated: allocation(topology, ledger, pending),
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::{Assignment, CpuGrant, PlacementConfig};
    use crate::topology::testing::fixture;
    use crate::topology::NodeId;
    use crate::vocab::{Bytes, RunId};

    fn gib(n: u64) -> Bytes {
        Bytes::from_gib(n)
    }

    #[test]
    fn capacity_leaves_out_reserved_cpus_and_memory_per_numa_node() {
        let topo = fixture("dual-socket-snc");
        let whole = Ledger::new(&topo, PlacementConfig::default()).unwrap();
        let full = capacity(&topo, &whole);
        assert_eq!(full.cpus as usize, whole.allocatable().len());
        assert!(full.numa.len() > 1, "{full:?}");
        assert_eq!(full.numa.iter().map(|n| n.cpus).sum::<u32>(), full.cpus);
        let first = *topo.nodes().keys().next().unwrap();
        let reserved_cpu = topo.node(first).unwrap().cpus.iter().next().unwrap();
        let config = PlacementConfig {
            reserved_cpus: [reserved_cpu].into_iter().collect(),
            reserved_memory: [(first, gib(1))].into_iter().collect(),
            ..PlacementConfig::default()
        };
        let reserved = Ledger::new(&topo, config).unwrap();
        let less = capacity(&topo, &reserved);
        assert_eq!(less.cpus, full.cpus - 1);
        assert_eq!(less.memory, full.memory - gib(1).get());
        assert_eq!(less.numa[0].cpus, full.numa[0].cpus - 1);
        assert_eq!(less.numa[0].memory, full.numa[0].memory - gib(1).get());
        assert_eq!(less.numa[1], full.numa[1], "other nodes keep theirs");
    }

    #[test]
    fn allocation_counts_what_the_ledger_holds_on_each_node() {
        let topo = fixture("dual-socket-snc");
        let mut ledger = Ledger::new(&topo, PlacementConfig::default()).unwrap();
        let empty = allocation(&topo, &ledger, 0);
        assert_eq!((empty.exclusive_cpus, empty.memory, empty.runs), (0, 0, 0));
        assert!(empty.numa.is_empty());
        let node: NodeId = *topo.nodes().keys().nth(1).unwrap();
        let cpus: Vec<_> = topo.node(node).unwrap().cpus.iter().take(2).collect();
        let held = Assignment {
            owner: RunId::new("a-1"),
            cpus: CpuGrant::Exclusive(cpus.into_iter().collect()),
            mems: [node].into_iter().collect(),
            memory: [(node, gib(2))].into_iter().collect(),
        };
        ledger.record(held).unwrap();
        let got = allocation(&topo, &ledger, 3);
        assert_eq!(
            (got.exclusive_cpus, got.memory, got.runs, got.pending),
            (2, gib(2).get(), 1, 3)
        );
        assert_eq!(got.numa, vec![NumaCapacity { node: node.0, cpus: 2, memory: gib(2).get() }]);
    }

    #[test]
    fn the_record_carries_the_facts_and_the_summary() {
        let topo = fixture("vm-2cpu");
        let ledger = Ledger::new(&topo, PlacementConfig::default()).unwrap();
        let facts = NodeFacts {
            name: "n1".into(),
            labels: [("disk".to_owned(), "ssd".to_owned())].into(),
            cgroup_mode: "hybrid".into(),
            version: "1".into(),
            api: Some("127.0.0.1:9100".into()),
        };
        let s = summary(&topo, &ledger, 0);
        let record = facts.record(&s, Timestamp::from_millis(5));
        assert_eq!(record.capacity.cpus, 2);
        assert_eq!(record.labels["disk"], "ssd");
        assert_eq!(record.updated_at, Timestamp::from_millis(5));
    }
}
