//! The container's init: the first process inside the namespaces.
//!
//! It is forked from the (single-threaded) shim without an `execve`, so it
//! is ordinary Rust running in a copy of the shim; with one thread there is
//! no lock another thread could have held across the fork. It
//!
//! 1. moves itself into the run's cgroups before anything else, so the job
//!    it forks later never runs outside them;
//! 2. unshares the remaining namespaces, sets the hostname, brings up `lo`,
//!    builds the filesystem and checks workdir and command;
//! 3. forks the job, which drops credentials and `execve`s, and learns
//!    through a close-on-exec pipe whether that worked;
//! 4. then only reaps: every orphan in the container is its child (PID 1 of
//!    the pid namespace, or a child subreaper without one), so nothing
//!    stays a zombie. SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2 sent to
//!    it are forwarded to the job.
//!
//! When the job ends init tells the shim the exact wait status and exits
//! with the shell-style code (a PID 1 cannot re-raise a fatal signal on
//! itself: the kernel ignores it). Its exit tears the pid namespace down,
//! killing anything the job left behind.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::{SfdFlags, SigSet, SignalFd};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe2, ForkResult, Pid};

use super::config::ContainerConfig;
use super::error::SetupError;
use super::exec::{self, JobExec, JobStdio};
use super::mounts::{self, MountStep};
use super::passwd::Credentials;
use super::protocol::{self, InitMessage};
use super::status::JobExit;
use crate::vocab::Namespace;

/// Signals init passes on to the job.
pub const FORWARDED: [Signal; 5] =
    [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2];

/// The signals blocked from before init is forked, so none is lost before
/// init reads them from its signalfd: the forwarded ones and SIGCHLD.
pub fn supervised_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in FORWARDED {
        set.add(signal);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// What init does, decided by the shim before the fork.
pub struct InitPlan {
    pub cfg: ContainerConfig,
    /// The ids the job switches to, as seen inside the container.
    pub creds: Credentials,
    /// Whether the job keeps `cfg.capabilities` (its configured user is root).
    pub keep_caps: bool,
    pub steps: Vec<MountStep>,
    /// Join the cgroups here (not done already by a user-namespace stage).
    pub join_cgroups: bool,
    /// Namespaces init unshares itself (not done already by the shim).
    pub unshare: CloneFlags,
}

/// Descriptors init inherits from the shim.
pub struct InitFds {
    /// Write end of the message pipe to the shim.
    pub messages: File,
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Writes "0" into each `cgroup.procs`, moving the calling process.
pub fn join_cgroups(procs: &[PathBuf]) -> Result<(), SetupError> {
    for path in procs {
        OpenOptions::new().write(true).open(path).and_then(|mut f| f.write_all(b"0")).map_err(
            |e| SetupError::JoinCgroup {
                path: path.clone(),
                errno: e.raw_os_error().unwrap_or(libc::EIO),
            },
        )?;
    }
    Ok(())
}

/// The namespaces of `cfg` as clone flags, leaving out pid and user, which
/// need a fork to take effect and are handled by the shim.
pub fn unshare_flags(cfg: &ContainerConfig) -> CloneFlags {
    let mut flags = CloneFlags::empty();
    for (ns, flag) in [
        (Namespace::Mount, CloneFlags::CLONE_NEWNS),
        (Namespace::Uts, CloneFlags::CLONE_NEWUTS),
        (Namespace::Ipc, CloneFlags::CLONE_NEWIPC),
        (Namespace::Net, CloneFlags::CLONE_NEWNET),
        (Namespace::Cgroup, CloneFlags::CLONE_NEWCGROUP),
    ] {
        if cfg.has(ns) {
            flags |= flag;
        }
    }
    flags
}

fn sys(what: &str) -> impl FnOnce(Errno) -> SetupError + '_ {
    move |errno| SetupError::syscall(what, errno)
}

fn cstring(what: &str, s: impl Into<Vec<u8>>) -> Result<CString, SetupError> {
    // Config validation refuses NUL bytes; this only guards the invariant.
    CString::new(s).map_err(|_| SetupError::syscall(format!("{what} contains NUL"), Errno::EINVAL))
}

/// Everything up to the fork of the job.
fn setup(plan: &InitPlan) -> Result<JobExec, SetupError> {
    let _ = nix::sys::prctl::set_name(c"corral-init");
    // Without its shim nobody would record the run: end it instead.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(sys("set parent-death signal"))?;
    if plan.join_cgroups {
        join_cgroups(&plan.cfg.cgroup_procs)?;
    }
    if !plan.unshare.is_empty() {
        unshare(plan.unshare).map_err(sys("unshare namespaces"))?;
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    nix::sys::prctl::set_child_subreaper(true).map_err(sys("become child subreaper"))?;
    let cfg = &plan.cfg;
    if cfg.has(Namespace::Uts) {
        nix::unistd::sethostname(cfg.effective_hostname()).map_err(sys("sethostname"))?;
    }
    if cfg.has(Namespace::Net) {
        super::net::loopback_up()?;
    }
    let mut filesystem = mounts::Applier::new()?;
    for step in &plan.steps {
        filesystem.apply(step)?;
    }

    let workdir = cfg.workdir.clone().unwrap_or_else(|| PathBuf::from("/"));
    if !workdir.is_dir() {
        return Err(SetupError::WorkdirMissing { path: workdir });
    }
    let env = exec::job_env(cfg, &plan.creds);
    // Relative names (`./run.sh`, or an empty PATH entry) are relative to
    // the workdir, where the job will be when it calls execve.
    let path = exec::resolve_command(&cfg.command[0], &env["PATH"], |p| {
        exec::is_executable_file(&workdir.join(p))
    })
    .map(|p| workdir.join(p))
    .ok_or_else(|| SetupError::CommandNotFound {
        command: cfg.command[0].clone(),
        place: match &cfg.rootfs {
            Some(rootfs) => format!("rootfs {}", rootfs.display()),
            None => "the host".into(),
        },
        path: env["PATH"].clone(),
    })?;
    Ok(JobExec {
        path: cstring("command", path.into_os_string().into_encoded_bytes())?,
        argv: cfg
            .command
            .iter()
            .map(|a| cstring("argument", a.as_str()))
            .collect::<Result<_, _>>()?,
        envp: env
            .iter()
            .map(|(k, v)| cstring("environment", format!("{k}={v}")))
            .collect::<Result<_, _>>()?,
        workdir: cstring("workdir", workdir.into_os_string().into_encoded_bytes())?,
        creds: plan.creds.clone(),
        keep_caps: if plan.keep_caps { cfg.capabilities.clone() } else { Default::default() },
        rlimits: cfg.rlimits.clone(),
    })
}

/// Forks the job and waits until its `execve` has succeeded or failed.
fn start_job(job: &JobExec, stdio: &JobStdio<'_>) -> Result<Pid, SetupError> {
    let (errors_r, errors_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    // SAFETY: this process is single-threaded (a fork of the single-threaded
    // shim), so the child may run any code, not just async-signal-safe code.
    match unsafe { fork() }.map_err(sys("fork the job"))? {
        ForkResult::Child => {
            drop(errors_r);
            exec::run_job(job, stdio, File::from(errors_w))
        }
        ForkResult::Parent { child } => {
            drop(errors_w);
            let mut report = Vec::new();
            let _ = File::from(errors_r).read_to_end(&mut report);
            if report.is_empty() {
                return Ok(child);
            }
            let _ = waitpid(child, None);
            let mut input = &report[..];
            Err(match protocol::receive::<InitMessage>(&mut input) {
                Ok(Some(InitMessage::Failed(error))) => error,
                other => SetupError::InitDied { detail: format!("job reported {other:?}") },
            })
        }
    }
}

/// Reaps every child until the job is among them; returns its wait status.
fn supervise(job: Pid, signals: &SignalFd) -> i32 {
    loop {
        let info = match signals.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) | Err(Errno::EINTR) => continue,
            // Cannot happen for a valid signalfd; reap blindly rather than
            // leave the job unsupervised.
            Err(_) => {
                if let Some(status) = reap(job) {
                    return status;
                }
                continue;
            }
        };
        let signo = info.ssi_signo as i32;
        if signo == libc::SIGCHLD {
            if let Some(status) = reap(job) {
                return status;
            }
        } else if let Ok(signal) = Signal::try_from(signo) {
            let _ = kill(job, signal);
        }
    }
}

/// Collects every exited child (SIGCHLDs coalesce, so one signal can stand
/// for many); returns the job's raw wait status if the job was one of them.
fn reap(job: Pid) -> Option<i32> {
    let mut job_status = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only the status integer we pass.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return job_status;
        }
        if pid == job.as_raw() {
            job_status = Some(status);
        }
    }
}

