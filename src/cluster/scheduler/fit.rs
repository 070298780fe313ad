//! Which node a cluster run goes to: a pure function of the published node
//! records, the run's demand and what this scheduler has bound since each
//! record was written.
//!
//! The published record is the node's word on what it holds; bindings the
//! scheduler wrote after the record's `updated_at` are not in it yet, so
//! they are charged here on top ("in flight"), or a burst of runs would all
//! see the same free room and overbind the node. A node that still finds no
//! room hands the run back (see [`super::decide`]), so a stale view costs a
//! round trip, never a double placement.

use std::collections::BTreeMap;
use std::fmt;

use crate::cluster::records::{NodeRecord, NumaCapacity};
use crate::spec::{CpuRequest, JobSpec, NodeConstraints};
use crate::vocab::{Bytes, NumaPolicy, Timestamp};

/// What a run needs of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Demand {
    /// The hard memory limit, bytes: charged as the node's ledger charges it.
    /// Zero for a job without one (nothing to charge).
    pub memory: u64,
    /// Exclusive CPUs; zero for a job in the shared pool.
    pub cpus: u32,
    /// `numa: single-node`: CPUs and memory on one NUMA node.
    pub single_numa: bool,
}

impl Demand {
    /// The demand of `spec`, with `memory_hard` (an OOM requeue's grown
    /// limit) replacing its hard memory limit when set.
    pub fn of(spec: &JobSpec, memory_hard: Option<u64>) -> Demand {
        let memory = memory_hard.or(spec.resources.memory.hard.map(Bytes::get)).unwrap_or(0);
        let cpus = match spec.resources.cpu {
            CpuRequest::Exclusive { cpus } => cpus,
            CpuRequest::Shared { .. } => 0,
        };
        Demand { memory, cpus, single_numa: spec.resources.numa == NumaPolicy::SingleNode }
    }

    fn covers(&self, other: &Demand) -> bool {
        self.memory >= other.memory && self.cpus >= other.cpus
    }
}

/// What was bound to a node after its record was published: charged on top
/// of the record's `allocated`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InFlight {
    pub memory: u64,
    pub cpus: u32,
    /// Per NUMA node, for `single-node` runs (the node the fit chose).
    pub numa: BTreeMap<u32, (u32, u64)>,
    /// Runs bound: so that runs asking for no memory spread over equal
    /// nodes instead of all going to the first by name.
    pub runs: u32,
}

impl InFlight {
    pub fn charge(&mut self, demand: &Demand, numa: Option<u32>) {
        self.memory = self.memory.saturating_add(demand.memory);
        self.cpus = self.cpus.saturating_add(demand.cpus);
        self.runs = self.runs.saturating_add(1);
        if let Some(n) = numa {
            let entry = self.numa.entry(n).or_default();
            entry.0 = entry.0.saturating_add(demand.cpus);
            entry.1 = entry.1.saturating_add(demand.memory);
        }
    }
}

/// One node as the fit sees it.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub record: &'a NodeRecord,
    pub in_flight: InFlight,
    /// Live (bound) runs of the job being placed, for `spread`.
    pub runs_of_job: u32,
}

impl Candidate<'_> {
    fn free_memory(&self) -> u64 {
        let r = self.record;
        r.capacity.memory.saturating_sub(r.allocated.memory).saturating_sub(self.in_flight.memory)
    }

    /// Runs the node holds or queues, with those bound since it published.
    fn load(&self) -> u32 {
        let a = &self.record.allocated;
        a.runs.saturating_add(a.pending).saturating_add(self.in_flight.runs)
    }

    fn free_cpus(&self) -> u32 {
        let r = self.record;
        r.capacity
            .cpus
            .saturating_sub(r.allocated.exclusive_cpus)
            .saturating_sub(self.in_flight.cpus)
    }

    /// Free CPUs and memory of NUMA node `numa`.
    fn free_numa(&self, numa: &NumaCapacity) -> (u32, u64) {
        let held = self.record.allocated.numa.iter().find(|a| a.node == numa.node);
        let (held_cpus, held_memory) = held.map_or((0, 0), |h| (h.cpus, h.memory));
        let (flight_cpus, flight_memory) =
            self.in_flight.numa.get(&numa.node).copied().unwrap_or_default();
        (
            numa.cpus.saturating_sub(held_cpus).saturating_sub(flight_cpus),
            numa.memory.saturating_sub(held_memory).saturating_sub(flight_memory),
        )
    }
}

