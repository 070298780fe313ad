//! The container's filesystem: planned as a list of steps (pure, tested on
//! any machine), then applied by the container's init inside its fresh
//! mount namespace.
//!
//! Without a rootfs the job sees the host's tree, made private so nothing
//! mounted here propagates back (and, if asked, read-only as a whole:
//! every mount below `/`), with a fresh `/proc` (for a new pid namespace),
//! a private `/tmp` and the asked-for mounts.
//!
//! With a rootfs the job sees only that directory: it is bind-mounted onto
//! itself (`pivot_root` wants a mount point), given `/proc`, `/sys`
//! (read-only), a minimal `/dev`, `/tmp` and the asked-for mounts (binds
//! and tmpfs), and becomes `/` by
//! `pivot_root(".", ".")` followed by a lazy unmount of the old root, which
//! ends up stacked under the new one. No path of the host stays reachable.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::unistd::{chdir, pivot_root};

use super::config::{ContainerConfig, Mount, MountKind, Namespace};
use super::error::SetupError;

/// A character device made in the container's `/dev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    pub name: &'static str,
    pub major: u64,
    pub minor: u64,
}

/// The devices every container gets, as numbered in the kernel's
/// `Documentation/admin-guide/devices.txt`.
pub const DEVICES: [Device; 6] = [
    Device { name: "null", major: 1, minor: 3 },
    Device { name: "zero", major: 1, minor: 5 },
    Device { name: "full", major: 1, minor: 7 },
    Device { name: "random", major: 1, minor: 8 },
    Device { name: "urandom", major: 1, minor: 9 },
    Device { name: "tty", major: 5, minor: 0 },
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountStep {
    /// `MS_REC | MS_PRIVATE` on `/`: mounts made in the container never
    /// propagate to the host, and `pivot_root` accepts the tree.
    MakeRootPrivate,
    /// A fresh filesystem. Missing mount points are created.
    Mount {
        fstype: &'static str,
        target: PathBuf,
        flags: MsFlags,
        data: Option<String>,
    },
    /// A recursive bind. With `confine`, the target must resolve (following
    /// symlinks) to a path under it, so a symlink planted in a rootfs cannot
    /// redirect the bind onto a host path.
    Bind {
        source: PathBuf,
        target: PathBuf,
        confine: Option<PathBuf>,
    },
    /// Makes a mount read-only, keeping its other per-mount flags (the
    /// kernel refuses to clear locked ones in a user namespace).
    RemountReadonly {
        target: PathBuf,
    },
    /// Makes `target` and every mount below it read-only in one step
    /// (`mount_setattr(2)` with `AT_RECURSIVE`, Linux 5.12+).
    RemountReadonlyRecursive {
        target: PathBuf,
    },
    /// Binds a path onto itself read-only, if the kernel has it (not every
    /// kernel has `/proc/sysrq-trigger`).
    ProtectReadonly {
        path: PathBuf,
    },
    /// A device node; bind-mounted from the host's `/dev` where `mknod` is
    /// not allowed (a user namespace).
    Device {
        dir: PathBuf,
        device: Device,
    },
    Symlink {
        link: PathBuf,
        points_to: &'static str,
    },
    /// Makes `new_root` the root and detaches the old one.
    PivotRoot {
        new_root: PathBuf,
    },
}

/// Joins a container path onto the rootfs: `/etc/x` under `/srv/root` is
/// `/srv/root/etc/x`. `..` components are dropped, never followed upwards.
pub fn in_root(root: &Path, path: &Path) -> PathBuf {
    let mut out = root.to_path_buf();
    for part in path.components() {
        if let Component::Normal(part) = part {
            out.push(part);
        }
    }
    out
}

/// The steps for `cfg`, in order. Empty without a mount namespace.
pub fn plan(cfg: &ContainerConfig) -> Vec<MountStep> {
    use MountStep::*;
    if !cfg.has(Namespace::Mount) {
        return Vec::new();
    }
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let locked_down = nosuid_nodev | MsFlags::MS_NOEXEC;
    let mut steps = vec![MakeRootPrivate];
    let Some(rootfs) = &cfg.rootfs else {
        // First, so that the container's own mounts below stay writable.
        if cfg.readonly_rootfs {
            steps.push(RemountReadonlyRecursive { target: "/".into() });
        }
        if cfg.has(Namespace::Pid) {
            // Over the host's /proc, so ps & co. see the new pid namespace.
            steps.push(Mount {
                fstype: "proc",
                target: "/proc".into(),
                flags: locked_down,
                data: None,
            });
        }
        steps.push(Mount {
            fstype: "tmpfs",
            target: "/tmp".into(),
            flags: nosuid_nodev,
            data: Some("mode=1777".into()),
        });
        for mount in &cfg.mounts {
            extra_mount(&mut steps, mount, mount.target.clone(), None);
        }
        return steps;
    };

    let at = |path: &str| in_root(rootfs, Path::new(path));
    steps.push(Bind { source: rootfs.clone(), target: rootfs.clone(), confine: None });
    steps.push(Mount { fstype: "proc", target: at("/proc"), flags: locked_down, data: None });
    // /proc/sys and the sysrq trigger are root-owned files that uid 0 may
    // write even without capabilities: make them read-only for root jobs.
    for path in ["/proc/sys", "/proc/sysrq-trigger"] {
        steps.push(ProtectReadonly { path: at(path) });
    }
    steps.push(Mount {
        fstype: "sysfs",
        target: at("/sys"),
        flags: locked_down | MsFlags::MS_RDONLY,
        data: None,
    });
    steps.push(Mount {
        fstype: "tmpfs",
        target: at("/dev"),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        data: Some("mode=755,size=65536k".into()),
    });
    for device in DEVICES {
        steps.push(Device { dir: at("/dev"), device });
    }
    steps.push(Mount {
        fstype: "devpts",
        target: at("/dev/pts"),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        data: Some("newinstance,ptmxmode=0666,mode=0620".into()),
    });
    for (link, points_to) in [
        ("/dev/ptmx", "pts/ptmx"),
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        steps.push(Symlink { link: at(link), points_to });
    }
    steps.push(Mount {
        fstype: "tmpfs",
        target: at("/dev/shm"),
        flags: locked_down,
        data: Some("mode=1777".into()),
    });
    steps.push(Mount {
        fstype: "tmpfs",
        target: at("/tmp"),
        flags: nosuid_nodev,
        data: Some("mode=1777".into()),
    });
    for mount in &cfg.mounts {
        extra_mount(&mut steps, mount, in_root(rootfs, &mount.target), Some(rootfs));
    }
    steps.push(PivotRoot { new_root: rootfs.clone() });
    if cfg.readonly_rootfs {
        steps.push(RemountReadonly { target: "/".into() });
    }
    steps
}

/// The steps of one of the config's `mounts`, placed at `target` (already
/// joined onto the rootfs, if any).
fn extra_mount(steps: &mut Vec<MountStep>, mount: &Mount, target: PathBuf, rootfs: Option<&Path>) {
    match &mount.kind {
        MountKind::Bind { source } => {
            steps.push(MountStep::Bind {
                source: source.clone(),
                target: target.clone(),
                confine: rootfs.map(Path::to_path_buf),
            });
            if mount.readonly {
                steps.push(MountStep::RemountReadonly { target });
            }
        }
        MountKind::Tmpfs { size_bytes } => {
            let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
            if mount.readonly {
                // An empty read-only tmpfs is odd but legal; mounting it
                // read-only at once needs no remount.
                flags |= MsFlags::MS_RDONLY;
            }
            let mut data = "mode=1777".to_owned();
            if let Some(size) = size_bytes {
                data.push_str(&format!(",size={size}"));
            }
            steps.push(MountStep::Mount { fstype: "tmpfs", target, flags, data: Some(data) });
        }
    }
}

fn sys(what: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> SetupError {
    let what = what.into();
    move |errno| SetupError::syscall(what, errno)
}

/// Creates a mount point of the right kind: a file to bind a file onto, a
/// directory otherwise.
fn ensure_mount_point(target: &Path, file: bool) -> Result<(), SetupError> {
    if target.symlink_metadata().is_ok() {
        return Ok(());
    }
    if let Some(parent) = target.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| SetupError::file("failed to create mount point", parent, &e))?;
    }
    let made = if file {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(target)
            .map(drop)
    } else {
        fs::DirBuilder::new().mode(0o755).create(target)
    };
    match made {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(SetupError::file("failed to create mount point", target, &e))
        }
        _ => Ok(()),
    }
}

