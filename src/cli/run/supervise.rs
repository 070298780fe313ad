//! The one-run executor behind `corral run`: the job driven through the
//! agent's run state machine ([`transition()`]), on the agent's runtime
//! ([`HostRuntime`]) and its per-run operations ([`ops::carry_out`]).
//!
//! Restarts and their backoff, the timeout, the stop grace and the OOM
//! policy are the state machine's, as under the agent; what is particular
//! to a foreground run is small: it is placed alone, its output is teed to
//! the terminal, SIGINT, SIGTERM and SIGHUP become stop requests (the job
//! gets the signal received), a failed start ends `corral run` at once, and
//! `oom: requeue` fails the run (there is no queue to put it back in).
//!
//! Operations are carried out here, one at a time and in order, but only
//! when no observation is waiting: as on the agent's operation task, an
//! event is taken in before the kernel work a previous event asked for, so
//! the kernel's second notification of one OOM finds the run already
//! paused.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::debug;

use super::summary::{summary_line, RunObservations};
use crate::agent::clock::Clock;
use crate::agent::host::HostRuntime;
use crate::agent::job;
use crate::agent::ops::{self, Op};
use crate::agent::reports;
use crate::agent::runtime::{FinalStats, LiveSettings, Observation, Observed as Seen, Sink};
use crate::cgroup::OomMode;
use crate::config::AgentConfig;
use crate::container::JobExit;
use crate::launch::{self, LaunchError, RunPlan};
use crate::placement::{Assignment, Ledger};
use crate::scheduler::{
    transition, Action, Event, ExitStatus, Jitter, Moment, OomPolicy, Phase, Policy, RunEvent,
    RunState, StopIntent, StopReason, Timer,
};
use crate::spec::JobSpec;
use crate::store::LaunchInfo;
use crate::vocab::Bytes;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

/// Prints corral's own progress lines, unless quiet.
#[derive(Debug, Clone, Copy)]
pub struct Notes {
    pub quiet: bool,
}

impl Notes {
    pub fn say(&self, line: &str) {
        self.print(&format!("corral: {line}"));
    }

    pub fn print(&self, line: &str) {
        if !self.quiet {
            error(line);
        }
    }
}

/// Writes a line to stderr, ignoring failure: a closed terminal must not
/// stop `corral run` from seeing its job to the end (`eprintln!` would
/// panic).
pub fn error(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// SIGINT, SIGTERM and SIGHUP, caught for the whole of `corral run`: from
/// the first one on, the job gets them and corral does not die of them.
pub struct Signals {
    interrupts: tokio::signal::unix::Signal,
    terminations: tokio::signal::unix::Signal,
    hangups: tokio::signal::unix::Signal,
}

impl Signals {
    /// Must be called within the runtime.
    pub fn catch() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupts: signal(SignalKind::interrupt())?,
            terminations: signal(SignalKind::terminate())?,
            hangups: signal(SignalKind::hangup())?,
        })
    }

    /// The next of the three to arrive.
    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.interrupts.recv() => Signal::SIGINT,
            _ = self.terminations.recv() => Signal::SIGTERM,
            _ = self.hangups.recv() => Signal::SIGHUP,
        }
    }
}

/// The dynamic uid of each attempt of a foreground run (see
/// `one_run_uid` in the command).
pub type UidSource<'a> = &'a dyn Fn() -> anyhow::Result<Option<u32>>;

/// What the executor carries out, in order.
#[derive(Debug)]
enum Work {
    /// Start the attempt placed with the plan kept in `Foreground::placed`.
    Launch,
    Op(Op),
}

