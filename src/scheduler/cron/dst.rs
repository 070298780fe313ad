//! Wall-clock times to instants: what a clock change does to a schedule.
//!
//! Cron fields describe wall-clock times, and runs happen at instants. Where the zone has
//! daylight saving time the two do not map one to one: when the clock is set forward some
//! wall-clock times never happen (a [`Gap`]), and when it is set back some happen twice (a
//! [`Fold`]). [`resolve`] says which case a wall-clock time is in, and [`HourField`] says
//! which rule a schedule follows there; the rules themselves are in the module
//! documentation of [`super`].
//!
//! chrono-tz answers "which instants show this wall-clock time" but not "where does this
//! gap or fold begin and end", so the edges are found here by bisecting over whole seconds
//! (offsets, and so transitions, are whole seconds in the tz database).

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use crate::spec::Schedule;

const SECOND: TimeDelta = TimeDelta::seconds(1);

/// How a schedule meets a clock change, read off its hour field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HourField {
    /// Hours named one by one, in a list or a range (`2`, `1,13`, `9-17`): the job runs at
    /// a time of day. A time the clock skips runs once, when the clock resumes; a time the
    /// clock shows twice runs once, the first time.
    Fixed,
    /// `*`, or a step (`*/2`, `8-18/2`): the job runs as time passes. A time the clock skips
    /// does not run; a time the clock shows twice runs both times.
    Interval,
}

impl HourField {
    pub fn of(schedule: &Schedule) -> HourField {
        let hours = &schedule.cron().pattern.hours;
        // croner records `*` (also as the base of `*/n`) and the last step it parsed.
        if hours.from_wildcard || hours.step > 1 {
            HourField::Interval
        } else {
            HourField::Fixed
        }
    }
}

/// Wall-clock times the clock skips when it is set forward: `[start, end)` local.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The first skipped time (02:00 on the last Sunday of March in Europe/Berlin).
    pub start: NaiveDateTime,
    /// The first time shown after the jump (03:00).
    pub end: NaiveDateTime,
    /// The instant of the jump, which the clock shows as `end`.
    pub at: DateTime<Utc>,
}

/// Wall-clock times the clock shows twice when it is set back: `[start, end)` local.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fold {
    /// The first repeated time (02:00 on the last Sunday of October in Europe/Berlin).
    pub start: NaiveDateTime,
    /// The first time after the repeated range (03:00).
    pub end: NaiveDateTime,
    /// The instant the clock goes back from `end` to `start`: the second showing begins.
    pub at: DateTime<Utc>,
}

impl Fold {
    /// The instant a wall-clock time inside the fold is shown for the first time.
    pub fn first(&self, wall: NaiveDateTime) -> DateTime<Utc> {
        self.at - (self.end - wall)
    }

    /// The instant a wall-clock time inside the fold is shown for the second time.
    pub fn second(&self, wall: NaiveDateTime) -> DateTime<Utc> {
        self.at + (wall - self.start)
    }
}

/// Which instants show a wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WallTime {
    Once(DateTime<Utc>),
    Twice { first: DateTime<Utc>, second: DateTime<Utc>, fold: Fold },
    Skipped(Gap),
}

/// Which showing of a repeated wall-clock time an instant is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Showing {
    First,
    Second,
}

/// Which instants show `wall` (whole seconds) in `tz`.
pub fn resolve(tz: Tz, wall: NaiveDateTime) -> WallTime {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(t) => WallTime::Once(t.to_utc()),
        LocalResult::Ambiguous(a, b) => {
            let (first, second) = (a.to_utc().min(b.to_utc()), a.to_utc().max(b.to_utc()));
            let before = offset_seconds(tz, first);
            let at = first_instant(first, second, |u| offset_seconds(tz, u) != before);
            let fold =
                Fold { start: wall_time(tz, at), end: wall_time(tz, at - SECOND) + SECOND, at };
            WallTime::Twice { first, second, fold }
        }
        LocalResult::None => {
            // Every zone's offset is within a day of UTC, so one day either side of `wall`
            // read as UTC brackets the jump.
            let around = wall.and_utc();
            let at = first_instant(around - TimeDelta::days(1), around + TimeDelta::days(1), |u| {
                wall_time(tz, u) >= wall
            });
            WallTime::Skipped(Gap {
                start: wall_time(tz, at - SECOND) + SECOND,
                end: wall_time(tz, at),
                at,
            })
        }
    }
}

/// The fold `instant` is in, and which showing it is, if its wall-clock time repeats.
pub fn fold_at(tz: Tz, instant: DateTime<Utc>) -> Option<(Showing, Fold)> {
    let instant = floor_second(instant);
    match resolve(tz, wall_time(tz, instant)) {
        WallTime::Twice { first, fold, .. } => {
            Some((if instant == first { Showing::First } else { Showing::Second }, fold))
        }
        WallTime::Once(_) | WallTime::Skipped(_) => None,
    }
}

