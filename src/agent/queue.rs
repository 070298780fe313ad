//! The queue of runs waiting for CPUs and memory: higher priority first, then
//! first come, first served.
//!
//! Pure. The order is the order in which the scheduler tries to place runs;
//! see the agent's module documentation for what happens when the first run
//! does not fit.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

use crate::spec::Priority;
use crate::vocab::RunId;

/// Position in the queue: priority (higher first), then arrival.
type Key = (Reverse<Priority>, u64);

#[derive(Debug, Clone, Default)]
pub struct RunQueue {
    order: BTreeMap<Key, RunId>,
    keys: HashMap<RunId, Key>,
    next: u64,
}

impl RunQueue {
    pub fn new() -> RunQueue {
        RunQueue::default()
    }

    /// Adds `run` behind every queued run of the same or higher priority. A
    /// run already queued keeps its place (and gets `priority`).
    pub fn push(&mut self, run: RunId, priority: Priority) {
        if let Some(key) = self.keys.get(&run) {
            if key.0 .0 == priority {
                return;
            }
            self.reprioritize(&run, priority);
            return;
        }
        let key = (Reverse(priority), self.next);
        self.next += 1;
        self.order.insert(key, run.clone());
        self.keys.insert(run, key);
    }

    /// Takes `run` out; whether it was there.
    pub fn remove(&mut self, run: &RunId) -> bool {
        match self.keys.remove(run) {
            Some(key) => {
                self.order.remove(&key);
                true
            }
            None => false,
        }
    }

    /// Moves a queued run to its new priority, keeping its arrival.
    pub fn reprioritize(&mut self, run: &RunId, priority: Priority) {
        if let Some(key) = self.keys.get_mut(run) {
            let id = self.order.remove(key).expect("keys and order agree");
            *key = (Reverse(priority), key.1);
            self.order.insert(*key, id);
        }
    }

    pub fn contains(&self, run: &RunId) -> bool {
        self.keys.contains_key(run)
    }

    pub fn priority(&self, run: &RunId) -> Option<Priority> {
        self.keys.get(run).map(|k| k.0 .0)
    }

    /// Queued runs, in the order they are to be placed.
    pub fn iter(&self) -> impl Iterator<Item = (&RunId, Priority)> {
        self.order.iter().map(|(k, run)| (run, k.0 .0))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn p(n: u16) -> Priority {
        Priority::new(n).unwrap()
    }

    fn ids(q: &RunQueue) -> Vec<&str> {
        q.iter().map(|(r, _)| r.as_str()).collect()
    }

    #[test]
    fn higher_priority_first_then_fifo() {
        let mut q = RunQueue::new();
        q.push(RunId::new("a"), p(10));
        q.push(RunId::new("b"), p(50));
        q.push(RunId::new("c"), p(10));
        q.push(RunId::new("d"), p(50));
        assert_eq!(ids(&q), ["b", "d", "a", "c"]);
        assert!(q.remove(&RunId::new("b")));
        assert!(!q.remove(&RunId::new("b")));
        assert_eq!(ids(&q), ["d", "a", "c"]);
        // Pushing again keeps the place.
        q.push(RunId::new("a"), p(10));
        assert_eq!(ids(&q), ["d", "a", "c"]);
        // A new priority keeps the arrival order within the new class.
        q.reprioritize(&RunId::new("c"), p(50));
        q.push(RunId::new("a"), p(50));
        assert_eq!(ids(&q), ["a", "c", "d"]);
        assert_eq!(q.len(), 3);
    }

    proptest! {
        #[test]
        fn order_is_priority_then_arrival(prios in prop::collection::vec(0u16..5, 0..40)) {
            let mut q = RunQueue::new();
            for (i, pr) in prios.iter().enumerate() {
                q.push(RunId::new(i.to_string()), p(*pr));
            }
            let got: Vec<(u16, usize)> =
                q.iter().map(|(r, pr)| (pr.get(), r.as_str().parse().unwrap())).collect();
            let mut want: Vec<(u16, usize)> = prios.iter().copied().zip(0..).collect();
            want.sort_by_key(|&(pr, i)| (Reverse(pr), i));
            prop_assert_eq!(got, want);
        }
    }
}
