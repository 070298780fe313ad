//! crun and runc as peers for launch latency: an OCI bundle for `/bin/true`
//! in the shared busybox rootfs, and the time of `crun run` / `runc run` of
//! it, process start to exit.
//!
//! The bundle is the runtime's own default spec (`crun spec`, `runc spec`:
//! pid, mount, uts, ipc and net namespaces, a read-only root, the usual
//! /proc, /dev, /dev/pts, /dev/shm, /dev/mqueue and /sys mounts, masked and
//! read-only paths) with only the command, the root path and `terminal`
//! changed. Each run creates and removes the container's cgroups, in every
//! v1 hierarchy it finds, and keeps its state in the runtime's state
//! directory (`/run/crun`, `/run/runc`).
//!
//! crun 1.8 refuses this machine's hybrid layout while the controller-less
//! cgroup2 tree is mounted ("drop all controllers from cgroupv2"), so the
//! runs are timed in a child process of their own: a re-execution of this
//! benchmark ([`child_main`]) that moves into a private mount namespace,
//! unmounts `/sys/fs/cgroup/unified` there, and starts the runtime for
//! each sample with a clock around the spawn and the wait, as the
//! benchmark times corral. The benchmark's own process keeps the real
//! layout for the other sections (and may have threads, which a
//! namespace switch of the whole process would not allow).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The first argument that makes this benchmark's binary the timing child.
const CHILD_ARG: &str = "__time-oci-runtime";

/// How the timing child sees the cgroup layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The host's layout, unchanged (runc works on it).
    Host,
    /// v1 only: the cgroup2 tree unmounted in a private mount namespace
    /// (what crun 1.8 needs here).
    V1Only,
}

/// Writes an OCI bundle for `/bin/true` in `rootfs` into `dir`, from
/// `runtime spec`; returns the bundle directory.
pub fn bundle(runtime: &Path, dir: &Path, rootfs: &Path) -> Result<PathBuf, String> {
    fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let config = dir.join("config.json");
    // `spec` refuses to overwrite an existing file.
    let _ = fs::remove_file(&config);
    let out = Command::new(runtime)
        .arg("spec")
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{} spec: {e}", runtime.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} spec: {}: {}",
            runtime.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = fs::read(&config).map_err(|e| format!("read {}: {e}", config.display()))?;
    let mut spec: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", config.display()))?;
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["/bin/true"]);
    spec["root"]["path"] = rootfs.to_str().ok_or("rootfs path is not UTF-8")?.into();
    spec["root"]["readonly"] = true.into();
    fs::write(&config, serde_json::to_vec_pretty(&spec).expect("JSON value serializes"))
        .map_err(|e| format!("write {}: {e}", config.display()))?;
    Ok(dir.to_owned())
}

/// Times `samples` runs of `runtime run --bundle BUNDLE ID` (after
/// `warmup` untimed ones) in a child process seeing `layout`; each run has
/// a fresh container id.
pub fn time_runs(
    runtime: &Path,
    bundle: &Path,
    layout: Layout,
    warmup: usize,
    samples: usize,
) -> Result<Vec<Duration>, String> {
    let layout_arg = match layout {
        Layout::Host => "host",
        Layout::V1Only => "v1",
    };
    let out = Command::new("/proc/self/exe")
        .arg(CHILD_ARG)
        .arg(runtime)
        .arg(bundle)
        .arg(layout_arg)
        .arg(warmup.to_string())
        .arg(samples.to_string())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("start the timing child: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{} run failed: {}",
            runtime.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let times: Result<Vec<Duration>, String> = text
        .lines()
        .map(|l| {
            l.parse::<u64>()
                .map(Duration::from_nanos)
                .map_err(|_| format!("the timing child printed {l:?}"))
        })
        .collect();
    let times = times?;
    if times.len() != samples {
        return Err(format!("the timing child printed {} samples of {samples}", times.len()));
    }
    Ok(times)
}

/// The timing child: when this binary was started by [`time_runs`], does
/// the timing and returns the exit code; `None` otherwise. Called first
/// thing in `main`, while the process is still single-threaded (as
/// `unshare(CLONE_NEWNS)` of the whole process needs).
pub fn child_main() -> Option<i32> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some(CHILD_ARG) {
        return None;
    }
    Some(match child(&args[2..]) {
        Ok(()) => 0,
        Err(why) => {
            eprintln!("{why}");
            1
        }
    })
}

fn child(args: &[String]) -> Result<(), String> {
    use std::io::Write;
    let [runtime, bundle, layout, warmup, samples] = args else {
        return Err(format!("{CHILD_ARG}: expected 5 arguments, got {args:?}"));
    };
    let count = |s: &str| s.parse::<usize>().map_err(|_| format!("not a count: {s:?}"));
    let (warmup, samples) = (count(warmup)?, count(samples)?);
    if layout == "v1" {
        use nix::mount::{mount, umount2, MntFlags, MsFlags};
        use nix::sched::{unshare, CloneFlags};
        unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
        // Private first, so that the unmount below stays in this namespace.
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
            .map_err(|e| format!("make / private: {e}"))?;
        match umount2("/sys/fs/cgroup/unified", MntFlags::MNT_DETACH) {
            // EINVAL: not a mount point (a v1-only or pure-v2 host).
            Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(format!("umount /sys/fs/cgroup/unified: {e}")),
        }
    }
    let mut out = std::io::stdout().lock();
    for i in 0..warmup + samples {
        let id = format!("corral-bench-oci-{}-{i}", std::process::id());
        let start = Instant::now();
        // stderr is the parent's pipe: a failure's message reaches it.
        let status = Command::new(runtime)
            .args(["run", "--bundle", bundle, &id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("{runtime} run: {e}"))?;
        let elapsed = start.elapsed();
        if !status.success() {
            return Err(format!("{runtime} run {id}: {status}"));
        }
        if i >= warmup {
            writeln!(out, "{}", elapsed.as_nanos()).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
