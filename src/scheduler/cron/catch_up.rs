//! Which firings to start, and which to give up, when the agent looks at a job: after
//! downtime, and on every tick (a tick is a catch-up over the firings since the last one).

use chrono::{DateTime, Utc};

use super::count::count_firings;
use super::job::{earlier, CronJob};
use super::next_fire::{next_fire, prev_fire};
use crate::spec::CatchUp;

/// What to do about the firings that fell due since the job was last considered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatchUpPlan {
    /// Firings to start now (subject to the concurrency policy), oldest first: the most
    /// recent ones, never more than the policy's and the agent's caps.
    pub to_start: Vec<DateTime<Utc>>,
    /// Every other firing that fell due. They all come before `to_start`'s.
    pub missed: Option<Missed>,
    /// The job's new `last_considered`: every firing scheduled at or before it is decided.
    pub last_considered: DateTime<Utc>,
}

/// Firings that fell due and will not start: `count` of them, from `first` to `last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missed {
    pub count: u64,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

/// Plans the firings scheduled after `last_considered` and due by `now` (a firing is due
/// at its scheduled time plus the job's jitter offset).
///
/// - No `last_considered` (the job is new to the agent): nothing is caught up; the job's
///   firings start with the next one.
/// - A firing is on time if it is decided less than [`CronJob::late_after`] (a minute, a
///   second for a schedule with a seconds field) after it
///   was due; one the agent did not get to in that time was missed while it was down (or
///   the machine was asleep, or the clock jumped).
/// - `catch_up: none` starts the most recent firing only if it is on time; `latest` starts
///   the most recent firing; `all` the `max` most recent. `max_starts` caps all three, for
///   the agent as a whole.
/// - A firing due longer ago than `starting_deadline` never starts.
/// - A suspended job starts nothing, and its firings are used up: resuming it does not
///   start runs for the time it was suspended.
/// - A clock that went back (`now` before the last tick) decides nothing and keeps
///   `last_considered`, so no firing is decided twice.
///
/// The cost does not grow with the number of firings missed: they are counted, not
/// listed, and the search for the ones to start goes back from `now`.
pub fn plan_catch_up(
    job: &CronJob<'_>,
    last_considered: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    max_starts: u32,
) -> CatchUpPlan {
    let horizon = earlier(now, job.offset);
    let nothing = |last_considered| CatchUpPlan { to_start: vec![], missed: None, last_considered };
    let Some(last) = last_considered else { return nothing(horizon) };
    if horizon <= last {
        return nothing(last);
    }
    let (schedule, tz) = (job.schedule(), job.tz);
    let due = count_firings(schedule, tz, last, horizon);
    if due == 0 {
        return nothing(horizon);
    }

    let catch_up = job.recurrence.catch_up;
    let wanted = match catch_up {
        _ if job.recurrence.suspend => 0,
        CatchUp::None | CatchUp::Latest => 1,
        CatchUp::All { max } => max,
    }
    .min(max_starts);
    let on_time = |t| job.due(t) > earlier(now, job.late_after());
    let startable = |t| job.may_start(t, now) && (catch_up != CatchUp::None || on_time(t));
    let mut to_start = Vec::new();
    let mut before = horizon + chrono::TimeDelta::nanoseconds(1);
    while to_start.len() < wanted as usize {
        match prev_fire(schedule, tz, before) {
            Some(t) if t > last && startable(t) => {
                to_start.push(t);
                before = t;
            }
            _ => break,
        }
    }
    to_start.reverse();

    let count = due.saturating_sub(to_start.len() as u64);
    let missed = if count == 0 {
        None
    } else {
        next_fire(schedule, tz, last)
            .zip(prev_fire(schedule, tz, before))
            .map(|(first, last)| Missed { count, first, last })
    };
    CatchUpPlan { to_start, missed, last_considered: horizon }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::scheduler::cron::testutil::{recurrence, utc};
    use crate::spec::Recurrence;
    use crate::vocab::JobName;

    /// Plans for a job in UTC unless its recurrence names a zone.
    fn plan(rec: &Recurrence, last: Option<&str>, now: &str, cap: u32) -> CatchUpPlan {
        let name = JobName::parse("job").unwrap();
        let job = CronJob::new(&name, rec, chrono_tz::UTC, "node");
        plan_catch_up(&job, last.map(utc), utc(now), cap)
    }

    fn hourly(catch_up: CatchUp) -> Recurrence {
        Recurrence { catch_up, ..recurrence("0 * * * *") }
    }

    #[test]
    fn a_new_job_catches_nothing_up() {
        let p = plan(&hourly(CatchUp::All { max: 10 }), None, "2026-05-01T12:30:00Z", 100);
        assert_eq!(
            p,
            CatchUpPlan {
                to_start: vec![],
                missed: None,
                last_considered: utc("2026-05-01T12:30:00Z")
            }
        );
    }

    #[test]
    fn an_on_time_tick_starts_the_firing() {
        // `none` is about firings missed while down; the current one is not missed.
        let p =
            plan(&hourly(CatchUp::None), Some("2026-05-01T11:00:00Z"), "2026-05-01T12:00:00Z", 100);
        assert_eq!(p.to_start, vec![utc("2026-05-01T12:00:00Z")]);
        let p = plan(
            &hourly(CatchUp::None),
            Some("2026-05-01T11:00:00Z"),
            "2026-05-01T12:00:59.9Z",
            100,
        );
        assert_eq!(p.to_start, vec![utc("2026-05-01T12:00:00Z")]);
        let p =
            plan(&hourly(CatchUp::None), Some("2026-05-01T11:00:00Z"), "2026-05-01T12:01:00Z", 100);
        assert!(p.to_start.is_empty(), "{:?}", p.to_start);
        assert_eq!(p.missed.unwrap().count, 1);
        let p = plan(
            &hourly(CatchUp::Latest),
            Some("2026-05-01T11:00:00Z"),
            "2026-05-01T12:00:00.2Z",
            100,
        );
        assert_eq!(p.to_start, vec![utc("2026-05-01T12:00:00Z")]);
        assert_eq!(p.missed, None);
        assert_eq!(p.last_considered, utc("2026-05-01T12:00:00.2Z"));
    }

    #[test]
    fn a_seconds_schedule_is_late_after_a_second() {
        // Every four seconds; the agent was down from :01 to :09.6, so :08 is 1.6 s old.
        let every_4s = recurrence("*/4 * * * * *");
        let none = Recurrence { catch_up: CatchUp::None, ..every_4s.clone() };
        let p = plan(&none, Some("2026-05-01T12:00:01Z"), "2026-05-01T12:00:09.6Z", 100);
        assert!(p.to_start.is_empty(), "{:?}", p.to_start);
        assert_eq!(p.missed.unwrap().count, 2);
        // Decided 0.6 s after it was due, the :08 firing is the current one, not a missed one.
        let p = plan(&none, Some("2026-05-01T12:00:01Z"), "2026-05-01T12:00:08.6Z", 100);
        assert_eq!(p.to_start, vec![utc("2026-05-01T12:00:08Z")]);
        let p = plan(&every_4s, Some("2026-05-01T12:00:01Z"), "2026-05-01T12:00:09.6Z", 100);
        assert_eq!(p.to_start, vec![utc("2026-05-01T12:00:08Z")]);
    }

    #[test]
    fn none_misses_everything() {
        let p =
            plan(&hourly(CatchUp::None), Some("2026-05-01T00:00:00Z"), "2026-05-01T05:30:00Z", 100);
        assert!(p.to_start.is_empty(), "{:?}", p.to_start);
        assert_eq!(
            p.missed,
            Some(Missed {
                count: 5,
                first: utc("2026-05-01T01:00:00Z"),
                last: utc("2026-05-01T05:00:00Z")
            })
        );
    }

    #[test]
    fn latest_starts_the_most_recent() {
        let p = plan(
            &hourly(CatchUp::Latest),
            Some("2026-05-01T00:00:00Z"),
            "2026-05-01T05:30:00Z",
            100,
        );
        assert_eq!(p.to_start, vec![utc("2026-05-01T05:00:00Z")]);
        assert_eq!(
            p.missed,
            Some(Missed {
                count: 4,
                first: utc("2026-05-01T01:00:00Z"),
                last: utc("2026-05-01T04:00:00Z")
            })
        );
        assert_eq!(p.last_considered, utc("2026-05-01T05:30:00Z"));
    }

    #[test]
    fn latest_within_the_deadline_only() {
        let rec = Recurrence {
            starting_deadline: Some(Duration::from_secs(600)),
            ..hourly(CatchUp::Latest)
        };
        let p = plan(&rec, Some("2026-05-01T00:00:00Z"), "2026-05-01T05:10:00Z", 100);
        assert_eq!(p.to_start, vec![utc("2026-05-01T05:00:00Z")]);
        let p = plan(&rec, Some("2026-05-01T00:00:00Z"), "2026-05-01T05:10:01Z", 100);
        assert!(p.to_start.is_empty(), "{:?}", p.to_start);
        assert_eq!(p.missed.unwrap().count, 5);
    }

    #[test]
    fn all_starts_each_up_to_max_and_the_deadline() {
        let p = plan(
            &hourly(CatchUp::All { max: 3 }),
            Some("2026-05-01T00:00:00Z"),
            "2026-05-01T05:30:00Z",
            100,
        );
        assert_eq!(
            p.to_start,
            ["2026-05-01T03:00:00Z", "2026-05-01T04:00:00Z", "2026-05-01T05:00:00Z"]
                .map(utc)
                .to_vec()
        );
        assert_eq!(
            p.missed,
            Some(Missed {
                count: 2,
                first: utc("2026-05-01T01:00:00Z"),
                last: utc("2026-05-01T02:00:00Z")
            })
        );
        // The agent's cap wins over the job's max.
        let p = plan(
            &hourly(CatchUp::All { max: 3 }),
            Some("2026-05-01T00:00:00Z"),
            "2026-05-01T05:30:00Z",
            2,
        );
        assert_eq!(p.to_start.len(), 2);
        assert_eq!(p.missed.unwrap().count, 3);
        // A deadline of two hours leaves 04:00 and 05:00 startable at 05:30.
        let rec = Recurrence {
            starting_deadline: Some(Duration::from_secs(7200)),
            ..hourly(CatchUp::All { max: 10 })
        };
        let p = plan(&rec, Some("2026-05-01T00:00:00Z"), "2026-05-01T05:30:00Z", 100);
        assert_eq!(p.to_start, ["2026-05-01T04:00:00Z", "2026-05-01T05:00:00Z"].map(utc).to_vec());
        assert_eq!(p.missed.unwrap().count, 3);
    }

    #[test]
    fn all_with_fewer_missed_than_max_starts_them_all() {
        let p = plan(
            &hourly(CatchUp::All { max: 10 }),
            Some("2026-05-01T00:00:00Z"),
            "2026-05-01T03:00:00Z",
            100,
        );
        assert_eq!(p.to_start.len(), 3);
        assert_eq!(p.missed, None);
    }

    #[test]
    fn a_suspended_job_uses_its_firings_up() {
        let rec = Recurrence { suspend: true, ..hourly(CatchUp::All { max: 10 }) };
        let p = plan(&rec, Some("2026-05-01T00:00:00Z"), "2026-05-01T05:30:00Z", 100);
        assert!(p.to_start.is_empty(), "{:?}", p.to_start);
        assert_eq!(p.missed.unwrap().count, 5);
        assert_eq!(p.last_considered, utc("2026-05-01T05:30:00Z"));
    }

    #[test]
    fn a_clock_that_went_back_decides_nothing() {
        let p = plan(
            &hourly(CatchUp::All { max: 10 }),
            Some("2026-05-01T05:00:00Z"),
            "2026-05-01T03:00:00Z",
            100,
        );
        assert_eq!(
            p,
            CatchUpPlan {
                to_start: vec![],
                missed: None,
                last_considered: utc("2026-05-01T05:00:00Z")
            }
        );
    }

    #[test]
    fn a_year_off_is_counted_quickly_and_the_schedule_goes_on() {
        let every_minute =
            Recurrence { timezone: Some(chrono_tz::Europe::Berlin), ..recurrence("* * * * *") };
        let p = plan(
            &Recurrence { catch_up: CatchUp::All { max: 5 }, ..every_minute.clone() },
            Some("2025-06-01T00:00:00Z"),
            "2026-06-01T00:00:00Z",
            100,
        );
        // 365 days of 1440 minutes; the clock changes twice and an interval job loses the
        // skipped hour and runs the repeated one twice, which cancel out.
        assert_eq!(p.to_start.len(), 5);
        assert_eq!(p.to_start[4], utc("2026-06-01T00:00:00Z"));
        assert_eq!(p.missed.unwrap().count, 365 * 1440 - 5);
        assert_eq!(p.missed.unwrap().first, utc("2025-06-01T00:01:00Z"));
        assert_eq!(p.missed.unwrap().last, utc("2026-05-31T23:55:00Z"));
        let p = plan(&every_minute, Some("2016-06-01T00:00:00Z"), "2026-06-01T00:00:00Z", 100);
        assert_eq!(p.to_start, vec![utc("2026-06-01T00:00:00Z")]);
        assert_eq!(p.missed.unwrap().count, 3652 * 1440 - 1);
    }
}
