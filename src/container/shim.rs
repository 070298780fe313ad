//! The shim: one per run, the run's supervisor.
//!
//! Started by the launcher as `corral-shim RUN_DIR` (a fresh,
//! single-threaded exec of the small shim binary, so forking it is harmless),
//! it leaves the launcher's session, reads `config.json`, forks the
//! container's init (see [`super::init`]), reports "started" or the setup
//! error to the launcher over its standard input (the launcher passes the
//! write end of a pipe there), then copies the job's output into the
//! capped logs until init exits, and records `status.json`.
//!
//! The shim stays outside the job's namespaces and cgroups (only init
//! joins them), so neither the job's memory limit nor a freeze of its
//! cgroup can stop the one process that records its end. It does not need
//! the launcher: killing the launcher, or the agent restarting, does not
//! affect the run, and the status lands in the run directory regardless.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{fork, pipe2, ForkResult, Pid};

use super::config::{ContainerConfig, IdSpec};
use super::error::SetupError;
use super::init::{self, InitFds, InitPlan};
use super::inroot::{ReadError, Root};
use super::logs::{CappedLog, LogLimits};
use super::mounts;
use super::passwd::{self, CredentialError, Credentials};
use super::procfs::ProcessIdentity;
use super::protocol::{self, InitMessage, ShimReport};
use super::rundir::{atomic_write, retry_until_written, Durability, RunDir};
use super::status::{ExitSource, JobExit, RunStatus};
use crate::vocab::Namespace;

use super::nofile::NofileLimit;

const PROC: &str = "/proc";

fn sys(what: &str) -> impl FnOnce(Errno) -> SetupError + '_ {
    move |errno| SetupError::syscall(what, errno)
}

/// The shim's whole life; returns its exit code (0 when a status was
/// recorded, also for a job that failed). With `nofile`, the run (the shim,
/// its init and the job) has that open-file limit: the one the agent was
/// started with, before it raised its own.
pub fn main(run_dir: &Path, nofile: Option<NofileLimit>) -> u8 {
    // Own session and process group: terminal signals and process-group
    // kills aimed at the launcher do not reach the run.
    let _ = nix::unistd::setsid();
    let _ = nix::unistd::chdir("/");
    // Names in ps and top; the command line still says which run.
    let _ = nix::sys::prctl::set_name(c"corral-shim");
    // SAFETY: ignoring a signal installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let mut report = take_report_pipe();
    let run = RunDir::new(run_dir);
    let started = nofile
        .map_or(Ok(()), |limit| {
            setrlimit(Resource::RLIMIT_NOFILE, limit.soft, limit.hard)
                .map_err(sys("setrlimit(RLIMIT_NOFILE)"))
        })
        .and_then(|()| load(&run))
        .and_then(|(cfg, shim)| start(&run, cfg, shim));
    let mut running = match started {
        Ok(running) => running,
        Err(error) => {
            // A launcher that died meanwhile (EPIPE) hears nothing: the run
            // directory is then the only place to say why.
            let told = report.as_mut().is_some_and(|report| {
                protocol::send(report, &ShimReport::Failed(error.clone())).is_ok()
            });
            if !told {
                note(&run, &format!("setup failed: {error}"));
            }
            return 1;
        }
    };
    if let Some(mut report) = report {
        // A launcher that died meanwhile gets EPIPE here, which is fine: the
        // run goes on and its status will be in the run directory.
        let _ = protocol::send(
            &mut report,
            &ShimReport::Started { shim: running.shim, init: running.init },
        );
    }
    release_free_memory();
    match running.supervise() {
        Ok(()) => 0,
        Err(error) => {
            note(&run, &format!("failed to record the run's status: {error}"));
            1
        }
    }
}

/// Takes the report pipe off standard input and puts /dev/null there.
fn take_report_pipe() -> Option<File> {
    let fd = fcntl(std::io::stdin(), FcntlArg::F_DUPFD_CLOEXEC(3)).ok()?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
    let report = unsafe { File::from_raw_fd(fd) };
    if let Ok(null) = File::open("/dev/null") {
        // SAFETY: dup2 over fd 0 replaces the pipe with /dev/null.
        unsafe { libc::dup2(null.as_raw_fd(), 0) };
    }
    Some(report)
}

