//! Why the store refused or failed.

use std::path::PathBuf;
use std::time::Duration;

use crate::vocab::RunId;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "another corral agent{} holds {path}; one agent per state directory \
         (give a second agent its own state directory)",
        holder.map_or(String::new(), |pid| format!(" (pid {pid})"))
    )]
    Locked { path: PathBuf, holder: Option<u32> },

    #[error("cannot lock the state directory through {path}: {source}")]
    Lock { path: PathBuf, source: std::io::Error },

    #[error("cannot open the state database {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },

    #[error(
        "the state database {path} is damaged ({detail}). corral leaves it untouched. \
         Stop the agent, move the file aside together with any {path}-wal and {path}-shm \
         beside it (for example: mv {path} {path}.broken), and start the agent again: it \
         creates an empty database, so run history and the cron journal start over"
    )]
    Corrupt { path: PathBuf, detail: String },

    #[error(
        "{path} is an SQLite database but not corral's (application id {found:#x}); \
         point the agent at its own state directory"
    )]
    Foreign { path: PathBuf, found: i64 },

    #[error(
        "the state database {path} has schema version {found}, newer than this corral \
         understands ({supported}); run the newer corral that wrote it"
    )]
    NewerSchema { path: PathBuf, found: i64, supported: i64 },

    #[error("migrating the state database {path} to schema version {version} failed: {source}")]
    Migration { path: PathBuf, version: i64, source: rusqlite::Error },

    #[error(
        "the state database stayed busy for {waited:?} during {op}: another process is writing"
    )]
    Busy { op: &'static str, waited: Duration },

    #[error("state database error during {op}: {source}")]
    Sql { op: &'static str, source: rusqlite::Error },

    #[error(
        "the state database {path} cannot be written ({op}): {detail}; free space on its \
         filesystem (df, du) or make it writable"
    )]
    Unwritable { path: PathBuf, op: &'static str, detail: String },

    #[error(
        "the state database {path} was removed or replaced while the agent ran ({detail}). \
         The agent records nothing more and takes no new work; the runs it has keep going. \
         Stop the agent (jobs keep running) and put the database back, or follow \
         \"Lost state database\" in docs/agent.md"
    )]
    Replaced { path: PathBuf, detail: String },

    #[error("no run {run} in the store")]
    UnknownRun { run: RunId },

    #[error("run {run} is {found} in the store, not {expected}: another writer changed it")]
    StateConflict { run: RunId, expected: &'static str, found: String },

    #[error("stored {what} of {key} cannot be read: {detail}")]
    Decode { key: String, what: &'static str, detail: String },

    #[error("{what} of {key} cannot be stored: {detail}")]
    Unstorable { key: String, what: &'static str, detail: String },

    #[error("{what} {value} does not fit the store's 63-bit integers")]
    OutOfRange { what: &'static str, value: u64 },
}

impl StoreError {
    /// The store cannot take writes now, though what it holds is intact:
    /// the agent waits (see `docs/agent.md`, "Full or lost state disk")
    /// rather than stop.
    pub fn is_unwritable(&self) -> bool {
        matches!(self, StoreError::Unwritable { .. } | StoreError::Replaced { .. })
    }
}
