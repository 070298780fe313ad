//! [`CronJournal`] on SQLite.

use rusqlite::{params, OptionalExtension, Row, Transaction};

use crate::placement::RunId;
use crate::scheduler::{JobName, Timestamp};
use crate::store::cron_journal::{
    CronJournal, Decided, FiringDecision, FiringOutcome, FiringRecord,
};
use crate::store::error::StoreError;

use super::codec::{decode_err, sql};
use super::runs::insert_run;
use super::SqliteStore;

const FIRING_COLUMNS: &str = "job, scheduled_at, decision, run_id, reason, decided_at, started_at";

type RawFiring = (String, i64, String, Option<String>, Option<String>, i64, Option<i64>);

fn raw_firing(r: &Row<'_>) -> rusqlite::Result<RawFiring> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
}

fn decode_firing(raw: RawFiring) -> Result<FiringRecord, StoreError> {
    let (job, scheduled_at, decision, run, reason, decided_at, started_at) = raw;
    let key = format!("cron firing {job}@{scheduled_at}");
    let outcome = match (decision.as_str(), run) {
        ("started", Some(run)) => FiringOutcome::Started { run: RunId::new(run) },
        ("skipped", _) => FiringOutcome::Skipped { reason: reason.unwrap_or_default() },
        ("missed", _) => FiringOutcome::Missed,
        (other, _) => return Err(decode_err(&key, "decision", other)),
    };
    Ok(FiringRecord {
        job: JobName::parse(&job).map_err(|e| decode_err(&key, "job name", e))?,
        scheduled_at: Timestamp::from_millis(scheduled_at),
        outcome,
        decided_at: Timestamp::from_millis(decided_at),
        started_at: started_at.map(Timestamp::from_millis),
    })
}

fn bump_last_considered(
    tx: &Transaction<'_>,
    job: &JobName,
    at: Timestamp,
) -> rusqlite::Result<usize> {
    tx.execute(
        "INSERT INTO cron_state (job, last_considered) VALUES (?1, ?2)
         ON CONFLICT (job) DO UPDATE SET last_considered = MAX(last_considered, ?2)",
        params![job.as_str(), at.as_millis()],
    )
}

impl CronJournal for SqliteStore {
    fn decide_firing(
        &mut self,
        job: &JobName,
        scheduled_at: Timestamp,
        decided_at: Timestamp,
        decision: &FiringDecision,
    ) -> Result<Decided, StoreError> {
        self.write("recording a cron decision", |tx| {
            let op = sql("recording a cron decision");
            let existing = tx
                .query_row(
                    &format!(
                        "SELECT {FIRING_COLUMNS} FROM cron_journal
                         WHERE job = ?1 AND scheduled_at = ?2"
                    ),
                    params![job.as_str(), scheduled_at.as_millis()],
                    raw_firing,
                )
                .optional()
                .map_err(&op)?;
            if let Some(raw) = existing {
                return Ok(Decided::AlreadyDecided(decode_firing(raw)?));
            }
            let (word, run, reason) = match decision {
                FiringDecision::Start { initial } => {
                    ("started", Some(insert_run(tx, job, initial, decided_at)?), None)
                }
                FiringDecision::Skip { reason } => ("skipped", None, Some(reason.as_str())),
                FiringDecision::Missed => ("missed", None, None),
            };
            // The primary key (job, scheduled_at) is what really forbids a
            // second decision; the check above only makes the answer polite.
            tx.execute(
                "INSERT INTO cron_journal (job, scheduled_at, decision, run_id, reason, decided_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    job.as_str(),
                    scheduled_at.as_millis(),
                    word,
                    run.as_ref().map(RunId::as_str),
                    reason,
                    decided_at.as_millis()
                ],
            )
            .map_err(&op)?;
            bump_last_considered(tx, job, scheduled_at).map_err(&op)?;
            Ok(Decided::Recorded { run })
        })
    }

    fn firing(
        &self,
        job: &JobName,
        scheduled_at: Timestamp,
    ) -> Result<Option<FiringRecord>, StoreError> {
        let raw = self
            .conn
            .query_row(
                &format!(
                    "SELECT {FIRING_COLUMNS} FROM cron_journal WHERE job = ?1 AND scheduled_at = ?2"
                ),
                params![job.as_str(), scheduled_at.as_millis()],
                raw_firing,
            )
            .optional()
            .map_err(self.sql("reading a cron decision"))?;
        raw.map(decode_firing).transpose()
    }

    fn firings(&self, job: &JobName, limit: usize) -> Result<Vec<FiringRecord>, StoreError> {
        let err = self.sql("listing cron decisions");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {FIRING_COLUMNS} FROM cron_journal WHERE job = ?1
                 ORDER BY scheduled_at DESC LIMIT ?2"
            ))
            .map_err(&err)?;
        let raws: Vec<RawFiring> = stmt
            .query_map(params![job.as_str(), limit], raw_firing)
            .and_then(|rows| rows.collect())
            .map_err(&err)?;
        raws.into_iter().map(decode_firing).collect()
    }

    fn last_considered(&self, job: &JobName) -> Result<Option<Timestamp>, StoreError> {
        self.conn
            .query_row(
                "SELECT last_considered FROM cron_state WHERE job = ?1",
                [job.as_str()],
                |r| r.get(0).map(Timestamp::from_millis),
            )
            .optional()
            .map_err(self.sql("reading cron state"))
    }

    fn set_last_considered(&mut self, job: &JobName, at: Timestamp) -> Result<(), StoreError> {
        self.write("storing cron state", |tx| {
            tx.execute(
                "INSERT INTO cron_state (job, last_considered) VALUES (?1, ?2)
                 ON CONFLICT (job) DO UPDATE SET last_considered = ?2",
                params![job.as_str(), at.as_millis()],
            )
            .map_err(sql("storing cron state"))?;
            Ok(())
        })
    }

    fn prune_firings(&mut self, job: &JobName, keep: u32) -> Result<usize, StoreError> {
        self.write("pruning cron decisions", |tx| {
            tx.execute(
                "DELETE FROM cron_journal WHERE job = ?1 AND scheduled_at IN (
                     SELECT scheduled_at FROM cron_journal WHERE job = ?1
                     ORDER BY scheduled_at DESC LIMIT -1 OFFSET ?2)",
                params![job.as_str(), keep],
            )
            .map_err(sql("pruning cron decisions"))
        })
    }
}
