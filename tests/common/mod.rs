//! Helpers shared by the real-kernel container tests: a busybox rootfs, the
//! corral binary as the shim, and hand-made cgroups under a unique prefix.

#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use corral::container::{ContainerConfig, Launcher};
use corral::vocab::Namespace;

/// Applets linked into every test rootfs's /bin.
pub const APPLETS: &[&str] = &[
    "sh", "ps", "hostname", "ip", "cat", "id", "ls", "sleep", "true", "false", "echo", "kill",
    "wc", "head", "dd", "grep", "test", "touch", "mkdir", "env", "sed", "tr", "printf",
];

/// The non-root user in every test rootfs.
pub const JOB_UID: u32 = 1000;
pub const JOB_GID: u32 = 1000;

pub mod wait;
#[allow(unused_imports)] // each test binary uses a different subset
pub use wait::{secs, wait_until};

/// The line of a `/proc/PID/cgroup` listing for the hierarchy carrying
/// `controller` (`4:cpu,cpuacct:/path`); fails the test when there is none.
pub fn cgroup_line<'a>(listing: &'a str, controller: &str) -> &'a str {
    listing
        .lines()
        .find(|l| l.split(':').nth(1).is_some_and(|c| c.split(',').any(|c| c == controller)))
        .unwrap_or_else(|| panic!("no {controller} line in {listing}"))
}

/// A launcher of the shim binary cargo built beside `corral`.
pub fn launcher() -> Launcher {
    Launcher::new(env!("CARGO_BIN_EXE_corral-shim"))
}

/// A name unique to this process and call, for run ids and cgroups.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A fresh directory on the host, outside any rootfs and outside /tmp
/// (which a job with a mount namespace does not see), removed on drop.
pub struct HostDir(pub PathBuf);

impl HostDir {
    pub fn new(prefix: &str) -> Self {
        let path = Path::new("/var/tmp").join(unique(prefix));
        fs::create_dir_all(&path).unwrap();
        HostDir(path)
    }

    /// A path in it that does not exist (yet).
    pub fn absent(&self, name: &str) -> PathBuf {
        let path = self.0.join(name);
        assert!(path.symlink_metadata().is_err());
        path
    }

    /// What the directory holds, by name.
    pub fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Builds a minimal rootfs at `dir`: a copy of the static busybox (a copy,
/// not a link, so a job writing to its /bin cannot touch the host's),
/// applet symlinks, passwd and group with root and `app` (uid 1000), and
/// the usual top-level directories.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    for sub in ["bin", "etc", "proc", "sys", "dev", "tmp", "home/app", "root", "data"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("busybox-static at /bin/busybox");
    fs::set_permissions(dir.join("bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
    for applet in APPLETS {
        symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    fs::write(
        dir.join("etc/passwd"),
        format!("root:x:0:0:root:/root:/bin/sh\napp:x:{JOB_UID}:{JOB_GID}:app:/home/app:/bin/sh\n"),
    )
    .unwrap();
    fs::write(dir.join("etc/group"), format!("root:x:0:\napp:x:{JOB_GID}:\nstaff:x:50:app\n"))
        .unwrap();
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    std::os::unix::fs::chown(dir.join("home/app"), Some(JOB_UID), Some(JOB_GID)).unwrap();
    dir.to_path_buf()
}

/// A scratch area: a rootfs and a run directory per test.
pub struct Sandbox {
    pub tmp: tempfile::TempDir,
    pub rootfs: PathBuf,
}

impl Sandbox {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = busybox_rootfs(&tmp.path().join("rootfs"));
        Sandbox { tmp, rootfs }
    }

    /// A fresh run directory path (not yet created).
    pub fn run_dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join("runs").join(name)
    }

    /// A fully isolated config: pid, mount, uts, ipc and net namespaces and
    /// the busybox rootfs, running `sh -c script`.
    pub fn config(&self, name: &str, script: &str) -> ContainerConfig {
        let mut cfg =
            ContainerConfig::new("testjob", name, &self.run_dir(name), &["/bin/sh", "-c", script]);
        cfg.namespaces =
            [Namespace::Pid, Namespace::Mount, Namespace::Uts, Namespace::Ipc, Namespace::Net]
                .into();
        cfg.rootfs = Some(self.rootfs.clone());
        cfg
    }
}

pub fn stdout_of(cfg: &ContainerConfig) -> String {
    fs::read_to_string(cfg.run_dir.join("stdout.log")).unwrap()
}

pub fn stderr_of(cfg: &ContainerConfig) -> String {
    fs::read_to_string(cfg.run_dir.join("stderr.log")).unwrap()
}

/// cgroup v1 hierarchies the tests put jobs into.
pub const V1_CONTROLLERS: &[&str] = &["cpuset", "memory", "pids", "freezer", "cpu", "cpuacct"];

/// Cgroups made by hand under a unique name in each v1 hierarchy, removed
/// on drop.
pub struct TestCgroups {
    pub name: String,
    pub dirs: Vec<PathBuf>,
}

impl TestCgroups {
    pub fn create(prefix: &str) -> Self {
        let name = unique(prefix);
        let mut dirs = Vec::new();
        for controller in V1_CONTROLLERS {
            let hierarchy = Path::new("/sys/fs/cgroup").join(controller);
            let dir = hierarchy.join(&name);
            fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            if *controller == "cpuset" {
                // A new v1 cpuset starts with no CPUs and no memory nodes, and
                // refuses tasks until both are set.
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let parent = fs::read_to_string(hierarchy.join(file)).unwrap();
                    fs::write(dir.join(file), parent.trim()).unwrap();
                }
            }
            dirs.push(dir);
        }
        TestCgroups { name, dirs }
    }

    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }
}

