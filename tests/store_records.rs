//! Round trips through the SQLite store: every operation of `RunStore` and
//! `CronJournal`, pruning, run ids.

use std::path::PathBuf;
use std::time::Duration;

use corral::placement::{Assignment, CpuGrant};
use corral::scheduler::cron::{CronState, RunSummary};
use corral::scheduler::{
    ExitStatus, FailReason, Phase, PreemptionMode, RunEvent, RunState, StopReason,
};
use corral::store::{
    Alongside, CronDecision, CronJournal, Decided, ExitInfo, FiringDecision, JobVersion,
    JournalOutcome, LaunchInfo, Retention, RunStore, SqliteStore, StoreError,
};
use corral::topology::NodeSet;
use corral::vocab::Bytes;
use corral::vocab::JobName;
use corral::vocab::RunId;
use corral::vocab::Timestamp;

fn job(name: &str) -> JobName {
    JobName::parse(name).unwrap()
}

fn t(ms: i64) -> Timestamp {
    Timestamp::from_millis(1_700_000_000_000 + ms)
}

fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join(SqliteStore::FILE_NAME)).unwrap();
    (dir, store)
}

fn pending() -> RunState {
    RunState::new(Some(Bytes::from_gib(1)), t(0))
}

fn with_phase(state: &RunState, phase: Phase) -> RunState {
    RunState { phase, ..state.clone() }
}

/// Moves `run` from `from` to `phase`, returning the new state.
fn advance(
    store: &mut SqliteStore,
    run: &RunId,
    from: &RunState,
    phase: Phase,
    at: i64,
) -> RunState {
    let to = with_phase(from, phase);
    store.record_transition(run, from, &to, t(at), "test").unwrap();
    to
}

#[test]
fn run_ids_count_per_job_from_one() {
    let (_dir, mut store) = open();
    let ids: Vec<String> = ["etl", "etl", "backup", "etl"]
        .iter()
        .map(|j| store.create_run(&job(j), &pending(), t(0)).unwrap().to_string())
        .collect();
    assert_eq!(ids, ["etl-1", "etl-2", "backup-1", "etl-3"]);
}

#[test]
fn run_ids_are_not_reused_after_pruning_or_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corral.db");
    {
        let mut store = SqliteStore::open(&path).unwrap();
        let st = pending();
        let id = store.create_run(&job("etl"), &st, t(0)).unwrap();
        advance(&mut store, &id, &st, Phase::Succeeded, 1);
        assert_eq!(store.prune(&job("etl"), Retention { successful: 0, failed: 0 }).unwrap(), 1);
    }
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.create_run(&job("etl"), &pending(), t(2)).unwrap().as_str(), "etl-2");
}

/// A placement of `run` on CPUs 2-3 with 1 GiB on node 0.
fn two_cpus_and_a_gib(run: &RunId) -> Assignment {
    Assignment {
        owner: run.clone(),
        cpus: CpuGrant::Exclusive("2-3".parse().unwrap()),
        mems: "0".parse::<NodeSet>().unwrap(),
        memory: [(corral::topology::NodeId(0), Bytes::from_gib(1))].into_iter().collect(),
    }
}

/// A launch of `run` at t(20).
fn launched_at_20(run: &str) -> LaunchInfo {
    LaunchInfo {
        shim_pid: 4000,
        init_pid: 4001,
        pid_start_time: 123_456_789,
        run_dir: PathBuf::from(format!("/var/lib/corral/runs/{run}")),
        launched_at: t(20),
    }
}

