//! Requests from the control socket, answered by the main loop.
//!
//! Reads come from the supervisor's runs and the store; changes go through
//! the run state machine like any other event, and the answer says whether
//! it accepted them. A freeze by hand ([`Event::SuspendRequested`]) is the
//! suspend path with the operator as the cause ([`OPERATOR`]), whatever the
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
    EventLine, ExitView, FileNotApplied, ReloadReport, Request, Response, RunRow, RunView,
    TransitionLine,
};
use crate::api::Command;
use crate::placement::CpuGrant;
use crate::scheduler::{Event, ExitStatus, Phase, RunEvent, StopReason};
use crate::spec::JobSetDiff;
use crate::store::{RunDetail, RunRecord, RunStore};
use crate::vocab::JobName;
use crate::vocab::RunId;
use crate::vocab::Timestamp;
use crate::watch::{FileChange, WatchError};

use super::error::AgentError;
use super::runtime::Runtime;
use super::supervisor::Supervisor;

/// The cause recorded for runs frozen by hand.
pub const OPERATOR: &str = "operator";

/// The answer to a reload once the watcher task is gone.
pub const NOT_WATCHED: &str =
    "the jobs directory is no longer watched (see the agent's log); restart the agent";

/// Runs of a job `show` lists, newest first.
const SHOW_RUNS: usize = 5;
/// Runs per job whose history `events` looks through.
const EVENT_RUNS: usize = 5;
/// The most entries one `events` answer carries.
const EVENT_LINES: usize = 500;

impl<R: Runtime, S: RunStore> Supervisor<R, S> {
    /// Answers one request. Only a store failure is an error of the agent;
    /// everything else is an answer.
    pub fn command(&mut self, command: Command) -> Result<(), AgentError> {
        let response = self.answer(command.request)?;
        // The client may have gone; the change stands either way.
        let _ = command.reply.send(response);
        Ok(())
    }

    fn answer(&mut self, request: Request) -> Result<Response, AgentError> {
        Ok(match request {
            Request::Ps => Response::Ps { runs: self.ps()? },
            Request::Show { target } => self.show(&target)?,
            Request::Freeze { run } => done(self.freeze(&RunId::new(&run))?),
            Request::Thaw { run } => done(self.thaw(&RunId::new(&run))?),
            Request::Kill { run } => done(self.kill(&RunId::new(&run))?),
            Request::Requeue { run } => done(self.requeue(&RunId::new(&run))?),
            Request::Trigger { job } => match JobName::parse(&job) {
                Ok(name) => done(self.cron_trigger(&name)?),
                Err(e) => Response::Error { message: format!("{job:?}: {e}") },
            },
            // A follower's socket task asks for the history alone and
            // follows the feed itself.
            Request::Events { since, follow: _ } => {
                Response::Events { events: self.events(since)?, upto: Some(self.feed.last()) }
            }
            // The main loop hands reloads to the watcher task, whose reads
            // come back through `apply_reload`; one arrives here only once
            // that task is gone.
            Request::Reload => Response::Error { message: NOT_WATCHED.into() },
        })
    }

