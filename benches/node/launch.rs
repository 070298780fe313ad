//! Section "launch": how long one run of `/bin/true` in a full container
//! takes on the agent's launch path, beside `crun run` and `runc run` of the
//! equivalent bundle, in the same run.
//!
//! corral's figure is the agent's path through the library, timed from the
//! plan to the cgroup removed: `Host::plan` (the placement is made before
//! the clock starts), `launch::start` (the job cgroup in six v1 hierarchies
//! and the v2 tree, created and configured, then the shim, which forks the
//! container's init), `StartedRun::wait` (the status the shim records) and
//! `EndedRun::finish` (kill leftovers, read the final statistics, remove
//! the cgroup). The job: `/bin/true` as a non-root user in pid, mount, uts,
//! ipc and net namespaces, the busybox rootfs read-only, the run directory
//! on the disk like the runtimes' state directories, its status fsynced.
//!
//! crun's and runc's figures are whole `run` commands of their default
//! spec (see `peers/oci.rs`): parse the bundle, create the container's
//! cgroups in every v1 hierarchy, namespaces, mounts, run, wait, delete.
//! Both are timed from spawn to exit by a child process of this benchmark;
//! crun sees the host without its cgroup2 tree, which it refuses here.
//!
//! An extra row shows what the start of the shim executable costs by
//! itself (the `corral` binary started as a shim that fails at once), so
//! that a smaller shim's effect can be read off the table.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corral::config::{AgentConfig, CgroupParent};
use corral::container::Launcher;
use corral::launch::{self, Host, RunInputs};
use corral::spec::JobSpec;
use corral::vocab::{RunId, Timestamp};

use crate::peers::oci::{self, Layout};
use crate::table::{Figure, Goal, Row};
use crate::Bench;

const SECTION: &str = "launch";

/// Untimed runs before the samples: page cache, dentries, the first cgroup
/// creations in each hierarchy.
pub fn warmup(bench: &Bench) -> usize {
    bench.scale(3, 1)
}

/// The median of `samples` (which must not be empty).
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The job every launch measure runs: `/bin/true` as `app` in the busybox
/// rootfs, read-only, with the default namespaces (pid, mount, uts, ipc,
/// net).
pub fn job_yaml(rootfs: &Path) -> String {
    format!(
        "name: bench-true\nuser: app\ncommand: [/bin/true]\nisolation: {{rootfs: {}, readonly: true}}\n",
        rootfs.display()
    )
}

/// The figure of an OCI runtime's `run` (see `peers/oci.rs`).
pub fn oci_run(
    bench: &Bench,
    name: &str,
    runtime: Result<&Path, String>,
    layout: Layout,
) -> Result<Figure, String> {
    let runtime = runtime?;
    let bundle =
        oci::bundle(runtime, &bench.scratch.path().join(format!("{name}-bundle")), &bench.rootfs)?;
    let samples = oci::time_runs(runtime, &bundle, layout, warmup(bench), bench.scale(30, 3))?;
    Ok(Figure::ms(median(samples)))
}

pub fn measure(bench: &Bench) -> Vec<Row> {
    let corral = agent_path(bench).map(|s| Figure::ms(median(s)));
    let crun = oci_run(bench, "crun", bench.peers.crun.path(), Layout::V1Only);
    let runc = oci_run(bench, "runc", bench.peers.runc.path(), Layout::Host);
    let shim = shim_start(bench).map(|s| Figure::ms(median(s)));
    let floor = spawn_times(bench, Path::new("/bin/true"), &[]).map(|s| Figure::ms(median(s)));
    let what = "launch /bin/true, agent's path (launcher + cgroups): plan, 7 cgroups made and \
                removed, shim + init, 5 namespaces, ro rootfs, status fsynced";
    vec![
        Row::new(SECTION, what, corral.clone())
            .against("crun run (its default spec, 9 v1 cgroups)", crun)
            .goal(Goal::RatioAtMost(0.5))
            .when_missed(
                "the shim's start is near the floor now (row below); what is left is kernel work \
                 per run: init's five namespaces, the read-only root's mounts and its moves \
                 into 7 cgroups (~2.7 ms of CPU in a perf profile), making and removing those \
                 cgroups with the devices allow-list (under 2 ms of system calls in strace), \
                 the fsync of status.json to disk (0.6-3 ms; crun keeps its state on tmpfs \
                 and does not sync) and an RCU grace period at the first move into a cgroup. \
                 Starting init straight in its cgroups (CLONE_INTO_CGROUP, pure v2 only) and \
                 fewer v1 hierarchies per run would cut it",
            ),
        Row::new(SECTION, "the same, beside runc", corral)
            .against("runc run (its default spec)", runc)
            .goal(Goal::Info),
        Row::new(SECTION, "of which: the start of the shim executable (exec to exit)", shim)
            .against("/bin/true (exec to exit)", floor)
            .goal(Goal::Info),
    ]
}

