//! Whom to preempt so that a request fits.
//!
//! # Cost
//!
//! Among the sets of candidates whose release makes the request fit, the
//! cheapest is the one with, compared in this order:
//!
//! 1. the fewest runs (each preemption disturbs a run and costs a freeze or
//!    a restart);
//! 2. the lowest highest priority: a more important run is never taken when
//!    less important ones would do as many;
//! 3. the lowest sum of priorities;
//! 4. the fewest requeue-mode runs: killing loses a run's progress, freezing
//!    keeps it;
//! 5. the owners, sorted, compared as a list: an arbitrary but stable
//!    tie-break, so the same inputs always give the same answer.
//!
//! # Search
//!
//! Whether a set works is decided on per-node counts (free CPUs, free
//! memory) and costs a few additions per node, not a placement. Sets are
//! tried exactly, smallest first, as long as the number of sets of the next
//! size keeps the total under [`EXACT_SEARCH_BUDGET`]; the first size with a
//! working set gives the answer, and the cheapest set of that size is
//! returned. 10,000 candidates still get an exact search over single
//! victims; pairs would be 5·10⁷ sets, over budget.
//!
//! Past the budget a greedy search runs instead: per target (each memory
//! node for `single-node`, the whole machine otherwise) candidates are taken
//! by how much of the missing CPUs and memory they return, then by the cost
//! order above, until the request fits; victims whose removal keeps the fit
//! are then dropped, most important first. The cheapest target's set wins.
//! Greedy sets are minimal (no victim can be spared) but not always minimum.

use crate::topology::Topology;

use super::fit::{Availability, Demand};
use super::ledger::Ledger;
use super::place::validate;
use super::request::Request;
use crate::vocab::NumaPolicy;
use crate::vocab::RunId;

/// Sets evaluated by the exact search before it gives way to the greedy one.
/// Each evaluation is a few additions and comparisons per node, so the
/// budget bounds the exact search to a fraction of a millisecond.
pub const EXACT_SEARCH_BUDGET: u64 = 20_000;

/// How much a run matters; higher is more important.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Rank(pub i32);

/// What preempting a run frees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseMode {
    /// Frozen: its exclusive CPUs return to the pool, its memory stays
    /// charged (a frozen cgroup keeps its pages). See [`Ledger::suspend`].
    Suspend,
    /// Killed and queued again: everything returns. See [`Ledger::release`].
    Requeue,
}

/// A run the caller is willing to preempt for this request: the scheduler
/// has already applied its policy (lower priority, preemption not `never`).
/// Its assignment is the one in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub owner: RunId,
    pub priority: Rank,
    pub mode: ReleaseMode,
}

/// The cheapest set of `candidates` (see the module docs for the order)
/// whose release lets `request` be placed; `Some(vec![])` if it fits
/// already, `None` if releasing every candidate would not be enough or the
/// request is invalid. Candidates that are not in the ledger or would free
/// nothing the request needs are ignored; an owner listed twice counts once. The victims
/// come in the order of (priority, mode, owner).
pub fn victims(
    topology: &Topology,
    ledger: &Ledger,
    request: &Request,
    candidates: &[Candidate],
) -> Option<Vec<RunId>> {
    if validate(request).is_err() || ledger.get(&request.owner).is_some() {
        return None;
    }
    let base = Availability::new(topology, ledger);
    let demand = Demand::of(request);
    if base.fits(&demand) {
        return Some(Vec::new());
    }
    let pool = releases(topology, ledger, &base, &demand, request, candidates);

    let mut all = base.clone();
    for victim in &pool {
        victim.give(&mut all);
    }
    if !all.fits(&demand) {
        return None;
    }
    let chosen = match exact(&base, &pool, &demand) {
        Some(chosen) => chosen,
        None => greedy(&base, &pool, &demand),
    };
    Some(chosen.into_iter().map(|i| pool[i].owner.clone()).collect())
}

/// A candidate with what its release returns, per node index.
struct Release<'a> {
    owner: &'a RunId,
    priority: i64,
    requeue: bool,
    /// (node index, CPUs, memory bytes).
    returns: Vec<(usize, usize, u64)>,
    cpus: usize,
}

