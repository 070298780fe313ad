//! Who holds which CPUs and how much memory on which node.

use std::collections::BTreeMap;

use crate::topology::{CpuId, CpuSet, NodeId, NodeSet, Topology};
use crate::vocab::Bytes;

use super::assignment::{Assignment, CpuGrant};
use super::config::PlacementConfig;
use super::error::PlacementError;
use super::place::place;
use super::request::Request;
use crate::vocab::RunId;

/// Current assignments and the aggregates placement reads: exclusive CPU
/// holders, memory charged per node and the shared pool. Every update keeps
/// the aggregates in step, so [`place`] costs the same with 10 or 10,000
/// assignments.
///
/// Updates are checked: no CPU held twice, only allocatable CPUs, memory never
/// over the node's capacity, the shared pool never below its minimum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ledger {
    config: PlacementConfig,
    /// Online ∩ allowed − reserved.
    allocatable: CpuSet,
    /// Memory that may be charged on each allowed node with memory.
    memory_capacity: BTreeMap<NodeId, u64>,
    assignments: BTreeMap<RunId, Assignment>,
    holders: BTreeMap<CpuId, RunId>,
    charged: BTreeMap<NodeId, u64>,
    pool: CpuSet,
}

impl Ledger {
    /// An empty ledger for `topology` under `config`.
    pub fn new(topology: &Topology, config: PlacementConfig) -> Result<Ledger, PlacementError> {
        let bad = |reason: String| Err(PlacementError::Config { reason });
        let known = topology.online_cpus().union(topology.offline_cpus());
        if !config.reserved_cpus.is_subset(&known) {
            return bad(format!(
                "reserved CPUs {} include CPUs this machine does not have ({known})",
                config.reserved_cpus.difference(&known)
            ));
        }
        if let Some(node) = config.reserved_memory.keys().find(|n| topology.node(**n).is_none()) {
            return bad(format!("memory reserved on {node}, which does not exist"));
        }
        if config.min_shared_cpus == 0 {
            return bad("the shared pool needs at least one CPU: the agent runs there".into());
        }
        let allocatable = topology
            .online_cpus()
            .intersection(topology.allowed_cpus())
            .difference(&config.reserved_cpus);
        if allocatable.len() < config.min_shared_cpus {
            return bad(format!(
                "{} allocatable CPUs ({allocatable}) cannot keep {} in the shared pool",
                allocatable.len(),
                config.min_shared_cpus
            ));
        }
        let memory_capacity: BTreeMap<NodeId, u64> = topology
            .nodes()
            .iter()
            .filter(|(id, _)| topology.allowed_mems().contains(**id))
            .map(|(id, node)| {
                let reserved = config.reserved_memory.get(id).copied().unwrap_or_default();
                (*id, node.memory_total.saturating_sub(reserved).get())
            })
            .filter(|&(_, capacity)| capacity > 0)
            .collect();
        if memory_capacity.is_empty() {
            return bad(format!(
                "no allowed node ({}) has memory left after reservations",
                topology.allowed_mems()
            ));
        }
        Ok(Ledger {
            config,
            pool: allocatable.clone(),
            allocatable,
            memory_capacity,
            assignments: BTreeMap::new(),
            holders: BTreeMap::new(),
            charged: BTreeMap::new(),
        })
    }

    /// Reconstructs the ledger from the assignments that exist now (read back
    /// after an agent restart). Every inconsistency is reported, not only the
    /// first: a CPU claimed twice, a duplicate owner, a CPU that is no longer
    /// allocatable, memory over a node's capacity, a shared pool below its
    /// minimum. The result equals the ledger built by recording the same
    /// assignments one by one.
    pub fn rebuild(
        topology: &Topology,
        config: PlacementConfig,
        assignments: impl IntoIterator<Item = Assignment>,
    ) -> Result<Ledger, PlacementError> {
        let mut ledger = Ledger::new(topology, config)?;
        let mut problems = Vec::new();
        for assignment in assignments {
            let found = ledger.check(&assignment);
            if found.is_empty() {
                ledger.apply(assignment);
            } else {
                problems.extend(found);
            }
        }
        if problems.is_empty() {
            Ok(ledger)
        } else {
            Err(PlacementError::Inconsistent { problems })
        }
    }

    /// Places `request` and records the result.
    pub fn admit(
        &mut self,
        topology: &Topology,
        request: &Request,
    ) -> Result<Assignment, PlacementError> {
        let assignment = place(topology, self, request)?;
        self.record(assignment.clone())?;
        Ok(assignment)
    }

