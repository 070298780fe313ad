//! The machine as placement sees it: online CPUs grouped into physical cores,
//! packages and NUMA nodes, memory per node, and the node distance matrix.

use std::collections::{BTreeMap, BTreeSet};

use super::cpuset::{CpuId, CpuSet, NodeId, NodeSet};
use super::error::TopologyError;
use crate::vocab::Bytes;

/// The kernel's `core_id`. Unique only within a package (Intel numbers cores
/// from 0 in every socket), so a physical core is identified by its set of
/// SMT siblings, see [`Core`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct CoreId(pub u32);

/// The kernel's `physical_package_id`: the socket.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct PackageId(pub u32);

/// One online logical CPU.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CpuInfo {
    pub core: CoreId,
    pub package: PackageId,
    pub node: NodeId,
    /// The online SMT threads of this CPU's physical core, itself included.
    pub siblings: CpuSet,
}

/// A physical core: the online SMT threads that share one core's execution
/// units. Exclusive placement hands out whole cores so that two jobs do not
/// compete for one core through its hyperthreads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Core {
    pub cpus: CpuSet,
    pub package: PackageId,
    pub node: NodeId,
}

/// One NUMA node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeInfo {
    /// Online CPUs of the node; empty for a CPU-less (memory-only) node.
    pub cpus: CpuSet,
    /// Zero for a memory-less node.
    pub memory_total: Bytes,
    pub memory_free: Bytes,
    /// Relative distance to every node, this one included (10 = local).
    pub distances: BTreeMap<NodeId, u32>,
}

/// The machine's topology. Built by [`Topology::new`], which checks that the
/// parts agree; discovery from sysfs is in [`super::discover()`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Topology {
    cpus: BTreeMap<CpuId, CpuInfo>,
    offline_cpus: CpuSet,
    cores: Vec<Core>,
    nodes: BTreeMap<NodeId, NodeInfo>,
    allowed_cpus: CpuSet,
    allowed_mems: NodeSet,
}

impl Topology {
    /// Assembles a topology from online CPUs, the CPUs known to be offline,
    /// the nodes, and the CPUs and memory nodes the agent may use (its own
    /// `Cpus_allowed_list`/`Mems_allowed_list`).
    ///
    /// Fails if a CPU's node does not list it, a sibling set is not shared by
    /// all its members, siblings sit on different nodes, or the distance
    /// matrix misses a pair.
    pub fn new(
        cpus: BTreeMap<CpuId, CpuInfo>,
        offline_cpus: CpuSet,
        nodes: BTreeMap<NodeId, NodeInfo>,
        allowed_cpus: CpuSet,
        allowed_mems: NodeSet,
    ) -> Result<Topology, TopologyError> {
        let inconsistent = |reason: String| Err(TopologyError::Inconsistent { reason });
        if cpus.is_empty() {
            return inconsistent("no online CPUs".into());
        }
        for (&id, info) in &cpus {
            match nodes.get(&info.node) {
                Some(node) if node.cpus.contains(id) => {}
                Some(_) => {
                    return inconsistent(format!(
                        "{id} claims {} which does not list it",
                        info.node
                    ))
                }
                None => return inconsistent(format!("{id} is on unknown {}", info.node)),
            }
            if offline_cpus.contains(id) {
                return inconsistent(format!("{id} is both online and offline"));
            }
            if !info.siblings.contains(id) {
                return inconsistent(format!(
                    "{id} is missing from its own siblings {}",
                    info.siblings
                ));
            }
            for sibling in info.siblings.iter() {
                let Some(other) = cpus.get(&sibling) else {
                    return inconsistent(format!(
                        "{id} lists sibling {sibling}, which is not online"
                    ));
                };
                if other.siblings != info.siblings {
                    return inconsistent(format!(
                        "{id} has siblings {} but its sibling {sibling} has {}",
                        info.siblings, other.siblings
                    ));
                }
                if other.node != info.node {
                    return inconsistent(format!(
                        "SMT siblings {id} and {sibling} are on {} and {}",
                        info.node, other.node
                    ));
                }
            }
        }
        for (&id, node) in &nodes {
            if let Some(stray) =
                node.cpus.iter().find(|cpu| cpus.get(cpu).map(|c| c.node) != Some(id))
            {
                return inconsistent(format!(
                    "{id} lists {stray}, which is not an online CPU of it"
                ));
            }
            for &other in nodes.keys() {
                if !node.distances.contains_key(&other) {
                    return inconsistent(format!("{id} has no distance to {other}"));
                }
            }
            if let Some(unknown) = node.distances.keys().find(|n| !nodes.contains_key(n)) {
                return inconsistent(format!("{id} has a distance to unknown {unknown}"));
            }
        }

        let mut seen = BTreeSet::new();
        let mut cores = Vec::new();
        for info in cpus.values() {
            if seen.insert(info.siblings.clone()) {
                cores.push(Core {
                    cpus: info.siblings.clone(),
                    package: info.package,
                    node: info.node,
                });
            }
        }
        cores.sort_by_key(|core| core.cpus.iter().next());

        Ok(Topology { cpus, offline_cpus, cores, nodes, allowed_cpus, allowed_mems })
    }

