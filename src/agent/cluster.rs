//! Cluster runs on the node: a binding from the cluster scheduler becomes a
//! local run of the bound job, placed, launched and recorded like any other;
//! its transitions go back to etcd as its status (see
//! [`crate::cluster::node`]).
//!
//! - **Taking a binding** ([`judge`], [`create`]): the job is compiled from
//!   the binding's own text, with its `memory_hard` in place of the job's
//!   hard limit, and checked as a submitted job is: the agent's admission
//!   rules, a name no job of the jobs directory uses, the node constraints,
//!   and a placement that can ever be had here (on the node's whole
//!   allocatable capacity, not what is free now: a busy node queues the
//!   run). The run is created in one transaction with the row that maps
//!   (cluster run, attempt) to it, so a binding seen again creates nothing.
//! - **Handing back**: a binding the node refuses is answered with a status
//!   `handed-back` and the reason; the scheduler binds it elsewhere.
//! - **Unbinding**: the scheduler deleted the binding while its run is live:
//!   the run is stopped, as `corral kill` stops it.
//! - **Status**: which local runs are cluster runs ([`ClusterNode`]), so the
//!   main loop can tell which transitions to report.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::node::status;
use crate::cluster::records::{Binding, RunStatus};
use crate::placement::{place, Ledger};
use crate::scheduler::{RunMeta, RunState};
use crate::spec::{self, AdmissionRules, JobSpec};
use crate::store::{ClusterMapping, NewClusterRun, RunStore};
use crate::topology::Topology;
use crate::vocab::{Bytes, JobName, RunId, Timestamp};

use super::cron::NewRun;
use super::error::AgentError;
use super::job;
use super::orders::Order;
use super::reconcile::JobDirectory;

/// Who stops a run whose binding the scheduler deleted.
pub const REMOVED: &str = "the cluster (removed from the cluster)";

/// This node in the cluster, as the supervisor knows it: its name and
/// labels, and which of its live runs are cluster runs.
#[derive(Debug, Clone, Default)]
pub struct ClusterNode {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Live local runs of cluster runs: local run → (cluster run, attempt).
    mapped: HashMap<RunId, (String, u32)>,
}

impl ClusterNode {
    pub fn new(name: String, labels: BTreeMap<String, String>) -> ClusterNode {
        ClusterNode { name, labels, mapped: HashMap::new() }
    }

    pub fn map(&mut self, m: &ClusterMapping) {
        self.mapped.insert(m.node_run.clone(), (m.cluster_run.clone(), m.attempt));
    }

    /// The cluster run local run `run` runs, if it is a live cluster run.
    pub fn cluster_run(&self, run: &RunId) -> Option<&(String, u32)> {
        self.mapped.get(run)
    }

    /// Forgets `run` once its end is reported.
    pub fn forget(&mut self, run: &RunId) {
        self.mapped.remove(run);
    }

    /// The live local runs of cluster run `cluster_run`, any attempt.
    pub fn runs_of(&self, cluster_run: &str) -> Vec<RunId> {
        self.attempts_before(cluster_run, u32::MAX)
    }

    /// The live local runs of attempts of `cluster_run` before `attempt`.
    pub fn attempts_before(&self, cluster_run: &str, attempt: u32) -> Vec<RunId> {
        let mut runs: Vec<RunId> = self
            .mapped
            .iter()
            .filter(|(_, (run, a))| run == cluster_run && *a < attempt)
            .map(|(id, _)| id.clone())
            .collect();
        runs.sort();
        runs
    }

    /// Every live cluster run: local run → cluster run.
    pub fn live(&self) -> impl Iterator<Item = (&RunId, &str)> {
        self.mapped.iter().map(|(id, (run, _))| (id, run.as_str()))
    }
}

/// Why the node will not run a binding: the text of its hand-back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: String,
    pub needs_memory: Option<u64>,
}

impl Refusal {
    fn new(reason: String) -> Refusal {
        Refusal { reason, needs_memory: None }
    }
}

/// What the node decides about a binding; pure.
pub struct Judge<'a> {
    pub node: &'a ClusterNode,
    pub rules: &'a AdmissionRules,
    pub jobs: &'a JobDirectory,
    pub topology: &'a Topology,
    pub ledger: &'a Ledger,
}