    /// Records an assignment made by [`place`] (or read back from the
    /// kernel), after checking it against the current holdings.
    pub fn record(&mut self, assignment: Assignment) -> Result<(), PlacementError> {
        if let Some(problem) = self.check(&assignment).into_iter().next() {
            return Err(problem);
        }
        self.apply(assignment);
        Ok(())
    }

    /// Returns everything `assignment` holds. It must be the assignment the
    /// ledger has for its owner.
    pub fn release(&mut self, assignment: &Assignment) -> Result<(), PlacementError> {
        if self.assignments.get(&assignment.owner) != Some(assignment) {
            return Err(PlacementError::NotHeld { owner: assignment.owner.clone() });
        }
        let held = self.assignments.remove(&assignment.owner).expect("checked above");
        for (node, bytes) in held.memory.iter().filter(|(_, b)| b.get() > 0) {
            let charged = self.charged.get_mut(node).expect("charged when recorded");
            *charged -= bytes.get();
            if *charged == 0 {
                self.charged.remove(node);
            }
        }
        self.return_cpus(&held);
        Ok(())
    }

    /// Turns `owner`'s exclusive CPUs back into shared-pool CPUs while its
    /// memory stays charged: what freezing a run does, since a frozen cgroup
    /// keeps its pages. The returned assignment (shared pool, same mems and
    /// memory) replaces the old one; the frozen run's cpuset becomes the pool,
    /// which is harmless while it is frozen and right once it is thawed
    /// without being placed again. A run already on the shared pool is
    /// returned unchanged.
    pub fn suspend(&mut self, owner: &RunId) -> Result<Assignment, PlacementError> {
        let Some(held) = self.assignments.get(owner).cloned() else {
            return Err(PlacementError::NotHeld { owner: owner.clone() });
        };
        self.return_cpus(&held);
        let suspended = Assignment { cpus: CpuGrant::Shared, ..held };
        self.assignments.insert(owner.clone(), suspended.clone());
        Ok(suspended)
    }

    pub fn config(&self) -> &PlacementConfig {
        &self.config
    }

    /// CPUs placement may hand out: online, allowed, not reserved.
    pub fn allocatable(&self) -> &CpuSet {
        &self.allocatable
    }

    /// The shared pool: allocatable CPUs no run holds exclusively. It
    /// changes when exclusive CPUs are recorded, released or suspended; the
    /// shell then rewrites `cpuset.cpus` of the shared-pool runs.
    pub fn shared_pool(&self) -> &CpuSet {
        &self.pool
    }

    /// CPUs held exclusively by some run.
    pub fn held_cpus(&self) -> CpuSet {
        self.holders.keys().copied().collect()
    }

    pub fn holder(&self, cpu: CpuId) -> Option<&RunId> {
        self.holders.get(&cpu)
    }

    pub fn get(&self, owner: &RunId) -> Option<&Assignment> {
        self.assignments.get(owner)
    }

    /// Assignments in owner order.
    pub fn assignments(&self) -> impl ExactSizeIterator<Item = &Assignment> {
        self.assignments.values()
    }

    pub fn len(&self) -> usize {
        self.assignments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.assignments.is_empty()
    }

    /// Allowed nodes that have memory to charge.
    pub fn memory_nodes(&self) -> NodeSet {
        self.memory_capacity.keys().copied().collect()
    }

    /// What may be charged on `node` in all: its memory minus the reservation.
    pub fn memory_capacity(&self, node: NodeId) -> Bytes {
        Bytes(self.memory_capacity.get(&node).copied().unwrap_or(0))
    }

    pub fn memory_charged(&self, node: NodeId) -> Bytes {
        Bytes(self.charged.get(&node).copied().unwrap_or(0))
    }

    /// Capacity not yet charged on `node`.
    pub fn memory_free(&self, node: NodeId) -> Bytes {
        self.memory_capacity(node).saturating_sub(self.memory_charged(node))
    }

