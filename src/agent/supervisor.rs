//! The supervisor: the coordinator that owns the agent's components and is
//! the one path into the run state machine.
//!
//! `handle()` feeds one event to a run's
//! [`transition()`], has the `Recorder` put the result on record *before*
//! any action is carried out (so a restarted agent picks up from the record),
//! then carries the actions out: the queue, the ledger and timers here, the
//! kernel through the run's operation task ([`RunOps`]).
//! [`schedule`](Supervisor::schedule) runs the scheduling pass after every
//! turn of the main loop and carries out its steps.
//!
//! Everything else decides elsewhere and comes back as a value to carry out:
//! the job side and the cron engine as `Order`s (see [`orders`](super::orders)),
//! a run's reports as a `Reading` ([`reports`]), recovery as a
//! `TakeOver` ([`recovery`]), the control socket as a
//! `ControlOrder` ([`control`]). The map of which file owns which state is in
//! [`agent`](super).

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use tracing::{debug, error, info, warn, Span};

use crate::api::protocol::{Accepted, Response};
use crate::api::{Answer, Command};
use crate::api::{EventFeed, Freshness};
use crate::cluster::records::{Binding, RunStatus};
use crate::placement::{Assignment, Ledger};
use crate::scheduler::{
    transition, Action, Event, Moment, Phase, RunEvent, RunState, StopReason, SuspendedBy,
};
use crate::spec::{self, JobSpec};
use crate::store::RunStore;
use crate::topology::Topology;
use crate::vocab::Bytes;
use crate::vocab::RunId;
use crate::vocab::Timestamp;
use crate::watch::{FileChange, WatchError};

use super::arrays;
use super::clock::Clock;
use super::cluster;
use super::control::{self, ControlOrder, ControlView};
use super::cron::{CronJobs, CronOrder, CronSettings, NewRun};
use super::error::AgentError;
use super::job;
use super::job_side::{self, JobSide, JobStep};
use super::launching::{Launches, Planning};
use super::ops::{Op, RunOps};
use super::orders::Order;
use super::placing;
use super::pressure::Pressure;
use super::reconcile::JobDirectory;
use super::recorder::Recorder;
use super::recovery::{self, Adopted, Recovered, Survey};
use super::reports;
use super::run_files;
use super::runs::{exit_on_record, run_span, JitterSource, LaunchState, Run, RunTable};
use super::runtime::{LaunchPlan, Observation, Observed, Runtime, Sink};
use super::scheduling::{self, PassInput, Scheduling};
use super::telemetry::{AgentState, Telemetry};
use super::timers::Timers;
use super::uids::JobUids;
use super::Settings;
use crate::scheduler::preempt::Step;
use crate::scheduler::pressure::{Level as PressureLevel, PressureAction};
use crate::scheduler::RunMeta;
use crate::scheduler::RunQueue;

pub struct Supervisor<R: Runtime, S: RunStore> {
    pub(super) settings: Settings,
    topology: Topology,
    ledger: Ledger,
    pub(super) store: S,
    runtime: Arc<R>,
    pub(super) clock: Clock,
    sink: Sink,
    pub(super) jobs: JobDirectory,
    /// Every run, and each one-shot job's run under way.
    runs: RunTable,
    queue: RunQueue,
    timers: Timers,
    /// Preemptions under way, the shared pool as written, the next rescan.
    scheduling: Scheduling,
    /// The plan of the run being placed now; the next launch's epoch.
    launches: Launches,
    jitter: JitterSource,
    /// The jobs directory has been read once: runs without a job can be told
    /// from runs whose job is not known yet.
    files_read: bool,
    /// Recurring jobs (see [`cron`](super::cron)).
    cron: CronJobs,
    /// Metrics and API views, when the agent serves them.
    telemetry: Option<Telemetry>,
    /// Why the store cannot be written, while it cannot (see
    /// [`store_fault`](super::store_fault)).
    store_problem: Option<String>,
    /// Runs frozen by hand: the scheduling pass leaves them frozen.
    held: BTreeSet<RunId>,
    /// Recovery is taking over the runs of an earlier agent.
    recovering: bool,
    /// Puts what happens to runs on record and announces it.
    recorder: Recorder,
    /// Hands out the jobs' dynamic uids (recorded in `store`).
    uids: JobUids,
    /// Node-pressure protection, when the agent configuration turns it on.
    pressure: Option<Pressure>,
    /// This node in the cluster, in cluster mode (see [`cluster`](super::cluster)).
    cluster: Option<cluster::ClusterNode>,
    /// Why this node's cluster runs are fenced, while they are (see
    /// `cluster::node::fence`): every live one is kept frozen.
    fenced: Option<String>,
    /// Why the cluster cannot be used now, for `/readyz`.
    cluster_problem: Option<String>,
}

impl<R: Runtime, S: RunStore> Supervisor<R, S> {
    pub fn new(
        settings: Settings,
        topology: Topology,
        ledger: Ledger,
        store: S,
        runtime: Arc<R>,
        clock: Clock,
        sink: Sink,
    ) -> Supervisor<R, S> {
        let seed = clock.now().as_millis() as u64 ^ (u64::from(std::process::id()) << 32);
        Supervisor {
            uids: JobUids::new(settings.host_ids.clone()),
            settings,
            scheduling: Scheduling::new(&ledger),
            topology,
            ledger,
            store,
            runtime,
            clock,
            sink,
            jobs: JobDirectory::new(),
            runs: RunTable::default(),
            queue: RunQueue::new(),
            timers: Timers::default(),
            launches: Launches::default(),
            jitter: JitterSource::new(seed),
            files_read: false,
            cron: CronJobs::new(CronSettings::default()),
            telemetry: None,
            held: BTreeSet::new(),
            store_problem: None,
            recovering: false,
            recorder: Recorder::default(),
            pressure: None,
            cluster: None,
            fenced: None,
            cluster_problem: None,
        }
    }

    /// Turns node-pressure protection on (see [`pressure`](super::pressure)).
    pub fn set_pressure(&mut self, pressure: Pressure) {
        self.pressure = Some(pressure);
    }

    /// The agent settings for recurring jobs; set before [`recover`](Self::recover).
    pub fn set_cron_settings(&mut self, settings: CronSettings) {
        self.cron.settings = settings;
    }