/// Why a node was not chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The job's `nodes`/`node_selector` leave it out.
    NotAdmitted { constraints: String },
    /// It handed this run back and has not published anything since.
    HandedBack { reason: String },
    /// Even empty, it could not hold the run.
    TooBig { what: Shortfall },
    /// It could hold the run, but not now.
    NoRoom { what: Shortfall },
}

/// The first resource a node lacks, with what is wanted and what there is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shortfall {
    Memory {
        needs: u64,
        has: u64,
    },
    Cpus {
        needs: u32,
        has: u32,
    },
    /// `single-node`: no NUMA node with both.
    NumaNode {
        cpus: u32,
        memory: u64,
    },
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Shortfall::Memory { needs, has } => {
                write!(f, "needs {} memory, {}", Bytes(needs).human(), Bytes(has).human())
            }
            Shortfall::Cpus { needs, has } => write!(f, "needs {needs} exclusive CPUs, {has}"),
            Shortfall::NumaNode { cpus, memory } => write!(
                f,
                "needs one NUMA node with {cpus} CPUs and {} memory, none",
                Bytes(memory).human()
            ),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotAdmitted { constraints } => write!(f, "not in {constraints}"),
            Refusal::HandedBack { reason } => write!(f, "handed back: {reason}"),
            Refusal::TooBig { what } => write!(f, "{what} in all"),
            Refusal::NoRoom { what } => write!(f, "{what} free"),
        }
    }
}

/// The node chosen, and the NUMA node the run is counted on (`single-node`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub node: String,
    pub numa: Option<u32>,
}

/// Every node's refusal, by name: the run's pending reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoFit {
    pub refusals: BTreeMap<String, Refusal>,
}

impl NoFit {
    /// Whether no node could hold the run even empty (among those its
    /// constraints admit): it will wait until a bigger node joins.
    pub fn too_big_everywhere(&self) -> bool {
        let mut sized = self
            .refusals
            .values()
            .filter(|r| matches!(r, Refusal::TooBig { .. } | Refusal::NoRoom { .. }))
            .peekable();
        sized.peek().is_some() && sized.all(|r| matches!(r, Refusal::TooBig { .. }))
    }
}

impl fmt::Display for NoFit {
    /// `n1: needs 8 GiB memory, 3.5 GiB free; n2: not in nodes n3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.refusals.is_empty() {
            return f.write_str("no node has joined the cluster");
        }
        if self.too_big_everywhere() {
            f.write_str("too big for every node's capacity: ")?;
        }
        let parts: Vec<String> =
            self.refusals.iter().map(|(node, why)| format!("{node}: {why}")).collect();
        f.write_str(&parts.join("; "))
    }
}

/// Whether `candidate` can take `demand` now, and on which NUMA node.
pub fn fits(candidate: &Candidate<'_>, demand: &Demand) -> Result<Option<u32>, Refusal> {
    let capacity = &candidate.record.capacity;
    if demand.memory > capacity.memory {
        let what = Shortfall::Memory { needs: demand.memory, has: capacity.memory };
        return Err(Refusal::TooBig { what });
    }
    if demand.cpus > capacity.cpus {
        return Err(Refusal::TooBig {
            what: Shortfall::Cpus { needs: demand.cpus, has: capacity.cpus },
        });
    }
    let numa_shortfall = Shortfall::NumaNode { cpus: demand.cpus, memory: demand.memory };
    if demand.single_numa
        && !capacity
            .numa
            .iter()
            .any(|n| (Demand { memory: n.memory, cpus: n.cpus, single_numa: true }).covers(demand))
    {
        return Err(Refusal::TooBig { what: numa_shortfall });
    }
    let free_memory = candidate.free_memory();
    if demand.memory > free_memory {
        return Err(Refusal::NoRoom {
            what: Shortfall::Memory { needs: demand.memory, has: free_memory },
        });
    }
    let free_cpus = candidate.free_cpus();
    if demand.cpus > free_cpus {
        return Err(Refusal::NoRoom {
            what: Shortfall::Cpus { needs: demand.cpus, has: free_cpus },
        });
    }
    if !demand.single_numa {
        return Ok(None);
    }
    // The NUMA node with the most free memory that holds it, lowest id on
    // ties: the same choice on every pass.
    capacity
        .numa
        .iter()
        .map(|n| (n.node, candidate.free_numa(n)))
        .filter(|&(_, (cpus, memory))| cpus >= demand.cpus && memory >= demand.memory)
        .max_by(|a, b| a.1 .1.cmp(&b.1 .1).then(b.0.cmp(&a.0)))
        .map(|(node, _)| Some(node))
        .ok_or(Refusal::NoRoom { what: numa_shortfall })
}

