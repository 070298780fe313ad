//! Requests from the control socket, answered by the main loop.
//!
//! The handlers read through a `ControlView` (the store, the runs, the
//! held set, the clock's now, the telemetry) and change nothing themselves:
//! a request that changes a run comes back as a `ControlOrder`, the event
//! the supervisor feeds the run state machine like any other, and the
//! answer says whether it accepted it. A freeze by hand ([`Event::SuspendRequested`]) is the
//! suspend path with the operator as the cause ([`SuspendedBy::Operator`]), whatever the
//! job's preemption mode: the run keeps its memory, gives up its CPUs, and
//! the scheduling pass does not resume it until it is thawed by hand. The
//! hold needs no record of its own: a run suspended "by operator" with no
//! [`RunEvent::Released`] since is held, which is how a restarted agent
//! finds it held again ([`is_held`]).
//!
//! A reload is the exception to "answered here": it needs the jobs directory
//! read, which the main loop never does itself. The main loop hands it to the
//! watcher task and, when the read comes back, the supervisor's `apply_reload`
//! applies it like any batch and answers with a [`ReloadReport`].

use std::collections::BTreeSet;
use std::path::Path;

use tracing::error;

use crate::api::protocol::{
    Accepted, ControlError, EventLine, FileNotApplied, ReloadReport, Request, Response, RunRow,
    ShownRun,
};
use crate::api::run::{LiveFacts, RunFacts};
use crate::api::{Answer, EventFeed};
use crate::scheduler::{Event, Phase, RunEvent, StopReason, SuspendedBy};
use crate::spec::JobSetDiff;
use crate::store::{RunDetail, RunRecord, RunStore};
use crate::vocab::JobName;
use crate::vocab::RunId;
use crate::vocab::Timestamp;
use crate::watch::WatchError;

use super::arrays::{self, Caps, Submitted};
use super::cron::CronJobs;
use super::error::AgentError;
use super::reconcile::JobDirectory;
use super::runs::RunTable;
use super::telemetry::{LiveUsage, Telemetry};

/// Who asks, in the reasons of what is done by hand.
pub const OPERATOR: &str = SuspendedBy::OPERATOR;

/// Runs of a job `show` lists, newest first.
const SHOW_RUNS: usize = 5;
/// Runs per job whose history `events` looks through.
const EVENT_RUNS: usize = 5;
/// The most entries one `events` answer carries.
const EVENT_LINES: usize = 500;

/// What the request handlers read: the supervisor's state, borrowed for one
/// request. Nothing here changes a run; what a request would change comes
/// back as a [`ControlOrder`].
pub(super) struct ControlView<'a, S: RunStore> {
    pub store: &'a S,
    pub runs: &'a RunTable,
    /// Runs frozen by hand.
    pub held: &'a BTreeSet<RunId>,
    pub jobs: &'a JobDirectory,
    pub cron: &'a CronJobs,
    pub telemetry: Option<&'a Telemetry>,
    pub feed: &'a EventFeed,
    pub now: Timestamp,
    /// Node-pressure protection holds pending runs back.
    pub pressure_holding: bool,
}

/// What the supervisor does for a request: answer at once, or feed the run
/// state machine and answer with what it made of it.
#[derive(Debug)]
pub(super) enum ControlOrder {
    /// Nothing to change (a read, or a refusal).
    Answer(Answer),
    /// Feed `change.event` to its run; see [`Change::answer`].
    Feed(Change),
    /// A run frozen by hand may run again: [`RunEvent::Released`] on record,
    /// the hold dropped, a scheduling pass, then [`thawed`] answers.
    Release { run: RunId },
    /// Fire recurring job `job` now.
    Trigger { job: JobName },
    /// Admit and queue a submitted job (see [`arrays`](super::arrays)).
    Submit(Box<Submitted>),
    /// Stop every run of array (or submitted job) `job` under way.
    KillAll { job: JobName, runs: Vec<RunId> },
}

/// A change a request asks of one run's state machine.
#[derive(Debug)]
pub(super) struct Change {
    pub run: RunId,
    pub event: Event,
    /// Whether the run is held (frozen by hand) once the event is accepted.
    held: bool,
    /// What is being done, for the refusal when the event is not accepted.
    action: &'static str,
    accepted: Accepted,
}

impl Change {
    /// Holds the run, or lets it go, once the state machine took the event.
    pub fn hold(&self, held: &mut BTreeSet<RunId>) {
        if self.held {
            held.insert(self.run.clone());
        } else {
            held.remove(&self.run);
        }
    }

