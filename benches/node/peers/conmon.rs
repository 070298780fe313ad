//! conmon as a peer: the per-container monitor that CRI-O and Podman keep
//! beside every container.
//!
//! Containers start the way Podman starts them: `conmon` with crun as its
//! runtime double-forks a monitor that runs `crun create` and stays as the
//! container's parent (holding its exit status, logs and attach socket);
//! then `crun start`. crun itself leaves no process behind.
//!
//! Everything runs under one shell that is pid 1 of a pid namespace of its
//! own (and in the private mount namespace crun needs on this hybrid host,
//! see `in_private_mount_ns`): the daemonized monitors are reparented to
//! that shell rather than to the host's init, they are easy to tell from
//! any other conmon on the machine, and if the bench dies the kernel kills
//! them all with the namespace (`unshare --kill-child`).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use super::{crun, in_private_mount_ns};
use crate::table::Figure;
use crate::Bench;

/// Starts every container, prints `started`, waits for a line on stdin
/// (the bench measures meanwhile), then deletes every container.
const SCRIPT: &str = r#"
    conmon=$1 crun=$2 bundle=$3 dir=$4 prefix=$5 runs=$6
    mkdir -p "$dir/exits" "$dir/sockets" "$dir/pids" "$dir/logs" || exit 1
    i=0
    while [ "$i" -lt "$runs" ]; do
        id=$prefix-$i
        "$conmon" --api-version 1 -c "$id" -u "$id" -n "$id" -r "$crun" \
            -b "$bundle" -p "$dir/pids/$id" -l "k8s-file:$dir/logs/$id" \
            --exit-dir "$dir/exits" --persist-dir "$dir/persist/$id" \
            --socket-dir-path "$dir/sockets" --log-level error \
            || { echo "conmon for $id failed" >&2; exit 1; }
        # conmon returns as soon as it has forked the monitor, which then
        # runs `crun create`; Podman learns the outcome through a sync
        # pipe, a shell waits for the pid file crun writes on create.
        n=0
        while [ ! -s "$dir/pids/$id" ]; do
            n=$((n + 1))
            if [ "$n" -gt 1000 ]; then
                echo "$id: no container 10 s after conmon started" >&2; exit 1
            fi
            sleep 0.01
        done
        "$crun" start "$id" || { echo "crun start $id failed" >&2; exit 1; }
        i=$((i + 1))
    done
    echo started
    read -r _
    i=0 failed=0
    while [ "$i" -lt "$runs" ]; do
        "$crun" delete -f "$prefix-$i" || failed=1
        i=$((i + 1))
    done
    exit $failed
"#;

/// PSS per container of the conmon processes supervising `runs` sleeping
/// containers (started through conmon with crun as the runtime).
pub fn footprint(bench: &Bench, runs: usize) -> Result<Figure, String> {
    if runs == 0 {
        return Err("no containers to measure".into());
    }
    let conmon = bench.peers.conmon.path()?.to_owned();
    let crun = bench.peers.crun.path()?.to_owned();
    let bundle = crun::bundle(bench, "conmon-sleep-bundle", &["/bin/sleep", "3600"])?;
    // A fresh name and directory per call: a pid file left by an earlier
    // call would pass for a container created by this one.
    let prefix = crate::common::unique("corral-bench-conmon");
    // (Short: the attach socket's path, under it, must fit a sun_path.)
    let call = prefix.rsplit('-').next().unwrap_or_default();
    let dir = bench.scratch.path().join(format!("conmon-{call}"));
    let ids: Vec<String> = (0..runs).map(|i| format!("{prefix}-{i}")).collect();

    let inner = in_private_mount_ns(SCRIPT);
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--kill-child", "--"])
        .arg(inner.get_program())
        .args(inner.get_args())
        .args([conmon.as_os_str(), crun.as_os_str(), bundle.as_os_str(), dir.as_os_str()])
        .arg(&prefix)
        .arg(runs.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let child = cmd.spawn().map_err(|e| format!("unshare: {e}"))?;
    let mut group = Group { child, stdin: None, crun: crun.clone(), ids, done: false };
    group.stdin = group.child.stdin.take();

    let mut stdout = BufReader::new(group.child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).map_err(|e| format!("reading the conmon shell: {e}"))?;
    if line.trim() != "started" {
        let status = group.child.wait().map_err(|e| e.to_string())?;
        return Err(format!("starting {runs} containers through conmon failed ({status})"));
    }

    let ns = std::fs::read_link(format!("/proc/{}/ns/pid_for_children", group.child.id()))
        .map_err(|e| format!("pid namespace of the conmon shell: {e}"))?;
    let monitors = processes_in(&ns, "conmon");
    let leftover_runtimes = processes_in(&ns, "crun").len();
    if monitors.len() != runs {
        return Err(format!("{} conmon processes for {runs} containers", monitors.len()));
    }
    let mut pss_kib = 0u64;
    for pid in &monitors {
        pss_kib += pss_kib_of(*pid)?;
    }
    eprintln!(
        "conmon: {runs} containers, {} monitors, {leftover_runtimes} crun processes left, \
         PSS {pss_kib} KiB in all",
        monitors.len()
    );
    group.finish()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Figure::mib(pss_kib as f64 * 1024.0 / runs as f64))
}

/// The shell and its containers: asked to delete them when the bench is
/// done, killed (with everything in its pid namespace) if the bench fails
/// first, and the containers' state and cgroups removed then too.
struct Group {
    child: Child,
    stdin: Option<ChildStdin>,
    crun: std::path::PathBuf,
    ids: Vec<String>,
    done: bool,
}

impl Group {
    fn finish(&mut self) -> Result<(), String> {
        let mut stdin = self.stdin.take().expect("stdin kept until finish");
        writeln!(stdin, "stop").map_err(|e| format!("telling the conmon shell to stop: {e}"))?;
        drop(stdin);
        let status = self.child.wait().map_err(|e| e.to_string())?;
        self.done = true;
        if status.success() {
            Ok(())
        } else {
            Err(format!("deleting the conmon containers failed ({status})"))
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Killing `unshare` kills the namespace's pid 1 (--kill-child), and
        // with it every monitor and container; crun's state and the
        // containers' cgroups are still there.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Err(e) = crun::delete_all(&self.crun, &self.ids) {
            eprintln!("conmon cleanup: {e}");
        }
    }
}

/// Processes named `comm` in the pid namespace `ns` (a `pid:[inode]` link).
fn processes_in(ns: &Path, comm: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/pid")).is_ok_and(|n| n == ns)
                && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim_end() == comm)
        })
        .collect()
}

/// Proportional set size of `pid` in KiB.
pub fn pss_kib_of(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("{path}: no Pss line"))
}
