//! Units every layer shares, each a validated newtype: byte quantities, CPU
//! weights and CPU bandwidth caps. A value of these types is always in range, so
//! the layers that consume them (placement, cgroup plans) need not re-check.

mod bytes;
mod cpu;
pub mod decimal;

pub use bytes::{Bytes, HumanBytes, QuantityError};
pub use cpu::{CpuWeight, MilliCpus};
