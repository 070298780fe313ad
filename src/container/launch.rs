//! The launcher API: start a run, wait for it, read its status.
//!
//! Everything here blocks. The agent calls it from `spawn_blocking`; the
//! status file, not this process's memory, is the durable truth, so a
//! restarted agent finds its runs again with [`probe`] and
//! [`wait_for_status`].

use std::fs::OpenOptions;
use std::io::{BufReader, ErrorKind, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::unistd::pipe2;

use super::config::ContainerConfig;
use super::error::ContainerError;
use super::nofile::{self, NofileLimit};
use super::procfs::ProcessIdentity;
use super::protocol::{self, ShimReport};
use super::rundir::{temp_path, RunDir};
use super::shim::pidfd_open;
use super::status::RunStatus;

const PROC: &str = "/proc";

/// The shim's file name.
pub const SHIM_EXE: &str = "corral-shim";
/// Where the shim is looked for, relative to the directory of the running
/// `corral`, in this order: beside it (a build tree, a tarball), then the
/// packaged layout (`/usr/bin/corral`, `/usr/libexec/corral/corral-shim`).
pub const SHIM_PLACES: [&str; 2] = [SHIM_EXE, "../libexec/corral/corral-shim"];
/// The shim's option carrying the descriptor limit to start the run with.
pub const SHIM_NOFILE_FLAG: &str = "--nofile";

/// Which shim executable a [`Launcher`] starts.
#[derive(Debug, Clone)]
enum ShimExe {
    /// Executed by path at every launch (tests and benchmarks name the one
    /// they built).
    Path(PathBuf),
    /// The shim found when the launcher was made, held open and executed
    /// through `/proc/self/fd/N`: a package upgrade that replaces the file
    /// does not change which shim this agent starts, so the agent and its
    /// shims stay one version until the agent itself is restarted.
    Pinned { file: Arc<OwnedFd>, path: PathBuf },
    /// Nothing found; every launch fails and says where it looked.
    Missing { looked: Vec<PathBuf> },
}

/// Starts shims.
#[derive(Debug, Clone)]
pub struct Launcher {
    shim_exe: ShimExe,
    /// The descriptor limit shims start with, when this process raised its
    /// own: the one it was started with ([`nofile::inherited`]).
    child_nofile: Option<NofileLimit>,
    /// The `cgroup.procs` file every shim writes itself to before it runs,
    /// so that it leaves the agent's cgroup (see
    /// [`crate::cgroup::delegation`]); `None`: it stays where the agent is.
    shim_cgroup_procs: Option<PathBuf>,
    /// The `cgroup.procs` of the cgroup this process is in, which it
    /// writes itself to (a move to where it is) while the shim starts: see
    /// [`Launcher::with_attach_warm_up`].
    warm_up_procs: Option<PathBuf>,
}

/// The first of [`SHIM_PLACES`] under `exe_dir` that is a file, or every
/// path looked at.
pub fn find_shim(exe_dir: &Path) -> Result<PathBuf, Vec<PathBuf>> {
    let looked: Vec<PathBuf> = SHIM_PLACES.iter().map(|place| exe_dir.join(place)).collect();
    looked.iter().find(|path| path.is_file()).cloned().ok_or(looked)
}

impl ShimExe {
    /// The shim of the running `corral`, found from `/proc/self/exe` (the
    /// file this process was started from, even if it has been replaced
    /// since) and opened now.
    fn of_current_exe() -> ShimExe {
        let exe = match std::fs::read_link("/proc/self/exe") {
            Ok(exe) => exe,
            Err(_) => return ShimExe::Missing { looked: vec![PathBuf::from("/proc/self/exe")] },
        };
        // After an upgrade replaced the running file the link reads
        // "/usr/bin/corral (deleted)": its directory is still the place.
        let dir = exe.parent().unwrap_or(Path::new("/")).to_owned();
        let path = match find_shim(&dir) {
            Ok(path) => path,
            Err(looked) => return ShimExe::Missing { looked },
        };
        match OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_CLOEXEC).open(&path)
        {
            Ok(file) => ShimExe::Pinned { file: Arc::new(file.into()), path },
            Err(_) => ShimExe::Missing { looked: vec![path] },
        }
    }

    /// What `execve` is given, and the `argv[0]` the shim sees.
    fn program(&self) -> Result<(PathBuf, &Path), ContainerError> {
        match self {
            ShimExe::Path(path) => Ok((path.clone(), path)),
            // The descriptor is close-on-exec, but the kernel opens the file
            // it names before closing such descriptors, as fexecve(3) does.
            ShimExe::Pinned { file, path } => {
                Ok((PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())), path))
            }
            ShimExe::Missing { looked } => {
                Err(ContainerError::ShimMissing { looked: looked.clone() })
            }
        }
    }
}

