//! [`RunStore`] on SQLite.

use rusqlite::{params, OptionalExtension, Transaction};

use crate::placement::Assignment;
use crate::scheduler::{ExitStatus, RunEvent, RunState};
use crate::store::error::StoreError;
use crate::store::records::{
    EventRecord, ExitInfo, JobVersion, LaunchInfo, Retention, RunDetail, RunRecord,
    TransitionRecord,
};
use crate::store::run_store::{Alongside, RunStore};
use crate::vocab::run_id;
use crate::vocab::JobName;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

use super::codec::{from_json, sql, to_i64, to_json, RawRun, RUN_COLUMNS};
use super::SqliteStore;

/// Creates a run inside `tx`: advances the job's sequence, inserts the row
/// and its first transition.
pub(super) fn insert_run(
    tx: &Transaction<'_>,
    job: &JobName,
    initial: &RunState,
    at: Timestamp,
) -> Result<RunId, StoreError> {
    let op = sql("creating a run");
    let seq: i64 = tx
        .query_row(
            "INSERT INTO run_seq (job, last) VALUES (?1, 1)
             ON CONFLICT (job) DO UPDATE SET last = last + 1
             RETURNING last",
            [job.as_str()],
            |r| r.get(0),
        )
        .map_err(&op)?;
    let id = run_id(job, u64::try_from(seq).unwrap_or_default());
    let terminal = initial.is_terminal();
    tx.execute(
        "INSERT INTO runs (id, job, seq, phase, terminal, state, created_at, updated_at, finished_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
        params![
            id.as_str(),
            job.as_str(),
            seq,
            initial.phase.name(),
            terminal,
            to_json(initial),
            at.as_millis(),
            terminal.then_some(at.as_millis()),
        ],
    )
    .map_err(&op)?;
    tx.execute(
        "INSERT INTO transitions (run_id, n, at, from_phase, to_phase, reason)
         VALUES (?1, 1, ?2, NULL, ?3, 'created')",
        params![id.as_str(), at.as_millis(), initial.phase.name()],
    )
    .map_err(&op)?;
    Ok(id)
}

pub(super) fn label(
    tx: &Transaction<'_>,
    run: &RunId,
    version: &JobVersion,
) -> Result<(), StoreError> {
    let rows = tx
        .execute(
            "UPDATE runs SET spec_version = ?2, spec_meta = ?3 WHERE id = ?1",
            params![run.as_str(), version.fingerprint, version.meta],
        )
        .map_err(sql("labelling a run"))?;
    touched(run, rows)
}

/// Fails with [`StoreError::UnknownRun`] when an update touched no row.
fn touched(run: &RunId, rows: usize) -> Result<(), StoreError> {
    if rows == 0 {
        Err(StoreError::UnknownRun { run: run.clone() })
    } else {
        Ok(())
    }
}

/// Runs that ended at or after `?1`, newest first, at most `?2`. `terminal
/// = 1` is spelled out so that the partial index `runs_finished` applies:
/// the scan covers the runs that ended in the window, not every run kept.
/// The tie-breakers make the order total, as `prune_all`'s.
const FINISHED_SINCE: &str = "WHERE terminal = 1 AND finished_at >= ?1
     ORDER BY finished_at DESC, created_at DESC, id DESC LIMIT ?2";

fn next_n(tx: &Transaction<'_>, table: &str, run: &RunId) -> rusqlite::Result<i64> {
    tx.prepare_cached(&format!("SELECT COALESCE(MAX(n), 0) + 1 FROM {table} WHERE run_id = ?1"))?
        .query_row([run.as_str()], |r| r.get(0))
}