    /// No firing starts anything from now on (the agent is shutting down).
    pub fn stop_firing(&mut self) {
        self.cron.stop();
    }

    /// Runs not yet over.
    pub fn live_runs(&self) -> usize {
        self.runs.len()
    }

    /// Runs whose launch is under way.
    pub fn launches_under_way(&self) -> usize {
        self.runs.launches_under_way()
    }

    pub fn next_deadline(&self) -> Option<tokio::time::Instant> {
        let pressure = self.pressure.as_ref().map(Pressure::next_check);
        let runs =
            [self.timers.next(), self.scheduling.rescan_at(), pressure].into_iter().flatten().min();
        let runs = runs.map(|at| self.clock.instant(at));
        // Firings are in calendar time, which may part from the runs' time line.
        let firings = self.cron.next_wake().map(|at| self.clock.calendar_instant(at));
        [runs, firings].into_iter().flatten().min()
    }

    /// Whether the jobs directory has been read once (a binding is judged
    /// against its jobs only then).
    pub fn jobs_read(&self) -> bool {
        self.files_read
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Says (in `/readyz` and the metrics) why the store cannot be written,
    /// or that it can again.
    pub fn set_store_problem(&mut self, problem: Option<String>) {
        self.store_problem = problem;
    }

    /// Whether a write to the store goes through now.
    pub fn check_writable(&mut self) -> Result<(), AgentError> {
        Ok(self.store.check_writable()?)
    }

    /// Creates the runs of one-shot jobs in force that have none and whose
    /// version has not run: after the store refused a write part-way
    /// through a batch of job files, the jobs after the refusal are in
    /// force without their runs. A job whose version has its run is left
    /// alone, so this never starts anything twice.
    pub fn revisit_jobs(&mut self) -> Result<(), AgentError> {
        self.carry_out_orders(vec![Order::Then(JobStep::Revisit)])
    }

    /// The span of run `id`'s current attempt; none for a run that is over.
    fn span(&self, id: &RunId) -> Span {
        self.runs.get(id).map_or_else(Span::none, |run| run.span.clone())
    }

    pub fn set_telemetry(&mut self, telemetry: Telemetry) {
        self.telemetry = Some(telemetry);
    }

    /// Puts the runs that ended within the metrics' retention back in the
    /// scrape (see `Telemetry::restore_finished`); returns how many.
    pub fn restore_finished(&self) -> Result<usize, AgentError> {
        let Some(t) = &self.telemetry else { return Ok(0) };
        t.restore_finished(&self.store, self.clock.now())
    }

    /// Publishes the state after a turn of the main loop.
    pub fn publish(&mut self) {
        let Some(t) = &mut self.telemetry else { return };
        t.publish(&AgentState {
            runs: &self.runs,
            jobs: &self.jobs,
            cron: &self.cron,
            queue_length: self.queue.len(),
            topology: &self.topology,
            ledger: &self.ledger,
            store: &self.store,
            runtime: &*self.runtime,
            store_problem: self.store_problem.as_deref(),
            cluster_problem: self.cluster_problem.as_deref(),
            ready: self.files_read,
            default_user: &self.settings.admission.default_user,
        });
    }

    /// The feed the supervisor announces what it records on.
    /// What the HTTP answers wait on; `None` without telemetry.
    pub fn freshness(&self) -> Option<Arc<Freshness>> {
        self.telemetry.as_ref().and_then(|t| t.fresh.clone())
    }

    pub fn feed(&self) -> &EventFeed {
        self.recorder.feed()
    }

    // ---- Taking over ----

    /// Takes over the runs of an earlier agent (see
    /// [`recovery`]). Called once, before the jobs
    /// directory is read.
    pub fn recover(&mut self) -> Result<Recovered, AgentError> {
        self.recovering = true;
        let recovered = self.take_over_runs();
        self.recovering = false;
        recovered
    }

    fn take_over_runs(&mut self) -> Result<Recovered, AgentError> {
        // First, so that the runs of recurring jobs are known as such.
        self.cron.load(&self.store)?;
        let survey = Survey::read(&self.store, &*self.runtime, &self.settings.runs_dir)?;
        let plan =
            recovery::take_over(survey, &self.topology, &self.ledger, self.settings.default_grace)?;
        self.ledger = plan.ledger;
        // The pool the live cpusets were written for: runs that ended while
        // the agent was down change it as they are released below, and the
        // shared-pool runs' cpusets follow.
        self.scheduling = Scheduling::new(&self.ledger);
        recovery::remove_strays(&self.runtime, plan.strays);
        let mut stored = arrays::StoredSpecs::default();
        for adopted in plan.runs {
            self.adopt(adopted, &mut stored)?;
        }
        // Runs the cron states list that ended unnoticed leave them.
        self.carry_out_orders(vec![Order::Then(JobStep::CronRecovered)])?;
        Ok(plan.summary)
    }

    /// Manages run `a` of an earlier agent from now on, and tells it what
    /// happened while no agent ran.
    fn adopt(&mut self, a: Adopted, stored: &mut arrays::StoredSpecs) -> Result<(), AgentError> {
        let id = a.id.clone();
        // A submitted job's runs know their spec without the jobs directory;
        // an array's runs are not their job's run under way.
        let rules = &self.settings.admission;
        // A cluster run's spec is the text it was bound with.
        let spec = match cluster::stored_spec(&self.store, &id)? {
            Some(spec) => Some(spec),
            None => arrays::stored_spec(&self.store, stored, rules, &a.job, &id)?,
        };
        let detached = spec.is_some() || self.store.array_index(&id)?.is_some();
        if let Some(found) = &a.launch_to_record {
            self.store.set_launch(&id, found)?;
        }
        let span = run_span(&a.job, &id, a.state.attempt);
        info!(parent: &span, phase = a.state.phase.name(), "re-adopting run");
        if a.held {
            info!(parent: &span, "frozen by operator: stays frozen until `corral thaw`");
            self.held.insert(id.clone());
        }
        let frozen = a.frozen();
        let one_shot = self.cron.owner(&id).is_none();
        let ops = RunOps::spawn(Arc::clone(&self.runtime), id.clone(), self.sink.clone());
        let (mut run, orders) = a.into_run(ops, span);
        if frozen {
            run.suspended_at = self.scheduling.frozen();
        }
        if spec.is_some() {
            run.spec = spec;
        }
        self.runs.insert(id.clone(), run);
        if one_shot && !detached {
            // A recurring job's runs are found through its cron state.
            self.runs.make_current(&id);
        }
        self.carry_out_orders(orders)
    }

    /// Starts a re-adopted run that was placed but never started.
    fn relaunch(&mut self, id: &RunId) -> Result<(), AgentError> {
        let Some(run) = self.runs.get(id) else { return Ok(()) };
        match recovery::relaunch(run) {
            Some((assignment, memory_limit)) => {
                info!(parent: &run.span, "starting a run that was placed before the agent restarted");
                self.execute_launch(id, assignment, memory_limit)
            }
            None => {
                let detail = "placement lost in an agent restart".into();
                self.handle(id, Event::LaunchFailed { detail })?;
                Ok(())
            }
        }
    }

    // ---- The control socket ----

    /// What the control socket's handlers read.
    fn control_view(&self) -> ControlView<'_, S> {
        ControlView {
            store: &self.store,
            runs: &self.runs,
            held: &self.held,
            jobs: &self.jobs,
            cron: &self.cron,
            telemetry: self.telemetry.as_ref(),
            feed: self.recorder.feed(),
            now: self.clock.now(),
            pressure_holding: self.pressure.as_ref().is_some_and(Pressure::holding),
        }
    }

