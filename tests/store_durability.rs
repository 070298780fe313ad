//! The store under crashes, damage, concurrency and a second agent.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corral::scheduler::{Phase, RunState};
use corral::store::sqlite::schema::SCHEMA_VERSION;
use corral::store::{
    CronJournal, Decided, Durability, FiringDecision, JournalOutcome, RunStore, SqliteStore,
    StateDirLock, StoreError, StoreOptions,
};
use corral::vocab::JobName;
use corral::vocab::Timestamp;

const CHILD_ENV: &str = "CORRAL_STORE_CRASH_CHILD_DIR";

fn job() -> JobName {
    JobName::parse("tick").unwrap()
}

fn minute(i: i64) -> Timestamp {
    Timestamp::from_millis(1_700_000_000_000 + i * 60_000)
}

/// The writer that gets killed. Does nothing unless started by
/// `killed_writers_lose_nothing_and_leave_nothing_half_written`.
///
/// Each firing is two transactions: the cron decision (journal row, run,
/// its first transition, the sequence) and then the run's move to Placed.
/// A line goes to stdout only after the commit it reports.
#[test]
fn crash_child_writer() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else { return };
    let dir = Path::new(&dir);
    let _lock = StateDirLock::acquire(dir).unwrap();
    let mut store = SqliteStore::open(&dir.join(SqliteStore::FILE_NAME)).unwrap();
    let first = store
        .last_considered(&job())
        .unwrap()
        .map_or(0, |t| (t.as_millis() - minute(0).as_millis()) / 60_000 + 1);
    let mut out = std::io::stdout().lock();
    for i in first.. {
        let initial = RunState::new(None, minute(i));
        let decision = FiringDecision::Start { initial: initial.clone() };
        let Decided::Recorded { run: Some(run) } =
            store.decide_firing(&job(), minute(i), minute(i), &decision).unwrap()
        else {
            panic!("firing {i} was already decided")
        };
        writeln!(out, "committed {i} pending").unwrap();
        out.flush().unwrap();
        let placed = RunState { phase: Phase::Placed, ..initial.clone() };
        store.record_transition(&run, &initial, &placed, minute(i), "placed").unwrap();
        writeln!(out, "committed {i} placed").unwrap();
        out.flush().unwrap();
    }
}

/// Cheap varying kill points without a random-number dependency.
fn kill_after(round: u32) -> usize {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    20 + ((nanos ^ round.wrapping_mul(2_654_435_761)) % 400) as usize
}

#[test]
fn killed_writers_lose_nothing_and_leave_nothing_half_written() {
    let dir = tempfile::tempdir().unwrap();
    // firing → the furthest phase reported committed.
    let mut committed: BTreeMap<i64, String> = BTreeMap::new();
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["crash_child_writer", "--exact", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let target = kill_after(round);
        let mut seen = 0;
        for line in lines {
            let line = line.unwrap();
            let Some(rest) = line.strip_prefix("committed ") else { continue };
            let (i, phase) = rest.split_once(' ').unwrap();
            committed.insert(i.parse().unwrap(), phase.to_owned());
            seen += 1;
            if seen == target {
                // SIGKILL, mid-loop; lines already in the pipe are still read.
                child.kill().unwrap();
            }
        }
        let status = child.wait().unwrap();
        assert!(status.code().is_none(), "round {round}: the writer was killed, not finished");

        // The lock died with the writer.
        let _lock = StateDirLock::acquire(dir.path()).unwrap();
        let store = SqliteStore::open(&dir.path().join(SqliteStore::FILE_NAME)).unwrap();
        store.check_integrity().unwrap();

        let runs = store.runs_for_job(&job(), usize::MAX).unwrap();
        let firings = store.firings(&job(), usize::MAX).unwrap();
        assert_eq!(runs.len(), firings.len(), "round {round}: one run per firing");
        // Every reported commit is there, at least as far as reported.
        for (i, phase) in &committed {
            let firing = store
                .firing(&job(), minute(*i))
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: committed firing {i} lost"));
            let JournalOutcome::Started { run } = firing.outcome else { panic!() };
            let detail = store.run(&run).unwrap().expect("the firing's run exists");
            if phase == "placed" {
                assert_eq!(detail.record.state.phase, Phase::Placed, "round {round}: {run}");
            }
        }
        // Nothing half-written: every run's history matches its state.
        for rec in &runs {
            let detail = store.run(&rec.id).unwrap().unwrap();
            let want = match rec.state.phase {
                Phase::Pending => vec!["pending"],
                Phase::Placed => vec!["pending", "placed"],
                ref other => panic!("unexpected phase {other}"),
            };
            let got: Vec<_> = detail.transitions.iter().map(|t| t.to.as_str()).collect();
            assert_eq!(got, want, "round {round}: {}", rec.id);
        }
        // Run numbers have no gaps: the sequence moved with the runs.
        let seqs: Vec<u64> = runs.iter().rev().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=runs.len() as u64).collect::<Vec<_>>());
    }
    assert!(committed.len() >= 30, "the writer made progress: {}", committed.len());
}