/// Appends a line to `shim.log`: the only place left to say something once
/// the launcher is no longer listening.
fn note(run: &RunDir, line: &str) {
    if let Ok(mut log) = OpenOptions::new().create(true).append(true).open(run.shim_log()) {
        let _ = writeln!(log, "{line}");
    }
}

fn load(run: &RunDir) -> Result<(ContainerConfig, ProcessIdentity), SetupError> {
    let path = run.config();
    let text = std::fs::read(&path).map_err(|e| SetupError::file("failed to read", &path, &e))?;
    let cfg = serde_json::from_slice(&text).map_err(|e| SetupError::File {
        what: "malformed".into(),
        path: path.clone(),
        message: e.to_string(),
    })?;
    let me = ProcessIdentity::of(Path::new(PROC), std::process::id() as i32).map_err(|e| {
        SetupError::File { what: "own".into(), path: PROC.into(), message: e.to_string() }
    })?;
    atomic_write(&run.shim_pid(), me.to_string().as_bytes(), Durability::ProcessCrash)
        .map_err(|e| SetupError::file("failed to write", run.shim_pid(), &e))?;
    // Checked only after shim.pid is there, the reverse of the order
    // `abandon` works in: a restarted agent either sees this shim or this
    // shim sees that the agent gave the directory up, and a run never
    // starts twice.
    if run.abandoned().exists() {
        return Err(SetupError::Abandoned { run_dir: run.root().to_owned() });
    }
    Ok((cfg, me))
}

/// The most read of a rootfs's /etc/passwd or /etc/group: far more than
/// any real account database, small enough that a job's image cannot make
/// the shim (outside the job's memory limit) hold much.
const ACCOUNT_FILE_LIMIT: u64 = 4 << 20;

/// Reads `/etc/NAME` (`passwd` or `group`) of a job's root `dir` (the
/// rootfs, or the host's `/`), resolved inside it: the shim runs as root on
/// the host, and a symlink in an image must not make it read (or hang on) a
/// host file. Returns the host path that messages name, and the text; a
/// missing file is empty, so numeric ids still work in a bare rootfs.
fn read_db(dir: &Path, name: &str) -> Result<(PathBuf, String), SetupError> {
    let shown = dir.join("etc").join(name);
    let failed = |what: &str, path: &Path, errno: Errno| SetupError::File {
        what: what.into(),
        path: path.to_owned(),
        message: errno.desc().into(),
    };
    let root = Root::open(dir).map_err(|errno| failed("failed to open", dir, errno))?;
    let text = match root.read_file(&Path::new("/etc").join(name), ACCOUNT_FILE_LIMIT) {
        Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(None) => String::new(),
        Err(ReadError::NotRegular { kind, .. }) => {
            return Err(SetupError::AccountFileNotRegular { path: shown, kind: kind.into() })
        }
        Err(ReadError::TooLarge { limit, .. }) => {
            return Err(SetupError::AccountFileTooLarge { path: shown, limit })
        }
        Err(ReadError::Os { errno, .. }) => return Err(failed("failed to read", &shown, errno)),
    };
    Ok((shown, text))
}

fn resolve_credentials(cfg: &ContainerConfig) -> Result<Credentials, SetupError> {
    let dir = cfg.rootfs.as_deref().unwrap_or(Path::new("/"));
    let (passwd_path, users) = read_db(dir, "passwd")?;
    let (group_path, groups) = read_db(dir, "group")?;
    let users = passwd::parse_passwd(&users);
    let groups = passwd::parse_group(&groups);
    passwd::resolve(cfg.user.as_ref(), cfg.group.as_ref(), &users, &groups).map_err(|e| match e {
        CredentialError::UnknownUser { name } => {
            SetupError::UnknownUser { name, passwd: passwd_path }
        }
        CredentialError::UnknownGroup { name } => {
            SetupError::UnknownGroup { name, group: group_path }
        }
    })
}

