//! The agent's clock: wall-clock timestamps for the store and the state
//! machine, advanced by `tokio::time` so that tests can pause and advance it.
//!
//! The wall clock is read once, at start; after that time moves with the
//! monotonic clock, so a clock step (NTP, an operator) neither fires timers
//! early nor holds them back. Timestamps stored by an earlier agent are
//! compared with this clock as they are.

use std::time::Duration;

use tokio::time::Instant;

use crate::scheduler::Timestamp;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Timestamp,
    start: Instant,
}

impl Clock {
    /// A clock reading `base` now.
    pub fn starting_at(base: Timestamp) -> Clock {
        Clock { base, start: Instant::now() }
    }

    /// A clock reading the wall clock now.
    pub fn system() -> Clock {
        Clock::starting_at(Timestamp::now())
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
    }
}