#[test]
fn a_second_agent_is_refused_and_told_who_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let first = StateDirLock::acquire(&state).unwrap();
    assert_eq!(first.path(), state.join("lock"));
    let pid = std::process::id();
    assert_eq!(std::fs::read_to_string(state.join("lock")).unwrap(), format!("{pid}\n"));

    let err = StateDirLock::acquire(&state).unwrap_err();
    assert!(matches!(err, StoreError::Locked { holder: Some(p), .. } if p == pid), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&format!("pid {pid}")) && text.contains("lock"), "{text}");

    drop(first);
    let again = StateDirLock::acquire(&state).unwrap();
    drop(again);
}

#[test]
fn a_stale_lock_file_does_not_keep_an_agent_out() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lock"), "999999999999\n").unwrap();
    let _lock = StateDirLock::acquire(dir.path()).unwrap();
    let pid = std::process::id();
    assert_eq!(std::fs::read_to_string(dir.path().join("lock")).unwrap(), format!("{pid}\n"));
}

fn assert_corrupt(err: StoreError, path: &Path) {
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let text = err.to_string();
    let path = path.display().to_string();
    assert!(text.contains(&path), "names the file: {text}");
    assert!(
        text.contains("move the file aside") && text.contains("-wal"),
        "says what to do: {text}"
    );
}

#[test]
fn a_garbage_file_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corral.db");
    let garbage: Vec<u8> =
        (0..10_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    assert_corrupt(SqliteStore::open(&path).unwrap_err(), &path);
    assert_eq!(std::fs::read(&path).unwrap(), garbage, "not modified");
    assert!(!dir.path().join("corral.db-wal").exists(), "no WAL started beside it");
}

#[test]
fn a_damaged_database_fails_the_integrity_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corral.db");
    {
        let mut store = SqliteStore::open(&path).unwrap();
        let job = JobName::parse("etl").unwrap();
        for i in 0..300 {
            store.create_run(&job, &RunState::new(None, minute(i)), minute(i)).unwrap();
        }
    }
    {
        // Fold the WAL into the main file so the damage below is all there is.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
    }
    let mut bytes = std::fs::read(&path).unwrap();
    let page = 4096;
    assert!(bytes.len() > 8 * page, "several pages: {}", bytes.len());
    // Scribble over the middle of the file, past the header and schema page.
    for b in &mut bytes[3 * page..6 * page] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    assert_corrupt(SqliteStore::open(&path).unwrap_err(), &path);
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "not modified");
}

#[test]
fn a_missing_or_empty_database_is_created_at_the_current_version() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("new.db");
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    for path in [&missing, &empty] {
        drop(SqliteStore::open(path).unwrap());
        let conn = rusqlite::Connection::open(path).unwrap();
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION, "{}", path.display());
        let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal", "WAL mode is persistent");
    }
}

#[test]
fn a_newer_schema_is_refused_with_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corral.db");
    drop(SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::NewerSchema { found, supported, .. }
        if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION));
    assert!(err.to_string().contains(&path.display().to_string()));
}

#[test]
fn a_writer_waits_for_another_connection_within_the_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corral.db");
    let mut store = SqliteStore::open(&path).unwrap();
    let job = JobName::parse("etl").unwrap();

    // Another connection holds the write lock for a while.
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        holder.execute_batch("COMMIT").unwrap();
    });
    let started = Instant::now();
    let id = store.create_run(&job, &RunState::new(None, minute(0)), minute(0)).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250), "it waited");
    assert_eq!(id.as_str(), "etl-1");
    release.join().unwrap();

    // Two stores on one file take turns.
    let mut other = SqliteStore::open(&path).unwrap();
    let id2 = other.create_run(&job, &RunState::new(None, minute(1)), minute(1)).unwrap();
    assert_eq!(id2.as_str(), "etl-2");
    assert_eq!(store.runs_for_job(&job, 10).unwrap().len(), 2);
}

#[test]
fn a_writer_gives_up_after_the_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corral.db");
    let options =
        StoreOptions { durability: Durability::Machine, busy_timeout: Duration::from_millis(100) };
    let mut store = SqliteStore::open_with(&path, &options).unwrap();
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let job = JobName::parse("etl").unwrap();
    let started = Instant::now();
    let err = store.create_run(&job, &RunState::new(None, minute(0)), minute(0)).unwrap_err();
    assert!(matches!(err, StoreError::Busy { .. }), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(90));
    holder.execute_batch("ROLLBACK").unwrap();
    store.create_run(&job, &RunState::new(None, minute(0)), minute(0)).unwrap();
}
