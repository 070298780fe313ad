//! Arrays and submitted jobs on the agent's side.
//!
//! - **Runs.** An array is one job whose runs are created together, one per
//!   index, in one transaction ([`create`]); each run's spec is the job's with
//!   the index variables in its environment ([`ArraySpec::spec_for`]). The
//!   runs are ordinary runs of the job (`<job>-<seq>`, the index on record
//!   beside them), but none of them is the job's "run under way": a changed
//!   or reloaded job file does not take them over, and the job side stops
//!   them only when the job is removed.
//! - **Submissions.** `corral submit` compiles a job file's text with its
//!   overrides, admits it by the agent's rules and refuses a name the jobs
//!   directory or a submitted job under way uses ([`admit`]); the text is
//!   kept with the runs, so a restarted agent compiles the same job again
//!   ([`stored_spec`]).
//! - **The cap.** At most `parallel` runs of an array hold a placement or
//!   processes at once: [`Caps`] filters the scheduling pass's waiting list.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::api::{Accepted, ControlError};
use crate::scheduler::{Phase, RunMeta, RunState};
use crate::spec::{self, AdmissionRules, JobSpec};
use crate::store::{NewRuns, RunStore, Submission};
use crate::vocab::{JobName, RunId, Timestamp};

use super::cron::{CronJobs, NewRun};
use super::error::AgentError;
use super::job;
use super::orders::Order;
use super::reconcile::JobDirectory;
use super::runs::{Run, RunTable};

/// How many more runs of each capped array may be placed now.
#[derive(Debug, Default)]
pub(super) struct Caps {
    left: HashMap<JobName, usize>,
}

impl Caps {
    /// The room under each array's cap, given the runs that hold a
    /// placement or processes (a frozen run counts: it is started, and
    /// resumes without asking).
    pub fn of(runs: &RunTable) -> Caps {
        let mut left: HashMap<JobName, usize> = HashMap::new();
        for run in runs.values() {
            let Some(cap) = cap_of(run) else { continue };
            let room = left.entry(run.job.clone()).or_insert(cap);
            if occupies(run) {
                *room = room.saturating_sub(1);
            }
        }
        Caps { left }
    }

    /// Whether `run`, waiting in the queue, may be offered to the pass; an
    /// offer takes one place under its array's cap.
    pub fn admit(&mut self, run: &Run) -> bool {
        if cap_of(run).is_none() {
            return true;
        }
        match self.left.get_mut(&run.job) {
            Some(room) if *room > 0 => {
                *room -= 1;
                true
            }
            _ => false,
        }
    }

    /// Whether the array of `run` has no room left.
    pub fn full(&self, run: &Run) -> bool {
        cap_of(run).is_some() && self.left.get(&run.job).is_none_or(|room| *room == 0)
    }
}

/// The cap of the array `run` belongs to, if it has one.
fn cap_of(run: &Run) -> Option<usize> {
    let parallel = run.spec.as_ref()?.array.as_ref()?.parallel?;
    Some(usize::try_from(parallel).unwrap_or(usize::MAX))
}

/// Whether `run` takes a place under its array's cap.
fn occupies(run: &Run) -> bool {
    run.state.phase.may_have_processes() || run.assignment.is_some()
}

/// Why pending run `run` waits, when it is its array's cap: for `ps`.
pub(super) fn waiting_for(caps: &Caps, run: &Run) -> Option<String> {
    if !matches!(run.state.phase, Phase::Pending) || !caps.full(run) {
        return None;
    }
    let cap = cap_of(run)?;
    Some(format!("array limit {cap}"))
}

/// A submission as the control socket received it. The agent compiles the
/// text; it never reads the file, which is the client's.
#[derive(Debug)]
pub(super) struct Submitted {
    pub file: String,
    pub source: String,
    pub overrides: Vec<String>,
    pub at: Timestamp,
}

impl Submitted {
    /// The record kept of it, once compiled to job `job`.
    pub fn record(self, job: JobName) -> Submission {
        Submission {
            job,
            file: self.file,
            source: self.source,
            overrides: self.overrides,
            submitted_at: self.at,
        }
    }
}

