//! `corral agent` in a cgroup delegated to it, as systemd sets one up for a
//! `Delegate=yes` unit (`…/corral.service` marked `trusted.delegate=1`):
//! the agent moves itself into `agent/`, shims go to `shims/`, jobs below
//! the delegated cgroup, nothing at the hierarchy root; a `kill -9` and a
//! start in `agent/` (as `DelegateSubgroup=agent` starts it) adopts the run.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::util::wait::wait_until_or;
use super::util::{read, CGROUP_ROOT, CONTROLLERS, CORRAL};
use super::Context;

const SECOND: Duration = Duration::from_secs(1);
const SLICE: &str = "system.slice";
const SERVICE: &str = "/system.slice/corral.service";
/// The job tree's name, apart from the other tests' parents.
const PARENT: &str = "corral-svc";
const ROOT: &str = "/run/agent-service";

fn service_dir() -> PathBuf {
    Path::new(CGROUP_ROOT).join(SERVICE.trim_start_matches('/'))
}

/// The unified cgroup of `pid`, from `/proc/PID/cgroup`.
fn cgroup_of(pid: &str) -> String {
    read(format!("/proc/{pid}/cgroup")).strip_prefix("0::").unwrap_or_default().to_owned()
}

fn pids(cgroup: &Path) -> Vec<String> {
    read(cgroup.join("cgroup.procs")).lines().map(str::to_owned).collect()
}

/// What systemd does for a `Delegate=yes` unit: the controllers enabled
/// down to the unit's cgroup, which it marks as delegated.
fn delegate_service_cgroup() {
    let enable: String = CONTROLLERS.iter().map(|c| format!("+{c} ")).collect();
    let slice = Path::new(CGROUP_ROOT).join(SLICE);
    fs::create_dir_all(service_dir()).unwrap();
    for dir in [Path::new(CGROUP_ROOT), &slice] {
        fs::write(dir.join("cgroup.subtree_control"), enable.trim_end())
            .unwrap_or_else(|e| panic!("enable {enable} in {}: {e}", dir.display()));
    }
    let path = CString::new(service_dir().as_os_str().as_bytes()).unwrap();
    let name = CString::new("trusted.delegate").unwrap();
    // SAFETY: NUL-terminated strings and a one-byte value that outlive the call.
    let rc = unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), b"1".as_ptr().cast(), 1, 0) };
    assert_eq!(rc, 0, "setxattr trusted.delegate: {}", std::io::Error::last_os_error());
}

struct ServiceAgent {
    root: PathBuf,
    child: Option<Child>,
    notify: UnixDatagram,
}