    /// Answers one request from the control socket; a change goes through
    /// the run state machine like any other event. Only a store failure is
    /// an error of the agent; everything else, a refusal too, is an answer.
    pub fn command(&mut self, command: Command) -> Result<(), AgentError> {
        let answer = match self.control_view().order(command.request)? {
            ControlOrder::Answer(answer) => answer,
            ControlOrder::Feed(change) => {
                let taken = self.handle(&change.run, change.event.clone())?;
                if taken {
                    change.hold(&mut self.held);
                }
                change.answer(taken)
            }
            ControlOrder::Release { run } => {
                // On record before it takes effect: an agent restarting
                // before the run resumes must not take it for held again.
                let now = self.clock.now();
                self.record_event(&run, &RunEvent::Released, "thawed by operator", now)?;
                self.held.remove(&run);
                self.schedule()?;
                let phase = self.runs.get(&run).map(|r| &r.state.phase);
                control::done(Ok(control::thawed(run.clone(), phase)))
            }
            ControlOrder::Trigger { job } => {
                let (outcome, orders) = self.job_side().trigger(&job)?;
                self.carry_out_orders(orders)?;
                control::done(outcome)
            }
            ControlOrder::Submit(submitted) => {
                let (outcome, orders) = arrays::submit(
                    &mut self.store,
                    *submitted,
                    &self.settings.admission,
                    &self.jobs,
                    &self.runs,
                    self.settings.default_grace,
                )?;
                self.carry_out_orders(orders)?;
                control::done(outcome)
            }
            ControlOrder::KillAll { job, runs } => {
                let reason = StopReason::Requested { by: control::OPERATOR.into() };
                let mut stopping = 0;
                for run in runs {
                    if self.handle(&run, Event::StopRequested { reason: reason.clone() })? {
                        self.held.remove(&run);
                        stopping += 1;
                    }
                }
                control::done(Ok(Accepted::StoppingAll { job, runs: stopping }))
            }
        };
        // The client may have gone; the change stands either way.
        let _ = command.reply.send(answer);
        Ok(())
    }

    /// Applies what a reload read, exactly as a batch from the watcher is
    /// applied, and answers with the outcome. A reload that could not read
    /// the directory changes nothing.
    pub fn apply_reload(
        &mut self,
        jobs_dir: &std::path::Path,
        read: Result<Vec<FileChange>, WatchError>,
    ) -> Result<Answer, AgentError> {
        let changes = match read {
            Ok(changes) => changes,
            Err(e) => return Ok(control::reload_failed(&e)),
        };
        let diff = self.apply_files(changes)?;
        Ok(Ok(Response::Reloaded(self.control_view().reload_report(jobs_dir, &diff))))
    }

    // ---- The job set ----

    /// Applies one batch of job file changes; returns how the job set changed.
    pub fn apply_files(
        &mut self,
        changes: Vec<FileChange>,
    ) -> Result<spec::JobSetDiff, AgentError> {
        let reconciled = self.jobs.apply(changes, &self.settings.admission);
        for note in &reconciled.notes {
            note.log();
        }
        let diff = reconciled.diff;
        self.carry_out_orders(job_side::batch(&diff, !self.files_read))?;
        Ok(diff)
    }

