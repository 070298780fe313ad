//! The run records interface, which a cluster backend can implement too.

use crate::placement::Assignment;
use crate::scheduler::{RunEvent, RunState};
use crate::vocab::JobName;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

use super::after_triggers::AfterTriggers;
use super::arrays::ArrayRuns;
use super::cluster_runs::ClusterRuns;
use super::cron_journal::CronJournal;
use super::dynamic_users::DynamicUsers;
use super::error::StoreError;
use super::records::{ExitInfo, JobVersion, LaunchInfo, Retention, RunDetail, RunRecord};

/// What a transition puts on record with it, in the same transaction (see
/// [`RunStore::record_transition_with`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Alongside<'a> {
    /// The run's placement from now on; `Some(None)`: released.
    pub placement: Option<Option<&'a Assignment>>,
    pub launch: Option<&'a LaunchInfo>,
    pub exit: Option<&'a ExitInfo>,
}

/// Durable run records. Every write is atomic: after a crash a write is
/// either wholly there or wholly absent.
///
/// The cron journal is part of the same store: a cron decision creates the
/// run it starts in the same transaction, so the two cannot live apart. The
/// jobs' dynamic uids are kept beside them, as runs are launched with them.
pub trait RunStore:
    CronJournal + DynamicUsers + AfterTriggers + ArrayRuns + ClusterRuns + Send
{
    /// Creates a run of `job` in `initial` state and returns its id
    /// (`<job>-<seq>`, see [`run_id()`](super::run_id())). The creation is the
    /// run's first transition.
    fn create_run(
        &mut self,
        job: &JobName,
        initial: &RunState,
        at: Timestamp,
    ) -> Result<RunId, StoreError>;

    /// [`create_run`](Self::create_run), labelling the run with the version
    /// of its job in the same transaction: after a crash the run exists with
    /// its label or not at all, so "this version already has a run" is never
    /// lost.
    fn create_versioned_run(
        &mut self,
        job: &JobName,
        initial: &RunState,
        at: Timestamp,
        version: &JobVersion,
    ) -> Result<RunId, StoreError>;

    /// Relabels a run, when a changed job is taken over by its run under way.
    fn set_version(&mut self, run: &RunId, version: &JobVersion) -> Result<(), StoreError>;

    /// Replaces the run's state `from` with `to` and appends the transition
    /// to its history, in one transaction. Refuses with
    /// [`StoreError::StateConflict`] if the stored state is not `from`, so
    /// two writers cannot both act on the same state.
    fn record_transition(
        &mut self,
        run: &RunId,
        from: &RunState,
        to: &RunState,
        at: Timestamp,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.record_transition_with(run, from, to, at, reason, Alongside::default())
    }

    /// [`record_transition`](Self::record_transition), with the records it
    /// explains (`alongside`: the placement it makes or releases, the launch
    /// or the exit it follows) written in the same transaction: after a
    /// crash the transition is there with them or not at all, and it costs
    /// one commit instead of one per record.
    fn record_transition_with(
        &mut self,
        run: &RunId,
        from: &RunState,
        to: &RunState,
        at: Timestamp,
        reason: &str,
        alongside: Alongside<'_>,
    ) -> Result<(), StoreError>;

    /// The run's current placement; `None` once released.
    fn set_placement(
        &mut self,
        run: &RunId,
        assignment: Option<&Assignment>,
    ) -> Result<(), StoreError>;

    fn set_launch(&mut self, run: &RunId, launch: &LaunchInfo) -> Result<(), StoreError>;

    fn set_exit(&mut self, run: &RunId, exit: &ExitInfo) -> Result<(), StoreError>;

    fn record_event(
        &mut self,
        run: &RunId,
        at: Timestamp,
        event: &RunEvent,
        reason: &str,
    ) -> Result<(), StoreError>;

    /// Every run not in a terminal phase, oldest first: what a restarted
    /// agent must re-adopt.
    fn active_runs(&self) -> Result<Vec<RunRecord>, StoreError>;

    /// The runs that reached a terminal phase at or after `since`, the most
    /// recently finished first, at most `limit`: what a restarted agent puts
    /// back in the scrape with their final counters.
    fn finished_since(&self, since: Timestamp, limit: usize) -> Result<Vec<RunRecord>, StoreError>;

    fn run(&self, run: &RunId) -> Result<Option<RunDetail>, StoreError>;

    /// The job's runs, most recent first, at most `limit`.
    fn runs_for_job(&self, job: &JobName, limit: usize) -> Result<Vec<RunRecord>, StoreError>;

    /// Deletes the job's finished runs beyond the newest `keep` of each kind,
    /// with their history. Active runs are never deleted. Returns how many
    /// runs went.
    fn prune(&mut self, job: &JobName, keep: Retention) -> Result<usize, StoreError>;

    /// Deletes the oldest finished runs of all jobs beyond `max_finished`.
    fn prune_all(&mut self, max_finished: usize) -> Result<usize, StoreError>;

    /// Whether a write would be recorded now: the store is the one opened
    /// and takes a commit. [`StoreError::is_unwritable`] errors say it
    /// would not. It writes only when the disk looks full or read-only, and
    /// then changes nothing a reader sees.
    fn check_writable(&mut self) -> Result<(), StoreError>;

    /// How many transactions this store has committed since it was opened:
    /// each is one atomic write (and, with `synchronous=FULL`, one fsync).
    fn commits(&self) -> u64;
}