#[test]
fn every_write_reads_back() {
    let (_dir, mut store) = open();
    let st0 = pending();
    let id = store.create_run(&job("etl"), &st0, t(0)).unwrap();

    let assignment = two_cpus_and_a_gib(&id);
    store.set_placement(&id, Some(&assignment)).unwrap();
    let st1 = advance(&mut store, &id, &st0, Phase::Placed, 10);
    let launch = launched_at_20("etl-1");
    store.set_launch(&id, &launch).unwrap();
    let st2 = advance(&mut store, &id, &st1, Phase::Running { since: t(20) }, 20);
    let preempted =
        RunEvent::Preempted { by: RunId::new("urgent-7"), mode: PreemptionMode::Suspend };
    store.record_event(&id, t(30), &preempted, "suspending for urgent-7").unwrap();
    let oom = RunEvent::Oom { limit: Some(Bytes::from_gib(1)) };
    store.record_event(&id, t(40), &oom, "reached its limit").unwrap();

    let active = store.active_runs().unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].state, st2);
    assert_eq!(active[0].assignment.as_ref(), Some(&assignment));
    assert_eq!(active[0].launch.as_ref(), Some(&launch));
    assert_eq!(active[0].finished_at, None);

    let exit = ExitInfo {
        status: ExitStatus::Signal(9),
        exited_at: t(50),
        peak_memory: Some(Bytes::from_mib(1000)),
        oom_kills: 1,
        cpu_seconds: 12.5,
    };
    store.set_exit(&id, &exit).unwrap();
    store.set_placement(&id, None).unwrap();
    let failed = Phase::Failed { reason: FailReason::Exit { status: ExitStatus::Signal(9) } };
    let st3 = advance(&mut store, &id, &st2, failed, 50);

    assert!(store.active_runs().unwrap().is_empty());
    let detail = store.run(&id).unwrap().expect("stored");
    let rec = &detail.record;
    assert_eq!((rec.id.as_str(), rec.job.as_str(), rec.seq), ("etl-1", "etl", 1));
    assert_eq!(rec.state, st3);
    assert_eq!((rec.created_at, rec.updated_at, rec.finished_at), (t(0), t(50), Some(t(50))));
    assert_eq!(rec.assignment, None);
    assert_eq!(rec.exit.as_ref(), Some(&exit));
    let steps: Vec<_> = detail
        .transitions
        .iter()
        .map(|tr| (tr.n, tr.at, tr.from.as_deref(), tr.to.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            (1, t(0), None, "pending"),
            (2, t(10), Some("pending"), "placed"),
            (3, t(20), Some("placed"), "running"),
            (4, t(50), Some("running"), "failed"),
        ]
    );
    assert_eq!(detail.transitions[0].reason, "created");
    let events: Vec<_> =
        detail.events.iter().map(|e| (e.n, e.at, &e.event, e.reason.as_str())).collect();
    assert_eq!(
        events,
        [(1, t(30), &preempted, "suspending for urgent-7"), (2, t(40), &oom, "reached its limit")]
    );
}

#[test]
fn exit_codes_and_missing_accounting_round_trip() {
    let (_dir, mut store) = open();
    let id = store.create_run(&job("etl"), &pending(), t(0)).unwrap();
    let exit = ExitInfo {
        status: ExitStatus::Code(3),
        exited_at: t(5),
        peak_memory: None,
        oom_kills: 0,
        cpu_seconds: 0.0,
    };
    store.set_exit(&id, &exit).unwrap();
    let rec = store.run(&id).unwrap().unwrap().record;
    assert_eq!(rec.exit, Some(exit));
    assert_eq!(rec.launch, None);
}

#[test]
fn a_stale_writer_cannot_overwrite_a_newer_state() {
    let (_dir, mut store) = open();
    let st0 = pending();
    let id = store.create_run(&job("etl"), &st0, t(0)).unwrap();
    advance(&mut store, &id, &st0, Phase::Placed, 1);
    let err = store
        .record_transition(&id, &st0, &with_phase(&st0, Phase::Placed), t(2), "again")
        .unwrap_err();
    assert!(matches!(err, StoreError::StateConflict { expected: "pending", .. }), "{err}");
    assert_eq!(store.run(&id).unwrap().unwrap().transitions.len(), 2, "nothing appended");
}

#[test]
fn writes_to_unknown_runs_fail() {
    let (_dir, mut store) = open();
    let ghost = RunId::new("ghost-1");
    let unknown = |r: Result<(), StoreError>| matches!(r, Err(StoreError::UnknownRun { .. }));
    assert!(unknown(store.set_placement(&ghost, None)));
    assert!(unknown(store.record_event(&ghost, t(0), &RunEvent::Resumed, "x")));
    assert!(unknown(store.record_transition(&ghost, &pending(), &pending(), t(0), "x")));
    assert!(store.run(&ghost).unwrap().is_none());
}

