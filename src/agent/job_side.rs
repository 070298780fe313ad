//! The job set's side of the runs: what a job added, changed or removed
//! asks of them.
//!
//! A job in force gets a run for its version (or its run under way takes the
//! new version), and its schedule, if it has one, starts or follows the
//! change; a job gone has its schedule stopped and its runs stopped or left
//! to finish (`on_removal`). After the first reading of the jobs directory,
//! what was re-adopted without its job is settled the same way.
//!
//! `JobSide` takes one `JobStep` at a time and returns the `Order`s it
//! leads to. Feeding a run's state machine is the supervisor's: it carries
//! the orders out in sequence, and a step that depends on what an earlier
//! event did to a run comes back as `Order::Then`, decided only once the
//! orders before it are carried out. So the job side changes the runs'
//! records and the cron states, never a run's phase.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, Span};

use crate::api::{Accepted, ControlError};
use crate::metrics::Metrics;
use crate::scheduler::dependency::{Latest, Verdict};
use crate::scheduler::{Event, Phase, RunMeta, RunQueue, RunState, StopIntent};
use crate::spec::{JobSetDiff, JobSpec};
use crate::store::RunStore;
use crate::vocab::{JobName, RunId, Timestamp};

use super::arrays;
use super::cron::{CronJobs, CronOrder, CronStep, NewRun};
use super::dependencies;
use super::error::AgentError;
use super::job;
use super::orders::Order;
use super::reconcile::JobDirectory;
use super::runs::{LaunchState, RunTable};

/// A decision of the job side, taken when the supervisor reaches it.
#[derive(Debug)]
pub(super) enum JobStep {
    /// The job was added or changed.
    InForce(JobName),
    /// The job's file is gone.
    Gone(JobName),
    /// The jobs directory has been read for the first time: what the store
    /// knew of that has no file is settled.
    FirstRead,
    /// Jobs removed now, or while the agent was down, whose runs are over.
    ReleaseUids,
    /// The schedule side of a job in force.
    CronInForce(JobName, Arc<JobSpec>),
    /// After the old version's due firings: the schedule moves if its
    /// timing changed.
    Reschedule { job: JobName, old: Arc<JobSpec>, new: Arc<JobSpec> },
    /// The recurring job's runs under way take the new version.
    CronRunsTakeOver(JobName, Arc<JobSpec>),
    /// What falls due under the version in force.
    Tick(JobName, Arc<JobSpec>),
    /// Says when the job fires next, once what its tick started is queued.
    LogNext(JobName, Arc<JobSpec>),
    /// The one-shot side of a job in force: its run under way takes the
    /// version, or the version gets a run of its own.
    OneShot(JobName, Arc<JobSpec>),
    /// The run under way takes the job's new version.
    TakeOver(RunId, Arc<JobSpec>),
    /// The schedule of a job that is gone stops; its runs are removed.
    CronGone(JobName),
    /// The run under way of a job that is gone.
    StopCurrent(JobName),
    /// A run of a job that is gone is stopped or left to finish.
    Remove(RunId),
    /// The runs of an array of a job that is gone (see [`arrays`](super::arrays)).
    StopArray(JobName),
    /// After the removal was fed: a re-adopted run that will never start is
    /// told so.
    Removed { run: RunId, span: Span, needs_launch_report: bool },
    /// Runs re-adopted after a restart whose job is no longer there.
    Orphans,
    /// Re-adopted runs placed but never started, now that their jobs are known.
    Relaunches,
    /// One-shot jobs in force without a run whose version has not run
    /// (after the store refused a write part-way through a batch).
    Revisit,
    /// Recurring jobs whose next firing is due.
    Wake,
    /// Run `run` of `job` is over: a firing waiting for it may start.
    RunFinished { job: JobName, run: RunId },
    /// After re-adoption: the cron states keep only the runs in the table.
    CronRecovered,
    /// Blocked runs (`after:`) are judged: every one, or those that come
    /// after one job (a run of it ended).
    JudgeBlocked(Option<JobName>),
    /// The job is gone: blocked runs waiting for a run of it that has not
    /// ended fail.
    PrerequisiteGone(JobName),
    /// Pipeline steps (`after:` a recurring job, no schedule of their own)
    /// get a run for each upstream run that ended as asked: for this
    /// upstream run, or (`None`) for the latest ended run of each of their
    /// upstream jobs not yet on record, which catches up a start a `kill -9`
    /// cut off.
    Pipelines(Option<(JobName, RunId)>),
}

