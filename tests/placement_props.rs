//! Property tests of the allocator on every fixture machine: random
//! sequences of placements, releases and suspensions, checked after every
//! step.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use proptest::prelude::*;

use corral::placement::{
    place, victims, Assignment, Candidate, Ledger, NumaPolicy, PlacementConfig, PlacementError,
    Rank, ReleaseMode, Request, RunId,
};
use corral::topology::{discover, CpuId, CpuSet, NodeId, Topology};
use corral::vocab::Bytes;

const MACHINES: [&str; 5] =
    ["vm-2cpu", "dual-socket-snc", "memoryless-nodes", "offline-cpus", "no-numa"];

fn machines() -> &'static [Topology] {
    static TOPOLOGIES: OnceLock<Vec<Topology>> = OnceLock::new();
    TOPOLOGIES.get_or_init(|| {
        MACHINES
            .iter()
            .map(|name| {
                let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures/sysfs")
                    .join(name);
                discover(&root.join("sys"), &root.join("proc")).unwrap()
            })
            .collect()
    })
}

/// Memory requests are multiples of this, up to 48 of them (24 GiB).
const MEMORY_UNIT: u64 = 512 << 20;

#[derive(Debug, Clone)]
enum Op {
    /// `cpus == 0` asks for the shared pool; `memory == 0` accounts nothing.
    Place {
        cpus: u32,
        numa: NumaPolicy,
        memory: u64,
    },
    /// Release the live run at this index (modulo the number of runs).
    Release(usize),
    Suspend(usize),
}

fn numa() -> impl Strategy<Value = NumaPolicy> {
    prop_oneof![Just(NumaPolicy::None), Just(NumaPolicy::Prefer), Just(NumaPolicy::SingleNode)]
}

fn request_parts() -> impl Strategy<Value = (u32, NumaPolicy, u64)> {
    (0u32..10, numa(), prop_oneof![Just(0u64), 1u64..48])
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => request_parts().prop_map(|(cpus, numa, memory)| Op::Place { cpus, numa, memory }),
        1 => any::<usize>().prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::Suspend),
    ]
}

fn request(owner: RunId, cpus: u32, numa: NumaPolicy, memory: u64) -> Request {
    let mut request = if cpus == 0 {
        // A shared run cannot ask for one node.
        let numa = if numa == NumaPolicy::SingleNode { NumaPolicy::None } else { numa };
        Request::shared(owner).with_numa(numa)
    } else {
        Request::exclusive(owner, cpus).with_numa(numa)
    };
    if memory > 0 {
        request = request.with_memory(Bytes(memory * MEMORY_UNIT));
    }
    request
}

/// A machine and a configuration: up to two reserved CPUs, a shared-pool
/// minimum of 1 or 2, up to 2 GiB reserved on the first memory node.
fn setup() -> impl Strategy<Value = (usize, PlacementConfig)> {
    (0..MACHINES.len()).prop_flat_map(|machine| {
        let online: Vec<CpuId> = machines()[machine].cpus().keys().copied().collect();
        (Just(machine), proptest::sample::subsequence(online, 0..=2), 1usize..=2, 0u64..=4)
            .prop_map(|(machine, reserved, min_shared, reserved_memory)| {
                let topo = &machines()[machine];
                let first = topo.memory_nodes().iter().next().unwrap();
                let config = PlacementConfig {
                    reserved_cpus: reserved.into_iter().collect(),
                    reserved_memory: [(first, Bytes(reserved_memory * MEMORY_UNIT))].into(),
                    min_shared_cpus: min_shared,
                };
                (machine, config)
            })
    })
}

