//! The choice of a dynamic uid. Pure: what is unavailable comes in as a
//! predicate built from the store's allocations and the host's accounts and
//! processes.
//!
//! A uid is never handed to a job while another job holds it (the store's
//! allocations), nor while any process has it as a real, effective, saved
//! or filesystem uid or gid (a released job may have left a process behind,
//! which a new owner could then signal and inspect), nor while a host
//! account or group has that number.

use crate::spec::UidRange;

/// Which end of the range to take from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// The agent's allocations: lowest first.
    Lowest,
    /// `corral run`'s one-run uids: highest first, away from the agent's.
    Highest,
}

/// The first uid of `range`, in `order`, for which `unavailable` is false.
pub fn pick(range: UidRange, order: Order, unavailable: impl Fn(u32) -> bool) -> Option<u32> {
    let mut all = range.first()..=range.last();
    match order {
        Order::Lowest => all.find(|&uid| !unavailable(uid)),
        Order::Highest => all.rev().find(|&uid| !unavailable(uid)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    fn range(text: &str) -> UidRange {
        UidRange::parse(text).unwrap()
    }

    #[test]
    fn the_lowest_free_uid_or_the_highest() {
        let r = range("100-104");
        let busy: BTreeSet<u32> = [100, 101, 104].into();
        assert_eq!(pick(r, Order::Lowest, |u| busy.contains(&u)), Some(102));
        assert_eq!(pick(r, Order::Highest, |u| busy.contains(&u)), Some(103));
        assert_eq!(pick(r, Order::Lowest, |_| true), None);
    }

    /// A model of the agent: jobs come and go; a released uid stays
    /// unavailable while a process of its old owner lives.
    #[derive(Debug, Clone)]
    enum Step {
        Allocate(u8),
        Release(u8),
        ProcessExits(u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u8..12).prop_map(Step::Allocate),
            (0u8..12).prop_map(Step::Release),
            (0u8..12).prop_map(Step::ProcessExits),
        ]
    }

    proptest! {
        #[test]
        fn never_one_uid_for_two_jobs_nor_a_uid_a_process_still_has(
            steps in proptest::collection::vec(step(), 1..80),
        ) {
            let r = range("500-507");
            let mut held: BTreeMap<u8, u32> = BTreeMap::new();
            // Processes left by released jobs, by uid.
            let mut lingering: BTreeMap<u32, u8> = BTreeMap::new();
            for step in steps {
                match step {
                    Step::Allocate(job) => {
                        if held.contains_key(&job) {
                            continue;
                        }
                        let taken: BTreeSet<u32> = held.values().copied().collect();
                        let got = pick(r, Order::Lowest, |u| {
                            taken.contains(&u) || lingering.contains_key(&u)
                        });
                        match got {
                            Some(uid) => {
                                prop_assert!(r.contains(uid));
                                prop_assert!(!taken.contains(&uid));
                                prop_assert!(!lingering.contains_key(&uid));
                                held.insert(job, uid);
                            }
                            None => prop_assert_eq!(
                                taken.len() + lingering.len(),
                                r.len() as usize,
                                "refused while uids were free"
                            ),
                        }
                    }
                    Step::Release(job) => {
                        if let Some(uid) = held.remove(&job) {
                            lingering.insert(uid, job);
                        }
                    }
                    Step::ProcessExits(job) => lingering.retain(|_, owner| *owner != job),
                }
            }
        }
    }
}
