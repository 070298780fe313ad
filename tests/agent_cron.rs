//! Recurring jobs under a real agent, on short schedules with a seconds field: the
//! concurrency policies with runs longer than the period, catch-up after the agent was
//! stopped across several firings, kill -9 at any moment, history limits. What ran is read
//! from the cron journal and the run records in the store, and from the files the jobs
//! write: each run appends the firing it is for (`CORRAL_SCHEDULED_AT`).

mod agent_harness;
#[path = "common/seed.rs"]
mod seed;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent_harness::{job, secs, TestAgent};

/// A recurring job that appends its firing's scheduled time to `<name>.log`, then runs
/// `then`.
fn logging_job(agent: &TestAgent, name: &str, schedule: &str, then: &str, extra: &str) -> String {
    let log = agent.data_file(&format!("{name}.log")).display().to_string();
    job(
        name,
        &format!("echo $CORRAL_SCHEDULED_AT >> {log}; {then}"),
        &format!("schedule: '{schedule}'\n{extra}"),
    )
}

/// One entry of the cron journal.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Firing {
    /// Milliseconds since the epoch.
    scheduled: i64,
    decision: String,
    run: Option<String>,
    reason: Option<String>,
    missed: Option<(i64, i64)>,
}

fn journal(agent: &TestAgent, name: &str) -> Vec<Firing> {
    let Some(db) = agent.db() else { return Vec::new() };
    let Ok(mut stmt) = db.prepare(
        "SELECT scheduled_at, decision, run_id, reason, missed_count, missed_last
         FROM cron_journal WHERE job = ?1 ORDER BY scheduled_at",
    ) else {
        return Vec::new();
    };
    stmt.query_map([name], |r| {
        let count: Option<i64> = r.get(4)?;
        let last: Option<i64> = r.get(5)?;
        Ok(Firing {
            scheduled: r.get(0)?,
            decision: r.get(1)?,
            run: r.get(2)?,
            reason: r.get(3)?,
            missed: count.zip(last),
        })
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn started(journal: &[Firing]) -> Vec<&Firing> {
    journal.iter().filter(|f| f.decision == "started").collect()
}

/// The scheduled times the job's runs wrote, in milliseconds, in the order written.
fn logged(agent: &TestAgent, name: &str) -> Vec<i64> {
    agent
        .read_data(&format!("{name}.log"))
        .lines()
        .map(|l| chrono::DateTime::parse_from_rfc3339(l).unwrap().timestamp_millis())
        .collect()
}

/// When the run was running, from its recorded transitions: (start, end), end `None` if
/// it has not ended.
fn interval(agent: &TestAgent, run: &str) -> (i64, Option<i64>) {
    let transitions = agent.transitions(run);
    let start = transitions.iter().find(|t| t.0 == "running").map(|t| t.1).expect("it ran");
    let end = transitions
        .iter()
        .find(|t| ["succeeded", "failed", "killed"].contains(&t.0.as_str()))
        .map(|t| t.1);
    (start, end)
}

fn phase_is_over(phase: Option<String>) -> bool {
    matches!(phase.as_deref(), Some("succeeded" | "failed" | "killed"))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn at(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap().format("%H:%M:%S%.3f").to_string()
}

/// Runs of the job, in order, never overlap, and each started for the firing it logged.
fn assert_one_at_a_time(agent: &TestAgent, name: &str, runs: &[&Firing]) {
    let mut previous_end: Option<i64> = None;
    for firing in runs {
        let run = firing.run.as_deref().unwrap();
        let (start, end) = interval(agent, run);
        if let Some(previous) = previous_end {
            assert!(
                start >= previous,
                "{name}: {run} started at {} before {}",
                at(start),
                at(previous)
            );
        }
        previous_end = Some(end.unwrap_or(i64::MAX));
    }
}

#[test]
fn forbid_skips_firings_while_the_previous_run_goes() {
    let mut agent = TestAgent::new("");
    agent.write_job(
        "f.yaml",
        &logging_job(&agent, "f", "*/2 * * * * *", "sleep 3", "concurrency: forbid\n"),
    );
    agent.start();
    agent.wait_for("two runs of f to end", secs(20), || {
        started(&journal(&agent, "f"))
            .iter()
            .filter(|f| phase_is_over(agent.phase(f.run.as_deref().unwrap())))
            .count()
            >= 2
    });
    let journal = journal(&agent, "f");
    let runs = started(&journal);
    assert_one_at_a_time(&agent, "f", &runs);
    let skipped: Vec<&Firing> = journal.iter().filter(|f| f.decision == "skipped").collect();
    assert!(!skipped.is_empty(), "{journal:#?}");
    assert!(skipped.iter().all(|f| f.reason.as_deref() == Some("overlap")), "{journal:#?}");
    // Each run ran for its own firing, once.
    let ended: Vec<i64> = runs.iter().take(2).map(|f| f.scheduled).collect();
    assert_eq!(logged(&agent, "f")[..2], ended[..]);
}

#[test]
fn allow_lets_runs_overlap() {
    let mut agent = TestAgent::new("");
    agent.write_job(
        "a.yaml",
        &logging_job(&agent, "a", "*/2 * * * * *", "sleep 3", "concurrency: allow\n"),
    );
    agent.start();
    agent.wait_for("two runs of a to end", secs(20), || {
        let j = journal(&agent, "a");
        j.len() >= 2
            && started(&j)[..2]
                .iter()
                .all(|f| phase_is_over(agent.phase(f.run.as_deref().unwrap())))
    });
    let journal = journal(&agent, "a");
    assert!(journal.iter().all(|f| f.decision == "started"), "{journal:#?}");
    let runs = started(&journal);
    let (first, second) = (runs[0], runs[1]);
    assert_eq!(second.scheduled - first.scheduled, 2000);
    let (_, first_end) = interval(&agent, first.run.as_deref().unwrap());
    let (second_start, _) = interval(&agent, second.run.as_deref().unwrap());
    assert!(second_start < first_end.unwrap(), "the second run started while the first ran");
    let mut logged = logged(&agent, "a");
    logged.sort();
    assert_eq!(logged[..2], [first.scheduled, second.scheduled]);
}

#[test]
fn queue_starts_one_waiting_firing_when_the_run_ends() {
    let mut agent = TestAgent::new("");
    agent.write_job(
        "q.yaml",
        &logging_job(&agent, "q", "*/2 * * * * *", "sleep 5", "concurrency: queue\n"),
    );
    agent.start();
    // r1 runs 5 s: the next firing waits, the one after finds the slot taken.
    agent.wait_for("the second run of q to start", secs(25), || {
        started(&journal(&agent, "q"))
            .get(1)
            .is_some_and(|f| agent.phase(f.run.as_deref().unwrap()).as_deref() == Some("running"))
    });
    let journal = journal(&agent, "q");
    let runs = started(&journal);
    assert_one_at_a_time(&agent, "q", &runs);
    let (first, second) = (runs[0], runs[1]);
    assert_eq!(second.scheduled - first.scheduled, 2000, "the waiting firing is the next one");
    let (_, first_end) = interval(&agent, first.run.as_deref().unwrap());
    let (second_start, _) = interval(&agent, second.run.as_deref().unwrap());
    assert!(second_start >= first_end.unwrap());
    assert!(second_start - second.scheduled > 2000, "it waited for the first run");
    let full =
        journal.iter().find(|f| f.decision == "skipped").expect("a firing found the slot taken");
    assert_eq!(full.reason.as_deref(), Some("queue_full"));
    assert_eq!(full.scheduled - first.scheduled, 4000);
    assert_eq!(logged(&agent, "q")[..2], [first.scheduled, second.scheduled]);
}

#[test]
fn replace_stops_the_running_run_then_starts_the_new_firing() {
    let mut agent = TestAgent::new("");
    agent.write_job(
        "r.yaml",
        &logging_job(
            &agent,
            "r",
            "*/3 * * * * *",
            "sleep 30",
            "concurrency: replace\nstop_grace: 1s\n",
        ),
    );
    agent.start();
    agent.wait_for("the second run of r to start", secs(20), || {
        started(&journal(&agent, "r"))
            .get(1)
            .is_some_and(|f| agent.phase(f.run.as_deref().unwrap()).as_deref() == Some("running"))
    });
    let journal = journal(&agent, "r");
    let runs = started(&journal);
    assert_one_at_a_time(&agent, "r", &runs);
    let (first, second) = (runs[0], runs[1]);
    assert_eq!(second.scheduled - first.scheduled, 3000);
    let first_run = first.run.as_deref().unwrap();
    assert_eq!(agent.phase(first_run).as_deref(), Some("killed"));
    let stopped = agent.transitions(first_run);
    assert!(
        stopped.iter().any(|t| t.0 == "stopping" && t.2.contains("concurrency: replace")),
        "{stopped:#?}"
    );
    assert_eq!(logged(&agent, "r")[..2], [first.scheduled, second.scheduled]);
}

#[test]
fn catch_up_none_latest_and_all_after_the_agent_was_stopped() {
    // Long enough that a slow agent start on a loaded machine still decides
    // the last missed firing before the next one is due.
    const PERIOD: i64 = 5000;
    let mut agent = TestAgent::new("");
    for (name, policy) in [
        ("none", "catch_up: none\n"),
        ("latest", "catch_up: latest\n"),
        ("all", "catch_up: all\ncatch_up_max: 2\nconcurrency: allow\n"),
    ] {
        agent.write_job(
            &format!("{name}.yaml"),
            &logging_job(&agent, name, "*/5 * * * * *", "true", policy),
        );
    }
    agent.start();
    agent.wait_for("a first run of each job", secs(20), || {
        ["none", "latest", "all"].iter().all(|j| !started(&journal(&agent, j)).is_empty())
    });
    assert!(agent.stop().success());
    let stopped = now_ms();
    // Down across at least three firings; back 1.3 s after one of them, so that firing
    // is late (by more than a second) when the agent decides it, and the next one is not
    // due for 3.7 s more.
    let last_missed = (stopped + 2 * PERIOD + 500 + PERIOD - 1) / PERIOD * PERIOD;
    std::thread::sleep(Duration::from_millis((last_missed + 1_300 - now_ms()) as u64));
    agent.start();
    agent.wait_for("a run of each job after the restart", secs(20), || {
        ["none", "latest", "all"]
            .iter()
            .all(|j| started(&journal(&agent, j)).iter().any(|f| f.scheduled > last_missed))
    });

    let in_gap = |f: &&Firing| f.scheduled > stopped && f.scheduled <= last_missed;
    let gap: Vec<i64> = (stopped / PERIOD + 1..=last_missed / PERIOD).map(|n| n * PERIOD).collect();
    assert!(gap.len() >= 3, "{gap:?}");
    for (name, caught_up) in [("none", 0), ("latest", 1), ("all", 2)] {
        let journal = journal(&agent, name);
        let starts: Vec<i64> =
            started(&journal).into_iter().filter(in_gap).map(|f| f.scheduled).collect();
        assert_eq!(starts, gap[gap.len() - caught_up..], "{name}: {journal:#?}");
        // The others are one missed entry, ending right before the first caught up.
        let missed = journal
            .iter()
            .find(|f| f.decision == "missed")
            .unwrap_or_else(|| panic!("{name}: {journal:#?}"));
        let (count, last) = missed.missed.unwrap();
        assert_eq!(last, gap[gap.len() - caught_up - 1], "{name}: {journal:#?}");
        assert!(count as usize >= gap.len() - caught_up, "{name}: {journal:#?}");
        // The schedule goes on after the gap.
        assert!(
            started(&journal).iter().any(|f| f.scheduled == last_missed + PERIOD),
            "{name}: {journal:#?}"
        );
    }
    let log = agent.log_text();
    assert!(log.contains("firing(s) missed"), "{log}");
}

#[test]
fn kill_9_at_any_moment_never_runs_a_firing_twice() {
    let mut agent = TestAgent::new("");
    let running = logging_job(
        &agent,
        "k",
        "* * * * * *",
        "sleep 1.5",
        "concurrency: allow\nhistory: {successful: 1000, failed: 1000}\n",
    );
    let suspended = running.clone() + "suspend: true\n";
    agent.write_job("k.yaml", &running);
    // Killed at varying moments: between a decision and its run's start, during a
    // start, while runs go.
    let mut choices = seed::Choices::seeded("kill_9_at_any_moment_never_runs_a_firing_twice");
    for _ in 0..4 {
        agent.start();
        std::thread::sleep(Duration::from_millis(choices.pick(700..=2_199)));
        agent.kill9();
        std::thread::sleep(Duration::from_millis(300));
    }
    let restarted = now_ms();
    agent.start();
    agent.wait_for("firings decided by the last agent", secs(20), || {
        let journal = journal(&agent, "k");
        let runs = started(&journal);
        runs.len() >= 5 && runs.iter().any(|f| f.scheduled > restarted)
    });
    // Nothing fires any more; every run on record finishes.
    agent.write_job("k.yaml", &suspended);
    agent.wait_for("every run of k to end", secs(20), || {
        let runs = agent.runs_of("k");
        !runs.is_empty() && runs.into_iter().all(|r| phase_is_over(agent.phase(&r)))
    });
    let journal = journal(&agent, "k");
    let runs = started(&journal);
    assert!(runs.len() >= 5, "{journal:#?}");
    for f in &runs {
        let run = f.run.as_deref().unwrap();
        assert_eq!(agent.phase(run).as_deref(), Some("succeeded"), "{f:?}\n{}", agent.log_text());
    }
    // Each firing on record ran exactly once, and nothing else ran.
    let mut logged = logged(&agent, "k");
    logged.sort();
    let journaled: Vec<i64> = runs.iter().map(|f| f.scheduled).collect();
    assert_eq!(logged, journaled, "{journal:#?}");
}

#[test]
fn history_keeps_the_last_runs_and_their_files() {
    let mut agent = TestAgent::new("");
    // Fails on odd seconds, succeeds on even ones.
    agent.write_job(
        "h.yaml",
        &logging_job(
            &agent,
            "h",
            "* * * * * *",
            "case $CORRAL_SCHEDULED_AT in *[13579]Z) exit 1;; esac",
            "history: {successful: 2, failed: 1}\n",
        ),
    );
    agent.start();
    agent.wait_for("seven runs of h", secs(25), || started(&journal(&agent, "h")).len() >= 7);
    agent.wait_for("the runs kept to be the last ones", secs(10), || {
        let runs = agent.runs_of("h");
        let phases: Vec<String> = runs.iter().filter_map(|r| agent.phase(r)).collect();
        let succeeded = phases.iter().filter(|p| *p == "succeeded").count();
        let failed = phases.iter().filter(|p| *p == "failed").count();
        succeeded == 2 && failed == 1
    });
    // A pruned run's directory goes with its record.
    agent.wait_for("pruned runs' files removed", secs(10), || {
        let kept: BTreeSet<String> = agent.runs_of("h").into_iter().collect();
        let dirs: BTreeSet<String> = std::fs::read_dir(agent.state.join("runs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|d| d.starts_with("h-"))
            .collect();
        dirs.is_subset(&kept)
    });
    // Pruning is of the records: every firing still ran.
    let journal = journal(&agent, "h");
    let logged: BTreeSet<i64> = logged(&agent, "h").into_iter().collect();
    let mut ended = started(&journal).into_iter().take(5).map(|f| f.scheduled);
    assert!(ended.all(|t| logged.contains(&t)), "{logged:?} {journal:#?}");
}
