//! crun as a peer: a shell loop of `crun run` over one bundle.

use super::Throughput;
use crate::Bench;

/// `jobs` runs of `/bin/true` in the same container setup as corral's jobs
/// (see `throughput.rs`), one after another from a shell loop.
pub fn loop_throughput(bench: &Bench, jobs: usize) -> Result<Throughput, String> {
    let _ = (bench, jobs);
    Err("not measured yet".into())
}
