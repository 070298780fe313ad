//! The job process: the last steps between the container's init forking it
//! and `execve`. Credentials and capabilities are dropped here, in the job,
//! so init keeps the privileges it needs to supervise.
//!
//! Also the pure helpers that decide what the job gets: its environment
//! and the resolved path of its command.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::unistd::{Gid, Uid};

use super::caps;
use super::config::{ContainerConfig, Rlimit, RlimitResource, DEFAULT_PATH};
use super::error::SetupError;
use super::passwd::Credentials;
use super::protocol::{self, InitMessage};
use crate::vocab::Capability;

/// The job's environment: the config's variables exactly, plus `PATH` and
/// `HOME` when missing, plus `CORRAL_JOB` and `CORRAL_RUN` always.
pub fn job_env(cfg: &ContainerConfig, creds: &Credentials) -> BTreeMap<String, String> {
    let mut env = cfg.env.clone();
    env.entry("PATH".into()).or_insert_with(|| DEFAULT_PATH.into());
    env.entry("HOME".into()).or_insert_with(|| creds.home.clone().unwrap_or_else(|| "/".into()));
    env.insert("CORRAL_JOB".into(), cfg.job.clone());
    env.insert("CORRAL_RUN".into(), cfg.run.clone());
    env
}

/// Finds the program to execute, the way `execvp` does: a name with a `/`
/// is taken as is, any other is looked up in each `PATH` entry in turn.
pub fn resolve_command(
    name: &str,
    path_var: &str,
    is_executable: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return is_executable(&path).then_some(path);
    }
    path_var
        .split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(name))
        .find(|candidate| is_executable(candidate))
}

/// A regular file with an execute bit, as seen from the current root.
pub fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Everything the job child needs, prepared before the fork.
pub struct JobExec {
    pub path: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub workdir: CString,
    pub creds: Credentials,
    pub keep_caps: BTreeSet<Capability>,
    pub rlimits: Vec<Rlimit>,
}

/// The job's standard descriptors, as init holds them.
pub struct JobStdio<'a> {
    pub stdin: &'a OwnedFd,
    pub stdout: &'a OwnedFd,
    pub stderr: &'a OwnedFd,
}

fn resource(r: RlimitResource) -> Resource {
    match r {
        RlimitResource::Nofile => Resource::RLIMIT_NOFILE,
        RlimitResource::Nproc => Resource::RLIMIT_NPROC,
        RlimitResource::Core => Resource::RLIMIT_CORE,
        RlimitResource::Stack => Resource::RLIMIT_STACK,
        RlimitResource::Cpu => Resource::RLIMIT_CPU,
        RlimitResource::Memlock => Resource::RLIMIT_MEMLOCK,
        RlimitResource::Fsize => Resource::RLIMIT_FSIZE,
        RlimitResource::Data => Resource::RLIMIT_DATA,
        RlimitResource::As => Resource::RLIMIT_AS,
    }
}

fn sys(what: &str) -> impl FnOnce(Errno) -> SetupError + '_ {
    move |errno| SetupError::syscall(what, errno)
}

fn dup_onto(fd: &OwnedFd, target: RawFd) -> Result<(), SetupError> {
    // SAFETY: dup2 only manipulates the descriptor table; `fd` is open.
    let rc = unsafe { libc::dup2(fd.as_raw_fd(), target) };
    Errno::result(rc).map(drop).map_err(sys("dup2 job stdio"))
}

/// Undoes what the job must not inherit from its supervisors: blocked
/// signals (init blocks the ones it forwards) and ignored ones (Rust
/// runtimes ignore SIGPIPE; ignored dispositions survive `execve`).
fn reset_signals() -> Result<(), SetupError> {
    for signal in 1..libc::SIGRTMAX() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: setting the default disposition installs no handler code.
        // Signals glibc reserves for itself fail with EINVAL; that is fine.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(sys("unblock signals"))
}

