//! A real `corral agent` process on a temporary jobs directory, state
//! directory and cgroup parent (`corral-test-<pid>-<n>`), driven by writing
//! files and observed through the kernel and the store (read-only). Every
//! cgroup under the parent is killed and removed when the harness is
//! dropped, also after a failed assertion.

#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

// A test binary with both this harness and `common` has the helper twice,
// which is harmless.
#[allow(clippy::duplicate_mod)]
#[path = "../common/wait.rs"]
mod wait;
pub use wait::{secs, wait_until};

/// Every cgroup tree on the test machine (hybrid layout).
pub const TREES: &[&str] =
    &["cpuset", "memory", "pids", "blkio", "freezer", "unified", "cpu", "cpuacct", "devices"];

pub struct TestAgent {
    /// Holds jobs/, state/ and the configuration.
    pub root: tempfile::TempDir,
    pub jobs: PathBuf,
    pub state: PathBuf,
    /// World-writable scratch for the jobs (which run under uids of their own
    /// from the dynamic_users range, or as `nobody` where a test says so).
    pub data: PathBuf,
    /// Removes `data` on drop.
    data_dir: tempfile::TempDir,
    pub config: PathBuf,
    pub parent: String,
    pub log: PathBuf,
    /// Where its HTTP endpoint listens: a port that was free when the
    /// harness was made, so agents of tests running at once do not collide.
    pub listen: std::net::SocketAddr,
    child: Option<Child>,
}

impl TestAgent {
    /// A harness with `extra` appended to its agent configuration. Not
    /// started yet.
    pub fn new(extra: &str) -> TestAgent {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let parent =
            format!("corral-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let root = tempfile::Builder::new()
            .prefix("agent-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let jobs = root.path().join("jobs");
        let state = root.path().join("state");
        fs::create_dir(&jobs).unwrap();
        // Jobs get a private /tmp, and the target directory may be under
        // /tmp (a checkout there): the files jobs share with the test live
        // in a directory of their own under /var/tmp, wherever the checkout is.
        let data_dir = tempfile::Builder::new()
            .prefix(&format!("{parent}-data-"))
            .tempdir_in("/var/tmp")
            .unwrap();
        let data = data_dir.path().to_path_buf();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o777)).unwrap();
        let config = root.path().join("agent.yaml");
        let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        fs::write(
            &config,
            format!(
                "jobs_dir: jobs\nstate_dir: state\nsocket: state/corral.sock\ncgroup_parent: {parent}\n\
                 listen: {listen}\nstop_grace: 2s\nmin_runtime_before_preemption: 0s\n{extra}"
            ),
        )
        .unwrap();
        let log = root.path().join("agent.log");
        TestAgent { jobs, state, data, data_dir, config, parent, log, listen, child: None, root }
    }

    pub fn start(&mut self) {
        self.start_with(|_| {});
    }

