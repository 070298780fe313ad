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
//!
//! Every target is resolved inside the tree the job will see (the rootfs,
//! or the host's `/`) by [`super::inroot`], and mounted onto through the
//! descriptor that resolution returned, never by path: a symlink in a
//! rootfs cannot lead a mount, or a created mount point, onto the host.
//! Missing mount points are made only where they cannot be host files: in
//! the rootfs and in tmpfs mounts of the container, never in the host's
//! tree (a job without a rootfs mounts over existing paths only) nor in a
//! bind mount's source.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fstat, makedev, mknodat, Mode, SFlag};
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::unistd::{chdir, fchdir, pivot_root, symlinkat};

use super::config::{ContainerConfig, Mount, MountKind};
use super::error::SetupError;
use super::inroot::{Kind, ResolveError, Root};
use super::masks;
use crate::vocab::Namespace;

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

/// Where a mount target lies, which decides whether a missing one may be
/// made: only where it cannot land on a file of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Within {
    /// The rootfs's own tree (as resolved inside it).
    Rootfs,
    /// A tmpfs this container mounted at that path (as the job sees it).
    Tmpfs(PathBuf),
    /// Another mount of this container at that path: a bind, whose files
    /// are the host's, or a kernel filesystem (proc, sysfs, devpts).
    Mount(PathBuf),
    /// The host's own tree, seen by a job without a rootfs.
    Host,
}

impl Within {
    /// Whether missing mount points may be made there.
    pub fn may_create(&self) -> bool {
        matches!(self, Within::Rootfs | Within::Tmpfs(_))
    }
}

