//! The agent against a failing state directory, on the real kernel: a full
//! disk (a small tmpfs mounted as the state directory and filled), the
//! database deleted while the agent runs, and a database lost while runs
//! are live. Nothing may be lost, and nothing may run twice.

mod agent_harness;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent_harness::{job, secs, TestAgent};

/// A tmpfs mounted on a directory for as long as it lives.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={size},mode=0755").as_str()),
        )
        .unwrap();
        Tmpfs { dir: dir.to_owned() }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a shim of a run killed by the harness may still be going.
        let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Fills the filesystem of `dir` to the last byte with one file; returns it.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // The last partial block too.
    while file.write(&[0u8; 512]).is_ok_and(|n| n > 0) {}
    path
}

/// A job that records its start, waits for `<name>.go` in the data
/// directory, then exits with `code`.
fn gated(agent: &TestAgent, name: &str, code: i32) -> String {
    let count = agent.data_file(&format!("{name}.count")).display().to_string();
    let go = agent.data_file(&format!("{name}.go")).display().to_string();
    format!("echo start >> {count}; while [ ! -e {go} ]; do sleep 0.05; done; exit {code}")
}

fn open_gate(agent: &TestAgent, name: &str) {
    fs::write(agent.data_file(&format!("{name}.go")), "").unwrap();
}

/// `/readyz`; status 0 while nothing listens (the agent is starting).
fn readyz(agent: &TestAgent) -> (u16, String) {
    if std::net::TcpStream::connect(agent.listen).is_err() {
        return (0, String::new());
    }
    let (status, _, body) = agent.http_get("/readyz", None);
    (status, body)
}

fn scrape_value(agent: &TestAgent, name: &str) -> Option<String> {
    let (_, _, body) = agent.http_get("/metrics", None);
    body.lines().find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_owned))
}

