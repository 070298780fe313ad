//! The wait before a restart: exponential, capped, jittered.
//!
//! The random part is an input ([`Jitter`]) so the function stays pure and
//! tests can pin it; the shell draws it.

use std::time::Duration;

/// A uniform random draw in `[0, 1]`, supplied by the caller.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, serde::Serialize)]
pub struct Jitter(f64);

impl Jitter {
    /// The middle of the range: no spread at all.
    pub const NONE: Jitter = Jitter(0.5);

    /// Clamps into `[0, 1]`; NaN counts as the middle.
    pub fn new(draw: f64) -> Jitter {
        if draw.is_nan() {
            Jitter::NONE
        } else {
            Jitter(draw.clamp(0.0, 1.0))
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

/// How far jitter moves a delay either way: ±25%. Enough that a hundred
/// jobs failing together do not all restart in the same second, small enough
/// that the doubling stays visible.
pub const JITTER_SPREAD: f64 = 0.25;

/// The wait before restart number `attempt` (1 for the first restart):
/// `min × 2^(attempt−1)`, capped at `max`, then moved by up to ±25% by
/// `jitter` (0 → −25%, 0.5 → exact, 1 → +25%) and clamped back into
/// `min..=max`, so the bounds a job file states always hold.
///
/// `max < min` is read as a constant `min`; attempt 0 is treated as 1.
pub fn backoff_delay(attempt: u32, min: Duration, max: Duration, jitter: Jitter) -> Duration {
    let max = max.max(min);
    // 2^31 × any non-zero min already exceeds any sane max; cap the shift so
    // the multiplication cannot overflow into nonsense.
    let doublings = attempt.saturating_sub(1).min(31);
    let base = min.saturating_mul(1u32 << doublings).min(max);
    let factor = 1.0 + JITTER_SPREAD * (2.0 * jitter.get() - 1.0);
    // mul_f64 panics on overflow; base ≤ max and factor ≤ 1.25 keep it finite,
    // but Duration::MAX × 1.25 would not be, so go through try_.
    let jittered = Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(max);
    jittered.clamp(min, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn doubles_from_min_and_caps_at_max() {
        let cases = [(1, 10), (2, 20), (3, 40), (4, 80), (5, 160), (6, 300), (7, 300), (40, 300)];
        for (attempt, want) in cases {
            assert_eq!(backoff_delay(attempt, S(10), S(300), Jitter::NONE), S(want), "{attempt}");
        }
        assert_eq!(backoff_delay(0, S(10), S(300), Jitter::NONE), S(10));
        // A max the doubling does not land on.
        let delays: Vec<_> =
            (1..=6).map(|n| backoff_delay(n, S(10), S(60), Jitter::NONE).as_secs()).collect();
        assert_eq!(delays, vec![10, 20, 40, 60, 60, 60]);
        assert_eq!(backoff_delay(0, S(10), S(60), Jitter::NONE), S(10));
        assert_eq!(backoff_delay(u32::MAX, S(10), S(60), Jitter::NONE), S(60));
    }

    #[test]
    fn jitter_spreads_a_quarter_either_way_inside_the_bounds() {
        assert_eq!(backoff_delay(3, S(10), S(300), Jitter::new(0.0)), S(30));
        assert_eq!(backoff_delay(3, S(10), S(300), Jitter::new(1.0)), S(50));
        // At the bounds, the spread is cut off rather than crossing them.
        assert_eq!(backoff_delay(1, S(10), S(300), Jitter::new(0.0)), S(10));
        assert_eq!(
            backoff_delay(1, S(10), S(300), Jitter::new(1.0)),
            Duration::from_millis(12_500)
        );
        assert_eq!(backoff_delay(9, S(10), S(300), Jitter::new(1.0)), S(300));
        assert_eq!(backoff_delay(9, S(10), S(300), Jitter::new(0.0)), S(225));
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        assert_eq!(
            backoff_delay(u32::MAX, Duration::MAX, Duration::MAX, Jitter::new(1.0)),
            Duration::MAX
        );
        assert_eq!(backoff_delay(5, S(60), S(1), Jitter::NONE), S(60));
        assert_eq!(
            backoff_delay(3, Duration::ZERO, Duration::ZERO, Jitter::new(f64::NAN)),
            Duration::ZERO
        );
        assert_eq!(Jitter::new(7.0).get(), 1.0);
        assert_eq!(Jitter::new(-1.0).get(), 0.0);
    }

    proptest::proptest! {
        #[test]
        fn always_within_bounds_and_never_shrinking_at_the_midpoint(
            attempt in 0u32..100, min_ms in 0u64..1_000_000, extra in 0u64..10_000_000,
            draw in 0.0f64..=1.0,
        ) {
            let (min, max) = (Duration::from_millis(min_ms), Duration::from_millis(min_ms + extra));
            let d = backoff_delay(attempt, min, max, Jitter::new(draw));
            proptest::prop_assert!(min <= d && d <= max);
            let here = backoff_delay(attempt, min, max, Jitter::NONE);
            let next = backoff_delay(attempt.saturating_add(1), min, max, Jitter::NONE);
            proptest::prop_assert!(here <= next);
        }
    }
}