#[test]
fn a_run_keeps_the_version_of_its_job_it_was_created_with() {
    let (dir, mut store) = open();
    let v1 = JobVersion { fingerprint: "aa".into(), meta: "{\"x\":1}".into() };
    let labelled = store.create_versioned_run(&job("etl"), &pending(), t(0), &v1).unwrap();
    let plain = store.create_run(&job("etl"), &pending(), t(1)).unwrap();
    assert_eq!(store.run(&labelled).unwrap().unwrap().record.version, Some(v1));
    assert_eq!(store.run(&plain).unwrap().unwrap().record.version, None);
    let v2 = JobVersion { fingerprint: "bb".into(), meta: "{}".into() };
    store.set_version(&labelled, &v2).unwrap();
    drop(store);
    // Durable, and listed with the active runs a restarted agent reads.
    let store = SqliteStore::open(&dir.path().join(SqliteStore::FILE_NAME)).unwrap();
    let active = store.active_runs().unwrap();
    assert_eq!(active[0].version, Some(v2));
    let mut store = store;
    assert!(matches!(
        store.set_version(
            &RunId::new("etl-99"),
            &JobVersion { fingerprint: String::new(), meta: String::new() }
        ),
        Err(StoreError::UnknownRun { .. })
    ));
}

#[test]
fn runs_for_job_lists_newest_first() {
    let (_dir, mut store) = open();
    for i in 0..5 {
        store.create_run(&job("etl"), &pending(), t(i)).unwrap();
        store.create_run(&job("other"), &pending(), t(i)).unwrap();
    }
    let ids: Vec<String> =
        store.runs_for_job(&job("etl"), 3).unwrap().into_iter().map(|r| r.id.to_string()).collect();
    assert_eq!(ids, ["etl-5", "etl-4", "etl-3"]);
    assert!(store.runs_for_job(&job("none"), 3).unwrap().is_empty());
}

/// Creates a run of `job` that ends in `phase` at `at` and has a transition
/// and an event in its history.
fn finished(store: &mut SqliteStore, name: &str, phase: Phase, at: i64) -> RunId {
    let st = pending();
    let id = store.create_run(&job(name), &st, t(at - 1)).unwrap();
    store.record_event(&id, t(at), &RunEvent::Resumed, "x").unwrap();
    advance(store, &id, &st, phase, at);
    id
}

fn failed() -> Phase {
    Phase::Failed { reason: FailReason::Timeout }
}

fn killed() -> Phase {
    Phase::Killed { reason: StopReason::JobRemoved }
}

fn ids(store: &SqliteStore, name: &str) -> Vec<String> {
    store.runs_for_job(&job(name), 100).unwrap().into_iter().map(|r| r.id.to_string()).collect()
}

#[test]
fn prune_keeps_the_newest_of_each_kind_and_every_active_run() {
    let (_dir, mut store) = open();
    finished(&mut store, "etl", Phase::Succeeded, 10); // etl-1
    finished(&mut store, "etl", failed(), 20); // etl-2
    let active = store.create_run(&job("etl"), &pending(), t(25)).unwrap(); // etl-3
    finished(&mut store, "etl", Phase::Succeeded, 30); // etl-4
    finished(&mut store, "etl", killed(), 40); // etl-5
    finished(&mut store, "etl", Phase::Succeeded, 50); // etl-6
    finished(&mut store, "etl", failed(), 60); // etl-7
    finished(&mut store, "other", Phase::Succeeded, 5);

    let deleted = store.prune(&job("etl"), Retention { successful: 2, failed: 1 }).unwrap();
    assert_eq!(deleted, 3);
    assert_eq!(ids(&store, "etl"), ["etl-7", "etl-6", "etl-4", "etl-3"]);
    assert_eq!(ids(&store, "other"), ["other-1"], "other jobs untouched");
    assert!(store.run(&active).unwrap().is_some());

    assert_eq!(store.prune(&job("etl"), Retention { successful: 0, failed: 0 }).unwrap(), 3);
    assert_eq!(ids(&store, "etl"), ["etl-3"], "the active run survives even keep 0");
}