    /// Online CPUs.
    pub fn cpus(&self) -> &BTreeMap<CpuId, CpuInfo> {
        &self.cpus
    }

    pub fn cpu(&self, id: CpuId) -> Option<&CpuInfo> {
        self.cpus.get(&id)
    }

    pub fn online_cpus(&self) -> CpuSet {
        self.cpus.keys().copied().collect()
    }

    /// CPUs the kernel knows but has offline (hot-unplugged or `maxcpus=`).
    pub fn offline_cpus(&self) -> &CpuSet {
        &self.offline_cpus
    }

    /// Physical cores, ordered by their lowest CPU.
    pub fn cores(&self) -> &[Core] {
        &self.cores
    }

    pub fn nodes(&self) -> &BTreeMap<NodeId, NodeInfo> {
        &self.nodes
    }

    pub fn node(&self, id: NodeId) -> Option<&NodeInfo> {
        self.nodes.get(&id)
    }

    /// Nodes that have memory (a memory-less node has only CPUs).
    pub fn memory_nodes(&self) -> NodeSet {
        self.nodes.iter().filter(|(_, n)| n.memory_total > Bytes::ZERO).map(|(&id, _)| id).collect()
    }

    pub fn distance(&self, from: NodeId, to: NodeId) -> Option<u32> {
        self.nodes.get(&from)?.distances.get(&to).copied()
    }

    pub fn packages(&self) -> BTreeSet<PackageId> {
        self.cpus.values().map(|c| c.package).collect()
    }

    /// SMT threads per core: the largest sibling set (1 without SMT).
    pub fn threads_per_core(&self) -> usize {
        self.cores.iter().map(|c| c.cpus.len()).max().unwrap_or(0)
    }

    /// CPUs the agent may use, from its own affinity mask.
    pub fn allowed_cpus(&self) -> &CpuSet {
        &self.allowed_cpus
    }

    /// Memory nodes the agent may use, from its own `Mems_allowed_list`.
    pub fn allowed_mems(&self) -> &NodeSet {
        &self.allowed_mems
    }

    pub fn memory_total(&self) -> Bytes {
        Bytes(self.nodes.values().map(|n| n.memory_total.0).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(core: u32, node: u32, siblings: &str) -> CpuInfo {
        CpuInfo {
            core: CoreId(core),
            package: PackageId(0),
            node: NodeId(node),
            siblings: siblings.parse().unwrap(),
        }
    }

    fn node(cpus: &str, distances: &[(u32, u32)]) -> NodeInfo {
        NodeInfo {
            cpus: cpus.parse().unwrap(),
            memory_total: Bytes::from_gib(1),
            memory_free: Bytes::from_gib(1),
            distances: distances.iter().map(|&(n, d)| (NodeId(n), d)).collect(),
        }
    }

    fn build(
        cpus: Vec<(u32, CpuInfo)>,
        nodes: Vec<(u32, NodeInfo)>,
    ) -> Result<Topology, TopologyError> {
        Topology::new(
            cpus.into_iter().map(|(id, c)| (CpuId(id), c)).collect(),
            CpuSet::new(),
            nodes.into_iter().map(|(id, n)| (NodeId(id), n)).collect(),
            "0-3".parse().unwrap(),
            "0-1".parse().unwrap(),
        )
    }

    #[test]
    fn groups_siblings_into_cores() {
        let topo = build(
            vec![
                (0, cpu(0, 0, "0,2")),
                (1, cpu(1, 0, "1,3")),
                (2, cpu(0, 0, "0,2")),
                (3, cpu(1, 0, "1,3")),
            ],
            vec![(0, node("0-3", &[(0, 10)]))],
        )
        .unwrap();
        let cores: Vec<String> = topo.cores().iter().map(|c| c.cpus.to_string()).collect();
        assert_eq!(cores, ["0,2", "1,3"]);
        assert_eq!(topo.threads_per_core(), 2);
    }

    #[test]
    fn rejects_contradictions() {
        let one_node = || vec![(0, node("0-1", &[(0, 10)]))];
        // Asymmetric siblings.
        let err = build(vec![(0, cpu(0, 0, "0-1")), (1, cpu(1, 0, "1"))], one_node()).unwrap_err();
        assert!(err.to_string().contains("but its sibling"), "{err}");
        // A CPU outside its own sibling set.
        assert!(build(vec![(0, cpu(0, 0, "1")), (1, cpu(1, 0, "1"))], one_node()).is_err());
        // A CPU whose node does not list it.
        let err = build(
            vec![(0, cpu(0, 0, "0")), (1, cpu(1, 1, "1"))],
            vec![(0, node("0", &[(0, 10), (1, 20)])), (1, node("", &[(0, 20), (1, 10)]))],
        )
        .unwrap_err();
        assert!(err.to_string().contains("does not list it"), "{err}");
        // A missing distance.
        let err = build(
            vec![(0, cpu(0, 0, "0")), (1, cpu(1, 1, "1"))],
            vec![(0, node("0", &[(0, 10)])), (1, node("1", &[(0, 20), (1, 10)]))],
        )
        .unwrap_err();
        assert!(err.to_string().contains("no distance"), "{err}");
    }
}
