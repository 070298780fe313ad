//! The agent's clock: wall-clock timestamps for the store and the state
//! machine, advanced by `tokio::time` so that tests can pause and advance it.
//!
//! The wall clock is read once, at start; after that time moves with the
//! monotonic clock, so a clock step (NTP, an operator) neither fires timers
//! early nor holds them back. Timestamps stored by an earlier agent are
//! compared with this clock as they are.
//!
//! Schedules are the exception: "02:00 in Berlin" means the calendar, and
//! the calendar is what the wall clock says *now*. After an NTP step (common
//! at boot, when the agent may start before the clock is synchronised) or a
//! suspend of the machine (during which the monotonic clock stands still),
//! the two readings part. [`Clock::calendar`] reads the wall clock each time
//! for the cron engine; the main loop checks it at least every
//! [`CALENDAR_RECHECK`], so a step or a resume is noticed within that.

use std::time::Duration;

use tokio::time::Instant;

use crate::vocab::Timestamp;

/// The longest the agent sleeps towards a firing without looking at the
/// wall clock again.
pub const CALENDAR_RECHECK: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Timestamp,
    start: Instant,
    calendar: Calendar,
}

/// Where calendar time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Calendar {
    /// The system's wall clock, read each time.
    System,
    /// This clock's own reading: one time line for everything (a clock
    /// started at a given time, driven by `tokio::time`).
    Own,
}

impl Clock {
    /// A clock reading `base` now; its calendar time is its own reading.
    pub fn starting_at(base: Timestamp) -> Clock {
        Clock { base, start: Instant::now(), calendar: Calendar::Own }
    }

    /// A clock reading the wall clock now; its calendar time is the wall
    /// clock's at each reading.
    pub fn system() -> Clock {
        Clock { calendar: Calendar::System, ..Clock::starting_at(Timestamp::now()) }
    }

    pub fn now(&self) -> Timestamp {
        self.base.plus(self.start.elapsed())
    }

    /// The instant at which this clock reads `at` (now, if that is past).
    pub fn instant(&self, at: Timestamp) -> Instant {
        let now = self.now();
        let ahead = if at > now { at.since(now) } else { Duration::ZERO };
        Instant::now() + ahead
    }

    /// Calendar time, which schedules are read in.
    pub fn calendar(&self) -> Timestamp {
        match self.calendar {
            Calendar::System => Timestamp::now(),
            Calendar::Own => self.now(),
        }
    }

    /// When to look at the calendar again for something due at `at` in
    /// calendar time: then, as far as can be told now, and no later than
    /// [`CALENDAR_RECHECK`] from now.
    pub fn calendar_instant(&self, at: Timestamp) -> Instant {
        let now = self.calendar();
        let ahead = if at > now { at.since(now) } else { Duration::ZERO };
        Instant::now() + ahead.min(CALENDAR_RECHECK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_tokio_time() {
        let clock = Clock::starting_at(Timestamp::from_millis(1_000));
        assert_eq!(clock.now(), Timestamp::from_millis(1_000));
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(clock.now(), Timestamp::from_millis(1_250));
        let at = clock.instant(Timestamp::from_millis(2_250));
        assert_eq!(at - Instant::now(), Duration::from_secs(1));
        assert_eq!(clock.instant(Timestamp::from_millis(0)), Instant::now());
        assert_eq!(clock.calendar(), clock.now());
        let far = clock.now().plus(Duration::from_secs(3600));
        assert_eq!(clock.calendar_instant(far) - Instant::now(), CALENDAR_RECHECK);
        let near = clock.now().plus(Duration::from_secs(5));
        assert_eq!(clock.calendar_instant(near) - Instant::now(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn the_system_calendar_is_the_wall_clock_at_each_reading() {
        // Each reading is bracketed by wall clock readings, so nothing
        // depends on how fast the machine gets from one to the next.
        let started = Timestamp::now();
        let clock = Clock::system();
        let start_read = Timestamp::now();
        // tokio's paused time stands still; the wall clock does not.
        let hour = Duration::from_secs(3600);
        tokio::time::advance(hour).await;
        let before = Timestamp::now();
        let calendar = clock.calendar();
        let after = Timestamp::now();
        assert!(before <= calendar && calendar <= after, "{before} {calendar} {after}");
        // The run time line went on with tokio's time from the start reading.
        let now = clock.now();
        assert!(started.plus(hour) <= now && now <= start_read.plus(hour), "{now}");
    }
}
