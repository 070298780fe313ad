//! The placement decision.
//!
//! # Choosing nodes
//!
//! - `single-node`: among nodes with enough free CPUs and memory (a node
//!   without memory never qualifies: its CPUs would allocate elsewhere), the
//!   best fit: one where no core must be shared with another exclusive run,
//!   then the fewest CPUs left over, then the least memory left over, then
//!   the lowest id. Best fit keeps the large holes for large requests.
//! - `prefer`: from every node as a seed, grow a set by distance from the
//!   seed (nearest first) until it has the CPUs and the memory; a node joins
//!   only if it adds something still missing. The set whose CPUs sit on the
//!   fewest nodes wins (CPUs of one node share its caches and memory
//!   controller), then the set with the fewest nodes, then the smallest sum
//!   of distances from the seed, then as for single-node. A single node that
//!   fits therefore always wins. `cpuset.mems` is the set's nodes that have
//!   memory; if none has (CPUs of a memory-less node), the nearest memory
//!   node is added.
//! - `none`: CPUs as for `prefer` but ignoring memory, so still compact;
//!   `cpuset.mems` is every allowed memory node.
//!
//! Memory is charged node by node in the set's order up to each node's free
//! memory (for `none`, over all memory nodes nearest the seed first). The
//! kernel does not promise to allocate in that order; the charge is the
//! accounting that keeps the sum of hard limits within each node's memory.
//!
//! Shared-pool requests get the pool and every allowed memory node; their
//! memory is charged to the nodes with the most free memory first, which
//! keeps the nodes level for later single-node requests. `prefer` means
//! nothing there and acts as `none`; `single-node` is refused because the
//! pool spans nodes.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use crate::topology::{CpuSet, NodeId, Topology};
use crate::vocab::Bytes;

use super::assignment::{Assignment, CpuGrant};
use super::cores::pick_cpus;
use super::error::PlacementError;
use super::fit::{Availability, Demand};
use super::ledger::Ledger;
use super::request::{CpuDemand, Request};
use crate::vocab::NumaPolicy;

/// Decides where `request` goes, without changing `ledger`; record the
/// result with [`Ledger::record`] (or use [`Ledger::admit`]). `ledger` must
/// have been built for `topology`.
///
/// To place a run that already holds an assignment again (a thaw, an OOM
/// grow), release its assignment first and record it back if placement
/// fails: both are cheap.
pub fn place(
    topology: &Topology,
    ledger: &Ledger,
    request: &Request,
) -> Result<Assignment, PlacementError> {
    validate(request)?;
    if ledger.get(&request.owner).is_some() {
        return Err(PlacementError::DuplicateOwner { owner: request.owner.clone() });
    }
    let room = Availability::new(topology, ledger);
    let demand = Demand::of(request);
    if !room.fits(&demand) {
        return Err(PlacementError::NoFit {
            owner: request.owner.clone(),
            reason: room.explain(&demand),
        });
    }
    let assignment = match request.cpus {
        CpuDemand::Shared => place_shared(&room, request),
        CpuDemand::Exclusive(_) => place_exclusive(topology, ledger, &room, request, &demand),
    };
    Ok(assignment)
}

pub(crate) fn validate(request: &Request) -> Result<(), PlacementError> {
    let invalid = |reason: &str| {
        Err(PlacementError::InvalidRequest { owner: request.owner.clone(), reason: reason.into() })
    };
    match (request.cpus, request.numa) {
        (CpuDemand::Exclusive(0), _) => invalid("zero exclusive CPUs"),
        (CpuDemand::Shared, NumaPolicy::SingleNode) => {
            invalid("single-node needs exclusive CPUs: the shared pool spans nodes")
        }
        _ => Ok(()),
    }
}

fn place_shared(room: &Availability, request: &Request) -> Assignment {
    let mut order: Vec<usize> =
        (0..room.nodes.len()).filter(|&i| room.nodes[i].memory_node).collect();
    order.sort_by_key(|&i| (Reverse(room.nodes[i].free_memory), room.nodes[i].id));
    Assignment {
        owner: request.owner.clone(),
        cpus: CpuGrant::Shared,
        mems: order.iter().map(|&i| room.nodes[i].id).collect(),
        memory: charge(room, &order, request.accounted_memory()),
    }
}