impl Release<'_> {
    fn give(&self, room: &mut Availability) {
        for &(node, cpus, memory) in &self.returns {
            room.give(node, cpus, memory);
        }
    }

    fn take(&self, room: &mut Availability) {
        for &(node, cpus, memory) in &self.returns {
            room.take(node, cpus, memory);
        }
    }

    fn returned(&self, node: usize) -> (usize, u64) {
        self.returns.iter().find(|r| r.0 == node).map_or((0, 0), |r| (r.1, r.2))
    }

    fn memory(&self) -> u64 {
        self.returns.iter().map(|r| r.2).sum()
    }
}

/// The useful candidates, in cost order (priority, mode, owner).
fn releases<'a>(
    topology: &Topology,
    ledger: &Ledger,
    base: &Availability,
    demand: &Demand,
    request: &Request,
    candidates: &'a [Candidate],
) -> Vec<Release<'a>> {
    let mut pool: Vec<Release<'a>> = candidates
        .iter()
        .filter(|c| c.owner != request.owner)
        .filter_map(|c| {
            let assignment = ledger.get(&c.owner)?;
            let mut returns: Vec<(usize, usize, u64)> = Vec::new();
            let mut entry = |node, cpus, memory| match returns.iter_mut().find(|r| r.0 == node) {
                Some(r) => {
                    r.1 += cpus;
                    r.2 += memory;
                }
                None => returns.push((node, cpus, memory)),
            };
            let mut cpus = 0;
            if demand.cpus > 0 {
                for cpu in assignment.exclusive_cpus().into_iter().flat_map(|s| s.iter()) {
                    let node = topology.cpu(cpu).and_then(|info| base.index(info.node))?;
                    entry(node, 1, 0);
                    cpus += 1;
                }
            }
            if demand.memory > 0 && c.mode == ReleaseMode::Requeue {
                for (&node, bytes) in &assignment.memory {
                    if let Some(index) = base.index(node) {
                        entry(index, 0, bytes.get());
                    }
                }
            }
            returns.retain(|r| r.1 > 0 || r.2 > 0);
            if returns.is_empty() {
                return None;
            }
            Some(Release {
                owner: &c.owner,
                priority: i64::from(c.priority.0),
                requeue: c.mode == ReleaseMode::Requeue,
                returns,
                cpus,
            })
        })
        .collect();
    // Repeated owners: the first useful entry counts. Deduplicating the
    // useful few rather than all candidates keeps 10,000 mostly useless
    // candidates cheap. The sort is stable, so the first entry stays first.
    pool.sort_by_key(|r| r.owner);
    pool.dedup_by(|later, first| later.owner == first.owner);
    pool.sort_by(|a, b| (a.priority, a.requeue, a.owner).cmp(&(b.priority, b.requeue, b.owner)));
    pool
}

/// The comparable cost of a victim set (module docs).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Cost<'a> {
    count: usize,
    max_priority: i64,
    total_priority: i64,
    requeues: usize,
    owners: Vec<&'a RunId>,
}

fn cost<'a>(pool: &[Release<'a>], chosen: &[usize]) -> Cost<'a> {
    let mut owners: Vec<&RunId> = chosen.iter().map(|&i| pool[i].owner).collect();
    owners.sort();
    Cost {
        count: chosen.len(),
        max_priority: chosen.iter().map(|&i| pool[i].priority).max().unwrap_or(i64::MIN),
        total_priority: chosen.iter().map(|&i| pool[i].priority).sum(),
        requeues: chosen.iter().filter(|&&i| pool[i].requeue).count(),
        owners,
    }
}

