//! Timers armed by the state machine, per run and kind. Re-arming replaces;
//! timers are never cancelled, since a stale one is a no-op for the state
//! machine.

use std::collections::BTreeMap;

use crate::scheduler::{Event, Timer};
use crate::vocab::RunId;
use crate::vocab::Timestamp;

#[derive(Debug, Default)]
pub struct Timers {
    armed: BTreeMap<(RunId, Timer), Timestamp>,
}

/// The event a timer delivers when it is due.
fn event(timer: Timer) -> Event {
    match timer {
        Timer::ActiveDeadline => Event::TimeoutElapsed,
        Timer::StopGrace => Event::GraceElapsed,
        Timer::Backoff => Event::BackoffElapsed,
        Timer::TimeoutSignal => Event::TimeoutSignalDue,
    }
}

impl Timers {
    pub fn arm(&mut self, run: &RunId, timer: Timer, at: Timestamp) {
        self.armed.insert((run.clone(), timer), at);
    }

    /// Forgets every timer of a run that is over.
    pub fn forget(&mut self, run: &RunId) {
        self.armed.retain(|(r, _), _| r != run);
    }

    pub fn next(&self) -> Option<Timestamp> {
        self.armed.values().min().copied()
    }

    /// Removes and returns the timers due at `now`, as the events they deliver.
    pub fn due(&mut self, now: Timestamp) -> Vec<(RunId, Event)> {
        let due: Vec<(RunId, Timer)> =
            self.armed.iter().filter(|(_, at)| **at <= now).map(|(k, _)| k.clone()).collect();
        due.into_iter()
            .map(|key| {
                self.armed.remove(&key);
                (key.0, event(key.1))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rearming_replaces_and_due_timers_fire_once() {
        let mut t = Timers::default();
        let a = RunId::new("a-1");
        t.arm(&a, Timer::StopGrace, Timestamp::from_millis(50));
        t.arm(&a, Timer::StopGrace, Timestamp::from_millis(10));
        t.arm(&a, Timer::Backoff, Timestamp::from_millis(30));
        assert_eq!(t.next(), Some(Timestamp::from_millis(10)));
        assert_eq!(t.due(Timestamp::from_millis(20)), [(a.clone(), Event::GraceElapsed)]);
        assert!(t.due(Timestamp::from_millis(20)).is_empty());
        t.forget(&a);
        assert_eq!(t.next(), None, "nothing of a forgotten run stays armed");
    }
}
