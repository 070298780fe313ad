//! Jitter: a fixed delay per job, so that jobs sharing a schedule do not all start at once.
//!
//! A job with `jitter: 10m` starts every run the same offset in `[0, 10m)` after its
//! scheduled time. The offset is a hash of the node's name and the job's name:
//!
//! - per job, not per firing: the time between two runs stays the schedule's period (a
//!   `*/5` job never runs one minute after the previous run and nine before the next), and
//!   an operator can tell when a run will start;
//! - per node: the same job file on a hundred machines spreads over the jitter window
//!   instead of hitting a shared server in the same second;
//! - stable: the hash is FNV-1a with a fixed finishing mix, written out below, so the
//!   offset survives agent restarts and upgrades. (`std`'s `DefaultHasher` is seeded per
//!   process and its algorithm may change between Rust releases.)
//!
//! Offsets have millisecond resolution; a jitter under a millisecond is none.

use std::time::Duration;

use crate::vocab::JobName;

/// The job's delay after each scheduled time, in `[0, max)`.
pub fn offset(node: &str, job: &JobName, max: Duration) -> Duration {
    let window = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    if window == 0 {
        return Duration::ZERO;
    }
    let mut hash = Fnv1a::new();
    hash.write(node.as_bytes());
    // 0xff never occurs in UTF-8, so ("ab", "c") and ("a", "bc") hash differently.
    hash.write(&[0xff]);
    hash.write(job.as_str().as_bytes());
    Duration::from_millis(mix(hash.finish()) % window)
}

/// The node name offsets are keyed by: the machine's hostname, or empty if it is not UTF-8.
/// The agent and `corral schedule` both take it from here, so that the delay the command
/// shows is the one the agent applies.
pub fn node_name() -> String {
    nix::unistd::gethostname().ok().and_then(|name| name.into_string().ok()).unwrap_or_default()
}

/// 64-bit FNV-1a (Fowler, Noll, Vo): simple, fast, fixed by its specification, so its
/// values may be stored. The agent's job fingerprints use it too.
pub(crate) struct Fnv1a(u64);

impl Fnv1a {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    pub(crate) fn new() -> Self {
        Fnv1a(Self::OFFSET_BASIS)
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

/// MurmurHash3's 64-bit finaliser. FNV-1a's low bits follow the last bytes closely, and
/// the offset is the hash modulo the window; mixing spreads every input bit over them, so
/// `job-1` … `job-9` do not land next to each other.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str) -> JobName {
        JobName::parse(name).unwrap()
    }

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        let hash = |s: &str| {
            let mut h = Fnv1a::new();
            h.write(s.as_bytes());
            h.finish()
        };
        assert_eq!(hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_offset_is_fixed_per_node_and_job() {
        let window = Duration::from_secs(600);
        let a = offset("node-1", &job("nightly-etl"), window);
        assert_eq!(a, offset("node-1", &job("nightly-etl"), window));
        assert!(a < window);
        // Written out so that a change of hash, which would move every job, fails here.
        assert_eq!(a, Duration::from_millis(EXPECTED_NIGHTLY_ETL_MS));
        assert_ne!(a, offset("node-2", &job("nightly-etl"), window));
        assert_ne!(a, offset("node-1", &job("nightly-etl-2"), window));
        assert_ne!(offset("ab", &job("c"), window), offset("a", &job("bc"), window));
    }

    const EXPECTED_NIGHTLY_ETL_MS: u64 = 100_879;

    #[test]
    fn no_jitter_no_offset() {
        assert_eq!(offset("n", &job("a"), Duration::ZERO), Duration::ZERO);
        assert_eq!(offset("n", &job("a"), Duration::from_micros(999)), Duration::ZERO);
        assert!(offset("n", &job("a"), Duration::from_millis(1)).is_zero());
    }

    #[test]
    fn a_fleet_spreads_over_the_window() {
        // 1000 jobs named alike over a 10 s window in 10 buckets of a second: each bucket
        // should get about 100.
        let window = Duration::from_secs(10);
        let mut buckets = [0u32; 10];
        for i in 0..1000 {
            let d = offset("node", &job(&format!("job-{i}")), window);
            buckets[d.as_secs() as usize] += 1;
        }
        for (i, &n) in buckets.iter().enumerate() {
            assert!((60..=140).contains(&n), "bucket {i} has {n}: {buckets:?}");
        }
        // And the same job on 1000 nodes.
        let mut buckets = [0u32; 10];
        for i in 0..1000 {
            let d = offset(&format!("node-{i}"), &job("logrotate"), window);
            buckets[d.as_secs() as usize] += 1;
        }
        for (i, &n) in buckets.iter().enumerate() {
            assert!((60..=140).contains(&n), "bucket {i} has {n}: {buckets:?}");
        }
    }
}
