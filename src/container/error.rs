//! Errors of the container layer.
//!
//! [`SetupError`] happens inside the shim or the container's init, before
//! the job runs; it crosses process boundaries as JSON, so it carries plain
//! data (paths, an errno number) rather than `io::Error`s. [`ContainerError`]
//! is what the launcher API returns.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;
use serde::{Deserialize, Serialize};

use super::config::ConfigProblem;

fn describe(errno: &i32) -> &'static str {
    Errno::from_raw(*errno).desc()
}

/// Why a container did not get as far as running its job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum SetupError {
    #[error(
        "the run directory {run_dir} was given up by a restarted agent before this shim \
         reached it; the run is started again elsewhere"
    )]
    Abandoned { run_dir: PathBuf },
    #[error("rootfs {path} does not exist or is not a directory")]
    RootfsMissing { path: PathBuf },
    #[error("command {command:?} not found in {place} (PATH={path})")]
    CommandNotFound { command: String, place: String, path: String },
    #[error("workdir {path} does not exist or is not a directory in the container")]
    WorkdirMissing { path: PathBuf },
    #[error("unknown user {name:?} (looked up in {passwd})")]
    UnknownUser { name: String, passwd: PathBuf },
    #[error("unknown group {name:?} (looked up in {group})")]
    UnknownGroup { name: String, group: PathBuf },
    #[error(
        "{path} is {kind}, not a regular file: user and group names are read from it \
         (make it a regular file, or remove it and give the job numeric ids)"
    )]
    AccountFileNotRegular { path: PathBuf, kind: String },
    #[error("{path} is larger than {limit} bytes, the most read to look up user and group names")]
    AccountFileTooLarge { path: PathBuf, limit: u64 },
    #[error("user {user:?} is uid 0 (root), and root jobs are not allowed here")]
    RootRefused { user: String },
    #[error(
        "{what} {name:?} resolves to {id}, inside the dynamic_users range {first}-{last} whose \
         ids belong to the jobs the agent gives them; use an account outside the range"
    )]
    DynamicIdRefused { what: String, name: String, id: u32, first: u32, last: u32 },
    #[error(
        "its group resolves to gid {gid}, which is {}, and such groups are not allowed here",
        if *gid == 0 { "root's".to_owned() } else { format!("the privileged group {group:?}") }
    )]
    GroupRefused { group: String, gid: u32 },
    #[error(
        "mount target {target} does not exist on the host: without a rootfs a job mounts only \
         over existing paths (create it on the host, or put it under a tmpfs mount of the job)"
    )]
    MountTargetNotOnHost { target: PathBuf },
    #[error(
        "mount target {target} does not exist in the job's mount at {mount}, and mount points \
         are made only in the rootfs and in tmpfs mounts (create it in that mount's source)"
    )]
    MountTargetInMount { target: PathBuf, mount: PathBuf },
    #[error("mount target {target} resolves to the root of the rootfs (through a symlink)")]
    MountTargetIsRoot { target: PathBuf },
    #[error("failed to write 0 to {path}: {}", describe(errno))]
    JoinCgroup { path: PathBuf, errno: i32 },
    #[error("{what} {path}: {message}")]
    File { what: String, path: PathBuf, message: String },
    #[error("{what}: {}", describe(errno))]
    Syscall { what: String, errno: i32 },
    #[error("failed to execute {path}: {}", describe(errno))]
    Exec { path: String, errno: i32 },
    #[error("container init ended during setup: {detail}")]
    InitDied { detail: String },
}

impl SetupError {
    pub(crate) fn syscall(what: impl Into<String>, errno: Errno) -> Self {
        SetupError::Syscall { what: what.into(), errno: errno as i32 }
    }

    pub(crate) fn file(what: &str, path: impl Into<PathBuf>, err: &io::Error) -> Self {
        SetupError::File { what: what.to_owned(), path: path.into(), message: err.to_string() }
    }
}

/// Errors of the launcher API.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("invalid container config: {}", join(problems))]
    InvalidConfig { problems: Vec<ConfigProblem> },
    #[error("run directory {path} already holds a run")]
    RunDirInUse { path: PathBuf },
    #[error("failed to {what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: io::Error },
    #[error(
        "no corral-shim to start runs with (looked for {}): it is installed beside the corral \
         binary, or in libexec/corral/ beside the binary's directory",
        paths(looked)
    )]
    ShimMissing { looked: Vec<PathBuf> },
    #[error("failed to start the shim {exe}: {source}")]
    SpawnShim { exe: PathBuf, source: io::Error },
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("the shim of {run_dir} ended without {missing} ({status})")]
    ShimDied { run_dir: PathBuf, missing: &'static str, status: String },
    #[error("malformed {path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    #[error("run {run_dir} is lost: its shim is gone and left no status")]
    Lost { run_dir: PathBuf },
    #[error("failed to signal the container init (pid {pid}): {}", describe(errno))]
    Signal { pid: i32, errno: i32 },
}

fn paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

fn join(problems: &[ConfigProblem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_errors_read_well_and_cross_processes() {
        let err = SetupError::Exec { path: "/bin/nope".into(), errno: libc::ENOENT };
        assert_eq!(err.to_string(), "failed to execute /bin/nope: No such file or directory");
        let json = serde_json::to_string(&err).unwrap();
        assert_eq!(serde_json::from_str::<SetupError>(&json).unwrap(), err);
    }

    #[test]
    fn config_problems_are_all_listed() {
        let err = ContainerError::InvalidConfig {
            problems: vec![ConfigProblem::EmptyCommand, ConfigProblem::ZeroLogCap],
        };
        assert_eq!(
            err.to_string(),
            "invalid container config: command is empty; log_max_bytes must be at least 1"
        );
    }
}