/// Starts another agent on the same configuration and returns how it
/// exited and what it printed; one still running after a while is killed
/// and counts as having started.
fn start_bounded(agent: &TestAgent) -> (std::process::ExitStatus, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["agent", "--config"])
        .arg(&agent.config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + secs(15);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the agent started instead of refusing:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Holds for `d`, checking `ok` all along.
fn for_a_while(d: Duration, mut ok: impl FnMut()) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        ok();
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An agent whose state directory is a 16 MiB tmpfs, running `work`, a
/// gated job that exits 0 and would be restarted after a failure.
fn running_on_a_small_disk() -> (TestAgent, Tmpfs) {
    let mut agent = TestAgent::new("");
    let disk = Tmpfs::mount(&agent.state, "16m");
    agent.start();
    agent.write_job(
        "work.yaml",
        &job("work", &gated(&agent, "work", 0), "restart: {on: failure}\n"),
    );
    agent.wait_phase("work-1", "running", secs(20));
    (agent, disk)
}

#[test]
fn full_state_disk_holds_the_agent_and_records_the_end_once_space_returns() {
    let (mut agent, _disk) = running_on_a_small_disk();
    agent.wait_for("ready", secs(10), || readyz(&agent).0 == 200);

    let filler = fill(&agent.state);
    // New work needs a record: the agent finds the disk full.
    agent.write_job("late.yaml", &job("late", &gated(&agent, "late", 0), ""));
    agent.wait_for("/readyz to say the store cannot be written", secs(20), || {
        readyz(&agent).0 == 503
    });
    let (_, body) = readyz(&agent);
    assert!(body.contains("cannot be written") && body.contains("full"), "{body}");
    assert_eq!(scrape_value(&agent, "corral_store_writable").as_deref(), Some("0"));

    // The running job ends meanwhile, with success; its shim cannot write
    // the status either, and must keep it.
    open_gate(&agent, "work");
    open_gate(&agent, "late");
    for_a_while(Duration::from_secs(3), || {
        assert!(agent.is_running(), "the agent exited:\n{}", agent.log_text());
        assert_eq!(agent.read_data("late.count"), "", "no new work while the disk is full");
    });
    assert_eq!(readyz(&agent).0, 503);

    fs::remove_file(&filler).unwrap();
    agent.wait_phase("work-1", "succeeded", secs(30));
    assert_eq!(agent.exit("work-1"), (Some(0), None), "the exit status the job had");
    agent.wait_phase("late-1", "succeeded", secs(30));
    agent.wait_for("ready again", secs(10), || readyz(&agent).0 == 200);
    assert_eq!(scrape_value(&agent, "corral_store_writable").as_deref(), Some("1"));
    assert_eq!(agent.read_data("work.count"), "start\n", "work started exactly once");
    assert_eq!(agent.read_data("late.count"), "start\n", "late started exactly once");
    assert_eq!(agent.runs_of("work"), ["work-1"]);
    let log = agent.log_text();
    assert!(log.contains("Holding: no new work is taken"), "{log}");
    assert!(log.contains("takes writes again"), "{log}");
    assert!(agent.is_running());
    agent.stop();
}

#[test]
fn an_agent_started_on_a_full_disk_refuses_to_take_over_and_loses_nothing() {
    let (mut agent, _disk) = running_on_a_small_disk();
    agent.kill9();

    // The job ends while no agent runs and the disk is full: its shim
    // keeps the status.
    let filler = fill(&agent.state);
    open_gate(&agent, "work");
    agent.wait_for("work-1's processes to end", secs(20), || {
        fs::read_to_string(agent.cgroup("memory", "work-1").join("cgroup.procs"))
            .map_or(true, |procs| procs.trim().is_empty())
    });
    let (status, stderr) = start_bounded(&agent);
    assert!(!status.success());
    assert!(
        stderr.contains("cannot take over the runs of the previous agent")
            && stderr.contains("database or disk is full")
            && stderr.contains("Nothing was changed"),
        "{stderr}"
    );
    assert_eq!(agent.phase("work-1").as_deref(), Some("running"), "nothing recorded");

    fs::remove_file(&filler).unwrap();
    agent.start();
    agent.wait_phase("work-1", "succeeded", secs(30));
    assert_eq!(agent.exit("work-1"), (Some(0), None), "the status the shim kept");
    assert_eq!(agent.read_data("work.count"), "start\n", "work started exactly once");
    agent.stop();
}

#[test]
fn a_database_deleted_under_the_agent_stops_new_work_and_is_not_recreated() {
    let mut agent = TestAgent::new("");
    agent.start();
    agent.write_job("work.yaml", &job("work", &gated(&agent, "work", 0), ""));
    agent.wait_phase("work-1", "running", secs(20));
    agent.wait_for("ready", secs(10), || readyz(&agent).0 == 200);

    for name in ["corral.db", "corral.db-wal", "corral.db-shm"] {
        let _ = fs::remove_file(agent.state.join(name));
    }
    // Noticed by itself (every 10 s), before anything is written.
    agent.wait_for("/readyz to say the database is gone", secs(20), || readyz(&agent).0 == 503);
    let (_, body) = readyz(&agent);
    assert!(body.contains("removed or replaced") && body.contains("the file is gone"), "{body}");
    agent.write_job("late.yaml", &job("late", &gated(&agent, "late", 0), ""));
    open_gate(&agent, "work");
    for_a_while(Duration::from_secs(2), || {
        assert!(agent.is_running(), "the agent exited:\n{}", agent.log_text());
        assert_eq!(agent.read_data("late.count"), "", "no new work without a database");
    });
    assert!(!agent.state.join("corral.db").exists(), "no fresh, empty database");
    let log = agent.log_text();
    assert!(log.contains("was removed or replaced while the agent ran"), "{log}");

    // A restart does not start afresh either: the run directories show
    // what ran.
    agent.stop();
    let (status, stderr) = start_bounded(&agent);
    assert!(!status.success());
    assert!(stderr.contains("missing or empty") && stderr.contains("work-1"), "{stderr}");
    assert!(stderr.contains("Lost state database"), "{stderr}");
    assert!(!agent.state.join("corral.db").exists(), "the refusal creates nothing");
}

/// Runs `lose` on the state directory of an agent killed with a finished
/// one-shot run and a live one on record, then starts another agent.
fn lost_store_is_refused(lose: impl FnOnce(&Path)) {
    let mut agent = TestAgent::new("");
    agent.start();
    let done = agent.data_file("done.count").display().to_string();
    agent.write_job("done.yaml", &job("done", &format!("echo start >> {done}"), ""));
    agent.write_job("live.yaml", &job("live", &gated(&agent, "live", 0), ""));
    agent.wait_phase("done-1", "succeeded", secs(20));
    agent.wait_phase("live-1", "running", secs(20));
    agent.kill9();

    lose(&agent.state);
    let (status, stderr) = start_bounded(&agent);
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("missing or empty"), "{stderr}");
    assert!(stderr.contains("2 run directories (done-1, live-1)"), "{stderr}");
    assert!(stderr.contains("1 live job cgroups (live-1)"), "{stderr}");
    assert!(stderr.contains("Lost state database"), "{stderr}");
    // Nothing was killed, nothing run again.
    assert!(agent.job_cgroups().contains(&"live-1".to_owned()));
    assert_eq!(agent.read_data("live.count"), "start\n");
    // The refusing agent has exited (start_bounded waited for it): nothing
    // is left that could start done-1 again.
    assert_eq!(agent.read_data("done.count"), "start\n");

    // The documented way on: let the live run end, drop the job files of
    // what must not run again, move the run directories aside.
    open_gate(&agent, "live");
    agent.wait_for("live-1's processes to end", secs(20), || {
        fs::read_to_string(agent.cgroup("memory", "live-1").join("cgroup.procs"))
            .map_or(true, |procs| procs.trim().is_empty())
    });
    agent.remove_job("done.yaml");
    agent.remove_job("live.yaml");
    fs::rename(agent.state.join("runs"), agent.state.join("runs.lost")).unwrap();
    agent.start();
    agent.wait_for("ready", secs(20), || readyz(&agent).0 == 200);
    agent.wait_for("the stray cgroup removed", secs(10), || agent.job_cgroups().is_empty());
    assert_eq!(agent.read_data("done.count"), "start\n");
    assert_eq!(agent.count_runs(), 0);
}