/// The orders for a batch of job file changes that made `diff`; `first`:
/// the directory is read for the first time.
pub(super) fn batch(diff: &JobSetDiff, first: bool) -> Vec<Order> {
    let mut orders: Vec<Order> = diff
        .added
        .iter()
        .chain(&diff.changed)
        .map(|name| Order::Then(JobStep::InForce(name.clone())))
        .chain(diff.removed.iter().map(|name| Order::Then(JobStep::Gone(name.clone()))))
        .collect();
    if first {
        orders.push(Order::Then(JobStep::FirstRead));
    }
    orders.push(Order::Then(JobStep::ReleaseUids));
    // Last, once every new run of the batch exists: a blocked run judged
    // before the new run of a job it comes after would see an older one.
    orders.push(Order::Then(JobStep::JudgeBlocked(None)));
    orders.push(Order::Then(JobStep::Pipelines(None)));
    orders
}

/// The state the job side decides on, borrowed from the supervisor for one step.
pub(super) struct JobSide<'a, S: RunStore> {
    pub jobs: &'a JobDirectory,
    /// The jobs directory has been read once.
    pub files_read: &'a mut bool,
    pub runs: &'a mut RunTable,
    pub queue: &'a mut RunQueue,
    pub cron: &'a mut CronJobs,
    pub store: &'a mut S,
    /// Now on the runs' time line.
    pub now: Timestamp,
    /// Now on the calendar, which firings are decided on.
    pub calendar: Timestamp,
    pub default_grace: Duration,
    pub metrics: Option<&'a Metrics>,
}

