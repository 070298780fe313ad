//! Helpers for the cron tests: instants and wall-clock times from text, schedules and
//! recurrences with defaults.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::spec::{CatchUp, Concurrency, History, Recurrence, Schedule};

/// An instant from RFC 3339 text.
pub fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}")).to_utc()
}

/// A wall-clock time from `YYYY-MM-DD HH:MM:SS`.
pub fn wall(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

pub fn schedule(text: &str) -> Schedule {
    Schedule::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// A recurrence with the job compiler's defaults.
pub fn recurrence(text: &str) -> Recurrence {
    Recurrence {
        schedule: schedule(text),
        timezone: None,
        concurrency: Concurrency::Forbid,
        catch_up: CatchUp::Latest,
        starting_deadline: None,
        jitter: Duration::ZERO,
        suspend: false,
        history: History::default(),
    }
}

/// The firings in `(from, to]`, worked out from the rules in the module documentation by
/// visiting every minute: independent of the searches it checks. Schedules must fire on
/// whole minutes (five fields), and the zone change its clock on whole minutes.
pub fn brute_force(
    schedule: &Schedule,
    tz: chrono_tz::Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    use chrono::{TimeDelta, TimeZone};

    use super::dst::{offset_seconds, wall_time, HourField};

    let matches = |wall: NaiveDateTime| schedule.cron().is_time_matching(&wall).unwrap();
    let fixed = HourField::of(schedule) == HourField::Fixed;
    let minute = TimeDelta::minutes(1);
    let mut firings = Vec::new();
    let mut u = DateTime::from_timestamp(from.timestamp().div_euclid(60) * 60, 0).unwrap() + minute;
    while u <= to {
        let wall = wall_time(tz, u);
        let first_showing = tz.from_local_datetime(&wall).earliest().unwrap().to_utc() == u;
        let mut fires = matches(wall) && (!fixed || first_showing);
        if fixed && offset_seconds(tz, u - minute) < offset_seconds(tz, u) {
            // The clock jumped forward at `u`: did the gap hold a match?
            let mut skipped = wall_time(tz, u - minute) + minute;
            while skipped < wall {
                fires |= matches(skipped);
                skipped += minute;
            }
        }
        if fires && u > from {
            firings.push(u);
        }
        u += minute;
    }
    firings
}
