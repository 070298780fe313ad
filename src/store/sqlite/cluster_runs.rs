//! [`ClusterRuns`] on SQLite.

use rusqlite::{params, OptionalExtension, Row};

use crate::store::cluster_runs::{ClusterMapping, ClusterRuns, HandedBack, NewClusterRun};
use crate::store::error::StoreError;
use crate::vocab::{JobName, RunId, Timestamp};

use super::codec::sql;
use super::runs::{insert_run, label};
use super::SqliteStore;

const COLUMNS: &str = "c.cluster_run, c.attempt, c.node_run, c.job, c.file, c.source, \
     c.memory_hard, c.bound_at, c.handed_back, c.needs_memory, c.handed_back_at";

/// A row as read, before its job name is checked.
type Raw = (
    (String, u32, String, String, String, String, Option<i64>, i64),
    (Option<String>, Option<i64>, Option<i64>),
);

fn mapping(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?),
        (r.get(8)?, r.get(9)?, r.get(10)?),
    ))
}

fn with_job(raw: Raw) -> Result<ClusterMapping, StoreError> {
    let ((cluster_run, attempt, node_run, job, file, source, memory_hard, bound_at), back) = raw;
    let (reason, needs_memory, back_at) = back;
    let handed_back = reason.map(|reason| HandedBack {
        reason,
        needs_memory: needs_memory.and_then(|m| u64::try_from(m).ok()),
        at: Timestamp::from_millis(back_at.unwrap_or_default()),
    });
    let job = JobName::parse(&job).map_err(|e| StoreError::Decode {
        key: cluster_run.clone(),
        what: "cluster run's job name",
        detail: e.to_string(),
    })?;
    Ok(ClusterMapping {
        cluster_run,
        attempt,
        node_run: RunId::new(node_run),
        job,
        file,
        source,
        memory_hard: memory_hard.and_then(|m| u64::try_from(m).ok()),
        bound_at: Timestamp::from_millis(bound_at),
        handed_back,
    })
}