/// Replaces the run's state `from` with `to` and appends the transition to
/// its history, inside `tx`; refuses when the stored state is not `from`.
fn write_transition(
    tx: &Transaction<'_>,
    run: &RunId,
    from: &RunState,
    to: &RunState,
    at: Timestamp,
    reason: &str,
) -> Result<(), StoreError> {
    let op = sql("recording a transition");
    let stored: Option<String> = tx
        .prepare_cached("SELECT state FROM runs WHERE id = ?1")
        .and_then(|mut s| s.query_row([run.as_str()], |r| r.get(0)).optional())
        .map_err(&op)?;
    let Some(stored) = stored else {
        return Err(StoreError::UnknownRun { run: run.clone() });
    };
    // Compare decoded states, not JSON text: an upgraded agent may spell
    // the same state differently.
    let stored: RunState = from_json(run.as_str(), "state", &stored)?;
    if stored != *from {
        return Err(StoreError::StateConflict {
            run: run.clone(),
            expected: from.phase.name(),
            found: format!("{} (a different state)", stored.phase.name()),
        });
    }
    let terminal = to.is_terminal();
    tx.prepare_cached(
        "UPDATE runs SET phase = ?2, terminal = ?3, state = ?4, updated_at = ?5,
             finished_at = CASE WHEN ?3 THEN ?5 END
         WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![run.as_str(), to.phase.name(), terminal, to_json(to), at.as_millis()])
    })
    .map_err(&op)?;
    let n = next_n(tx, "transitions", run).map_err(&op)?;
    tx.prepare_cached(
        "INSERT INTO transitions (run_id, n, at, from_phase, to_phase, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            run.as_str(),
            n,
            at.as_millis(),
            from.phase.name(),
            to.phase.name(),
            reason
        ])
    })
    .map_err(&op)?;
    Ok(())
}

/// The run's placement (JSON; `None`: released), inside `tx`.
fn write_placement(
    tx: &Transaction<'_>,
    run: &RunId,
    json: Option<&str>,
) -> Result<(), StoreError> {
    let rows = tx
        .prepare_cached("UPDATE runs SET assignment = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![run.as_str(), json]))
        .map_err(sql("storing a placement"))?;
    touched(run, rows)
}

/// A launch as its columns hold it, checked before any write.
struct LaunchRow<'a> {
    launch: &'a LaunchInfo,
    start: i64,
    dir: &'a str,
}

impl<'a> LaunchRow<'a> {
    fn of(run: &RunId, launch: &'a LaunchInfo) -> Result<LaunchRow<'a>, StoreError> {
        let start = to_i64("pid start time", launch.pid_start_time)?;
        let dir = launch.run_dir.to_str().ok_or_else(|| StoreError::Unstorable {
            key: run.to_string(),
            what: "run directory",
            detail: format!("{} is not UTF-8", launch.run_dir.display()),
        })?;
        Ok(LaunchRow { launch, start, dir })
    }
}

fn write_launch(tx: &Transaction<'_>, run: &RunId, row: &LaunchRow<'_>) -> Result<(), StoreError> {
    let op = sql("storing a launch");
    let launch = row.launch;
    let rows = tx
        .prepare_cached(
            "UPDATE runs SET shim_pid = ?2, init_pid = ?3, pid_start_time = ?4,
                 run_dir = ?5, launched_at = ?6
             WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                run.as_str(),
                launch.shim_pid,
                launch.init_pid,
                row.start,
                row.dir,
                launch.launched_at.as_millis()
            ])
        })
        .map_err(&op)?;
    touched(run, rows)?;
    // A cron-started run's actual start is its first launch.
    tx.prepare_cached(
        "UPDATE cron_journal SET started_at = ?2 WHERE run_id = ?1 AND started_at IS NULL",
    )
    .and_then(|mut s| s.execute(params![run.as_str(), launch.launched_at.as_millis()]))
    .map_err(&op)?;
    Ok(())
}

/// An exit as its columns hold it, checked before any write.
struct ExitRow<'a> {
    exit: &'a ExitInfo,
    code: Option<i32>,
    signal: Option<i32>,
    peak: Option<i64>,
    kills: i64,
}

impl<'a> ExitRow<'a> {
    fn of(exit: &'a ExitInfo) -> Result<ExitRow<'a>, StoreError> {
        let (code, signal) = match exit.status {
            ExitStatus::Code(c) => (Some(c), None),
            ExitStatus::Signal(s) => (None, Some(s)),
        };
        let peak = exit.peak_memory.map(|b| to_i64("peak memory", b.get())).transpose()?;
        let kills = to_i64("oom kills", exit.oom_kills)?;
        Ok(ExitRow { exit, code, signal, peak, kills })
    }
}

fn write_exit(tx: &Transaction<'_>, run: &RunId, row: &ExitRow<'_>) -> Result<(), StoreError> {
    let rows = tx
        .prepare_cached(
            "UPDATE runs SET exit_code = ?2, exit_signal = ?3, exited_at = ?4,
                 peak_memory = ?5, oom_kills = ?6, cpu_seconds = ?7
             WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                run.as_str(),
                row.code,
                row.signal,
                row.exit.exited_at.as_millis(),
                row.peak,
                row.kills,
                row.exit.cpu_seconds
            ])
        })
        .map_err(sql("storing an exit"))?;
    touched(run, rows)
}

