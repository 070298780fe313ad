//! The cron journal: one decision per (job, scheduled time), ever.
//!
//! The cron engine asks "has this firing been decided?" and records the
//! decision in the same transaction that creates the run, so a crash between
//! deciding and starting cannot lose the run, and a firing can never be
//! started twice, not even by two agents racing on the same store.

use crate::placement::RunId;
use crate::scheduler::{JobName, RunState, Timestamp};

use super::error::StoreError;

/// What the cron engine decided about one firing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FiringDecision {
    /// Start a run in `initial` state.
    Start { initial: RunState },
    /// Deliberately not run (concurrency forbid, suspended schedule, …).
    Skip { reason: String },
    /// Fell due while the agent was down and the catch-up policy drops it.
    Missed,
}

/// A decision as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FiringOutcome {
    Started { run: RunId },
    Skipped { reason: String },
    Missed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiringRecord {
    pub job: JobName,
    /// The time the schedule named, in UTC.
    pub scheduled_at: Timestamp,
    pub outcome: FiringOutcome,
    pub decided_at: Timestamp,
    /// When the started run's process was launched (first launch).
    pub started_at: Option<Timestamp>,
}

/// The answer to [`CronJournal::decide_firing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// This decision was recorded; `run` is the run it created, if any.
    Recorded { run: Option<RunId> },
    /// The firing had been decided before; nothing was written.
    AlreadyDecided(FiringRecord),
}

pub trait CronJournal: Send {
    /// Records the decision for `job`'s firing at `scheduled_at`, unless one
    /// exists; a `Start` creates the run in the same transaction. Also moves
    /// the job's last-considered time up to `scheduled_at`.
    fn decide_firing(
        &mut self,
        job: &JobName,
        scheduled_at: Timestamp,
        decided_at: Timestamp,
        decision: &FiringDecision,
    ) -> Result<Decided, StoreError>;

    fn firing(
        &self,
        job: &JobName,
        scheduled_at: Timestamp,
    ) -> Result<Option<FiringRecord>, StoreError>;

    /// The job's firings, most recent first, at most `limit`.
    fn firings(&self, job: &JobName, limit: usize) -> Result<Vec<FiringRecord>, StoreError>;

    /// The latest scheduled time the cron engine has dealt with for `job`:
    /// the next firing to consider comes after it.
    fn last_considered(&self, job: &JobName) -> Result<Option<Timestamp>, StoreError>;

    fn set_last_considered(&mut self, job: &JobName, at: Timestamp) -> Result<(), StoreError>;

    /// Keeps the newest `keep` journal entries of `job`; returns how many went.
    fn prune_firings(&mut self, job: &JobName, keep: u32) -> Result<usize, StoreError>;
}
