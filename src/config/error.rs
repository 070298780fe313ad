//! What can be wrong with the agent's configuration file.

use std::path::PathBuf;

use crate::spec::SpecError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A problem shared with job files (syntax, types, quantities, durations, …).
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("the configuration is one YAML document; found another one here")]
    ExtraDocument,
    #[error("invalid listen address {value:?}: {reason}")]
    Listen { value: String, reason: String },
    #[error("invalid CPU list {value:?}: {reason}")]
    CpuList { value: String, reason: String },
    #[error("socket path {path:?} is {len} bytes; a Unix socket path is at most {max} bytes")]
    SocketPathTooLong { path: PathBuf, len: usize, max: usize },
    #[error("default_user {user:?} is root, but allow_root_jobs is false")]
    RootDefaultUser { user: String },
}