    /// Everything wrong with recording `assignment` now.
    fn check(&self, assignment: &Assignment) -> Vec<PlacementError> {
        let owner = &assignment.owner;
        let mut problems = Vec::new();
        if self.assignments.contains_key(owner) {
            problems.push(PlacementError::DuplicateOwner { owner: owner.clone() });
        }
        if let CpuGrant::Exclusive(cpus) = &assignment.cpus {
            if cpus.is_empty() {
                problems.push(PlacementError::EmptyCpus { owner: owner.clone() });
            }
            for cpu in cpus.iter() {
                if !self.allocatable.contains(cpu) {
                    problems.push(PlacementError::CpuNotAllocatable {
                        owner: owner.clone(),
                        cpu,
                        allocatable: self.allocatable.clone(),
                    });
                } else if let Some(first) = self.holders.get(&cpu) {
                    problems.push(PlacementError::CpuClaimedTwice {
                        cpu,
                        first: first.clone(),
                        second: owner.clone(),
                    });
                }
            }
            let left = self.pool.difference(cpus).len();
            if left < self.config.min_shared_cpus {
                problems.push(PlacementError::SharedPoolExhausted {
                    owner: owner.clone(),
                    left,
                    minimum: self.config.min_shared_cpus,
                });
            }
        }
        let memory_nodes = self.memory_nodes();
        if assignment.mems.is_empty() || !assignment.mems.is_subset(&memory_nodes) {
            problems.push(PlacementError::MemsNotAllowed {
                owner: owner.clone(),
                mems: assignment.mems.clone(),
                allowed: memory_nodes,
            });
        }
        for (&node, &charged) in &assignment.memory {
            if !assignment.mems.contains(node) {
                problems.push(PlacementError::ChargeOutsideMems {
                    owner: owner.clone(),
                    node,
                    charged,
                });
            } else if charged > self.memory_free(node) {
                problems.push(PlacementError::MemoryOvercommitted {
                    owner: owner.clone(),
                    node,
                    charged,
                    free: self.memory_free(node),
                });
            }
        }
        problems
    }

    /// Records a checked assignment.
    fn apply(&mut self, assignment: Assignment) {
        if let CpuGrant::Exclusive(cpus) = &assignment.cpus {
            for cpu in cpus.iter() {
                self.holders.insert(cpu, assignment.owner.clone());
                self.pool.remove(cpu);
            }
        }
        for (&node, &bytes) in &assignment.memory {
            if bytes.get() > 0 {
                *self.charged.entry(node).or_default() += bytes.get();
            }
        }
        self.assignments.insert(assignment.owner.clone(), assignment);
    }

