//! Requests from the control socket, answered by the main loop.
//!
//! Reads come from the supervisor's runs and the store; changes go through
//! the run state machine like any other event, and the answer says whether
//! it accepted them. A freeze by hand ([`Event::SuspendRequested`]) is the
//! suspend path with the operator as the cause ([`SuspendedBy::Operator`]), whatever the
//! job's preemption mode: the run keeps its memory, gives up its CPUs, and
//! the scheduling pass does not resume it until it is thawed by hand. The
//! hold needs no record of its own: a run suspended "by operator" with no
//! [`RunEvent::Released`] since is held, which is how a restarted agent
//! finds it held again ([`is_held`]).
//!
//! A reload is the exception to "answered here": it needs the jobs directory
//! read, which the main loop never does itself. The main loop hands it to the
//! watcher task and, when the read comes back, [`Supervisor::apply_reload`]
//! applies it like any batch and answers with a [`ReloadReport`].

use std::path::Path;

use tracing::error;

use crate::api::protocol::{
    Accepted, ControlError, EventLine, FileNotApplied, ReloadReport, Request, Response, RunRow,
    ShownRun,
};
use crate::api::run::{LiveFacts, RunFacts};
use crate::api::{Answer, Command};
use crate::scheduler::{Event, Phase, RunEvent, StopReason, SuspendedBy};
use crate::spec::JobSetDiff;
use crate::store::{RunDetail, RunRecord, RunStore};
use crate::vocab::JobName;
use crate::vocab::RunId;
use crate::vocab::Timestamp;
use crate::watch::{FileChange, WatchError};

use super::error::AgentError;
use super::runtime::Runtime;
use super::supervisor::Supervisor;
use super::telemetry::LiveUsage;

/// Who asks, in the reasons of what is done by hand.
pub const OPERATOR: &str = SuspendedBy::OPERATOR;

/// Runs of a job `show` lists, newest first.
const SHOW_RUNS: usize = 5;
/// Runs per job whose history `events` looks through.
const EVENT_RUNS: usize = 5;
/// The most entries one `events` answer carries.
const EVENT_LINES: usize = 500;

impl<R: Runtime, S: RunStore> Supervisor<R, S> {
    /// Answers one request. Only a store failure is an error of the agent;
    /// everything else, a refusal too, is an answer.
    pub fn command(&mut self, command: Command) -> Result<(), AgentError> {
        let answer = self.answer(command.request)?;
        // The client may have gone; the change stands either way.
        let _ = command.reply.send(answer);
        Ok(())
    }

    fn answer(&mut self, request: Request) -> Result<Answer, AgentError> {
        let done = |accepted: Result<Accepted, ControlError>| {
            accepted.map(|accepted| Response::Done { message: accepted.to_string() })
        };
        Ok(match request {
            Request::Ps => Ok(Response::Ps { runs: self.ps()? }),
            Request::Show { target } => self.show(&target)?,
            Request::Freeze { run } => done(self.freeze(&RunId::new(&run))?),
            Request::Thaw { run } => done(self.thaw(&RunId::new(&run))?),
            Request::Kill { run } => done(self.kill(&RunId::new(&run))?),
            Request::Requeue { run } => done(self.requeue(&RunId::new(&run))?),
            Request::Trigger { job } => match JobName::parse(&job) {
                Ok(name) => done(self.cron_trigger(&name)?),
                Err(e) => Err(ControlError::InvalidJobName { job, reason: e.to_string() }),
            },
            // A follower's socket task asks for the history alone and
            // follows the feed itself.
            Request::Events { since, follow: _ } => {
                Ok(Response::Events { events: self.events(since)?, upto: Some(self.feed.last()) })
            }
            // The main loop hands reloads to the watcher task, whose reads
            // come back through `apply_reload`; one arrives here only once
            // that task is gone.
            Request::Reload => Err(ControlError::NotWatched),
        })
    }

    /// Applies what a reload read, exactly as a batch from the watcher is
    /// applied, and answers with the outcome. A reload that could not read
    /// the directory changes nothing.
    pub fn apply_reload(
        &mut self,
        jobs_dir: &Path,
        read: Result<Vec<FileChange>, WatchError>,
    ) -> Result<Answer, AgentError> {
        let changes = match read {
            Ok(changes) => changes,
            Err(e) => {
                let refused = ControlError::ReloadFailed { cause: with_causes(&e) };
                error!("job directory: {refused}");
                return Ok(Err(refused));
            }
        };
        let diff = self.apply_files(changes)?;
        Ok(Ok(Response::Reloaded(self.reload_report(jobs_dir, &diff))))
    }