/// One run of one job, in the foreground.
pub struct Foreground {
    runtime: Arc<HostRuntime>,
    spec: Arc<JobSpec>,
    run: RunId,
    runs_dir: PathBuf,
    policy: Policy,
    state: RunState,
    clock: Clock,
    ledger: Ledger,
    assignment: Option<Assignment>,
    /// The plan of the attempt just placed, until it is launched.
    placed: Option<RunPlan>,
    launch: Option<LaunchInfo>,
    /// The attempt's job is paused at its hard limit (v1 by the kernel, v2
    /// by the freeze at `memory.high`).
    pauses_at_limit: bool,
    epoch: u64,
    /// Given to the runtime's watchers; dropped once the run is over, so
    /// that the observation channel closes when they are done.
    sink: Option<Sink>,
    observations: mpsc::UnboundedReceiver<Observation>,
    work: VecDeque<Work>,
    timers: BTreeMap<Timer, Timestamp>,
    /// What the job gets when it is asked to stop: its `stop_signal`
    /// (SIGTERM unless it names another), or the signal `corral run`
    /// received.
    stop_signal: Signal,
    /// What was seen of the current attempt, for its summary line.
    observed: RunObservations,
    /// The exit code of the last attempt that ended.
    code: Option<u8>,
    notes: Notes,
    name: String,
}

impl Foreground {
    pub fn new(
        runtime: HostRuntime,
        spec: JobSpec,
        config: &AgentConfig,
        run: RunId,
        notes: Notes,
    ) -> Result<Foreground, LaunchError> {
        let ledger = runtime.host().ledger()?;
        let mut policy = crate::scheduler::run_meta::policy(&spec, config.stop_grace);
        // A foreground run has no queue to be put back in.
        if let OomPolicy::Requeue { .. } = policy.oom {
            policy.oom = OomPolicy::Fail;
        }
        let clock = Clock::system();
        let stop_signal = ops::nix_signal(policy.stop_signal);
        let (sink, observations) = mpsc::unbounded_channel();
        Ok(Foreground {
            runtime: Arc::new(runtime),
            state: RunState::new(spec.resources.memory.hard, clock.now()),
            name: format!("{} run {run}", spec.name),
            spec: Arc::new(spec),
            runs_dir: launch::runs_dir(&config.state_dir),
            run,
            policy,
            clock,
            ledger,
            assignment: None,
            placed: None,
            launch: None,
            pauses_at_limit: false,
            epoch: 0,
            sink: Some(sink),
            observations,
            work: VecDeque::new(),
            timers: BTreeMap::new(),
            stop_signal,
            observed: RunObservations::default(),
            code: None,
            notes,
        })
    }

    /// Runs the job until the state machine says the run is over; returns
    /// the last attempt's exit code. A placement, plan or start that fails
    /// ends it at once, with that error.
    pub async fn run(mut self, signals: &mut Signals, uid: UidSource<'_>) -> anyhow::Result<u8> {
        let far = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        while !(self.state.is_terminal() && self.work.is_empty()) {
            // What happened first, then what to do about it.
            if let Ok(observation) = self.observations.try_recv() {
                self.observe(observation);
                continue;
            }
            if let Some(work) = self.work.pop_front() {
                self.carry_out(work).await?;
                continue;
            }
            if matches!(self.state.phase, Phase::Pending) {
                self.place(uid()?)?;
                continue;
            }
            let timer = self.timers.iter().min_by_key(|(_, at)| **at).map(|(t, at)| (*t, *at));
            let wake = timer.map_or(far, |(_, at)| self.clock.instant(at));
            tokio::select! {
                Some(observation) = self.observations.recv() => self.observe(observation),
                signal = signals.next() => self.on_signal(signal),
                () = tokio::time::sleep_until(wake), if timer.is_some() => {
                    let (timer, _) = timer.expect("guarded");
                    self.timers.remove(&timer);
                    let event = match timer {
                        Timer::ActiveDeadline => Event::TimeoutElapsed,
                        Timer::StopGrace => Event::GraceElapsed,
                        Timer::Backoff => Event::BackoffElapsed,
                        Timer::TimeoutSignal => Event::TimeoutSignalDue,
                    };
                    self.handle(event);
                }
            }
        }
        self.tidy_up().await;
        Ok(self.code.unwrap_or(super::summary::EXIT_CORRAL_FAILED))
    }

