//! The launch side of the runs: the final plan of each placement, and the
//! attempt numbers that name launches in observations.
//!
//! A run's plan is built and checked when the scheduling pass has placed
//! it, *before* the placement is recorded: a run the host refuses (a root
//! user not allowed, a `dynamic_users` range with no uid left, a container
//! the container layer would refuse) fails as refused and never holds a
//! placement for a launch that cannot happen. The plan is then held here
//! until the state machine asks for the launch, which takes it as it is:
//! nothing patches a plan once it is built.

use std::path::Path;

use tracing::warn;

use crate::placement::Assignment;
use crate::spec::AdmissionRules;
use crate::store::RunStore;
use crate::topology::CpuSet;
use crate::vocab::Bytes;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

use super::cron::CronJobs;
use super::error::AgentError;
use super::runs::Run;
use super::runtime::{LaunchPlan, Runtime};
use super::supervisor::run_dir;
use super::uids::JobUids;

/// The plan of the run being placed now, and the epoch of the next launch.
#[derive(Debug)]
pub(super) struct Launches {
    /// Built before the placement was recorded; the launch the placement
    /// asks for takes it.
    placing: Option<LaunchPlan>,
    next_epoch: u64,
}

impl Default for Launches {
    fn default() -> Launches {
        Launches { placing: None, next_epoch: 1 }
    }
}

impl Launches {
    /// A number no earlier launch or adoption of any run has had: it names
    /// the attempt in its observations, so late reports about an earlier
    /// one are recognised and dropped.
    pub fn next_epoch(&mut self) -> u64 {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        epoch
    }

    /// Holds `plan` (or lets go of the one held) while its placement is
    /// recorded.
    pub fn hold(&mut self, plan: Option<LaunchPlan>) {
        self.placing = plan;
    }

    /// The plan held for run `id`, if it is the one for the limit in force
    /// and the run directory of the placement on record.
    pub fn take(
        &mut self,
        id: &RunId,
        memory_limit: Option<Bytes>,
        run_dir: &Path,
    ) -> Option<LaunchPlan> {
        self.placing.take().filter(|p| {
            p.run() == id
                && p.plan.resources.memory.hard_bytes == memory_limit.map(Bytes::get)
                && p.run_dir() == run_dir
        })
    }
}

/// What planning one placement reads, and the store the job's dynamic uid
/// is recorded in before anything is launched.
/// The cluster run a run of a cluster run is, in its environment.
pub const CLUSTER_RUN_ENV: &str = "CORRAL_CLUSTER_RUN";
/// Its attempt, counted from 1.
pub const CLUSTER_ATTEMPT_ENV: &str = "CORRAL_CLUSTER_ATTEMPT";

pub(super) struct Planning<'a, R, S> {
    pub runtime: &'a R,
    pub store: &'a mut S,
    pub uids: &'a mut JobUids,
    pub admission: &'a AdmissionRules,
    pub cron: &'a CronJobs,
    pub runs_dir: &'a Path,
    /// The cluster run and attempt the run is, in cluster mode.
    pub cluster_run: Option<&'a (String, u32)>,
    pub shared_pool: &'a CpuSet,
    pub now: Timestamp,
}

impl<R: Runtime, S: RunStore> Planning<'_, R, S> {
    /// The final plan of run `id` placed on `assignment` at `placed_at`,
    /// with the hard limit in force, the firing's environment and the job's
    /// dynamic uid. `Some(Err)` says why the host refuses the run; `None`
    /// when the run has no job version to plan (a run re-adopted before the
    /// jobs directory was read).
    pub fn plan(
        self,
        id: &RunId,
        run: &Run,
        assignment: &Assignment,
        placed_at: Timestamp,
    ) -> Result<Option<Result<LaunchPlan, String>>, AgentError> {
        let Some(spec) = run.spec.clone() else {
            warn!(parent: &run.span, "no job version to launch");
            return Ok(None);
        };
        let dynamic_uid = match self.uids.for_run(self.store, self.admission, &spec, self.now)? {
            Ok(uid) => uid,
            Err(detail) => return Ok(Some(Err(detail))),
        };
        let run_dir = run_dir(self.runs_dir, id, placed_at);
        let mut env = self.cron.env_for(id);
        if let Some((cluster_run, attempt)) = self.cluster_run {
            env.insert(CLUSTER_RUN_ENV.to_owned(), cluster_run.clone());
            env.insert(CLUSTER_ATTEMPT_ENV.to_owned(), attempt.to_string());
        }
        let inputs = crate::launch::RunInputs {
            run: id,
            assignment,
            shared_pool: self.shared_pool,
            memory_limit: run.state.memory_limit,
            run_dir: &run_dir,
            env: &env,
            dynamic_uid,
            tee_output: false,
        };
        let attempt = run.state.attempt;
        Ok(Some(
            self.runtime
                .plan(&spec, &inputs)
                .map(|plan| LaunchPlan { attempt, plan })
                .map_err(|e| e.to_string()),
        ))
    }
}
