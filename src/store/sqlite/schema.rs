//! The schema and its migrations, versioned with `PRAGMA user_version`.
//!
//! `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`. Each runs in
//! its own transaction together with the version bump, so a crash mid-way
//! leaves the previous version intact. Released migrations are never
//! edited; changes come as new entries.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::store::error::StoreError;

/// `PRAGMA application_id` of a corral state database: "corr" in ASCII.
pub const APPLICATION_ID: i64 = 0x636f_7272;

pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7];

/// The version this build reads and writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Times are milliseconds since the Unix epoch (UTC). `state` is the
/// scheduler's `RunState` as JSON, the source of truth for decisions; `phase`
/// and `terminal` repeat what queries filter on.
const V1: &str = "
CREATE TABLE run_seq (
    job  TEXT PRIMARY KEY,
    last INTEGER NOT NULL CHECK (last > 0)
) STRICT, WITHOUT ROWID;

CREATE TABLE runs (
    id             TEXT PRIMARY KEY,
    job            TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    phase          TEXT NOT NULL,
    terminal       INTEGER NOT NULL CHECK (terminal IN (0, 1)),
    state          TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    finished_at    INTEGER,
    assignment     TEXT,
    shim_pid       INTEGER,
    init_pid       INTEGER,
    pid_start_time INTEGER,
    run_dir        TEXT,
    launched_at    INTEGER,
    exit_code      INTEGER,
    exit_signal    INTEGER,
    exited_at      INTEGER,
    peak_memory    INTEGER,
    oom_kills      INTEGER,
    cpu_seconds    REAL,
    UNIQUE (job, seq),
    CHECK ((finished_at IS NULL) = (terminal = 0)),
    CHECK (exit_code IS NULL OR exit_signal IS NULL)
) STRICT, WITHOUT ROWID;
CREATE INDEX runs_active ON runs (created_at) WHERE terminal = 0;
CREATE INDEX runs_finished ON runs (finished_at) WHERE terminal = 1;

CREATE TABLE transitions (
    run_id     TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    n          INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    from_phase TEXT,
    to_phase   TEXT NOT NULL,
    reason     TEXT NOT NULL,
    PRIMARY KEY (run_id, n)
) STRICT, WITHOUT ROWID;

CREATE TABLE run_events (
    run_id    TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    n         INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    other_run TEXT,
    detail    TEXT NOT NULL,
    reason    TEXT NOT NULL,
    PRIMARY KEY (run_id, n)
) STRICT, WITHOUT ROWID;
CREATE INDEX run_events_other ON run_events (other_run) WHERE other_run IS NOT NULL;

-- Outlives the runs it names: pruning runs leaves run_id dangling on purpose.
CREATE TABLE cron_journal (
    job          TEXT NOT NULL,
    scheduled_at INTEGER NOT NULL,
    decision     TEXT NOT NULL CHECK (decision IN ('started', 'skipped', 'missed')),
    run_id       TEXT,
    reason       TEXT,
    decided_at   INTEGER NOT NULL,
    started_at   INTEGER,
    PRIMARY KEY (job, scheduled_at),
    CHECK ((decision = 'started') = (run_id IS NOT NULL))
) STRICT, WITHOUT ROWID;
CREATE INDEX cron_journal_run ON cron_journal (run_id) WHERE run_id IS NOT NULL;

CREATE TABLE cron_state (
    job             TEXT PRIMARY KEY,
    last_considered INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
";

/// Which version of its job a run was made for: an opaque fingerprint the agent
/// compares to decide whether a job file's current version already has a run,
/// and the job's settings as the agent needs them before the job files are read
/// (JSON).
const V2: &str = "
ALTER TABLE runs ADD COLUMN spec_version TEXT;
ALTER TABLE runs ADD COLUMN spec_meta TEXT;
";

/// A recurring job's whole cron state: `state` is the cron engine's
/// `CronState` as JSON (the firing waiting its turn, the runs under way and
/// the firings they are for); `last_considered` stays the column that
/// `decide_firing` moves and queries read. A 'missed' journal entry may
/// stand for many firings: how many, and the scheduled time of the last.
const V3: &str = "
ALTER TABLE cron_state ADD COLUMN state TEXT;
ALTER TABLE cron_journal ADD COLUMN missed_count INTEGER;
ALTER TABLE cron_journal ADD COLUMN missed_last INTEGER;
";

/// The uid each job without `user` was given from the `dynamic_users`
/// range (see [`DynamicUsers`](crate::store::DynamicUsers)). A uid is unique:
/// two jobs never hold the same one.
const V4: &str = "
CREATE TABLE dynamic_users (
    job          TEXT PRIMARY KEY,
    uid          INTEGER NOT NULL UNIQUE CHECK (uid > 0),
    allocated_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
";

/// Brings the database at `path` up to [`SCHEMA_VERSION`].
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let sql = |source| StoreError::Sql { op: "reading the schema version", source };
    let app_id: i64 = conn.pragma_query_value(None, "application_id", |r| r.get(0)).map_err(sql)?;
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sql)?;
    let has_tables: bool = conn
        .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_schema)", [], |r| r.get(0))
        .map_err(sql)?;
    if app_id != APPLICATION_ID && (app_id != 0 || has_tables) {
        return Err(StoreError::Foreign { path: path.to_owned(), found: app_id });
    }
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (version, migration) in (1..).zip(MIGRATIONS).skip(usize::try_from(found).unwrap_or(0)) {
        let failed = |source| StoreError::Migration { path: path.to_owned(), version, source };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(failed)?;
        tx.execute_batch(migration).map_err(failed)?;
        // Both pragmas write the database header inside the transaction, so
        // they commit or roll back with the schema change.
        tx.pragma_update(None, "application_id", APPLICATION_ID).map_err(failed)?;
        tx.pragma_update(None, "user_version", version).map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    Ok(())
}