    /// Places the run alone, plans it (final: nothing changes the plan
    /// after this) and records the placement with the state machine.
    fn place(&mut self, dynamic_uid: Option<u32>) -> Result<(), LaunchError> {
        let host = self.runtime.host();
        let request = job::request(&self.spec, &self.run, self.state.memory_limit);
        let assignment = self.ledger.admit(host.topology(), &request).map_err(|source| {
            LaunchError::Placement { job: self.spec.name.to_string(), source: source.into() }
        })?;
        let placed_at = self.clock.now();
        let run_dir = launch::run_dir(&self.runs_dir, &self.run, placed_at);
        let inputs = launch::RunInputs {
            run: &self.run,
            assignment: &assignment,
            shared_pool: self.ledger.shared_pool(),
            memory_limit: self.state.memory_limit,
            run_dir: &run_dir,
            env: &BTreeMap::new(),
            dynamic_uid,
            tee_output: true,
        };
        let plan = match host.plan(&self.spec, &inputs) {
            Ok(plan) => plan,
            Err(err) => {
                let _ = self.ledger.release(&assignment);
                return Err(err);
            }
        };
        self.notes.say(&format!(
            "{} run {} on cpus {} (mems {}) in {}",
            self.spec.name,
            self.run,
            plan.resources.cpus.as_ref().map_or_else(|| "any".to_owned(), ToString::to_string),
            assignment.mems,
            run_dir.display(),
        ));
        self.pauses_at_limit =
            matches!(plan.resources.oom, OomMode::PauseAtLimit | OomMode::FreezeAtHigh);
        self.placed = Some(plan);
        self.observed = RunObservations::default();
        self.handle_at(Event::Placed(assignment), placed_at);
        Ok(())
    }

    async fn carry_out(&mut self, work: Work) -> anyhow::Result<()> {
        match work {
            Work::Launch => self.start()?,
            Work::Op(op) => {
                let Some(sink) = &self.sink else { return Ok(()) };
                ops::carry_out(&*self.runtime, &self.run, sink, self.epoch, op).await;
            }
        }
        Ok(())
    }

    /// Starts the placed attempt and watches it. A start that fails ends
    /// `corral run` with the launch error (exit 125, 126 or 127), whatever
    /// the restart policy: what fails is the job's setup, not its run.
    fn start(&mut self) -> Result<(), LaunchError> {
        let Some(plan) = self.placed.take() else { return Ok(()) };
        // The attempt's wall time counts from here: its setup is part of it.
        let launched_at = Timestamp::now();
        let started = match launch::start(self.runtime.host(), &plan) {
            Ok(started) => started,
            Err(err) => {
                if let Some(held) = self.assignment.take() {
                    let _ = self.ledger.release(&held);
                }
                return Err(err);
            }
        };
        let (shim, init) = (started.shim(), started.init());
        // The shim stays this process's child; the watcher reaps it.
        drop(started);
        let launch = LaunchInfo {
            shim_pid: shim.pid as u32,
            init_pid: init.pid as u32,
            pid_start_time: init.start_time,
            run_dir: plan.container.run_dir.clone(),
            launched_at,
        };
        self.epoch += 1;
        self.launch = Some(launch.clone());
        // Watched before anything else is done to it.
        self.work.push_front(Work::Op(Op::Watch(launch.clone())));
        self.handle(Event::Launched { pid: launch.init_pid, start_time: launch.pid_start_time });
        Ok(())
    }

    fn observe(&mut self, observation: Observation) {
        if observation.epoch != self.epoch {
            debug!("dropped a report about an earlier attempt: {:?}", observation.what);
            return;
        }
        // What the report says, as the agent reads it; then what it means.
        match &observation.what {
            Seen::Exited { status, at, stats } => self.summarise(Some(*status), *at, stats),
            Seen::CgroupRemoved { status, at } => {
                self.summarise(Some(*status), *at, &FinalStats::default())
            }
            Seen::Lost(_) => self.summarise(None, Timestamp::now(), &FinalStats::default()),
            Seen::Failed(error) => {
                self.notes.say(&format!("{}: {} failed: {}", self.name, error.op, error.cause))
            }
            // Launches are carried out here, not reported.
            Seen::Launched(_) | Seen::LaunchFailed(_) => return,
            Seen::Oom | Seen::OomKilled | Seen::Frozen => {}
        }
        for event in reports::events(&observation.what, &self.state, "corral") {
            self.handle(event);
        }
    }