impl<S: RunStore> JobSide<'_, S> {
    /// Takes `step`; returns what follows from it, in order.
    pub fn step(&mut self, step: JobStep) -> Result<Vec<Order>, AgentError> {
        use JobStep::*;
        Ok(match step {
            InForce(name) => {
                let Some(found) = self.jobs.get(&name) else { return Ok(Vec::new()) };
                let spec = Arc::new(found.spec.clone());
                then([CronInForce(name.clone(), Arc::clone(&spec)), OneShot(name, spec)])
            }
            Gone(name) => then([
                CronGone(name.clone()),
                StopCurrent(name.clone()),
                PrerequisiteGone(name.clone()),
                StopArray(name),
            ]),
            FirstRead => {
                *self.files_read = true;
                // Recurring jobs known from the store whose file is gone.
                let mut steps: Vec<JobStep> =
                    self.cron.unread().into_iter().map(CronGone).collect();
                steps.extend([Orphans, Relaunches]);
                then(steps)
            }
            Orphans => {
                let mut orphans = self.runs.jobs_with_current();
                // Runs of an array whose job file went while the agent was
                // down (a submitted job's runs have their spec from the store).
                orphans.extend(
                    self.runs
                        .iter()
                        .filter(|(id, r)| r.spec.is_none() && self.cron.owner(id).is_none())
                        .map(|(_, r)| r.job.clone()),
                );
                orphans.sort();
                orphans.dedup();
                orphans.retain(|name| self.jobs.get(name).is_none());
                then(orphans.into_iter().map(Gone))
            }
            // Re-adopted runs whose job file has not changed still need it.
            Relaunches => {
                self.runs.placed_not_launched().into_iter().map(Order::Relaunch).collect()
            }
            ReleaseUids => {
                self.store.job_uids()?.into_iter().map(|a| Order::ReleaseUid(a.job)).collect()
            }
            CronInForce(name, spec) => self.cron_in_force(name, spec)?,
            Reschedule { job, old, new } => {
                let (cron, mut step) = self.cron_step();
                cron_orders(cron.reschedule(&mut step, &job, &old, &new)?)
            }
            CronRunsTakeOver(name, spec) => then(
                self.cron.active_runs(&name).into_iter().map(|r| TakeOver(r, Arc::clone(&spec))),
            ),
            Tick(name, spec) => {
                let (cron, mut step) = self.cron_step();
                let mut orders = cron_orders(cron.tick(&mut step, &name, &spec)?);
                orders.push(Order::Then(LogNext(name, spec)));
                orders
            }
            Revisit if !*self.files_read => Vec::new(),
            Revisit => then(
                self.jobs
                    .jobs()
                    .iter()
                    .filter(|j| {
                        j.spec.recurrence.is_none() && self.runs.current(&j.spec.name).is_none()
                    })
                    .map(|j| InForce(j.spec.name.clone()))
                    .collect::<Vec<_>>(),
            ),
            Wake => {
                let (cron, mut step) = self.cron_step();
                cron_orders(cron.wake(&mut step)?)
            }
            RunFinished { job, run } => {
                let (cron, mut step) = self.cron_step();
                let mut orders = cron_orders(cron.run_finished(&mut step, &job, &run)?);
                orders.push(Order::Then(JudgeBlocked(Some(job.clone()))));
                orders.push(Order::Then(Pipelines(Some((job, run)))));
                orders
            }
            Pipelines(upstream) => self.pipelines(upstream)?,
            JudgeBlocked(job) => {
                let mut orders = Vec::new();
                for id in dependencies::blocked_on(self.runs, job.as_ref()) {
                    orders.extend(dependencies::judge_run(
                        self.runs,
                        self.jobs,
                        &*self.store,
                        &id,
                    )?);
                }
                orders
            }
            PrerequisiteGone(job) => {
                dependencies::prerequisite_gone(self.runs, self.jobs, &*self.store, &job)?
            }
            CronRecovered => {
                let live: BTreeSet<RunId> = self.runs.ids().into_iter().collect();
                let (cron, mut step) = self.cron_step();
                cron_orders(cron.recovered(&mut step, |run| live.contains(run))?)
            }
            LogNext(name, spec) => {
                self.cron.log_next(&name, &spec);
                Vec::new()
            }
            OneShot(name, spec) => self.one_shot(&name, spec)?,
            TakeOver(run, spec) => self.take_over(&run, &spec)?,
            CronGone(name) => {
                let Some(runs) = self.cron.forget(self.store, &name)? else {
                    return Ok(Vec::new());
                };
                info!(job = %name, "recurring job removed: its schedule stops");
                then(runs.into_iter().map(Remove))
            }
            StopCurrent(name) => then(self.runs.current(&name).cloned().map(Remove)),
            Remove(run) => self.remove(run),
            StopArray(name) => {
                then(arrays::members(self.runs, self.cron, &name).into_iter().map(Remove))
            }
            Removed { run, span, needs_launch_report } => {
                if self.runs.get(&run).is_some_and(|r| r.state.finishing) {
                    info!(parent: &span, "job removed: its run is left to finish (on_removal: finish)");
                    return Ok(Vec::new());
                }
                info!(parent: &span, "job removed: stopping its run");
                if !needs_launch_report {
                    return Ok(Vec::new());
                }
                // Re-adopted before it was started, and never will be.
                let detail = "not started: its job was removed".into();
                vec![Order::Feed(run, Event::LaunchFailed { detail })]
            }
        })
    }

    /// Fires recurring job `job` now, on request: what became of the
    /// firing, or why there is none, and the orders it leads to.
    pub fn trigger(
        &mut self,
        job: &JobName,
    ) -> Result<(Result<Accepted, ControlError>, Vec<Order>), AgentError> {
        let (cron, mut step) = self.cron_step();
        let (outcome, orders) = cron.trigger(&mut step, job)?;
        Ok((outcome, cron_orders(orders)))
    }

    /// The cron engine with what its steps record with.
    fn cron_step(&mut self) -> (&mut CronJobs, CronStep<'_, S>) {
        let step = CronStep {
            store: &mut *self.store,
            now: self.now,
            calendar: self.calendar,
            default_grace: self.default_grace,
            metrics: self.metrics,
        };
        (&mut *self.cron, step)
    }

    /// `spec` is now the version of job `name` in force (added or changed).
    /// Its cron side: the schedule starts or follows the change, its runs
    /// under way take the new version, and it ticks.
    fn cron_in_force(
        &mut self,
        name: JobName,
        spec: Arc<JobSpec>,
    ) -> Result<Vec<Order>, AgentError> {
        use JobStep::*;
        if spec.recurrence.is_none() {
            let Some(runs) = self.cron.forget(self.store, &name)? else { return Ok(Vec::new()) };
            info!(job = %name, "the job has no schedule any more: nothing fires from now on");
            // No longer recurring: its newest run is the job's run under way.
            if let Some(newest) = runs.last() {
                self.runs.make_current(newest);
            }
            return Ok(then(runs.into_iter().map(|run| TakeOver(run, Arc::clone(&spec)))));
        }
        let mut orders = match self.cron.set_version(&name, &spec) {
            // First sight since the agent started: stops decided before a
            // restart may not have been carried out.
            None => cron_orders(self.cron.pending_stops(&name)),
            Some(old) => {
                // What fell due under the old version is decided by it.
                let (cron, mut step) = self.cron_step();
                let mut orders = cron_orders(cron.tick(&mut step, &name, &old)?);
                let new = Arc::clone(&spec);
                orders.push(Order::Then(Reschedule { job: name.clone(), old, new }));
                orders
            }
        };
        orders.extend(then([CronRunsTakeOver(name.clone(), Arc::clone(&spec)), Tick(name, spec)]));
        Ok(orders)
    }

    /// One-shot job `name`'s version `spec` is in force.
    fn one_shot(&mut self, name: &JobName, spec: Arc<JobSpec>) -> Result<Vec<Order>, AgentError> {
        if spec.array.is_some() {
            return self.array_in_force(name, spec);
        }
        if let Some(id) = self.runs.current(name).cloned() {
            let stopping_for_good = self.runs.get(&id).is_some_and(|r| {
                matches!(r.state.phase, Phase::Stopping { intent: StopIntent::Stop { .. }, .. })
            });
            if !stopping_for_good {
                return self.take_over(&id, &spec);
            }
            // Its run is on its way out (the file was removed and is back):
            // the job starts afresh beside it.
            self.runs.release_current(name);
        }
        if spec.recurrence.is_some() {
            debug!(job = %name, "recurring job: its runs are started by its schedule, not on load");
            return Ok(Vec::new());
        }
        if !self.upstream_of(&spec).is_empty() {
            self.pipeline_baseline(name, &spec)?;
            return Ok(Vec::new());
        }
        if !spec.after.is_empty() && self.store.has_triggers(name)? {
            // A pipeline step whose recurring prerequisite is gone: not a
            // one-shot job now, which would run once more on that job's
            // last run; it runs again when its prerequisite is back.
            info!(job = %name, "pipeline step: none of the recurring jobs it comes after is loaded");
            return Ok(Vec::new());
        }
        let meta = RunMeta::of(&spec, self.default_grace);
        let version = job::version(&meta, &spec);
        let latest = self.store.runs_for_job(name, 1)?;
        if let Some(latest) = latest.first().filter(|r| job::has_run_of(r, &version)) {
            debug!(job = %name, run = %latest.id, "this version of the job already has its run");
            return Ok(Vec::new());
        }
        let mut initial = RunState::new(spec.resources.memory.hard, self.now);
        if !spec.after.is_empty() {
            // Judged at the end of the batch, once every run it creates exists.
            initial.phase = Phase::Blocked { after: crate::spec::after::describe(&spec.after) };
        }
        let run = self.store.create_versioned_run(name, &initial, self.now, &version)?;
        let new = NewRun {
            run,
            job: name.clone(),
            spec,
            meta,
            fingerprint: version.fingerprint,
            initial,
        };
        Ok(vec![Order::Add { run: Box::new(new), current: true }])
    }

    /// The jobs in force that `spec` comes after and that run again and
    /// again (recurring jobs, and pipeline steps after them), if it has no
    /// schedule of its own: it is then a pipeline step, run once after each
    /// of their runs that ends as asked, not once on load.
    fn upstream_of(&self, spec: &JobSpec) -> Vec<JobName> {
        if spec.recurrence.is_some() {
            return Vec::new();
        }
        let mut seen = BTreeSet::from([spec.name.clone()]);
        spec.after
            .iter()
            .filter(|a| self.runs_again(&a.job, &mut seen))
            .map(|a| a.job.clone())
            .collect()
    }

    /// Whether job `name` is in force and runs again and again: it has a
    /// schedule, or it is a pipeline step. (`seen` guards the walk; the
    /// directory refuses cycles.)
    fn runs_again(&self, name: &JobName, seen: &mut BTreeSet<JobName>) -> bool {
        let Some(job) = self.jobs.get(name) else { return false };
        if job.spec.recurrence.is_some() {
            return true;
        }
        if !seen.insert(name.clone()) {
            return false;
        }
        job.spec.after.iter().any(|a| self.runs_again(&a.job, seen))
    }

    /// Pipeline step `name` seen for the first time: the upstream runs that
    /// ended before it are put on record as starting nothing, so only runs
    /// that end from now on start it (and a restart can tell a start it
    /// missed from a run that ended before the step existed).
    fn pipeline_baseline(&mut self, name: &JobName, spec: &JobSpec) -> Result<(), AgentError> {
        if self.store.has_triggers(name)? {
            return Ok(());
        }
        for upstream in self.upstream_of(spec) {
            // `<job>-0` names no run (a job's runs count from 1): the mark
            // that the step was seen before its upstream job ever ran.
            let before = match self.store.runs_for_job(&upstream, 1)?.into_iter().next() {
                Some(latest) if latest.state.is_terminal() => latest.id,
                _ => RunId::new(format!("{upstream}-0")),
            };
            self.store.pass_trigger(name, &before, self.now)?;
        }
        info!(job = %name, "pipeline step: it runs after each run of {} that ends as asked",
              crate::spec::after::describe(&spec.after));
        Ok(())
    }

    /// Runs of pipeline steps that `upstream` (or, for `None`, the latest
    /// ended run of each of their upstream jobs) starts.
    fn pipelines(&mut self, upstream: Option<(JobName, RunId)>) -> Result<Vec<Order>, AgentError> {
        if !*self.files_read {
            return Ok(Vec::new());
        }
        let steps: Vec<Arc<JobSpec>> = self
            .jobs
            .jobs()
            .iter()
            .map(|j| &j.spec)
            .filter(|spec| match &upstream {
                Some((job, _)) => self.upstream_of(spec).contains(job),
                None => !self.upstream_of(spec).is_empty(),
            })
            .map(|spec| Arc::new(spec.clone()))
            .collect();
        let mut orders = Vec::new();
        for spec in steps {
            let candidates: Vec<(JobName, Option<RunId>)> = match &upstream {
                Some((job, run)) => vec![(job.clone(), Some(run.clone()))],
                None => self.upstream_of(&spec).into_iter().map(|job| (job, None)).collect(),
            };
            for (job, run) in candidates {
                orders.extend(self.pipeline_run(&spec, &job, run.as_ref())?);
            }
        }
        Ok(orders)
    }

    /// Whether run `run` of `upstream` (its latest run, for `None`) starts a
    /// run of pipeline step `spec`; the run it starts.
    fn pipeline_run(
        &mut self,
        spec: &Arc<JobSpec>,
        upstream: &JobName,
        run: Option<&RunId>,
    ) -> Result<Vec<Order>, AgentError> {
        let name = &spec.name;
        // Recent runs: the one that ended is among them unless a newer one
        // of a job that allows overlap started since and many ended.
        let recent = self.store.runs_for_job(upstream, 8)?;
        let ended = match run {
            Some(id) => recent.into_iter().find(|r| &r.id == id),
            None => recent.into_iter().next(),
        };
        let Some(ended) = ended.filter(|r| r.state.is_terminal()) else { return Ok(Vec::new()) };
        if self.store.was_triggered(name, &ended.id)? {
            return Ok(Vec::new());
        }
        let verdict = dependencies::judge_step(
            self.jobs,
            &*self.store,
            spec,
            upstream,
            Latest::of(ended.id.clone(), &ended.state.phase),
        )?;
        let busy = self.runs.current(name).is_some();
        if verdict != Verdict::Release || busy {
            let why = match verdict {
                _ if busy => "its previous run is still under way".to_owned(),
                Verdict::Wait(waiting) => format!("still waiting for {}", waiting.join("; ")),
                Verdict::Fail(detail) => detail,
                Verdict::Release => unreachable!("a release with no run under way starts one"),
            };
            info!(job = %name, upstream = %ended.id, "the pipeline step does not run after it: {why}");
            self.store.pass_trigger(name, &ended.id, self.now)?;
            return Ok(Vec::new());
        }
        let meta = RunMeta::of(spec, self.default_grace);
        let version = job::version(&meta, spec);
        let initial = RunState::new(spec.resources.memory.hard, self.now);
        let Some(run) =
            self.store.create_triggered_run(name, &initial, self.now, &version, &ended.id)?
        else {
            return Ok(Vec::new());
        };
        info!(job = %name, run = %run, upstream = %ended.id, "pipeline step started after its upstream run");
        let new = NewRun {
            run,
            job: name.clone(),
            spec: Arc::clone(spec),
            meta,
            fingerprint: version.fingerprint,
            initial,
        };
        Ok(vec![Order::Add { run: Box::new(new), current: true }])
    }

    /// Array job `name`'s version `spec` is in force. Its runs re-adopted
    /// after a restart learn their spec; a version without its runs gets
    /// them, all at once, and the runs of the version before are stopped.
    fn array_in_force(
        &mut self,
        name: &JobName,
        spec: Arc<JobSpec>,
    ) -> Result<Vec<Order>, AgentError> {
        let members = arrays::members(self.runs, self.cron, name);
        for id in &members {
            let index_spec = arrays::index_spec(&*self.store, &spec, id)?;
            if let Some(run) = self.runs.get_mut(id).filter(|r| r.spec.is_none()) {
                run.spec = Some(index_spec);
            }
        }
        let meta = RunMeta::of(&spec, self.default_grace);
        let version = job::version(&meta, &spec);
        let latest = self.store.runs_for_job(name, 1)?;
        if latest.first().is_some_and(|r| job::has_run_of(r, &version)) {
            debug!(job = %name, "this version of the array already has its runs");
            return Ok(Vec::new());
        }
        let mut orders = then(members.into_iter().map(JobStep::Remove));
        let (ids, queued) =
            arrays::create(self.store, (*spec).clone(), None, self.now, self.default_grace)?;
        info!(job = %name, runs = ids.len(), "array queued");
        orders.extend(queued);
        Ok(orders)
    }

    /// The run under way takes the job's new version: settings the kernel
    /// can change on a running job are applied now, the rest at its next
    /// attempt. See docs/agent.md for the field-by-field list.
    fn take_over(&mut self, id: &RunId, spec: &Arc<JobSpec>) -> Result<Vec<Order>, AgentError> {
        let Some(run) = self.runs.get_mut(id) else { return Ok(Vec::new()) };
        let meta = RunMeta::of(spec, self.default_grace);
        let version = job::version(&meta, spec);
        // A re-adopted run sees its job for the first time since the restart:
        // it changed if its fingerprint did. A run left to finish sees its
        // job come back.
        let first_sight = run.spec.is_none();
        let changed = run.state.finishing
            || match &run.spec {
                None => version.fingerprint != run.fingerprint,
                Some(old) => **old != **spec,
            };
        if version.fingerprint != run.fingerprint || meta != run.meta {
            self.store.set_version(id, &version)?;
        }
        run.fingerprint = version.fingerprint;
        run.meta = meta;
        run.spec = Some(Arc::clone(spec));
        self.queue.reprioritize(id, spec.priority);
        if !changed {
            return Ok(Vec::new());
        }
        if !first_sight || run.state.phase.may_have_processes() {
            info!(parent: &run.span, "job changed: the run under way takes the new version \
                  (resources now where the kernel allows, command and environment at its next attempt)");
        }
        let memory_hard = spec.resources.memory.hard;
        let mut orders = vec![Order::Feed(id.clone(), Event::JobChanged { memory_hard })];
        if matches!(run.state.phase, Phase::Blocked { .. }) {
            // What it waits for is judged by the new version at the end of
            // the batch; what it shows follows it now.
            let after = crate::spec::after::describe(&spec.after);
            orders.push(Order::Feed(id.clone(), Event::AfterChanged { after }));
        }
        Ok(orders)
    }

    /// Stops run `id` of a removed job, or lets it finish (`on_removal`).
    fn remove(&self, id: RunId) -> Vec<Order> {
        let Some(run) = self.runs.get(&id) else { return Vec::new() };
        let finish = run.meta.finish_on_removal;
        let span = run.span.clone();
        let needs_launch_report =
            matches!(run.state.phase, Phase::Placed) && run.launch == LaunchState::NotStarted;
        vec![
            Order::Feed(id.clone(), Event::JobRemoved { finish }),
            Order::Then(JobStep::Removed { run: id, span, needs_launch_report }),
        ]
    }
}

