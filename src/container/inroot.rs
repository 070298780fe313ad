//! Paths opened inside a root directory without ever leaving it.
//!
//! A rootfs is a tree the job (or whoever built the image) controls, so any
//! of its components may be a symlink: `mnt -> /var/tmp/x`, `up -> ../..`,
//! or one swapped in while the container is being set up. Joining the
//! rootfs and a path as strings and handing the result to `mkdir` or
//! `mount` follows such links on the host (the class of runc's
//! CVE-2021-30465). Here every path is resolved by the kernel with
//! `openat2(2)` and `RESOLVE_IN_ROOT`: the root directory is `/` for the
//! lookup, absolute symlinks start from it and `..` stops at it, and magic
//! links (`/proc/PID/fd/N`) are refused. What comes back is an `O_PATH`
//! descriptor; missing components are made with `mkdirat(2)` relative to
//! such descriptors, and the caller mounts through the descriptor, so a
//! symlink planted after the lookup changes nothing. Files read from the
//! root (its /etc/passwd and /etc/group, read as root on the host) are
//! found the same way and read only if regular and small.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, readlinkat, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, mkdirat, Mode};

/// What a missing mount point is made as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    /// An empty file, to bind a file onto.
    File,
}

/// Why [`Root::make`] could not give a descriptor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// `path` is missing and the caller did not allow creating it.
    #[error("{path} does not exist")]
    Missing { path: PathBuf },
    /// Resolving or creating `path` failed.
    #[error("{path}: {}", errno.desc())]
    Os { path: PathBuf, errno: Errno },
}

/// Why [`Root::read_file`] could not give a file's contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// `path` is a FIFO, device, directory or socket: opening one for
    /// reading can block (a FIFO with no writer) or act on a device.
    #[error("{path} is {kind}, not a regular file")]
    NotRegular { path: PathBuf, kind: &'static str },
    /// `path` holds more than the caller's limit.
    #[error("{path} is larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    /// Resolving, opening or reading `path` failed.
    #[error("{path}: {}", errno.desc())]
    Os { path: PathBuf, errno: Errno },
}

/// What a file that is not a regular one is, for messages.
fn kind_of(mode: libc::mode_t) -> Option<&'static str> {
    match mode & libc::S_IFMT {
        libc::S_IFREG => None,
        libc::S_IFIFO => Some("a FIFO"),
        libc::S_IFCHR => Some("a character device"),
        libc::S_IFBLK => Some("a block device"),
        libc::S_IFDIR => Some("a directory"),
        libc::S_IFSOCK => Some("a socket"),
        libc::S_IFLNK => Some("a symlink"),
        _ => Some("not a regular file"),
    }
}

/// A directory that paths are looked up in as if it were `/`.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
}

