//! Recurring jobs on the supervisor with a fake machine and a paused clock: what starts,
//! what is skipped or missed, what the journal says, and what survives a restart.
//!
//! The bench's clock starts at 00:16:40 (UTC, 1970-01-01); a job `*/10 * * * * *` first
//! fires at 00:16:50.

use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::super::fake::Call;
use super::super::runtime::Probe;
use super::super::tests::{job, Bench};
use crate::scheduler::{ExitStatus, Phase};
use crate::store::{CronJournal, JournalOutcome, RunStore};
use crate::vocab::JobName;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

fn every_10s(name: &str, extra: &str) -> String {
    job(name, &format!("schedule: '*/10 * * * * *'\n{extra}"))
}

impl Bench {
    async fn advance(&mut self, secs: u64) {
        tokio::time::advance(Duration::from_secs(secs)).await;
        self.settle().await;
    }

    /// The job's journal, oldest first: (`HH:MM:SS` scheduled, what was decided).
    fn journal(&self, name: &str) -> Vec<(String, String)> {
        let mut records = self.sup.store().firings(&JobName::parse(name).unwrap(), 10_000).unwrap();
        records.reverse();
        records
            .into_iter()
            .map(|r| {
                let at = r.scheduled_at.to_datetime().unwrap().format("%H:%M:%S").to_string();
                let what = match (&r.outcome, r.missed) {
                    (JournalOutcome::Started { run }, _) => format!("started {run}"),
                    (JournalOutcome::Skipped { reason }, _) => format!("skipped {reason}"),
                    (JournalOutcome::Missed, Some((count, _))) => format!("missed {count}"),
                    (JournalOutcome::Missed, None) => "missed".into(),
                };
                (at, what)
            })
            .collect()
    }

    fn runs_of(&self, name: &str) -> Vec<String> {
        let mut runs = self.sup.store().runs_for_job(&JobName::parse(name).unwrap(), 1000).unwrap();
        runs.reverse();
        runs.into_iter().map(|r| format!("{} {}", r.id, r.state.phase.name())).collect()
    }

    /// What the fake machine says of the run's directory after a restart: still going.
    fn still_running(&self, run: &str) {
        let launch = self.launch(run);
        self.fake.set_probe(&launch.run_dir.clone(), Probe::Running { launch });
    }
}