/// Steps decided once the orders before them are carried out.
fn then(steps: impl IntoIterator<Item = JobStep>) -> Vec<Order> {
    steps.into_iter().map(Order::Then).collect()
}

fn cron_orders(orders: Vec<CronOrder>) -> Vec<Order> {
    orders.into_iter().map(Order::Cron).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> JobName {
        JobName::parse(n).unwrap()
    }

    fn steps(orders: &[Order]) -> Vec<String> {
        orders
            .iter()
            .map(|o| match o {
                Order::Then(JobStep::InForce(n)) => format!("in-force {n}"),
                Order::Then(JobStep::Gone(n)) => format!("gone {n}"),
                Order::Then(JobStep::FirstRead) => "first-read".into(),
                Order::Then(JobStep::ReleaseUids) => "release-uids".into(),
                Order::Then(JobStep::JudgeBlocked(None)) => "judge-blocked".into(),
                Order::Then(JobStep::Pipelines(None)) => "pipelines".into(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_batch_takes_new_and_changed_jobs_then_removals_then_settles_uids() {
        let diff = JobSetDiff {
            added: vec![name("a")],
            changed: vec![name("b")],
            removed: vec![name("c")],
        };
        assert_eq!(
            steps(&batch(&diff, false)),
            ["in-force a", "in-force b", "gone c", "release-uids", "judge-blocked", "pipelines"]
        );
    }

    #[test]
    fn the_first_batch_settles_what_the_store_knew_before_the_uids() {
        let diff = JobSetDiff { added: vec![name("a")], ..JobSetDiff::default() };
        assert_eq!(
            steps(&batch(&diff, true)),
            ["in-force a", "first-read", "release-uids", "judge-blocked", "pipelines"]
        );
    }
}
