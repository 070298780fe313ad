//! Launch latency: from `launch()` to a recorded status for `/bin/true` in
//! a full container (pid, mount, uts, ipc and net namespaces, a busybox
//! rootfs mounted read-only), next to `crun run` of the equivalent OCI
//! bundle (crun's default spec: the same five namespaces, read-only root).
//!
//! Beside them, the whole `corral run` command line for the same job file:
//! process start to exit, including reading the job file, discovering the
//! topology and cgroup layout, placing the job, creating and removing its
//! cgroups, and the summary (with `--quiet`, nothing printed).
//!
//! `cargo bench --bench launch` prints medians of 30 runs; under
//! `cargo test` it does 3 runs of each as a smoke test.
//!
//! The headline compares like with like: crun keeps its state in /run/crun
//! (tmpfs) and never fsyncs, so corral's run directory is on tmpfs too. The
//! run directory on the disk, where the status is fsynced before the shim
//! exits, is shown beside it: that fsync waits for a journal commit, which
//! on a disk shared with other writers costs anywhere from half a
//! millisecond to several.
//!
//! crun 1.8 refuses this machine's hybrid cgroup layout while the
//! controller-less cgroup2 tree is mounted, so the benchmark moves itself
//! into a private mount namespace without that mount; every contender runs
//! in it. `corral run` is also timed before the move, on the hybrid layout
//! it normally uses (freezing and killing through the v2 tree, one more
//! cgroup per run).

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corral::container::ContainerConfig;
use corral::vocab::Namespace;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Median, 10th and 90th percentile.
struct Summary {
    median: Duration,
    p10: Duration,
    p90: Duration,
}

fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Summary { median: at(0.5), p10: at(0.1), p90: at(0.9) }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn row(label: &str, s: &Summary) {
    println!("  {label:<48} {:7.2} {:7.2} {:7.2}", ms(s.median), ms(s.p10), ms(s.p90));
}

fn corral_config(rootfs: &Path, run_dir: &Path, run: &str) -> ContainerConfig {
    let mut cfg = ContainerConfig::new("bench", run, run_dir, &["/bin/true"]);
    cfg.namespaces =
        [Namespace::Pid, Namespace::Mount, Namespace::Uts, Namespace::Ipc, Namespace::Net].into();
    cfg.rootfs = Some(rootfs.to_owned());
    cfg.readonly_rootfs = true;
    cfg
}

/// Times `runs` launches after 3 untimed ones; `cgroups` makes each run
/// also create cgroups in six v1 hierarchies (cpu, cpuacct, cpuset with
/// its cpus and mems copied from the parent, memory, pids, freezer), join
/// them and remove them afterwards, as crun does for every container.
fn bench_corral(rootfs: &Path, runs_root: &Path, runs: usize, cgroups: bool) -> Vec<Duration> {
    let launcher = common::launcher();
    let mut samples = Vec::new();
    for i in 0..runs + 3 {
        let name = common::unique("bench");
        let mut cfg = corral_config(rootfs, &runs_root.join(&name), &name);
        let start = Instant::now();
        let groups = cgroups.then(|| common::TestCgroups::create("corral-bench"));
        if let Some(groups) = &groups {
            cfg.cgroup_procs = groups.procs_files();
        }
        let status = launcher.launch(&cfg).expect("launch").wait().expect("status");
        drop(groups);
        let elapsed = start.elapsed();
        assert!(status.exit.success(), "{status:?}");
        if i >= 3 {
            samples.push(elapsed);
        }
    }
    samples
}

/// An OCI bundle from `crun spec`, adjusted to run /bin/true without a
/// terminal in the busybox rootfs.
fn crun_bundle(dir: &Path, rootfs: &Path) -> bool {
    fs::create_dir_all(dir).unwrap();
    let spec = Command::new("crun").arg("spec").current_dir(dir).status();
    if !spec.is_ok_and(|s| s.success()) {
        return false;
    }
    let path = dir.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = serde_json::json!(["/bin/true"]);
    config["root"]["path"] = rootfs.to_str().unwrap().into();
    fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    true
}

fn bench_crun(bundle: &Path, runs: usize) -> Vec<Duration> {
    let mut samples = Vec::new();
    for i in 0..runs + 3 {
        let id = common::unique("corral-bench-crun");
        let start = Instant::now();
        let status = Command::new("crun")
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .status()
            .expect("crun");
        let elapsed = start.elapsed();
        assert!(status.success(), "crun run: {status}");
        if i >= 3 {
            samples.push(elapsed);
        }
    }
    samples
}

