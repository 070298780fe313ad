//! The reservation that keeps the head of the queue from starving: which
//! lower runs may start ahead of it.
//!
//! Pure: a function of the topology, the ledger, the head's request, the
//! runs holding placements with the time each is bound to end by, and now.
//! "Fits" is always the ledger's own arithmetic ([`place()`] on a copy of the
//! ledger), never an approximation of it.
//!
//! # The head's start
//!
//! The head is the first waiting run the pass could neither place nor make
//! room for by preemption. Its reserved start is the earliest time at which
//! it fits once the runs bound to end have ended: their placements are
//! released from a copy of the ledger in the order of their end bounds, and
//! the first end after which the head fits is its start. A run's end bound
//! is when its `timeout` (running time left) plus its stop grace runs out,
//! counted from now for a run being launched; a stopping run's is its kill
//! deadline. A run without a timeout, or a suspended one (its timeout clock
//! stands still), has no end bound.
//!
//! If the head does not fit even once every run with an end bound has
//! ended, its start is unknown.
//!
//! # Who may go ahead of it
//!
//! A lower run that fits now starts if it cannot delay that start:
//!
//! - **known start**: its own end bound (now + its timeout + its stop grace)
//!   is no later than the head's start; or the head still fits at its start
//!   beside it and beside every run already let through this way (it takes
//!   only what the reservation leaves over);
//! - **unknown start**: it takes nothing of a kind the head asks for:
//!   no exclusive CPUs if the head wants exclusive CPUs, no memory charge if
//!   the head's memory is charged. Leftovers at an unknown time cannot be
//!   computed, and any run of the same kinds could be the one the head waits
//!   for when the others end, so none may go. One exception: when the head
//!   does not fit even once every running run has ended, it waits for memory
//!   that suspended runs hold, which only their resumption and end can free;
//!   those then resume as they fit.
//!
//! A head that could not fit even on an empty machine holds no reservation
//! (it waits for nothing that will ever come).

use std::time::Duration;

use crate::placement::{place, Assignment, Ledger, Request};
use crate::topology::Topology;
use crate::vocab::{RunId, Timestamp};

use super::preempt::Active;

/// Resources kept for the head of the queue.
#[derive(Debug, Clone)]
pub struct Reservation {
    pub head: RunId,
    request: Request,
    plan: Plan,
}

#[derive(Debug, Clone)]
enum Plan {
    /// The head fits at `start`; `leftover` is the ledger at `start` without
    /// the head, with the runs let through beside it.
    Known { start: Timestamp, leftover: Box<Ledger> },
    /// The head's start depends on runs without an end bound.
    /// `resumes_free`: it waits for what suspended runs hold.
    Unknown { resumes_free: bool },
}

impl Reservation {
    /// The reservation for `head` given `ledger` (which must not hold the
    /// head's own frozen placement, if it has one: the head reuses it), or
    /// `None` for a head that would not fit on an empty machine.
    pub fn new(
        topology: &Topology,
        ledger: &Ledger,
        head: &Request,
        active: &[Active],
        now: Timestamp,
    ) -> Option<Reservation> {
        let empty = Ledger::new(topology, ledger.config().clone()).ok()?;
        place(topology, &empty, head).ok()?;
        let reservation =
            |plan| Some(Reservation { head: head.owner.clone(), request: head.clone(), plan });
        let mut leftover = ledger.clone();
        let mut ends: Vec<(Timestamp, &RunId)> =
            active.iter().filter_map(|a| a.ends_by.map(|t| (t.max(now), &a.run))).collect();
        ends.sort();
        let mut next = ends.iter().peekable();
        while let Some(&(at, run)) = next.next() {
            release(&mut leftover, run);
            if next.peek().is_some_and(|(later, _)| *later == at) {
                continue;
            }
            if place(topology, &leftover, head).is_ok() {
                return reservation(Plan::Known { start: at, leftover: Box::new(leftover) });
            }
        }
        for a in active.iter().filter(|a| a.ends_by.is_none() && !a.suspended) {
            release(&mut leftover, &a.run);
        }
        let resumes_free = place(topology, &leftover, head).is_err();
        reservation(Plan::Unknown { resumes_free })
    }

    /// The head's reserved start; `None` while it is unknown.
    pub fn start(&self) -> Option<Timestamp> {
        match &self.plan {
            Plan::Known { start, .. } => Some(*start),
            Plan::Unknown { .. } => None,
        }
    }

    /// Whether a lower run placed now on `placed` may start (or resume, from
    /// its frozen `holding`) ahead of the head. `limit` is how long it holds
    /// its placement at most: its timeout left plus its stop grace. A run let
    /// through is counted against the leftovers for the runs after it.
    pub fn admits(
        &mut self,
        topology: &Topology,
        placed: &Assignment,
        holding: Option<&Assignment>,
        limit: Option<Duration>,
        now: Timestamp,
    ) -> bool {
        match &mut self.plan {
            Plan::Known { start, leftover } => {
                if limit.is_some_and(|l| now.plus(l) <= *start) {
                    return true;
                }
                fits_beside(topology, leftover, &self.request, placed, holding)
            }
            Plan::Unknown { resumes_free } => {
                (holding.is_some() && *resumes_free) || disjoint(&self.request, placed, holding)
            }
        }
    }
}

/// Whether `head` still fits in `leftover` with `placed` in place of
/// `holding`; if it does, `leftover` keeps the change.
fn fits_beside(
    topology: &Topology,
    leftover: &mut Ledger,
    head: &Request,
    placed: &Assignment,
    holding: Option<&Assignment>,
) -> bool {
    // A frozen run's holding is in the leftovers (a suspended run has no end
    // bound): its new placement replaces it there.
    if let Some(h) = holding {
        if leftover.release(h).is_err() {
            return false;
        }
    }
    let restore = |leftover: &mut Ledger| {
        if let Some(h) = holding {
            leftover.record(h.clone()).expect("a holding just released fits back");
        }
    };
    if leftover.record(placed.clone()).is_err() {
        restore(leftover);
        return false;
    }
    if place(topology, leftover, head).is_ok() {
        return true;
    }
    leftover.release(placed).expect("just recorded");
    restore(leftover);
    false
}

/// Whether `placed` (replacing `holding`) takes nothing of a kind `head`
/// asks for.
fn disjoint(head: &Request, placed: &Assignment, holding: Option<&Assignment>) -> bool {
    let cpus = placed.exclusive_cpus().map_or(0, |c| c.len());
    let before = holding.map_or(0, |h| h.memory_total().get());
    let memory = placed.memory_total().get().saturating_sub(before);
    (cpus == 0 || head.exclusive_cpus() == 0) && (memory == 0 || head.accounted_memory() == 0)
}

fn release(ledger: &mut Ledger, run: &RunId) {
    if let Some(held) = ledger.get(run).cloned() {
        ledger.release(&held).expect("the ledger holds its own assignment");
    }
}

#[cfg(test)]
mod tests;