/// Refuses gid 0 (with `refuse_root`) and the `refuse_groups`, resolved now,
/// as the user's primary group can be one of them without the job saying so.
fn check_group(cfg: &ContainerConfig, gid: u32) -> Result<(), SetupError> {
    let group = || {
        cfg.group
            .as_ref()
            .map_or_else(|| "the user's primary group".to_owned(), ToString::to_string)
    };
    if cfg.refuse_root && gid == 0 {
        return Err(SetupError::GroupRefused { group: group(), gid });
    }
    if cfg.refuse_groups.is_empty() {
        return Ok(());
    }
    let host = passwd::parse_group(&read_db(Path::new("/"), "group")?.1);
    let rootfs = match &cfg.rootfs {
        Some(root) => passwd::parse_group(&read_db(root, "group")?.1),
        None => Vec::new(),
    };
    match passwd::refused_gids(&cfg.refuse_groups, &[&host, &rootfs])
        .into_iter()
        .find(|(g, _)| *g == gid)
    {
        Some((gid, name)) => Err(SetupError::GroupRefused { group: name, gid }),
        None => Ok(()),
    }
}

/// Refuses a uid or gid inside the agent's dynamic range that did not come
/// by number (see [`ContainerConfig::refuse_ids_in`]).
fn check_dynamic_range(cfg: &ContainerConfig, creds: &Credentials) -> Result<(), SetupError> {
    let Some((first, last)) = cfg.refuse_ids_in else { return Ok(()) };
    let by_name = |spec: Option<&IdSpec>| match spec {
        Some(IdSpec::Id(_)) => None,
        Some(IdSpec::Name(name)) if name.parse::<u32>().is_ok() => None,
        Some(IdSpec::Name(name)) => Some(name.clone()),
        None => Some(String::new()),
    };
    let refused = |what: &str, name: String, id: u32| SetupError::DynamicIdRefused {
        what: what.to_owned(),
        name,
        id,
        first,
        last,
    };
    let user = by_name(cfg.user.as_ref());
    if let Some(name) = user.clone().filter(|_| (first..=last).contains(&creds.uid)) {
        return Err(refused("user", name, creds.uid));
    }
    // Without `group` the gid is the user's: from its passwd entry when it
    // was named, the uid's own number when it came by number.
    let group = match &cfg.group {
        Some(_) => by_name(cfg.group.as_ref()),
        None => user.map(|name| format!("{name}'s primary group")),
    };
    match group {
        Some(name) if (first..=last).contains(&creds.gid) => Err(refused("group", name, creds.gid)),
        _ => Ok(()),
    }
}

fn open_log(path: &Path) -> Result<File, SetupError> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| SetupError::file("failed to create", path, &e))
}

/// A close-on-exec duplicate of one of the shim's standard descriptors.
fn dup_std(fd: impl AsFd) -> Option<File> {
    let fd = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(3)).ok()?;
    // SAFETY: a fresh descriptor from F_DUPFD_CLOEXEC, owned by nobody else.
    Some(unsafe { File::from_raw_fd(fd) })
}

/// Gives the heap's free pages back to the kernel. The shim and init stay
/// resident for the whole run, one pair per run, and what setup allocated
/// (the parsed configuration, account files, mount plans) is freed by the
/// time they only wait: without this those pages stay private to each
/// process until it exits.
pub(crate) fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory of the allocator's own
    // arenas to the kernel; it does not touch memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `pidfd_open(2)`: a descriptor that becomes readable when `pid` exits.
pub(crate) fn pidfd_open(pid: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes two integers and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    Errno::result(fd).map(|fd| {
        // SAFETY: the kernel just handed us this descriptor.
        unsafe { OwnedFd::from_raw_fd(fd as i32) }
    })
}

struct Running {
    run: RunDir,
    cfg: ContainerConfig,
    shim: ProcessIdentity,
    init: ProcessIdentity,
    init_exit: OwnedFd,
    messages: BufReader<File>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    stdout_log: CappedLog<File>,
    stderr_log: CappedLog<File>,
    signals: SignalFd,
    started_at: SystemTime,
}

