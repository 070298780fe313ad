//! Wall-clock instants as the scheduler and the store keep them.
//!
//! Run records outlive the agent process, so their times are wall-clock UTC,
//! not `Instant`s (which mean nothing after a restart). Milliseconds are fine
//! enough for deadlines and backoffs and fit an SQLite INTEGER as they are.
//!
//! The scheduler never reads the clock: the shell samples it and passes the
//! value in. A wall clock can step; the shell turns a deadline into its own
//! monotonic timer when it arms it, and a timer that fires early is harmless
//! because every timer event is checked against the deadline again.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, UTC.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const EPOCH: Timestamp = Timestamp(0);

    pub const fn from_millis(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// The current wall-clock time: for the shell, never the core.
    pub fn now() -> Timestamp {
        Timestamp::from(SystemTime::now())
    }

    /// `self + d`, saturating at the end of time.
    pub fn plus(self, d: Duration) -> Timestamp {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// `self - d`, saturating at the start of time.
    pub fn minus(self, d: Duration) -> Timestamp {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_sub(ms))
    }

    /// How long after `earlier` this is; zero if it is not after it (the
    /// clock stepped back).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    pub fn to_datetime(self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::from_timestamp_millis(self.0)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(after) => Timestamp(i64::try_from(after.as_millis()).unwrap_or(i64::MAX)),
            Err(before) => {
                Timestamp(i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms))
            }
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> SystemTime {
        let magnitude = Duration::from_millis(t.0.unsigned_abs());
        if t.0 >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }
}

impl From<chrono::DateTime<chrono::Utc>> for Timestamp {
    fn from(t: chrono::DateTime<chrono::Utc>) -> Timestamp {
        Timestamp(t.timestamp_millis())
    }
}

/// RFC 3339 with milliseconds, e.g. `2026-11-29T08:00:00.000Z`.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_datetime() {
            Some(t) => write!(f, "{}", t.format("%Y-%m-%dT%H:%M:%S%.3fZ")),
            None => write!(f, "{}ms", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        let t = Timestamp::from_millis(1_000);
        assert_eq!(t.plus(Duration::from_millis(500)), Timestamp::from_millis(1_500));
        assert_eq!(Timestamp::from_millis(i64::MAX - 1).plus(Duration::MAX).as_millis(), i64::MAX);
        assert_eq!(t.minus(Duration::from_millis(1_500)), Timestamp::from_millis(-500));
        assert_eq!(Timestamp::from_millis(i64::MIN + 1).minus(Duration::MAX).as_millis(), i64::MIN);
        assert_eq!(Timestamp::from_millis(1_500).since(t), Duration::from_millis(500));
        assert_eq!(t.since(Timestamp::from_millis(1_500)), Duration::ZERO);
    }

    #[test]
    fn converts_from_system_time_and_prints_rfc3339() {
        let t = Timestamp::from(UNIX_EPOCH + Duration::from_millis(1_764_403_200_123));
        assert_eq!(t.as_millis(), 1_764_403_200_123);
        assert_eq!(t.to_string(), "2025-11-29T08:00:00.123Z");
        let before = Timestamp::from(UNIX_EPOCH - Duration::from_millis(5));
        assert_eq!(before.as_millis(), -5);
    }

    #[test]
    fn converts_to_system_time_either_side_of_the_epoch() {
        let system_time = |ms| SystemTime::from(Timestamp::from_millis(ms));
        assert_eq!(system_time(-1000), UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(system_time(1500), UNIX_EPOCH + Duration::from_millis(1500));
    }
}
