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

/// Zones with the instants (UTC) their clocks change in 2026, both ways: whole hours
/// (Europe, America), half an hour (Lord Howe), odd offsets (Chatham, St John's), the
/// southern hemisphere, and zones without changes.
pub fn clock_changes() -> Vec<(chrono_tz::Tz, Vec<DateTime<Utc>>)> {
    use chrono_tz::{America, Asia, Australia, Europe, Pacific};
    vec![
        (Europe::Berlin, vec![utc("2026-03-29T01:00:00Z"), utc("2026-10-25T01:00:00Z")]),
        (Europe::London, vec![utc("2026-03-29T01:00:00Z"), utc("2026-10-25T01:00:00Z")]),
        (America::New_York, vec![utc("2026-03-08T07:00:00Z"), utc("2026-11-01T06:00:00Z")]),
        (America::St_Johns, vec![utc("2026-03-08T05:30:00Z"), utc("2026-11-01T04:30:00Z")]),
        (Australia::Sydney, vec![utc("2026-04-04T16:00:00Z"), utc("2026-10-03T16:00:00Z")]),
        (Australia::Lord_Howe, vec![utc("2026-04-04T15:00:00Z"), utc("2026-10-03T15:30:00Z")]),
        (Pacific::Chatham, vec![utc("2026-04-04T14:00:00Z"), utc("2026-09-26T14:00:00Z")]),
        (Asia::Kolkata, vec![utc("2026-03-29T01:00:00Z")]),
        (chrono_tz::UTC, vec![utc("2026-03-29T01:00:00Z")]),
    ]
}

/// Five-field schedules built from fields that meet clock changes in every way: fixed and
/// interval hours, single and many minutes, and date fields that come and go.
pub fn any_schedule() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let minute = prop::sample::select(vec!["*", "*/15", "*/7", "0", "30", "0,30", "5-10", "59"]);
    let hour = prop::sample::select(vec![
        "*", "*/2", "*/5", "0", "1", "2", "3", "1-3", "0,2", "2-4/2", "23", "1,2,3",
    ]);
    let day = prop::sample::select(vec!["*", "*", "*", "L", "4W", "29", "1-5"]);
    let weekday = prop::sample::select(vec!["*", "*", "*", "sun", "mon-fri", "sat#1"]);
    (minute, hour, day, weekday).prop_map(|(m, h, d, w)| format!("{m} {h} {d} * {w}"))
}