/// Fails if `target`, or its deepest existing ancestor, resolves (through
/// symlinks) to a place outside `root`.
fn check_confined(target: &Path, root: &Path) -> Result<(), SetupError> {
    let root =
        fs::canonicalize(root).map_err(|e| SetupError::file("failed to resolve", root, &e))?;
    let mut existing = target;
    while existing.symlink_metadata().is_err() {
        match existing.parent() {
            Some(parent) => existing = parent,
            None => break,
        }
    }
    let resolved = fs::canonicalize(existing)
        .map_err(|e| SetupError::file("failed to resolve mount target", existing, &e))?;
    if resolved.starts_with(&root) {
        Ok(())
    } else {
        Err(SetupError::MountTargetEscapes { target: target.to_owned(), resolved })
    }
}

/// Creates the mount points that live in the rootfs itself (not inside a
/// filesystem the plan mounts, like /dev/pts), from the host side.
///
/// Needed with a user namespace: the rootfs belongs to host root, who is
/// nobody inside, so init could not create them there.
pub fn prepare_rootfs(steps: &[MountStep], rootfs: &Path) -> Result<(), SetupError> {
    let mut mounted: Vec<&Path> = Vec::new();
    for step in steps {
        let (target, file) = match step {
            MountStep::Mount { target, .. } => (target, false),
            MountStep::Bind { source, target, .. } => {
                (target, fs::metadata(source).is_ok_and(|m| !m.is_dir()))
            }
            _ => continue,
        };
        if target == rootfs || !target.starts_with(rootfs) {
            continue;
        }
        if !mounted.iter().any(|m| target.starts_with(m)) {
            check_confined(target, rootfs)?;
            ensure_mount_point(target, file)?;
        }
        mounted.push(target);
    }
    Ok(())
}