    /// The job side (see [`job_side`](super::job_side)), borrowing what it decides on.
    fn job_side(&mut self) -> JobSide<'_, S> {
        JobSide {
            jobs: &self.jobs,
            files_read: &mut self.files_read,
            runs: &mut self.runs,
            queue: &mut self.queue,
            cron: &mut self.cron,
            store: &mut self.store,
            now: self.clock.now(),
            calendar: self.clock.calendar(),
            default_grace: self.settings.default_grace,
            metrics: self.telemetry.as_ref().map(|t| &*t.metrics),
        }
    }

    /// Carries out `orders` in sequence; a step of the job side is decided
    /// when it is reached, and what it leads to comes next.
    fn carry_out_orders(&mut self, orders: Vec<Order>) -> Result<(), AgentError> {
        let mut todo = VecDeque::from(orders);
        while let Some(order) = todo.pop_front() {
            match order {
                Order::Feed(run, event) => {
                    self.handle(&run, event)?;
                }
                Order::Exited(id, status) => {
                    for next in reports::ended(&id, self.runs.get(&id), status).into_iter().rev() {
                        todo.push_front(next);
                    }
                }
                Order::Add { run, current } => {
                    let NewRun { run, job, spec, meta, fingerprint, initial } = *run;
                    self.add_run(run.clone(), &job, spec, meta, fingerprint, initial);
                    if current {
                        self.runs.make_current(&run);
                    }
                }
                Order::Cron(CronOrder::Start(new)) => {
                    todo.push_front(Order::Add { run: new, current: false });
                }
                Order::Cron(CronOrder::Stop { run, by }) => {
                    info!(parent: &self.span(&run), "stopping the run: {by} replaces it");
                    let reason = StopReason::Requested { by };
                    self.handle(&run, Event::StopRequested { reason })?;
                }
                Order::Relaunch(run) => self.relaunch(&run)?,
                Order::ReleaseUid(job) => self.release_uid_if_unused(&job)?,
                Order::Then(step) => {
                    for next in self.job_side().step(step)?.into_iter().rev() {
                        todo.push_front(next);
                    }
                }
            }
        }
        Ok(())
    }

    /// Queues run `id`, created in the store in state `initial`.
    fn add_run(
        &mut self,
        id: RunId,
        name: &crate::vocab::JobName,
        spec: Arc<JobSpec>,
        meta: RunMeta,
        fingerprint: String,
        initial: RunState,
    ) {
        let span = run_span(name, &id, initial.attempt);
        info!(parent: &span, priority = meta.priority, "run queued");
        self.recorder.created(name, &id, &initial);
        let ops = RunOps::spawn(Arc::clone(&self.runtime), id.clone(), self.sink.clone());
        // A blocked run queues once it is released (`after:`).
        if matches!(initial.phase, Phase::Pending) {
            self.queue.push(id.clone(), meta.priority());
        }
        let run = Run::new(name.clone(), Some(spec), meta, fingerprint, initial, ops, span);
        self.runs.insert(id, run);
    }

    // ---- Events ----

    /// Feeds `event` to the run's state machine, records the result and
    /// carries out its actions. Returns whether the event was accepted.
    fn handle(&mut self, id: &RunId, event: Event) -> Result<bool, AgentError> {
        self.handle_at(id, event, self.clock.now())
    }

    /// [`handle`](Self::handle) at `now`: for an event something was named
    /// after already (a placement's run directory, by its time).
    fn handle_at(&mut self, id: &RunId, event: Event, now: Timestamp) -> Result<bool, AgentError> {
        let jitter = self.jitter.draw();
        let Some(run) = self.runs.get_mut(id) else {
            debug!(run = %id, event = event.name(), "event for a run that is over");
            return Ok(false);
        };
        let mut moment = Moment::new(now, jitter);
        if let Some(held) = &run.assignment {
            moment = moment.with_memory_free(placing::free_on_nodes(&self.ledger, held));
        }
        let t = match transition(&run.state, &event, &run.meta.policy, moment) {
            Ok(t) => t,
            Err(e) => {
                warn!(parent: &run.span, "ignored: {e}");
                return Ok(false);
            }
        };
        if t.is_noop(&run.state) {
            debug!(parent: &run.span, "{}", t.reason);
            return Ok(true);
        }
        self.recorder.transition(&mut self.store, id, run, &event, &t, now)?;
        let before = std::mem::replace(&mut run.state, t.next);
        let ended = run.state.is_terminal();
        // A run taken over was placed and launched by an earlier agent: the
        // time the agent was down is no scheduling delay or launch latency.
        if let (Some(telemetry), false) = (&self.telemetry, self.recovering) {
            telemetry.count_transition(id, run, &before, now);
        }
        // The transition is on record: every action it asks for is carried
        // out, even after one failed to record its part (a full disk), so
        // that the run is where the record says. The first failure is
        // reported once all are done.
        let mut failed = None;
        for action in t.actions {
            if let Err(e) = self.execute(id, action, &t.reason, now) {
                failed.get_or_insert(e);
            }
        }
        if ended {
            if let Err(e) = self.finish(id) {
                failed.get_or_insert(e);
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(true),
        }
    }

    fn execute(
        &mut self,
        id: &RunId,
        action: Action,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), AgentError> {
        let Some(run) = self.runs.get_mut(id) else { return Ok(()) };
        match action {
            Action::Enqueue => self.queue.push(id.clone(), run.meta.priority()),
            Action::Dequeue => {
                self.queue.remove(id);
            }
            Action::Launch { assignment, memory_limit } => {
                self.execute_launch(id, assignment, memory_limit)?;
            }
            Action::Watch => {
                run.watch(self.launches.next_epoch());
            }
            Action::Freeze => run.send(Op::Freeze),
            Action::Thaw => run.send(Op::Thaw),
            Action::SetMemoryLimit(limit) => {
                self.recharge(id, limit);
                self.push_settings(id);
            }
            Action::UpdateSettings => self.push_settings(id),
            Action::Terminate => run.terminate(),
            Action::Signal(signal) => run.signal(signal),
            Action::KillAll => run.send(Op::KillAll),
            Action::YieldCpus => {
                self.scheduling.lend_cpus(&mut self.ledger, &mut self.store, id, run)?;
            }
            Action::ReleasePlacement => {
                self.scheduling.release(&mut self.ledger, id, run);
                run.send(Op::Remove);
            }
            Action::ArmTimer { timer, at } => self.timers.arm(id, timer, at),
            // Recorded before the transition; see `handle`.
            Action::RecordExit(_) => {}
            // The transition's reason, logged above, says what happened.
            Action::RecordEvent(event) => self.record_event(id, &event, reason, now)?,
            // The transition into the terminal phase is logged with its reason.
            Action::RecordOutcome(outcome) => {
                debug!(parent: &self.span(id), "outcome: {outcome:?}");
                if let (Some(t), Some(run)) = (&self.telemetry, self.runs.get(id)) {
                    t.count_outcome(id, run, &outcome, reason, now);
                }
            }
        }
        Ok(())
    }

    fn record_exit(
        &mut self,
        id: &RunId,
        status: crate::scheduler::ExitStatus,
        now: Timestamp,
    ) -> Result<(), AgentError> {
        let Some(run) = self.runs.get(id) else { return Ok(()) };
        self.store.set_exit(id, &exit_on_record(run.exit.as_ref(), status, now))?;
        Ok(())
    }

    /// The final plan of run `id` placed on `assignment` at `placed_at`
    /// (see [`Planning::plan`]).
    fn plan_launch(
        &mut self,
        id: &RunId,
        assignment: &Assignment,
        placed_at: Timestamp,
    ) -> Result<Option<Result<LaunchPlan, String>>, AgentError> {
        let Some(run) = self.runs.get(id) else { return Ok(None) };
        let planning = Planning {
            runtime: &*self.runtime,
            store: &mut self.store,
            uids: &mut self.uids,
            admission: &self.settings.admission,
            cron: &self.cron,
            runs_dir: &self.settings.runs_dir,
            cluster_run: self.cluster.as_ref().and_then(|n| n.cluster_run(id)),
            shared_pool: self.ledger.shared_pool(),
            now: self.clock.now(),
        };
        planning.plan(id, run, assignment, placed_at)
    }

    /// Starts an attempt of the run on `assignment`, on its operation task:
    /// with the plan built when it was placed, or (a run placed before an
    /// agent restart) one built now for the placement on record.
    pub(super) fn execute_launch(
        &mut self,
        id: &RunId,
        assignment: Assignment,
        memory_limit: Option<Bytes>,
    ) -> Result<(), AgentError> {
        let Some(run) = self.runs.get(id) else { return Ok(()) };
        let placed_at = run.state.since;
        let dir = run_dir(&self.settings.runs_dir, id, placed_at);
        let prepared = self.launches.take(id, memory_limit, &dir);
        let plan = match prepared {
            Some(plan) => Ok(plan),
            None => match self.plan_launch(id, &assignment, placed_at)? {
                Some(plan) => plan,
                None => return Ok(()),
            },
        };
        let Some(run) = self.runs.get_mut(id) else { return Ok(()) };
        let epoch = self.launches.next_epoch();
        run.epoch = epoch;
        run.exit = None;
        run.launch = LaunchState::Launching;
        run.assignment = Some(assignment);
        match plan {
            Ok(plan) => run.send(Op::Launch(Box::new(plan))),
            // Placed before a restart, refused now (its job changed, or the
            // agent's configuration): the launch failed, and the state
            // machine decides.
            Err(detail) => {
                let _ = self.sink.send(Observation {
                    run: id.clone(),
                    epoch,
                    what: Observed::LaunchFailed(detail),
                });
            }
        }
        Ok(())
    }

    /// Gives up the dynamic uid of `job` once it is gone from the jobs
    /// directory and none of its runs may have processes left. (A process
    /// that escaped its run keeps the uid from being handed out again: see
    /// [`crate::dynamic_user::allocate`].)
    fn release_uid_if_unused(&mut self, job: &crate::vocab::JobName) -> Result<(), AgentError> {
        if !self.files_read
            || self.jobs.get(job).is_some()
            || self.runs.values().any(|r| r.job == *job)
        {
            return Ok(());
        }
        self.uids.release(&mut self.store, job)
    }

    /// A run reached a terminal phase: forget it and prune its job's history.
    fn finish(&mut self, id: &RunId) -> Result<(), AgentError> {
        self.timers.forget(id);
        self.queue.remove(id);
        self.scheduling.preempted(id);
        if let Some(run) = self.runs.remove(id) {
            if let Some(held) = &run.assignment {
                let _ = self.ledger.release(held);
            }
            let recurring = self.cron.owner(id).is_some();
            let keep = job::retention(run.spec.as_deref(), recurring);
            run_files::prune_history(&self.settings.runs_dir, &mut self.store, &run.job, keep)?;
            let job = run.job.clone();
            let finished = JobStep::RunFinished { job: job.clone(), run: id.clone() };
            self.carry_out_orders(vec![Order::Then(finished), Order::ReleaseUid(job)])?;
        }
        Ok(())
    }

    /// Records something that happened to run `id`, counts it and announces it.
    fn record_event(
        &mut self,
        id: &RunId,
        event: &RunEvent,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), AgentError> {
        let (run, telemetry) = (self.runs.get(id), self.telemetry.as_ref());
        self.recorder.event(&mut self.store, telemetry, id, run, event, reason, now)
    }

    /// Something the runtime saw (see [`reports`]).
    pub fn observe(&mut self, obs: Observation) -> Result<(), AgentError> {
        let id = obs.run;
        let Some(run) = self.runs.get_mut(&id) else { return Ok(()) };
        if obs.epoch != run.epoch {
            debug!(parent: &run.span, "dropped a report about an earlier attempt: {:?}", obs.what);
            return Ok(());
        }
        let reading = reports::read(&id, run, obs.what);
        if let Some(launch) = reading.launch {
            // On record with the transition it leads to, in one commit.
            self.recorder.launched(&id, launch);
        }
        if let Some(status) = reading.exit {
            self.record_exit(&id, status, self.clock.now())?;
        }
        if reading.preempted {
            self.scheduling.preempted(&id);
        }
        let carried = self.carry_out_orders(reading.orders);
        // A launch that led to no transition (the event changed nothing)
        // goes on record alone; nothing acted on it meanwhile.
        if let Some((run, launch)) = self.recorder.take_unrecorded_launch() {
            self.store.set_launch(&run, &launch)?;
        }
        carried
    }

    /// Delivers due timers.
    pub fn fire_timers(&mut self) -> Result<(), AgentError> {
        let now = self.clock.now();
        self.scheduling.woke(now);
        for (id, event) in self.timers.due(now) {
            self.handle(&id, event)?;
        }
        if self.pressure.as_ref().is_some_and(|p| p.next_check() <= now) {
            self.check_pressure(now)?;
        }
        self.carry_out_orders(vec![Order::Then(JobStep::Wake)])
    }

    /// Takes a pressure reading and carries out what the watch decides:
    /// a freeze or a requeue through the state machine, a release by
    /// letting the scheduling pass resume the run.
    fn check_pressure(&mut self, now: Timestamp) -> Result<(), AgentError> {
        let Some(pressure) = &mut self.pressure else { return Ok(()) };
        let (reading, decision) = pressure.check(now, &self.runs);
        if let Some(t) = &mut self.telemetry {
            t.pressure_reading(&reading, &decision.level, decision.holding);
        }
        if decision.began {
            let why = match &decision.level {
                PressureLevel::High(cause) => cause.clone(),
                _ => format!("runs frozen for it earlier ({reading})"),
            };
            warn!("memory pressure: {why}; new runs are held back");
        }
        if decision.ended {
            info!("memory pressure over ({reading}); new runs are placed again");
        }
        match decision.action {
            None => Ok(()),
            Some(PressureAction::Freeze { run, cause }) => {
                self.handle(&run, Event::PressureFreeze { cause }).map(drop)
            }
            Some(PressureAction::Requeue { run, cause }) => {
                self.handle(&run, Event::PressureRequeue { cause }).map(drop)
            }
            Some(PressureAction::Release { run, cause }) => {
                // On record before the scheduling pass may resume it.
                let reason = format!("released: {cause}");
                let event = RunEvent::PressureReleased { reading: cause };
                self.record_event(&run, &event, &reason, now)?;
                if let Some(pressure) = &mut self.pressure {
                    pressure.release(run);
                }
                Ok(())
            }
        }
    }

    // ---- Scheduling ----

    /// Places what can be placed, resumes what can be resumed, preempts for
    /// the most important run that does not fit; then brings the shared
    /// pool's cpusets up to date.
    pub fn schedule(&mut self) -> Result<(), AgentError> {
        if !self.files_read {
            return Ok(());
        }
        // Runs frozen for pressure stay frozen until released, like runs
        // frozen by hand.
        let pressure_held = self.pressure.as_ref().map(|p| p.held(&self.runs));
        let held = match &pressure_held {
            Some(ids) if !ids.is_empty() => {
                std::borrow::Cow::Owned(self.held.iter().chain(ids).cloned().collect())
            }
            _ => std::borrow::Cow::Borrowed(&self.held),
        };
        // Runs frozen by the fence stay frozen until it is lifted.
        let fence_held = self.fence_held();
        let held = if fence_held.is_empty() {
            held
        } else {
            std::borrow::Cow::Owned(held.iter().chain(&fence_held).cloned().collect())
        };
        let steps = self.scheduling.pass(PassInput {
            topology: &self.topology,
            ledger: &mut self.ledger,
            queue: &self.queue,
            runs: &self.runs,
            held: held.as_ref(),
            now: self.clock.now(),
            min_runtime: self.settings.min_runtime_before_preemption,
            telemetry: self.telemetry.as_mut(),
            hold_pending: self.pressure.as_ref().is_some_and(Pressure::holding),
        });
        self.scheduling.note_reservation(&mut self.runs, &steps);
        for step in steps {
            self.carry_out(step)?;
        }
        self.sync_pool();
        Ok(())
    }

    fn carry_out(&mut self, step: Step) -> Result<(), AgentError> {
        match step {
            // Noted by `note_reservation`: nothing to carry out.
            Step::Reserve { .. } | Step::Deferred { .. } => {}
            Step::NotPlaced { run, error } => {
                if let (Some(t), Some(waiting)) = (&mut self.telemetry, self.runs.get(&run)) {
                    t.count_not_placed(&run, waiting, &error);
                }
            }
            Step::Place { assignment } => {
                let id = assignment.owner.clone();
                self.queue.remove(&id);
                // The plan is built and checked before the placement is
                // recorded: a run the host refuses fails as refused, and
                // never holds a placement for a launch that cannot happen.
                let placed_at = self.clock.now();
                let plan = match self.plan_launch(&id, &assignment, placed_at) {
                    Ok(Some(Ok(plan))) => plan,
                    Ok(Some(Err(detail))) => {
                        let _ = self.ledger.release(&assignment);
                        warn!(parent: &self.span(&id), "not started: {detail}");
                        let refused = self.handle_at(&id, Event::Refused { detail }, placed_at);
                        if refused.is_err() {
                            // Its refusal could not be recorded: it waits again.
                            self.wait_again(&id);
                        }
                        return refused.map(drop);
                    }
                    Ok(None) => {
                        let _ = self.ledger.release(&assignment);
                        return Ok(());
                    }
                    Err(e) => {
                        // Not placed after all (its uid could not be
                        // recorded): it waits again.
                        let _ = self.ledger.release(&assignment);
                        self.wait_again(&id);
                        return Err(e);
                    }
                };
                if let Some(run) = self.runs.get_mut(&id) {
                    run.assignment = Some(assignment.clone());
                }
                self.launches.hold(Some(plan));
                let placed = self.handle_at(&id, Event::Placed(assignment.clone()), placed_at);
                // Taken by the launch the placement asked for, if it was recorded.
                self.launches.hold(None);
                if !matches!(placed, Ok(true)) {
                    let _ = self.ledger.release(&assignment);
                    let pending = self.runs.get_mut(&id).is_some_and(|run| {
                        run.assignment = None;
                        matches!(run.state.phase, Phase::Pending)
                    });
                    // Not placed after all (its placement could not be
                    // recorded): it waits again.
                    if placed.is_err() && pending {
                        self.wait_again(&id);
                    }
                }
                placed?;
            }
            Step::Resume { assignment } => {
                let id = assignment.owner.clone();
                self.store.set_placement(&id, Some(&assignment))?;
                if let Some(run) = self.runs.get_mut(&id) {
                    run.assignment = Some(assignment);
                }
                // The new cpuset is written before the thaw.
                self.push_settings(&id);
                self.handle(&id, Event::Resume)?;
            }
            Step::Preempt { for_run, priority, victims } => {
                for (victim, event) in
                    scheduling::preemptions(&self.runs, &for_run, priority, victims)
                {
                    if self.handle(&victim, event)? {
                        self.scheduling.preempting(victim);
                    }
                }
            }
        }
        Ok(())
    }

    /// Puts run `id` back in the queue: its placement did not go on record.
    fn wait_again(&mut self, id: &RunId) {
        if let Some(run) = self.runs.get(id) {
            self.queue.push(id.clone(), run.meta.priority());
        }
    }

    /// Writes the shared pool into the cpusets of shared-pool runs when it
    /// changed.
    fn sync_pool(&mut self) {
        if self.scheduling.pool_changed(&self.ledger).is_some() {
            for id in placing::shared_pool_runs(&self.runs) {
                self.push_settings(&id);
            }
        }
    }

    /// Sends the run's current settings (spec resources, cpuset, limit) to
    /// its cgroup.
    fn push_settings(&self, id: &RunId) {
        let Some(run) = self.runs.get(id) else { return };
        if let Some(settings) = placing::live_settings(run, self.ledger.shared_pool()) {
            run.send(Op::Update(Box::new(settings)));
        }
    }

    /// Charges the run's placement for a hard limit of `limit` (see
    /// [`scheduling::recharge`]).
    fn recharge(&mut self, id: &RunId, limit: Bytes) {
        let Some(run) = self.runs.get_mut(id) else { return };
        let Some(held) = &run.assignment else { return };
        let Some(wanted) = scheduling::recharge(&mut self.ledger, held, limit, &run.span) else {
            return;
        };
        if let Err(e) = self.store.set_placement(id, Some(&wanted)) {
            error!(parent: &run.span, "cannot store the new memory charge: {e}");
        }
        run.assignment = Some(wanted);
    }

    // ---- Shutdown ----

    /// Stops every run for good (agent shutdown with `stop_jobs_on_exit`).
    pub fn stop_all(&mut self, by: &str) -> Result<(), AgentError> {
        let stop = |id| {
            let reason = StopReason::Requested { by: by.to_owned() };
            Order::Feed(id, Event::StopRequested { reason })
        };
        self.carry_out_orders(self.runs.ids().into_iter().map(stop).collect())
    }

    // ---- The cluster ----

    /// Takes part in the cluster as `node`: the live cluster runs taken over
    /// are known as such. Returns their statuses, to be written again (one
    /// lost in a crash is restored).
    pub fn join_cluster(
        &mut self,
        mut node: cluster::ClusterNode,
    ) -> Result<Vec<RunStatus>, AgentError> {
        let now = self.clock.now();
        let mut statuses = Vec::new();
        for m in self.store.live_cluster_runs()? {
            // A run given back is the scheduler's again; its local run's
            // last transitions are not reported.
            if m.handed_back.is_none() {
                node.map(&m);
            }
            statuses.extend(cluster::status_of(&self.store, &node.name, &m, now)?);
        }
        self.cluster = Some(node);
        Ok(statuses)
    }

    /// What this node publishes about its capacity and allocation.
    pub fn node_summary(&self) -> crate::cluster::node::NodeSummary {
        crate::cluster::node::record::summary(&self.topology, &self.ledger, self.queue.len())
    }

    /// Takes binding `binding`: a new local run, or a hand-back. A binding
    /// taken before creates nothing; its run's status is reported again.
    /// Returns the statuses to write.
    pub fn cluster_bound(&mut self, binding: &Binding) -> Result<Vec<RunStatus>, AgentError> {
        let Some(node) = &self.cluster else { return Ok(Vec::new()) };
        let now = self.clock.now();
        if let Some(m) = self.store.cluster_mapping(&binding.run, binding.attempt)? {
            return Ok(cluster::status_of(&self.store, &node.name, &m, now)?.into_iter().collect());
        }
        let judged = cluster::Judge {
            node,
            rules: &self.settings.admission,
            jobs: &self.jobs,
            topology: &self.topology,
            ledger: &self.ledger,
        }
        .judge(binding);
        let spec = match judged {
            Ok(spec) => spec,
            Err(refused) => {
                warn!(
                    cluster_run = %binding.run,
                    attempt = binding.attempt,
                    "handing the binding back: {}",
                    refused.reason
                );
                let back = crate::cluster::node::status::handed_back(
                    &node.name,
                    &binding.run,
                    binding.attempt,
                    None,
                    refused.reason,
                    refused.needs_memory,
                    now,
                );
                return Ok(vec![back]);
            }
        };
        // An earlier attempt still live here is over: the scheduler bound
        // the run anew. Its last transitions are not reported, since the
        // status is the new attempt's now.
        for old in node.attempts_before(&binding.run, binding.attempt) {
            info!(parent: &self.span(&old), cluster_run = %binding.run, "stopping: superseded");
            if let Some(node) = &mut self.cluster {
                node.forget(&old);
            }
            // One frozen by the fence is killed as it is, never thawed.
            if self.is_fenced_run(&old) {
                self.handle(&old, Event::Superseded { cluster_run: binding.run.clone() })?;
                continue;
            }
            let by = format!("the cluster (superseded by attempt {})", binding.attempt);
            self.handle(&old, Event::StopRequested { reason: StopReason::Requested { by } })?;
        }
        let grace = self.settings.default_grace;
        let Some((mapping, order)) = cluster::create(&mut self.store, binding, spec, now, grace)?
        else {
            return Ok(Vec::new());
        };
        info!(
            cluster_run = %binding.run,
            attempt = binding.attempt,
            run = %mapping.node_run,
            "cluster run bound to this node"
        );
        if let Some(node) = &mut self.cluster {
            node.map(&mapping);
        }
        self.carry_out_orders(vec![order])?;
        let name = self.cluster.as_ref().map_or("", |n| n.name.as_str());
        Ok(cluster::status_of(&self.store, name, &mapping, now)?.into_iter().collect())
    }

    /// The binding of cluster run `run` was deleted: its live local runs
    /// stop, as `corral kill` stops them.
    pub fn cluster_unbound(&mut self, run: &str) -> Result<(), AgentError> {
        let Some(node) = &self.cluster else { return Ok(()) };
        for id in node.runs_of(run) {
            if self.is_fenced_run(&id) {
                // Frozen while this node could not reach the cluster, and
                // bound elsewhere meanwhile (or removed): killed as it is,
                // never thawed. Its end is not reported: `status/{run}` is
                // the new attempt's now.
                warn!(parent: &self.span(&id), cluster_run = run, "killing: superseded");
                if let Some(node) = &mut self.cluster {
                    node.forget(&id);
                }
                self.handle(&id, Event::Superseded { cluster_run: run.to_owned() })?;
                continue;
            }
            info!(parent: &self.span(&id), cluster_run = run, "stopping: removed from the cluster");
            let reason = StopReason::Requested { by: cluster::REMOVED.into() };
            self.handle(&id, Event::StopRequested { reason })?;
        }
        Ok(())
    }

    /// Everything bound to this node now: each binding taken, and the live
    /// runs of cluster runs no longer bound here stopped.
    pub fn cluster_listed(&mut self, bindings: &[Binding]) -> Result<Vec<RunStatus>, AgentError> {
        let mut statuses = Vec::new();
        for binding in bindings {
            statuses.extend(self.cluster_bound(binding)?);
        }
        let Some(node) = &self.cluster else { return Ok(statuses) };
        let bound: BTreeSet<&str> = bindings.iter().map(|b| b.run.as_str()).collect();
        let gone: BTreeSet<String> = node
            .live()
            .filter(|(_, run)| !bound.contains(run))
            .map(|(_, r)| r.to_owned())
            .collect();
        for run in gone {
            self.cluster_unbound(&run)?;
        }
        Ok(statuses)
    }

    /// The statuses of the cluster runs among local runs `runs` (those the
    /// feed announced since the last call). A pending cluster run whose
    /// memory limit this node can never hold (an OOM requeue grew it past
    /// the node) is handed back with the limit it needs, and stopped here.
    pub fn cluster_statuses(
        &mut self,
        runs: impl IntoIterator<Item = RunId>,
    ) -> Result<Vec<RunStatus>, AgentError> {
        let mut statuses = Vec::new();
        let now = self.clock.now();
        for id in runs.into_iter().collect::<BTreeSet<_>>() {
            let Some(node) = &self.cluster else { break };
            if node.cluster_run(&id).is_none() {
                continue;
            }
            let Some(m) = self.store.cluster_run_of(&id)? else { continue };
            if let Some(back) = self.hand_back_if_too_big(&id, &m, now)? {
                statuses.push(back);
                continue;
            }
            let name = self.cluster.as_ref().map_or("", |n| n.name.as_str());
            let Some(status) = cluster::status_of(&self.store, name, &m, now)? else { continue };
            if status.ended.is_some() {
                if let Some(node) = &mut self.cluster {
                    node.forget(&id);
                }
            }
            statuses.push(status);
        }
        Ok(statuses)
    }

    // ---- Self-fencing (see `cluster::node::fence`) ----

    /// This node cannot renew its lease: every live cluster run is frozen
    /// (recorded first, as every transition), local runs untouched.
    pub fn cluster_fenced(&mut self, problem: String) -> Result<(), AgentError> {
        warn!(cluster_runs = self.cluster_runs().len(), "fencing: {problem}");
        self.cluster_problem = Some(problem.clone());
        self.fenced = Some(problem);
        self.fence_sweep()
    }

    /// While fenced: freezes every cluster run that runs (one launched
    /// since the fence, one an OOM growth thawed). Called after each turn.
    pub fn fence_sweep(&mut self) -> Result<(), AgentError> {
        let (Some(cause), Some(node)) = (&self.fenced, &self.cluster) else { return Ok(()) };
        let cause = cause.clone();
        let mut ids: Vec<RunId> = node
            .live()
            .map(|(id, _)| id.clone())
            .filter(|id| {
                self.runs.get(id).is_some_and(|r| {
                    matches!(
                        r.state.phase,
                        Phase::Running { .. }
                            | Phase::Suspended {
                                by: SuspendedBy::Run(_) | SuspendedBy::Pressure,
                                ..
                            }
                    )
                })
            })
            .collect();
        ids.sort();
        for id in ids {
            self.handle(&id, Event::FenceFreeze { cause: cause.clone() })?;
        }
        Ok(())
    }

    /// The lease is renewed: the fence is lifted, and the scheduling pass
    /// thaws the fenced runs (placing them again as any frozen run).
    pub fn cluster_unfenced(&mut self) {
        if self.fenced.take().is_some() {
            info!(
                thawing = self.fence_held().len(),
                "the cluster lease is renewed; lifting the fence"
            );
        }
        self.cluster_problem = None;
    }

    /// The cluster is unavailable without this node fencing (no quorum),
    /// or available again.
    pub fn set_cluster_problem(&mut self, problem: Option<String>) {
        if self.fenced.is_none() {
            self.cluster_problem = problem;
        }
    }

    /// Since a fence, why; `None` when the node is not fenced.
    pub fn fence(&self) -> Option<&str> {
        self.fenced.as_deref()
    }

    fn is_fenced_run(&self, id: &RunId) -> bool {
        self.runs.get(id).is_some_and(|r| {
            matches!(r.state.phase, Phase::Suspended { by: SuspendedBy::Fence, .. })
        })
    }

    /// The runs the fence keeps frozen: none once it is lifted.
    fn fence_held(&self) -> BTreeSet<RunId> {
        if self.fenced.is_none() {
            return BTreeSet::new();
        }
        self.runs
            .iter()
            .filter(|(id, _)| self.is_fenced_run(id))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Every live local run of a cluster run.
    pub fn cluster_runs(&self) -> Vec<RunId> {
        self.cluster
            .as_ref()
            .map_or_else(Vec::new, |n| n.live().map(|(id, _)| id.clone()).collect())
    }

    /// Hands cluster run `m` back when its local run `id` waits with a
    /// memory limit this node can never give; stops the local run.
    fn hand_back_if_too_big(
        &mut self,
        id: &RunId,
        m: &crate::store::ClusterMapping,
        now: Timestamp,
    ) -> Result<Option<RunStatus>, AgentError> {
        let (Some(node), Some(run)) = (&self.cluster, self.runs.get(id)) else { return Ok(None) };
        let (Some(spec), Phase::Pending) = (&run.spec, &run.state.phase) else { return Ok(None) };
        let limit = run.state.memory_limit;
        let judge = cluster::Judge {
            node,
            rules: &self.settings.admission,
            jobs: &self.jobs,
            topology: &self.topology,
            ledger: &self.ledger,
        };
        let Err(refused) = judge.fits_ever(spec, limit) else { return Ok(None) };
        let reason = match limit {
            Some(limit) => format!(
                "its memory limit grew to {} after running out of memory: {}",
                limit.human(),
                refused.reason
            ),
            None => refused.reason,
        };
        warn!(parent: &run.span, cluster_run = %m.cluster_run, "handing the run back: {reason}");
        let node = node.name.clone();
        // On record before the scheduler hears of it and before the run
        // stops: seen again, the binding is answered with the hand-back.
        let handed =
            crate::store::HandedBack { reason, needs_memory: limit.map(Bytes::get), at: now };
        self.store.set_handed_back(&m.cluster_run, m.attempt, &handed)?;
        let back = crate::cluster::node::status::handed_back(
            &node,
            &m.cluster_run,
            m.attempt,
            Some(id.to_string()),
            handed.reason,
            handed.needs_memory,
            now,
        );
        if let Some(node) = &mut self.cluster {
            node.forget(id);
        }
        let stop = StopReason::Requested { by: "the cluster (handed back)".into() };
        self.handle(id, Event::StopRequested { reason: stop })?;
        Ok(Some(back))
    }
}

/// Where one placement of a run keeps its files (the layout `corral run`
/// uses too).
pub use crate::launch::run_dir;
