//! Changes an administrator makes behind the agent's back, on the real
//! kernel: the agent's cgroup parent killed and removed while runs are live,
//! and a job's rootfs removed while it runs. The agent records what happened,
//! stays up, and the runs after it start (or fail to start) for a clear
//! reason.

mod agent_harness;
mod common;

use std::fs;
use std::path::Path;

use agent_harness::{job, secs, TestAgent, TREES};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// What an administrator does to get rid of a cgroup tree that still has
/// processes: `cgroup.kill` on its top (which kills every descendant), then
/// `rmdir` bottom-up in every hierarchy. Done while the agent is stopped
/// (SIGSTOP), so that it is over, as it would be for a human at a shell,
/// before the agent sees any of it.
fn kill_and_remove_parent(agent: &TestAgent) {
    let pid = Pid::from_raw(agent.pid() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    let unified = Path::new("/sys/fs/cgroup/unified").join(&agent.parent);
    fs::write(unified.join("cgroup.kill"), "1").unwrap();
    for tree in TREES {
        let dir = Path::new("/sys/fs/cgroup").join(tree).join(&agent.parent);
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for child in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
            // The killed processes leave their cgroups as they are reaped.
            common::wait_until("a job cgroup to empty", secs(20), || {
                fs::remove_dir(child.path()).is_ok() || !child.path().exists()
            });
        }
        fs::remove_dir(&dir).unwrap_or_else(|e| panic!("rmdir {}: {e}", dir.display()));
    }
    kill(pid, Signal::SIGCONT).unwrap();
}

fn parent_exists(agent: &TestAgent, tree: &str) -> bool {
    Path::new("/sys/fs/cgroup").join(tree).join(&agent.parent).exists()
}

#[test]
fn the_cgroup_parent_killed_and_removed_ends_the_live_runs_and_the_next_ones_start() {
    let mut agent = TestAgent::new("");
    agent.start();
    // Holds the one exclusive CPU; "queued" waits for it.
    agent.write_job(
        "pinned.yaml",
        &job("pinned", "sleep 60", "priority: 60\nresources: {cpus: 1}\n"),
    );
    agent.write_job("plain.yaml", &job("plain", "sleep 60", ""));
    let queued = agent.data_file("queued").display().to_string();
    agent.write_job(
        "queued.yaml",
        &job("queued", &format!("echo ran > {queued}"), "priority: 10\nresources: {cpus: 1}\n"),
    );
    for run in ["pinned-1", "plain-1"] {
        agent.wait_phase(run, "running", secs(20));
    }
    assert_eq!(agent.phase("queued-1").as_deref(), Some("pending"));

    kill_and_remove_parent(&agent);
    assert!(TREES.iter().all(|t| !parent_exists(&agent, t)), "the parent is gone");

    // Each live run ends on record, saying what happened to it.
    for run in ["pinned-1", "plain-1"] {
        agent.wait_for(&format!("{run} to end"), secs(20), || {
            matches!(agent.phase(run).as_deref(), Some("failed" | "lost"))
        });
        assert_eq!(agent.exit(run), (None, Some(9)), "{run}: the signal is kept");
        let reason = agent.transitions(run).last().unwrap().2.clone();
        assert!(reason.contains("killed by signal 9"), "{run}: {reason}");
        assert!(
            reason.contains("cgroup was removed by someone other than the agent"),
            "{run}: {reason}"
        );
    }
    // The queued run, a new job file and a recurring job all start under a
    // parent the agent made again.
    agent.wait_phase("queued-1", "succeeded", secs(20));
    assert_eq!(agent.read_data("queued"), "ran\n");
    let fresh = agent.data_file("fresh").display().to_string();
    agent.write_job("fresh.yaml", &job("fresh", &format!("echo ran > {fresh}"), ""));
    agent.wait_phase("fresh-1", "succeeded", secs(20));
    assert_eq!(agent.read_data("fresh"), "ran\n");
    let ticks = agent.data_file("ticks").display().to_string();
    agent.write_job(
        "tick.yaml",
        &job("tick", &format!("echo tick >> {ticks}"), "schedule: '* * * * * *'\n"),
    );
    agent.wait_for("a recurring run to succeed", secs(20), || {
        agent.runs_of("tick").iter().any(|r| agent.phase(r).as_deref() == Some("succeeded"))
    });
    for tree in ["memory", "cpu", "cpuset", "pids", "unified"] {
        assert!(parent_exists(&agent, tree), "parent made again in {tree}");
    }
    assert!(agent.is_running(), "the agent stayed up");
    let log = agent.log_text();
    assert!(log.contains("made the cgroup parent again"), "{log}");
}

#[test]
fn a_rootfs_removed_under_a_running_job_is_recorded_and_the_next_run_fails_to_launch() {
    let mut agent = TestAgent::new("");
    // Outside the harness's directory so that removing it is all it does.
    let images =
        tempfile::Builder::new().prefix("rootfs-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let rootfs = common::busybox_rootfs(&images.path().join("rootfs"));
    let spec = |name: &str, script: &str| {
        format!(
            "name: {name}\nuser: app\ncommand: [/bin/sh, -c, {script:?}]\n\
             isolation:\n  rootfs: {}\n",
            rootfs.display()
        )
    };
    agent.start();
    // Beats until `sleep`, a binary it runs from the rootfs each time,
    // cannot be run any more.
    let beating = "while sleep 0.1; do echo beat; done; echo sleep failed >&2; exit 3";
    agent.write_job("boxed.yaml", &spec("boxed", beating));
    agent.wait_phase("boxed-1", "running", secs(20));
    let run_dir = |run: &str| {
        let dir = agent.state.join("runs").join(run);
        fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path()
    };
    let log = |run: &str, name: &str| fs::read_to_string(run_dir(run).join(name)).unwrap();
    agent.wait_for("a first beat", secs(10), || log("boxed-1", "stdout.log").contains("beat"));
    fs::remove_dir_all(&rootfs).unwrap();
    assert!(!rootfs.exists());

    // The job's mount namespace holds the root it started in, but its
    // files are gone: the shell already running goes on, the next `sleep`
    // cannot be executed, and the job ends as it says it does.
    agent.wait_phase("boxed-1", "failed", secs(20));
    assert_eq!(agent.exit("boxed-1"), (Some(3), None));
    let reason = agent.transitions("boxed-1").last().unwrap().2.clone();
    assert_eq!(reason, "failed: exit code 3");
    assert!(log("boxed-1", "stderr.log").ends_with("sleep failed\n"));

    // A new version of the job: its run cannot start, and says why.
    agent.write_job("boxed.yaml", &spec("boxed", "echo again"));
    agent.wait_phase("boxed-2", "failed", secs(20));
    let reason = agent.transitions("boxed-2").last().unwrap().2.clone();
    assert!(reason.starts_with("failed: launch failed: job boxed, run boxed-2:"), "{reason}");
    assert!(
        reason
            .contains(&format!("rootfs {} does not exist or is not a directory", rootfs.display())),
        "{reason}"
    );
    assert_eq!(agent.exit("boxed-2"), (None, None), "it never ran");
    assert!(agent.is_running(), "the agent stayed up");

    // And the agent goes on running other jobs.
    agent.write_job("other.yaml", &job("other", "true", ""));
    agent.wait_phase("other-1", "succeeded", secs(20));
}