fn remount_readonly(target: &Path) -> Result<(), SetupError> {
    let current = statvfs(target).map_err(sys(format!("statvfs {}", target.display())))?.flags();
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    for (have, keep) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if current.contains(have) {
            flags |= keep;
        }
    }
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .map_err(sys(format!("remount {} read-only", target.display())))
}

/// `struct mount_attr` of `<linux/mount.h>`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// One `mount_setattr(2)` call instead of a remount per submount: the set
/// of mounts below `/` is the host's, unknown here, and a loop over
/// `/proc/self/mountinfo` would race with mounts appearing meanwhile.
fn remount_readonly_recursive(target: &Path) -> Result<(), SetupError> {
    let what = || format!("make {} and every mount below it read-only", target.display());
    let path = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
        .map_err(|_| SetupError::syscall(what(), nix::errno::Errno::EINVAL))?;
    let attr = MountAttr { attr_set: MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
    // SAFETY: `path` is a NUL-terminated string and `attr` a properly laid
    // out mount_attr whose size is passed along; the kernel only reads both.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    nix::errno::Errno::result(rc).map(drop).map_err(|errno| SetupError::syscall(what(), errno))
}

/// Applies one step. Runs in the container's init, inside its mount
/// namespace.
pub fn apply(step: &MountStep) -> Result<(), SetupError> {
    match step {
        MountStep::MakeRootPrivate => mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(sys("make / private")),
        MountStep::Mount { fstype, target, flags, data } => {
            ensure_mount_point(target, false)?;
            mount(Some(*fstype), target, Some(*fstype), *flags, data.as_deref())
                .map_err(sys(format!("mount {fstype} on {}", target.display())))
        }
        MountStep::Bind { source, target, confine } => {
            let meta = fs::metadata(source)
                .map_err(|e| SetupError::file("bind mount source", source, &e))?;
            ensure_mount_point(target, !meta.is_dir())?;
            if let Some(root) = confine {
                let resolved = fs::canonicalize(target)
                    .map_err(|e| SetupError::file("failed to resolve mount target", target, &e))?;
                if !resolved.starts_with(root) {
                    return Err(SetupError::MountTargetEscapes {
                        target: target.clone(),
                        resolved,
                    });
                }
            }
            mount(
                Some(source),
                target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(sys(format!("bind {} on {}", source.display(), target.display())))
        }
        MountStep::RemountReadonly { target } => remount_readonly(target),
        MountStep::RemountReadonlyRecursive { target } => remount_readonly_recursive(target),
        MountStep::ProtectReadonly { path } => {
            if path.symlink_metadata().is_err() {
                return Ok(());
            }
            mount(Some(path), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(sys(format!("bind {} onto itself", path.display())))?;
            remount_readonly(path)
        }
        MountStep::Device { dir, device } => {
            let path = dir.join(device.name);
            let made = mknod(
                &path,
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                makedev(device.major, device.minor),
            );
            match made {
                Ok(()) => Ok(()),
                // No CAP_MKNOD over the host (user namespace): borrow the
                // host's node instead.
                Err(nix::errno::Errno::EPERM) => apply(&MountStep::Bind {
                    source: Path::new("/dev").join(device.name),
                    target: path,
                    confine: None,
                }),
                Err(errno) => Err(SetupError::syscall(format!("mknod {}", path.display()), errno)),
            }
        }
        MountStep::Symlink { link, points_to } => std::os::unix::fs::symlink(points_to, link)
            .map_err(|e| SetupError::file("failed to create symlink", link, &e)),
        MountStep::PivotRoot { new_root } => {
            chdir(new_root).map_err(sys(format!("chdir {}", new_root.display())))?;
            // With both arguments ".", the old root is stacked under the new
            // one at "/"; unmounting "." then peels it off, so no directory
            // for the old root is needed inside the rootfs.
            pivot_root(".", ".").map_err(sys(format!("pivot_root into {}", new_root.display())))?;
            umount2(".", MntFlags::MNT_DETACH).map_err(sys("detach the old root"))?;
            chdir("/").map_err(sys("chdir / in the new root"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::container::config::Mount as ExtraMount;

    fn cfg(namespaces: &[Namespace]) -> ContainerConfig {
        let mut cfg = ContainerConfig::new("j", "r", Path::new("/runs/r"), &["true"]);
        cfg.namespaces = namespaces.iter().copied().collect::<BTreeSet<_>>();
        cfg
    }

    fn targets(steps: &[MountStep]) -> Vec<String> {
        steps
            .iter()
            .filter_map(|s| match s {
                MountStep::Mount { target, .. }
                | MountStep::Bind { target, .. }
                | MountStep::ProtectReadonly { path: target } => Some(target.display().to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn in_root_never_climbs_out() {
        let root = Path::new("/srv/root");
        assert_eq!(in_root(root, Path::new("/etc/passwd")), Path::new("/srv/root/etc/passwd"));
        assert_eq!(in_root(root, Path::new("/../../etc")), Path::new("/srv/root/etc"));
        assert_eq!(in_root(root, Path::new("/a/../b")), Path::new("/srv/root/a/b"));
    }

    #[test]
    fn nothing_without_a_mount_namespace() {
        assert!(plan(&cfg(&[Namespace::Pid])).is_empty());
    }

    #[test]
    fn host_root_gets_private_proc_and_tmp() {
        let mut c = cfg(&[Namespace::Pid, Namespace::Mount]);
        c.mounts.push(ExtraMount::bind("/data", "/mnt/data", true));
        let steps = plan(&c);
        assert_eq!(steps[0], MountStep::MakeRootPrivate);
        assert_eq!(targets(&steps), ["/proc", "/tmp", "/mnt/data"]);
        assert_eq!(steps.last(), Some(&MountStep::RemountReadonly { target: "/mnt/data".into() }));
    }

    #[test]
    fn readonly_host_root_comes_first_and_tmpfs_mounts_are_sized() {
        let mut c = cfg(&[Namespace::Mount]);
        c.readonly_rootfs = true;
        c.mounts.push(ExtraMount::tmpfs("/scratch", Some(4096), false));
        c.mounts.push(ExtraMount::tmpfs("/empty", None, true));
        let steps = plan(&c);
        assert_eq!(
            steps[..2],
            [
                MountStep::MakeRootPrivate,
                MountStep::RemountReadonlyRecursive { target: "/".into() }
            ]
        );
        assert_eq!(targets(&steps), ["/tmp", "/scratch", "/empty"]);
        assert_eq!(
            steps[3],
            MountStep::Mount {
                fstype: "tmpfs",
                target: "/scratch".into(),
                flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                data: Some("mode=1777,size=4096".into()),
            }
        );
        assert_eq!(
            steps[4],
            MountStep::Mount {
                fstype: "tmpfs",
                target: "/empty".into(),
                flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_RDONLY,
                data: Some("mode=1777".into()),
            }
        );
    }

    #[test]
    fn no_fresh_proc_without_a_pid_namespace() {
        assert_eq!(targets(&plan(&cfg(&[Namespace::Mount]))), ["/tmp"]);
    }

    #[test]
    fn rootfs_plan_builds_the_tree_then_pivots() {
        let mut c = cfg(&[Namespace::Pid, Namespace::Mount]);
        c.rootfs = Some("/srv/root".into());
        c.readonly_rootfs = true;
        c.mounts.push(ExtraMount::bind("/data", "/data", false));
        c.mounts.push(ExtraMount::tmpfs("/scratch", Some(16 << 20), false));
        let steps = plan(&c);
        assert_eq!(
            targets(&steps),
            [
                "/srv/root",
                "/srv/root/proc",
                "/srv/root/proc/sys",
                "/srv/root/proc/sysrq-trigger",
                "/srv/root/sys",
                "/srv/root/dev",
                "/srv/root/dev/pts",
                "/srv/root/dev/shm",
                "/srv/root/tmp",
                "/srv/root/data",
                "/srv/root/scratch",
            ]
        );
        assert!(steps.contains(&MountStep::Mount {
            fstype: "tmpfs",
            target: "/srv/root/scratch".into(),
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            data: Some("mode=1777,size=16777216".into()),
        }));
        let devices = steps.iter().filter(|s| matches!(s, MountStep::Device { .. })).count();
        assert_eq!(devices, DEVICES.len());
        assert!(steps.contains(&MountStep::Bind {
            source: "/data".into(),
            target: "/srv/root/data".into(),
            confine: Some("/srv/root".into()),
        }));
        let n = steps.len();
        assert_eq!(steps[n - 2], MountStep::PivotRoot { new_root: "/srv/root".into() });
        assert_eq!(steps[n - 1], MountStep::RemountReadonly { target: "/".into() });
    }
}
