//! What the agent shows the metrics module on each scrape.
//!
//! The agent implements [`MetricsSource`]; a scrape calls
//! [`MetricsSource::snapshot`] once and reads each live run's cgroup files
//! through the [`StatsHandle`] the snapshot carries. Handles are the agent's:
//! it opens a run's [`StatsReader`] once at launch and hands out clones, so
//! the files stay open from one scrape to the next and a scrape costs reads,
//! not opens.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use crate::cgroup::{CgroupError, LayoutKind, Stats, StatsReader};
use crate::placement::Ledger;
use crate::scheduler::{Phase, PreemptionMode};
use crate::topology::{NodeId, NodeSet, Topology};
use crate::vocab::Bytes;
use crate::vocab::JobName;
use crate::vocab::RunId;

/// Everything a scrape needs from the agent, taken in one call.
pub trait MetricsSource: Send + Sync + 'static {
    /// The agent's state now. Called once per scrape, from the thread that
    /// serves it; cheap clones only, no file reads (the scrape reads the
    /// runs' statistics itself, outside any lock of the agent's).
    fn snapshot(&self) -> Arc<Snapshot>;
}

/// The agent's state as a scrape sees it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every run that has not ended: queued, starting, running, suspended,
    /// stopping or waiting to restart.
    pub runs: Vec<LiveRun>,
    /// Every job in force (from a valid job file).
    pub jobs: Vec<JobInfo>,
    /// Runs waiting in the queue for CPUs or memory.
    pub queue_length: u64,
    /// Waiting runs that fit but are held back for the reservation of the
    /// head of the queue (backfill).
    pub held_back: u64,
    pub spec_files: SpecFiles,
    /// `None` until the cgroup layout is known.
    pub layout: Option<LayoutKind>,
    /// One entry per NUMA node the agent allocates from.
    pub numa: Vec<NumaAllocation>,
    /// The agent's store refuses writes (a full state disk, a deleted
    /// database): it takes no new work.
    pub store_unwritable: bool,
    /// Every array with runs under way. Its pending runs are counted here
    /// and are not in `runs`: an array of thousands of indices must not
    /// make a series per index before any of them holds a cgroup.
    pub arrays: Vec<ArrayCounts>,
}

/// How many runs of one array under way are in each state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayCounts {
    /// The array's job name.
    pub array: JobName,
    /// By state name (`pending`, `running`, …), each state present once.
    pub by_state: Vec<(&'static str, u64)>,
}

impl ArrayCounts {
    /// Its runs in state `state`.
    pub fn count(&self, state: &str) -> u64 {
        self.by_state.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n)
    }
}

/// One run that has not ended.
#[derive(Debug, Clone)]
pub struct LiveRun {
    pub job: JobName,
    pub run: RunId,
    pub phase: Phase,
    /// The kernel has reported the run's cgroup frozen.
    pub frozen: bool,
    /// CPUs held for this run alone; 0 for runs in the shared pool.
    pub exclusive_cpus: u32,
    /// The NUMA nodes the run's memory may come from.
    pub numa_nodes: NodeSet,
    pub memory_soft_limit: Option<Bytes>,
    pub memory_hard_limit: Option<Bytes>,
    /// `None` while the run has no cgroup (queued, waiting to restart).
    pub stats: Option<StatsHandle>,
}

/// A job in force, for `corral_job_info`.
#[derive(Debug, Clone)]
pub struct JobInfo {
    pub job: JobName,
    pub priority: u16,
    pub preemption: PreemptionMode,
    /// It has a cron schedule.
    pub scheduled: bool,
    /// The user its processes run as, as written in the job file (name or uid).
    pub user: String,
    /// The next cron firing, for scheduled jobs.
    pub next_fire: Option<SystemTime>,
}

/// Job files in the jobs directory by what became of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecFiles {
    pub valid: u64,
    /// Files whose current version is not in force: it has at least one
    /// problem (the last good version, if any, stays in force), or it
    /// defines a job name an earlier file holds (none of its jobs are in
    /// force).
    pub invalid: u64,
}

/// What the agent can hand out on one NUMA node and what it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumaAllocation {
    pub node: NodeId,
    /// CPUs of the node jobs may get (online, allowed, not reserved).
    pub allocatable_cpus: u32,
    /// Of those, CPUs held exclusively by runs.
    pub allocated_cpus: u32,
    pub allocatable_memory: Bytes,
    /// Memory accounted to runs placed on the node.
    pub allocated_memory: Bytes,
}

impl NumaAllocation {
    /// One entry per node that has allocatable CPUs or memory, in node order.
    pub fn from_ledger(topology: &Topology, ledger: &Ledger) -> Vec<NumaAllocation> {
        let held = ledger.held_cpus();
        let memory_nodes = ledger.memory_nodes();
        let mut out = Vec::new();
        for (&node, info) in topology.nodes() {
            let allocatable = info.cpus.intersection(ledger.allocatable());
            if allocatable.is_empty() && !memory_nodes.contains(node) {
                continue;
            }
            out.push(NumaAllocation {
                node,
                allocatable_cpus: count(allocatable.len()),
                allocated_cpus: count(allocatable.intersection(&held).len()),
                allocatable_memory: ledger.memory_capacity(node),
                allocated_memory: ledger.memory_charged(node),
            });
        }
        out
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Something that reads one run's accounting: the run's [`StatsReader`] in
/// the agent, canned numbers in tests.
pub trait ReadStats: Send {
    fn read_stats(&mut self) -> Result<Stats, CgroupError>;

    /// At least CPU usage and memory in use, reading as little as it can.
    fn read_usage(&mut self) -> Result<Stats, CgroupError> {
        self.read_stats()
    }
}

impl ReadStats for StatsReader {
    fn read_stats(&mut self) -> Result<Stats, CgroupError> {
        self.read()
    }

    fn read_usage(&mut self) -> Result<Stats, CgroupError> {
        StatsReader::read_usage(self)
    }
}

/// A shared handle on one run's statistics files. Clones read the same open
/// files; reads are serialised (a reader re-uses one buffer).
#[derive(Clone)]
pub struct StatsHandle(Arc<Mutex<dyn ReadStats>>);

impl StatsHandle {
    pub fn new(reader: impl ReadStats + 'static) -> StatsHandle {
        StatsHandle(Arc::new(Mutex::new(reader)))
    }

    /// Reads every file once.
    pub fn read(&self) -> Result<Stats, CgroupError> {
        // A reader that panicked mid-read holds no state a later read relies
        // on (each read starts from offset 0), so poisoning is ignored.
        self.0.lock().unwrap_or_else(PoisonError::into_inner).read_stats()
    }

    /// Reads CPU usage and memory in use (`corral ps`), and what else the
    /// files behind them carry.
    pub fn read_usage(&self) -> Result<Stats, CgroupError> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).read_usage()
    }
}

impl fmt::Debug for StatsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StatsHandle")
    }
}

/// A [`MetricsSource`] the agent publishes into: it replaces the snapshot
/// whenever its state changes, and scrapes take the latest one.
#[derive(Debug, Default)]
pub struct PublishedSnapshot(RwLock<Arc<Snapshot>>);

impl PublishedSnapshot {
    pub fn new(snapshot: Snapshot) -> PublishedSnapshot {
        PublishedSnapshot(RwLock::new(Arc::new(snapshot)))
    }

    pub fn publish(&self, snapshot: Snapshot) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(snapshot);
    }

    pub fn latest(&self) -> Arc<Snapshot> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl MetricsSource for PublishedSnapshot {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.latest()
    }
}
