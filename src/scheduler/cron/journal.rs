//! The cron journal: one record per decision about a firing, kept by the store beside the
//! job's [`CronState`](super::CronState) and written in the same transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::concurrency::SkipReason;
use crate::spec::Schedule;
use crate::vocab::JobName;
use crate::vocab::RunId;

/// A start this long or more after the firing was due is recorded as [`FiringOutcome::Late`].
/// A minute, cron's usual resolution: a run that missed its minute is late.
pub const LATE_AFTER: Duration = Duration::from_secs(60);

/// [`LATE_AFTER`] for a schedule with a seconds field: a run that missed its second is late.
/// Otherwise a firing of `*/2 * * * * *` decided 30 s late would count as on time, and
/// `catch_up: none` could not tell a missed firing from the current one.
pub const LATE_AFTER_SECONDS: Duration = Duration::from_secs(1);

/// How late a firing of `schedule` may be decided and still be on time.
pub fn late_after(schedule: &Schedule) -> Duration {
    if schedule.has_seconds() {
        LATE_AFTER_SECONDS
    } else {
        LATE_AFTER
    }
}

/// What was decided about a firing, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FiringRecord {
    pub job: JobName,
    /// The time the schedule named (for [`FiringOutcome::Missed`], the first of the
    /// firings the record stands for).
    pub scheduled: DateTime<Utc>,
    pub decided_at: DateTime<Utc>,
    pub outcome: FiringOutcome,
}

/// What became of a firing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FiringOutcome {
    /// A run was started for it, on time.
    Started { run: RunId },
    /// A run was started for it, `delay` after it was due: caught up after the agent was
    /// down, or started when the run it queued behind ended.
    Late { run: RunId, delay: Duration },
    /// No run: see the reason.
    Skipped { reason: SkipReason },
    /// No run: it fell due while nothing could start it (the agent was down, or it was
    /// past its `starting_deadline`, or `catch_up` did not pick it), or while the job was
    /// suspended. One record stands for `count` firings, `scheduled` to `last`, so a year
    /// of downtime is one record, not half a million.
    Missed { count: u64, last: DateTime<Utc>, suspended: bool },
}

impl FiringOutcome {
    /// `Started`, or `Late` if the start is `late_after` (see [`late_after()`]) or more
    /// after the firing was due.
    pub fn started(
        run: RunId,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
        late_after: Duration,
    ) -> FiringOutcome {
        match (now - due).to_std() {
            Ok(delay) if delay >= late_after => FiringOutcome::Late { run, delay },
            _ => FiringOutcome::Started { run },
        }
    }

    /// The run started for the firing, if one was.
    pub fn run(&self) -> Option<&RunId> {
        match self {
            FiringOutcome::Started { run } | FiringOutcome::Late { run, .. } => Some(run),
            FiringOutcome::Skipped { .. } | FiringOutcome::Missed { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cron::testutil::utc;

    #[test]
    fn late_means_a_minute_or_more() {
        let due = utc("2026-01-01T00:00:00Z");
        let run = RunId::new("r1");
        assert_eq!(
            FiringOutcome::started(run.clone(), due, utc("2026-01-01T00:00:59Z"), LATE_AFTER),
            FiringOutcome::Started { run: run.clone() }
        );
        assert_eq!(
            FiringOutcome::started(run.clone(), due, utc("2026-01-01T00:01:00Z"), LATE_AFTER),
            FiringOutcome::Late { run: run.clone(), delay: Duration::from_secs(60) }
        );
        // A clock that stepped back does not make a start early.
        assert_eq!(
            FiringOutcome::started(run.clone(), due, utc("2025-12-31T23:00:00Z"), LATE_AFTER),
            FiringOutcome::Started { run }
        );
    }

    #[test]
    fn records_round_trip_through_json() {
        let job = JobName::parse("nightly-etl").unwrap();
        let at = utc("2026-03-29T01:00:00Z");
        for outcome in [
            FiringOutcome::Started { run: RunId::new("r1") },
            FiringOutcome::Late { run: RunId::new("r2"), delay: Duration::from_millis(90_500) },
            FiringOutcome::Skipped { reason: SkipReason::Overlap },
            FiringOutcome::Missed { count: 525_600, last: at, suspended: false },
        ] {
            let record = FiringRecord { job: job.clone(), scheduled: at, decided_at: at, outcome };
            let json = serde_json::to_string(&record).unwrap();
            assert_eq!(serde_json::from_str::<FiringRecord>(&json).unwrap(), record, "{json}");
        }
        let json = serde_json::to_value(FiringRecord {
            job,
            scheduled: at,
            decided_at: at,
            outcome: FiringOutcome::Skipped { reason: SkipReason::QueueFull },
        })
        .unwrap();
        assert_eq!(json["outcome"]["kind"], "skipped");
        assert_eq!(json["outcome"]["reason"], "queue_full");
        assert_eq!(json["scheduled"], "2026-03-29T01:00:00Z");
    }
}