    /// Starts the agent with `adjust` applied to its command first (to
    /// start it with given resource limits, say).
    pub fn start_with(&mut self, adjust: impl FnOnce(&mut Command)) {
        assert!(self.child.is_none(), "already started");
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_corral"));
        command
            .args(["agent", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info,corral=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        adjust(&mut command);
        self.child = Some(command.spawn().unwrap());
    }

    /// An agent on `extra` configuration, started, with its control socket
    /// there for `corral` commands.
    pub fn started(extra: &str) -> TestAgent {
        let mut agent = TestAgent::new(extra);
        agent.start();
        let socket = agent.state.join("corral.sock");
        agent.wait_for("the control socket", secs(20), || socket.exists());
        agent
    }

    /// Runs `corral ARGS --config <this agent's configuration>`.
    pub fn corral(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap()
    }

    /// [`TestAgent::corral`], which must succeed: its stdout.
    pub fn corral_ok(&self, args: &[&str]) -> String {
        let out = self.corral(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "corral {args:?}: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("started").id()
    }

    /// Starts a second agent process on the same configuration and returns
    /// its exit status and what it printed.
    pub fn start_another(&self) -> (std::process::ExitStatus, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["agent", "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// SIGTERM, and wait for the agent to exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("started");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        // Left in place until it has exited, so that a failed wait still
        // kills it on drop.
        let mut status = None;
        wait_until("the agent to exit", Duration::from_secs(30), || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        self.child = None;
        status.unwrap()
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("started");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// `GET path` from the agent's endpoint: status, content type, body.
    pub fn http_get(&self, path: &str, accept: Option<&str>) -> (u16, String, String) {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(self.listen).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: corral\r\n{accept}Connection: close\r\n\r\n")
            .unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let content_type = head
            .lines()
            .find_map(|l| l.strip_prefix("content-type: "))
            .unwrap_or_default()
            .to_string();
        (status, content_type, body.to_string())
    }

    /// Writes a job file as deploy tools do: a hidden temporary, then a rename.
    pub fn write_job(&self, file: &str, text: &str) {
        let tmp = self.jobs.join(format!(".{file}.tmp"));
        let mut f = fs::File::create(&tmp).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f.sync_all().unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
        fs::rename(&tmp, self.jobs.join(file)).unwrap();
    }

    pub fn remove_job(&self, file: &str) {
        fs::remove_file(self.jobs.join(file)).unwrap();
    }

    pub fn data_file(&self, name: &str) -> PathBuf {
        self.data.join(name)
    }

    pub fn read_data(&self, name: &str) -> String {
        fs::read_to_string(self.data_file(name)).unwrap_or_default()
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The store, read-only.
    pub fn db(&self) -> Option<Connection> {
        let path = self.state.join("corral.db");
        if !path.exists() {
            return None;
        }
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).ok()
    }

    /// The run's phase, if the run exists.
    pub fn phase(&self, run: &str) -> Option<String> {
        let db = self.db()?;
        db.query_row("SELECT phase FROM runs WHERE id = ?1", [run], |r| r.get(0)).optional().ok()?
    }

    /// The run's state as JSON text.
    pub fn state_json(&self, run: &str) -> String {
        let db = self.db().unwrap();
        db.query_row("SELECT state FROM runs WHERE id = ?1", [run], |r| r.get(0)).unwrap()
    }

    /// `(exit code, exit signal)` of the run's latest attempt.
    pub fn exit(&self, run: &str) -> (Option<i64>, Option<i64>) {
        let db = self.db().unwrap();
        db.query_row("SELECT exit_code, exit_signal FROM runs WHERE id = ?1", [run], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    }

    /// Kinds of the run's recorded events, in order.
    pub fn events(&self, run: &str) -> Vec<String> {
        let db = self.db().unwrap();
        let mut stmt =
            db.prepare("SELECT kind FROM run_events WHERE run_id = ?1 ORDER BY n").unwrap();
        stmt.query_map([run], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }

    /// `(to_phase, at, reason)` of the run's transitions, in order.
    pub fn transitions(&self, run: &str) -> Vec<(String, i64, String)> {
        let db = self.db().unwrap();
        let mut stmt = db
            .prepare("SELECT to_phase, at, reason FROM transitions WHERE run_id = ?1 ORDER BY n")
            .unwrap();
        stmt.query_map([run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Ids of every run of `job`.
    pub fn runs_of(&self, job: &str) -> Vec<String> {
        let Some(db) = self.db() else { return Vec::new() };
        let Ok(mut stmt) = db.prepare("SELECT id FROM runs WHERE job = ?1 ORDER BY seq") else {
            return Vec::new();
        };
        stmt.query_map([job], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }

    pub fn count_runs(&self) -> usize {
        let Some(db) = self.db() else { return 0 };
        // The table is missing until the agent has created the store.
        db.query_row("SELECT COUNT(*) FROM runs", [], |r| r.get::<_, i64>(0)).unwrap_or(0) as usize
    }

    /// Waits until the run is in `phase`, failing with the agent's log.
    pub fn wait_phase(&self, run: &str, phase: &str, timeout: Duration) {
        self.wait_for(&format!("{run} to be {phase}"), timeout, || {
            self.phase(run).as_deref() == Some(phase)
        });
    }

    /// [`wait_until`], with the agent's log in the failure message.
    pub fn wait_for(&self, what: &str, timeout: Duration, done: impl FnMut() -> bool) {
        wait::wait_until_or(what, timeout, done, || {
            format!("\n--- agent log ---\n{}", self.log_text())
        });
    }

    /// [`wait_for`](Self::wait_for), with `context()` (readings the test
    /// took, say) before the agent's log in the failure message.
    pub fn wait_for_or(
        &self,
        what: &str,
        timeout: Duration,
        done: impl FnMut() -> bool,
        context: impl FnOnce() -> String,
    ) {
        wait::wait_until_or(what, timeout, done, || {
            format!("\n{}\n--- agent log ---\n{}", context(), self.log_text())
        });
    }

    /// Whether the run's shim has recorded how the run ended (its
    /// `status.json`), which it does with or without an agent running.
    pub fn exit_recorded(&self, run: &str) -> bool {
        let Ok(placements) = fs::read_dir(self.state.join("runs").join(run)) else {
            return false;
        };
        placements.flatten().any(|p| p.path().join("status.json").exists())
    }

    /// A point after which the agent has reconciled every job file written
    /// before: writes `<name>.yaml`, a recurring job that never fires (it
    /// adds no run), and waits until the agent has loaded it. The agent takes
    /// the directory's changes one batch at a time, in order, and stores the
    /// runs a batch creates before it reads the next.
    pub fn sync_files(&self, name: &str) {
        self.write_job(&format!("{name}.yaml"), &job(name, "true", "schedule: '0 0 1 1 *'\n"));
        self.wait_for(&format!("{name}.yaml loaded"), secs(20), || {
            self.log_text().contains(&format!("job file loaded: {name}"))
        });
    }

    /// A point after which the agent has acted on everything written before
    /// and run a scheduling pass since: writes `<name>.yaml`, a job on the
    /// shared pool that does nothing, and waits for its run to succeed. A
    /// run starts only from a scheduling pass, which tries every waiting run
    /// (higher priority first) and decides every preemption.
    pub fn run_marker(&self, name: &str) {
        self.write_job(&format!("{name}.yaml"), &job(name, "true", ""));
        self.wait_phase(&format!("{name}-1"), "succeeded", secs(20));
    }

    /// The run's cgroup directory in `tree` (e.g. "memory", "unified").
    pub fn cgroup(&self, tree: &str, run: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup").join(tree).join(&self.parent).join(run)
    }

    /// Whether the kernel reports the run's cgroup frozen (v2 tree).
    pub fn frozen(&self, run: &str) -> bool {
        fs::read_to_string(self.cgroup("unified", run).join("cgroup.events"))
            .is_ok_and(|t| t.lines().any(|l| l == "frozen 1"))
    }

    /// Job cgroups under the parent, in the memory tree.
    pub fn job_cgroups(&self) -> Vec<String> {
        let dir = Path::new("/sys/fs/cgroup/memory").join(&self.parent);
        let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        cleanup_cgroups(&self.parent);
    }
}

/// Kills everything in the parent's job cgroups and removes them and the
/// parent from every tree.
pub fn cleanup_cgroups(parent: &str) {
    let unified = Path::new("/sys/fs/cgroup/unified").join(parent);
    if let Ok(entries) = fs::read_dir(&unified) {
        for e in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
            let _ = fs::write(e.path().join("cgroup.kill"), "1");
        }
    }
    for tree in TREES {
        let dir = Path::new("/sys/fs/cgroup").join(tree).join(parent);
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for e in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
            if let Ok(pids) = fs::read_to_string(e.path().join("cgroup.procs")) {
                for pid in pids.lines().filter_map(|p| p.parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
    for tree in TREES {
        let dir = Path::new("/sys/fs/cgroup").join(tree).join(parent);
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for e in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
            for _ in 0..200 {
                if fs::remove_dir(e.path()).is_ok() || !e.path().exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = fs::remove_dir(&dir);
    }
}

/// A script that fills a shell string past 16 MiB: under a 16Mi hard limit
/// the kernel OOM-kills it.
pub const OOM_HOG: &str = "x=abcdefgh; i=0; while [ $i -lt 23 ]; do x=\"$x$x\"; i=$((i+1)); done";

/// A one-shot job running `script` with `sh -c`, plus `extra` YAML lines.
pub fn job(name: &str, script: &str, extra: &str) -> String {
    let script = script.replace('\'', "''");
    format!("name: {name}\ncommand: [/bin/sh, -c, '{script}']\n{extra}")
}
