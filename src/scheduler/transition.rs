//! The run state machine: `transition(state, event, policy, moment)`.
//!
//! Pure. The shell feeds it events, records the result (state, time, reason)
//! in the store and then executes the actions in order. Events that only
//! confirm or repeat what is already known (a timer that fired after its
//! deadline moved, a late `Frozen`) produce the same state and no actions, so
//! the shell never has to cancel timers or order kernel notifications
//! perfectly. Events that contradict the state are [`InvalidTransition`]s.

use std::time::Duration;

use crate::placement::Assignment;
use crate::vocab::Bytes;
use crate::vocab::RunId;

use super::action::{Action, RunEvent, Timer};
use super::backoff::{backoff_delay, Jitter};
use super::error::InvalidTransition;
use super::event::{Event, ExitStatus};
use super::policy::{NoRestart, OomPolicy, Policy, PreemptionMode};
use super::state::{
    FailReason, Outcome, Phase, RequeuedBy, RunState, StopIntent, StopReason, SuspendedBy,
};
use crate::vocab::Timestamp;

/// What the shell samples from the world for one transition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moment {
    pub now: Timestamp,
    /// Used only when a restart is scheduled.
    pub jitter: Jitter,
    /// Memory not yet charged on the NUMA nodes the run holds: the room a
    /// growth in place must fit in. `None` where it is not known (a run
    /// without a placement), which sets no bound.
    pub memory_free: Option<Bytes>,
}

impl Moment {
    pub fn new(now: Timestamp, jitter: Jitter) -> Moment {
        Moment { now, jitter, memory_free: None }
    }

    /// The same moment, with `free` bytes of room on the run's nodes.
    pub fn with_memory_free(self, free: Bytes) -> Moment {
        Moment { memory_free: Some(free), ..self }
    }
}

/// The decision: the next state, what to do, and why (for the run's history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub next: RunState,
    pub actions: Vec<Action>,
    pub reason: String,
}

impl Transition {
    /// The event changed nothing: same state, no actions. The shell may skip
    /// recording it.
    pub fn is_noop(&self, from: &RunState) -> bool {
        self.actions.is_empty() && self.next == *from
    }
}