/// Which upstream run started which run of a pipeline step (`after:` a
/// recurring job): one row per (step, upstream run), `run_id` NULL when the
/// upstream run started nothing. See
/// [`AfterTriggers`](crate::store::AfterTriggers).
const V5: &str = "
CREATE TABLE after_triggers (
    job          TEXT NOT NULL,
    upstream_run TEXT NOT NULL,
    run_id       TEXT,
    at           INTEGER NOT NULL,
    PRIMARY KEY (job, upstream_run)
) STRICT, WITHOUT ROWID;
";

/// Arrays and submitted jobs (see [`ArrayRuns`](crate::store::ArrayRuns)):
/// the index of each run of an array, dropped with its run; and the text and
/// overrides of each submitted job, by job name.
const V6: &str = "
CREATE TABLE array_runs (
    run_id TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    job    TEXT NOT NULL,
    idx    INTEGER NOT NULL CHECK (idx >= 0)
) STRICT, WITHOUT ROWID;
CREATE INDEX array_runs_job ON array_runs (job, idx);

CREATE TABLE submissions (
    job          TEXT PRIMARY KEY,
    file         TEXT NOT NULL,
    source       TEXT NOT NULL,
    overrides    TEXT NOT NULL,
    submitted_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
";

/// Cluster runs (see [`ClusterRuns`](crate::store::ClusterRuns)): which
/// local run each (cluster run, attempt) bound to this node became, with the
/// job text it was bound with. No reference to `runs`: a row outlives its
/// run's pruning, so that the binding, seen again, is still known as taken.
/// `handed_back` is the reason the node gave the attempt back after taking
/// it (an OOM requeue past the node), with the memory the next node needs.
const V7: &str = "
CREATE TABLE cluster_runs (
    cluster_run     TEXT NOT NULL,
    attempt         INTEGER NOT NULL CHECK (attempt > 0),
    node_run        TEXT NOT NULL UNIQUE,
    job             TEXT NOT NULL,
    file            TEXT NOT NULL,
    source          TEXT NOT NULL,
    memory_hard     INTEGER,
    bound_at        INTEGER NOT NULL,
    handed_back     TEXT,
    needs_memory    INTEGER,
    handed_back_at  INTEGER,
    PRIMARY KEY (cluster_run, attempt),
    CHECK ((handed_back IS NULL) = (handed_back_at IS NULL))
) STRICT, WITHOUT ROWID;
";

#[cfg(test)]
mod tests {
    use super::*;

    fn version(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap()
    }

    #[test]
    fn migrates_an_empty_database_and_is_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, Path::new(":memory:")).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
        migrate(&mut conn, Path::new(":memory:")).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            tables,
            [
                "after_triggers",
                "array_runs",
                "cluster_runs",
                "cron_journal",
                "cron_state",
                "dynamic_users",
                "run_events",
                "run_seq",
                "runs",
                "submissions",
                "transitions"
            ]
        );
    }

    #[test]
    fn a_version_3_database_gains_the_dynamic_users_table_and_keeps_its_runs() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (version, migration) in (1..).zip(&MIGRATIONS[..3]) {
            conn.execute_batch(migration).unwrap();
            conn.pragma_update(None, "user_version", version).unwrap();
        }
        conn.pragma_update(None, "application_id", APPLICATION_ID).unwrap();
        conn.execute("INSERT INTO cron_state (job, last_considered) VALUES ('a', 7)", []).unwrap();
        migrate(&mut conn, Path::new("x.db")).unwrap();
        // Up to the latest version, past the one this test is about.
        assert_eq!(version(&conn), SCHEMA_VERSION);
        let kept: i64 =
            conn.query_row("SELECT last_considered FROM cron_state", [], |r| r.get(0)).unwrap();
        assert_eq!(kept, 7);
        conn.execute("INSERT INTO dynamic_users VALUES ('a', 61184, 1)", []).unwrap();
        assert!(conn.execute("INSERT INTO dynamic_users VALUES ('b', 61184, 1)", []).is_err());
        assert!(conn.execute("INSERT INTO dynamic_users VALUES ('c', 0, 1)", []).is_err());
    }

    #[test]
    fn a_version_4_database_gains_the_after_triggers_table_and_keeps_its_runs() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (version, migration) in (1..).zip(&MIGRATIONS[..4]) {
            conn.execute_batch(migration).unwrap();
            conn.pragma_update(None, "user_version", version).unwrap();
        }
        conn.pragma_update(None, "application_id", APPLICATION_ID).unwrap();
        conn.execute("INSERT INTO dynamic_users VALUES ('a', 61184, 1)", []).unwrap();
        migrate(&mut conn, Path::new("x.db")).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
        let kept: i64 = conn.query_row("SELECT uid FROM dynamic_users", [], |r| r.get(0)).unwrap();
        assert_eq!(kept, 61184);
        conn.execute("INSERT INTO after_triggers VALUES ('load', 'extract-1', 'load-1', 1)", [])
            .unwrap();
        let twice = "INSERT INTO after_triggers VALUES ('load', 'extract-1', NULL, 2)";
        assert!(conn.execute(twice, []).is_err(), "one row per step and upstream run");
    }

    #[test]
    fn a_version_5_database_gains_the_array_tables_and_keeps_its_runs() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (version, migration) in (1..).zip(&MIGRATIONS[..5]) {
            conn.execute_batch(migration).unwrap();
            conn.pragma_update(None, "user_version", version).unwrap();
        }
        conn.pragma_update(None, "application_id", APPLICATION_ID).unwrap();
        conn.execute(
            "INSERT INTO runs (id, job, seq, phase, terminal, state, created_at, updated_at)
             VALUES ('a-1', 'a', 1, 'pending', 0, '{}', 1, 1)",
            [],
        )
        .unwrap();
        migrate(&mut conn, Path::new("x.db")).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
        let kept: i64 = conn.query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0)).unwrap();
        assert_eq!(kept, 1);
        conn.execute("INSERT INTO array_runs VALUES ('a-1', 'a', 3)", []).unwrap();
        conn.execute("PRAGMA foreign_keys = ON", []).unwrap();
        conn.execute("DELETE FROM runs WHERE id = 'a-1'", []).unwrap();
        let labels: i64 =
            conn.query_row("SELECT COUNT(*) FROM array_runs", [], |r| r.get(0)).unwrap();
        assert_eq!(labels, 0, "a label goes with its run");
    }

    #[test]
    fn a_version_6_database_gains_the_cluster_runs_table_and_keeps_its_runs() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (version, migration) in (1..).zip(&MIGRATIONS[..6]) {
            conn.execute_batch(migration).unwrap();
            conn.pragma_update(None, "user_version", version).unwrap();
        }
        conn.pragma_update(None, "application_id", APPLICATION_ID).unwrap();
        conn.execute(
            "INSERT INTO runs (id, job, seq, phase, terminal, state, created_at, updated_at)
             VALUES ('a-1', 'a', 1, 'pending', 0, '{}', 1, 1)",
            [],
        )
        .unwrap();
        conn.execute("INSERT INTO submissions VALUES ('a', 'a.yaml', 'name: a', '[]', 1)", [])
            .unwrap();
        migrate(&mut conn, Path::new("x.db")).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
        let kept: i64 = conn
            .query_row("SELECT COUNT(*) FROM runs JOIN submissions USING (job)", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 1);
        let row = "INSERT INTO cluster_runs VALUES
                   ('a-7', 1, 'a-1', 'a', 'a.yaml', 's', NULL, 1, NULL, NULL, NULL)";
        conn.execute(row, []).unwrap();
        assert!(conn.execute(row, []).is_err(), "one row per (cluster run, attempt)");
        let zero = "INSERT INTO cluster_runs VALUES
                    ('a-8', 0, 'a-2', 'a', 'a.yaml', 's', NULL, 1, NULL, NULL, NULL)";
        assert!(conn.execute(zero, []).is_err(), "attempts count from 1");
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, Path::new("x.db")).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        let err = migrate(&mut conn, Path::new("x.db")).unwrap_err();
        assert!(
            matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1)
        );
        assert!(err.to_string().contains("x.db"), "{err}");
    }

    #[test]
    fn refuses_someone_elses_database() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE notes (body TEXT)").unwrap();
        assert!(matches!(
            migrate(&mut conn, Path::new("x.db")),
            Err(StoreError::Foreign { found: 0, .. })
        ));
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "application_id", 42).unwrap();
        assert!(matches!(
            migrate(&mut conn, Path::new("x.db")),
            Err(StoreError::Foreign { found: 42, .. })
        ));
    }
}
