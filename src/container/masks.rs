//! What a job sees of the kernel's own filesystems, `/proc` and `/sys`,
//! beyond its own processes: the files that would let it read the host's
//! memory, keys or timers are masked, the ones that would let it change
//! the host are read-only, and with a network namespace `/sys` is a sysfs
//! of that namespace, not the host's.
//!
//! One list serves a job with a rootfs and one without: the paths are the
//! same inside a fresh `/proc` and `/sys` whichever tree they are mounted
//! in. They are the ones the OCI runtimes (runc, crun, youki) mask and make
//! read-only by default, so a job sees what it would see in those.
//!
//! A masked file gets the host's `/dev/null` bound over it, read-only: it
//! reads as empty and refuses writes. A masked directory gets an empty
//! read-only tmpfs. A path the kernel does not have (no ACPI, no SCSI, a
//! kernel built without `latency_stats`) is skipped: there is nothing to
//! hide.

use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::stat::fstat;

use super::error::SetupError;
use super::inroot::Root;
use super::mounts::{attach, clone_tree, mount_fresh_at, set_readonly, MountStep};

/// Kernel files and directories a job must not read: the host's physical
/// memory (`kcore`), every key on the system (`keys`), timers and scheduler
/// internals of every process (`timer_list`, `sched_debug`, …), firmware
/// tables, hardware trees, and the power-capping counters (`powercap`, read
/// by RAPL side channels).
pub const MASKED: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Kernel files and directories a job may read but not write: sysctls,
/// the magic SysRq trigger, interrupt affinities, bus and filesystem
/// settings. They belong to root, and uid 0 writes to them even without
/// capabilities, so a root job could otherwise change the host.
pub const READONLY: [&str; 5] =
    ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The steps that mask [`MASKED`] and protect [`READONLY`]; planned after
/// `/proc` and `/sys` are in place, since they mount over paths in both.
pub fn steps() -> impl Iterator<Item = MountStep> {
    let readonly =
        READONLY.into_iter().map(|path| MountStep::ProtectReadonly { path: path.into() });
    let masked = MASKED.into_iter().map(|path| MountStep::Mask { path: path.into() });
    readonly.chain(masked)
}

fn sys(what: String) -> impl FnOnce(Errno) -> SetupError {
    move |errno| SetupError::syscall(what, errno)
}

/// Hides `path` inside `root`, if it exists there: see the module's doc.
pub(super) fn mask(root: &Root, path: &Path) -> Result<(), SetupError> {
    let at = match root.open_path(path) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(errno) => return Err(SetupError::syscall(format!("open {}", path.display()), errno)),
    };
    let mode = fstat(at.as_fd()).map_err(sys(format!("stat {}", path.display())))?.st_mode;
    if mode & libc::S_IFMT == libc::S_IFDIR {
        let flags =
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        return mount_fresh_at("tmpfs", at.as_fd(), flags, Some("mode=0555"))
            .map_err(sys(format!("mask {} with an empty tmpfs", path.display())));
    }
    let what = || format!("mask {} with /dev/null", path.display());
    // The host's /dev/null, looked up before any pivot: a rootfs's own
    // /dev is a tmpfs the plan filled, the host's node is the same device.
    let null = clone_tree(libc::AT_FDCWD, Path::new("/dev/null"), 0).map_err(sys(what()))?;
    set_readonly(null.as_raw_fd(), Path::new(""), libc::AT_EMPTY_PATH).map_err(sys(what()))?;
    attach(null.as_fd(), at.as_fd()).map_err(sys(what()))
}

/// The host mounts below `/sys` that a fresh sysfs does not have and a job
/// without a rootfs saw before its network namespace asked for a new
/// sysfs: the cgroup tree, which belongs to no network namespace and which
/// jobs read their own usage from.
pub const CARRIED_OVER: [&str; 1] = ["/sys/fs/cgroup"];

/// Mounts a fresh read-only sysfs over the directory `at` (the job's
/// `/sys`), carrying the host's mounts at `carry` over into it.
///
/// A sysfs shows the network devices of the network namespace of the
/// process that mounts it; the container's init mounts it after it
/// unshared its network namespace, so `/sys/class/net` lists the job's
/// own interfaces (`lo`), not the host's.
pub(super) fn fresh_sysfs(root: &Root, at: &Path, carry: &[PathBuf]) -> Result<(), SetupError> {
    // Taken before the sysfs covers them; detached copies, so nothing of
    // the host's tree changes.
    let mut carried = Vec::new();
    for path in carry {
        match clone_tree(libc::AT_FDCWD, path, libc::AT_RECURSIVE) {
            Ok(tree) => carried.push((path, tree)),
            Err(Errno::ENOENT) => {}
            Err(errno) => {
                return Err(SetupError::syscall(format!("copy {}", path.display()), errno))
            }
        }
    }
    let dir = root.open_path(at).map_err(sys(format!("open {}", at.display())))?;
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_fresh_at("sysfs", dir.as_fd(), flags, None)
        .map_err(sys(format!("mount sysfs on {}", at.display())))?;
    for (path, tree) in carried {
        let what = || format!("carry {} over into the fresh sysfs", path.display());
        // A fresh sysfs has the empty mount point directory the host's had.
        let onto = root.open_path(path).map_err(sys(what()))?;
        attach(tree.as_fd(), onto.as_fd()).map_err(sys(what()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_and_readonly_paths_are_disjoint_and_under_proc_or_sys() {
        for path in MASKED.iter().chain(READONLY.iter()) {
            assert!(path.starts_with("/proc/") || path.starts_with("/sys/"), "{path}");
        }
        assert!(MASKED.iter().all(|m| !READONLY.contains(m)));
    }

    #[test]
    fn steps_protect_then_mask_every_path_once() {
        let steps: Vec<MountStep> = steps().collect();
        assert_eq!(steps.len(), MASKED.len() + READONLY.len());
        assert_eq!(steps[0], MountStep::ProtectReadonly { path: "/proc/bus".into() });
        assert!(steps.contains(&MountStep::Mask { path: "/proc/kcore".into() }));
        assert!(steps.contains(&MountStep::ProtectReadonly { path: "/proc/sys".into() }));
    }
}