impl ClusterRuns for SqliteStore {
    fn create_cluster_run(&mut self, new: &NewClusterRun<'_>) -> Result<Option<RunId>, StoreError> {
        self.write("creating a cluster run", |tx| {
            let op = sql("creating a cluster run");
            let taken: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM cluster_runs
                     WHERE cluster_run = ?1 AND attempt = ?2)",
                    params![new.cluster_run, new.attempt],
                    |r| r.get(0),
                )
                .map_err(&op)?;
            if taken {
                return Ok(None);
            }
            let id = insert_run(tx, new.job, new.initial, new.at)?;
            label(tx, &id, new.version)?;
            let memory_hard = new.memory_hard.map(|m| i64::try_from(m).unwrap_or(i64::MAX));
            tx.execute(
                "INSERT INTO cluster_runs
                 (cluster_run, attempt, node_run, job, file, source, memory_hard, bound_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    new.cluster_run,
                    new.attempt,
                    id.as_str(),
                    new.job.as_str(),
                    new.file,
                    new.source,
                    memory_hard,
                    new.at.as_millis()
                ],
            )
            .map_err(&op)?;
            Ok(Some(id))
        })
    }

    fn cluster_mapping(
        &self,
        cluster_run: &str,
        attempt: u32,
    ) -> Result<Option<ClusterMapping>, StoreError> {
        let found = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM cluster_runs c WHERE c.cluster_run = ?1 AND c.attempt = ?2"
            ))
            .and_then(|mut s| s.query_row(params![cluster_run, attempt], mapping).optional())
            .map_err(self.sql("reading a cluster run"))?;
        found.map(with_job).transpose()
    }

    fn cluster_run_of(&self, node_run: &RunId) -> Result<Option<ClusterMapping>, StoreError> {
        let found = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM cluster_runs c WHERE c.node_run = ?1"))
            .and_then(|mut s| s.query_row([node_run.as_str()], mapping).optional())
            .map_err(self.sql("reading a cluster run"))?;
        found.map(with_job).transpose()
    }

    fn live_cluster_runs(&self) -> Result<Vec<ClusterMapping>, StoreError> {
        let rows = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM cluster_runs c JOIN runs r ON r.id = c.node_run
                 WHERE r.terminal = 0 ORDER BY c.bound_at, c.node_run"
            ))
            .and_then(|mut s| s.query_map([], mapping)?.collect::<Result<Vec<_>, _>>())
            .map_err(self.sql("listing cluster runs"))?;
        rows.into_iter().map(with_job).collect()
    }

    fn set_handed_back(
        &mut self,
        cluster_run: &str,
        attempt: u32,
        back: &HandedBack,
    ) -> Result<(), StoreError> {
        self.write("recording a hand-back", |tx| {
            let needs = back.needs_memory.map(|m| i64::try_from(m).unwrap_or(i64::MAX));
            tx.execute(
                "UPDATE cluster_runs SET handed_back = ?3, needs_memory = ?4, handed_back_at = ?5
                 WHERE cluster_run = ?1 AND attempt = ?2",
                params![cluster_run, attempt, back.reason, needs, back.at.as_millis()],
            )
            .map_err(sql("recording a hand-back"))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::RunState;
    use crate::store::{JobVersion, RunStore, SqliteStore};

    fn new<'a>(
        run: &'a str,
        attempt: u32,
        job: &'a JobName,
        initial: &'a RunState,
        version: &'a JobVersion,
    ) -> NewClusterRun<'a> {
        NewClusterRun {
            cluster_run: run,
            attempt,
            job,
            file: "etl.yaml",
            source: "name: etl\ncommand: [/bin/true]\n",
            memory_hard: Some(1 << 30),
            initial,
            version,
            at: Timestamp::from_millis(7),
        }
    }

    #[test]
    fn a_binding_makes_one_run_and_a_replay_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut store = SqliteStore::open(&path).unwrap();
        let job = JobName::parse("etl").unwrap();
        let initial = RunState::new(None, Timestamp::EPOCH);
        let version = JobVersion { fingerprint: "f".into(), meta: "{}".into() };
        let id = store.create_cluster_run(&new("etl-9", 1, &job, &initial, &version)).unwrap();
        assert_eq!(id, Some(RunId::new("etl-1")));
        let again = store.create_cluster_run(&new("etl-9", 1, &job, &initial, &version)).unwrap();
        assert_eq!(again, None, "the same attempt is taken once");
        assert_eq!(store.active_runs().unwrap().len(), 1);
        let next = store.create_cluster_run(&new("etl-9", 2, &job, &initial, &version)).unwrap();
        assert_eq!(next, Some(RunId::new("etl-2")), "a new attempt is a new local run");
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        let m = store.cluster_mapping("etl-9", 1).unwrap().unwrap();
        assert_eq!((m.node_run.as_str(), m.memory_hard), ("etl-1", Some(1 << 30)));
        assert_eq!(m.source, "name: etl\ncommand: [/bin/true]\n");
        let of = store.cluster_run_of(&RunId::new("etl-2")).unwrap().unwrap();
        assert_eq!((of.cluster_run.as_str(), of.attempt), ("etl-9", 2));
        assert_eq!(store.cluster_run_of(&RunId::new("etl-3")).unwrap(), None);
        let live: Vec<_> = store.live_cluster_runs().unwrap();
        assert_eq!(live.len(), 2);
        assert_eq!(store.runs_for_job(&job, 5).unwrap()[0].version, Some(version));
    }

    #[test]
    fn an_ended_run_is_no_longer_live_but_stays_mapped() {
        let (_dir, mut store) = {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
            (dir, store)
        };
        let job = JobName::parse("etl").unwrap();
        let initial = RunState::new(None, Timestamp::EPOCH);
        let version = JobVersion { fingerprint: "f".into(), meta: "{}".into() };
        let id =
            store.create_cluster_run(&new("etl-9", 1, &job, &initial, &version)).unwrap().unwrap();
        let mut ended = initial.clone();
        ended.phase = crate::scheduler::Phase::Succeeded;
        store.record_transition(&id, &initial, &ended, Timestamp::from_millis(9), "done").unwrap();
        assert!(store.live_cluster_runs().unwrap().is_empty());
        assert!(store.cluster_mapping("etl-9", 1).unwrap().unwrap().handed_back.is_none());
        let back =
            HandedBack { reason: "too big".into(), needs_memory: Some(9), at: Timestamp::EPOCH };
        store.set_handed_back("etl-9", 1, &back).unwrap();
        assert_eq!(store.cluster_mapping("etl-9", 1).unwrap().unwrap().handed_back, Some(back));
    }
}
