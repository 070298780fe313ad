//! Entry points for the fuzz targets in `fuzz/` (docs/fuzzing.md).
//!
//! Most parsers are public where they live and the targets call them there. What is
//! here reaches code that is crate-private by design: the statistics reader is built by
//! [`JobCgroup`](crate::cgroup::JobCgroup) from a job's cgroup directories, and a target
//! needs to build one over a scratch directory of its own.

use std::path::Path;

use crate::cgroup::layout::Controller;
use crate::cgroup::stats::{StatsReader, StatsSources};
use crate::cgroup::CgroupError;

/// Every v1 controller whose files the statistics reader reads.
const V1_CONTROLLERS: [Controller; 5] =
    [Controller::Cpu, Controller::Cpuacct, Controller::Memory, Controller::Pids, Controller::Blkio];

/// Every v2 controller whose files the statistics reader reads.
const V2_CONTROLLERS: [Controller; 4] =
    [Controller::Cpu, Controller::Memory, Controller::Pids, Controller::Io];

/// A statistics reader over `dir` as a v1 job cgroup (every v1 controller's files in
/// one directory), or as a v2 one with cpu, memory, pids and io enabled.
pub fn stats_reader(dir: &Path, v1: bool, clk_tck: u64) -> Result<StatsReader, CgroupError> {
    let sources = if v1 {
        StatsSources { v1: V1_CONTROLLERS.iter().map(|&c| (c, dir)).collect(), unified: None }
    } else {
        StatsSources { v1: Vec::new(), unified: Some((dir, &V2_CONTROLLERS)) }
    };
    StatsReader::open(&sources, clk_tck)
}