fn prepare(job: &JobExec, stdio: &JobStdio<'_>) -> Result<(), SetupError> {
    reset_signals()?;
    dup_onto(stdio.stdin, 0)?;
    dup_onto(stdio.stdout, 1)?;
    dup_onto(stdio.stderr, 2)?;
    // Init runs with umask 0 so device nodes get exact modes; jobs get the
    // conventional default.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    for limit in &job.rlimits {
        setrlimit(resource(limit.resource), limit.soft, limit.hard)
            .map_err(|e| SetupError::syscall(format!("setrlimit {:?}", limit.resource), e))?;
    }
    let keep = if job.creds.uid == 0 { job.keep_caps.clone() } else { Default::default() };
    // Bounding set first: dropping from it needs CAP_SETPCAP, gone after
    // the uid change.
    caps::drop_bounding_set(&keep).map_err(sys("drop capabilities from the bounding set"))?;
    caps::clear_ambient().map_err(sys("clear ambient capabilities"))?;
    nix::unistd::setgroups(&[]).map_err(sys("clear supplementary groups"))?;
    let (uid, gid) = (Uid::from_raw(job.creds.uid), Gid::from_raw(job.creds.gid));
    nix::unistd::setresgid(gid, gid, gid).map_err(sys("setresgid"))?;
    // Leaving uid 0 for good clears permitted and effective capabilities
    // (no PR_SET_KEEPCAPS); set_current below makes that explicit and also
    // trims a root job to its kept set.
    nix::unistd::setresuid(uid, uid, uid).map_err(sys("setresuid"))?;
    caps::set_current(&keep).map_err(sys("set capabilities"))?;
    nix::sys::prctl::set_no_new_privs().map_err(sys("set no_new_privs"))?;
    // After the uid change, so a directory the job user may not enter is
    // reported rather than silently entered as root.
    nix::unistd::chdir(job.workdir.as_c_str()).map_err(|errno| SetupError::Syscall {
        what: format!("chdir {}", job.workdir.to_string_lossy()),
        errno: errno as i32,
    })?;
    // Nothing of the supervisors' descriptors may leak into the job; 0-2
    // were just set up, and the error pipe must close on exec anyway.
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only flags descriptors.
    let rc = unsafe { libc::close_range(3, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) };
    Errno::result(rc).map(drop).map_err(sys("close_range"))
}

/// Runs in the forked job process; never returns. A failure before or in
/// `execve` is written to `errors` (close-on-exec, so a successful exec
/// shows up at init as end-of-file) and ends the process with 127.
pub fn run_job(job: &JobExec, stdio: &JobStdio<'_>, mut errors: std::fs::File) -> ! {
    let error = match prepare(job, stdio) {
        Err(e) => e,
        Ok(()) => {
            let errno = nix::unistd::execve(&job.path, &job.argv, &job.envp).unwrap_err();
            SetupError::Exec { path: job.path.to_string_lossy().into_owned(), errno: errno as i32 }
        }
    };
    let _ = protocol::send(&mut errors, &InitMessage::Failed(error));
    let _ = errors.flush();
    // SAFETY: _exit skips atexit handlers and stdio flushing, which belong
    // to the shim this process was forked from.
    unsafe { libc::_exit(127) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_is_exact_plus_the_four() {
        let mut cfg = ContainerConfig::new("etl", "r7", Path::new("/r"), &["x"]);
        cfg.env.insert("TZ".into(), "UTC".into());
        let creds = Credentials { uid: 1000, gid: 1000, home: Some("/home/etl".into()) };
        let env = job_env(&cfg, &creds);
        let keys: Vec<_> = env.keys().map(String::as_str).collect();
        assert_eq!(keys, ["CORRAL_JOB", "CORRAL_RUN", "HOME", "PATH", "TZ"]);
        assert_eq!(env["PATH"], DEFAULT_PATH);
        assert_eq!(env["HOME"], "/home/etl");
        assert_eq!(env["CORRAL_RUN"], "r7");
    }

    #[test]
    fn configured_path_and_home_win_but_corral_vars_do_not() {
        let mut cfg = ContainerConfig::new("etl", "r7", Path::new("/r"), &["x"]);
        cfg.env.insert("PATH".into(), "/opt/bin".into());
        cfg.env.insert("HOME".into(), "/srv".into());
        cfg.env.insert("CORRAL_JOB".into(), "spoofed".into());
        let env = job_env(&cfg, &Credentials { uid: 0, gid: 0, home: None });
        assert_eq!((env["PATH"].as_str(), env["HOME"].as_str()), ("/opt/bin", "/srv"));
        assert_eq!(env["CORRAL_JOB"], "etl");
    }

    #[test]
    fn home_defaults_to_root_dir() {
        let cfg = ContainerConfig::new("etl", "r7", Path::new("/r"), &["x"]);
        assert_eq!(job_env(&cfg, &Credentials { uid: 5, gid: 5, home: None })["HOME"], "/");
    }

    #[test]
    fn resolves_like_execvp() {
        let exists = |p: &Path| p == Path::new("/usr/bin/python3") || p == Path::new("./tool");
        assert_eq!(
            resolve_command("python3", "/bin:/usr/bin", exists),
            Some("/usr/bin/python3".into())
        );
        assert_eq!(resolve_command("python3", "/bin", exists), None);
        assert_eq!(
            resolve_command("/usr/bin/python3", "", exists),
            Some("/usr/bin/python3".into())
        );
        assert_eq!(resolve_command("tool", "/bin::/x", exists), Some("./tool".into()));
        assert_eq!(resolve_command("./missing", "/bin", exists), None);
    }
}
