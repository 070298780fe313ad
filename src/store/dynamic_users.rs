//! The uid each job was given from the agent's `dynamic_users` range.
//!
//! One allocation per job name, kept while the job exists and while any of
//! its runs may have processes, so that every run of a job (a recurring
//! job's included) has the same uid and finds the files earlier runs left.
//! An allocation is written before the first run that uses it is launched:
//! after a crash, the uid a live run has is on record.

use std::collections::BTreeSet;

use crate::vocab::JobName;
use crate::vocab::Timestamp;

use super::error::StoreError;

/// One job's uid (its gid is the same number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidAllocation {
    pub job: JobName,
    pub uid: u32,
    pub allocated_at: Timestamp,
}

pub trait DynamicUsers: Send {
    /// The uid allocated to `job`, if any.
    fn job_uid(&self, job: &JobName) -> Result<Option<u32>, StoreError>;

    /// Every allocation, by job name.
    fn job_uids(&self) -> Result<Vec<UidAllocation>, StoreError>;

    /// The uid of `job`: the one on record, or else the one `pick` chooses
    /// given every uid allocated to other jobs, recorded in the same
    /// transaction (so two writers cannot hand out one uid twice). `None`
    /// when `pick` found none.
    fn allocate_uid(
        &mut self,
        job: &JobName,
        at: Timestamp,
        pick: &mut dyn FnMut(&BTreeSet<u32>) -> Option<u32>,
    ) -> Result<Option<u32>, StoreError>;

    /// Forgets `job`'s uid; returns it, if it had one.
    fn release_uid(&mut self, job: &JobName) -> Result<Option<u32>, StoreError>;
}