/// Decides what `event` means for a run in `state` under `policy` (its
/// job's policy; a run that is finishing after its job was removed narrows
/// it, see [`RunState::policy_in_force`]).
pub fn transition(
    state: &RunState,
    event: &Event,
    policy: &Policy,
    moment: Moment,
) -> Result<Transition, InvalidTransition> {
    let policy = state.policy_in_force(policy);
    let step = Step {
        from: state,
        policy: &policy,
        now: moment.now,
        jitter: moment.jitter,
        memory_free: moment.memory_free,
        event,
    };
    if state.is_terminal() {
        return step.invalid("the run is over; a new run starts from a new record");
    }
    use Event as E;
    use Phase as P;
    if let E::JobRemoved { finish } = event {
        if *finish && state.phase.may_have_processes() {
            return Ok(step.left_to_finish());
        }
        // Stopped the way any stop for good is, from whatever phase.
        let stop = E::StopRequested { reason: StopReason::JobRemoved };
        return transition(state, &stop, &policy, moment);
    }
    match (&state.phase, event) {
        // Timers are never cancelled; one that no longer applies is stale.
        (_, E::TimeoutElapsed) if !matches!(state.phase, P::Running { .. }) => step.stale_timer(),
        (_, E::GraceElapsed) if !matches!(state.phase, P::Stopping { .. }) => step.stale_timer(),
        (_, E::BackoffElapsed) if !matches!(state.phase, P::BackoffWaiting { .. }) => {
            step.stale_timer()
        }
        // Due while frozen: the clock of the attempt stopped, and the resume
        // arms it again from the running time left.
        (_, E::TimeoutSignalDue) if !matches!(state.phase, P::Running { .. }) => step.stale_timer(),

        (_, E::JobChanged { memory_hard }) => Ok(step.job_changed(*memory_hard)),

        (P::Blocked { .. }, E::Released) => {
            let mut next = state.clone();
            next.phase = P::Pending;
            Ok(step.to(
                next,
                vec![Action::Enqueue],
                "every job it comes after ended as asked; queued".into(),
            ))
        }
        (P::Blocked { .. }, E::DependencyFailed { detail }) => Ok(step.dependency_failed(detail)),
        (P::Blocked { .. }, E::StopRequested { reason }) => {
            Ok(step.killed(state.clone(), reason.clone(), vec![]))
        }
        (P::Blocked { after }, E::AdoptedAfterRestart) => Ok(step
            .same(vec![], &format!("re-adopted after agent restart; still waiting for {after}"))),
        (P::Blocked { after }, E::AfterChanged { after: now }) => {
            if after == now {
                return Ok(step.noop("waits for the same jobs"));
            }
            let mut next = state.clone();
            next.phase = P::Blocked { after: now.clone() };
            Ok(step.to(next, vec![], format!("job changed: now waits for {now}")))
        }
        (_, E::AfterChanged { .. }) => Ok(step.noop("only a blocked run waits for other jobs")),
        (_, E::Released | E::DependencyFailed { .. }) => {
            step.invalid("the run is not waiting for the jobs it comes after")
        }

        (P::Pending, E::Placed(assignment)) => Ok(step.placed(assignment)),
        (P::Pending, E::StopRequested { reason }) => {
            Ok(step.killed(state.clone(), reason.clone(), vec![Action::Dequeue]))
        }
        (P::Pending, E::Refused { detail }) => Ok(step.refused(detail)),
        (P::Pending, E::AdoptedAfterRestart) => {
            Ok(step.same(vec![Action::Enqueue], "re-queued after agent restart"))
        }

        (P::Placed, E::Launched { pid, .. }) => Ok(step.launched(*pid)),
        (P::Placed, E::LaunchFailed { detail }) => Ok(step.end_attempt(
            state.clone(),
            Ending::Failed(FailReason::LaunchFailed { detail: detail.clone() }),
            vec![],
        )),
        (P::Placed, E::StopRequested { reason }) => Ok(step.stop_before_launch(reason)),
        (P::Placed, E::NeverStarted { detail }) => {
            // The placement time names the run directory: a fresh one is
            // later than the spent one even if the clock is not.
            let mut next = state.clone();
            next.since = step.now.max(state.since.plus(Duration::from_millis(1)));
            Ok(Transition { next, actions: vec![], reason: format!("{detail}; starting it again") })
        }
        (P::Placed, E::AdoptedAfterRestart) => step.invalid(
            "the launch was under way when the agent stopped; report Launched or LaunchFailed \
             from the run's launch record instead",
        ),

        (P::Running { .. } | P::Suspended { .. }, E::Exited(status)) => {
            Ok(step.exited(state.clone(), *status, None))
        }
        (P::OomPaused { .. }, E::Exited(status)) => {
            Ok(step.exited(state.clone(), *status, Some(Ending::Oom)))
        }
        (P::Running { .. } | P::Suspended { .. } | P::OomPaused { .. }, E::Lost { detail }) => {
            Ok(step.end_attempt(
                state.clone(),
                Ending::Failed(FailReason::Lost { detail: detail.clone() }),
                vec![],
            ))
        }
        (P::Running { .. } | P::Suspended { .. } | P::OomPaused { .. }, E::OomKilled) => {
            Ok(step.oom_killed())
        }
        (
            P::Running { .. } | P::Suspended { .. } | P::OomPaused { .. },
            E::StopRequested { reason },
        ) => Ok(step.begin_stop(StopIntent::Stop { reason: reason.clone() }, vec![])),
        // Running on without memory notifications would leave a run at its
        // limit unhandled: paused there for good (v1) or killed unexplained.
        (
            P::Running { .. } | P::Suspended { .. } | P::OomPaused { .. },
            E::WatchFailed { detail },
        ) => Ok(step.begin_stop(
            StopIntent::Stop { reason: StopReason::Unwatched { detail: detail.clone() } },
            vec![],
        )),

        (P::Running { .. }, E::OomNotified) => Ok(step.oom_notified()),
        (P::Running { .. }, E::PreemptSuspend { by }) => step.preempt_suspend(by),
        (P::Running { .. }, E::SuspendRequested) => Ok(step.suspend_requested()),
        (P::Running { .. } | P::Suspended { .. }, E::PreemptRequeue { by }) => {
            step.preempt_requeue(by)
        }
        (P::Running { .. }, E::FenceFreeze { cause }) => Ok(step.fence_freeze(cause)),
        (
            P::Suspended { by: SuspendedBy::Run(_) | SuspendedBy::Pressure, .. },
            E::FenceFreeze { .. },
        ) => {
            // Already frozen (or being frozen): now for the fence, so that
            // the end of the other cause does not thaw it.
            let mut next = state.clone();
            if let P::Suspended { by, .. } = &mut next.phase {
                *by = SuspendedBy::Fence;
            }
            Ok(step.to(
                next,
                vec![],
                "kept frozen: this node cannot renew its cluster lease".into(),
            ))
        }
        (P::Suspended { .. } | P::OomPaused { .. }, E::Superseded { cluster_run })
        | (P::Running { .. }, E::Superseded { cluster_run }) => Ok(step.superseded(cluster_run)),
        (P::Stopping { .. }, E::Superseded { .. }) => Ok(step.noop("already stopping")),
        (_, E::FenceFreeze { .. }) => Ok(step.noop("not running: nothing to fence")),
        (_, E::Superseded { .. }) => step.invalid("the run has no process"),
        (P::Running { .. }, E::PressureFreeze { cause }) => step.pressure_freeze(cause),
        (P::Suspended { by: SuspendedBy::Pressure, .. }, E::PressureRequeue { cause }) => {
            Ok(step.pressure_requeue(cause))
        }
        (P::Running { .. } | P::Suspended { .. }, E::RequeueRequested) => {
            Ok(step.begin_stop(StopIntent::Requeue { by: SuspendedBy::Operator }, vec![]))
        }
        (P::Running { .. }, E::TimeoutElapsed) => Ok(step.timeout_elapsed()),
        (P::Running { .. }, E::TimeoutSignalDue) => Ok(step.timeout_signal_due()),
        (P::Running { .. }, E::Frozen | E::Thawed) => Ok(step.noop("stale freezer report")),
        (P::Running { .. }, E::AdoptedAfterRestart) => {
            let mut actions = vec![Action::Watch];
            actions.extend(step.arm_deadline(state));
            Ok(step.same(actions, "re-adopted after agent restart"))
        }

        (P::Suspended { by, frozen, oom_pending }, E::Frozen) => {
            if *frozen {
                return Ok(step.noop("already frozen"));
            }
            let mut next = state.clone();
            next.phase = P::Suspended { by: by.clone(), frozen: true, oom_pending: *oom_pending };
            Ok(step.to(next, vec![Action::YieldCpus], format!("frozen for {by}")))
        }
        (P::Suspended { .. }, E::Thawed) => Ok(step.noop("stale freezer report")),
        (
            P::Suspended { .. },
            E::PreemptSuspend { .. } | E::SuspendRequested | E::PressureFreeze { .. },
        ) => Ok(step.noop("already suspended")),
        (P::Suspended { .. }, E::PressureRequeue { .. }) => {
            step.invalid("the run is not frozen for pressure")
        }
        (P::Suspended { by, oom_pending, .. }, E::Resume) => Ok(step.resume(by, *oom_pending)),
        (P::Suspended { by, frozen, .. }, E::OomNotified) => {
            let mut next = state.clone();
            next.phase = P::Suspended { by: by.clone(), frozen: *frozen, oom_pending: true };
            let limit = state.memory_limit;
            Ok(step.to(
                next,
                vec![Action::RecordEvent(RunEvent::Oom { limit })],
                "reached its memory limit while suspended; the OOM policy runs at resume".into(),
            ))
        }
        (P::Suspended { .. }, E::AdoptedAfterRestart) => Ok(step.same(
            vec![Action::Watch, Action::Freeze],
            "re-adopted after agent restart; kept frozen",
        )),

        (P::OomPaused { frozen: false }, E::Frozen) => Ok(step.decide_oom(state.clone())),
        (P::OomPaused { frozen: true }, E::Frozen) => Ok(step.noop("already frozen")),
        (P::OomPaused { .. }, E::OomNotified | E::Thawed) => {
            Ok(step.noop("already paused at the memory limit"))
        }
        (P::OomPaused { .. }, E::AdoptedAfterRestart) => {
            // The freeze may not have happened before the agent stopped:
            // freeze again (idempotent) and decide once the kernel confirms.
            let mut next = state.clone();
            next.phase = P::OomPaused { frozen: false };
            Ok(step.to(
                next,
                vec![Action::Watch, Action::Freeze],
                "re-adopted after agent restart; OOM policy runs once frozen".into(),
            ))
        }

        (P::Stopping { intent, .. }, E::Exited(status)) => {
            let ending = Ending::after_stop(intent);
            Ok(step.exited(state.clone(), *status, Some(ending)))
        }
        (P::Stopping { intent, .. }, E::Lost { .. } | E::LaunchFailed { .. }) => {
            Ok(step.end_attempt(state.clone(), Ending::after_stop(intent), vec![]))
        }
        (P::Stopping { escalated, .. }, E::Launched { .. }) => Ok(if *escalated {
            // The kill may have reached the cgroup before the launch put a
            // process in it: kill again.
            step.same(vec![Action::KillAll], "launched while being stopped; killing again")
        } else {
            step.same(vec![Action::Terminate], "launched while being stopped")
        }),
        (P::Stopping { intent, deadline, escalated }, E::GraceElapsed) => {
            if *escalated {
                Ok(step.noop("already killed"))
            } else if step.now < *deadline {
                Ok(step.noop("stop grace not over yet"))
            } else {
                Ok(step.escalate(intent, *deadline, "stop grace over"))
            }
        }
        (P::Stopping { intent, deadline, escalated: false }, E::OomNotified) => {
            Ok(step.escalate(intent, *deadline, "reached its memory limit while stopping"))
        }
        (P::Stopping { .. }, E::WatchFailed { .. }) => Ok(step.noop("already stopping")),
        // The kernel kills a job's processes one by one (v2: all of them,
        // `memory.oom.group`), each counted: one kill on record is the news.
        (P::Stopping { .. }, E::OomKilled) if state.oom_killed => {
            Ok(step.noop("OOM kill already on record"))
        }
        (P::Stopping { .. }, E::OomKilled) => {
            let mut next = state.clone();
            next.oom_killed = true;
            Ok(step.to(
                next,
                vec![Action::RecordEvent(RunEvent::OomKilled)],
                "OOM kill while stopping".into(),
            ))
        }
        (P::Stopping { intent, deadline, escalated }, E::StopRequested { reason }) => {
            if matches!(intent, StopIntent::Stop { .. }) {
                return Ok(step.noop("already stopping for good"));
            }
            let mut next = state.clone();
            next.phase = P::Stopping {
                intent: StopIntent::Stop { reason: reason.clone() },
                deadline: *deadline,
                escalated: *escalated,
            };
            Ok(step.to(next, vec![], format!("stopping for good: {reason}")))
        }
        (
            P::Stopping { .. },
            E::OomNotified
            | E::Frozen
            | E::Thawed
            | E::Resume
            | E::PreemptSuspend { .. }
            | E::SuspendRequested
            | E::PreemptRequeue { .. }
            | E::RequeueRequested
            | E::PressureFreeze { .. }
            | E::PressureRequeue { .. },
        ) => Ok(step.noop("already stopping")),
        (P::Stopping { deadline, escalated, .. }, E::AdoptedAfterRestart) => {
            let mut actions = vec![Action::Watch];
            if *escalated {
                actions.push(Action::KillAll);
            } else {
                actions.push(Action::ArmTimer { timer: Timer::StopGrace, at: *deadline });
            }
            Ok(step.same(actions, "re-adopted after agent restart; still stopping"))
        }

        (P::BackoffWaiting { until, .. }, E::BackoffElapsed) => {
            if step.now < *until {
                return Ok(step.noop("backoff not over yet"));
            }
            let mut next = state.clone();
            next.phase = P::Pending;
            let reason = format!("backoff over; attempt {} queued", next.attempt);
            Ok(step.to(next, vec![Action::Enqueue], reason))
        }
        (P::BackoffWaiting { .. }, E::StopRequested { reason }) => {
            Ok(step.killed(state.clone(), reason.clone(), vec![]))
        }
        (P::BackoffWaiting { until, .. }, E::AdoptedAfterRestart) => Ok(step.same(
            vec![Action::ArmTimer { timer: Timer::Backoff, at: *until }],
            "re-adopted after agent restart; waiting out the backoff",
        )),

        (_, E::PreemptSuspend { .. } | E::PreemptRequeue { .. }) => {
            step.invalid("only a running run can be preempted")
        }
        (_, E::SuspendRequested | E::PressureFreeze { .. }) => {
            step.invalid("only a running run can be frozen")
        }
        (_, E::PressureRequeue { .. }) => step.invalid("the run is not frozen for pressure"),
        (_, E::RequeueRequested) => step.invalid("only a running or suspended run can be requeued"),
        (_, E::Exited(_) | E::Lost { .. }) => step.invalid("the run has no process"),
        (_, E::Resume) => step.invalid("the run is not suspended"),
        (_, E::Launched { .. } | E::LaunchFailed { .. } | E::NeverStarted { .. }) => {
            step.invalid("no launch is under way")
        }
        (_, E::Placed(_)) => step.invalid("the run is not waiting for placement"),
        (_, E::Refused { .. }) => step.invalid("the run is not waiting for placement"),
        (_, E::Frozen | E::Thawed | E::OomNotified | E::OomKilled | E::WatchFailed { .. }) => {
            step.invalid("the run has no cgroup")
        }
        (_, E::StopRequested { .. } | E::JobRemoved { .. } | E::AdoptedAfterRestart) => {
            step.invalid("not handled in this phase")
        }
        (_, E::TimeoutElapsed | E::GraceElapsed | E::BackoffElapsed | E::TimeoutSignalDue) => {
            step.stale_timer()
        }
    }
}