/// Init's whole life; never returns.
pub fn run(plan: &InitPlan, fds: InitFds) -> ! {
    let InitFds { messages, stdin, stdout, stderr } = fds;
    let mut messages = messages;
    let code = match run_inner(
        plan,
        &mut messages,
        JobStdio { stdin: &stdin, stdout: &stdout, stderr: &stderr },
    ) {
        Ok(wait_status) => {
            let _ = protocol::send(&mut messages, &InitMessage::JobExited { wait_status });
            JobExit::from_wait_status(wait_status).code()
        }
        Err(error) => {
            let _ = protocol::send(&mut messages, &InitMessage::Failed(error));
            1
        }
    };
    // SAFETY: _exit skips the shim's atexit handlers and stdio buffers,
    // which this forked copy must not run or flush.
    unsafe { libc::_exit(code) }
}

fn run_inner(plan: &InitPlan, messages: &mut File, stdio: JobStdio<'_>) -> Result<i32, SetupError> {
    let job = setup(plan)?;
    let signals = SignalFd::with_flags(&supervised_signals(), SfdFlags::SFD_CLOEXEC)
        .map_err(sys("signalfd"))?;
    let pid = start_job(&job, &stdio)?;
    // From here on init only reaps: what setup allocated is done with.
    drop(job);
    super::shim::release_free_memory();
    // Init's copies of the job's output pipes are closed so the shim sees
    // end-of-file once the job and everything it started are gone.
    for fd in [stdio.stdout, stdio.stderr] {
        // SAFETY: dup2 of /dev/null (stdin) over a pipe descriptor that only
        // the job needed; this keeps the number taken but drops the pipe.
        unsafe { libc::dup2(stdio.stdin.as_raw_fd(), fd.as_raw_fd()) };
    }
    // The parent-death signal cannot cover a shim that died before init
    // asked for it; a failed write here (EPIPE) catches that case.
    if protocol::send(messages, &InitMessage::Started).is_err() {
        let _ = kill(pid, Signal::SIGKILL);
    }
    Ok(supervise(pid, &signals))
}