#[test]
fn prune_removes_history_with_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corral.db");
    let mut store = SqliteStore::open(&path).unwrap();
    finished(&mut store, "etl", Phase::Succeeded, 10);
    store.prune(&job("etl"), Retention { successful: 0, failed: 0 }).unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    for table in ["transitions", "run_events", "runs"] {
        let n: i64 =
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0, "{table}");
    }
}

#[test]
fn global_cap_keeps_the_most_recently_finished() {
    let (_dir, mut store) = open();
    finished(&mut store, "a", Phase::Succeeded, 10);
    finished(&mut store, "b", failed(), 40);
    finished(&mut store, "a", killed(), 30);
    finished(&mut store, "c", Phase::Succeeded, 20);
    store.create_run(&job("c"), &pending(), t(1)).unwrap();
    assert_eq!(store.prune_all(2).unwrap(), 2);
    assert_eq!(ids(&store, "a"), ["a-2"]);
    assert_eq!(ids(&store, "b"), ["b-1"]);
    assert_eq!(ids(&store, "c"), ["c-2"], "finished c-1 went, active c-2 stays");
    assert_eq!(store.prune_all(0).unwrap(), 2);
    assert_eq!(store.active_runs().unwrap().len(), 1);
}

#[test]
fn finished_since_lists_the_runs_that_ended_in_the_window_newest_first() {
    let (_dir, mut store) = open();
    finished(&mut store, "a", Phase::Succeeded, 10); // a-1
    finished(&mut store, "b", failed(), 20); // b-1
    finished(&mut store, "a", killed(), 40); // a-2
    finished(&mut store, "c", Phase::Succeeded, 30); // c-1
                                                     // Active runs are never listed, however recent.
    store.create_run(&job("c"), &pending(), t(50)).unwrap();
    let running = store.create_run(&job("d"), &pending(), t(51)).unwrap();
    advance(&mut store, &running, &pending(), Phase::Running { since: t(52) }, 52);

    let listed = |store: &SqliteStore, since: i64, limit: usize| -> Vec<String> {
        let runs = store.finished_since(t(since), limit).unwrap();
        runs.into_iter().map(|r| r.id.to_string()).collect()
    };
    // A run that ended exactly at the start of the window is in it.
    assert_eq!(listed(&store, 20, 10), ["a-2", "c-1", "b-1"]);
    assert_eq!(listed(&store, 21, 10), ["a-2", "c-1"]);
    assert_eq!(listed(&store, 0, 10), ["a-2", "c-1", "b-1", "a-1"]);
    // The limit keeps the most recently finished.
    assert_eq!(listed(&store, 0, 2), ["a-2", "c-1"]);
    assert!(listed(&store, 0, 0).is_empty());
    assert!(listed(&store, 41, 10).is_empty());
}

#[test]
fn finished_since_returns_the_final_counters() {
    let (_dir, mut store) = open();
    let st = pending();
    let id = store.create_run(&job("oomy"), &st, t(0)).unwrap();
    let running = advance(&mut store, &id, &st, Phase::Running { since: t(1) }, 1);
    let exit = ExitInfo {
        status: ExitStatus::Signal(9),
        exited_at: t(5),
        peak_memory: Some(Bytes::from_mib(16)),
        oom_kills: 2,
        cpu_seconds: 0.25,
    };
    store.set_exit(&id, &exit).unwrap();
    advance(&mut store, &id, &running, Phase::Failed { reason: FailReason::Oom }, 6);
    let runs = store.finished_since(t(6), 10).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].finished_at, Some(t(6)));
    assert_eq!(runs[0].exit, Some(exit));
    assert_eq!(runs[0].state.phase, Phase::Failed { reason: FailReason::Oom });
}