/// Makes the child of `command` move itself into the cgroup of `procs`
/// between fork and exec: before the shim runs at all, so nothing it starts
/// is ever in the agent's cgroup.
fn join_cgroup_before_exec(command: &mut Command, procs: &Path) -> Result<(), ContainerError> {
    use std::os::unix::ffi::OsStrExt;
    let path =
        std::ffi::CString::new(procs.as_os_str().as_bytes()).map_err(|_| ContainerError::Io {
            what: "move shims into the cgroup of",
            path: procs.to_owned(),
            source: std::io::Error::from(ErrorKind::InvalidInput),
        })?;
    let hook = move || {
        // "0" moves the writing process (cgroup v1 and v2).
        let zero = b"0";
        // SAFETY: open, write and close are async-signal-safe, which is all
        // a pre_exec hook may call; `path` is NUL-terminated and owned by
        // the hook, `zero` outlives the write.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let written = libc::write(fd, zero.as_ptr().cast(), zero.len());
            let error = std::io::Error::last_os_error();
            libc::close(fd);
            if written != zero.len() as isize {
                return Err(error);
            }
        }
        Ok(())
    };
    // SAFETY: the hook allocates nothing and calls only async-signal-safe
    // functions (see above).
    unsafe { command.pre_exec(hook) };
    Ok(())
}

/// A started run, as seen by the process that launched it.
///
/// The shim is this process's child: call [`Launched::wait`] (from
/// `spawn_blocking` in async code) to reap it, or it stays a zombie after
/// it exits until this process ends. Dropping a `Launched` does not affect
/// the run.
#[derive(Debug)]
pub struct Launched {
    shim_process: Child,
    run_dir: PathBuf,
    shim: ProcessIdentity,
    init: ProcessIdentity,
}

/// Where a run stands, judged from its run directory alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShimState {
    /// `status.json` exists.
    Finished(RunStatus),
    /// The shim recorded in `shim.pid` is still that same process.
    Running { shim: ProcessIdentity, init: Option<ProcessIdentity> },
    /// No status, and no shim to write one: the shim was killed, or the
    /// machine rebooted.
    Lost,
}

/// Starts `cfg` with the shim installed with the running `corral`.
pub fn launch(cfg: &ContainerConfig) -> Result<Launched, ContainerError> {
    Launcher::of_current_exe().launch(cfg)
}

impl Launcher {
    /// Shims get the descriptor limit this process was started with, also
    /// when it has raised its own since: create the launcher after
    /// [`nofile::raise_to_hard`].
    pub fn new(shim_exe: impl Into<PathBuf>) -> Self {
        Launcher::with_shim(ShimExe::Path(shim_exe.into()))
    }

    /// Starts the shim installed with the running `corral` (see
    /// [`SHIM_PLACES`]), found and held open now: an upgrade that replaces
    /// it on disk leaves this launcher starting the shim of its own
    /// version. When there is none, every launch fails with
    /// [`ContainerError::ShimMissing`], naming where it looked;
    /// [`Launcher::shim`] tells at once.
    pub fn of_current_exe() -> Self {
        Launcher::with_shim(ShimExe::of_current_exe())
    }

    fn with_shim(shim_exe: ShimExe) -> Self {
        Launcher {
            shim_exe,
            child_nofile: nofile::inherited(),
            shim_cgroup_procs: None,
            warm_up_procs: None,
        }
    }

    /// The shim executable this launcher starts, or why there is none.
    pub fn shim(&self) -> Result<&Path, ContainerError> {
        self.shim_exe.program().map(|(_, shown)| shown)
    }

    /// Shims start in the cgroup whose `cgroup.procs` is `procs`.
    pub fn with_shim_cgroup(self, procs: PathBuf) -> Self {
        Launcher { shim_cgroup_procs: Some(procs), ..self }
    }

