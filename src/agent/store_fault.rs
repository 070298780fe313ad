//! The agent while its store cannot be written: a full state disk, a
//! read-only remount, or the database file deleted or replaced under it.
//!
//! The agent records every decision before acting on it, so it cannot act
//! while nothing can be recorded. It does not stop either: stopping would
//! take the endpoint and the control socket with it, and the next start
//! would fail the same way. Instead it *holds*:
//!
//! - no new work: job file changes wait in the watcher's channel, timers
//!   (restarts, deadlines, cron firings) wait, the scheduling pass does not
//!   run, and requests that change something are answered with the reason;
//! - the runs it has keep running: their processes do not need the agent,
//!   and their shims keep each exit status until it is written to the run
//!   directory;
//! - what the runtime reports about them (an exit, an OOM) is kept here, in
//!   order, and delivered once the store takes writes again, so every
//!   outcome is recorded from what was observed, never guessed;
//! - `/readyz`, the `corral_store_writable` gauge and the log say why.
//!
//! It tries the store again with backoff ([`StoreFault::retry_at`]), and
//! resumes by itself once a write goes through. A deleted or replaced
//! database never comes back by itself: it needs an operator (see
//! `docs/agent.md`), and the agent keeps saying so.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::runtime::Observation;

/// The first wait before trying the store again.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two tries.
pub const MAX_RETRY: Duration = Duration::from_secs(30);

/// Why the agent is holding, and what waits for the store.
#[derive(Debug)]
pub struct StoreFault {
    /// The store's error, as the operator should read it.
    pub reason: String,
    pub since: Instant,
    /// When to try the store again.
    pub retry_at: Instant,
    wait: Duration,
    /// Reports about runs, in the order they came, not yet recorded.
    deferred: VecDeque<Observation>,
    pub tries: u32,
}

impl StoreFault {
    pub fn new(reason: String, now: Instant) -> StoreFault {
        StoreFault {
            reason,
            since: now,
            retry_at: now + FIRST_RETRY,
            wait: FIRST_RETRY,
            deferred: VecDeque::new(),
            tries: 0,
        }
    }

    /// A try failed (with `reason`): the next one waits twice as long, up
    /// to [`MAX_RETRY`].
    pub fn failed_again(&mut self, reason: String, now: Instant) {
        self.tries += 1;
        self.wait = (self.wait * 2).min(MAX_RETRY);
        self.retry_at = now + self.wait;
        self.reason = reason;
    }

    /// Keeps `obs` until the store takes writes, after those kept before.
    pub fn defer(&mut self, obs: Observation) {
        self.deferred.push_back(obs);
    }

    /// The oldest report kept; put it back with [`undo_next`](Self::undo_next)
    /// if it could not be recorded after all.
    pub fn next_deferred(&mut self) -> Option<Observation> {
        self.deferred.pop_front()
    }

    pub fn undo_next(&mut self, obs: Observation) {
        self.deferred.push_front(obs);
    }

    pub fn deferred(&self) -> usize {
        self.deferred.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::runtime::Observed;
    use crate::vocab::RunId;

    fn obs(n: u64) -> Observation {
        Observation { run: RunId::new("a-1"), epoch: n, what: Observed::Oom }
    }

    #[test]
    fn backs_off_doubling_to_a_ceiling() {
        let t0 = Instant::now();
        let mut fault = StoreFault::new("full".into(), t0);
        assert_eq!(fault.retry_at - t0, Duration::from_secs(1));
        let mut waits = Vec::new();
        for _ in 0..7 {
            fault.failed_again("still full".into(), t0);
            waits.push((fault.retry_at - t0).as_secs());
        }
        assert_eq!(waits, [2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(fault.tries, 7);
        assert_eq!(fault.reason, "still full");
    }

    #[test]
    fn keeps_reports_in_order_and_takes_one_back() {
        let mut fault = StoreFault::new("full".into(), Instant::now());
        for n in 1..=3 {
            fault.defer(obs(n));
        }
        let first = fault.next_deferred().unwrap();
        assert_eq!(first.epoch, 1);
        fault.undo_next(first);
        let order: Vec<u64> =
            std::iter::from_fn(|| fault.next_deferred()).map(|o| o.epoch).collect();
        assert_eq!(order, [1, 2, 3]);
        assert_eq!(fault.deferred(), 0);
    }
}
