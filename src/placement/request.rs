//! What a run asks of the allocator.

use std::fmt;

use crate::vocab::Bytes;

/// The run that owns an assignment. Placement only compares and orders these;
/// the scheduler decides what they look like.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    pub fn new(id: impl Into<String>) -> RunId {
        RunId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a run's CPUs and memory may come from.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum NumaPolicy {
    /// CPUs anywhere (still as few nodes as possible); memory from every
    /// allowed node.
    #[default]
    None,
    /// One node if one has room; otherwise the fewest, nearest nodes. Memory
    /// comes from the nodes of the CPUs (and the nearest memory nodes if those
    /// lack memory).
    Prefer,
    /// CPUs and memory on one node, or no placement.
    SingleNode,
}

impl fmt::Display for NumaPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NumaPolicy::None => "none",
            NumaPolicy::Prefer => "prefer",
            NumaPolicy::SingleNode => "single-node",
        })
    }
}

/// CPUs of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CpuDemand {
    /// This many CPUs for the run alone, pinned.
    Exclusive(u32),
    /// The shared pool, whatever it currently is.
    Shared,
}

/// One run's demand on the machine.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Request {
    pub owner: RunId,
    pub cpus: CpuDemand,
    pub numa: NumaPolicy,
    /// Memory to account against the nodes: the run's hard limit. `None` (or
    /// zero) places the run without accounting memory.
    pub memory: Option<Bytes>,
}

impl Request {
    pub fn exclusive(owner: RunId, cpus: u32) -> Request {
        Request { owner, cpus: CpuDemand::Exclusive(cpus), numa: NumaPolicy::None, memory: None }
    }

    pub fn shared(owner: RunId) -> Request {
        Request { owner, cpus: CpuDemand::Shared, numa: NumaPolicy::None, memory: None }
    }

    pub fn with_numa(self, numa: NumaPolicy) -> Request {
        Request { numa, ..self }
    }

    pub fn with_memory(self, memory: Bytes) -> Request {
        Request { memory: Some(memory), ..self }
    }

    /// Exclusive CPUs asked for; 0 for the shared pool.
    pub fn exclusive_cpus(&self) -> usize {
        match self.cpus {
            CpuDemand::Exclusive(n) => n as usize,
            CpuDemand::Shared => 0,
        }
    }

    /// Memory to account, 0 when not accounted.
    pub fn accounted_memory(&self) -> u64 {
        self.memory.map_or(0, Bytes::get)
    }
}
