//! How many times a schedule fired in a range, without visiting each firing.
//!
//! A machine that was off for a year owes a `* * * * *` job 525,600 firings. Catch-up
//! starts a handful of them at most, but the rest are counted, and counting them one
//! [`next_fire`](super::next_fire) at a time would take seconds. Here the range is cut at
//! the zone's clock changes into stretches where the clock runs evenly; in each stretch
//! the matching wall-clock times are counted day by day, by arithmetic on the time-of-day
//! fields, and the DST rules add or remove what they add or remove at each cut. The cost
//! grows with the number of days, not of firings.
//!
//! The answer is the same as counting [`firings_between`](super::firings_between), which
//! the tests check.

use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;

use super::dst::{self, HourField, Showing};
use crate::spec::Schedule;

const SECOND: TimeDelta = TimeDelta::seconds(1);

/// How far apart the zone's offset is sampled when looking for clock changes. Two changes
/// closer than this that cancel out would go unseen; the tz database has none since 1970.
const PROBE: TimeDelta = TimeDelta::hours(6);

/// The number of firings in `(from, to]`.
pub fn count_firings(schedule: &Schedule, tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    if !schedule.matches_some_day() {
        return 0;
    }
    // Whole seconds, half open: [start, end).
    let start = dst::floor_second(from) + SECOND;
    let end = dst::floor_second(to) + SECOND;
    if start >= end {
        return 0;
    }
    let day = DayCounter::new(schedule);
    let hours = HourField::of(schedule);

    // What the clock did just before the stretch that begins at `start`.
    let mut jump = None;
    let mut repeated_until = None;
    let before = dst::offset_seconds(tz, start - SECOND);
    if before < dst::offset_seconds(tz, start) {
        jump = Some((dst::wall_time(tz, start - SECOND) + SECOND, dst::wall_time(tz, start)));
    } else if let Some((Showing::Second, fold)) = dst::fold_at(tz, start) {
        repeated_until = Some(fold.end);
    }

    let mut total = 0;
    let mut stretch_start = start;
    loop {
        let stretch_end = next_change(tz, stretch_start, end).unwrap_or(end);
        let offset = TimeDelta::seconds(dst::offset_seconds(tz, stretch_start).into());
        let wall_start = stretch_start.naive_utc() + offset;
        let wall_end = stretch_end.naive_utc() + offset;

        let mut counted_from = wall_start;
        if hours == HourField::Fixed {
            // Times shown a second time ran the first time.
            if let Some(until) = repeated_until {
                counted_from = counted_from.max(until.min(wall_end));
            }
            // The skipped times run once, at the jump, unless the first time after the
            // jump matches and runs then anyway.
            if let Some((skipped_from, skipped_to)) = jump {
                if day.count(skipped_from, skipped_to) > 0
                    && day.count(wall_start, wall_start + SECOND) == 0
                {
                    total += 1;
                }
            }
        }
        total += day.count(counted_from, wall_end);

        if stretch_end >= end {
            return total;
        }
        let wall_before = stretch_end.naive_utc() + offset;
        let wall_after = dst::wall_time(tz, stretch_end);
        if wall_after > wall_before {
            jump = Some((wall_before, wall_after));
            repeated_until = None;
        } else {
            jump = None;
            repeated_until = Some(wall_before);
        }
        stretch_start = stretch_end;
    }
}

/// The first instant in `(from, end)` whose UTC offset differs from `from`'s.
fn next_change(tz: Tz, from: DateTime<Utc>, end: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let offset = dst::offset_seconds(tz, from);
    let last = end - SECOND;
    let mut probe = from;
    while probe < last {
        let next = (probe + PROBE).min(last);
        if dst::offset_seconds(tz, next) != offset {
            return Some(dst::first_instant(probe, next, |u| dst::offset_seconds(tz, u) != offset));
        }
        probe = next;
    }
    None
}

/// Counts wall-clock matches in a range of wall-clock times, a day at a time: a day either
/// matches the date fields or not, and in a matching day the time-of-day fields match
/// the same times every day.
struct DayCounter<'a> {
    schedule: &'a Schedule,
    /// A time of day every field matches, to ask croner about a date alone.
    probe_time: NaiveTime,
    hours: [bool; 24],
    minutes: [bool; 60],
    seconds: [bool; 60],
}

impl<'a> DayCounter<'a> {
    fn new(schedule: &'a Schedule) -> Self {
        let pattern = &schedule.cron().pattern;
        fn mask<const N: usize>(values: Vec<u16>) -> [bool; N] {
            let mut mask = [false; N];
            for v in values {
                if let Some(slot) = mask.get_mut(usize::from(v)) {
                    *slot = true;
                }
            }
            mask
        }
        let hours: [bool; 24] = mask(pattern.hours.values());
        let minutes: [bool; 60] = mask(pattern.minutes.values());
        let seconds: [bool; 60] = mask(pattern.seconds.values());
        let first = |mask: &[bool]| mask.iter().position(|&m| m).unwrap_or(0) as u32;
        let probe_time = NaiveTime::from_hms_opt(first(&hours), first(&minutes), first(&seconds))
            .expect("hours, minutes and seconds in range");
        DayCounter { schedule, probe_time, hours, minutes, seconds }
    }

    /// Matches in `[from, to)`.
    fn count(&self, from: NaiveDateTime, to: NaiveDateTime) -> u64 {
        if from >= to {
            return 0;
        }
        let mut total = 0;
        let mut date = from.date();
        let last = (to - SECOND).date();
        while date <= last {
            if self.date_matches(date) {
                let lo = if date == from.date() { seconds_of_day(from) } else { 0 };
                let hi = if date == to.date() { seconds_of_day(to) } else { DAY };
                total += self.before(hi) - self.before(lo);
            }
            date = date + Days::new(1);
        }
        total
    }

    fn date_matches(&self, date: NaiveDate) -> bool {
        self.schedule.cron().is_time_matching(&date.and_time(self.probe_time)).unwrap_or(false)
    }

    /// Matching times of day before `t` seconds past midnight (`t` up to a whole day).
    fn before(&self, t: u32) -> u64 {
        let count = |mask: &[bool], below: u32| {
            mask.iter().take(below as usize).filter(|&&m| m).count() as u64
        };
        let per_minute = count(&self.seconds, 60);
        let per_hour = count(&self.minutes, 60) * per_minute;
        let (hour, minute, second) = (t / 3600, t / 60 % 60, t % 60);
        let mut total = count(&self.hours, hour) * per_hour;
        if hour < 24 && self.hours[hour as usize] {
            total += count(&self.minutes, minute) * per_minute;
            if self.minutes[minute as usize] {
                total += count(&self.seconds, second);
            }
        }
        total
    }
}

const DAY: u32 = 24 * 3600;

fn seconds_of_day(t: NaiveDateTime) -> u32 {
    t.num_seconds_from_midnight()
}
