//! The SQLite implementation of [`RunStore`](super::RunStore) and
//! [`CronJournal`](super::CronJournal).

mod codec;
mod cron;
mod runs;
pub mod schema;
mod users;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use super::error::StoreError;

/// How much a committed transaction survives. See the module documentation
/// of [`store`](crate::store) for the reasoning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// `synchronous=NORMAL`: a commit is written to the WAL (the kernel has
    /// it) but not fsynced. Survives the agent being killed at any moment;
    /// a machine crash or power loss may lose the last commits, never the
    /// database's consistency.
    #[default]
    Process,
    /// `synchronous=FULL`: every commit is fsynced. Survives power loss too,
    /// at one fsync per write.
    Machine,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    pub durability: Durability,
    /// How long a write waits for another connection's write to finish.
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { durability: Durability::Process, busy_timeout: Duration::from_secs(5) }
    }
}

/// The agent's run records and cron journal in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    busy_timeout: Duration,
}

impl SqliteStore {
    /// The database's file name inside the state directory.
    pub const FILE_NAME: &'static str = "corral.db";

    /// Opens (or creates) the database at `path` with default options.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, &StoreOptions::default())
    }

    /// Opens the database at `path`, creating it if missing, checking its
    /// integrity and migrating it to the current schema. A damaged file is
    /// reported, never repaired or replaced.
    pub fn open_with(path: &Path, options: &StoreOptions) -> Result<SqliteStore, StoreError> {
        let open_err = |source| StoreError::Open { path: path.to_owned(), source };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
        conn.busy_timeout(options.busy_timeout).map_err(open_err)?;
        // Read before writing anything: a file that is not a database, or a
        // damaged one, must be left exactly as found.
        check_integrity(&conn, path)?;
        let synchronous = match options.durability {
            Durability::Process => "NORMAL",
            Durability::Machine => "FULL",
        };
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(|e| classify(e, path, "enabling WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Open {
                path: path.to_owned(),
                source: rusqlite::Error::InvalidParameterName(format!(
                    "journal_mode stayed {mode}; WAL is required (is the file on a local filesystem?)"
                )),
            });
        }
        conn.pragma_update(None, "synchronous", synchronous).map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(open_err)?;
        schema::migrate(&mut conn, path)?;
        Ok(SqliteStore { conn, path: path.to_owned(), busy_timeout: options.busy_timeout })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `PRAGMA integrity_check` on demand (it also runs at open).
    pub fn check_integrity(&self) -> Result<(), StoreError> {
        check_integrity(&self.conn, &self.path)
    }

    /// Runs `f` in an IMMEDIATE transaction and commits it.
    ///
    /// IMMEDIATE takes the write lock up front. A deferred transaction that
    /// reads first and writes later can fail with SQLITE_BUSY at the upgrade
    /// without the busy timeout helping, when another connection committed
    /// in between; taking the lock first makes the timeout apply.
    fn write<T>(
        &mut self,
        op: &'static str,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let waited = self.busy_timeout;
        let err = |e| sql_err(op, waited, e);
        let tx =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        let value = f(&tx)?;
        tx.commit().map_err(err)?;
        Ok(value)
    }

    fn sql(&self, op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
        let waited = self.busy_timeout;
        move |e| sql_err(op, waited, e)
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

fn sql_err(op: &'static str, waited: Duration, source: rusqlite::Error) -> StoreError {
    if is_busy(&source) {
        StoreError::Busy { op, waited }
    } else {
        StoreError::Sql { op, source }
    }
}

/// Damage reported by SQLite becomes [`StoreError::Corrupt`].
fn classify(source: rusqlite::Error, path: &Path, op: &'static str) -> StoreError {
    match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            StoreError::Corrupt { path: path.to_owned(), detail: source.to_string() }
        }
        _ => StoreError::Sql { op, source },
    }
}

/// The full `integrity_check`, not `quick_check`: history is bounded, so the
/// database stays small and the check costs milliseconds at open.
fn check_integrity(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let op = "checking integrity";
    let mut stmt = conn.prepare("PRAGMA integrity_check(20)").map_err(|e| classify(e, path, op))?;
    let problems: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| classify(e, path, op))?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    Err(StoreError::Corrupt { path: path.to_owned(), detail: problems.join("; ") })
}