/// Everything before the job runs. Errors here go back to the launcher.
fn start(run: &RunDir, cfg: ContainerConfig, shim: ProcessIdentity) -> Result<Running, SetupError> {
    if let Some(rootfs) = &cfg.rootfs {
        if !rootfs.is_dir() {
            return Err(SetupError::RootfsMissing { path: rootfs.clone() });
        }
    }
    let host_creds = resolve_credentials(&cfg)?;
    if cfg.refuse_root && host_creds.uid == 0 {
        let user = cfg.user.as_ref().map_or_else(|| "root".to_owned(), ToString::to_string);
        return Err(SetupError::RootRefused { user });
    }
    check_group(&cfg, host_creds.gid)?;
    check_dynamic_range(&cfg, &host_creds)?;
    let userns = cfg.has(Namespace::User);
    let (tee_out, tee_err) = if cfg.tee_output {
        (dup_std(std::io::stdout()), dup_std(std::io::stderr()))
    } else {
        (None, None)
    };
    let limits = LogLimits { head: cfg.log_max_bytes, tail: cfg.log_tail_bytes };
    let log = |path: PathBuf, tee| -> Result<CappedLog<File>, SetupError> {
        Ok(CappedLog::new(path.clone(), open_log(&path)?, tee, limits))
    };
    let stdout_log = log(run.stdout_log(), tee_out)?;
    let stderr_log = log(run.stderr_log(), tee_err)?;
    let (stdout_r, stdout_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    let (stderr_r, stderr_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    let (messages_r, messages_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    let stdin = File::options()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/null")
        .map_err(|e| SetupError::file("failed to open", "/dev/null", &e))?;

    // Blocked before the fork so init inherits the mask and no signal
    // arrives before its signalfd exists.
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&init::supervised_signals()), None)
        .map_err(sys("block signals"))?;
    let mut forwarded = SigSet::empty();
    for signal in init::FORWARDED {
        forwarded.add(signal);
    }
    let signals =
        SignalFd::with_flags(&forwarded, SfdFlags::SFD_CLOEXEC).map_err(sys("signalfd"))?;

    let steps = mounts::plan(&cfg);
    if let (true, Some(rootfs)) = (userns, &cfg.rootfs) {
        mounts::prepare_rootfs(&steps, rootfs)?;
    }
    let plan = InitPlan {
        steps,
        unshare: if userns { CloneFlags::empty() } else { init::unshare_flags(&cfg) },
        join_cgroups: !userns,
        // Inside a user namespace the job's ids are mapped to 0.
        creds: if userns {
            Credentials { uid: 0, gid: 0, ..host_creds.clone() }
        } else {
            host_creds.clone()
        },
        keep_caps: host_creds.uid == 0,
        cfg,
    };
    let fds = InitFds {
        messages: File::from(messages_w),
        stdin: stdin.into(),
        stdout: stdout_w,
        stderr: stderr_w,
    };
    let mut messages = BufReader::new(File::from(messages_r));
    let init_pid = if userns {
        spawn_in_user_namespace(&plan, fds, &host_creds, &mut messages)?
    } else {
        spawn_init(&plan, fds)?
    };
    let watched = watch_init(init_pid);
    let (init_exit, init) = match (protocol::receive::<InitMessage>(&mut messages), watched) {
        (Ok(Some(InitMessage::Started)), Ok(watched)) => watched,
        (message, watched) => {
            // Whatever init is doing, it must not go on without a shim.
            let _ = kill(init_pid, Signal::SIGKILL);
            let status = wait_raw(init_pid);
            return Err(match (message, watched) {
                (Ok(Some(InitMessage::Failed(error))), _) => error,
                (_, Err(error)) => error,
                _ => SetupError::InitDied {
                    detail: format!("{:?}", JobExit::from_wait_status(status)),
                },
            });
        }
    };
    let started_at = SystemTime::now();
    if let Err(e) =
        atomic_write(&run.init_pid(), init.to_string().as_bytes(), Durability::ProcessCrash)
    {
        let _ = kill(init_pid, Signal::SIGKILL);
        wait_raw(init_pid);
        return Err(SetupError::file("failed to write", run.init_pid(), &e));
    }
    Ok(Running {
        run: run.clone(),
        cfg: plan.cfg,
        shim,
        init,
        init_exit,
        messages,
        stdout: Some(stdout_r),
        stderr: Some(stderr_r),
        stdout_log,
        stderr_log,
        signals,
        started_at,
    })
}

/// A pidfd that becomes readable when init exits, and init's identity.
/// Init is an unreaped child, so its pid cannot have been reused yet: both
/// name init and not a successor.
fn watch_init(pid: Pid) -> Result<(OwnedFd, ProcessIdentity), SetupError> {
    let exit = pidfd_open(pid.as_raw()).map_err(sys("pidfd_open init"))?;
    let identity = ProcessIdentity::of(Path::new(PROC), pid.as_raw()).map_err(|e| {
        SetupError::File { what: "init's".into(), path: PROC.into(), message: e.to_string() }
    })?;
    Ok((exit, identity))
}

fn wait_raw(pid: Pid) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes only the status integer we pass.
        let rc = unsafe { libc::waitpid(pid.as_raw(), &mut status, 0) };
        if rc >= 0 || Errno::last() != Errno::EINTR {
            return status;
        }
    }
}