impl Judge<'_> {
    /// The spec a binding runs here, or why not.
    pub fn judge(&self, binding: &Binding) -> Result<JobSpec, Refusal> {
        let job = compile(&binding.file, &binding.source, &binding.job, binding.memory_hard)
            .map_err(Refusal::new)?;
        if let Some(why) = job.spec.nodes.refusal(&self.node.name, &self.node.labels) {
            return Err(Refusal::new(why));
        }
        // The agent's rules may have changed since it was applied: it is
        // judged as this node's own job file would be.
        let refused = self.rules.check(&job);
        if !refused.is_empty() {
            let problems: Vec<String> = refused.iter().map(ToString::to_string).collect();
            return Err(Refusal::new(format!(
                "this node's rules do not admit it: {}",
                problems.join("; ")
            )));
        }
        let spec = job.spec;
        if self.jobs.get(&spec.name).is_some() {
            return Err(Refusal::new(format!(
                "{} is a job of this node's own jobs directory; the node runs that one",
                spec.name
            )));
        }
        self.fits_ever(&spec, spec.resources.memory.hard)?;
        Ok(spec)
    }

    /// Whether `spec`, with hard limit `memory`, can be placed on this node
    /// at all: on its whole allocatable capacity, as if no run held any.
    pub fn fits_ever(&self, spec: &JobSpec, memory: Option<Bytes>) -> Result<(), Refusal> {
        let empty = Ledger::new(self.topology, self.ledger.config().clone())
            .map_err(|e| Refusal::new(format!("this node's placement cannot be set up: {e}")))?;
        let probe = RunId::new(format!("{}-probe", spec.name));
        let request = job::request(spec, &probe, memory);
        place(self.topology, &empty, &request).map(drop).map_err(|e| Refusal {
            reason: format!("it can never fit this node ({}): {e}", self.node.name),
            needs_memory: None,
        })
    }
}

/// Job `job` of the file text `source`, with `memory_hard` in place of its
/// hard limit; the error is every problem, with its position.
pub fn compile(
    file: &str,
    source: &str,
    job: &str,
    memory_hard: Option<u64>,
) -> Result<spec::Job, String> {
    let compiled = spec::compile_str(Path::new(file), source)
        .map_err(|d| format!("the job does not compile here: {d}"))?;
    let mut found = compiled
        .into_iter()
        .find(|j| j.spec.name.as_str() == job)
        .ok_or_else(|| format!("{file} holds no job named {job}"))?;
    if let Some(hard) = memory_hard {
        found.spec.resources.memory.hard = Some(Bytes(hard));
    }
    Ok(found)
}

/// The spec of local run `run` when it runs a cluster run: compiled again
/// from the text it was bound with. `None` for a local run of no cluster
/// run, or one whose text no longer compiles (logged; the run is then
/// settled as a run whose job is gone).
pub(super) fn stored_spec<S: RunStore>(
    store: &S,
    run: &RunId,
) -> Result<Option<Arc<JobSpec>>, AgentError> {
    let Some(m) = store.cluster_run_of(run)? else { return Ok(None) };
    match compile(&m.file, &m.source, m.job.as_str(), m.memory_hard) {
        Ok(job) => Ok(Some(Arc::new(job.spec))),
        Err(e) => {
            tracing::warn!(run = %run, cluster_run = %m.cluster_run, "{e}");
            Ok(None)
        }
    }
}

/// Creates the local run of `binding` with `spec` and its mapping in one
/// transaction; `None` when the attempt was taken before.
pub(super) fn create<S: RunStore>(
    store: &mut S,
    binding: &Binding,
    spec: JobSpec,
    now: Timestamp,
    default_grace: Duration,
) -> Result<Option<(ClusterMapping, Order)>, AgentError> {
    let meta = RunMeta::of(&spec, default_grace);
    let version = job::version(&meta, &spec);
    let initial = RunState::new(spec.resources.memory.hard, now);
    let job: JobName = spec.name.clone();
    let Some(id) = store.create_cluster_run(&NewClusterRun {
        cluster_run: &binding.run,
        attempt: binding.attempt,
        job: &job,
        file: &binding.file,
        source: &binding.source,
        memory_hard: binding.memory_hard,
        initial: &initial,
        version: &version,
        at: now,
    })?
    else {
        return Ok(None);
    };
    let mapping = ClusterMapping {
        cluster_run: binding.run.clone(),
        attempt: binding.attempt,
        node_run: id.clone(),
        job: job.clone(),
        file: binding.file.clone(),
        source: binding.source.clone(),
        memory_hard: binding.memory_hard,
        bound_at: now,
        handed_back: None,
    };
    let new = NewRun {
        run: id,
        job,
        spec: Arc::new(spec),
        meta,
        fingerprint: version.fingerprint,
        initial,
    };
    Ok(Some((mapping, Order::Add { run: Box::new(new), current: false })))
}

/// The status of local run `mapping.node_run` as the store has it: its
/// hand-back, once it was given back.
pub(super) fn status_of<S: RunStore>(
    store: &S,
    node: &str,
    mapping: &ClusterMapping,
    now: Timestamp,
) -> Result<Option<RunStatus>, AgentError> {
    if let Some(back) = &mapping.handed_back {
        return Ok(Some(status::handed_back(
            node,
            &mapping.cluster_run,
            mapping.attempt,
            Some(mapping.node_run.to_string()),
            back.reason.clone(),
            back.needs_memory,
            back.at,
        )));
    }
    Ok(store.run(&mapping.node_run)?.map(|detail| status::of_run(node, mapping, &detail, now)))
}