    /// A signal to `corral run` asks for the run to stop; the job gets that
    /// signal rather than SIGTERM.
    fn on_signal(&mut self, signal: Signal) {
        self.stop_signal = signal;
        match &self.state.phase {
            Phase::Stopping { .. } => {
                // Already stopping: passed on as it is.
                if let Some(launch) = &self.launch {
                    self.work.push_back(Work::Op(Op::Signal(launch.clone(), signal)));
                }
            }
            Phase::BackoffWaiting { .. } => {
                self.notes.say(&format!(
                    "{}: {} while waiting to restart; not restarting",
                    self.spec.name,
                    signal.as_str()
                ));
                self.stop(signal);
            }
            _ => self.stop(signal),
        }
    }

    fn stop(&mut self, signal: Signal) {
        let by = format!("corral run ({})", signal.as_str());
        self.handle(Event::StopRequested { reason: StopReason::Requested { by } });
    }

    fn handle(&mut self, event: Event) {
        self.handle_at(event, self.clock.now());
    }

    /// Feeds `event` to the state machine and queues what it asks for.
    fn handle_at(&mut self, event: Event, now: Timestamp) {
        let moment = Moment::new(now, Jitter::NONE);
        let t = match transition(&self.state, &event, &self.policy, moment) {
            Ok(t) => t,
            Err(e) => {
                debug!("ignored: {e}");
                return;
            }
        };
        debug!("{} -> {}: {}", self.state.phase, t.next.phase, t.reason);
        let before = std::mem::replace(&mut self.state, t.next);
        self.note_change(&before);
        for action in t.actions {
            self.act(action);
        }
    }

    /// What a change of phase means to the person watching.
    fn note_change(&mut self, before: &RunState) {
        let limit = before.memory_limit.unwrap_or(Bytes::ZERO);
        match (&before.phase, &self.state.phase) {
            (Phase::Running { .. }, Phase::Stopping { intent: StopIntent::Timeout, .. }) => {
                let timeout = self.policy.timeout.unwrap_or_default();
                self.observed.timed_out = Some(timeout);
                self.notes.say(&format!(
                    "{}: timed out after {}; {}, then everything is killed after {}",
                    self.name,
                    crate::spec::duration::format(timeout),
                    self.stop_signal.as_str(),
                    crate::spec::duration::format(self.policy.stop_grace),
                ));
            }
            // Held at its limit, and the policy has nothing left: killed
            // there as a whole.
            (Phase::OomPaused { .. }, Phase::Stopping { intent: StopIntent::Oom, .. })
                if self.pauses_at_limit && !self.state.oom_killed =>
            {
                let why = match self.spec.oom {
                    crate::spec::OomPolicy::Grow { .. } => "with no room to grow",
                    crate::spec::OomPolicy::Requeue { .. } => {
                        "and `oom: requeue` is not applied by a foreground run"
                    }
                    crate::spec::OomPolicy::Fail => "and `oom: fail`",
                };
                self.notes.say(&format!(
                    "{}: out of memory at {}, {why}; killing it",
                    self.name,
                    limit.human()
                ));
                self.observed.killed_at_limit = Some(limit.get());
            }
            _ => {}
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            // Placed again by the loop when it finds the run pending.
            Action::Enqueue | Action::Dequeue => {}
            Action::Launch { assignment, .. } => {
                self.assignment = Some(assignment);
                self.work.push_back(Work::Launch);
            }
            Action::Watch => {
                if let Some(launch) = &self.launch {
                    self.work.push_back(Work::Op(Op::Watch(launch.clone())));
                }
            }
            Action::Freeze => self.work.push_back(Work::Op(Op::Freeze)),
            Action::Thaw => self.work.push_back(Work::Op(Op::Thaw)),
            // A foreground run's job never changes under it, so its settings
            // change only with its limit; both send what is in force.
            Action::SetMemoryLimit(_) | Action::UpdateSettings => {
                let Some(assignment) = &self.assignment else { return };
                let settings = LiveSettings {
                    spec: Arc::clone(&self.spec),
                    cpus: assignment.cpuset(self.ledger.shared_pool()),
                    assignment: assignment.clone(),
                    memory_limit: self.state.memory_limit,
                };
                self.work.push_back(Work::Op(Op::Update(Box::new(settings))));
            }
            Action::Terminate => {
                if let Some(launch) = &self.launch {
                    self.work.push_back(Work::Op(Op::Signal(launch.clone(), self.stop_signal)));
                }
            }
            Action::Signal(signal) => {
                if let Some(launch) = &self.launch {
                    let signal = ops::nix_signal(signal);
                    self.work.push_back(Work::Op(Op::Signal(launch.clone(), signal)));
                }
            }
            Action::KillAll => self.work.push_back(Work::Op(Op::KillAll)),
            // Nobody else runs here to take the CPUs.
            Action::YieldCpus => {}
            Action::ReleasePlacement => {
                if let Some(held) = self.assignment.take() {
                    let _ = self.ledger.release(&held);
                }
                self.launch = None;
                self.work.push_back(Work::Op(Op::Remove));
            }
            Action::ArmTimer { timer, at } => {
                self.timers.insert(timer, at);
            }
            Action::RecordEvent(event) => self.note_event(&event),
            // Said in the summary line of each attempt.
            Action::RecordExit(_) | Action::RecordOutcome(_) => {}
        }
    }

