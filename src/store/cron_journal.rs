//! The cron journal: one decision per (job, scheduled time), ever.
//!
//! The cron engine asks "has this firing been decided?" and records the
//! decision in the same transaction that creates the run, so a crash between
//! deciding and starting cannot lose the run, and a firing can never be
//! started twice, not even by two agents racing on the same store.
//!
//! The agent records a whole step of a recurring job at once with
//! [`CronJournal::commit_cron`]: the job's new [`CronState`] (its last
//! considered time, the firing waiting its turn, its runs under way), the
//! decisions of the step, and the runs they start, in one transaction.

use crate::scheduler::cron::CronState;
use crate::scheduler::RunState;
use crate::vocab::JobName;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

use super::error::StoreError;
use super::records::JobVersion;

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
pub enum JournalOutcome {
    Started { run: RunId },
    Skipped { reason: String },
    Missed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub job: JobName,
    /// The time the schedule named, in UTC.
    pub scheduled_at: Timestamp,
    pub outcome: JournalOutcome,
    pub decided_at: Timestamp,
    /// When the started run's process was launched (first launch).
    pub started_at: Option<Timestamp>,
    /// A `Missed` record written by [`CronJournal::commit_cron`] stands for
    /// this many firings, from `scheduled_at` to the second value.
    pub missed: Option<(u64, Timestamp)>,
}

impl JournalEntry {
    /// From the time the schedule named to the run's first launch: the job's
    /// jitter delay, the wait for a place on the machine, and for a caught-up
    /// or queued firing the time it waited.
    pub fn start_delay(&self) -> Option<std::time::Duration> {
        self.started_at.map(|at| at.since(self.scheduled_at))
    }
}

/// A decision as [`CronJournal::commit_cron`] records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CronDecision {
    /// Create run `run`, labelled with `version`, in `initial` state. `run`
    /// must be the id [`CronJournal::next_run_id`] names (and the next one
    /// after it for a second start in the same commit): the caller names
    /// the run in the state it commits with it.
    Start { run: RunId, initial: RunState, version: JobVersion },
    /// Deliberately not run; `reason` is a short word (`overlap`, …).
    Skip { reason: String },
    /// `count` firings, from this one to `last`, were missed; `suspended`:
    /// because the job was (recorded with the reason `suspended`).
    Missed { count: u64, last: Timestamp, suspended: bool },
}

/// The answer to [`CronJournal::decide_firing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// This decision was recorded; `run` is the run it created, if any.
    Recorded { run: Option<RunId> },
    /// The firing had been decided before; nothing was written.
    AlreadyDecided(JournalEntry),
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
    ) -> Result<Option<JournalEntry>, StoreError>;

    /// The job's firings, most recent first, at most `limit`.
    fn firings(&self, job: &JobName, limit: usize) -> Result<Vec<JournalEntry>, StoreError>;

    /// The latest scheduled time the cron engine has dealt with for `job`:
    /// the next firing to consider comes after it.
    fn last_considered(&self, job: &JobName) -> Result<Option<Timestamp>, StoreError>;

    fn set_last_considered(&mut self, job: &JobName, at: Timestamp) -> Result<(), StoreError>;

    /// Keeps the newest `keep` journal entries of `job`; returns how many went.
    fn prune_firings(&mut self, job: &JobName, keep: u32) -> Result<usize, StoreError>;

    /// The id the next run of `job` will get.
    fn next_run_id(&self, job: &JobName) -> Result<RunId, StoreError>;

    /// Records one step of a recurring job in one transaction: each of
    /// `decisions` (scheduled time, decision) unless that firing was decided
    /// before, the runs they start, `state` as the job's cron state, and
    /// the journal pruned to its newest `keep_firings` entries. Returns what
    /// became of each decision, in order. A start whose firing had been
    /// decided creates nothing, and its run is left out of the stored state.
    fn commit_cron(
        &mut self,
        job: &JobName,
        state: &CronState,
        decided_at: Timestamp,
        decisions: &[(Timestamp, CronDecision)],
        keep_firings: u32,
    ) -> Result<Vec<Decided>, StoreError>;

    /// Every recurring job's stored cron state.
    fn cron_states(&self) -> Result<Vec<(JobName, CronState)>, StoreError>;

    /// Drops `job`'s cron state (its file is gone); its journal stays. A job
    /// that comes back starts afresh, with its next firing.
    fn forget_cron(&mut self, job: &JobName) -> Result<(), StoreError>;
}