/// The wall-clock time `instant` shows in `tz`.
pub fn wall_time(tz: Tz, instant: DateTime<Utc>) -> NaiveDateTime {
    instant.with_timezone(&tz).naive_local()
}

/// The UTC offset in effect at `instant`, in seconds east of UTC.
pub fn offset_seconds(tz: Tz, instant: DateTime<Utc>) -> i32 {
    tz.offset_from_utc_datetime(&instant.naive_utc()).fix().local_minus_utc()
}

/// `instant` without its fraction of a second. Firings fall on whole seconds.
pub fn floor_second(instant: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(instant.timestamp(), 0).unwrap_or(instant)
}

/// The earliest whole second in `(lo, hi]` for which `after_change` holds, given that it
/// does not hold at `lo`, holds at `hi`, and flips once in between.
pub fn first_instant(
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
    after_change: impl Fn(DateTime<Utc>) -> bool,
) -> DateTime<Utc> {
    let (mut lo, mut hi) = (lo.timestamp(), hi.timestamp());
    let at = |secs: i64| DateTime::from_timestamp(secs, 0).expect("between two valid instants");
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if after_change(at(mid)) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    at(hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cron::testutil::{schedule, utc, wall};
    use chrono_tz::{America, Australia, Europe};

    #[test]
    fn the_hour_field_decides_the_rule() {
        for fixed in
            ["30 2 * * *", "0 1,13 * * *", "0 9-17 * * *", "* 2 * * *", "@daily", "0 0 2 * * *"]
        {
            assert_eq!(HourField::of(&schedule(fixed)), HourField::Fixed, "{fixed}");
        }
        for interval in
            ["*/15 * * * *", "0 * * * *", "@hourly", "0 */2 * * *", "0 8-18/2 * * *", "0 0 * * * *"]
        {
            assert_eq!(HourField::of(&schedule(interval)), HourField::Interval, "{interval}");
        }
    }

    #[test]
    fn berlin_spring_gap() {
        let WallTime::Skipped(gap) = resolve(Europe::Berlin, wall("2026-03-29 02:30:00")) else {
            panic!("02:30 does not exist on 2026-03-29 in Berlin");
        };
        assert_eq!(gap.start, wall("2026-03-29 02:00:00"));
        assert_eq!(gap.end, wall("2026-03-29 03:00:00"));
        assert_eq!(gap.at, utc("2026-03-29T01:00:00Z"));
    }

    #[test]
    fn berlin_autumn_fold() {
        let WallTime::Twice { first, second, fold } =
            resolve(Europe::Berlin, wall("2026-10-25 02:30:00"))
        else {
            panic!("02:30 happens twice on 2026-10-25 in Berlin");
        };
        assert_eq!(first, utc("2026-10-25T00:30:00Z"));
        assert_eq!(second, utc("2026-10-25T01:30:00Z"));
        assert_eq!(fold.start, wall("2026-10-25 02:00:00"));
        assert_eq!(fold.end, wall("2026-10-25 03:00:00"));
        assert_eq!(fold.at, utc("2026-10-25T01:00:00Z"));
        assert_eq!(fold.first(wall("2026-10-25 02:30:00")), first);
        assert_eq!(fold.second(wall("2026-10-25 02:30:00")), second);
        assert_eq!(fold_at(Europe::Berlin, first), Some((Showing::First, fold)));
        assert_eq!(fold_at(Europe::Berlin, second), Some((Showing::Second, fold)));
        assert_eq!(fold_at(Europe::Berlin, utc("2026-10-25T02:00:00Z")), None);
    }

    #[test]
    fn new_york_and_half_hour_shifts() {
        let WallTime::Skipped(gap) = resolve(America::New_York, wall("2026-03-08 02:30:00")) else {
            panic!()
        };
        assert_eq!(
            (gap.start, gap.end),
            (wall("2026-03-08 02:00:00"), wall("2026-03-08 03:00:00"))
        );
        assert_eq!(gap.at, utc("2026-03-08T07:00:00Z"));
        // Lord Howe Island moves its clock by half an hour.
        let WallTime::Twice { fold, .. } =
            resolve(Australia::Lord_Howe, wall("2026-04-05 01:45:00"))
        else {
            panic!()
        };
        assert_eq!(
            (fold.start, fold.end),
            (wall("2026-04-05 01:30:00"), wall("2026-04-05 02:00:00"))
        );
        assert_eq!(
            resolve(Australia::Lord_Howe, wall("2026-04-05 02:00:00")),
            WallTime::Once(fold.end.and_utc() - TimeDelta::minutes(10 * 60 + 30))
        );
    }

    #[test]
    fn utc_has_neither() {
        assert_eq!(
            resolve(Tz::UTC, wall("2026-03-29 02:30:00")),
            WallTime::Once(utc("2026-03-29T02:30:00Z"))
        );
    }
}