    /// The answer once the state machine took (`true`) or ignored the event.
    pub fn answer(self, taken: bool) -> Answer {
        done(if taken {
            Ok(self.accepted)
        } else {
            Err(ControlError::NotNow { run: self.run, action: self.action })
        })
    }
}

/// The answer to a request that may be accepted or refused.
pub(super) fn done(accepted: Result<Accepted, ControlError>) -> Answer {
    accepted.map(|accepted| Response::Done { message: accepted.to_string() })
}

/// The answer to a thaw, once the pass that follows it has run: `phase` is
/// where run `run` is now (`None`: it is over).
pub(super) fn thawed(run: RunId, phase: Option<&Phase>) -> Accepted {
    match phase {
        Some(Phase::Suspended { .. }) => Accepted::ResumesWhenFree { run },
        Some(phase) => Accepted::ThawedIn { run, phase: phase.name() },
        None => Accepted::ThawedOver { run },
    }
}

impl<S: RunStore> ControlView<'_, S> {
    /// What to do for `request`. Only a store failure is an error of the
    /// agent; everything else, a refusal too, is an answer.
    pub fn order(&self, request: Request) -> Result<ControlOrder, AgentError> {
        let answer = |answer: Answer| Ok(ControlOrder::Answer(answer));
        match request {
            Request::Ps => answer(Ok(Response::Ps { runs: self.ps()? })),
            Request::Show { target } => answer(self.show(&target)?),
            Request::Freeze { run } => Ok(self.freeze(RunId::new(&run))),
            Request::Thaw { run } => Ok(self.thaw(RunId::new(&run))),
            Request::Kill { run } => Ok(self.kill(RunId::new(&run))),
            Request::Requeue { run } => Ok(self.requeue(RunId::new(&run))),
            Request::Trigger { job } => match JobName::parse(&job) {
                Ok(job) => Ok(ControlOrder::Trigger { job }),
                Err(e) => answer(Err(ControlError::InvalidJobName { job, reason: e.to_string() })),
            },
            // A follower's socket task asks for the history alone and
            // follows the feed itself.
            Request::Events { since, follow: _ } => answer(Ok(Response::Events {
                events: self.events(since)?,
                upto: Some(self.feed.last()),
            })),
            // The main loop hands reloads to the watcher task, whose reads
            // come back through `apply_reload`; one arrives here only once
            // that task is gone.
            Request::Reload => answer(Err(ControlError::NotWatched)),
            Request::Submit { file, source, overrides } => {
                Ok(ControlOrder::Submit(Box::new(Submitted {
                    file,
                    source,
                    overrides,
                    at: self.now,
                })))
            }
        }
    }

    /// `diff` is what a reload changed; the files are as they stand now.
    pub fn reload_report(&self, jobs_dir: &Path, diff: &JobSetDiff) -> ReloadReport {
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
        let caps = Caps::of(self.runs);
        let mut rows = Vec::new();
        for record in self.store.active_runs()? {
            let mut row = self.row(&record);
            self.array_facts(&mut row, &record, &caps)?;
            rows.push(row);
        }
        Ok(rows)
    }

    /// Adds what `ps` says of a run of an array (the array, the index, and
    /// that it waits for its array's cap), and that a pending run waits for
    /// the node's memory pressure to end.
    fn array_facts(
        &self,
        row: &mut RunRow,
        record: &RunRecord,
        caps: &Caps,
    ) -> Result<(), AgentError> {
        if let Some(index) = self.store.array_index(&record.id)? {
            row.array = Some(record.job.to_string());
            row.array_index = Some(index);
        }
        if let Some(m) = self.store.cluster_run_of(&record.id)? {
            row.cluster_run = Some(crate::api::protocol::ClusterRunRef {
                run: m.cluster_run,
                attempt: m.attempt,
            });
        }
        row.waiting_for = self.runs.get(&record.id).and_then(|run| {
            arrays::waiting_for(caps, run).or_else(|| {
                let held = self.pressure_holding && matches!(run.state.phase, Phase::Pending);
                held.then(|| "held: memory pressure".to_owned())
            })
        });
        Ok(())
    }

    /// What the agent knows of `record`'s run beyond the record.
    fn live_facts(&self, record: &RunRecord) -> LiveFacts<'_> {
        let live = self.runs.get(&record.id);
        let usage = match (self.telemetry, live) {
            (Some(t), Some(run)) => t.live_usage(&record.id, run, self.now),
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
            reserved_for: live.and_then(|r| r.reserved_for.as_ref()),
        }
    }

    fn row(&self, record: &RunRecord) -> RunRow {
        RunFacts::record(record).with_live(self.live_facts(record)).row(self.now)
    }

    fn show(&self, target: &str) -> Result<Answer, AgentError> {
        if let Some(detail) = self.store.run(&RunId::new(target))? {
            return Ok(Ok(Response::Show { runs: vec![self.view(&detail)] }));
        }
        let not_found = || Ok(Err(ControlError::NoRunOrJob { target: target.to_owned() }));
        let Ok(job) = JobName::parse(target) else {
            return not_found();
        };
        let mut runs = Vec::new();
        for record in self.store.runs_for_job(&job, SHOW_RUNS)? {
            if let Some(detail) = self.store.run(&record.id)? {
                runs.push(self.view(&detail));
            }
        }
        if runs.is_empty() {
            return not_found();
        }
        Ok(Ok(Response::Show { runs }))
    }

    fn view(&self, detail: &RunDetail) -> ShownRun {
        let live = LiveFacts {
            // A job keeps its uid across runs; a listing is not refused
            // for want of it.
            dynamic_uid: self.store.job_uid(&detail.record.job).ok().flatten(),
            ..self.live_facts(&detail.record)
        };
        let mut shown = RunFacts::stored(detail).with_live(live).shown(self.now);
        // Not refused for want of it either.
        let _ = self.array_facts(&mut shown.row, &detail.record, &Caps::of(self.runs));
        shown
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

    /// Freezes `run` until it is thawed by hand.
    fn freeze(&self, run: RunId) -> ControlOrder {
        let Some(live) = self.runs.get(&run) else { return refused(not_live(&run)) };
        if !matches!(live.state.phase, Phase::Running { .. }) {
            return refused(ControlError::WrongPhase {
                phase: live.state.phase.name(),
                run,
                allowed: "running",
                action: "frozen",
            });
        }
        ControlOrder::Feed(Change {
            accepted: Accepted::Freezing { run: run.clone() },
            run,
            event: Event::SuspendRequested,
            held: true,
            action: "frozen",
        })
    }

    /// Lets a run frozen by hand run again, as soon as its CPUs are free.
    fn thaw(&self, run: RunId) -> ControlOrder {
        if !self.held.contains(&run) {
            return refused(ControlError::NotHeld { run });
        }
        ControlOrder::Release { run }
    }

    /// Stops `run` gracefully (SIGTERM, its grace period, SIGKILL) and
    /// queues it again with the same attempt, as a requeue preemption does.
    fn requeue(&self, run: RunId) -> ControlOrder {
        let Some(live) = self.runs.get(&run) else { return refused(not_live(&run)) };
        if !matches!(live.state.phase, Phase::Running { .. } | Phase::Suspended { .. }) {
            return refused(ControlError::WrongPhase {
                phase: live.state.phase.name(),
                run,
                allowed: "running or suspended",
                action: "requeued",
            });
        }
        ControlOrder::Feed(Change {
            accepted: Accepted::Requeuing { run: run.clone() },
            run,
            event: Event::RequeueRequested,
            // Queued again, it is placed like any other run: nothing holds it.
            held: false,
            action: "requeued",
        })
    }

    /// Stops `run` for good: SIGTERM, its grace period, SIGKILL. A job's
    /// name instead of a run's stops every run of that array or submitted
    /// job under way.
    fn kill(&self, run: RunId) -> ControlOrder {
        if !self.runs.contains(&run) {
            if let Ok(job) = JobName::parse(run.as_str()) {
                let members = arrays::members(self.runs, self.cron, &job);
                if !members.is_empty() {
                    return ControlOrder::KillAll { job, runs: members };
                }
            }
            return refused(not_live(&run));
        }
        ControlOrder::Feed(Change {
            accepted: Accepted::Stopping { run: run.clone() },
            run,
            event: Event::StopRequested { reason: StopReason::Requested { by: OPERATOR.into() } },
            // A run frozen by hand is stopping now; nothing holds it any more.
            held: false,
            action: "stopped",
        })
    }
}

