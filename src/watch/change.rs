//! What a batch reports about one job file.

use std::path::{Path, PathBuf};

use super::policy::Refusal;

/// A change to one job file. Each replaces whatever was reported for its path
/// before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileChange {
    /// New, or its content differs from what was last reported, or it was
    /// refused before and passes now. `bytes` is the whole file, read once
    /// after it settled; the agent compiles these bytes, not the file.
    Upserted { path: PathBuf, bytes: Vec<u8> },
    /// Gone: deleted, renamed away, or its name is no longer a job file's.
    Removed { path: PathBuf },
    /// Present but not read, for `reason`. Reported again only when the reason
    /// or the file changes. Whatever was reported for the path before no
    /// longer stands.
    Refused { path: PathBuf, reason: Refusal },
}

impl FileChange {
    pub fn path(&self) -> &Path {
        match self {
            FileChange::Upserted { path, .. }
            | FileChange::Removed { path }
            | FileChange::Refused { path, .. } => path,
        }
    }
}
