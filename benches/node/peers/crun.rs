//! crun as a peer: a shell loop of `crun run` over one bundle.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::{in_private_mount_ns, Throughput};
use crate::Bench;

/// An OCI bundle under the scratch directory from `crun spec` (crun's
/// default spec: pid, network, ipc, uts and mount namespaces, read-only
/// root), running `args` without a terminal in the bench's busybox rootfs —
/// the same container setup as corral's jobs.
pub fn bundle(bench: &Bench, name: &str, args: &[&str]) -> Result<PathBuf, String> {
    let crun = bench.peers.crun.path()?;
    let dir = bench.scratch.path().join(name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let config = dir.join("config.json");
    // `crun spec` refuses to overwrite an existing config.
    let _ = std::fs::remove_file(&config);
    let out = Command::new(crun)
        .arg("spec")
        .current_dir(&dir)
        .output()
        .map_err(|e| format!("crun spec: {e}"))?;
    if !out.status.success() {
        return Err(format!("crun spec: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let read = std::fs::read(&config).map_err(|e| format!("read {}: {e}", config.display()))?;
    let mut spec: serde_json::Value =
        serde_json::from_slice(&read).map_err(|e| format!("{}: {e}", config.display()))?;
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(args);
    spec["root"]["path"] = bench.rootfs.to_string_lossy().into_owned().into();
    let text = serde_json::to_vec_pretty(&spec).map_err(|e| e.to_string())?;
    std::fs::write(&config, text).map_err(|e| format!("write {}: {e}", config.display()))?;
    Ok(dir)
}

/// `jobs` runs of `/bin/true` in the same container setup as corral's jobs
/// (see `throughput.rs`), one after another from a shell loop.
///
/// The clock runs from spawning the loop to its exit: one `unshare` and one
/// `umount` more than the runs themselves, well under a millisecond against
/// the tens of milliseconds each `crun run` takes.
pub fn loop_throughput(bench: &Bench, jobs: usize) -> Result<Throughput, String> {
    let crun = bench.peers.crun.path()?.to_owned();
    let bundle = bundle(bench, "crun-true-bundle", &["/bin/true"])?;
    // A unique id per run: `crun run` deletes its container on exit, so a
    // leftover only shows up if a run failed, and then it names this bench.
    let prefix = format!("corral-bench-crun-{}", std::process::id());
    let script = r#"
        crun=$1 bundle=$2 prefix=$3 jobs=$4
        i=0
        while [ "$i" -lt "$jobs" ]; do
            "$crun" run --bundle "$bundle" "$prefix-$i" </dev/null || {
                echo "crun run $prefix-$i failed" >&2; exit 1; }
            i=$((i + 1))
        done
    "#;
    let start = Instant::now();
    let out = in_private_mount_ns(script)
        .args([crun.as_os_str(), bundle.as_os_str()])
        .arg(&prefix)
        .arg(jobs.to_string())
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("unshare: {e}"))?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        return Err(format!(
            "crun loop: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(Throughput { jobs, elapsed })
}

/// Removes the containers named `ids` (killing what is left in them) and
/// their cgroups, from a private mount namespace as crun needs here.
pub fn delete_all(crun: &Path, ids: &[String]) -> Result<(), String> {
    if ids.is_empty() {
        return Ok(());
    }
    let script = r#"
        crun=$1; shift
        failed=0
        for id in "$@"; do "$crun" delete -f "$id" || failed=1; done
        exit $failed
    "#;
    let out = in_private_mount_ns(script)
        .arg(crun)
        .args(ids)
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("unshare: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("crun delete -f: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}
