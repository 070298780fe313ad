//! [`ArrayRuns`] on SQLite.

use rusqlite::{params, OptionalExtension};

use crate::store::arrays::{ArrayRuns, NewRuns, Submission};
use crate::store::error::StoreError;
use crate::vocab::JobName;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

use super::codec::sql;
use super::runs::{insert_run, label};
use super::SqliteStore;

impl ArrayRuns for SqliteStore {
    fn create_runs(&mut self, new: &NewRuns<'_>) -> Result<Vec<RunId>, StoreError> {
        self.write("creating runs", |tx| {
            let op = sql("creating runs");
            if let Some(s) = new.submission {
                let overrides = serde_json::to_string(&s.overrides).expect("strings serialize");
                tx.execute(
                    "INSERT INTO submissions (job, file, source, overrides, submitted_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (job) DO UPDATE SET file = ?2, source = ?3, overrides = ?4,
                         submitted_at = ?5",
                    params![
                        s.job.as_str(),
                        s.file,
                        s.source,
                        overrides,
                        s.submitted_at.as_millis()
                    ],
                )
                .map_err(&op)?;
            }
            let mut ids = Vec::new();
            match new.indices {
                None => {
                    let id = insert_run(tx, new.job, new.initial, new.at)?;
                    label(tx, &id, new.version)?;
                    ids.push(id);
                }
                Some(indices) => {
                    for &index in indices {
                        let id = insert_run(tx, new.job, new.initial, new.at)?;
                        label(tx, &id, new.version)?;
                        tx.execute(
                            "INSERT INTO array_runs (run_id, job, idx) VALUES (?1, ?2, ?3)",
                            params![id.as_str(), new.job.as_str(), index],
                        )
                        .map_err(&op)?;
                        ids.push(id);
                    }
                }
            }
            Ok(ids)
        })
    }

    fn array_index(&self, run: &RunId) -> Result<Option<u32>, StoreError> {
        self.conn
            .prepare_cached("SELECT idx FROM array_runs WHERE run_id = ?1")
            .and_then(|mut s| s.query_row([run.as_str()], |r| r.get(0)).optional())
            .map_err(self.sql("reading an array index"))
    }

    fn submission(&self, job: &JobName) -> Result<Option<Submission>, StoreError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT file, source, overrides, submitted_at FROM submissions WHERE job = ?1",
            )
            .and_then(|mut s| {
                s.query_row([job.as_str()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .optional()
            })
            .map_err(self.sql("reading a submission"))?;
        let Some((file, source, overrides, at)) = row else { return Ok(None) };
        let overrides = serde_json::from_str(&overrides).map_err(|e| StoreError::Decode {
            key: job.to_string(),
            what: "submission overrides",
            detail: e.to_string(),
        })?;
        Ok(Some(Submission {
            job: job.clone(),
            file,
            source,
            overrides,
            submitted_at: Timestamp::from_millis(at),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::RunState;
    use crate::store::{JobVersion, RunStore, SqliteStore};

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn an_array_and_its_submission_are_written_together_and_read_back() {
        let (dir, mut store) = store();
        let job = JobName::parse("sweep").unwrap();
        let initial = RunState::new(None, Timestamp::EPOCH);
        let version = JobVersion { fingerprint: "f".into(), meta: "{}".into() };
        let submission = Submission {
            job: job.clone(),
            file: "sweep.yaml".into(),
            source: "name: sweep\n".into(),
            overrides: vec!["env.A=1".into()],
            submitted_at: Timestamp::from_millis(5),
        };
        let new = NewRuns {
            job: &job,
            initial: &initial,
            at: Timestamp::EPOCH,
            version: &version,
            indices: Some(&[0, 2, 4]),
            submission: Some(&submission),
        };
        let ids = store.create_runs(&new).unwrap();
        assert_eq!(ids, ["sweep-1", "sweep-2", "sweep-3"].map(RunId::new));
        drop(store);
        let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
        assert_eq!(store.array_index(&ids[1]).unwrap(), Some(2));
        assert_eq!(store.submission(&job).unwrap(), Some(submission));
        assert_eq!(store.active_runs().unwrap().len(), 3);
        assert_eq!(store.runs_for_job(&job, 1).unwrap()[0].version, Some(version));
    }

    #[test]
    fn a_plain_run_has_no_index_and_no_submission() {
        let (_dir, mut store) = store();
        let job = JobName::parse("one").unwrap();
        let initial = RunState::new(None, Timestamp::EPOCH);
        let version = JobVersion { fingerprint: "f".into(), meta: "{}".into() };
        let new = NewRuns {
            job: &job,
            initial: &initial,
            at: Timestamp::EPOCH,
            version: &version,
            indices: None,
            submission: None,
        };
        let ids = store.create_runs(&new).unwrap();
        assert_eq!(store.array_index(&ids[0]).unwrap(), None);
        assert_eq!(store.submission(&job).unwrap(), None);
    }
}
