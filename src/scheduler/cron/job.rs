//! A recurring job as the scheduler sees it.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use super::jitter;
use super::journal::late_after;
use super::next_fire::next_fire;
use crate::spec::{Recurrence, Schedule};
use crate::vocab::JobName;

/// A recurring job's recurrence, with what depends on the agent settled: the time zone (the
/// job's own or the agent's `default_timezone`) and the job's jitter offset on this node.
#[derive(Debug, Clone, Copy)]
pub struct CronJob<'a> {
    pub name: &'a JobName,
    pub recurrence: &'a Recurrence,
    pub tz: Tz,
    /// How long after each scheduled time a run is due: the job's jitter offset.
    pub offset: Duration,
}

/// A firing and when it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The time the schedule names.
    pub scheduled: DateTime<Utc>,
    /// `scheduled` plus the job's jitter offset: when the run starts.
    pub at: DateTime<Utc>,
}

impl<'a> CronJob<'a> {
    /// `node` names this agent among others running the same job files (see [`jitter`]).
    pub fn new(
        name: &'a JobName,
        recurrence: &'a Recurrence,
        default_tz: Tz,
        node: &str,
    ) -> CronJob<'a> {
        CronJob {
            name,
            recurrence,
            tz: recurrence.timezone.unwrap_or(default_tz),
            offset: jitter::offset(node, name, recurrence.jitter),
        }
    }

    pub fn schedule(&self) -> &'a Schedule {
        &self.recurrence.schedule
    }

    /// The first firing scheduled after `after`.
    pub fn next_due(&self, after: DateTime<Utc>) -> Option<Due> {
        let scheduled = next_fire(self.schedule(), self.tz, after)?;
        Some(Due { scheduled, at: self.due(scheduled) })
    }

    /// How late a firing may be decided and still be on time (see [`late_after()`]).
    pub fn late_after(&self) -> Duration {
        late_after(self.schedule())
    }

    /// When a firing is due.
    pub fn due(&self, scheduled: DateTime<Utc>) -> DateTime<Utc> {
        later(scheduled, self.offset)
    }

    /// Whether a firing may still start at `now`: `starting_deadline`, counted from when the
    /// firing was due, has not passed.
    pub fn may_start(&self, scheduled: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        match self.recurrence.starting_deadline {
            None => true,
            Some(deadline) => self.due(scheduled) >= earlier(now, deadline),
        }
    }
}

/// A `std` duration as a chrono one; durations beyond chrono's range (hundreds of millions
/// of years) are clamped.
pub(super) fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// `t + d`, or the end of time if that is past it.
pub(super) fn later(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_add_signed(delta(d)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `t - d`, or the start of time if that is before it.
pub(super) fn earlier(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_sub_signed(delta(d)).unwrap_or(DateTime::<Utc>::MIN_UTC)
}
