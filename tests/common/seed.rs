//! Choices a test varies on purpose from run to run (the moment a process
//! is killed), drawn from one seed: `CORRAL_TEST_SEED` when it is set, else
//! one taken from the clock. The seed is printed, and the test harness shows
//! it with a failure's output, so the failing choices can be made again.

#![allow(dead_code)] // each test binary uses a different subset

use std::ops::RangeInclusive;
use std::time::{SystemTime, UNIX_EPOCH};

/// The variable that replays a run's choices.
pub const SEED_VAR: &str = "CORRAL_TEST_SEED";

/// A small deterministic generator (splitmix64): the same seed gives the
/// same choices on every machine, without a dependency for it.
pub struct Choices {
    state: u64,
}

impl Choices {
    /// The generator for `test`, from `CORRAL_TEST_SEED` or a fresh seed,
    /// which is printed either way.
    pub fn seeded(test: &str) -> Choices {
        let seed = match std::env::var(SEED_VAR) {
            Ok(text) => text
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{SEED_VAR}={text:?} is not an unsigned number")),
            Err(_) => SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64,
        };
        eprintln!("{test}: {SEED_VAR}={seed} replays these choices");
        Choices::from_seed(seed)
    }

    pub fn from_seed(seed: u64) -> Choices {
        Choices { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `range`, both ends included (the slight modulo bias does
    /// not matter for picking moments).
    pub fn pick(&mut self, range: RangeInclusive<u64>) -> u64 {
        let span = range.end() - range.start() + 1;
        range.start() + self.next_u64() % span
    }
}