#[test]
fn a_deleted_database_with_live_runs_is_refused_and_nothing_runs_twice() {
    lost_store_is_refused(|state| {
        for name in ["corral.db", "corral.db-wal", "corral.db-shm"] {
            let _ = fs::remove_file(state.join(name));
        }
    });
}

#[test]
fn an_emptied_database_with_live_runs_is_refused_and_nothing_runs_twice() {
    lost_store_is_refused(|state| {
        fs::File::create(state.join("corral.db")).unwrap();
        for name in ["corral.db-wal", "corral.db-shm"] {
            let _ = fs::remove_file(state.join(name));
        }
    });
}

/// `corral_run_frozen` of `run`, from a scrape.
fn run_frozen(agent: &TestAgent, run: &str) -> Option<String> {
    let (_, _, body) = agent.http_get("/metrics", None);
    body.lines()
        .filter(|l| l.starts_with("corral_run_frozen{") && l.contains(&format!("run=\"{run}\"")))
        .find_map(|l| l.rsplit(' ').next().map(str::to_owned))
}

#[test]
fn a_job_frozen_by_hand_through_the_kernel_file_is_reported_and_left_alone() {
    let mut agent = TestAgent::new("");
    agent.start();
    agent.write_job("work.yaml", &job("work", &gated(&agent, "work", 0), ""));
    agent.wait_phase("work-1", "running", secs(20));
    agent.wait_for("the run in the scrape", secs(10), || run_frozen(&agent, "work-1").is_some());
    assert_eq!(run_frozen(&agent, "work-1").as_deref(), Some("0"));

    // An administrator freezes the job behind the agent's back.
    let freeze = agent.cgroup("unified", "work-1").join("cgroup.freeze");
    fs::write(&freeze, "1").unwrap();
    agent.wait_for("the kernel to freeze it", secs(10), || agent.frozen("work-1"));
    agent.wait_for("the scrape to report it frozen", secs(10), || {
        run_frozen(&agent, "work-1").as_deref() == Some("1")
    });
    // The agent does not fight the administrator: the run stays as it was
    // recorded, frozen until thawed the same way.
    open_gate(&agent, "work");
    for_a_while(Duration::from_secs(1), || {
        assert_eq!(agent.phase("work-1").as_deref(), Some("running"));
        assert!(agent.frozen("work-1"), "thawed by the agent");
    });
    fs::write(&freeze, "0").unwrap();
    agent.wait_phase("work-1", "succeeded", secs(20));
    assert_eq!(agent.read_data("work.count"), "start\n");
    agent.stop();
}