/// Compiles a submitted job and checks it may run here: the agent's
/// admission rules, and a name no job file and no submitted job under way
/// uses.
pub(super) fn admit(
    submission: &Submitted,
    rules: &AdmissionRules,
    jobs: &JobDirectory,
    runs: &RunTable,
) -> Result<JobSpec, ControlError> {
    let file = Path::new(&submission.file);
    let compiled = spec::submission::compile(file, &submission.source, &submission.overrides)
        .map_err(|d| ControlError::NotSubmitted { problems: d.to_string() })?;
    if !compiled.spec.after.is_empty() {
        // Only the jobs directory judges dependencies (see `dependencies`).
        let problems = format!(
            "{}: after: a submitted job does not wait for other jobs; \
             put it in the jobs directory to run it after them",
            submission.file
        );
        return Err(ControlError::NotSubmitted { problems });
    }
    let refused = rules.check(&compiled);
    if !refused.is_empty() {
        let problems = refused.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        return Err(ControlError::NotSubmitted { problems });
    }
    let name = compiled.spec.name.clone();
    if jobs.get(&name).is_some() {
        return Err(ControlError::NameTaken {
            job: name,
            why: "is a job of the jobs directory; submit it under another name (--set name=...)",
        });
    }
    if runs.values().any(|r| r.job == name) {
        return Err(ControlError::NameTaken {
            job: name,
            why: "has runs under way; wait for them, stop them with `corral kill`, \
                  or submit it under another name (--set name=...)",
        });
    }
    Ok(compiled.spec)
}

/// Creates the runs of `spec` (one per index for an array, else one), with
/// `submission` when it was submitted, in one transaction; returns their
/// ids and the orders that queue them.
pub(super) fn create<S: RunStore>(
    store: &mut S,
    spec: JobSpec,
    submission: Option<&Submission>,
    now: Timestamp,
    default_grace: Duration,
) -> Result<(Vec<RunId>, Vec<Order>), AgentError> {
    let meta = RunMeta::of(&spec, default_grace);
    let version = job::version(&meta, &spec);
    let initial = RunState::new(spec.resources.memory.hard, now);
    let indices = spec.array.as_ref().map(|a| a.indices.as_slice());
    let ids = store.create_runs(&NewRuns {
        job: &spec.name,
        initial: &initial,
        at: now,
        version: &version,
        indices,
        submission,
    })?;
    let base = Arc::new(spec);
    let orders = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let spec = match &base.array {
                Some(array) => Arc::new(array.spec_for(&base, array.indices[i])),
                None => Arc::clone(&base),
            };
            let new = NewRun {
                run: id.clone(),
                job: base.name.clone(),
                spec,
                meta: meta.clone(),
                fingerprint: version.fingerprint.clone(),
                initial: initial.clone(),
            };
            Order::Add { run: Box::new(new), current: false }
        })
        .collect();
    Ok((ids, orders))
}

/// Admits and records submission `submitted` and returns the answer and
/// the orders that queue its runs; a refusal changes nothing.
pub(super) fn submit<S: RunStore>(
    store: &mut S,
    submitted: Submitted,
    rules: &AdmissionRules,
    jobs: &JobDirectory,
    runs: &RunTable,
    default_grace: Duration,
) -> Result<(Result<Accepted, ControlError>, Vec<Order>), AgentError> {
    let spec = match admit(&submitted, rules, jobs, runs) {
        Ok(spec) => spec,
        Err(refused) => return Ok((Err(refused), Vec::new())),
    };
    let (job, at) = (spec.name.clone(), submitted.at);
    let array = spec.array.as_ref().map(ToString::to_string);
    let record = submitted.record(job.clone());
    let (ids, orders) = create(store, spec, Some(&record), at, default_grace)?;
    info!(job = %job, runs = ids.len(), "job submitted");
    Ok((Ok(Accepted::Submitted { job, runs: ids, array }), orders))
}

/// Compiled submissions, by job, for a restarted agent's runs.
#[derive(Debug, Default)]
pub(super) struct StoredSpecs {
    jobs: HashMap<JobName, Option<Arc<JobSpec>>>,
}