fn entries(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[tokio::test(start_paused = true)]
async fn each_firing_is_journaled_then_started_with_its_scheduled_time() {
    let mut b = Bench::new();
    b.files(&[("r.yaml", &every_10s("r", ""))]).await;
    assert!(b.fake.launched().is_empty(), "a new job starts with its next firing");
    b.advance(9).await;
    assert!(b.fake.launched().is_empty());
    b.advance(1).await;
    assert_eq!(b.fake.launched(), ["r-1"]);
    assert_eq!(b.fake.env("r-1")["CORRAL_SCHEDULED_AT"], "1970-01-01T00:16:50Z");
    assert_eq!(b.journal("r"), entries(&[("00:16:50", "started r-1")]));
    let firing = b.sup.store().firings(&JobName::parse("r").unwrap(), 1).unwrap().remove(0);
    assert!(firing.start_delay().is_some(), "the start is recorded with the firing");
    b.fake.exit("r-1", 0);
    b.advance(10).await;
    assert_eq!(b.fake.launched(), ["r-1", "r-2"]);
    assert_eq!(b.runs_of("r"), ["r-1 succeeded", "r-2 running"]);
}

#[tokio::test(start_paused = true)]
async fn forbid_skips_while_the_previous_run_goes() {
    let mut b = Bench::new();
    b.files(&[("r.yaml", &every_10s("r", "concurrency: forbid\n"))]).await;
    b.advance(10).await;
    b.advance(10).await;
    b.advance(10).await;
    assert_eq!(b.fake.launched(), ["r-1"]);
    b.fake.exit("r-1", 0);
    b.advance(10).await;
    assert_eq!(
        b.journal("r"),
        entries(&[
            ("00:16:50", "started r-1"),
            ("00:17:00", "skipped overlap"),
            ("00:17:10", "skipped overlap"),
            ("00:17:20", "started r-2"),
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn allow_overlaps() {
    let mut b = Bench::new();
    b.files(&[("r.yaml", &every_10s("r", "concurrency: allow\n"))]).await;
    b.advance(10).await;
    b.advance(10).await;
    b.advance(10).await;
    assert_eq!(b.runs_of("r"), ["r-1 running", "r-2 running", "r-3 running"]);
    assert_eq!(b.fake.env("r-3")["CORRAL_SCHEDULED_AT"], "1970-01-01T00:17:10Z");
}

#[tokio::test(start_paused = true)]
async fn queue_holds_one_firing_until_the_run_ends() {
    let mut b = Bench::new();
    b.files(&[("r.yaml", &every_10s("r", "concurrency: queue\n"))]).await;
    b.advance(10).await; // 16:50 starts
    b.advance(10).await; // 17:00 waits
    b.advance(10).await; // 17:10: the slot is taken
    assert_eq!(b.fake.launched(), ["r-1"]);
    b.advance(2).await;
    b.fake.exit("r-1", 0);
    b.settle().await;
    assert_eq!(b.fake.launched(), ["r-1", "r-2"]);
    assert_eq!(b.fake.env("r-2")["CORRAL_SCHEDULED_AT"], "1970-01-01T00:17:00Z");
    assert_eq!(
        b.journal("r"),
        entries(&[
            ("00:16:50", "started r-1"),
            ("00:17:00", "started r-2"),
            ("00:17:10", "skipped queue_full"),
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn replace_stops_the_run_gracefully_then_starts() {
    let mut b = Bench::new();
    b.fake.set_term_kills(false);
    b.files(&[("r.yaml", &every_10s("r", "concurrency: replace\nstop_grace: 3s\n"))]).await;
    b.advance(10).await;
    b.fake.clear();
    b.advance(10).await;
    assert_eq!(b.fake.calls(), [Call::Signal(RunId::new("r-1"), Signal::SIGTERM)]);
    assert_eq!(b.phase("r-1"), "stopping");
    assert!(b.fake.launched().is_empty(), "the new run waits for the old one to end");
    b.fake.report(
        &RunId::new("r-1"),
        super::super::runtime::Observed::Exited {
            status: ExitStatus::Signal(15),
            at: Timestamp::EPOCH,
            stats: Default::default(),
        },
    );
    b.settle().await;
    assert_eq!(b.fake.launched(), ["r-2"]);
    assert!(matches!(b.state("r-1").phase, Phase::Killed { .. }), "{:?}", b.state("r-1"));
    assert_eq!(
        b.journal("r"),
        entries(&[("00:16:50", "started r-1"), ("00:17:00", "started r-2")])
    );
}

#[tokio::test(start_paused = true)]
async fn a_restart_remembers_the_running_run_and_the_waiting_firing() {
    let mut b = Bench::new();
    let file = every_10s("r", "concurrency: queue\n");
    b.files(&[("r.yaml", &file)]).await;
    b.advance(10).await; // r-1 for 16:50
    b.advance(10).await; // 17:00 waits
    b.still_running("r-1");
    let fake = Arc::clone(&b.fake);
    let mut b = b.restart_after(Duration::from_millis(500));
    b.sup.recover().unwrap();
    b.files(&[("r.yaml", &file)]).await;
    b.advance(10).await; // 17:10: 17:00 still holds the slot
    assert!(fake.launched().is_empty(), "{:?}", fake.calls());
    b.fake.exit("r-1", 0);
    b.settle().await;
    assert_eq!(fake.launched(), ["r-2"]);
    assert_eq!(fake.env("r-2")["CORRAL_SCHEDULED_AT"], "1970-01-01T00:17:00Z");
    assert_eq!(
        b.journal("r"),
        entries(&[
            ("00:16:50", "started r-1"),
            ("00:17:00", "started r-2"),
            ("00:17:10", "skipped queue_full"),
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn forbid_holds_across_a_restart() {
    let mut b = Bench::new();
    let file = every_10s("r", "");
    b.files(&[("r.yaml", &file)]).await;
    b.advance(10).await;
    b.still_running("r-1");
    let mut b = b.restart_after(Duration::from_secs(2));
    b.sup.recover().unwrap();
    b.files(&[("r.yaml", &file)]).await;
    b.advance(8).await;
    assert!(b.fake.launched().is_empty());
    assert_eq!(
        b.journal("r"),
        entries(&[("00:16:50", "started r-1"), ("00:17:00", "skipped overlap")])
    );
}

#[tokio::test(start_paused = true)]
async fn a_firing_on_record_but_not_started_runs_once_after_a_crash() {
    let mut b = Bench::new();
    let file = every_10s("r", "");
    b.files(&[("r.yaml", &file)]).await;
    tokio::time::advance(Duration::from_secs(10)).await;
    // The firing is decided and on record, and the agent dies before it places the run.
    b.sup.fire_timers().unwrap();
    assert!(b.fake.launched().is_empty());
    assert_eq!(b.journal("r"), entries(&[("00:16:50", "started r-1")]));
    let mut b = b.restart_after(Duration::from_secs(1));
    b.sup.recover().unwrap();
    b.files(&[("r.yaml", &file)]).await;
    assert_eq!(b.fake.launched(), ["r-1"]);
    assert_eq!(b.fake.env("r-1")["CORRAL_SCHEDULED_AT"], "1970-01-01T00:16:50Z");
    b.advance(5).await;
    assert_eq!(b.fake.launched(), ["r-1"], "the firing is not decided again");
    assert_eq!(b.journal("r").len(), 1);
}

/// Downtime from 00:16:55 to 00:21:55: the firings 00:17:00 … 00:21:50 (30) fell due.
async fn after_downtime(extra: &str) -> Bench {
    let mut b = Bench::new();
    let file = every_10s("r", extra);
    b.files(&[("r.yaml", &file)]).await;
    b.advance(10).await;
    b.fake.exit("r-1", 0);
    b.advance(5).await;
    let mut b = b.restart_after(Duration::from_secs(300));
    b.sup.recover().unwrap();
    b.files(&[("r.yaml", &file)]).await;
    b
}

#[tokio::test(start_paused = true)]
async fn catch_up_none_misses_the_downtime() {
    let b = after_downtime("catch_up: none\n").await;
    assert!(b.fake.launched().is_empty());
    assert_eq!(b.journal("r"), entries(&[("00:16:50", "started r-1"), ("00:17:00", "missed 30")]));
}

#[tokio::test(start_paused = true)]
async fn catch_up_latest_starts_the_most_recent() {
    let b = after_downtime("catch_up: latest\n").await;
    assert_eq!(b.fake.launched(), ["r-2"]);
    assert_eq!(b.fake.env("r-2")["CORRAL_SCHEDULED_AT"], "1970-01-01T00:21:50Z");
    assert_eq!(
        b.journal("r"),
        entries(&[
            ("00:16:50", "started r-1"),
            ("00:17:00", "missed 29"),
            ("00:21:50", "started r-2")
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn catch_up_all_starts_up_to_its_max_through_the_concurrency_policy() {
    let b = after_downtime("catch_up: all\ncatch_up_max: 3\nconcurrency: allow\n").await;
    assert_eq!(b.fake.launched(), ["r-2", "r-3", "r-4"]);
    assert_eq!(
        b.journal("r"),
        entries(&[
            ("00:16:50", "started r-1"),
            ("00:17:00", "missed 27"),
            ("00:21:30", "started r-2"),
            ("00:21:40", "started r-3"),
            ("00:21:50", "started r-4"),
        ])
    );
    // Under `forbid` the first caught-up run makes the others overlaps.
    let b = after_downtime("catch_up: all\ncatch_up_max: 3\n").await;
    assert_eq!(b.fake.launched(), ["r-2"]);
    assert_eq!(
        b.journal("r")[2..],
        entries(&[
            ("00:21:30", "started r-2"),
            ("00:21:40", "skipped overlap"),
            ("00:21:50", "skipped overlap"),
        ])[..]
    );
}

#[tokio::test(start_paused = true)]
async fn a_starting_deadline_never_starts_an_older_firing() {
    let b = after_downtime("catch_up: latest\nstarting_deadline: 3s\n").await;
    assert!(b.fake.launched().is_empty());
    assert_eq!(b.journal("r"), entries(&[("00:16:50", "started r-1"), ("00:17:00", "missed 30")]));
}

#[tokio::test(start_paused = true)]
async fn the_agent_wide_limit_caps_catch_up() {
    let mut b = Bench::new();
    let file = every_10s("r", "catch_up: all\ncatch_up_max: 10\nconcurrency: allow\n");
    b.files(&[("r.yaml", &file)]).await;
    b.advance(5).await;
    let mut b = b.restart_after(Duration::from_secs(300));
    b.sup.set_cron_settings(super::CronSettings {
        catch_up_limit: 2,
        ..super::CronSettings::default()
    });
    b.sup.recover().unwrap();
    b.files(&[("r.yaml", &file)]).await;
    assert_eq!(b.fake.launched().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_minute_schedule_is_on_time_for_a_minute() {
    // `* * * * *` fires at 00:17:00; the agent is down from 00:16:45 to 00:17:20.
    let mut b = Bench::new();
    let file = job("m", "schedule: '* * * * *'\ncatch_up: none\n");
    b.files(&[("m.yaml", &file)]).await;
    b.advance(5).await;
    let mut b = b.restart_after(Duration::from_secs(35));
    b.sup.recover().unwrap();
    b.files(&[("m.yaml", &file)]).await;
    assert_eq!(b.fake.launched(), ["m-1"], "20 s late is still the current firing");
}

#[tokio::test(start_paused = true)]
async fn a_changed_schedule_applies_from_the_next_firing() {
    let mut b = Bench::new();
    b.files(&[("r.yaml", &every_10s("r", ""))]).await;
    b.advance(2).await; // 16:42
    b.files(&[("r.yaml", &job("r", "schedule: '5 * * * * *'\n"))]).await;
    b.advance(18).await; // 17:00: the old schedule would have fired twice by now
    assert!(b.fake.launched().is_empty());
    b.advance(5).await;
    assert_eq!(b.fake.launched(), ["r-1"]);
    assert_eq!(b.journal("r"), entries(&[("00:17:05", "started r-1")]));
}

#[tokio::test(start_paused = true)]
async fn suspend_pauses_and_resuming_starts_nothing_old() {
    let mut b = Bench::new();
    b.files(&[("r.yaml", &every_10s("r", ""))]).await;
    b.advance(2).await; // 16:42
    b.files(&[("r.yaml", &every_10s("r", "suspend: true\n"))]).await;
    assert_eq!(b.sup.next_deadline(), None, "nothing to wake up for");
    b.advance(60).await; // 17:42
    assert!(b.fake.launched().is_empty());
    b.files(&[("r.yaml", &every_10s("r", ""))]).await;
    assert!(b.fake.launched().is_empty());
    b.advance(8).await; // 17:50
    assert_eq!(b.fake.launched(), ["r-1"]);
    assert_eq!(b.journal("r"), entries(&[("00:16:50", "missed 6"), ("00:17:50", "started r-1")]));
}

#[tokio::test(start_paused = true)]
async fn removing_the_file_stops_the_schedule_and_its_runs() {
    let mut b = Bench::new();
    b.files(&[("r.yaml", &every_10s("r", "concurrency: allow\n"))]).await;
    b.advance(10).await;
    b.advance(10).await;
    b.remove("r.yaml").await;
    assert!(matches!(b.state("r-1").phase, Phase::Killed { .. }));
    assert!(matches!(b.state("r-2").phase, Phase::Killed { .. }));
    b.advance(30).await;
    assert_eq!(b.fake.launched(), ["r-1", "r-2"]);
    assert!(b.sup.store().cron_states().unwrap().is_empty());
    assert_eq!(b.journal("r").len(), 2, "the journal stays");
    // Back again: a new job to the agent, from its next firing.
    b.files(&[("r.yaml", &every_10s("r", ""))]).await;
    b.advance(10).await;
    assert_eq!(b.fake.launched(), ["r-1", "r-2", "r-3"]);
}

#[tokio::test(start_paused = true)]
async fn a_file_removed_while_the_agent_was_down_stops_the_schedule() {
    let mut b = Bench::new();
    b.files(&[("r.yaml", &every_10s("r", "")), ("o.yaml", &job("o", ""))]).await;
    b.advance(10).await;
    b.still_running("r-1");
    let mut b = b.restart_after(Duration::from_secs(1));
    b.sup.recover().unwrap();
    b.files(&[("o.yaml", &job("o", ""))]).await;
    assert!(matches!(b.state("r-1").phase, Phase::Killed { .. }), "{:?}", b.state("r-1"));
    assert!(b.sup.store().cron_states().unwrap().is_empty());
    b.advance(30).await;
    assert!(b.fake.launched().is_empty());
}

#[tokio::test(start_paused = true)]
async fn history_keeps_the_last_n_runs_and_their_files() {
    let mut b = Bench::new();
    b.files(&[("r.yaml", &every_10s("r", "history: {successful: 2, failed: 1}\n"))]).await;
    let runs_dir = b.dir.path().join("runs");
    for (i, code) in [0, 0, 0, 1, 1].into_iter().enumerate() {
        b.advance(10).await;
        let run = format!("r-{}", i + 1);
        std::fs::create_dir_all(runs_dir.join(&run).join("1")).unwrap();
        b.fake.exit(&run, code);
        b.settle().await;
    }
    assert_eq!(b.runs_of("r"), ["r-2 succeeded", "r-3 succeeded", "r-5 failed"]);
    let mut left = Vec::new();
    for _ in 0..200 {
        left = std::fs::read_dir(&runs_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect::<Vec<_>>();
        left.sort();
        if left.len() == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(left, ["r-2", "r-3", "r-5"]);
}

#[tokio::test(start_paused = true)]
async fn a_job_that_loses_its_schedule_keeps_its_run_and_fires_no_more() {
    let mut b = Bench::new();
    b.files(&[("r.yaml", &every_10s("r", ""))]).await;
    b.advance(10).await;
    // The one-shot version is taken over by the run under way: no second run.
    b.files(&[("r.yaml", &job("r", ""))]).await;
    assert!(b.sup.store().cron_states().unwrap().is_empty());
    b.advance(30).await;
    assert_eq!(b.fake.launched(), ["r-1"]);
    assert_eq!(b.phase("r-1"), "running");
    // And its schedule back: a new job to the schedule, from its next firing.
    b.fake.exit("r-1", 0);
    b.files(&[("r.yaml", &every_10s("r", "concurrency: allow\n"))]).await;
    b.advance(10).await;
    assert_eq!(b.fake.launched(), ["r-1", "r-2"]);
    assert_eq!(b.fake.env("r-2")["CORRAL_SCHEDULED_AT"], "1970-01-01T00:17:30Z");
}