#[test]
fn a_firing_is_decided_once() {
    let (_dir, mut store) = open();
    let etl = job("etl");
    let start = FiringDecision::Start { initial: pending() };
    let first = store.decide_firing(&etl, t(60_000), t(60_010), &start).unwrap();
    let Decided::Recorded { run: Some(run) } = first else { panic!("{first:?}") };
    assert_eq!(run.as_str(), "etl-1");
    assert_eq!(store.active_runs().unwrap().len(), 1, "the run exists with the decision");

    // A second decision for the same firing, even a different one, changes nothing.
    for again in
        [start.clone(), FiringDecision::Missed, FiringDecision::Skip { reason: "x".into() }]
    {
        let Decided::AlreadyDecided(rec) =
            store.decide_firing(&etl, t(60_000), t(61_000), &again).unwrap()
        else {
            panic!("decided twice")
        };
        assert_eq!(rec.outcome, JournalOutcome::Started { run: run.clone() });
        assert_eq!(rec.decided_at, t(60_010));
    }
    assert_eq!(store.active_runs().unwrap().len(), 1, "no second run");

    // The same time for another job is another firing.
    assert!(matches!(
        store.decide_firing(&job("other"), t(60_000), t(60_010), &FiringDecision::Missed),
        Ok(Decided::Recorded { run: None })
    ));
}

#[test]
fn the_database_itself_forbids_a_second_decision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corral.db");
    let mut store = SqliteStore::open(&path).unwrap();
    store.decide_firing(&job("etl"), t(0), t(0), &FiringDecision::Missed).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let err = conn
        .execute(
            "INSERT INTO cron_journal (job, scheduled_at, decision, decided_at)
             VALUES ('etl', ?1, 'missed', 0)",
            [t(0).as_millis()],
        )
        .unwrap_err();
    assert_eq!(err.sqlite_error_code(), Some(rusqlite::ErrorCode::ConstraintViolation));
}

#[test]
fn cron_journal_round_trips_and_records_the_actual_start() {
    let (_dir, mut store) = open();
    let etl = job("etl");
    let minute = |m: i64| t(m * 60_000);
    store.decide_firing(&etl, minute(1), minute(1), &FiringDecision::Missed).unwrap();
    let skip = FiringDecision::Skip { reason: "previous run still going".into() };
    store.decide_firing(&etl, minute(2), minute(2), &skip).unwrap();
    let start = FiringDecision::Start { initial: pending() };
    let Decided::Recorded { run: Some(run) } =
        store.decide_firing(&etl, minute(3), minute(3), &start).unwrap()
    else {
        panic!()
    };
    assert_eq!(store.firing(&etl, minute(3)).unwrap().unwrap().started_at, None);
    let launch = LaunchInfo {
        shim_pid: 1,
        init_pid: 2,
        pid_start_time: 3,
        run_dir: PathBuf::from("/run/x"),
        launched_at: minute(3).plus(Duration::from_millis(1500)),
    };
    store.set_launch(&run, &launch).unwrap();

    let got = store.firings(&etl, 10).unwrap();
    let summary: Vec<_> =
        got.iter().map(|f| (f.scheduled_at, f.outcome.clone(), f.started_at)).collect();
    assert_eq!(
        summary,
        [
            (minute(3), JournalOutcome::Started { run: run.clone() }, Some(launch.launched_at)),
            (
                minute(2),
                JournalOutcome::Skipped { reason: "previous run still going".into() },
                None
            ),
            (minute(1), JournalOutcome::Missed, None),
        ]
    );
    // A relaunch (restart) does not move the firing's actual start.
    store.set_launch(&run, &LaunchInfo { launched_at: minute(9), ..launch.clone() }).unwrap();
    assert_eq!(
        store.firing(&etl, minute(3)).unwrap().unwrap().started_at,
        Some(launch.launched_at)
    );
    assert_eq!(store.firing(&etl, minute(4)).unwrap(), None);

    assert_eq!(store.prune_firings(&etl, 1).unwrap(), 2);
    assert_eq!(store.firings(&etl, 10).unwrap().len(), 1);
}

#[test]
fn last_considered_follows_decisions_and_can_be_set() {
    let (_dir, mut store) = open();
    let etl = job("etl");
    assert_eq!(store.last_considered(&etl).unwrap(), None);
    store.decide_firing(&etl, t(5_000), t(5_000), &FiringDecision::Missed).unwrap();
    assert_eq!(store.last_considered(&etl).unwrap(), Some(t(5_000)));
    // Deciding an older firing late does not move it back.
    store.decide_firing(&etl, t(1_000), t(6_000), &FiringDecision::Missed).unwrap();
    assert_eq!(store.last_considered(&etl).unwrap(), Some(t(5_000)));
    store.set_last_considered(&etl, t(9_000)).unwrap();
    assert_eq!(store.last_considered(&etl).unwrap(), Some(t(9_000)));
    // A state row written this way (or by a store before cron states were kept whole)
    // reads as that time, with nothing waiting and nothing running.
    let expected = CronState { last_considered: t(9_000).to_datetime(), ..CronState::default() };
    assert_eq!(store.cron_states().unwrap(), [(etl.clone(), expected)]);
    assert_eq!(store.last_considered(&job("other")).unwrap(), None);
}