/// What the ledger must satisfy at every moment.
fn check_invariants(
    topo: &Topology,
    ledger: &Ledger,
    config: &PlacementConfig,
    policies: &BTreeMap<RunId, NumaPolicy>,
) -> Result<(), TestCaseError> {
    let mut held = CpuSet::new();
    let mut charged: BTreeMap<NodeId, u64> = BTreeMap::new();
    for a in ledger.assignments() {
        if let Some(cpus) = a.exclusive_cpus() {
            prop_assert!(held.is_disjoint(cpus), "{} overlaps {held}: {a:?}", a.owner);
            held = held.union(cpus);
            prop_assert!(cpus.is_disjoint(&config.reserved_cpus), "reserved CPU assigned: {a:?}");
            if policies.get(&a.owner) == Some(&NumaPolicy::SingleNode) {
                let nodes: CpuSet = cpus.clone();
                let homes: std::collections::BTreeSet<NodeId> =
                    nodes.iter().map(|c| topo.cpu(c).unwrap().node).collect();
                prop_assert_eq!(homes.len(), 1, "single-node spans nodes: {:?}", a);
                let home = *homes.iter().next().unwrap();
                prop_assert_eq!(a.mems.iter().collect::<Vec<_>>(), vec![home]);
            }
        }
        prop_assert!(!a.mems.is_empty());
        prop_assert!(a.mems.is_subset(&ledger.memory_nodes()), "{a:?}");
        for (node, bytes) in &a.memory {
            prop_assert!(a.mems.contains(*node), "{a:?}");
            *charged.entry(*node).or_default() += bytes.get();
        }
    }
    let pool = ledger.shared_pool();
    prop_assert!(pool.is_disjoint(&held));
    prop_assert_eq!(&pool.union(&held), ledger.allocatable());
    prop_assert!(ledger
        .allocatable()
        .is_subset(&topo.online_cpus().intersection(topo.allowed_cpus())));
    prop_assert!(ledger.allocatable().is_disjoint(&config.reserved_cpus));
    prop_assert!(pool.len() >= config.min_shared_cpus.max(1), "pool {pool} below minimum");
    for node in topo.nodes().keys() {
        let sum = charged.get(node).copied().unwrap_or(0);
        prop_assert_eq!(ledger.memory_charged(*node).get(), sum);
        prop_assert!(sum <= ledger.memory_capacity(*node).get(), "{node} over-committed");
    }
    Ok(())
}

