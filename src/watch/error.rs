//! What can go wrong watching the jobs directory.

use std::io;
use std::path::PathBuf;

use super::policy::DirProblem;

/// Errors from [`super::JobDirWatcher`].
///
/// Only [`WatchError::is_fatal`] errors end the watcher. The others are about
/// the jobs directory itself (gone, replaced by something unsafe): each is
/// returned once, the watcher keeps what it last reported, and the next call to
/// `next_batch` waits for the directory to come back or be fixed, then reports
/// what differs from before.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("failed to create an inotify instance")]
    Init {
        #[source]
        source: io::Error,
    },
    #[error("failed to read inotify events for {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to watch {path}")]
    AddWatch {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("job directory {path} does not exist")]
    DirectoryGone { path: PathBuf },
    #[error("failed to resolve job directory {path}")]
    Resolve {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to stat {dir}, above or at job directory {path}")]
    Stat {
        path: PathBuf,
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `dir` is the jobs directory or one above it.
    #[error("not trusting job directory {path}: {dir} {problem}")]
    UnsafeDirectory { path: PathBuf, dir: PathBuf, problem: DirProblem },
    #[error("failed to list job directory {path}")]
    List {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl WatchError {
    /// Whether the watcher cannot go on: its inotify instance failed.
    pub fn is_fatal(&self) -> bool {
        matches!(self, WatchError::Init { .. } | WatchError::Read { .. })
    }
}