#[test]
fn a_cron_step_commits_its_state_decisions_and_runs_together() {
    let (_dir, mut store) = open();
    let etl = job("etl");
    let at = |ms: i64| t(ms).to_datetime().unwrap();
    let etl_1 = store.next_run_id(&etl).unwrap();
    assert_eq!(etl_1.as_str(), "etl-1");
    let summary =
        |run: &RunId, ms| RunSummary { run: run.clone(), scheduled: at(ms), stopping: false };
    let state = CronState {
        last_considered: Some(at(300_005)),
        queued: None,
        active: vec![summary(&etl_1, 300_000)],
    };
    let version = JobVersion { fingerprint: "f1".into(), meta: "{}".into() };
    let start = |run: &RunId| CronDecision::Start {
        run: run.clone(),
        initial: pending(),
        version: version.clone(),
    };
    let decisions = [
        (t(60_000), CronDecision::Missed { count: 3, last: t(180_000), suspended: false }),
        (t(240_000), CronDecision::Skip { reason: "overlap".into() }),
        (t(300_000), start(&etl_1)),
    ];
    let answers = store.commit_cron(&etl, &state, t(300_005), &decisions, 100).unwrap();
    assert_eq!(
        answers,
        [
            Decided::Recorded { run: None },
            Decided::Recorded { run: None },
            Decided::Recorded { run: Some(etl_1.clone()) }
        ]
    );
    assert_eq!(store.cron_states().unwrap(), [(etl.clone(), state.clone())]);
    assert_eq!(store.last_considered(&etl).unwrap(), Some(t(300_005)));
    let run = store.run(&etl_1).unwrap().unwrap().record;
    assert_eq!(run.version, Some(version.clone()), "the run is labelled with its version");
    let missed = store.firing(&etl, t(60_000)).unwrap().unwrap();
    assert_eq!((missed.outcome, missed.missed), (JournalOutcome::Missed, Some((3, t(180_000)))));
    assert_eq!(store.next_run_id(&etl).unwrap().as_str(), "etl-2");

    // A firing decided before is not decided again: no run, and the state does not list it.
    let etl_2 = RunId::new("etl-2");
    let again = CronState {
        active: vec![summary(&etl_1, 300_000), summary(&etl_2, 300_000)],
        ..state.clone()
    };
    let answers =
        store.commit_cron(&etl, &again, t(300_010), &[(t(300_000), start(&etl_2))], 100).unwrap();
    assert!(
        matches!(&answers[..], [Decided::AlreadyDecided(r)] if r.outcome == JournalOutcome::Started { run: etl_1.clone() })
    );
    assert_eq!(store.cron_states().unwrap(), [(etl.clone(), state.clone())]);
    assert_eq!(store.next_run_id(&etl).unwrap().as_str(), "etl-2");

    // A run id other than the job's next is refused, and nothing of the step is written.
    let wrong = store.commit_cron(
        &etl,
        &state,
        t(360_000),
        &[(t(360_000), start(&RunId::new("etl-7")))],
        100,
    );
    assert!(matches!(wrong, Err(StoreError::Unstorable { .. })), "{wrong:?}");
    assert_eq!(store.firing(&etl, t(360_000)).unwrap(), None);
    assert_eq!(store.next_run_id(&etl).unwrap().as_str(), "etl-2");

    // `last_considered` never goes back; the journal is pruned to the newest entries.
    let earlier = CronState { last_considered: Some(at(1_000)), ..state.clone() };
    store.commit_cron(&etl, &earlier, t(400_000), &[], 1).unwrap();
    assert_eq!(store.last_considered(&etl).unwrap(), Some(t(300_005)));
    assert_eq!(store.cron_states().unwrap()[0].1.last_considered, Some(at(300_005)));
    assert_eq!(store.firings(&etl, 10).unwrap().len(), 1);

    store.forget_cron(&etl).unwrap();
    assert!(store.cron_states().unwrap().is_empty());
    assert_eq!(store.firings(&etl, 10).unwrap().len(), 1, "the journal outlives the state");
}