impl Drop for TestCgroups {
    fn drop(&mut self) {
        for dir in &self.dirs {
            // A dying container may take a moment to leave its cgroup.
            for _ in 0..100 {
                if fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

/// `corral run` with its own state directory and a cgroup parent of its
/// own (`corral-test-<pid>-<n>`), both removed on drop, even after a failed
/// test: leftover processes in the parent's cgroups are killed first.
pub struct CorralRun {
    pub dir: tempfile::TempDir,
    pub parent: String,
}

impl CorralRun {
    pub fn new() -> Self {
        CorralRun { dir: tempfile::tempdir().unwrap(), parent: unique("corral-test") }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Writes a job file into the scratch directory.
    pub fn job_file(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.yaml"));
        fs::write(&path, yaml).unwrap();
        path
    }

    /// `corral run FILE --state-dir … --cgroup-parent …`.
    pub fn command(&self, file: &Path) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_corral"));
        cmd.arg("run")
            .arg(file)
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--cgroup-parent")
            .arg(&self.parent)
            .stdin(std::process::Stdio::null());
        cmd
    }

    /// Runs `file` to its end.
    pub fn run(&self, file: &Path) -> std::process::Output {
        self.command(file).output().unwrap()
    }

    /// The run directories made so far, one per placement
    /// (`runs/<run>/<placed-at>`), oldest first (run ids end in a growing
    /// number, placement times grow).
    pub fn run_dirs(&self) -> Vec<PathBuf> {
        let list = |dir: &Path| -> Vec<PathBuf> {
            match fs::read_dir(dir) {
                Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
                Err(_) => Vec::new(),
            }
        };
        let mut dirs: Vec<PathBuf> =
            list(&self.state_dir().join("runs")).iter().flat_map(|run| list(run)).collect();
        dirs.sort();
        dirs
    }

    /// The parent's directory in every cgroup tree it exists in.
    pub fn parent_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        for entry in fs::read_dir("/sys/fs/cgroup").unwrap() {
            let dir = entry.unwrap().path().join(&self.parent);
            if dir.is_dir() {
                dirs.push(dir);
            }
        }
        dirs
    }

    /// The job cgroups under the parent, in any tree.
    pub fn job_cgroups(&self) -> Vec<PathBuf> {
        let mut jobs = Vec::new();
        for parent in self.parent_dirs() {
            for entry in fs::read_dir(&parent).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    jobs.push(path);
                }
            }
        }
        jobs
    }
}

impl Drop for CorralRun {
    fn drop(&mut self) {
        for job in self.job_cgroups() {
            for _ in 0..200 {
                if let Ok(procs) = fs::read_to_string(job.join("cgroup.procs")) {
                    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
                if fs::remove_dir(&job).is_ok() || !job.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        for parent in self.parent_dirs() {
            let _ = fs::remove_dir(parent);
        }
    }
}
