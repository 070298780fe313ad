//! What a job asks of its cgroup, independent of cgroup version.
//!
//! This is the cgroup layer's own input: the job spec is mapped onto it
//! elsewhere. Values are checked when a [`Plan`](super::Plan) is made, so a
//! `Resources` may hold anything and every problem is reported at once.

use crate::topology::{CpuSet, NodeSet};

/// The CFS period corral uses for CPU quotas, in microseconds (the kernel's
/// default): a quota is then a number of microseconds of CPU per 100 ms.
pub const CFS_PERIOD_US: u64 = 100_000;

use crate::vocab::{CpuWeight, MilliCpus};

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
    /// v2 has no pause at `memory.max`: `memory.high` goes at the hard limit
    /// (the kernel throttles the job there and counts `high` events) and
    /// `memory.max` a margin above it
    /// ([`freeze_margin`](crate::cgroup::v2::memory::freeze_margin)), so
    /// that whoever watches `memory.events` can freeze the job before the
    /// kernel kills it. A job that allocates faster than that reaches
    /// `memory.max` and is OOM-killed as a whole, as with `Kill`.
    FreezeAtHigh,
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
    /// Block I/O weight and throttles.
    pub io: super::io::IoResources,
    /// The device nodes the job may use, everything else denied; `None`
    /// leaves device access as the kernel has it (all allowed).
    pub devices: Option<Vec<super::devices::DeviceRule>>,
    /// Huge page limits, one per page size (none: the kernel's default,
    /// unlimited).
    pub hugetlb: Vec<super::hugetlb::HugetlbLimit>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_to_shares_keeps_defaults_aligned() {
        assert_eq!(CpuWeight::DEFAULT.v1_shares(), 1024);
        assert_eq!(CpuWeight::new(1).unwrap().v1_shares(), 10);
        assert_eq!(CpuWeight::new(50).unwrap().v1_shares(), 512);
        assert_eq!(CpuWeight::new(10_000).unwrap().v1_shares(), 102_400);
    }

    #[test]
    fn millicpus_to_quota() {
        assert_eq!(MilliCpus::new(1000).unwrap().quota_us(CFS_PERIOD_US), 100_000);
        assert_eq!(MilliCpus::new(1500).unwrap().quota_us(CFS_PERIOD_US), 150_000);
        assert_eq!(MilliCpus::new(10).unwrap().quota_us(CFS_PERIOD_US), 1_000);
    }
}
