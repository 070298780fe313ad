//! cgroup v1: one hierarchy per controller (or per co-mounted group), a file
//! per controller here.

pub mod blkio;
pub mod cpu;
pub mod cpuacct;
pub mod cpuset;
pub mod devices;
pub mod freezer;
pub mod hugetlb;
pub mod kill;
pub mod memory;
pub mod pids;