/// Forks init directly; with a pid namespace, init is its PID 1.
fn spawn_init(plan: &InitPlan, fds: InitFds) -> Result<Pid, SetupError> {
    if plan.cfg.has(Namespace::Pid) {
        // Takes effect for the next child only; the shim itself stays in
        // the host's pid namespace.
        unshare(CloneFlags::CLONE_NEWPID).map_err(sys("unshare pid namespace"))?;
    }
    // SAFETY: the shim is single-threaded, so the child may run any code.
    match unsafe { fork() }.map_err(sys("fork init"))? {
        ForkResult::Child => init::run(plan, fds),
        ForkResult::Parent { child } => Ok(child),
    }
}

/// With a user namespace the order matters: cgroups are joined while still
/// root on the host (cgroupfs files are owned by host root, unmapped
/// inside), the user namespace comes first so it owns the others (mounting
/// /proc and sysfs needs that), and the pid namespace needs one more fork.
/// So a short-lived first stage joins, unshares the user namespace, waits
/// for the shim to write its id maps, unshares the rest and clones init
/// with `CLONE_PARENT`, which makes init the shim's child like in the
/// direct case (the shim reaps it and it dies with the shim).
fn spawn_in_user_namespace(
    plan: &InitPlan,
    fds: InitFds,
    host: &Credentials,
    messages: &mut BufReader<File>,
) -> Result<Pid, SetupError> {
    let (go_r, go_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    // SAFETY: the shim is single-threaded, so the child may run any code.
    let stage = match unsafe { fork() }.map_err(sys("fork"))? {
        ForkResult::Child => {
            drop(go_w);
            let mut out = match fds.messages.try_clone() {
                Ok(out) => out,
                // SAFETY: leave without the shim's atexit handlers.
                Err(_) => unsafe { libc::_exit(1) },
            };
            let result = user_namespace_stage(plan, go_r, &mut out);
            let message = match result {
                Ok(()) => {
                    let mut flags = init::unshare_flags(&plan.cfg);
                    if plan.cfg.has(Namespace::Pid) {
                        flags |= CloneFlags::CLONE_NEWPID;
                    }
                    match unshare(flags).map_err(sys("unshare namespaces")) {
                        // SAFETY: still single-threaded.
                        Ok(()) => match unsafe { fork_as_sibling() } {
                            Ok(None) => init::run(plan, fds),
                            Ok(Some(child)) => InitMessage::InitPid { pid: child.as_raw() },
                            Err(errno) => {
                                InitMessage::Failed(SetupError::syscall("fork init", errno))
                            }
                        },
                        Err(error) => InitMessage::Failed(error),
                    }
                }
                Err(error) => InitMessage::Failed(error),
            };
            let _ = protocol::send(&mut out, &message);
            // SAFETY: leave without the shim's atexit handlers and buffers.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(go_r);
    drop(fds);
    let fail = |detail: String| {
        wait_raw(stage);
        Err(SetupError::InitDied { detail })
    };
    match protocol::receive::<InitMessage>(messages) {
        Ok(Some(InitMessage::NeedIdMaps)) => {}
        Ok(Some(InitMessage::Failed(error))) => {
            wait_raw(stage);
            return Err(error);
        }
        other => return fail(format!("first stage said {other:?}")),
    }
    let proc_dir = Path::new(PROC).join(stage.as_raw().to_string());
    for (file, id) in [("uid_map", host.uid), ("gid_map", host.gid)] {
        let path = proc_dir.join(file);
        std::fs::write(&path, format!("0 {id} 1\n"))
            .map_err(|e| SetupError::file("failed to write", &path, &e))?;
    }
    (&File::from(go_w))
        .write_all(b"g")
        .map_err(|e| SetupError::file("failed to signal", "stage", &e))?;
    let pid = match protocol::receive::<InitMessage>(messages) {
        Ok(Some(InitMessage::InitPid { pid })) => Pid::from_raw(pid),
        Ok(Some(InitMessage::Failed(error))) => {
            wait_raw(stage);
            return Err(error);
        }
        other => return fail(format!("first stage said {other:?}")),
    };
    wait_raw(stage);
    Ok(pid)
}

/// Like `fork`, but the child's parent is the caller's parent
/// (`CLONE_PARENT`). Returns the child's pid in the parent, `None` in the
/// child.
///
/// # Safety
///
/// The caller must be single-threaded. The raw clone bypasses glibc's fork
/// wrapper, so the child's cached thread id is the caller's; the child must
/// not rely on it (init does not: it uses no pthread calls, and the job it
/// forks with glibc's fork gets a correct one).
unsafe fn fork_as_sibling() -> Result<Option<Pid>, Errno> {
    // SAFETY: with a null stack, clone duplicates the caller like fork; the
    // caller guarantees no other thread exists whose locks could be held.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match Errno::result(rc)? {
        0 => Ok(None),
        pid => Ok(Some(Pid::from_raw(pid as i32))),
    }
}

fn user_namespace_stage(plan: &InitPlan, go: OwnedFd, out: &mut File) -> Result<(), SetupError> {
    init::join_cgroups(&plan.cfg.cgroup_procs)?;
    unshare(CloneFlags::CLONE_NEWUSER).map_err(sys("unshare user namespace"))?;
    protocol::send(out, &InitMessage::NeedIdMaps)
        .map_err(|e| SetupError::InitDied { detail: format!("cannot reach the shim: {e}") })?;
    let mut go_byte = [0u8; 1];
    if !matches!(File::from(go).read(&mut go_byte), Ok(1)) {
        return Err(SetupError::InitDied { detail: "the shim did not write the id maps".into() });
    }
    // Become the namespace's root, which is the job's ids on the host, so
    // what setup creates (the /dev tmpfs, mount points) is owned by ids
    // that exist inside.
    let root = (nix::unistd::Gid::from_raw(0), nix::unistd::Uid::from_raw(0));
    nix::unistd::setresgid(root.0, root.0, root.0).map_err(sys("setresgid in user namespace"))?;
    nix::unistd::setresuid(root.1, root.1, root.1).map_err(sys("setresuid in user namespace"))
}

impl Running {
    /// Copies output until init exits, then records the status.
    fn supervise(&mut self) -> std::io::Result<()> {
        // Small on purpose: the shim lives as long as the run, and every page
        // of the buffer that a read fills stays private to it. Output beyond
        // a few KiB at a time costs more reads, not lost bytes (the pipe
        // holds 64 KiB).
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let (init_done, signal_ready, out_ready, err_ready) = {
                let mut fds = vec![
                    PollFd::new(self.init_exit.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
                ];
                for pipe in [&self.stdout, &self.stderr].into_iter().flatten() {
                    fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(errno) => return Err(errno.into()),
                }
                let ready =
                    |i: usize| fds.get(i).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
                let out_index = 2;
                let err_index = if self.stdout.is_some() { 3 } else { 2 };
                (
                    ready(0),
                    ready(1),
                    self.stdout.is_some() && ready(out_index),
                    self.stderr.is_some() && ready(err_index),
                )
            };
            if out_ready {
                pump(&mut self.stdout, &mut self.stdout_log, &mut buf);
            }
            if err_ready {
                pump(&mut self.stderr, &mut self.stderr_log, &mut buf);
            }
            if signal_ready {
                if let Ok(Some(info)) = self.signals.read_signal() {
                    if let Ok(signal) = Signal::try_from(info.ssi_signo as i32) {
                        let _ = kill(Pid::from_raw(self.init.pid), signal);
                    }
                }
            }
            if init_done {
                break;
            }
        }
        let init_status = wait_raw(Pid::from_raw(self.init.pid));
        let finished_at = SystemTime::now();
        // With a pid namespace everything that could write is dead now;
        // without one, stragglers may hold the pipes, so take what is
        // there and stop at the first empty read.
        for (pipe, log) in
            [(&mut self.stdout, &mut self.stdout_log), (&mut self.stderr, &mut self.stderr_log)]
        {
            if let Some(fd) = pipe {
                let _ = fcntl(&*fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
            }
            while pipe.is_some() {
                if !pump(pipe, log, &mut buf) {
                    break;
                }
            }
        }
        let mut job = None;
        while let Ok(Some(message)) = protocol::receive::<InitMessage>(&mut self.messages) {
            if let InitMessage::JobExited { wait_status } = message {
                job = Some(JobExit::from_wait_status(wait_status));
            }
        }
        let (exit, exit_source) = match job {
            Some(exit) => (exit, ExitSource::Init),
            None => (JobExit::from_wait_status(init_status), ExitSource::InitDied),
        };
        let status = RunStatus {
            job: self.cfg.job.clone(),
            run: self.cfg.run.clone(),
            exit,
            exit_source,
            started_at: self.started_at,
            finished_at,
            init: self.init,
            stdout: self.stdout_log.finish(&mut buf),
            stderr: self.stderr_log.finish(&mut buf),
        };
        let json = serde_json::to_vec_pretty(&status).map_err(std::io::Error::other)?;
        // The status exists only in this process until it is written: on a
        // full disk the shim stays alive with it, and the agent, which
        // waits for the shim's exit before reading the file, sees a run
        // still ending rather than one that ended without a trace.
        let path = self.run.status();
        retry_until_written(
            || atomic_write(&path, &json, Durability::PowerLoss),
            std::thread::sleep,
            |e, attempt| {
                if attempt == 1 || attempt % 100 == 0 {
                    note(
                        &self.run,
                        &format!(
                            "cannot write {} (try {attempt}): {e}; \
                             keeping the exit status and trying again",
                            path.display()
                        ),
                    );
                }
            },
        )?;
        // Only now: until the status says where the tail is in the log,
        // the segments are how a reader finds it.
        self.stdout_log.remove_segments();
        self.stderr_log.remove_segments();
        Ok(())
    }
}

/// Moves one chunk from a pipe into its log; false when nothing came
/// (end of file, or nothing ready on a non-blocking pipe).
fn pump(pipe: &mut Option<OwnedFd>, log: &mut CappedLog<File>, buf: &mut [u8]) -> bool {
    let Some(fd) = pipe else { return false };
    match nix::unistd::read(&*fd, buf) {
        Ok(0) => {
            *pipe = None;
            false
        }
        Ok(n) => {
            log.write(&buf[..n]);
            true
        }
        Err(Errno::EINTR) => true,
        Err(Errno::EAGAIN) => false,
        Err(_) => {
            *pipe = None;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(user: Option<IdSpec>, group: Option<IdSpec>) -> ContainerConfig {
        let mut cfg =
            ContainerConfig::new("j", "j-1", Path::new("/state/runs/j-1"), &["/bin/true"]);
        cfg.user = user;
        cfg.group = group;
        cfg.refuse_ids_in = Some((70000, 70009));
        cfg
    }

    fn creds(uid: u32, gid: u32) -> Credentials {
        Credentials { uid, gid, home: None }
    }

    #[test]
    fn ids_inside_the_dynamic_range_come_by_number_or_not_at_all() {
        let name = |n: &str| Some(IdSpec::Name(n.into()));
        // The job's own dynamic uid, by number, with its gid.
        let own = cfg(Some(IdSpec::Id(70003)), Some(IdSpec::Id(70003)));
        assert!(check_dynamic_range(&own, &creds(70003, 70003)).is_ok());
        // A rootfs account mapped into the range.
        let err = check_dynamic_range(&cfg(name("app"), None), &creds(70001, 100)).unwrap_err();
        assert!(
            matches!(err, SetupError::DynamicIdRefused { ref what, id: 70001, .. } if what == "user")
        );
        assert!(err.to_string().contains("\"app\" resolves to 70001"), "{err}");
        // Its primary group, or a named group, mapped into the range.
        let err = check_dynamic_range(&cfg(name("app"), None), &creds(1000, 70002)).unwrap_err();
        assert!(err.to_string().contains("\"app's primary group\""), "{err}");
        let named_group = cfg(Some(IdSpec::Id(1000)), name("grp"));
        assert!(check_dynamic_range(&named_group, &creds(1000, 70002)).is_err());
        // Outside the range, or no range: nothing to say.
        assert!(check_dynamic_range(&cfg(name("app"), name("grp")), &creds(1000, 1000)).is_ok());
        let unchecked = ContainerConfig { refuse_ids_in: None, ..cfg(name("app"), None) };
        assert!(check_dynamic_range(&unchecked, &creds(70001, 70001)).is_ok());
    }
}