/// The spec run `run` of `job` runs, when the store knows it without the
/// jobs directory: a submitted job's, with its index for an array. `None`:
/// the job is not a submitted one (or its text no longer compiles or is no
/// longer admitted by `rules`, which is logged; the run is then settled as a
/// run whose job is gone).
pub(super) fn stored_spec<S: RunStore>(
    store: &S,
    specs: &mut StoredSpecs,
    rules: &AdmissionRules,
    job: &JobName,
    run: &RunId,
) -> Result<Option<Arc<JobSpec>>, AgentError> {
    if !specs.jobs.contains_key(job) {
        let compiled = match store.submission(job)? {
            None => None,
            Some(s) => {
                match spec::submission::compile(Path::new(&s.file), &s.source, &s.overrides) {
                    // The agent's rules may have changed since it was
                    // admitted: it is judged as a job file would be now.
                    Ok(compiled) => match rules.check(&compiled).as_slice() {
                        [] => Some(Arc::new(compiled.spec)),
                        refused => {
                            let problems: Vec<String> =
                                refused.iter().map(ToString::to_string).collect();
                            warn!(job = %job, "the submitted job is no longer admitted: {}",
                                  problems.join("; "));
                            None
                        }
                    },
                    Err(problems) => {
                        warn!(job = %job, "the submitted job no longer compiles: {problems}");
                        None
                    }
                }
            }
        };
        specs.jobs.insert(job.clone(), compiled);
    }
    let Some(base) = specs.jobs.get(job).cloned().flatten() else { return Ok(None) };
    index_spec(store, &base, run).map(Some)
}

/// The spec of run `run` of the job whose spec is `base`: with its index,
/// if it is a run of an array.
pub(super) fn index_spec<S: RunStore>(
    store: &S,
    base: &Arc<JobSpec>,
    run: &RunId,
) -> Result<Arc<JobSpec>, AgentError> {
    Ok(match (&base.array, store.array_index(run)?) {
        (Some(array), Some(index)) => Arc::new(array.spec_for(base, index)),
        _ => Arc::clone(base),
    })
}

/// The runs of job `job` that belong to an array or a submission: those
/// that are neither its run under way nor started by its schedule (for
/// `corral kill ARRAY`, and for the removal of a job file with `array:`).
pub(super) fn members(runs: &RunTable, cron: &CronJobs, job: &JobName) -> Vec<RunId> {
    let current = runs.current(job);
    runs.iter()
        .filter(|(id, r)| r.job == *job && Some(*id) != current && cron.owner(id).is_none())
        .map(|(id, _)| id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::runs::testing;
    use super::*;
    use crate::spec::ArraySpec;

    fn array_run(id: &str, phase: Phase, parallel: Option<u32>) -> Run {
        let mut run = testing::run(id, phase, 50);
        let mut spec = crate::spec::compile_str(
            Path::new("t.yaml"),
            &format!("name: {}\ncommand: [/bin/true]\n", run.job),
        )
        .unwrap()
        .remove(0)
        .spec;
        spec.array = Some(ArraySpec { indices: vec![0, 1, 2, 3], parallel });
        run.spec = Some(Arc::new(spec));
        run
    }

    #[tokio::test]
    async fn the_cap_counts_started_runs_and_offers_only_the_room_left() {
        let mut runs = RunTable::default();
        let now = Timestamp::EPOCH;
        runs.insert(RunId::new("a-1"), array_run("a-1", Phase::Running { since: now }, Some(2)));
        runs.insert(RunId::new("a-2"), array_run("a-2", Phase::Pending, Some(2)));
        runs.insert(RunId::new("a-3"), array_run("a-3", Phase::Pending, Some(2)));
        runs.insert(RunId::new("b-1"), array_run("b-1", Phase::Pending, None));
        runs.insert(RunId::new("c-1"), testing::run("c-1", Phase::Pending, 50));
        let mut caps = Caps::of(&runs);
        let get = |id: &str| runs.get(&RunId::new(id)).unwrap();
        assert!(caps.admit(get("a-2")), "one place left under the cap of 2");
        assert!(!caps.admit(get("a-3")), "the cap is reached");
        assert!(caps.admit(get("b-1")) && caps.admit(get("b-1")), "no cap");
        assert!(caps.admit(get("c-1")), "not an array");
        assert_eq!(waiting_for(&caps, get("a-3")).as_deref(), Some("array limit 2"));
        assert_eq!(waiting_for(&caps, get("b-1")), None);
    }

    #[tokio::test]
    async fn frozen_and_placed_runs_hold_their_place() {
        let mut runs = RunTable::default();
        let frozen = Phase::Suspended {
            by: crate::scheduler::SuspendedBy::Operator,
            frozen: true,
            oom_pending: false,
        };
        runs.insert(RunId::new("a-1"), array_run("a-1", frozen, Some(2)));
        runs.insert(RunId::new("a-2"), array_run("a-2", Phase::Placed, Some(2)));
        runs.insert(RunId::new("a-3"), array_run("a-3", Phase::Pending, Some(2)));
        let mut caps = Caps::of(&runs);
        assert!(!caps.admit(runs.get(&RunId::new("a-3")).unwrap()));
    }
}