    /// Every launch writes this process into `procs` (the `cgroup.procs`
    /// of the cgroup it is in, so nothing moves) right after starting the
    /// shim, so that the kernel's grace period for cgroup moves runs while
    /// the shim starts rather than when the container's init joins the
    /// job's cgroups.
    ///
    /// Moving a task between cgroups takes the kernel's global
    /// `cgroup_threadgroup_rwsem` for writing, and the first writer after a
    /// quiet spell waits for an RCU grace period (milliseconds; tens on a
    /// busy machine); writers within the next grace period do not wait.
    /// Init's join is the one move of a launch, and it sits on the path to
    /// the job's start; a move of the launcher to where it already is takes
    /// the same lock and starts the same wait, from the moment the shim is
    /// running, so the wait overlaps with the shim's start (loading, reading
    /// its configuration, forking init). A failed write changes nothing
    /// and is ignored.
    pub fn with_attach_warm_up(self, procs: Option<PathBuf>) -> Self {
        Launcher { warm_up_procs: procs, ..self }
    }

    /// What [`with_attach_warm_up`](Self::with_attach_warm_up) set.
    pub fn attach_warm_up(&self) -> Option<&Path> {
        self.warm_up_procs.as_deref()
    }

    /// Validates `cfg`, writes it to the run directory, starts the shim and
    /// returns once the job's `execve` succeeded, or with the reason it
    /// could not (missing rootfs, unknown user, command not found, ...).
    pub fn launch(&self, cfg: &ContainerConfig) -> Result<Launched, ContainerError> {
        cfg.validate().map_err(|problems| ContainerError::InvalidConfig { problems })?;
        let run = RunDir::new(&cfg.run_dir);
        std::fs::DirBuilder::new().recursive(true).mode(0o750).create(run.root()).map_err(
            |source| ContainerError::Io { what: "create", path: run.root().to_owned(), source },
        )?;
        let io = |what, path: PathBuf| move |source| ContainerError::Io { what, path, source };
        // create_new: a run directory holds one run, ever.
        let mut file =
            match OpenOptions::new().write(true).create_new(true).mode(0o640).open(run.config()) {
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    return Err(ContainerError::RunDirInUse { path: run.root().to_owned() })
                }
                other => other.map_err(io("create", run.config()))?,
            };
        // Compact: read by one program, the shim; pretty printing costs
        // time on every launch and a third more bytes.
        let json = serde_json::to_vec(cfg).expect("config serializes");
        file.write_all(&json).map_err(io("write", run.config()))?;
        drop(file);

        let (program, shown) = self.shim_exe.program()?;
        let (report_r, report_w) = pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| io("create a pipe for", run.root().to_owned())(e.into()))?;
        let output = || if cfg.tee_output { Stdio::inherit() } else { Stdio::null() };
        let shim_process = {
            // The Command holds the pipe's write end; it must be gone before
            // reading, or the read would never see end-of-file.
            let mut command = Command::new(&program);
            command
                .arg0(shown)
                .arg(run.root())
                .stdin(Stdio::from(report_w))
                .stdout(output())
                .stderr(output());
            if let Some(limit) = self.child_nofile {
                // The shim sets it first thing; the container's init and the
                // job inherit it from there.
                command.arg(SHIM_NOFILE_FLAG).arg(limit.to_string());
            }
            // The agent's readiness socket is the agent's alone.
            command.env_remove("NOTIFY_SOCKET");
            if let Some(procs) = &self.shim_cgroup_procs {
                join_cgroup_before_exec(&mut command, procs)?;
            }
            command
                .spawn()
                .map_err(|source| ContainerError::SpawnShim { exe: shown.to_owned(), source })?
        };
        if let Some(procs) = &self.warm_up_procs {
            // "0" is the writing process: it stays where it is.
            let _ = OpenOptions::new().write(true).open(procs).and_then(|mut f| f.write_all(b"0"));
        }
        let mut launched = Launched {
            shim_process,
            run_dir: run.root().to_owned(),
            shim: ProcessIdentity { pid: 0, start_time: 0 },
            init: ProcessIdentity { pid: 0, start_time: 0 },
        };
        match protocol::receive::<ShimReport>(&mut BufReader::new(std::fs::File::from(report_r))) {
            Ok(Some(ShimReport::Started { shim, init })) => {
                launched.shim = shim;
                launched.init = init;
                Ok(launched)
            }
            Ok(Some(ShimReport::Failed(error))) => {
                let _ = launched.shim_process.wait();
                Err(ContainerError::Setup(error))
            }
            Ok(None) | Err(_) => {
                let status = launched.shim_process.wait();
                Err(ContainerError::ShimDied {
                    run_dir: launched.run_dir,
                    missing: "reporting whether the job started",
                    status: format!("{status:?}"),
                })
            }
        }
    }
}

