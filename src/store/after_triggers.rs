//! Which run of an upstream job started which run of a pipeline step
//! (`after:` without a schedule, after a recurring job).
//!
//! One record per (step, upstream run): the run it started, or none when
//! the upstream run was considered and started nothing (it ended the other
//! way, the step's previous run was still under way, or it is the baseline
//! taken when the step was first seen). A run is created in the same
//! transaction as its record, so after a `kill -9` an upstream run has
//! started its step's run exactly once or not at all, and a restarted agent
//! can tell which.

use crate::scheduler::RunState;
use crate::vocab::{JobName, RunId, Timestamp};

use super::error::StoreError;
use super::records::JobVersion;

pub trait AfterTriggers: Send {
    /// Creates a run of `job` as [`create_versioned_run`] does, recording
    /// that `upstream` started it, in one transaction. `None`, and nothing
    /// written, when `upstream` is already on record for `job`.
    ///
    /// [`create_versioned_run`]: super::RunStore::create_versioned_run
    fn create_triggered_run(
        &mut self,
        job: &JobName,
        initial: &RunState,
        at: Timestamp,
        version: &JobVersion,
        upstream: &RunId,
    ) -> Result<Option<RunId>, StoreError>;

    /// Records that `upstream` was considered for `job` and started no run;
    /// `false` when it was already on record.
    fn pass_trigger(
        &mut self,
        job: &JobName,
        upstream: &RunId,
        at: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Whether `upstream` is on record for `job`.
    fn was_triggered(&self, job: &JobName, upstream: &RunId) -> Result<bool, StoreError>;

    /// Whether anything is on record for `job`: it has been seen as a
    /// pipeline step before.
    fn has_triggers(&self, job: &JobName) -> Result<bool, StoreError>;
}
