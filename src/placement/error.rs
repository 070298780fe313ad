//! Why a placement, a ledger update or a rebuild was refused.

use crate::topology::{CpuId, CpuSet, NodeId, NodeSet};
use crate::vocab::Bytes;

use crate::vocab::RunId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The request is valid but the machine has no room for it now.
    #[error("no room for {owner}: {reason}")]
    NoFit { owner: RunId, reason: String },
    #[error("invalid request from {owner}: {reason}")]
    InvalidRequest { owner: RunId, reason: String },
    #[error("invalid placement configuration: {reason}")]
    Config { reason: String },
    #[error("{owner} already holds an assignment")]
    DuplicateOwner { owner: RunId },
    #[error("{owner} holds no assignment equal to the one released")]
    NotHeld { owner: RunId },
    #[error("{cpu} is claimed by both {first} and {second}")]
    CpuClaimedTwice { cpu: CpuId, first: RunId, second: RunId },
    /// Reserved, offline or outside the agent's allowed CPUs.
    #[error("{owner} holds {cpu}, which is not allocatable ({allocatable} are)")]
    CpuNotAllocatable { owner: RunId, cpu: CpuId, allocatable: CpuSet },
    #[error("{owner} has an empty exclusive cpuset")]
    EmptyCpus { owner: RunId },
    #[error("{owner} has mems {mems:?}, which must be non-empty memory nodes in {allowed}")]
    MemsNotAllowed { owner: RunId, mems: NodeSet, allowed: NodeSet },
    #[error("{owner} is charged {charged} on {node}, which is not in its mems")]
    ChargeOutsideMems { owner: RunId, node: NodeId, charged: Bytes },
    #[error("{owner} is charged {charged} on {node}, which has {free} left")]
    MemoryOvercommitted { owner: RunId, node: NodeId, charged: Bytes, free: Bytes },
    #[error("{owner} would leave {left} CPUs in the shared pool, below the minimum {minimum}")]
    SharedPoolExhausted { owner: RunId, left: usize, minimum: usize },
    /// Every problem found while rebuilding a ledger from live assignments.
    #[error("{} inconsistent assignments: {}", problems.len(), join(problems))]
    Inconsistent { problems: Vec<PlacementError> },
}

fn join(problems: &[PlacementError]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}