/// Times the agent's launch path (see the module docs).
fn agent_path(bench: &Bench) -> Result<Vec<Duration>, String> {
    let parent = crate::common::unique("corral-bench-launch");
    let state = bench.scratch.path().join("launch-state");
    let config = AgentConfig {
        state_dir: state,
        cgroup_parent: CgroupParent::parse(&parent).map_err(|e| e.to_string())?,
        ..AgentConfig::default()
    };
    let result = agent_path_in(bench, &config);
    remove_parent(&parent);
    result
}

fn agent_path_in(bench: &Bench, config: &AgentConfig) -> Result<Vec<Duration>, String> {
    let spec = job_spec(&bench.rootfs)?;
    let host = Host::discover(config)
        .map_err(|e| format!("discover the host: {e}"))?
        .with_launcher(Launcher::new(shim_of(bench)?));
    let mut ledger = host.ledger().map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let runs_dir = launch::runs_dir(&config.state_dir);
    let env = Default::default();
    let mut samples = Vec::new();
    for i in 0..warmup(bench) + bench.scale(30, 3) {
        let run = RunId::new(format!("bench-true-{}-{i}", std::process::id()));
        let assignment = ledger
            .admit(host.topology(), &launch::request(&spec, &run))
            .map_err(|e| format!("place: {e}"))?;
        let run_dir = launch::run_dir(&runs_dir, &run, Timestamp::now());
        let start = Instant::now();
        let inputs = RunInputs {
            run: &run,
            assignment: &assignment,
            shared_pool: ledger.shared_pool(),
            memory_limit: spec.resources.memory.hard,
            run_dir: &run_dir,
            env: &env,
            dynamic_uid: None,
            tee_output: false,
        };
        let plan = host.plan(&spec, &inputs).map_err(|e| format!("plan: {e}"))?;
        let started = launch::start(&host, &plan).map_err(|e| format!("start: {e}"))?;
        let ended = started.wait();
        let finished = runtime.block_on(ended.finish(Duration::from_secs(5)));
        let elapsed = start.elapsed();
        ledger.release(&assignment).map_err(|e| e.to_string())?;
        let status = finished.status.map_err(|e| format!("wait: {e}"))?;
        if let Some(cleanup) = finished.cleanup {
            return Err(format!("cleanup: {cleanup}"));
        }
        if !status.exit.success() {
            return Err(format!("/bin/true ended with {:?}", status.exit));
        }
        if i >= warmup(bench) {
            samples.push(elapsed);
        }
    }
    Ok(samples)
}

fn job_spec(rootfs: &Path) -> Result<JobSpec, String> {
    let mut jobs = corral::spec::compile_str(Path::new("bench-true.yaml"), &job_yaml(rootfs))
        .map_err(|e| format!("the benchmark's job: {e}"))?;
    Ok(jobs.remove(0).spec)
}

/// Removes the cgroup parent that `Host::discover` made, in every
/// hierarchy; the job cgroups under it are gone already.
pub fn remove_parent(parent: &str) {
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(entries.flatten().map(|e| e.path()));
    }
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    for root in roots {
        let _ = std::fs::remove_dir(root.join(parent));
    }
}

/// Exec to exit of the shim installed beside the `corral` under test,
/// given a run directory that does not exist: the process start (loading,
/// relocating), the command line and the first file read, without a
/// container.
fn shim_start(bench: &Bench) -> Result<Vec<Duration>, String> {
    let shim = shim_of(bench)?;
    let absent = bench.scratch.path().join("no-such-run-dir");
    spawn_times(bench, &shim, &[absent.to_str().ok_or("scratch path")?])
}

/// The shim installed beside the `corral` under test, as the agent finds it.
fn shim_of(bench: &Bench) -> Result<PathBuf, String> {
    let dir = bench.corral.parent().ok_or("the corral binary has no directory")?;
    corral::container::launch::find_shim(dir).map_err(|looked| {
        format!("no shim beside {}: looked at {looked:?}", bench.corral.display())
    })
}

/// Spawn-to-exit times of `program args`, whatever its exit status.
fn spawn_times(bench: &Bench, program: &Path, args: &[&str]) -> Result<Vec<Duration>, String> {
    let mut samples = Vec::new();
    for i in 0..warmup(bench) + bench.scale(30, 3) {
        let start = Instant::now();
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        if i >= warmup(bench) {
            samples.push(start.elapsed());
        }
    }
    Ok(samples)
}
