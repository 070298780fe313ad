//! [`CronJournal`] on SQLite.

use rusqlite::{params, OptionalExtension, Row, Transaction};

use crate::scheduler::cron::CronState;
use crate::store::cron_journal::{
    CronDecision, CronJournal, Decided, FiringDecision, JournalEntry, JournalOutcome,
};
use crate::store::error::StoreError;
use crate::vocab::run_id;
use crate::vocab::JobName;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

use super::codec::{decode_err, from_json, sql, to_i64, to_json};
use super::runs::{insert_run, label};
use super::SqliteStore;

const FIRING_COLUMNS: &str =
    "job, scheduled_at, decision, run_id, reason, decided_at, started_at, missed_count, missed_last";

type RawFiring = (
    String,
    i64,
    String,
    Option<String>,
    Option<String>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

fn raw_firing(r: &Row<'_>) -> rusqlite::Result<RawFiring> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

fn decode_firing(raw: RawFiring) -> Result<JournalEntry, StoreError> {
    let (job, scheduled_at, decision, run, reason, decided_at, started_at, count, last) = raw;
    let key = format!("cron firing {job}@{scheduled_at}");
    let outcome = match (decision.as_str(), run) {
        ("started", Some(run)) => JournalOutcome::Started { run: RunId::new(run) },
        ("skipped", _) => JournalOutcome::Skipped { reason: reason.unwrap_or_default() },
        ("missed", _) => JournalOutcome::Missed,
        (other, _) => return Err(decode_err(&key, "decision", other)),
    };
    let missed = match (count, last) {
        (Some(count), Some(last)) => Some((
            u64::try_from(count).map_err(|_| decode_err(&key, "missed count", count))?,
            Timestamp::from_millis(last),
        )),
        _ => None,
    };
    Ok(JournalEntry {
        job: JobName::parse(&job).map_err(|e| decode_err(&key, "job name", e))?,
        scheduled_at: Timestamp::from_millis(scheduled_at),
        outcome,
        decided_at: Timestamp::from_millis(decided_at),
        started_at: started_at.map(Timestamp::from_millis),
        missed,
    })
}

fn existing(
    tx: &Transaction<'_>,
    job: &JobName,
    scheduled_at: Timestamp,
) -> Result<Option<JournalEntry>, StoreError> {
    tx.query_row(
        &format!("SELECT {FIRING_COLUMNS} FROM cron_journal WHERE job = ?1 AND scheduled_at = ?2"),
        params![job.as_str(), scheduled_at.as_millis()],
        raw_firing,
    )
    .optional()
    .map_err(sql("recording a cron decision"))?
    .map(decode_firing)
    .transpose()
}

/// One journal row, as it goes in.
struct NewFiring<'a> {
    decision: &'static str,
    run: Option<&'a RunId>,
    reason: Option<&'a str>,
    missed: Option<(u64, Timestamp)>,
}

fn insert_firing(
    tx: &Transaction<'_>,
    job: &JobName,
    scheduled_at: Timestamp,
    decided_at: Timestamp,
    row: NewFiring<'_>,
) -> Result<(), StoreError> {
    let count = row.missed.map(|(count, _)| to_i64("missed count", count)).transpose()?;
    // The primary key (job, scheduled_at) is what really forbids a second
    // decision; the callers' check before only makes the answer polite.
    tx.execute(
        "INSERT INTO cron_journal
             (job, scheduled_at, decision, run_id, reason, decided_at, missed_count, missed_last)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            job.as_str(),
            scheduled_at.as_millis(),
            row.decision,
            row.run.map(RunId::as_str),
            row.reason,
            decided_at.as_millis(),
            count,
            row.missed.map(|(_, last)| last.as_millis()),
        ],
    )
    .map_err(sql("recording a cron decision"))?;
    Ok(())
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

fn prune(tx: &Transaction<'_>, job: &JobName, keep: u32) -> rusqlite::Result<usize> {
    tx.execute(
        "DELETE FROM cron_journal WHERE job = ?1 AND scheduled_at IN (
             SELECT scheduled_at FROM cron_journal WHERE job = ?1
             ORDER BY scheduled_at DESC LIMIT -1 OFFSET ?2)",
        params![job.as_str(), keep],
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
            if let Some(record) = existing(tx, job, scheduled_at)? {
                return Ok(Decided::AlreadyDecided(record));
            }
            let (decision, run, reason) = match decision {
                FiringDecision::Start { initial } => {
                    ("started", Some(insert_run(tx, job, initial, decided_at)?), None)
                }
                FiringDecision::Skip { reason } => ("skipped", None, Some(reason.as_str())),
                FiringDecision::Missed => ("missed", None, None),
            };
            let row = NewFiring { decision, run: run.as_ref(), reason, missed: None };
            insert_firing(tx, job, scheduled_at, decided_at, row)?;
            bump_last_considered(tx, job, scheduled_at)
                .map_err(sql("recording a cron decision"))?;
            Ok(Decided::Recorded { run })
        })
    }

    fn firing(
        &self,
        job: &JobName,
        scheduled_at: Timestamp,
    ) -> Result<Option<JournalEntry>, StoreError> {
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

    fn firings(&self, job: &JobName, limit: usize) -> Result<Vec<JournalEntry>, StoreError> {
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
            prune(tx, job, keep).map_err(sql("pruning cron decisions"))
        })
    }

    fn next_run_id(&self, job: &JobName) -> Result<RunId, StoreError> {
        let last: Option<i64> = self
            .conn
            .query_row("SELECT last FROM run_seq WHERE job = ?1", [job.as_str()], |r| r.get(0))
            .optional()
            .map_err(self.sql("reading a job's run sequence"))?;
        let last = u64::try_from(last.unwrap_or(0)).unwrap_or_default();
        Ok(run_id(job, last + 1))
    }

    fn commit_cron(
        &mut self,
        job: &JobName,
        state: &CronState,
        decided_at: Timestamp,
        decisions: &[(Timestamp, CronDecision)],
        keep_firings: u32,
    ) -> Result<Vec<Decided>, StoreError> {
        self.write("recording a cron step", |tx| {
            let op = sql("recording a cron step");
            let mut answers = Vec::with_capacity(decisions.len());
            let mut not_started = Vec::new();
            for (scheduled_at, decision) in decisions {
                if let Some(record) = existing(tx, job, *scheduled_at)? {
                    if let CronDecision::Start { run, .. } = decision {
                        not_started.push(run.clone());
                    }
                    answers.push(Decided::AlreadyDecided(record));
                    continue;
                }
                let (row, run) = match decision {
                    CronDecision::Start { run, initial, version } => {
                        let made = insert_run(tx, job, initial, decided_at)?;
                        if &made != run {
                            // The caller named the run in the state it commits: a
                            // different id would leave the state naming no run.
                            return Err(StoreError::Unstorable {
                                key: job.to_string(),
                                what: "cron run",
                                detail: format!(
                                    "expected run {run}, but the job's next run is {made}: \
                                     another writer created runs of the job"
                                ),
                            });
                        }
                        label(tx, &made, version)?;
                        (NewFiring { decision: "started", run: Some(run), reason: None, missed: None }, Some(made))
                    }
                    CronDecision::Skip { reason } => (
                        NewFiring { decision: "skipped", run: None, reason: Some(reason), missed: None },
                        None,
                    ),
                    CronDecision::Missed { count, last, suspended } => (
                        NewFiring {
                            decision: "missed",
                            run: None,
                            reason: suspended.then_some("suspended"),
                            missed: Some((*count, *last)),
                        },
                        None,
                    ),
                };
                insert_firing(tx, job, *scheduled_at, decided_at, row)?;
                answers.push(Decided::Recorded { run });
            }
            let mut state = state.clone();
            state.active.retain(|r| !not_started.contains(&r.run));
            // `last_considered` never goes back: the column is the guard that
            // keeps a decided firing from being planned again.
            let considered = state.last_considered.map(|t| Timestamp::from(t).as_millis());
            tx.execute(
                "INSERT INTO cron_state (job, last_considered, state) VALUES (?1, COALESCE(?2, 0), ?3)
                 ON CONFLICT (job) DO UPDATE
                 SET last_considered = MAX(last_considered, COALESCE(?2, 0)), state = ?3",
                params![job.as_str(), considered, to_json(&state)],
            )
            .map_err(&op)?;
            prune(tx, job, keep_firings).map_err(&op)?;
            Ok(answers)
        })
    }

    fn cron_states(&self) -> Result<Vec<(JobName, CronState)>, StoreError> {
        let err = self.sql("reading cron states");
        let mut stmt = self
            .conn
            .prepare_cached("SELECT job, last_considered, state FROM cron_state ORDER BY job")
            .map_err(&err)?;
        let raws: Vec<(String, i64, Option<String>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(&err)?;
        raws.into_iter()
            .map(|(job, considered, text)| {
                let key = format!("cron state of {job}");
                let name = JobName::parse(&job).map_err(|e| decode_err(&key, "job name", e))?;
                let column = Timestamp::from_millis(considered).to_datetime();
                let state = match text {
                    // Written by decide_firing alone: nothing waits, nothing runs.
                    None => CronState { last_considered: column, ..CronState::default() },
                    Some(text) => {
                        let mut state: CronState = from_json(&key, "state", &text)?;
                        if state.last_considered.is_some() {
                            state.last_considered = state.last_considered.max(column);
                        }
                        state
                    }
                };
                Ok((name, state))
            })
            .collect()
    }

    fn forget_cron(&mut self, job: &JobName) -> Result<(), StoreError> {
        self.write("dropping cron state", |tx| {
            tx.execute("DELETE FROM cron_state WHERE job = ?1", [job.as_str()])
                .map_err(sql("dropping cron state"))?;
            Ok(())
        })
    }
}