    /// Applies what a reload read, exactly as a batch from the watcher is
    /// applied, and answers with the outcome. A reload that could not read
    /// the directory changes nothing.
    pub fn apply_reload(
        &mut self,
        jobs_dir: &Path,
        read: Result<Vec<FileChange>, WatchError>,
    ) -> Result<Response, AgentError> {
        let changes = match read {
            Ok(changes) => changes,
            Err(e) => {
                let message = format!("{}; the jobs in force stay as they are", with_causes(&e));
                error!("job directory: {message}");
                return Ok(Response::Error { message });
            }
        };
        let diff = self.apply_files(changes)?;
        Ok(Response::Reloaded(self.reload_report(jobs_dir, &diff)))
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

    fn row(&self, record: &RunRecord, now: Timestamp) -> RunRow {
        let live = self.runs.get(&record.id);
        let assignment = live.and_then(|r| r.assignment.as_ref()).or(record.assignment.as_ref());
        let state = live.map_or(&record.state, |r| &r.state);
        let next_fire = self.cron.next_fire(&record.job);
        let usage = self.live_usage(&record.id, now);
        let mut phase = state.phase.name().to_owned();
        if self.held.contains(&record.id) {
            phase.push_str(" (by operator)");
        }
        RunRow {
            job: record.job.to_string(),
            run: record.id.to_string(),
            state: phase,
            priority: live.map(|r| r.meta.priority),
            cpus: match assignment.map(|a| &a.cpus) {
                Some(CpuGrant::Exclusive(set)) => set.to_string(),
                Some(CpuGrant::Shared) => "shared".into(),
                None => String::new(),
            },
            numa: assignment.map(|a| a.mems.to_string()).unwrap_or_default(),
            memory_limit_bytes: state.memory_limit.map(|b| b.get()),
            cpu_percent: usage.cpu_percent,
            memory_bytes: usage.memory_bytes,
            next_fire: next_fire.map(|t| t.to_rfc3339()),
            next_fire_in_seconds: next_fire.map(|t| {
                let ms = t.timestamp_millis().saturating_sub(now.as_millis()).max(0);
                u64::try_from(ms / 1000).unwrap_or(0)
            }),
            age_seconds: now.since(record.created_at).as_secs(),
            created_at: record.created_at.as_millis(),
        }
    }

    fn show(&self, target: &str) -> Result<Response, AgentError> {
        let now = self.clock.now();
        if let Some(detail) = self.store.run(&RunId::new(target))? {
            return Ok(Response::Show { runs: vec![self.view(&detail, now)] });
        }
        let Ok(job) = JobName::parse(target) else {
            return Ok(Response::Error { message: format!("no run or job named {target:?}") });
        };
        let mut runs = Vec::new();
        for record in self.store.runs_for_job(&job, SHOW_RUNS)? {
            if let Some(detail) = self.store.run(&record.id)? {
                runs.push(self.view(&detail, now));
            }
        }
        if runs.is_empty() {
            return Ok(Response::Error { message: format!("no run or job named {target:?}") });
        }
        Ok(Response::Show { runs })
    }

    fn view(&self, detail: &RunDetail, now: Timestamp) -> RunView {
        let record = &detail.record;
        let launch =
            self.runs.get(&record.id).and_then(|r| r.launch.as_ref()).or(record.launch.as_ref());
        RunView {
            row: self.row(record, now),
            attempt: record.state.attempt,
            run_dir: launch.map(|l| l.run_dir.display().to_string()),
            pid: launch.map(|l| l.init_pid),
            // A job keeps its uid across runs; a listing is not refused
            // for want of it.
            dynamic_uid: self.store.job_uid(&record.job).ok().flatten(),
            exit: record.exit.as_ref().map(|e| ExitView {
                status: e.status.to_string(),
                exit_code: match e.status {
                    ExitStatus::Code(c) => Some(c),
                    ExitStatus::Signal(_) => None,
                },
                signal: match e.status {
                    ExitStatus::Signal(s) => Some(s),
                    ExitStatus::Code(_) => None,
                },
                at: e.exited_at.to_string(),
                peak_memory_bytes: e.peak_memory.map(|b| b.get()),
                oom_kills: e.oom_kills,
                cpu_seconds: e.cpu_seconds,
            }),
            transitions: detail
                .transitions
                .iter()
                .map(|t| TransitionLine {
                    at: t.at.to_string(),
                    from: t.from.clone(),
                    to: t.to.clone(),
                    reason: t.reason.clone(),
                })
                .collect(),
            events: history(detail).into_iter().filter(|e| e.kind != "transition").collect(),
        }
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
                    lines.extend(history(&detail));
                }
            }
        }
        lines.retain(|l| since.is_none_or(|t| l.at_ms > t));
        lines.sort_by(|a, b| (a.at_ms, &a.run).cmp(&(b.at_ms, &b.run)));
        let skip = lines.len().saturating_sub(EVENT_LINES);
        Ok(lines.split_off(skip))
    }

    /// Freezes `id` until it is thawed by hand.
    fn freeze(&mut self, id: &RunId) -> Result<Result<String, String>, AgentError> {
        let Some(run) = self.runs.get(id) else { return Ok(Err(not_live(id))) };
        if !matches!(run.state.phase, Phase::Running { .. }) {
            return Ok(Err(format!(
                "{id} is {}; only a running run can be frozen",
                run.state.phase.name()
            )));
        }
        if !self.handle(id, Event::SuspendRequested { by: RunId::new(OPERATOR) })? {
            return Ok(Err(format!("{id} cannot be frozen now")));
        }
        self.held.insert(id.clone());
        Ok(Ok(format!("{id} is being frozen by operator; `corral thaw {id}` lets it run again")))
    }

    /// Lets a run frozen by hand run again, as soon as its CPUs are free.
    fn thaw(&mut self, id: &RunId) -> Result<Result<String, String>, AgentError> {
        if !self.held.contains(id) {
            return Ok(Err(format!("{id} was not frozen by an operator")));
        }
        // On record before it takes effect: an agent restarting before the
        // run resumes must not take it for held again.
        self.record_event(id, &RunEvent::Released, "thawed by operator", self.clock.now())?;
        self.held.remove(id);
        self.schedule()?;
        Ok(Ok(match self.runs.get(id).map(|r| &r.state.phase) {
            Some(Phase::Suspended { .. }) => {
                format!("{id} resumes as soon as CPUs and memory for it are free")
            }
            Some(phase) => format!("{id} is {}", phase.name()),
            None => format!("{id} is over"),
        }))
    }

    /// Stops `id` gracefully (SIGTERM, its grace period, SIGKILL) and queues
    /// it again with the same attempt, as a requeue preemption does.
    fn requeue(&mut self, id: &RunId) -> Result<Result<String, String>, AgentError> {
        let Some(run) = self.runs.get(id) else { return Ok(Err(not_live(id))) };
        if !matches!(run.state.phase, Phase::Running { .. } | Phase::Suspended { .. }) {
            return Ok(Err(format!(
                "{id} is {}; only a running or suspended run can be requeued",
                run.state.phase.name()
            )));
        }
        if !self.handle(id, Event::RequeueRequested { by: RunId::new(OPERATOR) })? {
            return Ok(Err(format!("{id} cannot be requeued now")));
        }
        // Queued again, it is placed like any other run: nothing holds it.
        self.held.remove(id);
        Ok(Ok(format!("{id} is being stopped and will be queued again")))
    }

    /// Stops `id` for good: SIGTERM, its grace period, SIGKILL.
    fn kill(&mut self, id: &RunId) -> Result<Result<String, String>, AgentError> {
        if !self.runs.contains_key(id) {
            return Ok(Err(not_live(id)));
        }
        let event = Event::StopRequested { reason: StopReason::Requested { by: OPERATOR.into() } };
        if !self.handle(id, event)? {
            return Ok(Err(format!("{id} cannot be stopped now")));
        }
        // A run frozen by hand is stopping now; nothing holds it any more.
        self.held.remove(id);
        Ok(Ok(format!("{id} is being stopped")))
    }
}

/// Whether a run, as stored, is frozen by hand and not yet thawed.
pub(super) fn is_held(detail: &RunDetail) -> bool {
    let state = &detail.record.state;
    let Phase::Suspended { by, .. } = &state.phase else { return false };
    by.as_str() == OPERATOR
        && !detail.events.iter().any(|e| e.event == RunEvent::Released && e.at >= state.since)
}

fn done(outcome: Result<String, String>) -> Response {
    match outcome {
        Ok(message) => Response::Done { message },
        Err(message) => Response::Error { message },
    }
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

fn not_live(id: &RunId) -> String {
    format!("no run {id} under way")
}

/// A run's transitions and events as event lines.
fn history(detail: &RunDetail) -> Vec<EventLine> {
    let record = &detail.record;
    let (job, run) = (record.job.as_str(), record.id.as_str());
    let mut lines: Vec<EventLine> = detail
        .transitions
        .iter()
        .map(|t| EventLine::transition(t.at, job, run, t.from.as_deref(), &t.to, &t.reason))
        .collect();
    lines.extend(
        detail
            .events
            .iter()
            .map(|e| EventLine::run_event(e.at, job, run, e.event.kind(), &e.reason)),
    );
    lines.sort_by_key(|l| l.at_ms);
    lines
}