fn place_exclusive(
    topology: &Topology,
    ledger: &Ledger,
    room: &Availability,
    request: &Request,
    demand: &Demand,
) -> Assignment {
    let held = ledger.held_cpus();
    let clean = clean_free_cpus(topology, room, ledger.shared_pool(), &held);
    let plan = choose_nodes(topology, room, &clean, demand)
        .expect("fits() said the request fits, so some node set does");
    let ranked: Vec<NodeId> = plan.cpu_nodes.iter().map(|&i| room.nodes[i].id).collect();
    let cpus = pick_cpus(topology, ledger.shared_pool(), &held, &ranked, demand.cpus);

    // Memory nodes, nearest first: every one for `none`, the plan's otherwise.
    let order: Vec<usize> = if demand.numa == NumaPolicy::None {
        by_distance(topology, room, plan.seed, |i| room.nodes[i].memory_node)
    } else {
        plan.nodes.iter().copied().filter(|&i| room.nodes[i].memory_node).collect()
    };
    Assignment {
        owner: request.owner.clone(),
        cpus: CpuGrant::Exclusive(cpus),
        mems: order.iter().map(|&i| room.nodes[i].id).collect(),
        memory: charge(room, &order, demand.memory),
    }
}

/// Nodes chosen for an exclusive request, nearest to `seed` first: those
/// that supply the CPUs, and all of them (CPUs and memory).
struct Plan {
    seed: usize,
    cpu_nodes: Vec<usize>,
    nodes: Vec<usize>,
}

type Score = (usize, usize, u64, bool, usize, u64, NodeId);

fn choose_nodes(
    topology: &Topology,
    room: &Availability,
    clean: &[usize],
    demand: &Demand,
) -> Option<Plan> {
    let k = demand.cpus;
    let mut best: Option<(Score, Plan)> = None;
    for seed in 0..room.nodes.len() {
        let plan = match demand.numa {
            NumaPolicy::SingleNode => {
                if !room.single_node_fits(&room.nodes[seed], demand) {
                    continue;
                }
                Plan { seed, cpu_nodes: vec![seed], nodes: vec![seed] }
            }
            NumaPolicy::Prefer => {
                let Some(mut plan) = grow(topology, room, seed, k, demand.memory) else { continue };
                if !plan.nodes.iter().any(|&i| room.nodes[i].memory_node) {
                    let nearest = by_distance(topology, room, seed, |i| room.nodes[i].memory_node);
                    plan.nodes.push(nearest[0]);
                }
                plan
            }
            NumaPolicy::None => match grow(topology, room, seed, k, 0) {
                Some(plan) => plan,
                None => continue,
            },
        };
        // CPUs on as few nodes as possible come first: they share caches and
        // the interconnect least; then few nodes in all, then near ones.
        let distance: u64 =
            plan.nodes.iter().map(|&i| u64::from(distance(topology, room, seed, i))).sum();
        let sharing = k > plan.cpu_nodes.iter().map(|&i| clean[i]).sum::<usize>();
        let spare_cpus = plan.cpu_nodes.iter().map(|&i| room.nodes[i].free_cpus).sum::<usize>() - k;
        let spare_memory = match demand.numa {
            NumaPolicy::None => 0,
            _ => plan
                .nodes
                .iter()
                .filter(|&&i| room.nodes[i].memory_node)
                .map(|&i| room.nodes[i].free_memory)
                .sum::<u64>()
                .saturating_sub(demand.memory),
        };
        let score = (
            plan.cpu_nodes.len(),
            plan.nodes.len(),
            distance,
            sharing,
            spare_cpus,
            spare_memory,
            room.nodes[seed].id,
        );
        if best.as_ref().is_none_or(|(b, _)| score < *b) {
            best = Some((score, plan));
        }
    }
    best.map(|(_, plan)| plan)
}

/// Nodes by distance from `seed`, adding each only while it supplies CPUs
/// or memory still missing; `None` if even all nodes fall short.
fn grow(
    topology: &Topology,
    room: &Availability,
    seed: usize,
    mut cpus: usize,
    mut memory: u64,
) -> Option<Plan> {
    if room.nodes[seed].free_cpus == 0 {
        // A seed without free CPUs is the same set as a seed that has them.
        return None;
    }
    let mut plan = Plan { seed, cpu_nodes: Vec::new(), nodes: Vec::new() };
    for i in by_distance(topology, room, seed, |_| true) {
        let node = &room.nodes[i];
        let cpu_gain = cpus.min(node.free_cpus);
        let memory_gain = if node.memory_node { memory.min(node.free_memory) } else { 0 };
        if cpu_gain == 0 && memory_gain == 0 {
            continue;
        }
        plan.nodes.push(i);
        if cpu_gain > 0 {
            plan.cpu_nodes.push(i);
        }
        cpus -= cpu_gain;
        memory -= memory_gain;
        if cpus == 0 && memory == 0 {
            return Some(plan);
        }
    }
    None
}

