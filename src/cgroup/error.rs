//! Errors of the cgroup layer.
//!
//! Every variant that comes from touching the filesystem carries the path, and
//! writes carry the value too, so a log line alone says what was attempted.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::plan::PlanError;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("failed to read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },

    #[error("failed to write {value:?} to {path}: {source}")]
    Write { path: PathBuf, value: String, source: io::Error },

    #[error("failed to create cgroup {path}: {source}")]
    Create { path: PathBuf, source: io::Error },

    #[error("failed to remove cgroup {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },

    #[error("unexpected content in {path}: {reason}")]
    Parse { path: PathBuf, reason: String },

    #[error("no usable cgroup hierarchy is mounted according to {mountinfo}")]
    NoHierarchy { mountinfo: PathBuf },

    #[error("invalid cgroup name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },

    #[error(
        "own cgroup {cgroup:?} is outside the mount root {mount_root:?} of {mount_point}; \
         cannot anchor the parent there"
    )]
    OutsideMount { cgroup: String, mount_root: String, mount_point: PathBuf },

    #[error("this process's cgroup in the {hierarchy} hierarchy is unknown (no entry in /proc/self/cgroup)")]
    OwnCgroupUnknown { hierarchy: String },

    #[error(
        "cannot enable {controllers} in {path}: it holds processes and the cgroup v2 \
         no-internal-process rule forbids controllers there; move them to a leaf first"
    )]
    ParentHasProcesses { path: PathBuf, controllers: String },

    #[error("cgroup {path} already holds processes; refusing to reuse it for a new run")]
    LeafBusy { path: PathBuf },

    #[error(transparent)]
    Plan(#[from] PlanError),

    #[error("{what} is not available: {reason}")]
    Unsupported { what: &'static str, reason: String },

    #[error("cgroup {path} did not reach {wanted} within {timeout:?}; it is stuck in {state}")]
    FreezerTimeout { path: PathBuf, wanted: &'static str, state: String, timeout: Duration },

    #[error("cgroup {path} still holds {remaining} process(es) {timeout:?} after being killed")]
    KillTimeout { path: PathBuf, remaining: usize, timeout: Duration },

    #[error("failed to signal pid {pid} in {path}: {source}")]
    Signal { path: PathBuf, pid: i32, source: nix::Error },

    #[error("event source {path}: {source}")]
    Event { path: PathBuf, source: io::Error },

    #[error("cannot root the cgroup tree at {cgroup}: {reason}")]
    Delegation { cgroup: String, reason: String },

    #[error("cgroup {path} is outside the delegated cgroup {delegated}; refusing to write there")]
    OutsideDelegation { path: PathBuf, delegated: PathBuf },
}

impl CgroupError {
    /// True when the error means the cgroup (or one of its files) is gone,
    /// e.g. it was removed while a reader or an event stream still held it.
    pub fn is_gone(&self) -> bool {
        let source = match self {
            CgroupError::Read { source, .. }
            | CgroupError::Write { source, .. }
            | CgroupError::Event { source, .. } => source,
            _ => return false,
        };
        matches!(source.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENODEV))
    }
}
