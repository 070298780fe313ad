//! What a job asks of its cgroup, independent of cgroup version.
//!
//! This is the cgroup layer's own input: the job spec is mapped onto it
//! elsewhere. Values are checked when a [`Plan`](super::Plan) is made, so a
//! `Resources` may hold anything and every problem is reported at once.

use crate::topology::{CpuSet, NodeSet};

/// The CFS period corral uses for CPU quotas, in microseconds (the kernel's
/// default): a quota is then a number of microseconds of CPU per 100 ms.
pub const CFS_PERIOD_US: u64 = 100_000;

/// Relative CPU weight under contention, 1–10000; 100 is the default share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CpuWeight(pub u32);

impl CpuWeight {
    pub const MIN: u32 = 1;
    pub const MAX: u32 = 10_000;
    pub const DEFAULT: CpuWeight = CpuWeight(100);

    /// cgroup v1 `cpu.shares` for this weight: the v1 default of 1024 shares
    /// corresponds to the v2 default weight of 100. The kernel refuses shares
    /// below 2.
    pub fn v1_shares(self) -> u64 {
        (u64::from(self.0) * 1024 / 100).max(2)
    }
}

/// A CPU bandwidth cap in thousandths of a CPU: 1500 lets the job use one and
/// a half CPUs' worth of time per period, spread over whatever CPUs it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MilliCpus(pub u32);

impl MilliCpus {
    /// The kernel refuses quotas below 1 ms per period; with a 100 ms period
    /// that is 10 millicpus.
    pub const MIN: u32 = 10;
    /// 1024 CPUs; bounds the arithmetic, far above any machine corral runs on.
    pub const MAX: u32 = 1_024_000;

    /// Microseconds of CPU time per [`CFS_PERIOD_US`].
    pub fn quota_us(self) -> u64 {
        u64::from(self.0) * CFS_PERIOD_US / 1000
    }
}

/// Memory limits in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Usage can never exceed this; reaching it triggers reclaim, then OOM.
    pub hard_bytes: Option<u64>,
    /// Above this the job's memory is reclaimed before that of jobs below
    /// their soft limit (v1 soft limit, v2 `memory.low` protection).
    pub soft_bytes: Option<u64>,
    /// Above this the job is throttled and reclaimed hard (v2 only).
    pub high_bytes: Option<u64>,
    /// Swap the job may use on top of `hard_bytes`.
    pub swap_bytes: Option<u64>,
}

/// What happens when a job reaches its hard memory limit and reclaim fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OomMode {
    /// The kernel OOM-kills (v2: the whole job at once, `memory.oom.group`).
    #[default]
    Kill,
    /// The kernel stops the job's allocating tasks at the limit (v1
    /// `oom_kill_disable`) and reports it; raising the limit lets it go on.
    ///
    /// Only page faults in user space wait at the limit. Memory charged
    /// inside a system call is refused instead: a `read()` into a buffer not
    /// yet touched fails with `EFAULT`, other calls with `ENOMEM`, and the
    /// job sees an error rather than a pause.
    PauseAtLimit,
}

/// The resources of one job cgroup. `None` means "the kernel's default".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_weight: Option<CpuWeight>,
    pub cpu_quota: Option<MilliCpus>,
    /// CPUs the job is confined to (exclusive cores handed out by placement).
    pub cpus: Option<CpuSet>,
    /// NUMA nodes the job may allocate memory from.
    pub mems: Option<NodeSet>,
    pub memory: MemoryLimits,
    /// Maximum number of tasks (processes and threads).
    pub pids_max: Option<u64>,
    pub oom: OomMode,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_to_shares_keeps_defaults_aligned() {
        assert_eq!(CpuWeight::DEFAULT.v1_shares(), 1024);
        assert_eq!(CpuWeight(1).v1_shares(), 10);
        assert_eq!(CpuWeight(50).v1_shares(), 512);
        assert_eq!(CpuWeight(10_000).v1_shares(), 102_400);
        assert_eq!(CpuWeight(0).v1_shares(), 2);
    }

    #[test]
    fn millicpus_to_quota() {
        assert_eq!(MilliCpus(1000).quota_us(), 100_000);
        assert_eq!(MilliCpus(1500).quota_us(), 150_000);
        assert_eq!(MilliCpus(10).quota_us(), 1_000);
    }
}