impl SqliteStore {
    fn query_runs(
        &self,
        op: &'static str,
        where_order: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let err = self.sql(op);
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs {where_order}"))
            .map_err(&err)?;
        let raws: Vec<RawRun> = stmt
            .query_map(params, RawRun::from_row)
            .and_then(|rows| rows.collect())
            .map_err(&err)?;
        raws.into_iter().map(RawRun::decode).collect()
    }
}

impl RunStore for SqliteStore {
    fn create_run(
        &mut self,
        job: &JobName,
        initial: &RunState,
        at: Timestamp,
    ) -> Result<RunId, StoreError> {
        self.write("creating a run", |tx| insert_run(tx, job, initial, at))
    }

    fn create_versioned_run(
        &mut self,
        job: &JobName,
        initial: &RunState,
        at: Timestamp,
        version: &JobVersion,
    ) -> Result<RunId, StoreError> {
        self.write("creating a run", |tx| {
            let id = insert_run(tx, job, initial, at)?;
            label(tx, &id, version)?;
            Ok(id)
        })
    }

    fn set_version(&mut self, run: &RunId, version: &JobVersion) -> Result<(), StoreError> {
        self.write("labelling a run", |tx| label(tx, run, version))
    }

    fn record_transition_with(
        &mut self,
        run: &RunId,
        from: &RunState,
        to: &RunState,
        at: Timestamp,
        reason: &str,
        alongside: Alongside<'_>,
    ) -> Result<(), StoreError> {
        // Checked before the transaction: a record that cannot be stored
        // refuses the whole write.
        let launch = alongside.launch.map(|l| LaunchRow::of(run, l)).transpose()?;
        let exit = alongside.exit.map(ExitRow::of).transpose()?;
        let placement = alongside.placement.map(|a| a.map(to_json));
        self.write("recording a transition", |tx| {
            // The records the transition explains go first, in the same
            // transaction: whoever reads the transition finds them.
            if let Some(json) = &placement {
                write_placement(tx, run, json.as_deref())?;
            }
            if let Some(launch) = &launch {
                write_launch(tx, run, launch)?;
            }
            if let Some(exit) = &exit {
                write_exit(tx, run, exit)?;
            }
            write_transition(tx, run, from, to, at, reason)
        })
    }

    fn set_placement(
        &mut self,
        run: &RunId,
        assignment: Option<&Assignment>,
    ) -> Result<(), StoreError> {
        let json = assignment.map(to_json);
        self.write("storing a placement", |tx| write_placement(tx, run, json.as_deref()))
    }

    fn set_launch(&mut self, run: &RunId, launch: &LaunchInfo) -> Result<(), StoreError> {
        let row = LaunchRow::of(run, launch)?;
        self.write("storing a launch", |tx| write_launch(tx, run, &row))
    }

    fn set_exit(&mut self, run: &RunId, exit: &ExitInfo) -> Result<(), StoreError> {
        let row = ExitRow::of(exit)?;
        self.write("storing an exit", |tx| write_exit(tx, run, &row))
    }