impl Launched {
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The shim, the run's supervisor (a host pid).
    pub fn shim(&self) -> ProcessIdentity {
        self.shim
    }

    /// The container's init (a host pid); signals sent to it reach the job.
    pub fn init(&self) -> ProcessIdentity {
        self.init
    }

    /// Sends `signal` to the container's init, which forwards SIGTERM,
    /// SIGINT, SIGHUP, SIGUSR1 and SIGUSR2 to the job; SIGKILL ends the
    /// whole container.
    pub fn signal(&self, signal: Signal) -> Result<(), ContainerError> {
        signal_process(self.init, signal)
    }

    /// Waits for the shim to exit and returns the status it recorded.
    pub fn wait(mut self) -> Result<RunStatus, ContainerError> {
        let exit = self.shim_process.wait().map_err(|source| ContainerError::Io {
            what: "wait for the shim of",
            path: self.run_dir.clone(),
            source,
        })?;
        read_status(&self.run_dir)?.ok_or_else(|| ContainerError::ShimDied {
            run_dir: self.run_dir.clone(),
            missing: "writing status.json",
            status: exit.to_string(),
        })
    }
}

/// Signals `process` only if it is still the process the identity names:
/// the pidfd pins the pid, and the start time proves it was not reused.
pub fn signal_process(process: ProcessIdentity, signal: Signal) -> Result<(), ContainerError> {
    let fail = |errno: Errno| ContainerError::Signal { pid: process.pid, errno: errno as i32 };
    let pidfd = pidfd_open(process.pid).map_err(fail)?;
    if !process.is_alive(Path::new(PROC)) {
        return Err(fail(Errno::ESRCH));
    }
    // SAFETY: pidfd_send_signal with a null siginfo behaves like kill(2) on
    // the process the descriptor refers to.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(rc).map(drop).map_err(fail)
}

/// The run's status, or `None` if it has not finished (or never started).
pub fn read_status(run_dir: &Path) -> Result<Option<RunStatus>, ContainerError> {
    let path = RunDir::new(run_dir).status();
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ContainerError::BadFile { path, reason: e.to_string() }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(read_unrenamed_status(&path)),
        Err(source) => Err(ContainerError::Io { what: "read", path, source }),
    }
}