/// How an attempt ends, before the policies have their say.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    Succeeded,
    Failed(FailReason),
    /// Out of memory: the OOM policy decides between requeue and failure.
    Oom,
    Killed(StopReason),
    /// Preempted by requeue, or requeued by hand.
    Requeue {
        by: RequeuedBy,
    },
}

impl Ending {
    fn after_stop(intent: &StopIntent) -> Ending {
        match intent {
            StopIntent::Stop { reason } => Ending::Killed(reason.clone()),
            StopIntent::Timeout => Ending::Failed(FailReason::Timeout),
            StopIntent::Requeue { by } => Ending::Requeue { by: by.clone() },
            StopIntent::Oom => Ending::Oom,
        }
    }
}

/// One decision in the making.
struct Step<'a> {
    from: &'a RunState,
    policy: &'a Policy,
    now: Timestamp,
    jitter: Jitter,
    /// Room for a growth in place, where known.
    memory_free: Option<Bytes>,
    event: &'a Event,
}

impl Step<'_> {
    fn invalid(&self, why: &str) -> Result<Transition, InvalidTransition> {
        Err(InvalidTransition {
            phase: self.from.phase.name(),
            event: self.event.name(),
            why: why.to_owned(),
        })
    }

    fn noop(&self, why: &str) -> Transition {
        Transition {
            next: self.from.clone(),
            actions: vec![],
            reason: format!("{}: {why}", self.event.name()),
        }
    }

    fn stale_timer(&self) -> Result<Transition, InvalidTransition> {
        Ok(self.noop("stale timer"))
    }

    /// Same state, some actions.
    fn same(&self, actions: Vec<Action>, reason: &str) -> Transition {
        Transition { next: self.from.clone(), actions, reason: reason.to_owned() }
    }

    /// Into `next`, stamping the phase entry time when the phase changes.
    fn to(&self, mut next: RunState, actions: Vec<Action>, reason: String) -> Transition {
        if next.phase.name() != self.from.phase.name() {
            next.since = self.now;
        }
        Transition { next, actions, reason }
    }

    /// `state` with the current running stretch folded into `active`.
    fn paused(&self) -> RunState {
        let mut next = self.from.clone();
        next.active = self.from.active_at(self.now);
        next
    }

    /// The attempt's timers that count running time: the active deadline,
    /// and the `timeout_signal` ahead of it until that has been sent.
    fn arm_deadline(&self, state: &RunState) -> Vec<Action> {
        let Some(timeout) = self.policy.timeout else { return vec![] };
        let ran = state.active_at(self.now);
        let at = |point: Duration| self.now.plus(point.saturating_sub(ran));
        let mut actions = vec![Action::ArmTimer { timer: Timer::ActiveDeadline, at: at(timeout) }];
        if let Some(warning) = self.policy.timeout_signal.filter(|_| !state.timeout_signal_sent) {
            let due = warning.due_after(timeout);
            actions.push(Action::ArmTimer { timer: Timer::TimeoutSignal, at: at(due) });
        }
        actions
    }

    /// `state` in `Running` from now, with the deadline timer armed.
    fn running(&self, mut next: RunState, mut actions: Vec<Action>, reason: String) -> Transition {
        next.phase = Phase::Running { since: self.now };
        actions.extend(self.arm_deadline(&next));
        self.to(next, actions, reason)
    }

    fn placed(&self, assignment: &Assignment) -> Transition {
        let mut next = self.from.clone();
        next.phase = Phase::Placed;
        let launch =
            Action::Launch { assignment: assignment.clone(), memory_limit: self.from.memory_limit };
        let cpus = match assignment.exclusive_cpus() {
            Some(cpus) => format!("cpus {cpus}"),
            None => "the shared pool".to_owned(),
        };
        self.to(next, vec![launch], format!("placed on {cpus}, mems {}", assignment.mems))
    }

    /// Failed for good before it was placed: nothing ran, nothing is held.
    fn refused(&self, detail: &str) -> Transition {
        let mut next = self.from.clone();
        let reason = FailReason::LaunchFailed { detail: detail.to_owned() };
        let text = format!("failed: {reason}; not restarted, it would be refused again");
        next.phase = Phase::Failed { reason: reason.clone() };
        let actions = vec![Action::Dequeue, Action::RecordOutcome(Outcome::Failed { reason })];
        self.to(next, actions, text)
    }

    /// A job the run comes after can no longer end as asked. No restart:
    /// the run never started, and a new attempt would wait for the same
    /// ended run.
    fn dependency_failed(&self, detail: &str) -> Transition {
        let mut next = self.from.clone();
        let reason = FailReason::Dependency { detail: detail.to_owned() };
        let text = format!("failed: {reason}; it never started");
        next.phase = Phase::Failed { reason: reason.clone() };
        self.to(next, vec![Action::RecordOutcome(Outcome::Failed { reason })], text)
    }

    fn launched(&self, pid: u32) -> Transition {
        let reason = format!("attempt {} running as pid {pid}", self.from.attempt);
        self.running(self.from.clone(), vec![], reason)
    }

    fn stop_before_launch(&self, reason: &StopReason) -> Transition {
        // No pid to signal yet: kill whatever is in the cgroup, and again
        // when the launch reports in.
        let mut next = self.from.clone();
        next.phase = Phase::Stopping {
            intent: StopIntent::Stop { reason: reason.clone() },
            deadline: self.now,
            escalated: true,
        };
        self.to(next, vec![Action::KillAll], format!("stopping during launch: {reason}"))
    }

    /// SIGTERM now, SIGKILL after the grace period.
    fn begin_stop(&self, intent: StopIntent, mut actions: Vec<Action>) -> Transition {
        let frozen = matches!(self.from.phase, Phase::Suspended { .. } | Phase::OomPaused { .. });
        let mut next = self.paused();
        let deadline = self.now.plus(self.policy.stop_grace);
        let reason = match &intent {
            StopIntent::Stop { reason } => format!("stopping: {reason}"),
            StopIntent::Timeout => "stopping: active deadline exceeded".to_owned(),
            StopIntent::Requeue { by } => format!("stopping to requeue for {by}"),
            StopIntent::Oom => "stopping: out of memory".to_owned(),
        };
        next.phase = Phase::Stopping { intent, deadline, escalated: false };
        actions.push(Action::Terminate);
        if frozen {
            // The signal stays pending until the task runs again.
            actions.push(Action::Thaw);
        }
        actions.push(Action::ArmTimer { timer: Timer::StopGrace, at: deadline });
        self.to(next, actions, reason)
    }

    fn escalate(&self, intent: &StopIntent, deadline: Timestamp, why: &str) -> Transition {
        let mut next = self.from.clone();
        next.phase = Phase::Stopping { intent: intent.clone(), deadline, escalated: true };
        self.to(next, vec![Action::KillAll], format!("{why}; killing every process"))
    }

    /// The run takes its job's new version. The hard limit is raised for a
    /// run under way, never lowered (that could push a running job straight
    /// into OOM); a run not started yet takes the new value as it is. A run
    /// that was finishing after its job was removed is the job's run again.
    fn job_changed(&self, memory_hard: Option<Bytes>) -> Transition {
        let from = self.from;
        let not_started = matches!(from.phase, Phase::Pending | Phase::Blocked { .. })
            && from.attempt == 1
            && from.oom_requeues == 0;
        let limit = if not_started {
            memory_hard
        } else {
            match (from.memory_limit, memory_hard) {
                (Some(old), Some(new)) => Some(old.max(new)),
                (old, _) => old,
            }
        };
        let mut next = from.clone();
        next.memory_limit = limit;
        next.finishing = false;
        let mut actions = Vec::new();
        if from.phase.may_have_processes() {
            actions.push(match limit {
                Some(raised) if limit != from.memory_limit => Action::SetMemoryLimit(raised),
                _ => Action::UpdateSettings,
            });
        }
        if let Phase::Running { .. } = from.phase {
            // The new version's timeout, less the running time already spent.
            actions.extend(self.arm_deadline(from));
        }
        let reason = if limit != from.memory_limit {
            let limit = limit.map_or("none".to_owned(), |l| l.to_string());
            format!("job changed: hard memory limit {limit} for this run")
        } else {
            "job changed: the run takes the new version".to_owned()
        };
        Transition { next, actions, reason }
    }

    /// `on_removal: finish`: the attempt under way runs to its end, and
    /// nothing follows it (see [`RunState::policy_in_force`]).
    fn left_to_finish(&self) -> Transition {
        if self.from.finishing {
            return self.noop("already finishing");
        }
        let mut next = self.from.clone();
        next.finishing = true;
        Transition {
            next,
            actions: vec![],
            reason: "job removed: its run is left to finish (on_removal: finish)".into(),
        }
    }

    fn timeout_elapsed(&self) -> Transition {
        let Some(timeout) = self.policy.timeout else {
            return self.noop("no timeout set");
        };
        let ran = self.from.active_at(self.now);
        if ran < timeout {
            return self.noop("active deadline not reached yet");
        }
        self.begin_stop(StopIntent::Timeout, vec![])
    }

    /// Once per attempt, `before` ahead of the timeout in running time: the
    /// fact is stored with the state before the signal goes out, so a
    /// restarted agent does not send it again (and one stopped between the
    /// two does not send it at all: at most once).
    fn timeout_signal_due(&self) -> Transition {
        let (Some(timeout), Some(warning)) = (self.policy.timeout, self.policy.timeout_signal)
        else {
            return self.noop("no timeout_signal set");
        };
        if self.from.timeout_signal_sent {
            return self.noop("timeout_signal already sent for this attempt");
        }
        if self.from.active_at(self.now) < warning.due_after(timeout) {
            return self.noop("timeout_signal not due yet");
        }
        let mut next = self.from.clone();
        next.timeout_signal_sent = true;
        let before = warning.before;
        let event = RunEvent::TimeoutSignalled { signal: warning.signal, before };
        let reason =
            format!("sent {} {}s ahead of its timeout", warning.signal, before.as_secs_f64());
        self.to(next, vec![Action::RecordEvent(event), Action::Signal(warning.signal)], reason)
    }

    fn preempt_suspend(&self, by: &RunId) -> Result<Transition, InvalidTransition> {
        if self.policy.preemption != PreemptionMode::Suspend {
            return self.invalid(&format!(
                "the job's preemption mode is {}, not suspend",
                self.policy.preemption
            ));
        }
        let mut next = self.paused();
        next.phase = Phase::Suspended {
            by: SuspendedBy::Run(by.clone()),
            frozen: false,
            oom_pending: false,
        };
        let event = RunEvent::Preempted { by: by.clone(), mode: PreemptionMode::Suspend };
        Ok(self.to(
            next,
            vec![Action::RecordEvent(event), Action::Freeze],
            format!("suspending for {by}"),
        ))
    }

    /// A freeze by hand: the suspend path, whatever the job's preemption
    /// mode, without a preemption on record.
    fn suspend_requested(&self) -> Transition {
        let by = SuspendedBy::Operator;
        let reason = format!("frozen by {by}");
        let mut next = self.paused();
        next.phase = Phase::Suspended { by, frozen: false, oom_pending: false };
        self.to(next, vec![Action::Freeze], reason)
    }

    /// Frozen for node pressure: the suspend path, for any preemption mode
    /// but `never`.
    fn pressure_freeze(&self, cause: &str) -> Result<Transition, InvalidTransition> {
        if self.policy.preemption == PreemptionMode::Never {
            return self.invalid("the job's preemption mode is never");
        }
        let mut next = self.paused();
        next.phase =
            Phase::Suspended { by: SuspendedBy::Pressure, frozen: false, oom_pending: false };
        let event = RunEvent::PressureFrozen { reading: cause.to_owned() };
        Ok(self.to(
            next,
            vec![Action::RecordEvent(event), Action::Freeze],
            format!("freezing under memory pressure: {cause}"),
        ))
    }

    /// Frozen because this node cannot renew its cluster lease: the
    /// suspend path for any preemption mode, `never` included, since the
    /// alternative is a run that may go on beside its next attempt.
    fn fence_freeze(&self, cause: &str) -> Transition {
        let mut next = self.paused();
        next.phase = Phase::Suspended { by: SuspendedBy::Fence, frozen: false, oom_pending: false };
        self.to(next, vec![Action::Freeze], format!("fenced: cluster unreachable ({cause})"))
    }

    /// Bound elsewhere while frozen here: killed as it is, every process
    /// at once (the kill freezes, signals, then thaws, so no process runs
    /// another instruction of its own).
    fn superseded(&self, cluster_run: &str) -> Transition {
        let reason = StopReason::Superseded { cluster_run: cluster_run.to_owned() };
        let mut next = self.paused();
        next.phase = Phase::Stopping {
            intent: StopIntent::Stop { reason: reason.clone() },
            deadline: self.now,
            escalated: true,
        };
        self.to(next, vec![Action::KillAll], format!("killing: {reason}"))
    }

    /// Frozen for pressure that persisted: stopped and queued again with
    /// its attempt, which frees its memory.
    fn pressure_requeue(&self, cause: &str) -> Transition {
        let event = RunEvent::PressureRequeued { reading: cause.to_owned() };
        let intent = StopIntent::Requeue { by: SuspendedBy::Pressure };
        let mut t = self.begin_stop(intent, vec![Action::RecordEvent(event)]);
        t.reason = format!("{}: {cause}", t.reason);
        t
    }

    fn preempt_requeue(&self, by: &RunId) -> Result<Transition, InvalidTransition> {
        if self.policy.preemption != PreemptionMode::Requeue {
            return self.invalid(&format!(
                "the job's preemption mode is {}, not requeue",
                self.policy.preemption
            ));
        }
        let event = RunEvent::Preempted { by: by.clone(), mode: PreemptionMode::Requeue };
        let intent = StopIntent::Requeue { by: SuspendedBy::Run(by.clone()) };
        Ok(self.begin_stop(intent, vec![Action::RecordEvent(event)]))
    }

    fn resume(&self, by: &SuspendedBy, oom_pending: bool) -> Transition {
        if oom_pending {
            let mut next = self.from.clone();
            next.phase = Phase::OomPaused { frozen: true };
            return self.decide_oom(next);
        }
        self.running(
            self.from.clone(),
            vec![Action::Thaw, Action::RecordEvent(RunEvent::Resumed)],
            match by {
                SuspendedBy::Pressure => "resumed; the memory pressure is over".to_owned(),
                SuspendedBy::Fence => "thawed; this node renewed its cluster lease".to_owned(),
                _ => format!("resumed; {by} no longer needs the room"),
            },
        )
    }

    fn oom_notified(&self) -> Transition {
        let mut next = self.paused();
        next.phase = Phase::OomPaused { frozen: false };
        let limit = self.from.memory_limit;
        let at = limit.map_or("its memory limit".to_owned(), |l| format!("its memory limit {l}"));
        self.to(
            next,
            vec![Action::RecordEvent(RunEvent::Oom { limit }), Action::Freeze],
            format!("reached {at}; freezing while the OOM policy decides"),
        )
    }

    fn oom_killed(&self) -> Transition {
        let mut next = self.paused();
        next.oom_killed = true;
        next.phase =
            Phase::Stopping { intent: StopIntent::Oom, deadline: self.now, escalated: true };
        // A job with one process picked off by the kernel is in an unknown
        // state; the OOM policy acts on the job as a whole.
        self.to(
            next,
            vec![Action::RecordEvent(RunEvent::OomKilled), Action::KillAll],
            "the kernel OOM-killed a process; killing the rest".into(),
        )
    }

    /// The run is frozen at its limit: grow in place if the policy allows
    /// and its nodes have the room, otherwise kill it and let the OOM ending
    /// decide.
    fn decide_oom(&self, state: RunState) -> Transition {
        let mut refused = None;
        if let Some(grown) = self.policy.oom.grown_limit(state.memory_limit) {
            let from = state.memory_limit.unwrap_or(Bytes::ZERO);
            let extra = grown.saturating_sub(from);
            match self.memory_free {
                Some(free) if extra > free => {
                    refused = Some(format!(
                        "cannot grow the memory limit: {extra} more needed, {free} free on its nodes"
                    ));
                }
                _ => {
                    let mut next = state;
                    next.memory_limit = Some(grown);
                    return self.running(
                        next,
                        vec![
                            Action::SetMemoryLimit(grown),
                            Action::Thaw,
                            Action::RecordEvent(RunEvent::MemoryGrown { from, to: grown }),
                        ],
                        format!("memory limit raised from {from} to {grown}"),
                    );
                }
            }
        }
        let mut next = state;
        next.phase =
            Phase::Stopping { intent: StopIntent::Oom, deadline: self.now, escalated: true };
        let reason = match refused {
            Some(why) => format!("out of memory; {why}; killing the run"),
            None => "out of memory; killing the run".into(),
        };
        self.to(next, vec![Action::KillAll], reason)
    }

    fn exited(&self, state: RunState, status: ExitStatus, ending: Option<Ending>) -> Transition {
        let ending = ending.unwrap_or(if state.oom_killed {
            Ending::Oom
        } else if status.success() {
            Ending::Succeeded
        } else {
            Ending::Failed(FailReason::Exit { status })
        });
        self.end_attempt(state, ending, vec![Action::RecordExit(status)])
    }

    /// The attempt's processes are gone: release its placement and apply the
    /// OOM and restart policies.
    fn end_attempt(&self, state: RunState, ending: Ending, mut actions: Vec<Action>) -> Transition {
        actions.push(Action::ReleasePlacement);
        let mut next = state;
        if let Phase::Running { since } = next.phase {
            next.active = next.active.saturating_add(self.now.since(since));
        }
        match ending {
            Ending::Succeeded => self.restart_or_finish(next, None, actions),
            Ending::Failed(reason) => self.restart_or_finish(next, Some(reason), actions),
            Ending::Killed(reason) => self.killed(next, reason, actions),
            Ending::Requeue { by } => {
                next.phase = Phase::Pending;
                next.active = Duration::ZERO;
                next.oom_killed = false;
                next.timeout_signal_sent = false;
                actions.push(Action::Enqueue);
                let reason = format!("requeued for {by}; attempt {} kept", next.attempt);
                self.to(next, actions, reason)
            }
            Ending::Oom => self.oom_ending(next, actions),
        }
    }

    fn oom_ending(&self, state: RunState, mut actions: Vec<Action>) -> Transition {
        let limit = state.memory_limit;
        let requeue_to = match self.policy.oom {
            // A run left to finish after its job was removed has this
            // attempt only, whatever its policy would start next.
            _ if state.finishing => None,
            OomPolicy::Fail => None,
            OomPolicy::Requeue { factor, cap, max } if state.oom_requeues < max => match limit {
                // No limit: the machine ran out, not the job. Try again as is.
                None => Some(None),
                Some(l) => {
                    let scaled = factor.apply(l);
                    let to = cap.map_or(scaled, |cap| scaled.min(cap));
                    (to > l).then_some(Some(to))
                }
            },
            OomPolicy::Requeue { .. } => None,
            // The process is gone, so growing in place is no longer possible:
            // start over with the grown limit.
            OomPolicy::Grow { .. } => self.policy.oom.grown_limit(limit).map(Some),
        };
        let Some(to) = requeue_to else {
            return self.restart_or_finish(state, Some(FailReason::Oom), actions);
        };
        let mut next = state;
        next.oom_requeues += 1;
        next.attempt = next.attempt.saturating_add(1);
        next.memory_limit = to;
        next.active = Duration::ZERO;
        next.oom_killed = false;
        next.timeout_signal_sent = false;
        next.phase = Phase::Pending;
        actions.push(Action::RecordEvent(RunEvent::OomRequeued { from: limit, to }));
        actions.push(Action::Enqueue);
        let reason = match to {
            Some(to) => format!("out of memory; requeued as attempt {} with {to}", next.attempt),
            None => format!("out of memory; requeued as attempt {}", next.attempt),
        };
        self.to(next, actions, reason)
    }

    fn restart_or_finish(
        &self,
        state: RunState,
        failure: Option<FailReason>,
        mut actions: Vec<Action>,
    ) -> Transition {
        let restart = &self.policy.restart;
        let decision = restart.decide(failure.as_ref());
        let wanted = decision.is_ok();
        let mut next = state;
        if wanted && next.restarts < restart.attempts {
            let n = next.restarts + 1;
            let delay = backoff_delay(n, restart.backoff_min, restart.backoff_max, self.jitter);
            let until = self.now.plus(delay);
            next.restarts = n;
            next.attempt = next.attempt.saturating_add(1);
            next.active = Duration::ZERO;
            next.oom_killed = false;
            next.timeout_signal_sent = false;
            let how = failure.as_ref().map_or("succeeded".to_owned(), ToString::to_string);
            next.phase = Phase::BackoffWaiting { until, after: failure };
            actions.push(Action::RecordEvent(RunEvent::RestartScheduled { restart: n, delay }));
            actions.push(Action::ArmTimer { timer: Timer::Backoff, at: until });
            let reason = format!(
                "attempt {} {how}; restart {n} of {} in {}s",
                next.attempt - 1,
                restart.attempts,
                delay.as_secs_f64()
            );
            return self.to(next, actions, reason);
        }
        let (outcome, reason) = match failure {
            None => (Outcome::Succeeded, "succeeded".to_owned()),
            Some(reason) => {
                let text = match decision {
                    Ok(()) => format!("failed: {reason}; no restarts left"),
                    Err(NoRestart::NotWanted) => format!("failed: {reason}"),
                    Err(why) => format!("failed: {reason}; not restarted: {why}"),
                };
                (Outcome::Failed { reason }, text)
            }
        };
        next.phase = match &outcome {
            Outcome::Succeeded => Phase::Succeeded,
            Outcome::Failed { reason } => Phase::Failed { reason: reason.clone() },
            Outcome::Killed { reason } => Phase::Killed { reason: reason.clone() },
        };
        actions.push(Action::RecordOutcome(outcome));
        self.to(next, actions, reason)
    }

    fn killed(&self, state: RunState, reason: StopReason, mut actions: Vec<Action>) -> Transition {
        let mut next = state;
        next.phase = Phase::Killed { reason: reason.clone() };
        let text = format!("killed: {reason}");
        actions.push(Action::RecordOutcome(Outcome::Killed { reason }));
        self.to(next, actions, text)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod props;