/// A mount target: a path as the job sees it, resolved at setup inside the
/// rootfs (or the host's `/`) without following symlinks out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub path: PathBuf,
    pub within: Within,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountStep {
    /// `MS_REC | MS_PRIVATE` on `/`: mounts made in the container never
    /// propagate to the host, and `pivot_root` accepts the tree.
    MakeRootPrivate,
    /// Binds the rootfs onto itself (`pivot_root` wants a mount point);
    /// every later target is resolved inside that mount.
    EnterRootfs {
        rootfs: PathBuf,
    },
    /// A fresh filesystem.
    Mount {
        fstype: &'static str,
        target: Target,
        flags: MsFlags,
        data: Option<String>,
    },
    /// A recursive bind of a host path; with `readonly`, read-only all the
    /// way down, before it is attached.
    Bind {
        source: PathBuf,
        target: Target,
        readonly: bool,
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
    /// A device node in `dir`; bind-mounted from the host's `/dev` where
    /// `mknod` is not allowed (a user namespace).
    Device {
        dir: PathBuf,
        device: Device,
    },
    Symlink {
        dir: PathBuf,
        name: &'static str,
        points_to: &'static str,
    },
    /// A device node the job lists, in the rootfs's `/dev`; bound from the
    /// host's node where `mknod` is not allowed, as for [`MountStep::Device`].
    ListedDevice {
        node: super::devices::DeviceNode,
    },
    /// Makes the rootfs the root and detaches the old one.
    PivotRoot {
        new_root: PathBuf,
    },
    /// Hides a kernel file or directory, if the kernel has it
    /// ([`super::masks`]).
    Mask {
        path: PathBuf,
    },
    /// A fresh read-only sysfs of the job's network namespace over the
    /// host's, with the host's mounts at `carry` carried over into it
    /// ([`super::masks::CARRIED_OVER`]).
    Sysfs {
        target: Target,
        carry: Vec<PathBuf>,
    },
}

/// The mounts planned so far, to tell where a new target lies.
struct Layout {
    base: Within,
    /// (path, is a tmpfs), in mount order.
    mounted: Vec<(PathBuf, bool)>,
}

impl Layout {
    /// `path` as a target: it lies in the deepest earlier mount above it,
    /// or in the base tree.
    fn target(&self, path: impl Into<PathBuf>) -> Target {
        let path = path.into();
        let within = self
            .mounted
            .iter()
            .rev()
            .filter(|(m, _)| path.starts_with(m) && path != *m)
            .max_by_key(|(m, _)| m.components().count())
            .map_or_else(
                || self.base.clone(),
                |(m, tmpfs)| {
                    if *tmpfs {
                        Within::Tmpfs(m.clone())
                    } else {
                        Within::Mount(m.clone())
                    }
                },
            );
        Target { path, within }
    }

    fn mount(
        &mut self,
        fstype: &'static str,
        path: &str,
        flags: MsFlags,
        data: Option<&str>,
    ) -> MountStep {
        let target = self.target(path);
        self.mounted.push((target.path.clone(), fstype == "tmpfs"));
        MountStep::Mount { fstype, target, flags, data: data.map(str::to_owned) }
    }
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
        let mut layout = Layout { base: Within::Host, mounted: Vec::new() };
        // First, so that the container's own mounts below stay writable.
        if cfg.readonly_rootfs {
            steps.push(RemountReadonlyRecursive { target: "/".into() });
        }
        if cfg.has(Namespace::Pid) {
            // Over the host's /proc, so ps & co. see the new pid namespace.
            steps.push(layout.mount("proc", "/proc", locked_down, None));
        }
        if cfg.has(Namespace::Net) {
            // The host's sysfs lists the host's network devices.
            let target = layout.target("/sys");
            layout.mounted.push((target.path.clone(), false));
            let carry = masks::CARRIED_OVER.iter().map(PathBuf::from).collect();
            steps.push(Sysfs { target, carry });
        }
        if cfg.has(Namespace::Pid) {
            // Only over a /proc of the job's own: with the host's, the
            // job sees the host's processes anyway.
            steps.extend(masks::steps());
        }
        steps.push(layout.mount("tmpfs", "/tmp", nosuid_nodev, Some("mode=1777")));
        for mount in &cfg.mounts {
            extra_mount(&mut steps, &mut layout, mount);
        }
        return steps;
    };

    let mut layout = Layout { base: Within::Rootfs, mounted: Vec::new() };
    steps.push(EnterRootfs { rootfs: rootfs.clone() });
    steps.push(layout.mount("proc", "/proc", locked_down, None));
    steps.push(layout.mount("sysfs", "/sys", locked_down | MsFlags::MS_RDONLY, None));
    steps.extend(masks::steps());
    steps.push(layout.mount(
        "tmpfs",
        "/dev",
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    ));
    for device in DEVICES {
        steps.push(Device { dir: "/dev".into(), device });
    }
    for node in &cfg.devices {
        steps.push(ListedDevice { node: node.clone() });
    }
    steps.push(layout.mount(
        "devpts",
        "/dev/pts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    ));
    for (name, points_to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        steps.push(Symlink { dir: "/dev".into(), name, points_to });
    }
    steps.push(layout.mount("tmpfs", "/dev/shm", locked_down, Some("mode=1777")));
    steps.push(layout.mount("tmpfs", "/tmp", nosuid_nodev, Some("mode=1777")));
    for mount in &cfg.mounts {
        extra_mount(&mut steps, &mut layout, mount);
    }
    steps.push(PivotRoot { new_root: rootfs.clone() });
    if cfg.readonly_rootfs {
        steps.push(RemountReadonly { target: "/".into() });
    }
    steps
}

/// The step of one of the config's `mounts`.
fn extra_mount(steps: &mut Vec<MountStep>, layout: &mut Layout, mount: &Mount) {
    let target = layout.target(&mount.target);
    match &mount.kind {
        MountKind::Bind { source } => {
            layout.mounted.push((target.path.clone(), false));
            steps.push(MountStep::Bind {
                source: source.clone(),
                target,
                readonly: mount.readonly,
            });
        }
        MountKind::Tmpfs { size_bytes } => {
            layout.mounted.push((target.path.clone(), true));
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

/// The setup error for a target that could not be resolved or made.
fn target_error(target: &Target, error: ResolveError) -> SetupError {
    let path = target.path.clone();
    match error {
        ResolveError::Missing { .. } => match &target.within {
            Within::Mount(mount) => {
                SetupError::MountTargetInMount { target: path, mount: mount.clone() }
            }
            // Rootfs and tmpfs targets are made, never missing.
            _ => SetupError::MountTargetNotOnHost { target: path },
        },
        ResolveError::Os { path: at, errno } => SetupError::syscall(
            format!("resolve mount target {} (at {})", path.display(), at.display()),
            errno,
        ),
    }
}

/// Creates the mount points that live in the rootfs itself (not inside a
/// filesystem the plan mounts, like /dev/pts), from the host side, resolved
/// inside the rootfs like init resolves them.
///
/// Needed with a user namespace: the rootfs belongs to host root, who is
/// nobody inside, so init could not create them there.
pub fn prepare_rootfs(steps: &[MountStep], rootfs: &Path) -> Result<(), SetupError> {
    let root = Root::open(rootfs).map_err(|_| SetupError::RootfsMissing { path: rootfs.into() })?;
    for step in steps {
        let (target, kind) = match step {
            MountStep::Mount { target, .. } => (target, Kind::Dir),
            MountStep::Bind { source, target, .. } => {
                let file = fs::metadata(source).is_ok_and(|m| !m.is_dir());
                (target, if file { Kind::File } else { Kind::Dir })
            }
            _ => continue,
        };
        if target.within == Within::Rootfs {
            root.make(&target.path, kind, true).map_err(|e| target_error(target, e))?;
        }
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

fn cpath(path: &Path) -> Result<CString, Errno> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)
}

/// `mount_setattr(2)` making `path` under `dirfd` (or `dirfd` itself, with
/// an empty path) read-only, with `AT_RECURSIVE` every mount below it too.
pub(super) fn set_readonly(dirfd: RawFd, path: &Path, at_flags: libc::c_int) -> Result<(), Errno> {
    let path = cpath(path)?;
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `path` is a NUL-terminated string and `attr` a mount_attr
    // whose size is passed along; the kernel only reads both.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            at_flags as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    Errno::result(rc).map(drop)
}

/// One `mount_setattr(2)` call instead of a remount per submount: the set
/// of mounts below `/` is the host's, unknown here, and a loop over
/// `/proc/self/mountinfo` would race with mounts appearing meanwhile.
fn remount_readonly_recursive(target: &Path) -> Result<(), SetupError> {
    set_readonly(libc::AT_FDCWD, target, libc::AT_RECURSIVE)
        .map_err(sys(format!("make {} and every mount below it read-only", target.display())))
}

/// A detached copy of the mount tree at `path` under `dirfd` (or at
/// `dirfd` itself, with an empty path and `AT_EMPTY_PATH`), by
/// `open_tree(2)`; with `AT_RECURSIVE` it takes the mounts below along.
pub(super) fn clone_tree(
    dirfd: RawFd,
    path: &Path,
    at_flags: libc::c_int,
) -> Result<OwnedFd, Errno> {
    let path = cpath(path)?;
    let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | at_flags as libc::c_uint;
    // SAFETY: `path` is NUL-terminated and only read by the kernel.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, dirfd, path.as_ptr(), flags) };
    // SAFETY: on success open_tree returns a new descriptor nothing else owns.
    Errno::result(fd).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Attaches the detached tree `tree` onto the directory or file `at`, both
/// descriptors (`move_mount(2)`): nothing is looked up by name.
pub(super) fn attach(tree: BorrowedFd<'_>, at: BorrowedFd<'_>) -> Result<(), Errno> {
    let empty = c"";
    // SAFETY: both paths are the empty NUL-terminated string, both
    // descriptors are open for the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            at.as_raw_fd(),
            empty.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    Errno::result(rc).map(drop)
}

/// Mounts a fresh `fstype` onto the directory `at` refers to, through its
/// `/proc/self/fd` entry: the kernel follows that link to the very
/// directory opened, whatever its path has become since.
pub fn mount_fresh_at(
    fstype: &str,
    at: BorrowedFd<'_>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), Errno> {
    let through = format!("/proc/self/fd/{}", at.as_raw_fd());
    mount(Some(fstype), through.as_str(), Some(fstype), flags, data)
}

/// Applies the steps of a plan in order, in the container's init, inside
/// its mount namespace. Targets are resolved in the current root: the
/// host's `/` at first, the rootfs from [`MountStep::EnterRootfs`] on.
pub struct Applier {
    root: Root,
}

impl Applier {
    pub fn new() -> Result<Self, SetupError> {
        Ok(Applier { root: Root::open(Path::new("/")).map_err(sys("open /"))? })
    }

    /// Opens `target`, making what is missing where that is allowed, and
    /// refuses the root itself (a mount there would cover the whole tree).
    fn resolve(&self, target: &Target, kind: Kind) -> Result<OwnedFd, SetupError> {
        let fd = self
            .root
            .make(&target.path, kind, target.within.may_create())
            .map_err(|e| target_error(target, e))?;
        let is_root = self
            .root
            .is_root(fd.as_fd())
            .map_err(sys(format!("stat mount target {}", target.path.display())))?;
        if is_root {
            return Err(SetupError::MountTargetIsRoot { target: target.path.clone() });
        }
        Ok(fd)
    }

    /// The directory `dir` resolved inside the root; it exists (the plan
    /// made it).
    fn dir(&self, dir: &Path) -> Result<OwnedFd, SetupError> {
        self.root.open_path(dir).map_err(sys(format!("open {}", dir.display())))
    }

    fn bind(&self, source: &Path, target: &Target, readonly: bool) -> Result<(), SetupError> {
        let what = || format!("bind {} on {}", source.display(), target.path.display());
        let tree = clone_tree(libc::AT_FDCWD, source, libc::AT_RECURSIVE).map_err(|errno| {
            SetupError::File {
                what: "bind mount source".into(),
                path: source.to_owned(),
                message: errno.desc().into(),
            }
        })?;
        let is_dir =
            fstat(tree.as_fd()).map_err(sys(what()))?.st_mode & libc::S_IFMT == libc::S_IFDIR;
        let at = self.resolve(target, if is_dir { Kind::Dir } else { Kind::File })?;
        if readonly {
            set_readonly(tree.as_raw_fd(), Path::new(""), libc::AT_EMPTY_PATH | libc::AT_RECURSIVE)
                .map_err(sys(format!("make the bind of {} read-only", source.display())))?;
        }
        attach(tree.as_fd(), at.as_fd()).map_err(sys(what()))
    }

    pub fn apply(&mut self, step: &MountStep) -> Result<(), SetupError> {
        match step {
            MountStep::MakeRootPrivate => mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(sys("make / private")),
            MountStep::EnterRootfs { rootfs } => {
                let what = || format!("bind the rootfs {} onto itself", rootfs.display());
                let tree =
                    clone_tree(libc::AT_FDCWD, rootfs, libc::AT_RECURSIVE).map_err(sys(what()))?;
                let at = Root::open(rootfs).map_err(sys(what()))?;
                attach(tree.as_fd(), at.fd()).map_err(sys(what()))?;
                // The tree's descriptor is now the root of the attached
                // mount: everything below is resolved in it.
                self.root = Root::from_fd(tree);
                Ok(())
            }
            MountStep::Mount { fstype, target, flags, data } => {
                let at = self.resolve(target, Kind::Dir)?;
                mount_fresh_at(fstype, at.as_fd(), *flags, data.as_deref())
                    .map_err(sys(format!("mount {fstype} on {}", target.path.display())))
            }
            MountStep::Bind { source, target, readonly } => self.bind(source, target, *readonly),
            MountStep::RemountReadonly { target } => remount_readonly(target),
            MountStep::RemountReadonlyRecursive { target } => remount_readonly_recursive(target),
            MountStep::ProtectReadonly { path } => {
                let what = || format!("bind {} onto itself read-only", path.display());
                let at = match self.root.open_path(path) {
                    Ok(fd) => fd,
                    Err(Errno::ENOENT) => return Ok(()),
                    Err(errno) => return Err(sys(what())(errno)),
                };
                let tree = clone_tree(at.as_raw_fd(), Path::new(""), libc::AT_EMPTY_PATH)
                    .map_err(sys(what()))?;
                set_readonly(tree.as_raw_fd(), Path::new(""), libc::AT_EMPTY_PATH)
                    .map_err(sys(what()))?;
                attach(tree.as_fd(), at.as_fd()).map_err(sys(what()))
            }
            MountStep::Device { dir, device } => {
                let dir_fd = self.dir(dir)?;
                let path = dir.join(device.name);
                let made = mknodat(
                    dir_fd.as_fd(),
                    device.name,
                    SFlag::S_IFCHR,
                    Mode::from_bits_truncate(0o666),
                    makedev(device.major, device.minor),
                );
                match made {
                    Ok(()) => Ok(()),
                    // No CAP_MKNOD over the host (user namespace): borrow the
                    // host's node instead.
                    Err(Errno::EPERM) => self.bind(
                        &Path::new("/dev").join(device.name),
                        &Target { path, within: Within::Tmpfs(dir.clone()) },
                        false,
                    ),
                    Err(errno) => {
                        Err(SetupError::syscall(format!("mknod {}", path.display()), errno))
                    }
                }
            }
            MountStep::ListedDevice { node } => match super::devices::make(&self.root, node) {
                Ok(()) => Ok(()),
                Err(Errno::EPERM) => self.bind(
                    &node.path,
                    &Target { path: node.path.clone(), within: Within::Tmpfs("/dev".into()) },
                    false,
                ),
                Err(errno) => {
                    Err(SetupError::syscall(format!("mknod {}", node.path.display()), errno))
                }
            },
            MountStep::Symlink { dir, name, points_to } => {
                let dir_fd = self.dir(dir)?;
                symlinkat(*points_to, dir_fd.as_fd(), *name)
                    .map_err(sys(format!("create symlink {}", dir.join(name).display())))
            }
            MountStep::PivotRoot { new_root } => {
                // By descriptor: the rootfs's path could have been swapped
                // on the host since it was bound.
                fchdir(self.root.fd()).map_err(sys(format!("chdir {}", new_root.display())))?;
                // With both arguments ".", the old root is stacked under the new
                // one at "/"; unmounting "." then peels it off, so no directory
                // for the old root is needed inside the rootfs.
                pivot_root(".", ".")
                    .map_err(sys(format!("pivot_root into {}", new_root.display())))?;
                umount2(".", MntFlags::MNT_DETACH).map_err(sys("detach the old root"))?;
                chdir("/").map_err(sys("chdir / in the new root"))?;
                self.root = Root::open(Path::new("/")).map_err(sys("open / in the new root"))?;
                Ok(())
            }
            MountStep::Mask { path } => masks::mask(&self.root, path),
            MountStep::Sysfs { target, carry } => {
                masks::fresh_sysfs(&self.root, &target.path, carry)
            }
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
                | MountStep::Sysfs { target, .. } => Some(target.path.display().to_string()),
                _ => None,
            })
            .collect()
    }

    /// The masking and read-only steps, in plan order.
    fn kernel_file_steps(steps: &[MountStep]) -> Vec<MountStep> {
        steps
            .iter()
            .filter(|s| matches!(s, MountStep::Mask { .. } | MountStep::ProtectReadonly { .. }))
            .cloned()
            .collect()
    }

    /// Where in the plan the first masking step is.
    fn first_mask(steps: &[MountStep]) -> usize {
        steps.iter().position(|s| matches!(s, MountStep::ProtectReadonly { .. })).unwrap()
    }

    #[test]
    fn both_trees_mask_the_same_kernel_files_after_proc_and_sys() {
        let mut c = cfg(&[Namespace::Pid, Namespace::Mount, Namespace::Net]);
        let host = plan(&c);
        c.rootfs = Some("/srv/root".into());
        let rootfs = plan(&c);
        let expected: Vec<MountStep> = masks::steps().collect();
        assert_eq!(kernel_file_steps(&host), expected);
        assert_eq!(kernel_file_steps(&rootfs), expected);
        for steps in [&host, &rootfs] {
            let sys = targets(&steps[..first_mask(steps)]);
            assert!(sys.contains(&"/proc".to_owned()) && sys.contains(&"/sys".to_owned()));
        }
    }

    #[test]
    fn host_tree_masks_only_over_its_own_proc() {
        assert_eq!(kernel_file_steps(&plan(&cfg(&[Namespace::Mount, Namespace::Net]))), []);
    }

    #[test]
    fn a_network_namespace_gets_a_fresh_sysfs_keeping_the_cgroup_tree() {
        let steps = plan(&cfg(&[Namespace::Mount, Namespace::Net]));
        assert_eq!(targets(&steps), ["/sys", "/tmp"]);
        assert!(steps.contains(&MountStep::Sysfs {
            target: Target { path: "/sys".into(), within: Within::Host },
            carry: vec!["/sys/fs/cgroup".into()],
        }));
        assert!(!targets(&plan(&cfg(&[Namespace::Mount]))).contains(&"/sys".to_owned()));
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
        assert_eq!(
            steps.last(),
            Some(&MountStep::Bind {
                source: "/data".into(),
                target: Target { path: "/mnt/data".into(), within: Within::Host },
                readonly: true,
            })
        );
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
                target: Target { path: "/scratch".into(), within: Within::Host },
                flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                data: Some("mode=1777,size=4096".into()),
            }
        );
        assert_eq!(
            steps[4],
            MountStep::Mount {
                fstype: "tmpfs",
                target: Target { path: "/empty".into(), within: Within::Host },
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
            ["/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/tmp", "/data", "/scratch",]
        );
        assert_eq!(steps[1], MountStep::EnterRootfs { rootfs: "/srv/root".into() });
        assert!(steps.contains(&MountStep::Mount {
            fstype: "tmpfs",
            target: Target { path: "/scratch".into(), within: Within::Rootfs },
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            data: Some("mode=1777,size=16777216".into()),
        }));
        let devices = steps.iter().filter(|s| matches!(s, MountStep::Device { .. })).count();
        assert_eq!(devices, DEVICES.len());
        assert!(steps.contains(&MountStep::Bind {
            source: "/data".into(),
            target: Target { path: "/data".into(), within: Within::Rootfs },
            readonly: false,
        }));
        let n = steps.len();
        assert_eq!(steps[n - 2], MountStep::PivotRoot { new_root: "/srv/root".into() });
        assert_eq!(steps[n - 1], MountStep::RemountReadonly { target: "/".into() });
    }

    fn within(steps: &[MountStep], path: &str) -> Within {
        steps
            .iter()
            .find_map(|s| match s {
                MountStep::Mount { target, .. } | MountStep::Bind { target, .. }
                    if target.path == Path::new(path) =>
                {
                    Some(target.within.clone())
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no target {path}"))
    }

    #[test]
    fn targets_know_whether_missing_mount_points_may_be_made() {
        let mut c = cfg(&[Namespace::Pid, Namespace::Mount]);
        c.mounts.push(ExtraMount::tmpfs("/srv/scratch", None, false));
        c.mounts.push(ExtraMount::bind("/data", "/srv/scratch/in", false));
        c.mounts.push(ExtraMount::tmpfs("/srv/scratch/in/cache", None, false));
        c.mounts.push(ExtraMount::tmpfs("/srv/scratch/other", None, false));
        c.mounts.push(ExtraMount::tmpfs("/tmp/work", None, false));
        let steps = plan(&c);
        // Without a rootfs: the host's tree is never written to, a job's
        // own tmpfs is, a bind's source is not.
        assert_eq!(within(&steps, "/proc"), Within::Host);
        assert_eq!(within(&steps, "/srv/scratch"), Within::Host);
        assert_eq!(within(&steps, "/srv/scratch/in"), Within::Tmpfs("/srv/scratch".into()));
        assert_eq!(
            within(&steps, "/srv/scratch/in/cache"),
            Within::Mount("/srv/scratch/in".into())
        );
        assert_eq!(within(&steps, "/srv/scratch/other"), Within::Tmpfs("/srv/scratch".into()));
        assert_eq!(within(&steps, "/tmp/work"), Within::Tmpfs("/tmp".into()));
        assert!(!Within::Host.may_create() && !Within::Mount("/x".into()).may_create());

        c.rootfs = Some("/srv/root".into());
        let steps = plan(&c);
        assert_eq!(within(&steps, "/srv/scratch"), Within::Rootfs);
        assert_eq!(within(&steps, "/dev/pts"), Within::Tmpfs("/dev".into()));
        assert_eq!(
            within(&steps, "/srv/scratch/in/cache"),
            Within::Mount("/srv/scratch/in".into())
        );
        assert!(Within::Rootfs.may_create());
    }
}