/// Runs `ops`, checking the invariants after each; returns the ledger and
/// the policy each live run asked for.
fn run_ops(
    topo: &Topology,
    config: &PlacementConfig,
    ops: &[Op],
) -> Result<(Ledger, BTreeMap<RunId, NumaPolicy>), TestCaseError> {
    let mut ledger = Ledger::new(topo, config.clone()).unwrap();
    let mut policies = BTreeMap::new();
    for (step, op) in ops.iter().enumerate() {
        let live: Vec<Assignment> = ledger.assignments().cloned().collect();
        match *op {
            Op::Place { cpus, numa, memory } => {
                let owner = RunId::new(format!("run{step:03}"));
                let request = request(owner.clone(), cpus, numa, memory);
                let pool_before = ledger.shared_pool().clone();
                match ledger.admit(topo, &request) {
                    Ok(assignment) => {
                        prop_assert_eq!(ledger.shared_pool() != &pool_before, cpus > 0);
                        if cpus > 0 {
                            prop_assert_eq!(
                                assignment.exclusive_cpus().unwrap().len(),
                                cpus as usize
                            );
                        }
                        prop_assert_eq!(
                            assignment.memory_total().get(),
                            request.accounted_memory()
                        );
                        policies.insert(owner, request.numa);
                    }
                    Err(PlacementError::NoFit { .. }) => {}
                    Err(other) => prop_assert!(false, "unexpected {other}"),
                }
            }
            Op::Release(i) if !live.is_empty() => {
                let a = &live[i % live.len()];
                ledger.release(a).unwrap();
                policies.remove(&a.owner);
            }
            Op::Suspend(i) if !live.is_empty() => {
                let a = &live[i % live.len()];
                let suspended = ledger.suspend(&a.owner).unwrap();
                prop_assert_eq!(&suspended.memory, &a.memory);
                prop_assert!(suspended.is_shared());
                policies.remove(&a.owner);
            }
            _ => {}
        }
        check_invariants(topo, &ledger, config, &policies)?;
    }
    Ok((ledger, policies))
}

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(128)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn invariants_hold_and_release_restores_the_empty_ledger(
        (machine, config) in setup(),
        ops in proptest::collection::vec(op(), 1..40),
        order in any::<u64>(),
    ) {
        let topo = &machines()[machine];
        prop_assume!(Ledger::new(topo, config.clone()).is_ok());
        let (mut ledger, _) = run_ops(topo, &config, &ops)?;
        let mut live: Vec<Assignment> = ledger.assignments().cloned().collect();
        // Release in a scrambled order.
        let mut state = order | 1;
        while !live.is_empty() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let a = live.swap_remove((state % live.len() as u64) as usize);
            ledger.release(&a).unwrap();
        }
        prop_assert_eq!(ledger, Ledger::new(topo, config).unwrap());
    }

    #[test]
    fn rebuild_equals_incremental(
        (machine, config) in setup(),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let topo = &machines()[machine];
        prop_assume!(Ledger::new(topo, config.clone()).is_ok());
        let (ledger, _) = run_ops(topo, &config, &ops)?;
        let live: Vec<Assignment> = ledger.assignments().cloned().collect();
        let rebuilt = Ledger::rebuild(topo, config.clone(), live.iter().cloned()).unwrap();
        prop_assert_eq!(&rebuilt, &ledger);
        let reversed = Ledger::rebuild(topo, config.clone(), live.iter().rev().cloned()).unwrap();
        prop_assert_eq!(&reversed, &ledger);

        // The same CPU claimed by a second owner is refused.
        if let Some(a) = live.iter().find(|a| !a.is_shared()) {
            let mut twin = a.clone();
            twin.owner = RunId::new("twin");
            twin.memory.clear();
            let err = Ledger::rebuild(topo, config.clone(), live.iter().cloned().chain([twin])).unwrap_err();
            let PlacementError::Inconsistent { problems } = err else { panic!("{err}") };
            let claimed_twice = problems.iter().any(|p| matches!(p, PlacementError::CpuClaimedTwice { .. }));
            prop_assert!(claimed_twice, "{:?}", problems);
        }
    }

    #[test]
    fn victims_make_the_request_fit(
        (machine, config) in setup(),
        ops in proptest::collection::vec(op(), 10..60),
        picks in proptest::collection::vec((proptest::bool::weighted(0.8), 0i32..5, any::<bool>()), 60),
        (cpu_share, numa, memory_share) in (0u64..=100, numa(), 0u64..=100),
    ) {
        let topo = &machines()[machine];
        prop_assume!(Ledger::new(topo, config.clone()).is_ok());
        let (ledger, _) = run_ops(topo, &config, &ops)?;
        let candidates: Vec<Candidate> = ledger
            .assignments()
            .zip(&picks)
            .filter(|(_, (pick, _, _))| *pick)
            .map(|(a, &(_, priority, requeue))| Candidate {
                owner: a.owner.clone(),
                priority: Rank(priority),
                mode: if requeue { ReleaseMode::Requeue } else { ReleaseMode::Suspend },
            })
            .collect();
        // Sized against the machine, so that big requests need several victims.
        let cpus = (cpu_share * ledger.allocatable().len() as u64).div_ceil(100) as u32;
        let capacity: u64 = ledger.memory_nodes().iter().map(|n| ledger.memory_capacity(n).get()).sum();
        let memory = memory_share * (capacity / MEMORY_UNIT) / 100;
        let request = request(RunId::new("newcomer"), cpus, numa, memory);

        let apply = |chosen: &[&Candidate]| {
            let mut after = ledger.clone();
            for c in chosen {
                match c.mode {
                    ReleaseMode::Suspend => {
                        after.suspend(&c.owner).unwrap();
                    }
                    ReleaseMode::Requeue => {
                        let a = after.get(&c.owner).unwrap().clone();
                        after.release(&a).unwrap();
                    }
                }
            }
            place(topo, &after, &request).is_ok()
        };

        match victims(topo, &ledger, &request, &candidates) {
            Some(chosen) => {
                let chosen: Vec<&Candidate> = chosen
                    .iter()
                    .map(|owner| candidates.iter().find(|c| &c.owner == owner).unwrap())
                    .collect();
                prop_assert!(apply(&chosen), "releasing {:?} does not make room", chosen);
                // No victim could have been spared.
                for skip in 0..chosen.len() {
                    let mut fewer = chosen.clone();
                    fewer.remove(skip);
                    prop_assert!(!apply(&fewer), "{:?} was not needed", chosen[skip].owner);
                }
            }
            None => {
                let all: Vec<&Candidate> = candidates.iter().collect();
                prop_assert!(!apply(&all), "victims found nothing, yet releasing all makes room");
            }
        }
    }
}