    fn record_event(
        &mut self,
        run: &RunId,
        at: Timestamp,
        event: &RunEvent,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.write("recording an event", |tx| {
            let op = sql("recording an event");
            let exists: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM runs WHERE id = ?1)",
                    [run.as_str()],
                    |r| r.get(0),
                )
                .map_err(&op)?;
            touched(run, usize::from(exists))?;
            let n = next_n(tx, "run_events", run).map_err(&op)?;
            tx.execute(
                "INSERT INTO run_events (run_id, n, at, kind, other_run, detail, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    run.as_str(),
                    n,
                    at.as_millis(),
                    event.kind(),
                    event.other_run().map(RunId::as_str),
                    to_json(event),
                    reason
                ],
            )
            .map_err(&op)?;
            Ok(())
        })
    }

    fn active_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        self.query_runs(
            "listing active runs",
            "WHERE terminal = 0 ORDER BY created_at, job, seq",
            [],
        )
    }

    fn finished_since(&self, since: Timestamp, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query_runs(
            "listing recently finished runs",
            FINISHED_SINCE,
            params![since.as_millis(), limit],
        )
    }

    fn run(&self, run: &RunId) -> Result<Option<RunDetail>, StoreError> {
        let op = "reading a run";
        let Some(record) = self.query_runs(op, "WHERE id = ?1", [run.as_str()])?.into_iter().next()
        else {
            return Ok(None);
        };
        let err = self.sql(op);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT n, at, from_phase, to_phase, reason FROM transitions
                 WHERE run_id = ?1 ORDER BY n",
            )
            .map_err(&err)?;
        let transitions = stmt
            .query_map([run.as_str()], |r| {
                Ok(TransitionRecord {
                    n: r.get(0)?,
                    at: Timestamp::from_millis(r.get(1)?),
                    from: r.get(2)?,
                    to: r.get(3)?,
                    reason: r.get(4)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(&err)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT n, at, detail, reason FROM run_events WHERE run_id = ?1 ORDER BY n",
            )
            .map_err(&err)?;
        let raw_events = stmt
            .query_map([run.as_str()], |r| {
                Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?, r.get(3)?))
            })
            .and_then(|rows| rows.collect::<Result<Vec<(u32, i64, String, String)>, _>>())
            .map_err(&err)?;
        let events = raw_events
            .into_iter()
            .map(|(n, at, detail, reason)| {
                Ok(EventRecord {
                    n,
                    at: Timestamp::from_millis(at),
                    event: from_json(run.as_str(), "event", &detail)?,
                    reason,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Some(RunDetail { record, transitions, events }))
    }

    fn runs_for_job(&self, job: &JobName, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query_runs(
            "listing a job's runs",
            "WHERE job = ?1 ORDER BY seq DESC LIMIT ?2",
            params![job.as_str(), limit],
        )
    }

    fn prune(&mut self, job: &JobName, keep: Retention) -> Result<usize, StoreError> {
        // Most ends push no record out: a read tells, without a commit.
        let over: bool = self
            .conn
            .prepare_cached(
                "SELECT (SELECT COUNT(*) FROM runs
                         WHERE job = ?1 AND terminal = 1 AND phase = 'succeeded') > ?2
                     OR (SELECT COUNT(*) FROM runs
                         WHERE job = ?1 AND terminal = 1 AND phase IN ('failed', 'killed')) > ?3",
            )
            .and_then(|mut s| {
                s.query_row(params![job.as_str(), keep.successful, keep.failed], |r| r.get(0))
            })
            .map_err(self.sql("pruning a job's runs"))?;
        if !over {
            return Ok(0);
        }
        self.write("pruning a job's runs", |tx| {
            let op = sql("pruning a job's runs");
            let mut deleted = 0;
            for (phases, keep) in
                [("'succeeded'", keep.successful), ("'failed', 'killed'", keep.failed)]
            {
                // Newest first by finish time; seq breaks ties so the order
                // is total and the result deterministic.
                deleted += tx
                    .execute(
                        &format!(
                            "DELETE FROM runs WHERE id IN (
                                 SELECT id FROM runs
                                 WHERE job = ?1 AND terminal = 1 AND phase IN ({phases})
                                 ORDER BY finished_at DESC, seq DESC
                                 LIMIT -1 OFFSET ?2)"
                        ),
                        params![job.as_str(), keep],
                    )
                    .map_err(&op)?;
            }
            Ok(deleted)
        })
    }

    fn check_writable(&mut self) -> Result<(), StoreError> {
        self.check_writable_cheaply()
    }

    fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Acquire)
    }

    fn prune_all(&mut self, max_finished: usize) -> Result<usize, StoreError> {
        let keep = i64::try_from(max_finished).unwrap_or(i64::MAX);
        self.write("pruning runs", |tx| {
            tx.execute(
                "DELETE FROM runs WHERE id IN (
                     SELECT id FROM runs WHERE terminal = 1
                     ORDER BY finished_at DESC, created_at DESC, id DESC
                     LIMIT -1 OFFSET ?1)",
                [keep],
            )
            .map_err(sql("pruning runs"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The listing at agent start must stay a range scan of the finished
    /// runs' index however many runs the store keeps.
    #[test]
    fn finished_since_reads_the_finished_runs_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join(SqliteStore::FILE_NAME)).unwrap();
        let mut stmt = store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN SELECT {RUN_COLUMNS} FROM runs {FINISHED_SINCE}"))
            .unwrap();
        let plan: Vec<String> = stmt
            .query_map(params![0, 10], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(|step| step.contains("USING INDEX runs_finished (finished_at>?)")),
            "{plan:?}"
        );
    }
}