/// The refusal of a reload that could not read the jobs directory; it
/// changes nothing.
pub(super) fn reload_failed(e: &WatchError) -> Answer {
    let refused = ControlError::ReloadFailed { cause: with_causes(e) };
    error!("job directory: {refused}");
    Err(refused)
}

fn refused(error: ControlError) -> ControlOrder {
    ControlOrder::Answer(Err(error))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::runs::testing;
    use crate::store::SqliteStore;

    const RUNNING: Phase = Phase::Running { since: Timestamp::EPOCH };

    /// What the handlers read: runs "a-1" (running) and "b-1" (pending),
    /// "h-1" held.
    struct Fixture {
        store: SqliteStore,
        runs: RunTable,
        held: BTreeSet<RunId>,
        jobs: JobDirectory,
        cron: CronJobs,
        feed: EventFeed,
        _dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(&dir.path().join("corral.db")).unwrap();
            let mut runs = RunTable::default();
            runs.insert(RunId::new("a-1"), testing::run("a-1", RUNNING, 50));
            runs.insert(RunId::new("b-1"), testing::run("b-1", Phase::Pending, 50));
            Fixture {
                store,
                runs,
                held: BTreeSet::from([RunId::new("h-1")]),
                jobs: JobDirectory::new(),
                cron: CronJobs::default(),
                feed: EventFeed::new(),
                _dir: dir,
            }
        }

        fn order(&self, request: Request) -> ControlOrder {
            let view = ControlView {
                store: &self.store,
                runs: &self.runs,
                held: &self.held,
                jobs: &self.jobs,
                cron: &self.cron,
                telemetry: None,
                feed: &self.feed,
                now: Timestamp::EPOCH,
                pressure_holding: false,
            };
            view.order(request).unwrap()
        }
    }

    fn refusal(order: ControlOrder) -> ControlError {
        match order {
            ControlOrder::Answer(Err(e)) => e,
            other => panic!("not refused: {other:?}"),
        }
    }

    fn change(order: ControlOrder) -> Change {
        match order {
            ControlOrder::Feed(change) => change,
            other => panic!("no change: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_freeze_of_a_running_run_is_fed_and_holds_it_once_taken() {
        let f = Fixture::new();
        let freeze = change(f.order(Request::Freeze { run: "a-1".into() }));
        assert_eq!(freeze.event, Event::SuspendRequested);
        let mut held = BTreeSet::new();
        freeze.hold(&mut held);
        assert!(held.contains(&RunId::new("a-1")));
        let refused = freeze.answer(false).unwrap_err();
        assert!(matches!(refused, ControlError::NotNow { action: "frozen", .. }));
    }

    #[tokio::test]
    async fn a_freeze_outside_running_or_of_no_live_run_is_refused_without_an_event() {
        let f = Fixture::new();
        let pending = refusal(f.order(Request::Freeze { run: "b-1".into() }));
        assert!(matches!(pending, ControlError::WrongPhase { phase: "pending", .. }));
        let missing = refusal(f.order(Request::Freeze { run: "z-1".into() }));
        assert!(matches!(missing, ControlError::NotLive { .. }));
    }

    #[tokio::test]
    async fn a_kill_or_requeue_lets_go_of_the_hold() {
        let f = Fixture::new();
        for request in [Request::Kill { run: "a-1".into() }, Request::Requeue { run: "a-1".into() }]
        {
            let stop = change(f.order(request));
            let mut held = BTreeSet::from([RunId::new("a-1")]);
            stop.hold(&mut held);
            assert!(held.is_empty());
            assert!(stop.answer(true).is_ok());
        }
        let pending = refusal(f.order(Request::Requeue { run: "b-1".into() }));
        assert!(matches!(pending, ControlError::WrongPhase { action: "requeued", .. }));
    }

    #[tokio::test]
    async fn only_a_held_run_is_thawed() {
        let f = Fixture::new();
        let thaw = f.order(Request::Thaw { run: "h-1".into() });
        assert!(matches!(thaw, ControlOrder::Release { run } if run.as_str() == "h-1"));
        let not_held = refusal(f.order(Request::Thaw { run: "a-1".into() }));
        assert!(matches!(not_held, ControlError::NotHeld { .. }));
    }

    #[tokio::test]
    async fn a_trigger_names_a_valid_job_or_is_refused() {
        let f = Fixture::new();
        let trigger = f.order(Request::Trigger { job: "nightly".into() });
        assert!(matches!(trigger, ControlOrder::Trigger { job } if job.as_str() == "nightly"));
        let bad = refusal(f.order(Request::Trigger { job: "Not A Name".into() }));
        assert!(matches!(bad, ControlError::InvalidJobName { .. }));
    }

    #[test]
    fn a_thaw_answers_where_the_run_is_after_the_pass() {
        let run = RunId::new("h-1");
        let frozen =
            Phase::Suspended { by: SuspendedBy::Operator, frozen: true, oom_pending: false };
        assert!(matches!(thawed(run.clone(), Some(&frozen)), Accepted::ResumesWhenFree { .. }));
        assert!(matches!(thawed(run.clone(), Some(&RUNNING)), Accepted::ThawedIn { .. }));
        assert!(matches!(thawed(run, None), Accepted::ThawedOver { .. }));
    }
}
