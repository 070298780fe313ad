//! The machine's CPUs, cores, packages and NUMA nodes.

pub mod cpuset;

pub use cpuset::{CpuId, CpuSet, NodeId, NodeSet};
