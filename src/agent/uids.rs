//! The jobs' dynamic uids: one per job without a `user` under
//! `default_user: dynamic`, handed out from the `dynamic_users` range and
//! recorded in the store before the job's run is launched, given up once the
//! job and its runs are gone.

use tracing::info;

use crate::dynamic_user::{Allocator, DynamicUserError, HostRoots};
use crate::spec::{AdmissionRules, DefaultUser, JobSpec};
use crate::store::RunStore;
use crate::vocab::JobName;
use crate::vocab::Timestamp;

use super::error::AgentError;

/// Hands out and takes back the jobs' dynamic uids.
#[derive(Debug)]
pub(super) struct JobUids {
    allocator: Allocator,
}

impl JobUids {
    /// `host_ids`: where the host's accounts and processes are read, to keep
    /// the uids clear of them.
    pub fn new(host_ids: HostRoots) -> JobUids {
        JobUids { allocator: Allocator::new(host_ids) }
    }

    /// The uid a run of `spec` gets; `None` for a job with a `user`, or under
    /// a shared `default_user`. `Err` is why none could be had, for the run's
    /// launch failure (store failures are the agent's).
    pub fn for_run<S: RunStore>(
        &mut self,
        store: &mut S,
        admission: &AdmissionRules,
        spec: &JobSpec,
        now: Timestamp,
    ) -> Result<Result<Option<u32>, String>, AgentError> {
        if spec.user.is_some() || admission.default_user != DefaultUser::Dynamic {
            return Ok(Ok(None));
        }
        match self.allocator.job_uid(store, &spec.name, admission.dynamic_users, now) {
            Ok(uid) => Ok(Ok(Some(uid))),
            Err(DynamicUserError::Store(e)) => Err(e.into()),
            Err(e) => Ok(Err(e.to_string())),
        }
    }

    /// Gives up the uid of `job`, which has neither a file nor runs any more.
    pub fn release<S: RunStore>(&mut self, store: &mut S, job: &JobName) -> Result<(), AgentError> {
        if let Some(uid) = store.release_uid(job)? {
            self.allocator.released();
            info!(job = %job, "released dynamic uid {uid}");
        }
        Ok(())
    }
}