fn how() -> OpenHow {
    OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// The path as openat2 gets it: its plain components joined, `.` for the
/// root itself. `..` components stay: the kernel stops them at the root.
fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

impl Root {
    /// Opens `dir` (a host path, followed as the host resolves it: it is
    /// the operator's choice, not the job's) as a root.
    pub fn open(dir: &Path) -> Result<Root, Errno> {
        let fd = nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { fd })
    }

    /// A root from an open directory descriptor (such as the root of a
    /// mount made from a descriptor).
    pub fn from_fd(fd: OwnedFd) -> Root {
        Root { fd }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `path` (absolute or not, as the job sees it) opened `O_PATH` inside
    /// the root; a symlink as the last component is followed, inside the
    /// root too.
    pub fn open_path(&self, path: &Path) -> Result<OwnedFd, Errno> {
        openat2(self.fd.as_fd(), &relative(path), how())
    }

    /// The contents of the regular file at `path` inside the root, at most
    /// `limit` bytes, or `None` if nothing is there. Symlinks on the way,
    /// the last component's too, are followed inside the root, as the job
    /// itself would see them.
    ///
    /// The file is looked up `O_PATH` and checked to be a regular file
    /// before it is opened for reading: an open is what blocks on a FIFO
    /// without a writer, or starts a device. It is then reopened through
    /// its descriptor, so what is read is the inode checked, whatever
    /// happens to the path meanwhile; `O_NONBLOCK` keeps even that open
    /// from waiting.
    pub fn read_file(&self, path: &Path, limit: u64) -> Result<Option<Vec<u8>>, ReadError> {
        let os = |errno| ReadError::Os { path: path.to_owned(), errno };
        let found = match self.open_path(path) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(errno) => return Err(os(errno)),
        };
        let regular = |fd: BorrowedFd<'_>| -> Result<u64, ReadError> {
            let stat = fstat(fd).map_err(os)?;
            if let Some(kind) = kind_of(stat.st_mode) {
                return Err(ReadError::NotRegular { path: path.to_owned(), kind });
            }
            let size = u64::try_from(stat.st_size).unwrap_or(0);
            if size > limit {
                return Err(ReadError::TooLarge { path: path.to_owned(), limit });
            }
            Ok(size)
        };
        regular(found.as_fd())?;
        // The descriptor's own /proc entry, opened by the kernel as the
        // inode it names rather than by following a path (openat2 would
        // refuse it as a magic link, which is what we want for the job's
        // paths but not for our own descriptor).
        let fd = nix::fcntl::open(
            Path::new(&format!("/proc/self/fd/{}", found.as_raw_fd())),
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(os)?;
        let size = regular(fd.as_fd())?;
        // The size may grow after the check: read one byte past the limit
        // to notice, never more.
        let mut text = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        std::fs::File::from(fd)
            .take(limit + 1)
            .read_to_end(&mut text)
            .map_err(|e| os(errno_of(&e)))?;
        if text.len() as u64 > limit {
            return Err(ReadError::TooLarge { path: path.to_owned(), limit });
        }
        Ok(Some(text))
    }

    /// Whether `fd` is this root's own directory (the same inode on the
    /// same device): a mount onto it would cover the whole root.
    pub fn is_root(&self, fd: BorrowedFd<'_>) -> Result<bool, Errno> {
        let (a, b) = (fstat(self.fd.as_fd())?, fstat(fd)?);
        Ok(a.st_dev == b.st_dev && a.st_ino == b.st_ino)
    }

    /// Opens `path` inside the root; with `create`, missing components are
    /// made first (directories, 0755, and the last one as `kind`), each one
    /// with `mkdirat` in its parent as resolved inside the root. A symlink
    /// to a missing path is followed the way the kernel would (inside the
    /// root) and what it points to is made.
    pub fn make(&self, path: &Path, kind: Kind, create: bool) -> Result<OwnedFd, ResolveError> {
        fn os(path: &Path) -> impl FnOnce(Errno) -> ResolveError + '_ {
            move |errno| ResolveError::Os { path: path.to_owned(), errno }
        }
        match self.open_path(path) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) => {}
            Err(errno) => return Err(os(path)(errno)),
        }
        if !create {
            return Err(ResolveError::Missing { path: path.to_owned() });
        }
        let mut path = Path::new("/").join(relative(path));
        let mut links = 0;
        'walk: loop {
            let names: Vec<OsString> = relative(&path)
                .components()
                .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
                .map(|c| c.as_os_str().to_owned())
                .collect();
            let mut parent = self.fd.try_clone().map_err(|e| os(&path)(errno_of(&e)))?;
            let mut prefix = PathBuf::from("/");
            for (i, name) in names.iter().enumerate() {
                prefix.push(name);
                match self.open_path(&prefix) {
                    Ok(fd) => {
                        parent = fd;
                        continue;
                    }
                    Err(Errno::ENOENT) => {}
                    Err(errno) => return Err(os(&prefix)(errno)),
                }
                let last = i + 1 == names.len();
                // Neither call follows a symlink at `name`: an existing
                // entry, link or not, is EEXIST, and the lookup below decides.
                let made = if last && kind == Kind::File {
                    openat(
                        parent.as_fd(),
                        name.as_os_str(),
                        OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_WRONLY
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o644),
                    )
                    .map(drop)
                } else {
                    mkdirat(parent.as_fd(), name.as_os_str(), Mode::from_bits_truncate(0o755))
                };
                match made {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(errno) => return Err(os(&prefix)(errno)),
                }
                match self.open_path(&prefix) {
                    Ok(fd) => parent = fd,
                    // It exists yet does not resolve: a symlink to a path
                    // missing inside the root. Make that path instead, with
                    // the rest of ours below it; the kernel's own limit on
                    // links in one lookup bounds the restarts.
                    Err(Errno::ENOENT) => {
                        let link =
                            readlinkat(parent.as_fd(), name.as_os_str()).map_err(os(&prefix))?;
                        links += 1;
                        if links > MAX_LINKS {
                            return Err(os(&prefix)(Errno::ELOOP));
                        }
                        let mut next = match prefix.parent() {
                            Some(dir) => dir.join(link),
                            None => PathBuf::from(link),
                        };
                        next.extend(&names[i + 1..]);
                        path = next;
                        continue 'walk;
                    }
                    Err(errno) => return Err(os(&prefix)(errno)),
                }
            }
            return Ok(parent);
        }
    }
}

