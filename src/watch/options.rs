//! How a [`super::JobDirWatcher`] behaves.

use std::time::Duration;

use nix::unistd::Uid;

/// The job compiler's cap on a file's size; bigger files are refused unread.
pub const DEFAULT_MAX_FILE_BYTES: u64 = crate::spec::source::MAX_FILE_BYTES;

/// Settings for [`super::JobDirWatcher::new`]. `Default` gives the values the
/// agent uses unless configured otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchOptions {
    /// How long nothing may happen to a file before it is read. Long enough to
    /// span the gaps between a tool's steps on one file (truncate, write,
    /// chmod), short enough that a saved file takes effect promptly.
    pub quiet_period: Duration,
    /// The longest a settled file waits for the rest of the directory to go
    /// quiet. Batches normally close when nothing in the directory has happened
    /// for `quiet_period`, so a `git pull` is one batch; this bounds the wait
    /// when something keeps writing. Not less than `quiet_period`.
    pub max_batch_delay: Duration,
    /// A user besides root who may own job files and the directory (the
    /// account a deploy tool runs as).
    pub owner_uid: Option<Uid>,
    /// Accept group-writable files and directories: for teams that share a
    /// deploy group. Off by default, as anyone in the group can then decide
    /// what runs.
    pub allow_group_writable: bool,
    /// Files larger than this are refused before they are opened.
    pub max_file_bytes: u64,
}

impl Default for WatchOptions {
    fn default() -> WatchOptions {
        WatchOptions {
            quiet_period: Duration::from_millis(200),
            max_batch_delay: Duration::from_secs(2),
            owner_uid: None,
            allow_group_writable: false,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}