/// A transition and the records it explains are one commit: all there, or
/// (the stored state was not the one expected) none of them.
#[test]
fn a_transition_and_its_records_are_one_commit_or_none() {
    let (_dir, mut store) = open();
    let st0 = pending();
    let id = store.create_run(&job("etl"), &st0, t(0)).unwrap();
    let assignment = two_cpus_and_a_gib(&id);
    let launch = launched_at_20("etl-1");
    let exit = ExitInfo {
        status: ExitStatus::Code(0),
        exited_at: t(30),
        peak_memory: Some(Bytes::from_mib(10)),
        oom_kills: 0,
        cpu_seconds: 0.5,
    };
    let commits = store.commits();

    // Placed, with its placement.
    let st1 = with_phase(&st0, Phase::Placed);
    let placed = Alongside { placement: Some(Some(&assignment)), ..Alongside::default() };
    store.record_transition_with(&id, &st0, &st1, t(10), "placed", placed).unwrap();
    assert_eq!(store.commits(), commits + 1, "one commit");
    let record = store.run(&id).unwrap().unwrap().record;
    assert_eq!(record.assignment.as_ref(), Some(&assignment));

    // A writer that expected another state records nothing of it: neither
    // the launch nor the transition.
    let st2 = with_phase(&st1, Phase::Running { since: t(20) });
    let stale = Alongside { launch: Some(&launch), ..Alongside::default() };
    let refused = store.record_transition_with(&id, &st0, &st2, t(20), "stale", stale);
    assert!(matches!(refused, Err(StoreError::StateConflict { .. })), "{refused:?}");
    let detail = store.run(&id).unwrap().unwrap();
    assert_eq!(detail.record.launch, None, "the launch went with the refused transition");
    assert_eq!(detail.record.state, st1);
    assert_eq!(store.commits(), commits + 1, "a refused write is no commit");

    // Running, with its launch.
    let launched = Alongside { launch: Some(&launch), ..Alongside::default() };
    store.record_transition_with(&id, &st1, &st2, t(20), "launched", launched).unwrap();
    assert_eq!(store.run(&id).unwrap().unwrap().record.launch, Some(launch.clone()));

    // Succeeded, with its exit and the placement released.
    let st3 = with_phase(&st2, Phase::Succeeded);
    let ended = Alongside { placement: Some(None), exit: Some(&exit), ..Alongside::default() };
    store.record_transition_with(&id, &st2, &st3, t(30), "exited", ended).unwrap();
    let detail = store.run(&id).unwrap().unwrap();
    assert_eq!(detail.record.exit, Some(exit));
    assert_eq!(detail.record.assignment, None);
    assert_eq!(detail.record.state, st3);
    let phases: Vec<_> = detail.transitions.iter().map(|t| t.to.clone()).collect();
    assert_eq!(phases, ["pending", "placed", "running", "succeeded"]);
    assert_eq!(store.commits(), commits + 3, "one commit per transition");
}

/// Pruning a job whose history is within its retention commits nothing.
#[test]
fn a_prune_that_removes_nothing_commits_nothing() {
    let (_dir, mut store) = open();
    let st = pending();
    let id = store.create_run(&job("etl"), &st, t(0)).unwrap();
    advance(&mut store, &id, &st, Phase::Succeeded, 1);
    let commits = store.commits();
    let keep = Retention { successful: 1, failed: 1 };
    assert_eq!(store.prune(&job("etl"), keep).unwrap(), 0);
    assert_eq!(store.commits(), commits);
    let id = store.create_run(&job("etl"), &st, t(2)).unwrap();
    advance(&mut store, &id, &st, Phase::Succeeded, 3);
    let commits = store.commits();
    assert_eq!(store.prune(&job("etl"), keep).unwrap(), 1, "the older success goes");
    assert_eq!(store.commits(), commits + 1);
}