/// Symlinks followed in one lookup before giving up, as the kernel does
/// (`MAXSYMLINKS`).
const MAX_LINKS: u32 = 40;

fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// The path an open descriptor refers to, as the kernel names it (for
/// messages and tests; never to be opened again).
pub fn fd_path(fd: BorrowedFd<'_>) -> std::io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;

    /// A root directory with a sibling `outside` that nothing may touch.
    struct Fixture {
        tmp: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            fs::create_dir_all(tmp.path().join("root/etc")).unwrap();
            fs::create_dir(tmp.path().join("outside")).unwrap();
            Fixture { tmp }
        }
        fn root_dir(&self) -> PathBuf {
            fs::canonicalize(self.tmp.path().join("root")).unwrap()
        }
        fn outside(&self) -> PathBuf {
            fs::canonicalize(self.tmp.path().join("outside")).unwrap()
        }
        fn root(&self) -> Root {
            Root::open(&self.root_dir()).unwrap()
        }
        fn link(&self, at: &str, to: impl AsRef<Path>) {
            symlink(to, self.root_dir().join(at)).unwrap();
        }
        fn outside_is_empty(&self) -> bool {
            fs::read_dir(self.outside()).unwrap().next().is_none()
        }
        /// Where `fd` lies, relative to the root; fails if outside it.
        fn inside(&self, fd: &OwnedFd) -> PathBuf {
            let path = fd_path(fd.as_fd()).unwrap();
            path.strip_prefix(self.root_dir())
                .unwrap_or_else(|_| panic!("{} is outside the root", path.display()))
                .to_owned()
        }
    }

    #[test]
    fn plain_paths_open_and_missing_ones_are_made_only_when_asked() {
        let f = Fixture::new();
        let root = f.root();
        assert_eq!(
            f.inside(&root.make(Path::new("/etc"), Kind::Dir, false).unwrap()),
            Path::new("etc")
        );
        assert_eq!(
            root.make(Path::new("/a/b"), Kind::Dir, false).unwrap_err(),
            ResolveError::Missing { path: "/a/b".into() }
        );
        assert!(!f.root_dir().join("a").exists());
        let fd = root.make(Path::new("/a/b"), Kind::Dir, true).unwrap();
        assert_eq!(f.inside(&fd), Path::new("a/b"));
        let fd = root.make(Path::new("/a/file"), Kind::File, true).unwrap();
        assert!(f.root_dir().join("a/file").is_file());
        assert_eq!(f.inside(&fd), Path::new("a/file"));
    }

    #[test]
    fn absolute_symlinks_start_at_the_root() {
        let f = Fixture::new();
        f.link("mnt", f.outside());
        let fd = f.root().make(Path::new("/mnt/x"), Kind::Dir, true).unwrap();
        let rel = f.outside().strip_prefix("/").unwrap().join("x");
        assert_eq!(f.inside(&fd), rel);
        assert!(f.outside_is_empty());
    }

    #[test]
    fn relative_symlinks_and_dotdot_stop_at_the_root() {
        let f = Fixture::new();
        let climb = "../".repeat(f.root_dir().components().count() + 2);
        f.link("up", &climb);
        f.link("rel", format!("{climb}{}", f.outside().strip_prefix("/").unwrap().display()));
        let root = f.root();
        assert!(root.is_root(root.open_path(Path::new("/up")).unwrap().as_fd()).unwrap());
        assert!(root.is_root(root.open_path(Path::new("/../../..")).unwrap().as_fd()).unwrap());
        let fd = root.make(Path::new("/rel/y"), Kind::Dir, true).unwrap();
        assert!(f.inside(&fd).ends_with("outside/y"));
        let fd = root.make(Path::new("/up/up/etc"), Kind::Dir, false).unwrap();
        assert_eq!(f.inside(&fd), Path::new("etc"));
        assert!(f.outside_is_empty());
    }

    #[test]
    fn an_intermediate_symlink_is_followed_inside() {
        let f = Fixture::new();
        fs::create_dir(f.root_dir().join("opt")).unwrap();
        symlink(f.outside(), f.root_dir().join("opt/link")).unwrap();
        let fd = f.root().make(Path::new("/opt/link/a/b"), Kind::File, true).unwrap();
        assert!(f.inside(&fd).ends_with("outside/a/b"));
        assert!(f.outside_is_empty());
    }

    #[test]
    fn dangling_symlinks_are_followed_inside_and_loops_end() {
        let f = Fixture::new();
        f.link("mnt", "/nowhere/else");
        f.link("rel", "../../var/run");
        f.link("loop1", "loop2");
        f.link("loop2", "/loop1/sub");
        let root = f.root();
        let fd = root.make(Path::new("/mnt/x"), Kind::Dir, true).unwrap();
        assert_eq!(f.inside(&fd), Path::new("nowhere/else/x"));
        let fd = root.make(Path::new("/rel/y"), Kind::File, true).unwrap();
        assert_eq!(f.inside(&fd), Path::new("var/run/y"));
        assert!(matches!(
            root.make(Path::new("/loop1/z"), Kind::Dir, true),
            Err(ResolveError::Os { errno: Errno::ELOOP, .. })
        ));
        assert!(f.outside_is_empty());
    }

    #[test]
    fn magic_links_are_refused() {
        let f = Fixture::new();
        f.link("fd", "/proc/self/cwd");
        // Inside the root /proc does not exist; a real procfs there would
        // still not be followed through its magic links.
        assert_eq!(f.root().open_path(Path::new("/fd")).unwrap_err(), Errno::ENOENT);
        let root = Root::open(Path::new("/")).unwrap();
        assert_eq!(root.open_path(Path::new("/proc/self/cwd")).unwrap_err(), Errno::ELOOP);
    }

    #[test]
    fn files_are_read_through_symlinks_inside_the_root() {
        let f = Fixture::new();
        fs::write(f.outside().join("passwd"), "host").unwrap();
        fs::write(f.root_dir().join("etc/passwd"), "image").unwrap();
        let root = f.root();
        let read = |path: &str| root.read_file(Path::new(path), 16);
        assert_eq!(read("/etc/passwd").unwrap().as_deref(), Some(&b"image"[..]));
        // Absolute and climbing links land inside: on the image's file,
        // or on nothing, never on the host's.
        f.link("abs", f.outside().join("passwd"));
        let climb = "../".repeat(f.root_dir().components().count() + 2);
        f.link(
            "rel",
            format!("{climb}{}/passwd", f.outside().strip_prefix("/").unwrap().display()),
        );
        f.link("up", format!("{climb}etc/passwd"));
        assert_eq!(read("/abs").unwrap(), None);
        assert_eq!(read("/rel").unwrap(), None);
        assert_eq!(read("/up").unwrap().as_deref(), Some(&b"image"[..]));
        assert_eq!(read("/missing/passwd").unwrap(), None);
    }

    #[test]
    fn only_small_regular_files_are_read() {
        let f = Fixture::new();
        let root = f.root();
        let fifo = f.root_dir().join("etc/group");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o644)).unwrap();
        // No writer: an open for reading would wait for one.
        assert_eq!(
            root.read_file(Path::new("/etc/group"), 16).unwrap_err(),
            ReadError::NotRegular { path: "/etc/group".into(), kind: "a FIFO" }
        );
        assert_eq!(
            root.read_file(Path::new("/etc"), 16).unwrap_err(),
            ReadError::NotRegular { path: "/etc".into(), kind: "a directory" }
        );
        fs::write(f.root_dir().join("etc/passwd"), [b'x'; 17]).unwrap();
        assert_eq!(
            root.read_file(Path::new("/etc/passwd"), 16).unwrap_err(),
            ReadError::TooLarge { path: "/etc/passwd".into(), limit: 16 }
        );
        assert_eq!(root.read_file(Path::new("/etc/passwd"), 17).unwrap().unwrap().len(), 17);
        fs::write(f.root_dir().join("etc/passwd"), "").unwrap();
        assert_eq!(root.read_file(Path::new("/etc/passwd"), 0).unwrap(), Some(vec![]));
    }

    #[test]
    fn a_symlink_swapped_in_after_resolving_does_not_redirect_the_descriptor() {
        let f = Fixture::new();
        let root = f.root();
        let fd = root.make(Path::new("/mnt"), Kind::Dir, true).unwrap();
        fs::rename(f.root_dir().join("mnt"), f.root_dir().join("mnt.old")).unwrap();
        f.link("mnt", f.outside());
        // The descriptor is the directory resolved, now named mnt.old; a
        // mount made through it lands there (see tests/container_mounts.rs).
        assert_eq!(f.inside(&fd), Path::new("mnt.old"));
    }
}
