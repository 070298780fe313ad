//! The SQLite implementation of [`RunStore`](super::RunStore) and
//! [`CronJournal`](super::CronJournal).

mod after_triggers;
mod arrays;
mod cluster_runs;
mod codec;
mod cron;
mod runs;
pub mod schema;
mod users;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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
    /// `(device, inode)` of the file opened: a commit into a file that is
    /// no longer at `path` would be lost to every later reader.
    identity: (u64, u64),
    /// Transactions committed through this connection since it was opened;
    /// shared, so that the HTTP API can tell whether its views are behind.
    commits: Arc<AtomicU64>,
}

impl SqliteStore {
    /// The database's file name inside the state directory.
    pub const FILE_NAME: &'static str = "corral.db";

    /// The count of commits through this connection, as it moves.
    pub fn commit_counter(&self) -> Arc<AtomicU64> {
        self.commits.clone()
    }

    /// Below this much free space the disk is as good as full: a commit
    /// needs a few pages.
    pub const NO_SPACE: u64 = 1 << 20;

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
        // After the open and the migration: the file exists now, and the
        // connection holds it.
        let meta = std::fs::metadata(path).map_err(|e| StoreError::Open {
            path: path.to_owned(),
            source: rusqlite::Error::InvalidPath(format!("{}: {e}", path.display()).into()),
        })?;
        Ok(SqliteStore {
            conn,
            path: path.to_owned(),
            busy_timeout: options.busy_timeout,
            identity: (meta.dev(), meta.ino()),
            commits: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Whether `path` is still the file this store opened. Deleting the
    /// file (and its `-wal`) while the agent runs leaves the connection
    /// writing into an unlinked inode: every commit would succeed and be
    /// gone at the next start.
    pub fn check_file(&self) -> Result<(), StoreError> {
        let replaced = |detail: String| StoreError::Replaced { path: self.path.clone(), detail };
        let (dev, ino) = self.identity;
        match std::fs::metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == (dev, ino) => Ok(()),
            Ok(meta) => Err(replaced(format!(
                "another file is there now: inode {} on device {:#x}, the agent opened inode \
                 {ino} on device {dev:#x}",
                meta.ino(),
                meta.dev()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(replaced("the file is gone".into()))
            }
            // Cannot tell (a permission change, say): the write itself
            // will say whether it works.
            Err(_) => Ok(()),
        }
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
        self.check_file()?;
        let waited = self.busy_timeout;
        let err = |e| sql_err(op, waited, e);
        let written = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)
            .and_then(|tx| {
                let value = f(&tx)?;
                tx.commit().map_err(err)?;
                Ok(value)
            });
        if written.is_ok() {
            self.commits.fetch_add(1, Ordering::Release);
        }
        written.map_err(|e| unwritable(e, &self.path))
    }

    /// Whether the database would take a write, without writing while the
    /// answer is plain: the file must be the one opened, and while its disk
    /// has room and is writable nothing is written (an idle agent's check
    /// costs a `stat` and a `statvfs`). Otherwise a write decides.
    fn check_writable_cheaply(&mut self) -> Result<(), StoreError> {
        self.check_file()?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let roomy = nix::sys::statvfs::statvfs(dir).is_ok_and(|fs| {
            let free = fs.blocks_available().saturating_mul(fs.fragment_size());
            free >= Self::NO_SPACE
                && fs.files_available() > 0
                && !fs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY)
        });
        if roomy {
            Ok(())
        } else {
            self.probe_write()
        }
    }

    /// A commit that changes nothing but the database header's change
    /// counter: it needs a page written to the WAL, so it fails as a real
    /// write would on a full or read-only disk.
    fn probe_write(&mut self) -> Result<(), StoreError> {
        self.write("checking that the database can be written", |tx| {
            let version: i64 = tx
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(|source| StoreError::Sql { op: "reading the schema version", source })?;
            tx.pragma_update(None, "user_version", version)
                .map_err(|source| StoreError::Sql { op: "rewriting the schema version", source })
        })
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

/// A write SQLite refused because the disk is full, read-only or failing
/// becomes [`StoreError::Unwritable`]: the database itself is intact (a
/// failed commit is rolled back), so the agent can wait for it.
fn unwritable(e: StoreError, path: &Path) -> StoreError {
    match e {
        StoreError::Sql { op, source }
            if matches!(
                source.sqlite_error_code(),
                Some(
                    ErrorCode::DiskFull
                        | ErrorCode::ReadOnly
                        | ErrorCode::SystemIoFailure
                        | ErrorCode::CannotOpen
                )
            ) =>
        {
            StoreError::Unwritable { path: path.to_owned(), op, detail: source.to_string() }
        }
        e => e,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::RunState;
    use crate::store::RunStore;
    use crate::vocab::JobName;
    use crate::vocab::Timestamp;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join(SqliteStore::FILE_NAME)).unwrap();
        (dir, store)
    }

    fn create(store: &mut SqliteStore) -> Result<crate::vocab::RunId, StoreError> {
        let job = JobName::parse("a").unwrap();
        store.create_run(
            &job,
            &RunState::new(None, Timestamp::from_millis(1)),
            Timestamp::from_millis(1),
        )
    }

    #[test]
    fn a_deleted_database_refuses_every_write() {
        let (dir, mut store) = store();
        store.check_writable().unwrap();
        create(&mut store).unwrap();
        for name in ["corral.db", "corral.db-wal", "corral.db-shm"] {
            let _ = std::fs::remove_file(dir.path().join(name));
        }
        let err = store.check_writable().unwrap_err();
        assert!(
            matches!(&err, StoreError::Replaced { detail, .. } if detail == "the file is gone"),
            "{err}"
        );
        assert!(err.is_unwritable());
        let err = create(&mut store).unwrap_err();
        assert!(matches!(err, StoreError::Replaced { .. }), "{err}");
        // Nothing was created in its place.
        assert!(!dir.path().join("corral.db").exists());
    }

    #[test]
    fn a_database_replaced_by_another_file_refuses_every_write() {
        let (dir, mut store) = store();
        let path = dir.path().join("corral.db");
        std::fs::rename(&path, dir.path().join("moved.db")).unwrap();
        std::fs::write(&path, b"").unwrap();
        let err = create(&mut store).unwrap_err();
        assert!(
            matches!(&err, StoreError::Replaced { detail, .. } if detail.starts_with("another file is there now")),
            "{err}"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as found");
    }

    #[test]
    fn the_write_check_commits_a_change_another_connection_sees() {
        // A check that SQLite turned into a no-op would pass on a full disk.
        let (dir, mut store) = store();
        let other = Connection::open(dir.path().join(SqliteStore::FILE_NAME)).unwrap();
        let version =
            || -> i64 { other.query_row("PRAGMA data_version", [], |r| r.get(0)).unwrap() };
        let before = version();
        store.probe_write().unwrap();
        assert_ne!(version(), before, "the check wrote nothing");
        let schema: i64 = other.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(schema, schema::SCHEMA_VERSION, "and changed nothing a reader sees");
    }

    #[test]
    fn the_check_of_an_idle_store_on_a_roomy_disk_writes_nothing() {
        let (dir, mut store) = store();
        let other = Connection::open(dir.path().join(SqliteStore::FILE_NAME)).unwrap();
        let version =
            || -> i64 { other.query_row("PRAGMA data_version", [], |r| r.get(0)).unwrap() };
        let before = version();
        store.check_writable().unwrap();
        assert_eq!(version(), before, "an idle agent's periodic check must not write");
    }

    #[test]
    fn a_full_disk_is_unwritable_not_damage() {
        let e = StoreError::Sql {
            op: "creating a run",
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                None,
            ),
        };
        let e = unwritable(e, Path::new("/s/corral.db"));
        assert!(e.is_unwritable(), "{e}");
        assert!(e.to_string().contains("/s/corral.db cannot be written (creating a run)"), "{e}");
        let busy = StoreError::Busy { op: "x", waited: Duration::ZERO };
        assert!(!unwritable(busy, Path::new("/s")).is_unwritable());
    }
}
