//! When a schedule fires: the next firing after an instant, the previous one before it, and
//! the firings in a range.
//!
//! croner matches wall-clock times: it is asked with `NaiveDateTime`s, which have no clock
//! changes, so what it answers does not depend on its own DST handling. Each wall-clock
//! match is then placed on the time line by [`dst::resolve`] under the rules of
//! [`HourField`]. A fold shows its wall-clock times twice, so near one the order of
//! matches on the wall clock is not their order in time; both searches below take that
//! into account.
//!
//! Every search ends: a schedule no day matches has no firings at all (checked once, when
//! it is parsed), any other matches again within a few decades of any date (February 29th
//! on a Monday is the rarest kind), and croner gives up at the year 5000.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use super::dst::{self, HourField, Showing, WallTime};
use crate::spec::Schedule;

const SECOND: TimeDelta = TimeDelta::seconds(1);

/// The first firing strictly after `after`, or `None` if the schedule never fires again.
pub fn next_fire(schedule: &Schedule, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if !schedule.matches_some_day() {
        return None;
    }
    let after = dst::floor_second(after);
    let hours = HourField::of(schedule);
    let local_after = dst::wall_time(tz, after);

    // `after` in the first showing of a fold: the fold's times up to `after`'s are shown
    // again once the clock goes back, and an interval job runs then too.
    let second_showing = match (hours, dst::fold_at(tz, after)) {
        (HourField::Interval, Some((Showing::First, fold))) => {
            wall_match_from(schedule, fold.start)
                .filter(|&wall| wall <= local_after)
                .map(|wall| fold.second(wall))
        }
        _ => None,
    };

    let mut wall = local_after;
    let walked = loop {
        let Some(next) = wall_match_after(schedule, wall) else { break None };
        match dst::resolve(tz, next) {
            WallTime::Once(instant) => break Some(instant),
            WallTime::Twice { first, second, fold } => {
                if first > after {
                    break Some(first);
                }
                if hours == HourField::Interval && second > after {
                    break Some(second);
                }
                // A fixed-time job only runs in the first showing, which is behind us.
                wall = fold.end - SECOND;
            }
            WallTime::Skipped(gap) => {
                if hours == HourField::Fixed && gap.at > after {
                    break Some(gap.at);
                }
                // Every time in the gap resolves to the same instant: one run at most.
                wall = gap.end - SECOND;
            }
        }
    };
    earliest(walked, second_showing).filter(|&t| t > after)
}

/// The last firing strictly before `before`, or `None` if there is none (croner searches
/// back to the year 1).
pub fn prev_fire(schedule: &Schedule, tz: Tz, before: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if !schedule.matches_some_day() {
        return None;
    }
    // Firings fall on whole seconds: strictly before 10:00:00.5 includes 10:00:00.
    let before = ceil_second(before);
    let hours = HourField::of(schedule);
    let local_before = dst::wall_time(tz, before);

    // `before` in the second showing of a fold: the fold's times from `before`'s on were
    // shown once already, before the clock went back, and both kinds of job ran then.
    let first_showing = match dst::fold_at(tz, before) {
        Some((Showing::Second, fold)) => wall_match_until(schedule, fold.end - SECOND)
            .filter(|&wall| wall >= local_before)
            .map(|wall| fold.first(wall)),
        _ => None,
    };

    let mut wall = local_before;
    let walked = loop {
        let Some(prev) = wall_match_before(schedule, wall) else { break None };
        match dst::resolve(tz, prev) {
            WallTime::Once(instant) if instant < before => break Some(instant),
            WallTime::Once(_) => wall = prev,
            WallTime::Twice { first, second, fold } => {
                if hours == HourField::Interval && second < before {
                    break Some(second);
                }
                if first < before {
                    break Some(first);
                }
                wall = fold.start;
            }
            WallTime::Skipped(gap) => {
                if hours == HourField::Fixed && gap.at < before {
                    break Some(gap.at);
                }
                wall = gap.start;
            }
        }
    };
    walked.max(first_showing).filter(|&t| t < before)
}

