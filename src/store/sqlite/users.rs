//! [`DynamicUsers`] on SQLite.

use std::collections::BTreeSet;

use rusqlite::OptionalExtension;

use crate::store::dynamic_users::{DynamicUsers, UidAllocation};
use crate::store::error::StoreError;
use crate::vocab::JobName;
use crate::vocab::Timestamp;

use super::codec::{decode_err, sql};
use super::SqliteStore;

fn uid_of(job: &str, raw: i64) -> Result<u32, StoreError> {
    u32::try_from(raw).map_err(|_| decode_err(&format!("job {job}"), "dynamic uid", raw))
}

impl DynamicUsers for SqliteStore {
    fn job_uid(&self, job: &JobName) -> Result<Option<u32>, StoreError> {
        let raw: Option<i64> = self
            .conn
            .query_row("SELECT uid FROM dynamic_users WHERE job = ?1", [job.as_str()], |r| r.get(0))
            .optional()
            .map_err(self.sql("reading a dynamic uid"))?;
        raw.map(|raw| uid_of(job.as_str(), raw)).transpose()
    }

    fn job_uids(&self) -> Result<Vec<UidAllocation>, StoreError> {
        let op = "listing dynamic uids";
        let mut stmt = self
            .conn
            .prepare("SELECT job, uid, allocated_at FROM dynamic_users ORDER BY job")
            .map_err(self.sql(op))?;
        let rows: Vec<(String, i64, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(self.sql(op))?;
        rows.into_iter()
            .map(|(job, uid, at)| {
                Ok(UidAllocation {
                    uid: uid_of(&job, uid)?,
                    job: JobName::parse(&job)
                        .map_err(|e| decode_err(&format!("job {job}"), "name", e))?,
                    allocated_at: Timestamp::from_millis(at),
                })
            })
            .collect()
    }

    fn allocate_uid(
        &mut self,
        job: &JobName,
        at: Timestamp,
        pick: &mut dyn FnMut(&BTreeSet<u32>) -> Option<u32>,
    ) -> Result<Option<u32>, StoreError> {
        let op = "allocating a dynamic uid";
        self.write(op, |tx| {
            let mine: Option<i64> = tx
                .query_row("SELECT uid FROM dynamic_users WHERE job = ?1", [job.as_str()], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(sql(op))?;
            if let Some(raw) = mine {
                return uid_of(job.as_str(), raw).map(Some);
            }
            let mut stmt = tx.prepare("SELECT job, uid FROM dynamic_users").map_err(sql(op))?;
            let rows: Vec<(String, i64)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect())
                .map_err(sql(op))?;
            let taken = rows
                .into_iter()
                .map(|(other, raw)| uid_of(&other, raw))
                .collect::<Result<BTreeSet<u32>, _>>()?;
            let Some(uid) = pick(&taken) else { return Ok(None) };
            tx.execute(
                "INSERT INTO dynamic_users (job, uid, allocated_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![job.as_str(), i64::from(uid), at.as_millis()],
            )
            .map_err(sql(op))?;
            Ok(Some(uid))
        })
    }

    fn release_uid(&mut self, job: &JobName) -> Result<Option<u32>, StoreError> {
        let op = "releasing a dynamic uid";
        self.write(op, |tx| {
            let raw: Option<i64> = tx
                .query_row(
                    "DELETE FROM dynamic_users WHERE job = ?1 RETURNING uid",
                    [job.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql(op))?;
            raw.map(|raw| uid_of(job.as_str(), raw)).transpose()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str) -> JobName {
        JobName::parse(name).unwrap()
    }

    fn lowest_free(taken: &BTreeSet<u32>) -> Option<u32> {
        (100..103).find(|uid| !taken.contains(uid))
    }

    #[test]
    fn one_uid_per_job_kept_across_reopening_and_never_shared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SqliteStore::FILE_NAME);
        let mut store = SqliteStore::open(&path).unwrap();
        let at = Timestamp::from_millis(5);
        assert_eq!(store.allocate_uid(&job("a"), at, &mut lowest_free).unwrap(), Some(100));
        assert_eq!(store.allocate_uid(&job("b"), at, &mut lowest_free).unwrap(), Some(101));
        // Asked again: the recorded uid, and `pick` is not consulted.
        let mut never = |_: &BTreeSet<u32>| -> Option<u32> { panic!("picked again") };
        assert_eq!(store.allocate_uid(&job("a"), at, &mut never).unwrap(), Some(100));
        drop(store);

        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.job_uid(&job("b")).unwrap(), Some(101));
        let all: Vec<(String, u32)> =
            store.job_uids().unwrap().into_iter().map(|a| (a.job.to_string(), a.uid)).collect();
        assert_eq!(all, [("a".into(), 100), ("b".into(), 101)]);
        assert_eq!(store.allocate_uid(&job("c"), at, &mut lowest_free).unwrap(), Some(102));
        assert_eq!(store.allocate_uid(&job("d"), at, &mut lowest_free).unwrap(), None);
        assert_eq!(store.job_uid(&job("d")).unwrap(), None, "nothing recorded");
        // The table itself refuses a uid twice, whatever `pick` says.
        let mut bad = |_: &BTreeSet<u32>| Some(100);
        assert!(store.allocate_uid(&job("d"), at, &mut bad).is_err());

        assert_eq!(store.release_uid(&job("a")).unwrap(), Some(100));
        assert_eq!(store.release_uid(&job("a")).unwrap(), None);
        assert_eq!(store.allocate_uid(&job("d"), at, &mut lowest_free).unwrap(), Some(100));
    }
}
