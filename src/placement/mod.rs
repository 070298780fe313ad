//! The allocator: exclusive cores, the shared CPU pool and per-node memory,
//! NUMA-aware, plus the preemption query "whom would we have to stop".
//!
//! Pure: every decision is a function of a [`Topology`](crate::topology::Topology),
//! a [`Ledger`] and a [`Request`]. The shell writes the resulting cpusets.
//!
//! - [`request`]: [`Request`], [`NumaPolicy`], [`RunId`].
//! - [`assignment`]: [`Assignment`], what a run got.
//! - [`config`]: [`PlacementConfig`]: reserved CPUs and memory, the shared
//!   pool's minimum.
//! - [`ledger`]: [`Ledger`], current holdings, checked updates and rebuild.
//! - [`place()`]: the decision; node choice in [`place`](mod@place), SMT-aware
//!   core choice in `cores`.
//! - [`victims()`]: the preemption query.
//!
//! # The shared pool
//!
//! Every allocatable CPU (online, in the agent's affinity, not reserved)
//! that no run holds exclusively is in the shared pool. The agent itself
//! and every shared-pool run execute there, so the pool never shrinks below
//! [`PlacementConfig::min_shared_cpus`] (at least 1): an exclusive request
//! that would take the last pool CPUs does not fit.

pub mod assignment;
pub mod config;
mod cores;
pub mod error;
mod fit;
pub mod ledger;
pub mod place;
pub mod request;
pub mod victims;

pub use assignment::{Assignment, CpuGrant};
pub use config::PlacementConfig;
pub use error::PlacementError;
pub use ledger::Ledger;
pub use place::place;
pub use request::{CpuDemand, NumaPolicy, Request, RunId};
pub use victims::{victims, Candidate, Rank, ReleaseMode, EXACT_SEARCH_BUDGET};

#[cfg(test)]
mod testing;