impl ServiceAgent {
    fn new() -> ServiceAgent {
        let root = PathBuf::from(ROOT);
        for dir in ["jobs", "state", "data"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        fs::set_permissions(root.join("data"), fs::Permissions::from_mode(0o777)).unwrap();
        fs::write(
            root.join("agent.yaml"),
            format!(
                "jobs_dir: {r}/jobs\nstate_dir: {r}/state\nsocket: {r}/state/corral.sock\n\
                 cgroup_parent: {PARENT}\nstop_grace: 2s\n",
                r = root.display()
            ),
        )
        .unwrap();
        let notify = UnixDatagram::bind(root.join("notify.sock")).unwrap();
        notify.set_read_timeout(Some(30 * SECOND)).unwrap();
        ServiceAgent { root, child: None, notify }
    }

    /// Starts the agent in the cgroup `cgroup` (below the v2 root), as a
    /// service manager does: the process is there before it runs.
    fn start_in(&mut self, cgroup: &str) {
        let procs =
            Path::new(CGROUP_ROOT).join(cgroup.trim_start_matches('/')).join("cgroup.procs");
        let log = fs::OpenOptions::new().create(true).append(true).open(self.log()).unwrap();
        let mut command = Command::new(CORRAL);
        command
            .args(["agent", "--config"])
            .arg(self.root.join("agent.yaml"))
            .env("RUST_LOG", "info,corral=debug")
            .env("NOTIFY_SOCKET", self.root.join("notify.sock"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let procs = CString::new(procs.as_os_str().as_bytes()).unwrap();
        let hook = move || {
            // SAFETY: open, write and close are async-signal-safe, as a hook
            // between fork and exec must be; `procs` is NUL-terminated.
            let written = unsafe {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                n
            };
            if written == 1 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        // SAFETY: the hook allocates nothing and calls only async-signal-safe
        // functions.
        unsafe { command.pre_exec(hook) };
        self.child = Some(command.spawn().expect("start corral agent"));
        let mut buf = [0u8; 512];
        let len = self.notify.recv(&mut buf).unwrap_or_else(|e| {
            panic!("no READY=1 within 30 s ({e})\n--- agent log ---\n{}", self.log_text())
        });
        let message = String::from_utf8_lossy(&buf[..len]).into_owned();
        assert!(message.starts_with("READY=1\n"), "{message:?}");
    }

    fn pid(&self) -> String {
        self.child.as_ref().expect("started").id().to_string()
    }

    fn kill9(&mut self) {
        let mut child = self.child.take().expect("started");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn log(&self) -> PathBuf {
        self.root.join("agent.log")
    }

    fn log_text(&self) -> String {
        fs::read_to_string(self.log()).unwrap_or_default()
    }

    fn write_job(&self, name: &str, script: &str) {
        let text = format!("name: {name}\ncommand: [/bin/sh, -c, '{script}']\n");
        let tmp = self.root.join("jobs").join(format!(".{name}.tmp"));
        fs::write(&tmp, text).unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
        fs::rename(&tmp, self.root.join("jobs").join(format!("{name}.yaml"))).unwrap();
    }

    fn data(&self, name: &str) -> PathBuf {
        self.root.join("data").join(name)
    }

    fn query<T: rusqlite::types::FromSql>(&self, sql: &str, run: &str) -> Option<T> {
        let path = self.root.join("state/corral.db");
        let db = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
        db.query_row(sql, [run], |r| r.get(0)).optional().ok().flatten()
    }

    fn phase(&self, run: &str) -> Option<String> {
        self.query("SELECT phase FROM runs WHERE id = ?1", run)
    }

    fn wait_for(&self, what: &str, timeout: Duration, done: impl FnMut() -> bool) {
        wait_until_or(what, timeout, done, || format!("\n--- agent log ---\n{}", self.log_text()));
    }

    fn wait_phase(&self, run: &str, phase: &str, timeout: Duration) {
        self.wait_for(&format!("{run} to be {phase}"), timeout, || {
            self.phase(run).as_deref() == Some(phase)
        });
    }
}

impl Drop for ServiceAgent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        println!("--- agent log ---\n{}", self.log_text());
    }
}

pub fn agent_in_a_delegated_cgroup_keeps_to_it_and_adopts_after_kill9(_: &Context) {
    delegate_service_cgroup();
    let service = service_dir();
    let mut agent = ServiceAgent::new();
    // Started in the delegated cgroup itself: it must move to its leaf.
    agent.start_in(SERVICE);
    assert_eq!(cgroup_of(&agent.pid()), format!("{SERVICE}/agent"));
    assert!(pids(&service).is_empty(), "nothing stays in the delegated cgroup itself");
    let enabled = read(service.join("cgroup.subtree_control"));
    for controller in CONTROLLERS {
        assert!(enabled.split(' ').any(|c| c == controller), "{controller} in {enabled:?}");
    }

    let doctor = Command::new(CORRAL)
        .args(["doctor", "--agent-pid", &agent.pid(), "--parent", PARENT])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(report.contains(&format!("cgroup root: delegated at {SERVICE}")), "{report}");
    assert!(report.contains("trusted.delegate=1"), "{report}");

    let done = agent.data("survivor").display().to_string();
    let progress = agent.data("survivor.progress").display().to_string();
    agent.write_job(
        "survivor",
        &format!(
            "i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo $i > {progress}; sleep 0.1; done; \
             echo done >> {done}; exit 3"
        ),
    );
    agent.wait_phase("survivor-1", "running", 20 * SECOND);
    let run_cgroup = service.join(PARENT).join("survivor-1");
    let job_pids = pids(&run_cgroup);
    assert!(!job_pids.is_empty(), "the run's processes are in {}", run_cgroup.display());
    // The job's loop starts a `sleep` every 0.1 s: one listed may have
    // exited since, so only the processes still there are checked (the
    // job's shell always is).
    let live: Vec<String> = job_pids
        .iter()
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/cgroup")).ok())
        .map(|line| line.trim().trim_start_matches("0::").to_owned())
        .collect();
    assert!(!live.is_empty(), "every listed process of the run exited: {job_pids:?}");
    for cgroup in live {
        assert_eq!(cgroup, format!("{SERVICE}/{PARENT}/survivor-1"));
    }
    let shims = pids(&service.join("shims"));
    assert_eq!(shims.len(), 1, "one shim, in shims/: {shims:?}");
    assert_eq!(pids(&service.join("agent")), [agent.pid()], "the agent alone in agent/");
    for name in [PARENT, "agent", "shims"] {
        assert!(
            !Path::new(CGROUP_ROOT).join(name).exists(),
            "{name} at the hierarchy root: the agent wrote outside its delegated cgroup"
        );
    }

    agent.kill9();
    let before = fs::read_to_string(&progress).unwrap_or_default();
    agent.wait_for("progress with no agent", 10 * SECOND, || {
        fs::read_to_string(&progress).unwrap_or_default() != before
    });
    assert_eq!(pids(&service.join("shims")), shims, "the shim outlives the agent");

    // Where DelegateSubgroup=agent starts the restarted service.
    agent.start_in(&format!("{SERVICE}/agent"));
    assert_eq!(cgroup_of(&agent.pid()), format!("{SERVICE}/agent"));
    agent.wait_phase("survivor-1", "failed", 30 * SECOND);
    assert!(agent.log_text().contains("took over the runs"), "{}", agent.log_text());
    assert_eq!(
        agent.query::<i64>("SELECT exit_code FROM runs WHERE id = ?1", "survivor-1"),
        Some(3),
        "the end the shim recorded while no agent ran"
    );
    assert_eq!(fs::read_to_string(&done).unwrap_or_default(), "done\n", "ran once, to the end");
}