/// After power loss the rename of `status.json.tmp` may not have reached
/// the disk although its content, fsynced first, did. A temporary file
/// that parses completely is that status; a partial one (the shim died
/// while writing) is not a status at all.
fn read_unrenamed_status(path: &Path) -> Option<RunStatus> {
    let bytes = std::fs::read(temp_path(path)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn read_pid_file(path: &Path) -> Result<Option<ProcessIdentity>, ContainerError> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.parse().map(Some).map_err(|reason: &str| ContainerError::BadFile {
            path: path.to_owned(),
            reason: reason.into(),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ContainerError::Io { what: "read", path: path.to_owned(), source }),
    }
}

/// Where the run in `run_dir` stands, without being its parent.
pub fn probe(run_dir: &Path) -> Result<ShimState, ContainerError> {
    let run = RunDir::new(run_dir);
    if let Some(status) = read_status(run_dir)? {
        return Ok(ShimState::Finished(status));
    }
    let shim = read_pid_file(&run.shim_pid())?;
    match shim {
        Some(shim) if shim.is_alive(Path::new(PROC)) => {
            Ok(ShimState::Running { shim, init: read_pid_file(&run.init_pid())? })
        }
        // The shim may have written the status and exited between the two
        // reads above.
        _ => Ok(read_status(run_dir)?.map_or(ShimState::Lost, ShimState::Finished)),
    }
}

/// Gives up a start that has a `config.json` but no shim on record, as a
/// restarted agent does: the launcher may have died between starting the
/// shim and the shim writing `shim.pid`, and that shim would go on to start
/// the job. Makes `abandoned` (which a shim checks after writing
/// `shim.pid`), then returns whether a shim is on record after all: if so,
/// it may be going on or giving up, and [`probe`] tells which; if not, no
/// shim will ever start the job from this directory.
pub fn abandon(run_dir: &Path) -> Result<bool, ContainerError> {
    let run = RunDir::new(run_dir);
    let path = run.abandoned();
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(&path)
        .map_err(|source| ContainerError::Io { what: "create", path: path.clone(), source })?;
    Ok(run.shim_pid().exists())
}

/// Blocks until the run in `run_dir` has a status, for a caller that is
/// not the shim's parent (a restarted agent). Uses a pidfd on the shim, so
/// it sleeps in the kernel instead of polling the file.
pub fn wait_for_status(run_dir: &Path) -> Result<RunStatus, ContainerError> {
    let lost = || ContainerError::Lost { run_dir: run_dir.to_owned() };
    loop {
        let shim = match probe(run_dir)? {
            ShimState::Finished(status) => return Ok(status),
            ShimState::Lost => return Err(lost()),
            ShimState::Running { shim, .. } => shim,
        };
        let pidfd = match pidfd_open(shim.pid) {
            Ok(fd) => fd,
            Err(_) => continue, // exited just now; probe again
        };
        // The pidfd could have caught a process that reused the pid.
        if !shim.is_alive(Path::new(PROC)) {
            continue;
        }
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => {
                return Err(ContainerError::Io {
                    what: "wait for the shim of",
                    path: run_dir.to_owned(),
                    source: errno.into(),
                })
            }
        }
        // The shim writes the status before it exits; one more probe
        // returns Finished or Lost.
        return match probe(run_dir)? {
            ShimState::Finished(status) => Ok(status),
            _ => Err(lost()),
        };
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::container::status::{ExitSource, JobExit, LogStats};

    fn sample() -> RunStatus {
        RunStatus {
            job: "j".into(),
            run: "r".into(),
            exit: JobExit::Exited { code: 3 },
            exit_source: ExitSource::Init,
            started_at: SystemTime::UNIX_EPOCH,
            finished_at: SystemTime::UNIX_EPOCH,
            init: ProcessIdentity { pid: 9, start_time: 1 },
            stdout: LogStats::default(),
            stderr: LogStats::default(),
        }
    }

    #[test]
    fn status_is_read_from_a_complete_unrenamed_temp_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        assert_eq!(read_status(dir.path()).unwrap(), None);
        let json = serde_json::to_vec(&sample()).unwrap();
        std::fs::write(temp_path(&run.status()), &json[..json.len() / 2]).unwrap();
        assert_eq!(read_status(dir.path()).unwrap(), None);
        std::fs::write(temp_path(&run.status()), &json).unwrap();
        assert_eq!(read_status(dir.path()).unwrap(), Some(sample()));
    }

    #[test]
    fn the_shim_is_found_beside_corral_first_then_in_libexec() {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("bin");
        let libexec = root.path().join("libexec/corral");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&libexec).unwrap();
        let looked = find_shim(&bin).unwrap_err();
        assert_eq!(looked, [bin.join("corral-shim"), bin.join("../libexec/corral/corral-shim")]);
        let missing = ContainerError::ShimMissing { looked }.to_string();
        assert!(missing.contains(&bin.join("corral-shim").display().to_string()), "{missing}");
        std::fs::write(libexec.join("corral-shim"), "").unwrap();
        assert_eq!(find_shim(&bin).unwrap(), bin.join("../libexec/corral/corral-shim"));
        std::fs::write(bin.join("corral-shim"), "").unwrap();
        assert_eq!(find_shim(&bin).unwrap(), bin.join("corral-shim"));
    }

    #[test]
    fn a_directory_without_pid_files_or_status_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(probe(dir.path()).unwrap(), ShimState::Lost);
        std::fs::write(RunDir::new(dir.path()).shim_pid(), "garbage").unwrap();
        assert!(matches!(probe(dir.path()), Err(ContainerError::BadFile { .. })));
    }
}
