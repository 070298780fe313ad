//! [`AfterTriggers`] on SQLite.

use rusqlite::{params, OptionalExtension};

use crate::scheduler::RunState;
use crate::store::after_triggers::AfterTriggers;
use crate::store::error::StoreError;
use crate::store::records::JobVersion;
use crate::vocab::{JobName, RunId, Timestamp};

use super::codec::sql;
use super::runs::{insert_run, label};
use super::SqliteStore;

/// Records `upstream` for `job`, with the run it started; `false` if it was
/// on record already.
fn record(
    tx: &rusqlite::Transaction<'_>,
    job: &JobName,
    upstream: &RunId,
    run: Option<&RunId>,
    at: Timestamp,
) -> Result<bool, StoreError> {
    let inserted = tx
        .execute(
            "INSERT OR IGNORE INTO after_triggers (job, upstream_run, run_id, at)
             VALUES (?1, ?2, ?3, ?4)",
            params![job.as_str(), upstream.as_str(), run.map(RunId::as_str), at.as_millis()],
        )
        .map_err(sql("recording what an upstream run started"))?;
    Ok(inserted == 1)
}

impl AfterTriggers for SqliteStore {
    fn create_triggered_run(
        &mut self,
        job: &JobName,
        initial: &RunState,
        at: Timestamp,
        version: &JobVersion,
        upstream: &RunId,
    ) -> Result<Option<RunId>, StoreError> {
        self.write("creating a run after an upstream run", |tx| {
            let known: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM after_triggers WHERE job = ?1 AND upstream_run = ?2",
                    params![job.as_str(), upstream.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql("reading what an upstream run started"))?;
            if known.is_some() {
                return Ok(None);
            }
            let id = insert_run(tx, job, initial, at)?;
            label(tx, &id, version)?;
            record(tx, job, upstream, Some(&id), at)?;
            Ok(Some(id))
        })
    }

    fn pass_trigger(
        &mut self,
        job: &JobName,
        upstream: &RunId,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.write("recording an upstream run that started nothing", |tx| {
            record(tx, job, upstream, None, at)
        })
    }

    fn was_triggered(&self, job: &JobName, upstream: &RunId) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT 1 FROM after_triggers WHERE job = ?1 AND upstream_run = ?2",
                params![job.as_str(), upstream.as_str()],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(self.sql("reading what an upstream run started"))
    }

    fn has_triggers(&self, job: &JobName) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT 1 FROM after_triggers WHERE job = ?1 LIMIT 1", [job.as_str()], |r| {
                r.get::<_, i64>(0)
            })
            .optional()
            .map(|found| found.is_some())
            .map_err(self.sql("reading what upstream runs started"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RunStore;

    fn store(dir: &tempfile::TempDir) -> SqliteStore {
        SqliteStore::open(&dir.path().join("corral.db")).unwrap()
    }

    #[test]
    fn an_upstream_run_starts_its_step_once_and_the_record_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = store(&dir);
        let load = JobName::parse("load").unwrap();
        let up = RunId::new("extract-3");
        let version = JobVersion { fingerprint: "f".into(), meta: "{}".into() };
        let state = RunState::new(None, Timestamp::from_millis(1));
        assert!(!db.has_triggers(&load).unwrap());
        let first =
            db.create_triggered_run(&load, &state, Timestamp::from_millis(1), &version, &up);
        assert_eq!(first.unwrap(), Some(RunId::new("load-1")));
        let again =
            db.create_triggered_run(&load, &state, Timestamp::from_millis(2), &version, &up);
        assert_eq!(again.unwrap(), None, "the same upstream run starts nothing more");
        assert_eq!(db.runs_for_job(&load, 10).unwrap().len(), 1);
        drop(db);
        let mut db = store(&dir);
        assert!(db.was_triggered(&load, &up).unwrap());
        assert!(db.has_triggers(&load).unwrap());
        let next = RunId::new("extract-4");
        assert!(!db.was_triggered(&load, &next).unwrap());
        assert!(db.pass_trigger(&load, &next, Timestamp::from_millis(3)).unwrap());
        assert!(!db.pass_trigger(&load, &next, Timestamp::from_millis(3)).unwrap());
        let none =
            db.create_triggered_run(&load, &state, Timestamp::from_millis(4), &version, &next);
        assert_eq!(none.unwrap(), None);
    }
}