    /// `diff` is what the reload changed; the files are as they stand now.
    fn reload_report(&self, jobs_dir: &Path, diff: &JobSetDiff) -> ReloadReport {
        let (files_applied, files_not_applied) = self.jobs.file_counts();
        ReloadReport {
            jobs_dir: jobs_dir.display().to_string(),
            files_applied,
            files_not_applied,
            added: names(&diff.added),
            changed: names(&diff.changed),
            removed: names(&diff.removed),
            not_applied: self
                .jobs
                .not_applied()
                .into_iter()
                .map(|file| FileNotApplied {
                    file: file.path.display().to_string(),
                    problems: file.problems,
                    in_force: names(&file.in_force),
                })
                .collect(),
        }
    }

    fn ps(&self) -> Result<Vec<RunRow>, AgentError> {
        let now = self.clock.now();
        Ok(self.store.active_runs()?.iter().map(|r| self.row(r, now)).collect())
    }

    /// What the agent knows of `record`'s run beyond the record.
    fn live_facts(&self, record: &RunRecord, now: Timestamp) -> LiveFacts<'_> {
        let live = self.runs.get(&record.id);
        let usage = match (&self.telemetry, live) {
            (Some(t), Some(run)) => t.live_usage(&record.id, run, now),
            _ => LiveUsage::default(),
        };
        LiveFacts {
            state: live.map(|r| &r.state),
            assignment: live.and_then(|r| r.assignment.as_ref()),
            launch: live.and_then(|r| r.launch.info()),
            priority: live.map(|r| r.meta.priority),
            held: self.held.contains(&record.id),
            cpu_percent: usage.cpu_percent,
            memory_bytes: usage.memory_bytes,
            next_fire: self.cron.next_fire(&record.job),
            dynamic_uid: None,
            stats: None,
        }
    }

    fn row(&self, record: &RunRecord, now: Timestamp) -> RunRow {
        RunFacts::record(record).with_live(self.live_facts(record, now)).row(now)
    }

    fn show(&self, target: &str) -> Result<Answer, AgentError> {
        let now = self.clock.now();
        if let Some(detail) = self.store.run(&RunId::new(target))? {
            return Ok(Ok(Response::Show { runs: vec![self.view(&detail, now)] }));
        }
        let not_found = || Ok(Err(ControlError::NoRunOrJob { target: target.to_owned() }));
        let Ok(job) = JobName::parse(target) else {
            return not_found();
        };
        let mut runs = Vec::new();
        for record in self.store.runs_for_job(&job, SHOW_RUNS)? {
            if let Some(detail) = self.store.run(&record.id)? {
                runs.push(self.view(&detail, now));
            }
        }
        if runs.is_empty() {
            return not_found();
        }
        Ok(Ok(Response::Show { runs }))
    }

    fn view(&self, detail: &RunDetail, now: Timestamp) -> ShownRun {
        let live = LiveFacts {
            // A job keeps its uid across runs; a listing is not refused
            // for want of it.
            dynamic_uid: self.store.job_uid(&detail.record.job).ok().flatten(),
            ..self.live_facts(&detail.record, now)
        };
        RunFacts::stored(detail).with_live(live).shown(now)
    }

    /// The recent history of every job's latest runs, oldest first.
    fn events(&self, since: Option<i64>) -> Result<Vec<EventLine>, AgentError> {
        let mut jobs: Vec<JobName> = self.jobs.jobs().iter().map(|j| j.spec.name.clone()).collect();
        jobs.extend(self.runs.values().map(|r| r.job.clone()));
        jobs.sort();
        jobs.dedup();
        let mut lines = Vec::new();
        for job in &jobs {
            for record in self.store.runs_for_job(job, EVENT_RUNS)? {
                if since.is_some_and(|t| record.updated_at.as_millis() <= t) {
                    continue;
                }
                if let Some(detail) = self.store.run(&record.id)? {
                    lines.extend(RunFacts::stored(&detail).history());
                }
            }
        }
        lines.retain(|l| since.is_none_or(|t| l.at_ms > t));
        lines.sort_by(|a, b| (a.at_ms, &a.run).cmp(&(b.at_ms, &b.run)));
        let skip = lines.len().saturating_sub(EVENT_LINES);
        Ok(lines.split_off(skip))
    }

    /// Freezes `id` until it is thawed by hand.
    fn freeze(&mut self, id: &RunId) -> Result<Result<Accepted, ControlError>, AgentError> {
        let Some(run) = self.runs.get(id) else { return Ok(Err(not_live(id))) };
        if !matches!(run.state.phase, Phase::Running { .. }) {
            return Ok(Err(ControlError::WrongPhase {
                run: id.clone(),
                phase: run.state.phase.name(),
                allowed: "running",
                action: "frozen",
            }));
        }
        if !self.handle(id, Event::SuspendRequested)? {
            return Ok(Err(ControlError::NotNow { run: id.clone(), action: "frozen" }));
        }
        self.held.insert(id.clone());
        Ok(Ok(Accepted::Freezing { run: id.clone() }))
    }

    /// Lets a run frozen by hand run again, as soon as its CPUs are free.
    fn thaw(&mut self, id: &RunId) -> Result<Result<Accepted, ControlError>, AgentError> {
        if !self.held.contains(id) {
            return Ok(Err(ControlError::NotHeld { run: id.clone() }));
        }
        // On record before it takes effect: an agent restarting before the
        // run resumes must not take it for held again.
        self.record_event(id, &RunEvent::Released, "thawed by operator", self.clock.now())?;
        self.held.remove(id);
        self.schedule()?;
        let run = id.clone();
        Ok(Ok(match self.runs.get(id).map(|r| &r.state.phase) {
            Some(Phase::Suspended { .. }) => Accepted::ResumesWhenFree { run },
            Some(phase) => Accepted::ThawedIn { run, phase: phase.name() },
            None => Accepted::ThawedOver { run },
        }))
    }

    /// Stops `id` gracefully (SIGTERM, its grace period, SIGKILL) and queues
    /// it again with the same attempt, as a requeue preemption does.
    fn requeue(&mut self, id: &RunId) -> Result<Result<Accepted, ControlError>, AgentError> {
        let Some(run) = self.runs.get(id) else { return Ok(Err(not_live(id))) };
        if !matches!(run.state.phase, Phase::Running { .. } | Phase::Suspended { .. }) {
            return Ok(Err(ControlError::WrongPhase {
                run: id.clone(),
                phase: run.state.phase.name(),
                allowed: "running or suspended",
                action: "requeued",
            }));
        }
        if !self.handle(id, Event::RequeueRequested)? {
            return Ok(Err(ControlError::NotNow { run: id.clone(), action: "requeued" }));
        }
        // Queued again, it is placed like any other run: nothing holds it.
        self.held.remove(id);
        Ok(Ok(Accepted::Requeuing { run: id.clone() }))
    }

    /// Stops `id` for good: SIGTERM, its grace period, SIGKILL.
    fn kill(&mut self, id: &RunId) -> Result<Result<Accepted, ControlError>, AgentError> {
        if !self.runs.contains(id) {
            return Ok(Err(not_live(id)));
        }
        let event = Event::StopRequested { reason: StopReason::Requested { by: OPERATOR.into() } };
        if !self.handle(id, event)? {
            return Ok(Err(ControlError::NotNow { run: id.clone(), action: "stopped" }));
        }
        // A run frozen by hand is stopping now; nothing holds it any more.
        self.held.remove(id);
        Ok(Ok(Accepted::Stopping { run: id.clone() }))
    }
}

/// Whether a run, as stored, is frozen by hand and not yet thawed.
pub(super) fn is_held(detail: &RunDetail) -> bool {
    let state = &detail.record.state;
    let Phase::Suspended { by: SuspendedBy::Operator, .. } = &state.phase else { return false };
    !detail.events.iter().any(|e| e.event == RunEvent::Released && e.at >= state.since)
}

fn names(jobs: &[JobName]) -> Vec<String> {
    jobs.iter().map(ToString::to_string).collect()
}

/// The error and what caused it, as one line: the watcher's errors name the
/// path and leave the system's reason to their source.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

fn not_live(id: &RunId) -> ControlError {
    ControlError::NotLive { run: id.clone() }
}