/// Node indices passing `filter`, the seed first, then by distance from it,
/// then by id.
fn by_distance(
    topology: &Topology,
    room: &Availability,
    seed: usize,
    filter: impl Fn(usize) -> bool,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..room.nodes.len()).filter(|&i| filter(i)).collect();
    order.sort_by_key(|&i| (i != seed, distance(topology, room, seed, i), room.nodes[i].id));
    order
}

fn distance(topology: &Topology, room: &Availability, from: usize, to: usize) -> u32 {
    topology.distance(room.nodes[from].id, room.nodes[to].id).unwrap_or(u32::MAX)
}

/// Per node, the free CPUs on cores no other exclusive run uses.
fn clean_free_cpus(
    topology: &Topology,
    room: &Availability,
    pool: &CpuSet,
    held: &CpuSet,
) -> Vec<usize> {
    let mut clean = vec![0; room.nodes.len()];
    for core in topology.cores() {
        if !core.cpus.is_disjoint(held) {
            continue;
        }
        if let Some(i) = room.index(core.node) {
            clean[i] += core.cpus.iter().filter(|&cpu| pool.contains(cpu)).count();
        }
    }
    clean
}

/// `memory` spread over `order`, each node up to its free memory.
fn charge(room: &Availability, order: &[usize], mut memory: u64) -> BTreeMap<NodeId, Bytes> {
    let mut charged = BTreeMap::new();
    for &i in order {
        if memory == 0 {
            break;
        }
        let take = memory.min(room.nodes[i].free_memory);
        if take > 0 {
            charged.insert(room.nodes[i].id, Bytes(take));
            memory -= take;
        }
    }
    debug_assert_eq!(memory, 0, "fits() checked the memory");
    charged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::testing::*;
    use crate::placement::PlacementConfig;
    use crate::topology::NodeSet;

    fn admit(topo: &Topology, ledger: &mut Ledger, request: Request) -> Assignment {
        ledger.admit(topo, &request).unwrap_or_else(|e| panic!("{e}"))
    }

    fn exclusive_of(a: &Assignment) -> String {
        a.exclusive_cpus().unwrap().to_string()
    }

    #[test]
    fn two_cpu_vm_keeps_one_cpu_shared() {
        let topo = fixture("vm-2cpu");
        let mut ledger = ledger(&topo);
        let a = admit(&topo, &mut ledger, exclusive("a", 1));
        assert_eq!(exclusive_of(&a), "0");
        assert_eq!(a.mems, nodes("0"));
        assert_eq!(ledger.shared_pool(), &cpus("1"));
        let err = place(&topo, &ledger, &exclusive("b", 1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no room for b: 1 exclusive CPUs requested, 1 in the shared pool, which keeps at least 1"
        );
    }

    #[test]
    fn whole_cores_first_and_an_odd_cpu_splits_a_fresh_core() {
        let topo = fixture("dual-socket-snc");
        let mut ledger = ledger(&topo);
        let a = admit(&topo, &mut ledger, exclusive("a", 4).with_numa(NumaPolicy::SingleNode));
        assert_eq!(exclusive_of(&a), "0-1,32-33");
        let b = admit(&topo, &mut ledger, exclusive("b", 3));
        assert_eq!(exclusive_of(&b), "2-3,34");
        // cpu35, b's unused sibling, stays in the pool; the next odd request
        // takes a fresh core rather than sit beside b.
        assert!(ledger.shared_pool().contains(crate::topology::CpuId(35)));
        let c = admit(&topo, &mut ledger, exclusive("c", 1));
        assert_eq!(exclusive_of(&c), "4");
    }

    #[test]
    fn sharing_a_core_only_when_no_clean_core_is_left() {
        // offline-cpus: cores {0,4}, {1}, {3,7}.
        let topo = fixture("offline-cpus");
        let mut ledger = ledger(&topo);
        // The lone CPU fits a 1-CPU request exactly: no core is split.
        assert_eq!(exclusive_of(&admit(&topo, &mut ledger, exclusive("a", 1))), "1");
        assert_eq!(exclusive_of(&admit(&topo, &mut ledger, exclusive("b", 1))), "0");
        assert_eq!(exclusive_of(&admit(&topo, &mut ledger, exclusive("c", 1))), "3");
        // Only halves of used cores remain: sharing is unavoidable now.
        assert_eq!(exclusive_of(&admit(&topo, &mut ledger, exclusive("d", 1))), "4");
        assert_eq!(ledger.shared_pool(), &cpus("7"));
    }

    #[test]
    fn best_fit_node() {
        let topo = fixture("dual-socket-snc");
        let mut ledger = ledger(&topo);
        admit(&topo, &mut ledger, exclusive("a", 14).with_numa(NumaPolicy::SingleNode));
        // node0 has 2 CPUs left: a 2-CPU request fills that hole.
        let b = admit(&topo, &mut ledger, exclusive("b", 2).with_numa(NumaPolicy::SingleNode));
        assert_eq!(exclusive_of(&b), "7,39");
        let c = admit(&topo, &mut ledger, exclusive("c", 2));
        assert_eq!(c.mems, nodes("0-3"), "policy none: every memory node");
        assert_eq!(exclusive_of(&c), "8,40");
    }

    #[test]
    fn single_node_refuses_to_span() {
        let topo = fixture("dual-socket-snc");
        let ledger = ledger(&topo);
        let err = place(&topo, &ledger, &exclusive("a", 20).with_numa(NumaPolicy::SingleNode))
            .unwrap_err();
        assert!(
            err.to_string().contains(
                "no single node has 20 free CPUs and 0 B free memory (node0: 16 CPUs, 62.2 GiB;"
            ),
            "{err}"
        );
        let err = place(
            &topo,
            &ledger,
            &exclusive("a", 2).with_numa(NumaPolicy::SingleNode).with_memory(gib(70)),
        )
        .unwrap_err();
        assert!(matches!(err, PlacementError::NoFit { .. }), "{err}");
    }

    #[test]
    fn prefer_spans_the_nearest_nodes() {
        let topo = fixture("dual-socket-snc");
        let ledger = ledger(&topo);
        let a = place(&topo, &ledger, &exclusive("a", 20).with_numa(NumaPolicy::Prefer)).unwrap();
        // node1 (distance 16) rather than a node of the other socket (32).
        assert_eq!(exclusive_of(&a), "0-9,32-41");
        assert_eq!(a.mems, nodes("0-1"));
        let n = place(&topo, &ledger, &exclusive("n", 20)).unwrap();
        assert_eq!(exclusive_of(&n), "0-9,32-41");
        assert_eq!(n.mems, nodes("0-3"));
    }

    #[test]
    fn prefer_adds_memory_from_the_next_node() {
        let topo = fixture("dual-socket-snc");
        let ledger = ledger(&topo);
        let a = place(
            &topo,
            &ledger,
            &exclusive("a", 2).with_numa(NumaPolicy::Prefer).with_memory(gib(70)),
        )
        .unwrap();
        assert_eq!(exclusive_of(&a), "0,32");
        assert_eq!(a.mems, nodes("0-1"));
        let node0 = ledger.memory_capacity(NodeId(0));
        assert_eq!(a.memory[&NodeId(0)], node0);
        assert_eq!(a.memory[&NodeId(1)], Bytes(gib(70).get() - node0.get()));
        assert_eq!(a.memory_total(), gib(70));
    }

    #[test]
    fn memoryless_nodes() {
        let topo = fixture("memoryless-nodes");
        let mut ledger = ledger(&topo);
        // node1 has CPUs but no memory: not a single node for anyone.
        let a = admit(&topo, &mut ledger, exclusive("a", 6).with_numa(NumaPolicy::SingleNode));
        assert_eq!(exclusive_of(&a), "0-5");
        let err = place(&topo, &ledger, &exclusive("b", 4).with_numa(NumaPolicy::SingleNode))
            .unwrap_err();
        assert!(err.to_string().contains("node1: 8 CPUs, no memory"), "{err}");
        // prefer: node1's CPUs, memory from the nearest memory node (node0
        // at 21, not node2 at 28).
        let b = admit(&topo, &mut ledger, exclusive("b", 4).with_numa(NumaPolicy::Prefer));
        assert_eq!(exclusive_of(&b), "8-11");
        assert_eq!(b.mems, nodes("0"));
        // More memory than node0 has: the CPU-less node2 (17 from node0) adds it.
        let c = admit(
            &topo,
            &mut ledger,
            exclusive("c", 2).with_numa(NumaPolicy::Prefer).with_memory(gib(40)),
        );
        assert_eq!(exclusive_of(&c), "6-7");
        assert_eq!(c.mems, nodes("0,2"));
        // Shared runs get every memory node, charged where most is free.
        let s = admit(&topo, &mut ledger, Request::shared(run("s")).with_memory(gib(1)));
        assert_eq!(s.cpus, CpuGrant::Shared);
        assert_eq!(s.mems, NodeSet::parse("0,2").unwrap());
        assert_eq!(s.memory.keys().copied().collect::<Vec<_>>(), [NodeId(2)]);
    }

    #[test]
    fn reserved_and_disallowed_cpus_are_never_assigned() {
        let topo = fixture("no-numa"); // the agent may use CPUs 1-3
        let config = PlacementConfig { reserved_cpus: cpus("3"), ..Default::default() };
        let mut ledger = Ledger::new(&topo, config).unwrap();
        assert_eq!(ledger.allocatable(), &cpus("1-2"));
        assert_eq!(exclusive_of(&admit(&topo, &mut ledger, exclusive("a", 1))), "1");
        assert!(place(&topo, &ledger, &exclusive("b", 1)).is_err());
    }

    #[test]
    fn invalid_requests() {
        let topo = fixture("vm-2cpu");
        let mut ledger = ledger(&topo);
        let err = place(&topo, &ledger, &exclusive("a", 0)).unwrap_err();
        assert!(matches!(err, PlacementError::InvalidRequest { .. }));
        let shared_single = Request::shared(run("a")).with_numa(NumaPolicy::SingleNode);
        assert!(matches!(
            place(&topo, &ledger, &shared_single),
            Err(PlacementError::InvalidRequest { .. })
        ));
        admit(&topo, &mut ledger, Request::shared(run("a")));
        assert!(matches!(
            place(&topo, &ledger, &Request::shared(run("a"))),
            Err(PlacementError::DuplicateOwner { .. })
        ));
    }

    #[test]
    fn memory_is_accounted_per_node() {
        let topo = fixture("vm-2cpu");
        let config =
            PlacementConfig { reserved_memory: [(NodeId(0), gib(2))].into(), ..Default::default() };
        let mut ledger = Ledger::new(&topo, config).unwrap();
        let capacity = ledger.memory_capacity(NodeId(0));
        assert_eq!(capacity, Bytes::from_kib(24684092).saturating_sub(gib(2)));
        admit(&topo, &mut ledger, Request::shared(run("a")).with_memory(gib(20)));
        let err =
            place(&topo, &ledger, &Request::shared(run("b")).with_memory(gib(2))).unwrap_err();
        assert!(
            err.to_string().contains("2 GiB of memory requested, 1.5 GiB not yet charged"),
            "{err}"
        );
        // Unaccounted memory always fits.
        admit(&topo, &mut ledger, Request::shared(run("b")));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// `fits` (used by the preemption search) and `place` agree.
        #[test]
        fn fits_agrees_with_place(
            machine in 0usize..5,
            steps in proptest::collection::vec((0u32..9, 0usize..3, 0u64..80), 1..30),
        ) {
            let topo = fixture(["vm-2cpu", "dual-socket-snc", "memoryless-nodes", "offline-cpus", "no-numa"][machine]);
            let mut ledger = ledger(&topo);
            for (i, (cpus, numa, memory)) in steps.into_iter().enumerate() {
                let numa = [NumaPolicy::None, NumaPolicy::Prefer, NumaPolicy::SingleNode][numa];
                let mut request = if cpus == 0 {
                    Request::shared(run(&format!("r{i}")))
                } else {
                    exclusive(&format!("r{i}"), cpus).with_numa(numa)
                };
                if memory > 0 {
                    request = request.with_memory(gib(memory));
                }
                if validate(&request).is_err() {
                    continue;
                }
                let room = Availability::new(&topo, &ledger);
                let placed = place(&topo, &ledger, &request);
                proptest::prop_assert_eq!(placed.is_ok(), room.fits(&Demand::of(&request)), "{:?}", placed);
                if let Ok(assignment) = placed {
                    ledger.record(assignment).unwrap();
                }
            }
        }
    }
}