    fn return_cpus(&mut self, held: &Assignment) {
        if let CpuGrant::Exclusive(cpus) = &held.cpus {
            for cpu in cpus.iter() {
                self.holders.remove(&cpu);
                self.pool.insert(cpu);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::testing::*;

    #[test]
    fn record_release_and_pool_updates() {
        let topo = fixture("dual-socket-snc");
        let mut ledger = ledger(&topo);
        assert_eq!(ledger.shared_pool(), &cpus("0-63"));
        let a = pinned("a", "0,32", "0");
        ledger.record(a.clone()).unwrap();
        assert_eq!(ledger.shared_pool(), &cpus("1-31,33-63"));
        assert_eq!(ledger.holder(crate::topology::CpuId(32)), Some(&run("a")));

        let shared = Assignment {
            owner: run("s"),
            cpus: CpuGrant::Shared,
            mems: nodes("0-3"),
            memory: [(NodeId(1), gib(1))].into(),
        };
        ledger.record(shared.clone()).unwrap();
        assert_eq!(ledger.shared_pool(), &cpus("1-31,33-63"), "a shared run takes no CPUs");
        assert_eq!(ledger.memory_charged(NodeId(1)), gib(1));

        // Releasing something other than what is held is refused.
        let mut wrong = a.clone();
        wrong.mems = nodes("1");
        assert_eq!(ledger.release(&wrong), Err(PlacementError::NotHeld { owner: run("a") }));

        ledger.release(&a).unwrap();
        assert_eq!(ledger.shared_pool(), &cpus("0-63"));
        ledger.release(&shared).unwrap();
        assert_eq!(ledger, super::Ledger::new(&topo, PlacementConfig::default()).unwrap());
    }

    #[test]
    fn record_refuses_conflicts() {
        let topo = fixture("dual-socket-snc");
        let mut ledger = ledger(&topo);
        ledger.record(pinned("a", "0-1", "0")).unwrap();
        let err = ledger.record(pinned("b", "1-2", "0")).unwrap_err();
        assert_eq!(
            err,
            PlacementError::CpuClaimedTwice {
                cpu: crate::topology::CpuId(1),
                first: run("a"),
                second: run("b")
            }
        );
        assert!(matches!(
            ledger.record(pinned("a", "5", "0")),
            Err(PlacementError::DuplicateOwner { .. })
        ));
        assert!(matches!(
            ledger.record(pinned("c", "5", "")),
            Err(PlacementError::MemsNotAllowed { .. })
        ));
        let mut too_big = pinned("d", "6", "0");
        too_big.memory = [(NodeId(0), gib(100))].into();
        assert!(matches!(ledger.record(too_big), Err(PlacementError::MemoryOvercommitted { .. })));
        let mut outside = pinned("e", "7", "0");
        outside.memory = [(NodeId(1), gib(1))].into();
        assert!(matches!(ledger.record(outside), Err(PlacementError::ChargeOutsideMems { .. })));
        // Nothing of the refused assignments stuck.
        assert_eq!(ledger.len(), 1);
        assert_eq!(ledger.shared_pool(), &cpus("2-63"));
    }

    #[test]
    fn the_shared_pool_keeps_its_minimum() {
        let topo = fixture("vm-2cpu");
        let mut ledger = ledger(&topo);
        let err = ledger.record(pinned("a", "0-1", "0")).unwrap_err();
        assert_eq!(
            err,
            PlacementError::SharedPoolExhausted { owner: run("a"), left: 0, minimum: 1 }
        );
    }

    #[test]
    fn suspend_returns_cpus_and_keeps_memory() {
        let topo = fixture("dual-socket-snc");
        let mut ledger = ledger(&topo);
        let mut a = pinned("a", "0-3", "0");
        a.memory = [(NodeId(0), gib(4))].into();
        ledger.record(a.clone()).unwrap();
        let suspended = ledger.suspend(&run("a")).unwrap();
        assert_eq!(ledger.shared_pool(), &cpus("0-63"));
        assert_eq!(suspended, Assignment { cpus: CpuGrant::Shared, ..a });
        assert_eq!(ledger.memory_charged(NodeId(0)), gib(4));
        assert_eq!(ledger.get(&run("a")), Some(&suspended));
        // Suspending again changes nothing.
        let again = ledger.suspend(&run("a")).unwrap();
        assert_eq!(again, suspended);
        assert_eq!(ledger.shared_pool(), &cpus("0-63"));
        ledger.release(&suspended).unwrap();
        assert_eq!(ledger.memory_charged(NodeId(0)), Bytes::ZERO);
    }

    #[test]
    fn rebuild_reports_every_problem() {
        let topo = fixture("offline-cpus");
        let config = PlacementConfig { reserved_cpus: cpus("0"), ..Default::default() };
        let err = Ledger::rebuild(
            &topo,
            config.clone(),
            [
                pinned("a", "1,3", "0"),
                pinned("b", "3-4", "0"), // cpu3 is a's
                pinned("c", "0", "0"),   // reserved
                pinned("d", "2", "0"),   // offline
                pinned("a", "7", "0"),   // a again
            ],
        )
        .unwrap_err();
        let PlacementError::Inconsistent { problems } = err else { panic!("{err}") };
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(
            matches!(&problems[0], PlacementError::CpuClaimedTwice { first, second, .. } if first == &run("a") && second == &run("b"))
        );
        assert!(matches!(&problems[1], PlacementError::CpuNotAllocatable { .. }));
        assert!(matches!(&problems[2], PlacementError::CpuNotAllocatable { .. }));
        assert!(matches!(&problems[3], PlacementError::DuplicateOwner { .. }));

        let good = [pinned("a", "1,3", "0"), pinned("b", "4", "0")];
        let rebuilt = Ledger::rebuild(&topo, config.clone(), good.clone()).unwrap();
        let mut incremental = Ledger::new(&topo, config).unwrap();
        for a in good {
            incremental.record(a).unwrap();
        }
        assert_eq!(rebuilt, incremental);
        assert_eq!(rebuilt.shared_pool(), &cpus("7"));
    }

    #[test]
    fn config_is_checked() {
        let topo = fixture("vm-2cpu");
        let bad = |config: PlacementConfig| Ledger::new(&topo, config).unwrap_err().to_string();
        assert!(bad(PlacementConfig { min_shared_cpus: 0, ..Default::default() })
            .contains("at least one CPU"));
        assert!(bad(PlacementConfig { min_shared_cpus: 3, ..Default::default() })
            .contains("cannot keep 3"));
        assert!(bad(PlacementConfig { reserved_cpus: cpus("0-4"), ..Default::default() })
            .contains("2-4"));
        assert!(bad(PlacementConfig {
            reserved_memory: [(NodeId(0), gib(100))].into(),
            ..Default::default()
        })
        .contains("no allowed node"));
        assert!(bad(PlacementConfig {
            reserved_memory: [(NodeId(3), gib(1))].into(),
            ..Default::default()
        })
        .contains("node3"));
    }

    #[test]
    fn assignments_round_trip_through_json() {
        let mut a = pinned("a", "0-3,32-35", "0-1");
        a.memory = [(NodeId(0), gib(1)), (NodeId(1), Bytes(512))].into();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(
            json,
            r#"{"owner":"a","cpus":{"exclusive":"0-3,32-35"},"mems":"0-1","memory":{"0":1073741824,"1":512}}"#
        );
        assert_eq!(serde_json::from_str::<Assignment>(&json).unwrap(), a);
    }
}
