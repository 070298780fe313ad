//! Section "command": the whole `corral run` command for a `/bin/true` job,
//! process start to exit, beside `crun run` of the equivalent bundle in the
//! same run.
//!
//! `corral run` does everything the agent's launch path does (see
//! `launch.rs`) and, around it, what a command line must: start the big
//! binary, read and check the job file, discover the topology and the
//! cgroup layout, create the cgroup parent if missing, place the job,
//! drive the run through the state machine on a runtime, read the final
//! statistics and remove the cgroup (`--quiet`: no summary printed). Its
//! run directory and state directory are on the disk, like crun's state
//! directory; it uses the host's real (hybrid) layout, one cgroup more than
//! a v1-only view.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::launch::{median, oci_run, warmup};
use crate::peers::oci::Layout;
use crate::table::{Figure, Goal, Row};
use crate::Bench;

pub fn measure(bench: &Bench) -> Vec<Row> {
    let corral = corral_run(bench).map(|s| Figure::ms(median(s)));
    let crun = oci_run(bench, "crun", bench.peers.crun.path(), Layout::V1Only);
    vec![Row::new(
        "command",
        "whole `corral run` of /bin/true (start to exit: job file, topology, cgroups, run, \
         cleanup)",
        corral,
    )
    .against("crun run", crun)
    .goal(Goal::RatioAtMost(1.0))
    .when_missed(
        "the command's own process: `perf stat` over 10 runs counts 13.8 ms of CPU per \
         run for the whole tree (the command, its shim, init and the job) and a perf \
         profile puts half of it in the command itself, mostly in the kernel: page faults \
         loading and relocating the 83 MB position-independent binary (the dynamic \
         loader's relocations ~2.4 ms), opening the sysfs and cgroupfs files it reads to \
         discover the topology and cgroup layout, and making and removing the run's 7 \
         cgroups. A small command binary that leaves discovery to the agent, packed \
         relative relocations (-z pack-relative-relocs), and CLONE_INTO_CGROUP on pure v2 \
         would cut it",
    )]
}

/// Times whole `corral run` commands (after warm-up runs).
fn corral_run(bench: &Bench) -> Result<Vec<Duration>, String> {
    let dir = bench.scratch.path().join("command");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let job = dir.join("bench-true.yaml");
    std::fs::write(&job, crate::launch::job_yaml(&bench.rootfs))
        .map_err(|e| format!("{}: {e}", job.display()))?;
    let parent = crate::common::unique("corral-bench-command");
    let mut samples = Vec::new();
    let mut result = Ok(());
    for i in 0..warmup(bench) + bench.scale(30, 3) {
        let start = Instant::now();
        let out = Command::new(&bench.corral)
            .arg("run")
            .arg(&job)
            .arg("--quiet")
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(["--cgroup-parent", &parent])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        let elapsed = start.elapsed();
        match out {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                result = Err(format!(
                    "corral run: {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
                break;
            }
            Err(e) => {
                result = Err(format!("corral run: {e}"));
                break;
            }
        }
        if i >= warmup(bench) {
            samples.push(elapsed);
        }
    }
    // corral run removes each job's cgroup; the parent is left for an
    // agent, and removed here.
    crate::launch::remove_parent(&parent);
    result.map(|()| samples)
}
