//! Cron schedules: any expression through `Schedule::parse`, then, in any time zone, from
//! any instant chrono can hold, the next and previous firings.
//!
//! Input: `expression NUL zone NUL seconds NUL nanoseconds`, the zone an IANA name
//! (parsed as job files parse it) and the instant in seconds since the epoch; missing
//! parts are UTC and the epoch.
//!
//! Invariants: a firing is strictly after the instant asked about (before, for the
//! previous one) and on a whole second; and the answers agree with each other: the next
//! firing after `t - 1s`, for a firing `t`, is `t` again, and the previous firing before
//! `t + 1s` is `t` (no firing is found from one side and missed from the other).

#![no_main]

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;
use corral::scheduler::cron::{next_fire, prev_fire};
use corral::spec::schedule::parse_timezone;
use corral::spec::Schedule;
use libfuzzer_sys::fuzz_target;

const SECOND: TimeDelta = TimeDelta::seconds(1);

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let mut parts = text.split('\0');
    let expression = parts.next().unwrap_or_default();
    let zone = parts.next().unwrap_or("UTC");
    let seconds = parts.next().map_or(Some(0), |s| s.trim().parse::<i64>().ok());
    let nanos = parts.next().map_or(Some(0), |s| s.trim().parse::<u32>().ok());
    let (Some(seconds), Some(nanos)) = (seconds, nanos) else { return };

    let Ok(schedule) = Schedule::parse(expression) else { return };
    let Ok(tz): Result<Tz, _> = parse_timezone(zone) else { return };
    let Some(at) = DateTime::<Utc>::from_timestamp(seconds, nanos % 1_000_000_000) else {
        return;
    };

    if let Some(next) = next_fire(&schedule, tz, at) {
        assert!(next > at, "next firing {next} is not after {at}");
        assert_eq!(next.nanosecond(), 0, "next firing {next} is not on a second");
        if let Some(just_before) = next.checked_sub_signed(SECOND) {
            assert_eq!(
                next_fire(&schedule, tz, just_before),
                Some(next),
                "{next} is the next firing after {at}, but not the next after {just_before}"
            );
        }
        if let Some(just_after) = next.checked_add_signed(SECOND) {
            assert_eq!(
                prev_fire(&schedule, tz, just_after),
                Some(next),
                "{next} is the next firing after {at}, but not the previous before {just_after}"
            );
        }
    }
    if let Some(prev) = prev_fire(&schedule, tz, at) {
        assert!(prev < at, "previous firing {prev} is not before {at}");
        assert_eq!(prev.nanosecond(), 0, "previous firing {prev} is not on a second");
    }
});
