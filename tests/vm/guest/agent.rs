//! `corral agent` on the guest: preemption by the v2 freezer, and a
//! `kill -9` of the agent that its jobs survive and the next agent adopts.
//! Observed through the kernel (cgroup files) and the run store, read-only.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::util::wait::wait_until_or;
use super::util::{read, CGROUP_ROOT, CORRAL};
use super::Context;

const SECOND: Duration = Duration::from_secs(1);
/// The agent's cgroup parent, apart from the one the other tests use.
const PARENT: &str = "corral-agent";

/// An agent process with its own jobs, state and data directories.
pub(super) struct Agent {
    root: PathBuf,
    child: Option<Child>,
}

impl Agent {
    /// An agent whose files go in `/run/<name>`.
    pub(super) fn new(name: &str) -> Agent {
        let root = Path::new("/run").join(name);
        for dir in ["jobs", "state", "data"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        // The jobs run under dynamic uids and report through files here.
        fs::set_permissions(root.join("data"), fs::Permissions::from_mode(0o777)).unwrap();
        fs::write(
            root.join("agent.yaml"),
            format!(
                "jobs_dir: {r}/jobs\nstate_dir: {r}/state\nsocket: {r}/state/corral.sock\n\
                 cgroup_parent: {PARENT}\nstop_grace: 2s\nmin_runtime_before_preemption: 0s\n",
                r = root.display()
            ),
        )
        .unwrap();
        Agent { root, child: None }
    }

    pub(super) fn start(&mut self) {
        let log = fs::OpenOptions::new().create(true).append(true).open(self.log()).unwrap();
        let child = Command::new(CORRAL)
            .args(["agent", "--config"])
            .arg(self.root.join("agent.yaml"))
            .env("RUST_LOG", "info,corral=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start corral agent");
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        let mut child = self.child.take().expect("started");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn log(&self) -> PathBuf {
        self.root.join("agent.log")
    }

    pub(super) fn log_text(&self) -> String {
        fs::read_to_string(self.log()).unwrap_or_default()
    }

    pub(super) fn data(&self, name: &str) -> PathBuf {
        self.root.join("data").join(name)
    }

    pub(super) fn read_data(&self, name: &str) -> String {
        fs::read_to_string(self.data(name)).unwrap_or_default()
    }

    /// Writes a one-shot job running `script` as deploy tools do: a hidden
    /// temporary, then a rename.
    pub(super) fn write_job(&self, name: &str, script: &str, extra: &str) {
        let script = script.replace('\'', "''");
        let text = format!("name: {name}\ncommand: [/bin/sh, -c, '{script}']\n{extra}");
        let tmp = self.root.join("jobs").join(format!(".{name}.tmp"));
        fs::write(&tmp, text).unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
        fs::rename(&tmp, self.root.join("jobs").join(format!("{name}.yaml"))).unwrap();
    }

    /// A job script counting to `n` in tenths of a second, then writing
    /// `done`: a frozen job makes no progress.
    fn counter(&self, name: &str, n: u32) -> String {
        let out = self.data(name).display().to_string();
        format!(
            "i=0; while [ $i -lt {n} ]; do i=$((i+1)); echo $i > {out}.progress; sleep 0.1; done; echo done >> {out}"
        )
    }

    fn db(&self) -> Option<Connection> {
        let path = self.root.join("state/corral.db");
        path.exists()
            .then(|| Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).ok())
            .flatten()
    }

    pub(super) fn phase(&self, run: &str) -> Option<String> {
        let db = self.db()?;
        db.query_row("SELECT phase FROM runs WHERE id = ?1", [run], |r| r.get(0)).optional().ok()?
    }

    pub(super) fn exit(&self, run: &str) -> (Option<i64>, Option<i64>) {
        self.db()
            .unwrap()
            .query_row("SELECT exit_code, exit_signal FROM runs WHERE id = ?1", [run], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap()
    }

    pub(super) fn events(&self, run: &str) -> Vec<String> {
        let db = self.db().unwrap();
        let mut stmt =
            db.prepare("SELECT kind FROM run_events WHERE run_id = ?1 ORDER BY n").unwrap();
        stmt.query_map([run], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }

    pub(super) fn count_runs(&self) -> i64 {
        self.db()
            .and_then(|db| db.query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0)).ok())
            .unwrap_or(0)
    }

    pub(super) fn wait_for(&self, what: &str, timeout: Duration, done: impl FnMut() -> bool) {
        wait_until_or(what, timeout, done, || format!("\n--- agent log ---\n{}", self.log_text()));
    }

    pub(super) fn wait_phase(&self, run: &str, phase: &str, timeout: Duration) {
        self.wait_for(&format!("{run} to be {phase}"), timeout, || {
            self.phase(run).as_deref() == Some(phase)
        });
    }

    pub(super) fn cgroup(&self, run: &str) -> PathBuf {
        Path::new(CGROUP_ROOT).join(PARENT).join(run)
    }

    /// The kernel's word: `frozen 1` in the run's `cgroup.events`.
    pub(super) fn frozen(&self, run: &str) -> bool {
        fs::read_to_string(self.cgroup(run).join("cgroup.events"))
            .is_ok_and(|t| t.lines().any(|l| l == "frozen 1"))
    }

    fn cpus(&self, run: &str) -> String {
        read(self.cgroup(run).join("cpuset.cpus.effective"))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        println!("--- agent log ---\n{}", self.log_text());
    }
}

pub fn agent_preempts_by_freezing_and_resumes_afterwards(ctx: &Context) {
    let mut agent = Agent::new("agent-preempt");
    agent.start();
    // All but the one CPU the shared pool keeps.
    let all_but_one = ctx.topology.cpu_count() - 1;
    agent.write_job(
        "low",
        &agent.counter("low", 20),
        &format!("priority: 10\npreemption: suspend\nresources: {{cpus: {all_but_one}}}\n"),
    );
    agent.wait_phase("low-1", "running", 20 * SECOND);
    println!("low-1 runs on cpus {}", agent.cpus("low-1"));

    let per_node = ctx.topology.cpus_per_node();
    agent.write_job(
        "high",
        &agent.counter("high", 10),
        &format!("priority: 90\nresources: {{cpus: {per_node}, numa: single-node}}\n"),
    );
    agent.wait_for("low-1 frozen in the kernel", 20 * SECOND, || agent.frozen("low-1"));
    assert_eq!(read(agent.cgroup("low-1").join("cgroup.freeze")), "1", "low-1's own cgroup.freeze");
    agent.wait_phase("high-1", "running", 20 * SECOND);
    assert_eq!(agent.phase("low-1").as_deref(), Some("suspended"));
    println!("high-1 runs on cpus {}", agent.cpus("high-1"));
    let progress = agent.read_data("low.progress");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(agent.read_data("low.progress"), progress, "a frozen job makes no progress");

    agent.wait_phase("high-1", "succeeded", 30 * SECOND);
    agent.wait_for("low-1 thawed", 20 * SECOND, || {
        agent.phase("low-1").as_deref() == Some("running")
    });
    // The resumption is recorded before the thaw is written (every
    // transition is stored before it is acted on): the kernel follows.
    agent.wait_for("low-1 thawed in the kernel", 20 * SECOND, || !agent.frozen("low-1"));
    agent.wait_phase("low-1", "succeeded", 30 * SECOND);
    assert_eq!(agent.read_data("low"), "done\n");
    assert_eq!(agent.read_data("low.progress").trim(), "20");
    assert_eq!(agent.exit("low-1"), (Some(0), None));
    assert_eq!(agent.events("low-1"), ["preempted", "resumed"]);
}

pub fn agent_killed_with_sigkill_leaves_jobs_running_for_the_next_agent(_: &Context) {
    let mut agent = Agent::new("agent-crash");
    agent.start();
    agent.write_job("survivor", &agent.counter("survivor", 30), "resources: {cpus: 1}\n");
    agent.wait_phase("survivor-1", "running", 20 * SECOND);
    agent.kill9();

    // The job goes on without any agent: its supervisor outlives the agent.
    let before = agent.read_data("survivor.progress");
    agent.wait_for("progress with no agent", 10 * SECOND, || {
        agent.read_data("survivor.progress") != before
    });
    assert!(!read(agent.cgroup("survivor-1").join("cgroup.procs")).is_empty());

    agent.start();
    agent.wait_for("the new agent to take over", 20 * SECOND, || {
        agent.log_text().contains("took over the runs")
    });
    agent.wait_phase("survivor-1", "succeeded", 30 * SECOND);
    assert_eq!(agent.exit("survivor-1"), (Some(0), None));
    assert_eq!(agent.read_data("survivor"), "done\n", "ran to the end exactly once");
    assert_eq!(agent.count_runs(), 1, "no second run was started");
}
