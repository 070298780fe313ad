//! The words every layer shares: run ids, job names, byte quantities, CPU weights and
//! quotas, multipliers, wall-clock timestamps, capabilities, namespaces and NUMA policies.
//!
//! Each is a newtype or a closed enum that only holds valid values, so the layers that
//! consume them (placement, cgroup plans, the container, the store) need not re-check,
//! and each keeps one serialized form wherever it is written (run records, the API, the
//! container's config). This module depends on no other part of the crate.

mod bytes;
mod capability;
mod cpu;
pub mod decimal;
mod factor;
mod job_name;
mod namespace;
mod numa;
mod run_id;
mod time;

pub use bytes::{Bytes, HumanBytes, QuantityError};
pub use capability::{Capability, UnknownCapability, CAPABILITY_NAMES};
pub use cpu::{CpuWeight, MilliCpus};
pub use factor::Factor;
pub use job_name::{check_cgroup_label, check_label, JobName, NameError, RESERVED_CGROUP_NAMES};
pub use namespace::Namespace;
pub use numa::NumaPolicy;
pub use run_id::{parse_run_id, run_id, RunId};
pub use time::Timestamp;