/// Smallest sets first; `None` when the budget runs out before a set works.
fn exact(base: &Availability, pool: &[Release<'_>], demand: &Demand) -> Option<Vec<usize>> {
    let mut spent: u64 = 0;
    for size in 1..=pool.len() {
        spent = spent.saturating_add(binomial(pool.len() as u64, size as u64));
        if spent > EXACT_SEARCH_BUDGET {
            return None;
        }
        let mut search =
            Exact { pool, demand, size, room: base.clone(), chosen: Vec::new(), best: None };
        search.descend(0);
        if let Some((_, chosen)) = search.best {
            return Some(chosen);
        }
    }
    None
}

struct Exact<'p, 'a> {
    pool: &'p [Release<'a>],
    demand: &'p Demand,
    size: usize,
    room: Availability,
    chosen: Vec<usize>,
    best: Option<(Cost<'a>, Vec<usize>)>,
}

impl Exact<'_, '_> {
    fn descend(&mut self, start: usize) {
        if self.chosen.len() == self.size {
            if self.room.fits(self.demand) {
                let cost = cost(self.pool, &self.chosen);
                if self.best.as_ref().is_none_or(|(best, _)| cost < *best) {
                    self.best = Some((cost, self.chosen.clone()));
                }
            }
            return;
        }
        let last = self.pool.len() - (self.size - self.chosen.len());
        for i in start..=last {
            self.pool[i].give(&mut self.room);
            self.chosen.push(i);
            self.descend(i + 1);
            self.chosen.pop();
            self.pool[i].take(&mut self.room);
        }
    }
}

fn binomial(n: u64, k: u64) -> u64 {
    let k = k.min(n - k);
    let mut result: u128 = 1;
    for i in 0..k {
        result = result * u128::from(n - i) / u128::from(i + 1);
        if result > u128::from(u64::MAX) {
            return u64::MAX;
        }
    }
    result as u64
}

fn greedy(base: &Availability, pool: &[Release<'_>], demand: &Demand) -> Vec<usize> {
    let targets: Vec<Option<usize>> = if demand.cpus > 0 && demand.numa == NumaPolicy::SingleNode {
        (0..base.nodes.len()).filter(|&i| base.nodes[i].memory_node).map(Some).collect()
    } else {
        vec![None]
    };
    let mut best: Option<(Cost<'_>, Vec<usize>)> = None;
    for target in targets {
        let Some(chosen) = greedy_for(base, pool, demand, target) else { continue };
        let cost = cost(pool, &chosen);
        if best.as_ref().is_none_or(|(b, _)| cost < *b) {
            best = Some((cost, chosen));
        }
    }
    best.map(|(_, chosen)| chosen)
        .expect("releasing every candidate fits, so the global target does")
}

/// Greedy set aimed at fitting on node `target` (or anywhere for `None`).
fn greedy_for(
    base: &Availability,
    pool: &[Release<'_>],
    demand: &Demand,
    target: Option<usize>,
) -> Option<Vec<usize>> {
    let k = demand.cpus;
    let pool_need = (k + base.min_shared).saturating_sub(base.free_cpus);
    let (cpu_need, memory_need) = match target {
        Some(t) => (
            k.saturating_sub(base.nodes[t].free_cpus),
            demand.memory.saturating_sub(base.nodes[t].free_memory),
        ),
        None => (0, demand.memory.saturating_sub(base.free_memory())),
    };
    let share = |gain: f64, need: f64| if need > 0.0 { gain.min(need) / need } else { 0.0 };
    let mut order: Vec<(f64, usize)> = pool
        .iter()
        .enumerate()
        .map(|(i, victim)| {
            let (cpus, memory) = match target {
                Some(t) => victim.returned(t),
                None => (0, victim.memory()),
            };
            let value = share(cpus as f64, cpu_need as f64)
                + share(victim.cpus as f64, pool_need as f64)
                + share(memory as f64, memory_need as f64);
            (value, i)
        })
        .filter(|&(value, _)| value > 0.0)
        .collect();
    // Most useful first; the index is the cost order.
    order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));

    let mut room = base.clone();
    let mut chosen = Vec::new();
    for (_, i) in order {
        if room.fits(demand) {
            break;
        }
        pool[i].give(&mut room);
        chosen.push(i);
    }
    if !room.fits(demand) {
        return None;
    }
    chosen.sort_unstable();
    for position in (0..chosen.len()).rev() {
        let i = chosen[position];
        pool[i].take(&mut room);
        if room.fits(demand) {
            chosen.remove(position);
        } else {
            pool[i].give(&mut room);
        }
    }
    Some(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::testing::*;
    use crate::placement::{Assignment, CpuGrant, Ledger, PlacementConfig};
    use crate::topology::NodeId;

    fn candidate(owner: &str, priority: i32, mode: ReleaseMode) -> Candidate {
        Candidate { owner: run(owner), priority: Rank(priority), mode }
    }

    fn owners(list: &[&str]) -> Option<Vec<RunId>> {
        Some(list.iter().map(|o| run(o)).collect())
    }

    #[test]
    fn nothing_to_preempt_when_it_fits() {
        let topo = fixture("vm-2cpu");
        let ledger = ledger(&topo);
        assert_eq!(victims(&topo, &ledger, &exclusive("x", 1), &[]), Some(vec![]));
    }

    #[test]
    fn fewest_runs_before_lowest_priority() {
        let topo = fixture("dual-socket-snc");
        let mut ledger = ledger(&topo);
        // 60 of 64 CPUs held: "big" 8 CPUs at priority 50, thirteen 4-CPU runs
        // at priority 10, and "small1".."small3" with 1 CPU at priority 1.
        ledger.record(pinned("big", "0-3,32-35", "0")).unwrap();
        let mut next = 4;
        for i in 0..13 {
            let cpus = format!("{}-{}", next, next + 1);
            let siblings = format!("{}-{}", next + 32, next + 33);
            ledger
                .record(pinned(&format!("mid{i:02}"), &format!("{cpus},{siblings}"), "0-3"))
                .unwrap();
            next += 2;
        }
        for (i, cpu) in [30, 31, 62].iter().enumerate() {
            ledger.record(pinned(&format!("small{i}"), &cpu.to_string(), "3")).unwrap();
        }
        assert_eq!(ledger.shared_pool(), &cpus("63"));
        let mut candidates = vec![candidate("big", 50, ReleaseMode::Suspend)];
        candidates.extend((0..3).map(|i| candidate(&format!("small{i}"), 1, ReleaseMode::Suspend)));
        candidates
            .extend((0..13).map(|i| candidate(&format!("mid{i:02}"), 10, ReleaseMode::Suspend)));

        // 3 CPUs needed (plus the pool's one): a 4-CPU run beats three
        // 1-CPU runs; among the 4-CPU runs the cheapest priority, then the
        // first owner.
        assert_eq!(victims(&topo, &ledger, &exclusive("x", 3), &candidates), owners(&["mid00"]));
        // 8 CPUs: "big" alone is one run; two 4-CPU runs are two.
        assert_eq!(victims(&topo, &ledger, &exclusive("x", 8), &candidates), owners(&["big"]));
        // 5 CPUs without big: two runs; the pair with the lowest highest
        // priority and then the lowest sum is a 1-CPU and a 4-CPU run.
        assert_eq!(
            victims(&topo, &ledger, &exclusive("x", 5), &candidates[1..]),
            owners(&["small0", "mid00"])
        );
        // single-node: 6 CPUs freed on one node. Only big frees that much
        // alone; without big, two 4-CPU runs of one node (node0: mid00 and
        // mid01), not mid01 and mid02, which straddle node0 and node1.
        let request = exclusive("x", 6).with_numa(NumaPolicy::SingleNode);
        assert_eq!(victims(&topo, &ledger, &request, &candidates), owners(&["big"]));
        assert_eq!(
            victims(&topo, &ledger, &request, &candidates[1..]),
            owners(&["mid00", "mid01"])
        );
    }

    #[test]
    fn suspension_frees_cpus_not_memory() {
        let topo = fixture("vm-2cpu");
        let mut ledger = ledger(&topo);
        let capacity = ledger.memory_capacity(NodeId(0));
        let hog = Assignment {
            owner: run("hog"),
            cpus: CpuGrant::Exclusive(cpus("0")),
            mems: nodes("0"),
            memory: [(NodeId(0), capacity)].into(),
        };
        ledger.record(hog).unwrap();
        let memory_request = Request::shared(run("x")).with_memory(gib(1));
        let suspend = [candidate("hog", 1, ReleaseMode::Suspend)];
        let requeue = [candidate("hog", 1, ReleaseMode::Requeue)];
        assert_eq!(victims(&topo, &ledger, &memory_request, &suspend), None);
        assert_eq!(victims(&topo, &ledger, &memory_request, &requeue), owners(&["hog"]));
        // CPUs alone: suspending is enough.
        assert_eq!(victims(&topo, &ledger, &exclusive("x", 1), &suspend), owners(&["hog"]));
    }

    #[test]
    fn fewer_requeues_then_owner_break_ties() {
        let topo = fixture("vm-2cpu");
        let mut ledger = ledger(&topo);
        ledger.record(pinned("b", "0", "0")).unwrap();
        let candidates = [
            candidate("b", 5, ReleaseMode::Requeue),
            candidate("unknown", 0, ReleaseMode::Suspend),
        ];
        assert_eq!(victims(&topo, &ledger, &exclusive("x", 1), &candidates), owners(&["b"]));
        let repeated =
            [candidate("b", 5, ReleaseMode::Requeue), candidate("b", 0, ReleaseMode::Suspend)];
        assert_eq!(victims(&topo, &ledger, &exclusive("x", 1), &repeated), owners(&["b"]));

        let mut ledger =
            Ledger::new(&fixture("dual-socket-snc"), PlacementConfig::default()).unwrap();
        let topo = fixture("dual-socket-snc");
        ledger.record(pinned("a", "0-31", "0-3")).unwrap();
        ledger.record(pinned("c", "32-62", "0-3")).unwrap();
        let same =
            [candidate("c", 5, ReleaseMode::Suspend), candidate("a", 5, ReleaseMode::Suspend)];
        assert_eq!(victims(&topo, &ledger, &exclusive("x", 1), &same), owners(&["a"]));
        let modes =
            [candidate("a", 5, ReleaseMode::Requeue), candidate("c", 5, ReleaseMode::Suspend)];
        assert_eq!(victims(&topo, &ledger, &exclusive("x", 1), &modes), owners(&["c"]));
    }

    #[test]
    fn greedy_search_for_many_candidates() {
        let topo = fixture("vm-2cpu");
        let mut ledger = ledger(&topo);
        // 1000 shared runs of 16 MiB each; a 4 GiB request needs 256 or
        // more of them requeued: far past the exact budget.
        let mut candidates = Vec::new();
        for i in 0..1000 {
            let owner = format!("s{i:04}");
            let memory = crate::vocab::Bytes::from_mib(16);
            ledger
                .record(Assignment {
                    owner: run(&owner),
                    cpus: CpuGrant::Shared,
                    mems: nodes("0"),
                    memory: [(NodeId(0), memory)].into(),
                })
                .unwrap();
            candidates.push(candidate(&owner, i % 7, ReleaseMode::Requeue));
        }
        let capacity = ledger.memory_capacity(NodeId(0));
        let left = capacity.get() - (1000 << 24);
        let request = Request::shared(run("x")).with_memory(crate::vocab::Bytes(left + (4 << 30)));
        let chosen = victims(&topo, &ledger, &request, &candidates).unwrap();
        assert_eq!(chosen.len(), 256);
        // Cheapest priorities first: 256 runs of priority 0..=1 exist (143 + 143).
        assert!(chosen.iter().all(|o| {
            let i: i32 = o.as_str()[1..].parse().unwrap();
            i % 7 <= 1
        }));
    }

    #[test]
    fn binomials() {
        assert_eq!(binomial(5, 2), 10);
        assert_eq!(binomial(10_000, 1), 10_000);
        assert_eq!(binomial(10_000, 2), 49_995_000);
        assert_eq!(binomial(10_000, 5000), u64::MAX);
        assert_eq!(binomial(3, 3), 1);
    }
}
