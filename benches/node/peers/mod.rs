//! corral's peers on this node, found (or not) once per run: crun and runc
//! (OCI runtimes), conmon (the per-container monitor of CRI-O and Podman)
//! and Slurm (`sbatch` with `slurmctld` and `slurmd` for this one node).
//! `benches/node/run` installs what it can; a peer that is missing is a
//! row that says so, never a silent gap.

pub mod conmon;
pub mod crun;
pub mod oci;
pub mod slurm;

use std::path::{Path, PathBuf};
use std::process::Command;

/// A peer program: where it is, or why it cannot be used here.
#[derive(Debug, Clone)]
pub enum Peer {
    Found(PathBuf),
    Missing(String),
}

impl Peer {
    /// `program` on PATH, or missing with the Debian package that has it.
    pub fn on_path(program: &str, package: &str) -> Peer {
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths).map(|d| d.join(program)).find(|p| is_executable(p))
        });
        match found {
            Some(path) => Peer::Found(path),
            None => Peer::Missing(format!("{program} not found (apt-get install {package})")),
        }
    }

    pub fn path(&self) -> Result<&Path, String> {
        match self {
            Peer::Found(path) => Ok(path),
            Peer::Missing(why) => Err(why.clone()),
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The peers of this run.
pub struct Peers {
    pub crun: Peer,
    pub runc: Peer,
    pub conmon: Peer,
    pub slurm: Peer,
}

impl Peers {
    pub fn detect() -> Peers {
        Peers {
            crun: Peer::on_path("crun", "crun"),
            runc: Peer::on_path("runc", "runc"),
            conmon: Peer::on_path("conmon", "conmon"),
            slurm: Peer::on_path("sbatch", "slurm-wlm"),
        }
    }

    /// One line naming each peer and whether it is there.
    pub fn summary(&self) -> String {
        let state = |name: &str, peer: &Peer| match peer {
            Peer::Found(path) => format!("{name} {}", path.display()),
            Peer::Missing(why) => format!("{name} MISSING: {why}"),
        };
        format!(
            "peers: {}; {}; {}; {}",
            state("crun", &self.crun),
            state("runc", &self.runc),
            state("conmon", &self.conmon),
            state("slurm", &self.slurm)
        )
    }
}

/// How long a batch of jobs took to get through, start to all ended.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    pub jobs: usize,
    pub elapsed: std::time::Duration,
}

impl Throughput {
    pub fn jobs_per_sec(&self) -> f64 {
        self.jobs as f64 / self.elapsed.as_secs_f64()
    }
}

/// The controller-less cgroup2 mount of this hybrid host.
const UNIFIED: &str = "/sys/fs/cgroup/unified";

/// `sh -c script` (arguments follow as `$1`...) in a private mount namespace
/// without the controller-less cgroup2 mount at /sys/fs/cgroup/unified:
/// crun 1.8 refuses this machine's hybrid layout while that tree is
/// mounted. The child moves, never the bench process (it has threads, and
/// corral's own runs must see the host's layout). `unshare` makes the new
/// namespace's mounts private, so the unmount stays inside it.
pub fn in_private_mount_ns(script: &str) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!("if mountpoint -q {UNIFIED}; then umount {UNIFIED} || exit 1; fi\n{script}"))
        .arg("peer");
    cmd
}
