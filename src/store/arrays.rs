//! Arrays and submitted jobs on record.
//!
//! - An array's runs are ordinary runs of its job (`<job>-<seq>`), each
//!   labelled with its index. They are created together, in one
//!   transaction: after a crash an array has all its runs or none, so no
//!   index is lost and none is started twice.
//! - A submitted job (`corral submit`) has no file in the jobs directory:
//!   its text and `--set` overrides are kept, in the same transaction as its
//!   runs, so that a restarted agent compiles the same job again and runs
//!   what is left of it. One record per job name; a new submission of the
//!   name replaces it (the agent allows that only once the name's runs are
//!   over).

use crate::vocab::JobName;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

use super::error::StoreError;
use super::records::JobVersion;
use crate::scheduler::RunState;

/// A job submitted over the control socket, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub job: JobName,
    /// The file name the client read it from, for messages.
    pub file: String,
    /// The job file's text, as read.
    pub source: String,
    /// `KEY=VALUE` overrides, in order.
    pub overrides: Vec<String>,
    pub submitted_at: Timestamp,
}

/// What a set of runs created together is.
#[derive(Debug, Clone, Copy)]
pub struct NewRuns<'a> {
    pub job: &'a JobName,
    pub initial: &'a RunState,
    pub at: Timestamp,
    pub version: &'a JobVersion,
    /// `Some`: one run per index, labelled with it; `None`: one plain run.
    pub indices: Option<&'a [u32]>,
    /// Kept with the runs when the job was submitted.
    pub submission: Option<&'a Submission>,
}

pub trait ArrayRuns: Send {
    /// Creates the runs of `new`, oldest index first, with their labels and
    /// the submission, in one transaction.
    fn create_runs(&mut self, new: &NewRuns<'_>) -> Result<Vec<RunId>, StoreError>;

    /// The array index of `run`; `None` for a run of no array.
    fn array_index(&self, run: &RunId) -> Result<Option<u32>, StoreError>;

    /// The submission of job `job`, if it was submitted.
    fn submission(&self, job: &JobName) -> Result<Option<Submission>, StoreError>;
}
