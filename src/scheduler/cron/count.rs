//! How many times a schedule fired in a range, without visiting each firing.
//!
//! A machine that was off for a year owes a `* * * * *` job 525,600 firings. Catch-up
//! starts a handful of them at most, but the rest are counted, and counting them one
//! [`next_fire`](super::next_fire()) at a time would take seconds. Here the range is cut at
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

/// The span of croner's calendar, the years 1 to 5000: `FIRST` is the last second before it.
const FIRST: DateTime<Utc> =
    DateTime::from_timestamp(-62_135_596_801, 0).expect("0000-12-31T23:59:59Z");
const LAST: DateTime<Utc> =
    DateTime::from_timestamp(95_649_119_999, 0).expect("5000-12-31T23:59:59Z");

/// The number of firings in `(from, to]`.
pub fn count_firings(schedule: &Schedule, tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    if !schedule.matches_some_day() {
        return 0;
    }
    // Whole seconds, half open: [start, end). croner's calendar ends with the year 5000,
    // and so do the firings.
    let start = dst::floor_second(from.clamp(FIRST, LAST)) + SECOND;
    let end = dst::floor_second(to.clamp(FIRST, LAST)) + SECOND;
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

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use chrono_tz::{Europe, Tz};
    use proptest::prelude::*;

    use super::*;
    use crate::scheduler::cron::next_fire::firings_between;
    use crate::scheduler::cron::testutil::{
        any_schedule, brute_force, clock_changes, schedule, utc,
    };

    fn count(text: &str, tz: Tz, from: &str, to: &str) -> u64 {
        count_firings(&schedule(text), tz, utc(from), utc(to))
    }

    #[test]
    fn whole_days_and_parts_of_days() {
        assert_eq!(
            count("* * * * *", Tz::UTC, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"),
            1440
        );
        assert_eq!(count("* * * * *", Tz::UTC, "2026-01-01T00:00:00Z", "2026-01-01T00:00:59Z"), 0);
        assert_eq!(count("* * * * *", Tz::UTC, "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"), 1);
        assert_eq!(
            count("*/20 * * * * *", Tz::UTC, "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"),
            3
        );
        assert_eq!(
            count("0 9-17 * * mon-fri", Tz::UTC, "2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"),
            45
        );
        assert_eq!(count("30 2 * * *", Tz::UTC, "2026-01-01T02:30:00Z", "2026-01-01T02:30:00Z"), 0);
        assert_eq!(count("0 0 30 2 *", Tz::UTC, "2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z"), 0);
        let new_year = schedule("0 0 1 1 *");
        let far = utc("4990-06-01T00:00:00Z");
        let listed = firings_between(&new_year, Tz::UTC, far, DateTime::<Utc>::MAX_UTC, 100);
        assert_eq!(
            count_firings(&new_year, Tz::UTC, far, DateTime::<Utc>::MAX_UTC),
            listed.count() as u64
        );
        let early = utc("0005-06-01T00:00:00Z");
        assert_eq!(count_firings(&new_year, Tz::UTC, DateTime::<Utc>::MIN_UTC, early), 5);
    }

    #[test]
    fn berlin_days_of_23_and_25_hours() {
        let tz = Europe::Berlin;
        // Local midnight to local midnight.
        assert_eq!(count("0 * * * *", tz, "2026-03-28T22:59:59Z", "2026-03-29T21:59:59Z"), 23);
        assert_eq!(count("0 * * * *", tz, "2026-10-24T21:59:59Z", "2026-10-25T22:59:59Z"), 25);
        assert_eq!(count("30 2 * * *", tz, "2026-03-28T22:59:59Z", "2026-03-29T21:59:59Z"), 1);
        assert_eq!(count("30 2 * * *", tz, "2026-10-24T21:59:59Z", "2026-10-25T22:59:59Z"), 1);
        assert_eq!(count("* 2 * * *", tz, "2026-03-28T22:59:59Z", "2026-03-29T21:59:59Z"), 1);
        assert_eq!(count("* 2 * * *", tz, "2026-10-24T21:59:59Z", "2026-10-25T22:59:59Z"), 60);
        // Starting in the second showing of 02:00-02:59: 02:30 already ran.
        assert_eq!(count("30 2 * * *", tz, "2026-10-25T01:10:00Z", "2026-10-25T12:00:00Z"), 0);
        assert_eq!(count("*/30 * * * *", tz, "2026-10-25T01:10:00Z", "2026-10-25T02:00:00Z"), 2);
        // Starting right at the jump forward: the skipped 02:30 runs at 03:00.
        assert_eq!(count("30 2 * * *", tz, "2026-03-29T00:59:59Z", "2026-03-29T01:00:00Z"), 1);
    }

    #[test]
    fn years_cost_days_not_firings() {
        let tz = Europe::Berlin;
        assert_eq!(
            count("* * * * * *", tz, "2025-06-01T00:00:00Z", "2026-06-01T00:00:00Z"),
            365 * 86_400
        );
        assert_eq!(
            count("0 * * * *", tz, "2016-06-01T00:00:00Z", "2026-06-01T00:00:00Z"),
            3652 * 24
        );
        assert_eq!(count("30 2 * * *", tz, "2016-06-01T00:00:00Z", "2026-06-01T00:00:00Z"), 3652);
    }

    #[test]
    fn agrees_with_listing_over_a_year() {
        for text in ["0 */5 * * *", "30 2 * * sun", "*/30 1-3 * * *", "0 0 L * *"] {
            for (tz, _) in clock_changes() {
                let s = schedule(text);
                let (from, to) = (utc("2025-12-31T12:00:00Z"), utc("2027-01-01T12:00:00Z"));
                let listed = firings_between(&s, tz, from, to, usize::MAX).count() as u64;
                assert_eq!(count_firings(&s, tz, from, to), listed, "{text} in {tz}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn counts_what_the_rules_fire(
            text in any_schedule(),
            zone in 0..clock_changes().len(),
            change in 0..2usize,
            start in prop_oneof![-150i64..150, -130_000i64..130_000],
            length in 0i64..200_000,
        ) {
            let (tz, changes) = &clock_changes()[zone];
            let s = schedule(&text);
            let from = changes[change % changes.len()] + TimeDelta::seconds(start);
            let to = from + TimeDelta::seconds(length);
            prop_assert_eq!(count_firings(&s, *tz, from, to), brute_force(&s, *tz, from, to).len() as u64);
        }
    }
}