    fn note_event(&mut self, event: &RunEvent) {
        match event {
            RunEvent::Oom { .. } => self.observed.oom_events += 1,
            RunEvent::OomKilled => self.observed.oom_kills += 1,
            RunEvent::MemoryGrown { from, to } => self.notes.say(&format!(
                "{}: out of memory at {}; limit raised to {}",
                self.name,
                from.human(),
                to.human()
            )),
            RunEvent::RestartScheduled { restart, delay } => self.notes.say(&format!(
                "{}: restart {restart} of {} in {}",
                self.spec.name,
                self.policy.restart.attempts,
                crate::spec::duration::format(*delay)
            )),
            // Killed by the kernel where it could not be paused (pure v2):
            // the policy starts it again with the larger limit.
            RunEvent::OomRequeued { from, to } => {
                let limit =
                    |l: &Option<Bytes>| l.map_or("none".to_owned(), |l| l.human().to_string());
                self.notes.say(&format!(
                    "{}: out of memory at {}; starting again with a limit of {}",
                    self.name,
                    limit(from),
                    limit(to)
                ));
            }
            RunEvent::TimeoutSignalled { signal, before } => self.notes.say(&format!(
                "{}: {signal} sent, {} ahead of its timeout",
                self.name,
                crate::spec::duration::format(*before)
            )),
            // `corral run` has no pressure watch: these never come here.
            RunEvent::Preempted { .. }
            | RunEvent::Resumed
            | RunEvent::Released
            | RunEvent::PressureFrozen { .. }
            | RunEvent::PressureRequeued { .. }
            | RunEvent::PressureReleased { .. } => {}
        }
    }

    /// Prints the summary line of the attempt that ended.
    fn summarise(&mut self, status: Option<ExitStatus>, at: Timestamp, stats: &FinalStats) {
        let exit = status.map(|status| match status {
            ExitStatus::Code(code) => JobExit::Exited { code },
            ExitStatus::Signal(signal) => JobExit::Signaled { signal, core_dumped: false },
        });
        let wall = match &self.launch {
            Some(launch) if status.is_some() => at.since(launch.launched_at),
            _ => Duration::ZERO,
        };
        let (line, code) = summary_line(
            self.spec.name.as_str(),
            self.run.as_str(),
            exit,
            wall,
            stats,
            &self.observed,
        );
        self.notes.print(&line);
        self.code = Some(code);
    }

    /// Once the run is over (its end reported, and the cgroup emptied and
    /// removed by the last operation, carried out here): says what the
    /// operations reported. The memory event watcher is not waited for: its
    /// stream ends only when the kernel takes the removed cgroup offline,
    /// which on v1 trails the removal by a grace period (10 ms and more),
    /// and an event from a cgroup that is gone changes nothing. It ends
    /// with the runtime, and its descriptors with the process.
    async fn tidy_up(&mut self) {
        self.sink = None;
        while let Ok(observation) = self.observations.try_recv() {
            if let Seen::Failed(error) = observation.what {
                self.notes.say(&format!("{}: {} failed: {}", self.name, error.op, error.cause));
            }
        }
    }
}
