//! Helpers of the guest tests: the real cgroup tree, jobs started inside a
//! cgroup, waiting on the kernel, `numa_maps`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use corral::cgroup::{
    detect, CgroupEvent, CgroupManager, CgroupName, CgroupPath, EventStream, HostPaths, JobCgroup,
    ManagerConfig, Resources,
};

pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The parent cgroup of every job in the guest.
pub const PARENT: &str = "corral";
pub const CORRAL: &str = "/corral-vm/corral";
pub const MI: u64 = 1 << 20;

/// The v2 controllers corral uses.
pub const CONTROLLERS: [&str; 5] = ["cpuset", "cpu", "io", "memory", "pids"];

/// `corral run FILE` (under `--config CONFIG` when given) with its state in
/// `state_dir`: its output (stdout, then stderr) and exit code, also printed
/// for the test's log.
pub fn corral_run_file(
    file: &Path,
    config: Option<&Path>,
    state_dir: &str,
) -> (String, Option<i32>) {
    let mut command = Command::new(CORRAL);
    command.arg("run").arg(file);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let out = command.args(["--state-dir", state_dir]).output().expect("run corral run");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    println!("$ corral run {name}  (exit {:?})\n{text}", out.status.code());
    (text, out.status.code())
}

pub fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

pub fn words(path: impl AsRef<Path>) -> Vec<String> {
    read(path).split_whitespace().map(str::to_owned).collect()
}

/// `key value` lines (`cgroup.events`, `memory.events`) as a map.
pub fn flat_keyed(path: impl AsRef<Path>) -> BTreeMap<String, u64> {
    read(path)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

pub fn manager() -> CgroupManager {
    let layout = detect(&HostPaths::default()).expect("detect the cgroup layout");
    CgroupManager::open(layout, &ManagerConfig::new(CgroupPath::new(PARENT).unwrap()))
        .expect("open the parent cgroup")
}

/// A job cgroup that is killed and removed when dropped, with plain file
/// operations rather than the code under test.
pub struct Job {
    pub cgroup: JobCgroup,
}

impl Job {
    pub fn create(manager: &CgroupManager, name: &str, resources: &Resources) -> Job {
        let cgroup = manager
            .create(&CgroupName::new(name).unwrap(), resources)
            .unwrap_or_else(|e| panic!("create job cgroup {name}: {e}"));
        Job { cgroup }
    }

    pub fn dir(&self) -> PathBuf {
        self.cgroup.unified_dir().expect("a v2 job directory").to_path_buf()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    pub fn pids(&self) -> Vec<i32> {
        read(self.file("cgroup.procs")).lines().filter_map(|l| l.trim().parse().ok()).collect()
    }

    pub fn cpu_usage_us(&self) -> u64 {
        flat_keyed(self.file("cpu.stat"))["usage_usec"]
    }

    /// Starts `argv` after a shell has moved itself into the job's cgroup,
    /// as a launcher does, so nothing runs or allocates outside it.
    pub fn spawn(&self, argv: &[&str], stdout: Stdio) -> Child {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(r#"while [ "$1" != -- ]; do echo 0 > "$1" || exit 97; shift; done; shift; exec "$@""#)
            .arg("sh");
        cmd.args(self.cgroup.procs_files()).arg("--").args(argv);
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(Stdio::inherit());
        cmd.spawn().expect("spawn the job")
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let dir = self.dir();
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        let deadline = Instant::now() + Duration::from_secs(10);
        while dir.exists() && Instant::now() < deadline {
            match std::fs::remove_dir(&dir) {
                Ok(()) => break,
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

/// This binary, which carries the workloads.
pub fn self_exe() -> String {
    std::env::current_exe().expect("own path").to_string_lossy().into_owned()
}

/// Waits for a line of `stdout` containing `needle`; returns it.
pub fn wait_line(stdout: ChildStdout, needle: &str, timeout: Duration) -> String {
    let (tx, rx) = mpsc::channel();
    let wanted = needle.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            println!("  job: {line}");
            if line.contains(&wanted) {
                let _ = tx.send(line);
            }
        }
    });
    rx.recv_timeout(timeout)
        .unwrap_or_else(|_| panic!("no line with {needle:?} within {timeout:?}"))
}

#[path = "../../common/wait.rs"]
pub mod wait;
pub use wait::wait_until;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

/// The next event the stream delivers that `want` accepts, printing the ones
/// passed over.
pub async fn event_matching(
    events: &mut EventStream,
    timeout: Duration,
    what: &str,
    mut want: impl FnMut(&CgroupEvent) -> bool,
) -> CgroupEvent {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(Ok(event))) => {
                println!("  event: {event:?}");
                if want(&event) {
                    return event;
                }
            }
            Ok(other) => panic!("event stream ended while waiting for {what}: {other:?}"),
            Err(_) => panic!("no {what} event within {timeout:?}"),
        }
    }
}

/// Anonymous pages per NUMA node, summed over a `numa_maps` file. File
/// mappings (the binary, libraries) are left out: their page cache may sit
/// on any node.
pub fn anon_pages_per_node(numa_maps: &str) -> BTreeMap<u32, u64> {
    let mut pages = BTreeMap::new();
    for line in numa_maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !fields.iter().any(|f| f.starts_with("anon="))
            || fields.iter().any(|f| f.starts_with("file="))
        {
            continue;
        }
        for field in fields {
            if let Some((node, count)) = field.strip_prefix('N').and_then(|f| f.split_once('=')) {
                if let (Ok(node), Ok(count)) = (node.parse::<u32>(), count.parse::<u64>()) {
                    *pages.entry(node).or_default() += count;
                }
            }
        }
    }
    pages
}

/// `Cpus_allowed_list` and `Mems_allowed_list` of a process.
pub fn allowed_lists(pid: u32) -> (String, String) {
    let status = read(format!("/proc/{pid}/status"));
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
    };
    (field("Cpus_allowed_list:"), field("Mems_allowed_list:"))
}
