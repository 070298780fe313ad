//! The machine's CPUs, cores, packages and NUMA nodes.
//!
//! - [`cpuset`]: CPU and node ids and the kernel's cpulist syntax.
//! - [`model`]: [`Topology`] and its parts, checked for consistency.
//! - [`parse`]: pure parsers for the sysfs/procfs files.
//! - [`discover`](mod@discover): reads a sysfs and a procfs root into a [`Topology`].

pub mod cpuset;
pub mod discover;
pub mod error;
pub mod model;
pub mod parse;
#[cfg(test)]
pub(crate) mod testing;

pub use crate::vocab::Bytes;
pub use cpuset::{CpuId, CpuSet, NodeId, NodeSet};
pub use discover::{discover, DEFAULT_PROCFS, DEFAULT_SYSFS};
pub use error::{ParseError, TopologyError};
pub use model::{Core, CoreId, CpuInfo, NodeInfo, PackageId, Topology};