/// The firings in `(from, to]`, oldest first, at most `limit` of them.
pub fn firings_between(
    schedule: &Schedule,
    tz: Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: usize,
) -> Firings<'_> {
    Firings { schedule, tz, after: from, until: to, left: limit }
}

/// The iterator [`firings_between`] returns.
#[derive(Debug, Clone)]
pub struct Firings<'a> {
    schedule: &'a Schedule,
    tz: Tz,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
    left: usize,
}

impl Iterator for Firings<'_> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        if self.left == 0 {
            return None;
        }
        // `t > after` always holds; checking it anyway means a wrong answer ends the
        // iteration instead of repeating forever.
        let next = next_fire(self.schedule, self.tz, self.after)
            .filter(|&t| t > self.after && t <= self.until);
        match next {
            Some(t) => {
                self.after = t;
                self.left -= 1;
            }
            None => self.left = 0,
        }
        next
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn ceil_second(instant: DateTime<Utc>) -> DateTime<Utc> {
    let floor = dst::floor_second(instant);
    if floor == instant {
        floor
    } else {
        floor.checked_add_signed(SECOND).unwrap_or(floor)
    }
}

/// The first wall-clock match strictly after `wall`.
pub(super) fn wall_match_after(schedule: &Schedule, wall: NaiveDateTime) -> Option<NaiveDateTime> {
    schedule.cron().find_next_occurrence(&wall, false).ok()
}

/// The first wall-clock match at or after `wall`.
pub(super) fn wall_match_from(schedule: &Schedule, wall: NaiveDateTime) -> Option<NaiveDateTime> {
    schedule.cron().find_next_occurrence(&wall, true).ok()
}

/// The last wall-clock match strictly before `wall`.
fn wall_match_before(schedule: &Schedule, wall: NaiveDateTime) -> Option<NaiveDateTime> {
    schedule.cron().find_previous_occurrence(&wall, false).ok()
}

/// The last wall-clock match at or before `wall`.
fn wall_match_until(schedule: &Schedule, wall: NaiveDateTime) -> Option<NaiveDateTime> {
    schedule.cron().find_previous_occurrence(&wall, true).ok()
}

#[cfg(test)]
mod tests {

    use chrono_tz::{America, Europe, Tz};

    use super::*;
    use crate::scheduler::cron::testutil::{brute_force, schedule, utc};

    /// Firings in `(from, to]`, as RFC 3339 UTC text.
    fn fires(text: &str, tz: Tz, from: &str, to: &str) -> Vec<String> {
        firings_between(&schedule(text), tz, utc(from), utc(to), 10_000)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .collect()
    }

    fn next(text: &str, tz: Tz, after: &str) -> Option<DateTime<Utc>> {
        next_fire(&schedule(text), tz, utc(after))
    }

    /// The firings in `(from, to]` found by [`prev_fire`] alone, from `to` back.
    pub(super) fn backward(
        s: &Schedule,
        tz: Tz,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let mut found = Vec::new();
        let mut before = to + TimeDelta::nanoseconds(1);
        while let Some(t) = prev_fire(s, tz, before).filter(|&t| t > from) {
            found.push(t);
            before = t;
        }
        found.reverse();
        found
    }

    /// Checks the searches both ways against the brute force on one window.
    fn agree(text: &str, tz: Tz, from: &str, to: &str) {
        let s = schedule(text);
        let expected = brute_force(&s, tz, utc(from), utc(to));
        let forward: Vec<_> = firings_between(&s, tz, utc(from), utc(to), usize::MAX).collect();
        assert_eq!(forward, expected, "{text} in {tz} forward");
        assert_eq!(backward(&s, tz, utc(from), utc(to)), expected, "{text} in {tz} backward");
    }

