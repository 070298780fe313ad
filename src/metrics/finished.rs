//! Runs that ended, kept in the scrape for a while with their final counters.
//!
//! A short job's series would otherwise vanish with its cgroup between two
//! scrapes, and an OOM kill it suffered would never be seen by `rate()` or
//! an alert: the classic "OOM counter reads 0" problem of per-container
//! exporters. A finished run keeps its series (same names, same labels) at
//! their final values for [`MetricsConfig::finished_retention`], then they
//! disappear.
//!
//! [`MetricsConfig::finished_retention`]: super::MetricsConfig::finished_retention

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use crate::scheduler::{ExitStatus, Phase};
use crate::store::RunRecord;
use crate::vocab::Bytes;
use crate::vocab::JobName;
use crate::vocab::RunId;

/// A run that ended, with what its cgroup counted.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedRun {
    pub job: JobName,
    pub run: RunId,
    /// The terminal phase: succeeded, failed or killed.
    pub phase: Phase,
    pub ended_at: SystemTime,
    pub cpu_seconds: f64,
    pub peak_memory: Option<Bytes>,
    pub oom_kills: u64,
    /// `None` when no process ever ran (killed while queued).
    pub exit: Option<ExitStatus>,
}

impl FinishedRun {
    /// The run as the store recorded it, if it has ended. Lets an agent that
    /// restarts put the runs that ended within the retention back.
    pub fn from_record(record: &RunRecord) -> Option<FinishedRun> {
        if !record.state.phase.is_terminal() {
            return None;
        }
        let ended = record.finished_at.unwrap_or(record.updated_at);
        let exit = record.exit.as_ref();
        Some(FinishedRun {
            job: record.job.clone(),
            run: record.id.clone(),
            phase: record.state.phase.clone(),
            ended_at: SystemTime::from(ended),
            cpu_seconds: exit.map_or(0.0, |e| e.cpu_seconds),
            peak_memory: exit.and_then(|e| e.peak_memory),
            oom_kills: exit.map_or(0, |e| e.oom_kills),
            exit: exit.map(|e| e.status),
        })
    }

    /// The exit code as a shell reports it: the code, or 128 + the signal
    /// number for a run killed by a signal.
    pub fn exit_code(&self) -> Option<i64> {
        self.exit.map(ExitStatus::shell_code)
    }
}

/// The retained runs, oldest first.
#[derive(Debug, Clone)]
pub struct FinishedRuns {
    runs: VecDeque<FinishedRun>,
    retention: Duration,
    max: usize,
}

impl FinishedRuns {
    /// Keeps each run for `retention` after it ended, and never more than
    /// `max` runs (the oldest go first), so a burst of short jobs cannot
    /// grow the scrape without bound.
    pub fn new(retention: Duration, max: usize) -> FinishedRuns {
        FinishedRuns { runs: VecDeque::new(), retention, max }
    }

    /// Adds a run, replacing an earlier entry for the same run id.
    pub fn push(&mut self, run: FinishedRun) {
        self.runs.retain(|r| r.run != run.run);
        // Kept in order of ending so that expiry and the cap drop the oldest;
        // a run seeded from the store may have ended before the newest one.
        let at = self.runs.partition_point(|r| r.ended_at <= run.ended_at);
        self.runs.insert(at, run);
        while self.runs.len() > self.max {
            self.runs.pop_front();
        }
    }

    /// Drops the runs that ended more than the retention before `now`. A run
    /// that ended "after" `now` (the wall clock stepped back) is kept.
    pub fn expire(&mut self, now: SystemTime) {
        while let Some(oldest) = self.runs.front() {
            match now.duration_since(oldest.ended_at) {
                Ok(age) if age > self.retention => {
                    self.runs.pop_front();
                }
                _ => break,
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &FinishedRun> {
        self.runs.iter()
    }

    pub fn len(&self) -> usize {
        self.runs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::scheduler::FailReason;

    fn run(id: &str, ended_secs: u64) -> FinishedRun {
        FinishedRun {
            job: JobName::parse("etl").unwrap(),
            run: RunId::new(id),
            phase: Phase::Succeeded,
            ended_at: UNIX_EPOCH + Duration::from_secs(ended_secs),
            cpu_seconds: 1.5,
            peak_memory: Some(Bytes::MIB),
            oom_kills: 0,
            exit: Some(ExitStatus::Code(0)),
        }
    }

    fn ids(runs: &FinishedRuns) -> Vec<&str> {
        runs.iter().map(|r| r.run.as_str()).collect()
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn runs_stay_for_the_retention_then_go() {
        let mut runs = FinishedRuns::new(Duration::from_secs(600), 100);
        runs.push(run("etl-1", 1000));
        runs.push(run("etl-2", 1300));
        runs.expire(at(1600));
        assert_eq!(ids(&runs), ["etl-1", "etl-2"], "exactly the retention is still kept");
        runs.expire(at(1601));
        assert_eq!(ids(&runs), ["etl-2"]);
        runs.expire(at(5000));
        assert!(runs.is_empty());
    }

    #[test]
    fn a_clock_stepping_back_keeps_everything() {
        let mut runs = FinishedRuns::new(Duration::from_secs(60), 100);
        runs.push(run("etl-1", 1000));
        runs.expire(at(10));
        assert_eq!(runs.len(), 1);
    }

    #[test]
    fn the_cap_drops_the_oldest_and_order_follows_ending() {
        let mut runs = FinishedRuns::new(Duration::from_secs(600), 2);
        runs.push(run("etl-2", 200));
        runs.push(run("etl-1", 100));
        assert_eq!(ids(&runs), ["etl-1", "etl-2"]);
        runs.push(run("etl-3", 300));
        assert_eq!(ids(&runs), ["etl-2", "etl-3"]);
    }

    #[test]
    fn pushing_a_run_again_replaces_it() {
        let mut runs = FinishedRuns::new(Duration::from_secs(600), 10);
        runs.push(run("etl-1", 100));
        let mut again = run("etl-1", 150);
        again.oom_kills = 2;
        runs.push(again);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs.iter().next().unwrap().oom_kills, 2);
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        let mut r = run("etl-1", 1);
        assert_eq!(r.exit_code(), Some(0));
        r.exit = Some(ExitStatus::Code(3));
        assert_eq!(r.exit_code(), Some(3));
        r.exit = Some(ExitStatus::Signal(9));
        assert_eq!(r.exit_code(), Some(137));
        r.exit = None;
        r.phase = Phase::Failed { reason: FailReason::Timeout };
        assert_eq!(r.exit_code(), None);
    }
}