/// A node's hand-back of this run, and when it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandedBack<'a> {
    pub reason: &'a str,
    pub at: Option<Timestamp>,
}

/// Chooses the node for a run: among the nodes whose record is live, that
/// the job's constraints admit, that have not handed the run back since
/// they last published, and whose free room holds the demand — with
/// `spread`, the one with the fewest live runs of the job, else the one
/// with the most free memory; then the one with the fewest runs in all;
/// then by name.
pub fn choose(
    candidates: &[Candidate<'_>],
    constraints: &NodeConstraints,
    handed_back_by: &BTreeMap<String, HandedBack<'_>>,
    demand: &Demand,
) -> Result<Choice, NoFit> {
    let mut refusals = BTreeMap::new();
    let mut best: Option<(&Candidate<'_>, Option<u32>)> = None;
    for candidate in candidates {
        let record = candidate.record;
        if !constraints.admits(&record.name, &record.labels) {
            let refusal = Refusal::NotAdmitted { constraints: constraints.to_string() };
            refusals.insert(record.name.clone(), refusal);
            continue;
        }
        if let Some(back) = handed_back_by.get(&record.name) {
            // A hand-back without a time (a record from before the time was
            // kept) holds until the run is bound elsewhere.
            let published_since = back.at.is_some_and(|at| record.updated_at > at);
            if !published_since {
                let refusal = Refusal::HandedBack { reason: back.reason.to_owned() };
                refusals.insert(record.name.clone(), refusal);
                continue;
            }
        }
        match fits(candidate, demand) {
            Err(refusal) => {
                refusals.insert(record.name.clone(), refusal);
            }
            Ok(numa) => {
                let better = match best {
                    None => true,
                    Some((current, _)) => prefer(candidate, current, constraints.spread),
                };
                if better {
                    best = Some((candidate, numa));
                }
            }
        }
    }
    match best {
        Some((candidate, numa)) => Ok(Choice { node: candidate.record.name.clone(), numa }),
        None => Err(NoFit { refusals }),
    }
}

/// Whether `a` is a better choice than `b`.
fn prefer(a: &Candidate<'_>, b: &Candidate<'_>, spread: bool) -> bool {
    let by_spread =
        if spread { b.runs_of_job.cmp(&a.runs_of_job) } else { std::cmp::Ordering::Equal };
    by_spread
        .then(a.free_memory().cmp(&b.free_memory()))
        .then(b.load().cmp(&a.load()))
        .then(b.record.name.cmp(&a.record.name))
        .is_gt()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::cluster::records::{Allocation, Capacity};

    const GIB: u64 = 1 << 30;

    fn node(name: &str, cpus: u32, memory: u64, numa: &[(u32, u64)]) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            labels: BTreeMap::new(),
            cgroup_mode: "hybrid".into(),
            version: "0".into(),
            api: None,
            capacity: Capacity {
                cpus,
                memory,
                numa: numa
                    .iter()
                    .enumerate()
                    .map(|(i, &(cpus, memory))| NumaCapacity { node: i as u32, cpus, memory })
                    .collect(),
            },
            allocated: Allocation::default(),
            updated_at: Timestamp::from_millis(1000),
        }
    }

    fn candidates(records: &[NodeRecord]) -> Vec<Candidate<'_>> {
        records
            .iter()
            .map(|record| Candidate { record, in_flight: InFlight::default(), runs_of_job: 0 })
            .collect()
    }

    fn mem(memory: u64) -> Demand {
        Demand { memory, cpus: 0, single_numa: false }
    }

    #[test]
    fn runs_asking_for_no_memory_go_round_equal_nodes() {
        let records = [
            node("n1", 2, 4 * GIB, &[(2, 4 * GIB)]),
            node("n2", 2, 4 * GIB, &[(2, 4 * GIB)]),
            node("n3", 2, 4 * GIB, &[(2, 4 * GIB)]),
        ];
        let mut cands = candidates(&records);
        let mut chosen = Vec::new();
        for _ in 0..6 {
            let choice =
                choose(&cands, &NodeConstraints::default(), &BTreeMap::new(), &mem(0)).unwrap();
            let i = cands.iter().position(|c| c.record.name == choice.node).unwrap();
            cands[i].in_flight.charge(&mem(0), None);
            chosen.push(choice.node);
        }
        assert_eq!(chosen, ["n1", "n2", "n3", "n1", "n2", "n3"]);
    }

    #[test]
    fn the_node_with_the_most_free_memory_is_chosen_and_a_full_one_says_why() {
        let mut busy = node("n1", 2, 8 * GIB, &[(2, 8 * GIB)]);
        busy.allocated.memory = 6 * GIB;
        let records = [busy, node("n2", 2, 4 * GIB, &[(2, 4 * GIB)])];
        let none = BTreeMap::new();
        let got = choose(&candidates(&records), &NodeConstraints::default(), &none, &mem(GIB));
        assert_eq!(got, Ok(Choice { node: "n2".into(), numa: None }));

        let err = choose(&candidates(&records), &NodeConstraints::default(), &none, &mem(5 * GIB))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "n1: needs 5 GiB memory, 2 GiB free; n2: needs 5 GiB memory, 4 GiB in all"
        );
        assert!(!err.too_big_everywhere());
        let err = choose(&candidates(&records), &NodeConstraints::default(), &none, &mem(9 * GIB))
            .unwrap_err();
        assert!(err.too_big_everywhere());
        assert!(
            err.to_string().starts_with("too big for every node's capacity: n1: needs 9 GiB"),
            "{err}"
        );
    }

    #[test]
    fn constraints_and_hand_backs_leave_nodes_out_until_they_publish_again() {
        let mut records = [node("n1", 2, 8 * GIB, &[]), node("n2", 2, 4 * GIB, &[])];
        records[1].labels.insert("disk".into(), "ssd".into());
        let mut constraints = NodeConstraints::default();
        constraints.selector.insert("disk".into(), "ssd".into());
        let none = BTreeMap::new();
        let got = choose(&candidates(&records), &constraints, &none, &mem(GIB)).unwrap();
        assert_eq!(got.node, "n2");

        let mut back = BTreeMap::new();
        back.insert(
            "n2".to_owned(),
            HandedBack { reason: "stale view", at: Some(Timestamp::from_millis(2000)) },
        );
        let err = choose(&candidates(&records), &constraints, &back, &mem(GIB)).unwrap_err();
        assert_eq!(err.to_string(), "n1: not in labels disk=ssd; n2: handed back: stale view");
        records[1].updated_at = Timestamp::from_millis(3000);
        let got = choose(&candidates(&records), &constraints, &back, &mem(GIB)).unwrap();
        assert_eq!(got.node, "n2");
    }

    #[test]
    fn single_node_needs_one_numa_node_holding_cpus_and_memory() {
        let records = [
            node("a", 4, 8 * GIB, &[(2, 4 * GIB), (2, 4 * GIB)]),
            node("b", 4, 6 * GIB, &[(4, 6 * GIB)]),
        ];
        let demand = Demand { memory: 5 * GIB, cpus: 2, single_numa: true };
        let got =
            choose(&candidates(&records), &NodeConstraints::default(), &BTreeMap::new(), &demand);
        assert_eq!(got, Ok(Choice { node: "b".into(), numa: Some(0) }));
        let only_a = &records[..1];
        let err =
            choose(&candidates(only_a), &NodeConstraints::default(), &BTreeMap::new(), &demand)
                .unwrap_err();
        assert!(err.too_big_everywhere(), "{err}");
    }

    #[test]
    fn spread_prefers_the_node_with_fewer_runs_of_the_job() {
        let records = [node("a", 2, 8 * GIB, &[]), node("b", 2, 4 * GIB, &[])];
        let mut cands = candidates(&records);
        cands[0].runs_of_job = 2;
        cands[1].runs_of_job = 1;
        let spread = NodeConstraints { spread: true, ..Default::default() };
        let got = choose(&cands, &spread, &BTreeMap::new(), &mem(GIB)).unwrap();
        assert_eq!(got.node, "b");
        let got = choose(&cands, &NodeConstraints::default(), &BTreeMap::new(), &mem(GIB)).unwrap();
        assert_eq!(got.node, "a");
    }

    fn arb_node(i: usize) -> impl Strategy<Value = NodeRecord> {
        (1u32..8, 1u64..16, 0u32..8, 0u64..16, 1usize..3, proptest::bool::ANY).prop_map(
            move |(cpus, gib, held_cpus, held_gib, numa, ssd)| {
                let per = (cpus / numa as u32).max(1);
                let mut r = node(
                    &format!("n{i}"),
                    cpus,
                    gib * GIB,
                    &vec![(per, gib * GIB / numa as u64); numa],
                );
                r.allocated.exclusive_cpus = held_cpus.min(cpus);
                r.allocated.memory = (held_gib * GIB).min(r.capacity.memory);
                if ssd {
                    r.labels.insert("disk".into(), "ssd".into());
                }
                r
            },
        )
    }

    fn arb_demand() -> impl Strategy<Value = Demand> {
        (0u64..8, 0u32..4, proptest::bool::ANY).prop_map(|(gib, cpus, single_numa)| Demand {
            memory: gib * GIB,
            cpus,
            single_numa,
        })
    }

    proptest! {
        /// Binding a burst of runs one after another, each charged in
        /// flight, never hands a node more than its free room, and every
        /// binding meets the job's constraints.
        #[test]
        fn a_burst_never_overbinds_and_honours_constraints(
            records in (arb_node(0), arb_node(1), arb_node(2)).prop_map(|(a, b, c)| vec![a, b, c]),
            demands in proptest::collection::vec(arb_demand(), 1..20),
            ssd_only in proptest::bool::ANY,
            spread in proptest::bool::ANY,
        ) {
            let mut constraints = NodeConstraints { spread, ..Default::default() };
            if ssd_only {
                constraints.selector.insert("disk".into(), "ssd".into());
            }
            let mut cands = candidates(&records);
            for demand in &demands {
                match choose(&cands, &constraints, &BTreeMap::new(), demand) {
                    Ok(choice) => {
                        let c = cands.iter_mut().find(|c| c.record.name == choice.node).unwrap();
                        prop_assert!(constraints.admits(&c.record.name, &c.record.labels));
                        prop_assert_eq!(choice.numa.is_some(), demand.single_numa);
                        c.in_flight.charge(demand, choice.numa);
                        c.runs_of_job += 1;
                    }
                    Err(no_fit) => {
                        prop_assert_eq!(no_fit.refusals.len(), records.len());
                    }
                }
            }
            for c in &cands {
                let r = c.record;
                prop_assert!(r.allocated.memory + c.in_flight.memory <= r.capacity.memory.max(r.allocated.memory));
                prop_assert!(r.allocated.exclusive_cpus + c.in_flight.cpus <= r.capacity.cpus.max(r.allocated.exclusive_cpus));
                for n in &r.capacity.numa {
                    let (cpus, memory) = c.in_flight.numa.get(&n.node).copied().unwrap_or_default();
                    prop_assert!(cpus <= n.cpus && memory <= n.memory);
                }
            }
        }

        /// With `spread`, identical nodes and small runs end up within one
        /// run of each other.
        #[test]
        fn spread_balances_runs_over_identical_nodes(count in 1usize..30, nodes in 1usize..5) {
            let records: Vec<NodeRecord> =
                (0..nodes).map(|i| node(&format!("n{i}"), 64, 64 * GIB, &[])).collect();
            let mut cands = candidates(&records);
            let spread = NodeConstraints { spread: true, ..Default::default() };
            for _ in 0..count {
                let choice = choose(&cands, &spread, &BTreeMap::new(), &mem(GIB)).unwrap();
                let c = cands.iter_mut().find(|c| c.record.name == choice.node).unwrap();
                c.in_flight.charge(&mem(GIB), None);
                c.runs_of_job += 1;
            }
            let most = cands.iter().map(|c| c.runs_of_job).max().unwrap();
            let least = cands.iter().map(|c| c.runs_of_job).min().unwrap();
            prop_assert!(most - least <= 1, "{most} vs {least}");
        }
    }
}