    #[test]
    fn berlin_spring_forward() {
        // 2026-03-29: at 01:00 UTC the clock goes from 02:00 CET to 03:00 CEST.
        let tz = Europe::Berlin;
        assert_eq!(
            fires("30 2 * * *", tz, "2026-03-27T12:00:00Z", "2026-03-30T12:00:00Z"),
            ["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
            "02:30 does not exist: run once at 03:00 CEST"
        );
        assert_eq!(
            fires("*/15 * * * *", tz, "2026-03-29T00:30:00Z", "2026-03-29T01:30:00Z"),
            [
                "2026-03-29T00:45:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T01:15:00Z",
                "2026-03-29T01:30:00Z"
            ],
            "01:45 CET, then 03:00 CEST: no runs piled up at 03:00"
        );
        assert_eq!(
            fires("0 * * * *", tz, "2026-03-28T22:59:59Z", "2026-03-29T21:59:59Z").len(),
            23
        );
        assert_eq!(
            fires("0 * * * *", tz, "2026-03-28T23:30:00Z", "2026-03-29T02:00:00Z"),
            ["2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"]
        );
        for text in
            ["30 2 * * *", "*/15 * * * *", "0 * * * *", "30 1 * * *", "0,30 2 * * *", "* 2 * * *"]
        {
            agree(text, tz, "2026-03-28T00:00:00Z", "2026-03-30T00:00:00Z");
        }
    }

    #[test]
    fn berlin_fall_back() {
        // 2026-10-25: at 01:00 UTC the clock goes from 03:00 CEST back to 02:00 CET.
        let tz = Europe::Berlin;
        assert_eq!(
            fires("30 2 * * *", tz, "2026-10-24T00:00:00Z", "2026-10-26T12:00:00Z"),
            ["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
            "02:30 happens twice: run the first time only"
        );
        let quarter_hours =
            fires("*/15 * * * *", tz, "2026-10-24T21:59:59Z", "2026-10-25T22:59:59Z");
        assert_eq!(quarter_hours.len(), 25 * 4, "the 25-hour day has 100 quarter hours");
        assert_eq!(
            fires("*/15 * * * *", tz, "2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"),
            [
                "2026-10-25T00:45:00Z",
                "2026-10-25T01:00:00Z",
                "2026-10-25T01:15:00Z",
                "2026-10-25T01:30:00Z"
            ],
            "02:45 CEST, 02:00 CET, 02:15 CET, 02:30 CET: every 15 real minutes"
        );
        assert_eq!(
            fires("0 * * * *", tz, "2026-10-24T23:30:00Z", "2026-10-25T02:00:00Z"),
            ["2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z"],
            "02:00 CEST and 02:00 CET both run"
        );
        for text in [
            "30 2 * * *",
            "*/15 * * * *",
            "0 * * * *",
            "0,30 2 * * *",
            "* 2 * * *",
            "*/20 1-3 * * *",
        ] {
            agree(text, tz, "2026-10-24T00:00:00Z", "2026-10-26T00:00:00Z");
        }
    }

    #[test]
    fn new_york_both_ways() {
        // 2026-03-08 07:00 UTC: 02:00 EST -> 03:00 EDT. 2026-11-01 06:00 UTC: 02:00 EDT -> 01:00 EST.
        let tz = America::New_York;
        assert_eq!(
            fires("30 2 * * *", tz, "2026-03-07T00:00:00Z", "2026-03-09T12:00:00Z"),
            ["2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]
        );
        assert_eq!(
            fires("30 2 * * *", tz, "2026-10-31T00:00:00Z", "2026-11-02T12:00:00Z"),
            ["2026-10-31T06:30:00Z", "2026-11-01T07:30:00Z", "2026-11-02T07:30:00Z"],
            "the repeated hour is 1 am in New York: 02:30 is not affected"
        );
        assert_eq!(
            fires("30 1 * * *", tz, "2026-10-31T12:00:00Z", "2026-11-02T00:00:00Z"),
            ["2026-11-01T05:30:00Z"],
            "01:30 EDT only, not 01:30 EST"
        );
        assert_eq!(
            fires("0 * * * *", tz, "2026-11-01T04:30:00Z", "2026-11-01T07:00:00Z"),
            ["2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z"],
            "01:00 EDT, 01:00 EST, 02:00 EST"
        );
        assert_eq!(
            fires("*/15 * * * *", tz, "2026-03-08T06:30:00Z", "2026-03-08T07:15:00Z"),
            ["2026-03-08T06:45:00Z", "2026-03-08T07:00:00Z", "2026-03-08T07:15:00Z"]
        );
        for text in ["30 2 * * *", "30 1 * * *", "*/15 * * * *", "0 * * * *"] {
            agree(text, tz, "2026-03-07T00:00:00Z", "2026-03-09T12:00:00Z");
            agree(text, tz, "2026-10-31T00:00:00Z", "2026-11-02T12:00:00Z");
        }
    }

    #[test]
    fn starting_inside_a_fold_sees_the_second_showing() {
        let tz = Europe::Berlin;
        let every_quarter = schedule("*/15 * * * *");
        // 02:50 CEST (first showing): next is 02:00 CET, not 03:00.
        assert_eq!(
            next_fire(&every_quarter, tz, utc("2026-10-25T00:50:00Z")),
            Some(utc("2026-10-25T01:00:00Z"))
        );
        // 02:20 CET (second showing): the previous one is 02:15 CET; before 02:00 CET, 02:45 CEST.
        assert_eq!(
            prev_fire(&every_quarter, tz, utc("2026-10-25T01:20:00Z")),
            Some(utc("2026-10-25T01:15:00Z"))
        );
        assert_eq!(
            prev_fire(&every_quarter, tz, utc("2026-10-25T01:00:00Z")),
            Some(utc("2026-10-25T00:45:00Z"))
        );
        // A fixed-time job seen from the second showing: 02:30 already ran in the first.
        let half_past_two = schedule("30 2 * * *");
        assert_eq!(
            next_fire(&half_past_two, tz, utc("2026-10-25T01:10:00Z")),
            Some(utc("2026-10-26T01:30:00Z"))
        );
        assert_eq!(
            prev_fire(&half_past_two, tz, utc("2026-10-25T01:10:00Z")),
            Some(utc("2026-10-25T00:30:00Z"))
        );
    }

    #[test]
    fn sub_second_instants() {
        let s = schedule("0 * * * *");
        assert_eq!(
            next_fire(&s, Tz::UTC, utc("2026-01-01T10:00:00.5Z")),
            Some(utc("2026-01-01T11:00:00Z"))
        );
        assert_eq!(
            next_fire(&s, Tz::UTC, utc("2026-01-01T09:59:59.9Z")),
            Some(utc("2026-01-01T10:00:00Z"))
        );
        assert_eq!(
            prev_fire(&s, Tz::UTC, utc("2026-01-01T10:00:00.5Z")),
            Some(utc("2026-01-01T10:00:00Z"))
        );
        assert_eq!(
            prev_fire(&s, Tz::UTC, utc("2026-01-01T10:00:00Z")),
            Some(utc("2026-01-01T09:00:00Z"))
        );
    }

    #[test]
    fn calendar_corners() {
        let utc_tz = Tz::UTC;
        assert_eq!(
            next("0 0 29 2 *", utc_tz, "2027-03-01T00:00:00Z"),
            Some(utc("2028-02-29T00:00:00Z"))
        );
        assert_eq!(
            next("0 0 29 2 *", utc_tz, "2096-03-01T00:00:00Z"),
            Some(utc("2104-02-29T00:00:00Z")),
            "2100 is not a leap year"
        );
        assert_eq!(
            next("0 0 L * *", utc_tz, "2027-02-01T00:00:00Z"),
            Some(utc("2027-02-28T00:00:00Z"))
        );
        assert_eq!(
            next("0 0 L * *", utc_tz, "2028-02-01T00:00:00Z"),
            Some(utc("2028-02-29T00:00:00Z"))
        );
        // 2027-05-15 is a Saturday: the nearest weekday is Friday the 14th.
        assert_eq!(
            next("0 0 15W * *", utc_tz, "2027-05-01T00:00:00Z"),
            Some(utc("2027-05-14T00:00:00Z"))
        );
        // 2027-08-15 is a Sunday: Monday the 16th.
        assert_eq!(
            next("0 0 15W * *", utc_tz, "2027-08-01T00:00:00Z"),
            Some(utc("2027-08-16T00:00:00Z"))
        );
        assert_eq!(
            next("0 9 * * mon#2", utc_tz, "2027-03-01T00:00:00Z"),
            Some(utc("2027-03-08T09:00:00Z"))
        );
        assert_eq!(
            next("0 9 * * mon#2", utc_tz, "2027-03-08T09:00:00Z"),
            Some(utc("2027-04-12T09:00:00Z"))
        );
        assert_eq!(
            next("0 0 * * 5L", utc_tz, "2027-03-01T00:00:00Z"),
            Some(utc("2027-03-26T00:00:00Z"))
        );
        assert_eq!(
            next("@yearly", utc_tz, "2027-01-01T00:00:00Z"),
            Some(utc("2028-01-01T00:00:00Z"))
        );
        assert_eq!(
            fires("0 0 31 * *", utc_tz, "2027-01-01T00:00:00Z", "2027-12-31T23:59:59Z"),
            [
                "2027-01-31",
                "2027-03-31",
                "2027-05-31",
                "2027-07-31",
                "2027-08-31",
                "2027-10-31",
                "2027-12-31"
            ]
            .map(|d| format!("{d}T00:00:00Z"))
        );
        // Both day fields restricted: either one matching runs the job (Vixie cron).
        assert_eq!(
            fires("0 0 13 * fri", utc_tz, "2026-11-01T00:00:00Z", "2026-11-15T00:00:00Z"),
            ["2026-11-06T00:00:00Z", "2026-11-13T00:00:00Z"]
        );
    }

    #[test]
    fn seconds_and_time_zones() {
        assert_eq!(
            fires("*/20 * * * * *", Tz::UTC, "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"),
            ["2026-01-01T00:00:20Z", "2026-01-01T00:00:40Z", "2026-01-01T00:01:00Z"]
        );
        assert_eq!(
            next("30 0 12 * * *", Tz::UTC, "2026-01-01T00:00:00Z"),
            Some(utc("2026-01-01T12:00:30Z"))
        );
        // Seconds schedules across the Berlin gap: a fixed-hour one runs once at 03:00:00.
        assert_eq!(
            fires("*/10 * 2 * * *", Europe::Berlin, "2026-03-29T00:00:00Z", "2026-03-29T02:00:00Z"),
            ["2026-03-29T01:00:00Z"]
        );
        assert_eq!(
            next("0 9 * * *", Tz::UTC, "2026-06-01T09:00:00Z"),
            Some(utc("2026-06-02T09:00:00Z"))
        );
        assert_eq!(
            next("0 9 * * *", America::New_York, "2026-06-01T09:00:00Z"),
            Some(utc("2026-06-01T13:00:00Z"))
        );
        assert_eq!(
            next("0 9 * * *", chrono_tz::Asia::Kolkata, "2026-06-01T00:00:00Z"),
            Some(utc("2026-06-01T03:30:00Z"))
        );
    }

    #[test]
    fn a_schedule_no_day_matches_has_no_firings_and_says_so_at_once() {
        for never in ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6 *"] {
            let s = schedule(never);
            assert_eq!(next_fire(&s, Tz::UTC, utc("2026-01-01T00:00:00Z")), None, "{never}");
            assert_eq!(prev_fire(&s, Tz::UTC, utc("2026-01-01T00:00:00Z")), None, "{never}");
            assert_eq!(
                firings_between(
                    &s,
                    Tz::UTC,
                    utc("2026-01-01T00:00:00Z"),
                    DateTime::<Utc>::MAX_UTC,
                    5
                )
                .count(),
                0
            );
        }
    }

    #[test]
    fn the_search_ends_at_the_end_of_croners_calendar() {
        assert_eq!(
            next("0 0 1 1 *", Tz::UTC, "4999-06-01T00:00:00Z"),
            Some(utc("5000-01-01T00:00:00Z"))
        );
        assert_eq!(next("0 0 1 1 *", Tz::UTC, "5000-01-01T00:00:00Z"), None);
        let new_year = schedule("0 0 1 1 *");
        assert_eq!(
            prev_fire(&new_year, Tz::UTC, utc("0003-06-01T00:00:00Z")),
            Some(utc("0003-01-01T00:00:00Z"))
        );
        assert_eq!(prev_fire(&new_year, Tz::UTC, utc("0001-06-01T00:00:00Z")), None);
    }

    #[test]
    fn firings_between_is_bounded() {
        let s = schedule("* * * * *");
        let all: Vec<_> =
            firings_between(&s, Tz::UTC, utc("2026-01-01T00:00:00Z"), DateTime::<Utc>::MAX_UTC, 3)
                .collect();
        assert_eq!(
            all,
            ["2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z", "2026-01-01T00:03:00Z"].map(utc)
        );
        assert_eq!(
            firings_between(
                &s,
                Tz::UTC,
                utc("2026-01-01T00:00:00Z"),
                utc("2026-01-01T00:00:00Z"),
                3
            )
            .count(),
            0
        );
    }

    #[test]
    fn the_ends_of_time_are_answers_not_panics() {
        let s = schedule("0 0 1 1 *");
        assert_eq!(next_fire(&s, Tz::UTC, DateTime::<Utc>::MAX_UTC), None);
        assert_eq!(
            prev_fire(&s, Tz::UTC, DateTime::<Utc>::MAX_UTC),
            Some(utc("5000-01-01T00:00:00Z"))
        );
        assert_eq!(
            next_fire(&s, Tz::UTC, DateTime::<Utc>::MIN_UTC),
            Some(utc("0001-01-01T00:00:00Z"))
        );
        assert_eq!(prev_fire(&s, Tz::UTC, DateTime::<Utc>::MIN_UTC), None);
    }
}

#[cfg(test)]
mod properties {
    use chrono::TimeDelta;
    use proptest::prelude::*;

    use super::tests::backward;
    use super::*;
    use crate::scheduler::cron::testutil::{any_schedule, brute_force, clock_changes, schedule};

    fn window() -> impl Strategy<Value = (usize, usize, i64, i64)> {
        // A zone, one of its clock changes, where the window starts relative to it (near
        // it to the second, or within a day and a half), and how long it is.
        (
            0..clock_changes().len(),
            0..2usize,
            prop_oneof![-150i64..150, -130_000i64..130_000],
            60i64..200_000,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn searches_agree_with_the_rules_minute_by_minute(text in any_schedule(), (zone, change, start, length) in window()) {
            let (tz, changes) = &clock_changes()[zone];
            let s = schedule(&text);
            let from = changes[change % changes.len()] + TimeDelta::seconds(start);
            let to = from + TimeDelta::seconds(length);
            let expected = brute_force(&s, *tz, from, to);

            let forward: Vec<_> = firings_between(&s, *tz, from, to, usize::MAX).collect();
            prop_assert_eq!(&forward, &expected, "forward");

            prop_assert_eq!(&backward(&s, *tz, from, to), &expected, "backward");

            // Each search also agrees with the other one step outside the window.
            if let Some(&first) = expected.first() {
                prop_assert!(prev_fire(&s, *tz, first).is_none_or(|p| p <= from));
            }
        }
    }
}