/// Times `runs` whole `corral run` invocations of a `/bin/true` job in the
/// busybox rootfs (read-only, the default five namespaces), after 3 untimed
/// ones, with the state directory on tmpfs.
fn bench_corral_run(rootfs: &Path, scratch: &Path, runs: usize) -> Vec<Duration> {
    fs::create_dir_all(scratch).unwrap();
    let job = scratch.join("bench-true.yaml");
    fs::write(
        &job,
        format!(
            "name: bench-true\nuser: app\ncommand: [/bin/true]\nisolation: {{rootfs: {}, readonly: true}}\n",
            rootfs.display()
        ),
    )
    .unwrap();
    let parent = common::unique("corral-bench");
    let mut samples = Vec::new();
    for i in 0..runs + 3 {
        let start = Instant::now();
        let status = Command::new(env!("CARGO_BIN_EXE_corral"))
            .arg("run")
            .arg(&job)
            .arg("--quiet")
            .arg("--state-dir")
            .arg(scratch.join("state"))
            .args(["--cgroup-parent", &parent])
            .stdin(Stdio::null())
            .status()
            .expect("corral run");
        let elapsed = start.elapsed();
        assert!(status.success(), "corral run: {status}");
        if i >= 3 {
            samples.push(elapsed);
        }
    }
    // corral run removes each job's cgroups; the parent is left for an
    // agent, and removed here.
    for entry in fs::read_dir("/sys/fs/cgroup").unwrap() {
        let _ = fs::remove_dir(entry.unwrap().path().join(&parent));
    }
    samples
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let runs = if full { 30 } else { 3 };

    let tmp = tempfile::tempdir().unwrap();
    let rootfs = common::busybox_rootfs(&tmp.path().join("rootfs"));
    let disk_runs = tmp.path().join("runs");
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();

    // Child processes only, no threads: unshare below still works.
    let corral_run_hybrid = summarize(bench_corral_run(&rootfs, &shm.path().join("hybrid"), runs));

    // Still single-threaded here, as unshare(CLONE_NEWNS) requires.
    unshare(CloneFlags::CLONE_NEWNS).expect("unshare mount namespace");
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .expect("make / private");
    let _ = umount2("/sys/fs/cgroup/unified", MntFlags::MNT_DETACH);

    let corral = summarize(bench_corral(&rootfs, shm.path(), runs, false));
    let corral_cgroups = summarize(bench_corral(&rootfs, shm.path(), runs, true));
    let corral_disk = summarize(bench_corral(&rootfs, &disk_runs, runs, false));
    let corral_run_v1 = summarize(bench_corral_run(&rootfs, &shm.path().join("v1"), runs));
    let crun = crun_bundle(&tmp.path().join("bundle"), &rootfs)
        .then(|| summarize(bench_crun(&tmp.path().join("bundle"), runs)));

    println!("launch to recorded exit status of /bin/true in pid+mount+uts+ipc+net namespaces,");
    println!("busybox rootfs mounted read-only; {runs} runs after 3 warm-up runs, in ms");
    println!("  {:<48} {:>7} {:>7} {:>7}", "", "median", "p10", "p90");
    row("corral, run dir on tmpfs", &corral);
    row("corral, + create/join/remove 6 v1 cgroups", &corral_cgroups);
    row("corral, run dir on ext4 (status fsynced)", &corral_disk);
    println!("the whole command line, process start to exit, state on tmpfs:");
    row("corral run (hybrid: 5 v1 cgroups + v2 tree)", &corral_run_hybrid);
    row("corral run (v1 view, as crun sees the host)", &corral_run_v1);
    match crun {
        Some(crun) => {
            row("crun run (state on tmpfs, 9 v1 cgroups)", &crun);
            println!("  crun / corral, medians: {:.2}x", ms(crun.median) / ms(corral.median));
            println!(
                "  crun / corral with cgroups, medians: {:.2}x",
                ms(crun.median) / ms(corral_cgroups.median)
            );
            println!(
                "  crun run / corral run (hybrid), medians: {:.2}x",
                ms(crun.median) / ms(corral_run_hybrid.median)
            );
            println!(
                "  crun run / corral run (v1 view), medians: {:.2}x",
                ms(crun.median) / ms(corral_run_v1.median)
            );
        }
        None => println!("  crun run: crun is not installed"),
    }
}
