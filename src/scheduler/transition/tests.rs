//! Table-driven tests: one row per (phase, event, policy) that matters.

use std::time::Duration;

use super::*;
use crate::placement::CpuGrant;
use crate::scheduler::policy::RestartPolicy;
use crate::spec::{ExitCodes, JobSignal, RestartOn, TimeoutSignal};
use crate::topology::NodeSet;
use crate::vocab::Factor;

const T0: i64 = 1_000_000;
const GIB: Bytes = Bytes::from_gib(1);

fn t(secs: i64) -> Timestamp {
    Timestamp::from_millis(T0 + secs * 1000)
}

fn at(secs: i64) -> Moment {
    Moment::new(t(secs), Jitter::NONE)
}

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn run(id: &str) -> RunId {
    RunId::new(id)
}

fn assignment() -> Assignment {
    Assignment {
        owner: run("etl-1"),
        cpus: CpuGrant::Shared,
        mems: "0".parse::<NodeSet>().unwrap(),
        memory: Default::default(),
    }
}

/// Restart on failure twice, 10s..300s; OOM fails; suspend preemption;
/// 100s timeout; 10s grace.
fn policy() -> Policy {
    Policy {
        restart: RestartPolicy {
            on: RestartOn::Failure,
            attempts: 2,
            backoff_min: s(10),
            backoff_max: s(300),
            on_exit_codes: ExitCodes::default(),
            never_on_exit_codes: ExitCodes::default(),
        },
        oom: OomPolicy::Fail,
        preemption: PreemptionMode::Suspend,
        timeout: Some(s(100)),
        stop_grace: s(10),
        stop_signal: JobSignal::SIGTERM,
        timeout_signal: None,
    }
}

fn with(f: impl FnOnce(&mut Policy)) -> Policy {
    let mut p = policy();
    f(&mut p);
    p
}

fn state(phase: Phase) -> RunState {
    RunState { phase, ..RunState::new(Some(GIB), t(0)) }
}

fn pending() -> RunState {
    state(Phase::Pending)
}

fn running() -> RunState {
    state(Phase::Running { since: t(0) })
}

fn suspended(frozen: bool, oom_pending: bool) -> RunState {
    state(Phase::Suspended { by: SuspendedBy::Run(run("urgent-1")), frozen, oom_pending })
}

fn stopping(intent: StopIntent, escalated: bool) -> RunState {
    state(Phase::Stopping { intent, deadline: t(10), escalated })
}

fn removed() -> StopReason {
    StopReason::JobRemoved
}

fn stop(reason: StopReason) -> StopIntent {
    StopIntent::Stop { reason }
}

fn arm(timer: Timer, secs: i64) -> Action {
    Action::ArmTimer { timer, at: t(secs) }
}

struct Case {
    name: &'static str,
    from: RunState,
    event: Event,
    policy: Policy,
    now: i64,
    phase: Phase,
    actions: Vec<Action>,
}

fn cases() -> Vec<Case> {
    use Action as A;
    use Event as E;
    let exit = |code| E::Exited(ExitStatus::Code(code));
    let failed_exit = |code| FailReason::Exit { status: ExitStatus::Code(code) };
    let c = |name, from, event, policy, now, phase, actions| Case {
        name,
        from,
        event,
        policy,
        now,
        phase,
        actions,
    };
    vec![
        c(
            "placement launches",
            pending(),
            E::Placed(assignment()),
            policy(),
            1,
            Phase::Placed,
            vec![A::Launch { assignment: assignment(), memory_limit: Some(GIB) }],
        ),
        c(
            "stop while pending",
            pending(),
            E::StopRequested { reason: removed() },
            policy(),
            1,
            Phase::Killed { reason: removed() },
            vec![A::Dequeue, A::RecordOutcome(Outcome::Killed { reason: removed() })],
        ),
        c(
            // Even with restarts left: it would be refused again.
            "a refused plan fails the run without restarts",
            pending(),
            E::Refused { detail: "root refused".into() },
            policy(),
            1,
            Phase::Failed { reason: FailReason::LaunchFailed { detail: "root refused".into() } },
            vec![
                A::Dequeue,
                A::RecordOutcome(Outcome::Failed {
                    reason: FailReason::LaunchFailed { detail: "root refused".into() },
                }),
            ],
        ),
        c(
            "adopt pending",
            pending(),
            E::AdoptedAfterRestart,
            policy(),
            1,
            Phase::Pending,
            vec![A::Enqueue],
        ),
        c(
            "launch arms the deadline",
            state(Phase::Placed),
            E::Launched { pid: 7, start_time: 1 },
            policy(),
            2,
            Phase::Running { since: t(2) },
            vec![arm(Timer::ActiveDeadline, 102)],
        ),
        c(
            "launch without timeout arms nothing",
            state(Phase::Placed),
            E::Launched { pid: 7, start_time: 1 },
            with(|p| p.timeout = None),
            2,
            Phase::Running { since: t(2) },
            vec![],
        ),
        c(
            "launch failure restarts",
            state(Phase::Placed),
            E::LaunchFailed { detail: "no such file".into() },
            policy(),
            2,
            Phase::BackoffWaiting {
                until: t(12),
                after: Some(FailReason::LaunchFailed { detail: "no such file".into() }),
            },
            vec![
                A::ReleasePlacement,
                A::RecordEvent(RunEvent::RestartScheduled { restart: 1, delay: s(10) }),
                arm(Timer::Backoff, 12),
            ],
        ),
        c(
            "stop during launch kills the cgroup",
            state(Phase::Placed),
            E::StopRequested { reason: removed() },
            policy(),
            3,
            Phase::Stopping { intent: stop(removed()), deadline: t(3), escalated: true },
            vec![A::KillAll],
        ),
        c(
            "success",
            running(),
            exit(0),
            policy(),
            50,
            Phase::Succeeded,
            vec![
                A::RecordExit(ExitStatus::Code(0)),
                A::ReleasePlacement,
                A::RecordOutcome(Outcome::Succeeded),
            ],
        ),
        c(
            "success restarts under always",
            running(),
            exit(0),
            with(|p| p.restart.on = RestartOn::Always),
            50,
            Phase::BackoffWaiting { until: t(60), after: None },
            vec![
                A::RecordExit(ExitStatus::Code(0)),
                A::ReleasePlacement,
                A::RecordEvent(RunEvent::RestartScheduled { restart: 1, delay: s(10) }),
                arm(Timer::Backoff, 60),
            ],
        ),
        c(
            "failure restarts after backoff",
            running(),
            exit(3),
            policy(),
            50,
            Phase::BackoffWaiting { until: t(60), after: Some(failed_exit(3)) },
            vec![
                A::RecordExit(ExitStatus::Code(3)),
                A::ReleasePlacement,
                A::RecordEvent(RunEvent::RestartScheduled { restart: 1, delay: s(10) }),
                arm(Timer::Backoff, 60),
            ],
        ),
        c(
            "failure with restarts used up",
            RunState { restarts: 2, attempt: 3, ..running() },
            exit(3),
            policy(),
            50,
            Phase::Failed { reason: failed_exit(3) },
            vec![
                A::RecordExit(ExitStatus::Code(3)),
                A::ReleasePlacement,
                A::RecordOutcome(Outcome::Failed { reason: failed_exit(3) }),
            ],
        ),
        c(
            "failure under restart never",
            running(),
            E::Exited(ExitStatus::Signal(9)),
            with(|p| p.restart.on = RestartOn::Never),
            50,
            Phase::Failed { reason: FailReason::Exit { status: ExitStatus::Signal(9) } },
            vec![
                A::RecordExit(ExitStatus::Signal(9)),
                A::ReleasePlacement,
                A::RecordOutcome(Outcome::Failed {
                    reason: FailReason::Exit { status: ExitStatus::Signal(9) },
                }),
            ],
        ),
        c(
            "lost process fails",
            running(),
            E::Lost { detail: "pid gone".into() },
            with(|p| p.restart.on = RestartOn::Never),
            50,
            Phase::Failed { reason: FailReason::Lost { detail: "pid gone".into() } },
            vec![
                A::ReleasePlacement,
                A::RecordOutcome(Outcome::Failed {
                    reason: FailReason::Lost { detail: "pid gone".into() },
                }),
            ],
        ),
        c(
            "exit after an OOM kill is an OOM failure",
            RunState { oom_killed: true, ..running() },
            exit(0),
            with(|p| p.restart.on = RestartOn::Never),
            50,
            Phase::Failed { reason: FailReason::Oom },
            vec![
                A::RecordExit(ExitStatus::Code(0)),
                A::ReleasePlacement,
                A::RecordOutcome(Outcome::Failed { reason: FailReason::Oom }),
            ],
        ),
        c(
            "suspend",
            running(),
            E::PreemptSuspend { by: run("urgent-1") },
            policy(),
            30,
            Phase::Suspended {
                by: SuspendedBy::Run(run("urgent-1")),
                frozen: false,
                oom_pending: false,
            },
            vec![
                A::RecordEvent(RunEvent::Preempted {
                    by: run("urgent-1"),
                    mode: PreemptionMode::Suspend,
                }),
                A::Freeze,
            ],
        ),
        c(
            "freeze by hand, whatever the preemption mode",
            running(),
            E::SuspendRequested,
            with(|p| p.preemption = PreemptionMode::Never),
            30,
            Phase::Suspended { by: SuspendedBy::Operator, frozen: false, oom_pending: false },
            vec![A::Freeze],
        ),
        c(
            "fenced: frozen whatever the preemption mode",
            running(),
            E::FenceFreeze { cause: "cannot renew".into() },
            with(|p| p.preemption = PreemptionMode::Never),
            30,
            Phase::Suspended { by: SuspendedBy::Fence, frozen: false, oom_pending: false },
            vec![A::Freeze],
        ),
        c(
            "frozen for a run, then fenced: kept frozen for the fence",
            suspended(true, false),
            E::FenceFreeze { cause: "cannot renew".into() },
            policy(),
            30,
            Phase::Suspended { by: SuspendedBy::Fence, frozen: true, oom_pending: false },
            vec![],
        ),
        c(
            "superseded while frozen: killed at once, no thaw, no grace",
            suspended(true, false),
            E::Superseded { cluster_run: "etl-5".into() },
            policy(),
            30,
            Phase::Stopping {
                intent: StopIntent::Stop {
                    reason: StopReason::Superseded { cluster_run: "etl-5".into() },
                },
                deadline: t(30),
                escalated: true,
            },
            vec![A::KillAll],
        ),
        c(
            "frozen yields cpus",
            suspended(false, false),
            E::Frozen,
            policy(),
            31,
            Phase::Suspended {
                by: SuspendedBy::Run(run("urgent-1")),
                frozen: true,
                oom_pending: false,
            },
            vec![A::YieldCpus],
        ),
        c(
            "second frozen is a no-op",
            suspended(true, false),
            E::Frozen,
            policy(),
            31,
            Phase::Suspended {
                by: SuspendedBy::Run(run("urgent-1")),
                frozen: true,
                oom_pending: false,
            },
            vec![],
        ),
        c(
            "resume thaws and re-arms with the time left",
            RunState { active: s(30), ..suspended(true, false) },
            E::Resume,
            policy(),
            500,
            Phase::Running { since: t(500) },
            vec![A::Thaw, A::RecordEvent(RunEvent::Resumed), arm(Timer::ActiveDeadline, 570)],
        ),
        c(
            "OOM while suspended is remembered",
            suspended(true, false),
            E::OomNotified,
            policy(),
            40,
            Phase::Suspended {
                by: SuspendedBy::Run(run("urgent-1")),
                frozen: true,
                oom_pending: true,
            },
            vec![A::RecordEvent(RunEvent::Oom { limit: Some(GIB) })],
        ),
        c(
            "resume with a pending OOM runs the OOM policy",
            suspended(true, true),
            E::Resume,
            with(|p| p.oom = OomPolicy::Grow { step: GIB, ceiling: Bytes::from_gib(4) }),
            500,
            Phase::Running { since: t(500) },
            vec![
                A::SetMemoryLimit(Bytes::from_gib(2)),
                A::Thaw,
                A::RecordEvent(RunEvent::MemoryGrown { from: GIB, to: Bytes::from_gib(2) }),
                arm(Timer::ActiveDeadline, 600),
            ],
        ),
        c(
            "stop while suspended thaws after TERM",
            suspended(true, false),
            E::StopRequested { reason: removed() },
            policy(),
            40,
            Phase::Stopping { intent: stop(removed()), deadline: t(50), escalated: false },
            vec![A::Terminate, A::Thaw, arm(Timer::StopGrace, 50)],
        ),
        c(
            "requeue preemption",
            running(),
            E::PreemptRequeue { by: run("urgent-1") },
            with(|p| p.preemption = PreemptionMode::Requeue),
            30,
            Phase::Stopping {
                intent: StopIntent::Requeue { by: SuspendedBy::Run(run("urgent-1")) },
                deadline: t(40),
                escalated: false,
            },
            vec![
                A::RecordEvent(RunEvent::Preempted {
                    by: run("urgent-1"),
                    mode: PreemptionMode::Requeue,
                }),
                A::Terminate,
                arm(Timer::StopGrace, 40),
            ],
        ),
        c(
            "requeued run goes back to pending",
            stopping(StopIntent::Requeue { by: SuspendedBy::Run(run("urgent-1")) }, false),
            E::Exited(ExitStatus::Signal(15)),
            policy(),
            35,
            Phase::Pending,
            vec![A::RecordExit(ExitStatus::Signal(15)), A::ReleasePlacement, A::Enqueue],
        ),
        c(
            "OOM freezes",
            running(),
            E::OomNotified,
            policy(),
            20,
            Phase::OomPaused { frozen: false },
            vec![A::RecordEvent(RunEvent::Oom { limit: Some(GIB) }), A::Freeze],
        ),
        c(
            "OOM grow in place",
            state(Phase::OomPaused { frozen: false }),
            E::Frozen,
            with(|p| p.oom = OomPolicy::Grow { step: GIB, ceiling: Bytes::from_gib(4) }),
            21,
            Phase::Running { since: t(21) },
            vec![
                A::SetMemoryLimit(Bytes::from_gib(2)),
                A::Thaw,
                A::RecordEvent(RunEvent::MemoryGrown { from: GIB, to: Bytes::from_gib(2) }),
                arm(Timer::ActiveDeadline, 121),
            ],
        ),
        c(
            "OOM at the ceiling kills",
            state(Phase::OomPaused { frozen: false }),
            E::Frozen,
            with(|p| p.oom = OomPolicy::Grow { step: GIB, ceiling: GIB }),
            21,
            Phase::Stopping { intent: StopIntent::Oom, deadline: t(21), escalated: true },
            vec![A::KillAll],
        ),
        c(
            "OOM fail policy kills",
            state(Phase::OomPaused { frozen: false }),
            E::Frozen,
            policy(),
            21,
            Phase::Stopping { intent: StopIntent::Oom, deadline: t(21), escalated: true },
            vec![A::KillAll],
        ),
        c(
            "OOM requeue with a larger limit",
            stopping(StopIntent::Oom, true),
            E::Exited(ExitStatus::Signal(9)),
            with(|p| {
                p.oom =
                    OomPolicy::Requeue { factor: Factor::from_hundredths(150), cap: None, max: 2 }
            }),
            22,
            Phase::Pending,
            vec![
                A::RecordExit(ExitStatus::Signal(9)),
                A::ReleasePlacement,
                A::RecordEvent(RunEvent::OomRequeued {
                    from: Some(GIB),
                    to: Some(Bytes::from_mib(1536)),
                }),
                A::Enqueue,
            ],
        ),
        c(
            "OOM requeue exhausted fails, then restart applies",
            RunState { oom_requeues: 2, attempt: 3, ..stopping(StopIntent::Oom, true) },
            E::Exited(ExitStatus::Signal(9)),
            with(|p| {
                p.oom =
                    OomPolicy::Requeue { factor: Factor::from_hundredths(150), cap: None, max: 2 }
            }),
            22,
            Phase::BackoffWaiting { until: t(32), after: Some(FailReason::Oom) },
            vec![
                A::RecordExit(ExitStatus::Signal(9)),
                A::ReleasePlacement,
                A::RecordEvent(RunEvent::RestartScheduled { restart: 1, delay: s(10) }),
                arm(Timer::Backoff, 32),
            ],
        ),
        c(
            "OOM requeue at the cap fails",
            stopping(StopIntent::Oom, true),
            E::Exited(ExitStatus::Signal(9)),
            with(|p| {
                p.oom = OomPolicy::Requeue {
                    factor: Factor::from_hundredths(200),
                    cap: Some(GIB),
                    max: 5,
                };
                p.restart.on = RestartOn::Never;
            }),
            22,
            Phase::Failed { reason: FailReason::Oom },
            vec![
                A::RecordExit(ExitStatus::Signal(9)),
                A::ReleasePlacement,
                A::RecordOutcome(Outcome::Failed { reason: FailReason::Oom }),
            ],
        ),
        c(
            "exit while OOM-paused is an OOM ending",
            state(Phase::OomPaused { frozen: false }),
            exit(0),
            with(|p| p.restart.on = RestartOn::Never),
            22,
            Phase::Failed { reason: FailReason::Oom },
            vec![
                A::RecordExit(ExitStatus::Code(0)),
                A::ReleasePlacement,
                A::RecordOutcome(Outcome::Failed { reason: FailReason::Oom }),
            ],
        ),
        c(
            "OOM kill kills the rest",
            running(),
            E::OomKilled,
            policy(),
            20,
            Phase::Stopping { intent: StopIntent::Oom, deadline: t(20), escalated: true },
            vec![A::RecordEvent(RunEvent::OomKilled), A::KillAll],
        ),
        c(
            "OOM kill grows by requeue",
            stopping(StopIntent::Oom, true),
            E::Exited(ExitStatus::Signal(9)),
            with(|p| p.oom = OomPolicy::Grow { step: GIB, ceiling: Bytes::from_gib(4) }),
            22,
            Phase::Pending,
            vec![
                A::RecordExit(ExitStatus::Signal(9)),
                A::ReleasePlacement,
                A::RecordEvent(RunEvent::OomRequeued {
                    from: Some(GIB),
                    to: Some(Bytes::from_gib(2)),
                }),
                A::Enqueue,
            ],
        ),
        c(
            "timeout stops",
            running(),
            E::TimeoutElapsed,
            policy(),
            100,
            Phase::Stopping { intent: StopIntent::Timeout, deadline: t(110), escalated: false },
            vec![A::Terminate, arm(Timer::StopGrace, 110)],
        ),
        c(
            "early timeout is stale",
            running(),
            E::TimeoutElapsed,
            policy(),
            99,
            Phase::Running { since: t(0) },
            vec![],
        ),
        c(
            "suspended time does not count",
            RunState { active: s(60), ..state(Phase::Running { since: t(200) }) },
            E::TimeoutElapsed,
            policy(),
            230,
            Phase::Running { since: t(200) },
            vec![],
        ),
        c(
            "timed-out run fails and restarts",
            stopping(StopIntent::Timeout, false),
            exit(0),
            policy(),
            105,
            Phase::BackoffWaiting { until: t(115), after: Some(FailReason::Timeout) },
            vec![
                A::RecordExit(ExitStatus::Code(0)),
                A::ReleasePlacement,
                A::RecordEvent(RunEvent::RestartScheduled { restart: 1, delay: s(10) }),
                arm(Timer::Backoff, 115),
            ],
        ),
        c(
            "grace over kills",
            stopping(stop(removed()), false),
            E::GraceElapsed,
            policy(),
            10,
            Phase::Stopping { intent: stop(removed()), deadline: t(10), escalated: true },
            vec![A::KillAll],
        ),
        c(
            "early grace timer is stale",
            stopping(stop(removed()), false),
            E::GraceElapsed,
            policy(),
            9,
            Phase::Stopping { intent: stop(removed()), deadline: t(10), escalated: false },
            vec![],
        ),
        c(
            "OOM while stopping kills at once",
            stopping(stop(removed()), false),
            E::OomNotified,
            policy(),
            5,
            Phase::Stopping { intent: stop(removed()), deadline: t(10), escalated: true },
            vec![A::KillAll],
        ),
        c(
            "stopped run is killed",
            stopping(stop(removed()), true),
            exit(0),
            policy(),
            11,
            Phase::Killed { reason: removed() },
            vec![
                A::RecordExit(ExitStatus::Code(0)),
                A::ReleasePlacement,
                A::RecordOutcome(Outcome::Killed { reason: removed() }),
            ],
        ),
        c(
            "stop request overrides a requeue",
            stopping(StopIntent::Requeue { by: SuspendedBy::Run(run("urgent-1")) }, false),
            E::StopRequested { reason: removed() },
            policy(),
            5,
            Phase::Stopping { intent: stop(removed()), deadline: t(10), escalated: false },
            vec![],
        ),
        c(
            "launch during stop kills again",
            stopping(stop(removed()), true),
            E::Launched { pid: 9, start_time: 1 },
            policy(),
            5,
            Phase::Stopping { intent: stop(removed()), deadline: t(10), escalated: true },
            vec![A::KillAll],
        ),
        c(
            "launch failure during stop",
            stopping(stop(removed()), true),
            E::LaunchFailed { detail: "x".into() },
            policy(),
            5,
            Phase::Killed { reason: removed() },
            vec![A::ReleasePlacement, A::RecordOutcome(Outcome::Killed { reason: removed() })],
        ),
        c(
            "backoff over queues",
            state(Phase::BackoffWaiting { until: t(60), after: None }),
            E::BackoffElapsed,
            policy(),
            60,
            Phase::Pending,
            vec![A::Enqueue],
        ),
        c(
            "early backoff timer is stale",
            state(Phase::BackoffWaiting { until: t(60), after: None }),
            E::BackoffElapsed,
            policy(),
            59,
            Phase::BackoffWaiting { until: t(60), after: None },
            vec![],
        ),
        c(
            "stop during backoff",
            state(Phase::BackoffWaiting { until: t(60), after: None }),
            E::StopRequested { reason: removed() },
            policy(),
            30,
            Phase::Killed { reason: removed() },
            vec![A::RecordOutcome(Outcome::Killed { reason: removed() })],
        ),
        c(
            "adopt running re-arms the deadline with time left",
            RunState { active: s(40), ..state(Phase::Running { since: t(100) }) },
            E::AdoptedAfterRestart,
            policy(),
            110,
            Phase::Running { since: t(100) },
            vec![A::Watch, arm(Timer::ActiveDeadline, 160)],
        ),
        c(
            "adopt suspended keeps it frozen",
            suspended(true, false),
            E::AdoptedAfterRestart,
            policy(),
            5,
            Phase::Suspended {
                by: SuspendedBy::Run(run("urgent-1")),
                frozen: true,
                oom_pending: false,
            },
            vec![A::Watch, A::Freeze],
        ),
        c(
            "adopt OOM-paused waits for the freeze again",
            state(Phase::OomPaused { frozen: true }),
            E::AdoptedAfterRestart,
            policy(),
            5,
            Phase::OomPaused { frozen: false },
            vec![A::Watch, A::Freeze],
        ),
        c(
            "adopt stopping re-arms grace",
            stopping(stop(removed()), false),
            E::AdoptedAfterRestart,
            policy(),
            5,
            Phase::Stopping { intent: stop(removed()), deadline: t(10), escalated: false },
            vec![A::Watch, arm(Timer::StopGrace, 10)],
        ),
        c(
            "adopt backoff re-arms",
            state(Phase::BackoffWaiting { until: t(60), after: None }),
            E::AdoptedAfterRestart,
            policy(),
            5,
            Phase::BackoffWaiting { until: t(60), after: None },
            vec![arm(Timer::Backoff, 60)],
        ),
    ]
}

#[test]
fn table() {
    for case in cases() {
        let got = transition(&case.from, &case.event, &case.policy, at(case.now))
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(got.next.phase, case.phase, "{}", case.name);
        assert_eq!(got.actions, case.actions, "{}", case.name);
        assert!(!got.reason.is_empty(), "{}", case.name);
        if got.next.phase.name() != case.from.phase.name() {
            assert_eq!(got.next.since, t(case.now), "{}: phase entry time", case.name);
        }
    }
}

#[test]
fn invalid_events_are_refused_with_phase_and_event() {
    use Event as E;
    let rows: Vec<(RunState, Event, Policy)> = vec![
        (pending(), E::Exited(ExitStatus::Code(0)), policy()),
        (pending(), E::Launched { pid: 1, start_time: 1 }, policy()),
        (pending(), E::Frozen, policy()),
        (pending(), E::PreemptSuspend { by: run("x-1") }, policy()),
        (pending(), E::SuspendRequested, policy()),
        (state(Phase::Placed), E::Placed(assignment()), policy()),
        (state(Phase::Placed), E::Exited(ExitStatus::Code(0)), policy()),
        (state(Phase::Placed), E::AdoptedAfterRestart, policy()),
        (running(), E::Launched { pid: 1, start_time: 1 }, policy()),
        (running(), E::Resume, policy()),
        (running(), E::Placed(assignment()), policy()),
        (
            running(),
            E::PreemptSuspend { by: run("x-1") },
            with(|p| p.preemption = PreemptionMode::Never),
        ),
        (running(), E::PreemptRequeue { by: run("x-1") }, policy()),
        (suspended(true, false), E::PreemptRequeue { by: run("x-1") }, policy()),
        (state(Phase::OomPaused { frozen: true }), E::PreemptSuspend { by: run("x-1") }, policy()),
        (state(Phase::OomPaused { frozen: true }), E::Resume, policy()),
        (
            state(Phase::BackoffWaiting { until: t(1), after: None }),
            E::Exited(ExitStatus::Code(0)),
            policy(),
        ),
        (state(Phase::Succeeded), E::AdoptedAfterRestart, policy()),
        (state(Phase::Failed { reason: FailReason::Timeout }), E::BackoffElapsed, policy()),
        (
            state(Phase::Killed { reason: removed() }),
            E::StopRequested { reason: removed() },
            policy(),
        ),
    ];
    for (from, event, policy) in rows {
        let err = transition(&from, &event, &policy, at(1)).expect_err(&format!(
            "{} in {} should be refused",
            event.name(),
            from.phase.name()
        ));
        assert_eq!(err.phase, from.phase.name());
        assert_eq!(err.event, event.name());
        assert!(err.to_string().contains(event.name()), "{err}");
    }
}

/// Follows one run through a whole life and checks the counters on the way.
#[test]
fn a_life_with_suspension_oom_growth_and_restart() {
    let policy = with(|p| {
        p.oom = OomPolicy::Grow { step: GIB, ceiling: Bytes::from_gib(2) };
        p.restart.attempts = 1;
    });
    let mut st = RunState::new(Some(GIB), t(0));
    let go = |st: &mut RunState, event: Event, now: i64| {
        let tr = transition(st, &event, &policy, at(now)).unwrap();
        *st = tr.next.clone();
        tr
    };
    go(&mut st, Event::Placed(assignment()), 0);
    go(&mut st, Event::Launched { pid: 10, start_time: 5 }, 1);
    go(&mut st, Event::PreemptSuspend { by: run("urgent-1") }, 21);
    go(&mut st, Event::Frozen, 21);
    go(&mut st, Event::Resume, 1000);
    assert_eq!(st.active, s(20), "20s ran before the suspension");
    go(&mut st, Event::OomNotified, 1010);
    let grown = go(&mut st, Event::Frozen, 1011);
    assert_eq!(grown.next.memory_limit, Some(Bytes::from_gib(2)));
    // 30s ran so far, the timeout is 100s: the deadline is 70s of running away.
    assert!(grown.actions.contains(&arm(Timer::ActiveDeadline, 1081)));
    go(&mut st, Event::OomNotified, 1020);
    let killed = go(&mut st, Event::Frozen, 1021);
    assert!(killed.actions.contains(&Action::KillAll), "at the ceiling: {killed:?}");
    let ended = go(&mut st, Event::Exited(ExitStatus::Signal(9)), 1022);
    assert!(matches!(ended.next.phase, Phase::BackoffWaiting { .. }), "{:?}", ended.next.phase);
    assert_eq!((st.attempt, st.restarts, st.oom_requeues), (2, 1, 0));
    assert_eq!(st.active, Duration::ZERO, "a new attempt starts with a fresh deadline");
    go(&mut st, Event::BackoffElapsed, 1032);
    go(&mut st, Event::Placed(assignment()), 1033);
    go(&mut st, Event::Launched { pid: 11, start_time: 6 }, 1033);
    let last = go(&mut st, Event::Exited(ExitStatus::Code(1)), 1040);
    assert_eq!(
        last.next.phase,
        Phase::Failed { reason: FailReason::Exit { status: ExitStatus::Code(1) } }
    );
    assert_eq!(st.memory_limit, Some(Bytes::from_gib(2)), "growth is kept across restarts");
    assert!(transition(&st, &Event::BackoffElapsed, &policy, at(2000)).is_err());
}

#[test]
fn preemption_requeue_keeps_the_attempt_and_resets_the_deadline() {
    let policy = with(|p| p.preemption = PreemptionMode::Requeue);
    let mut st = running();
    for (event, now) in [
        (Event::PreemptRequeue { by: run("urgent-1") }, 50),
        (Event::GraceElapsed, 60),
        (Event::Exited(ExitStatus::Signal(9)), 61),
    ] {
        st = transition(&st, &event, &policy, at(now)).unwrap().next;
    }
    assert_eq!(st.phase, Phase::Pending);
    assert_eq!((st.attempt, st.restarts, st.active), (1, 0, Duration::ZERO));
}

#[test]
fn a_requeue_by_hand_keeps_the_attempt_whatever_the_preemption_mode() {
    // The job's mode is the default, not `requeue`; no preemption is recorded.
    let mut st = running();
    let first = transition(&st, &Event::RequeueRequested, &policy(), at(50)).unwrap();
    assert!(!first.actions.iter().any(|a| matches!(a, Action::RecordEvent(_))), "{first:?}");
    st = first.next;
    assert!(matches!(&st.phase, Phase::Stopping { intent: StopIntent::Requeue { .. }, .. }));
    st = transition(&st, &Event::Exited(ExitStatus::Signal(15)), &policy(), at(51)).unwrap().next;
    assert_eq!(st.phase, Phase::Pending);
    assert_eq!((st.attempt, st.restarts), (1, 0));
    let pending = transition(&st, &Event::RequeueRequested, &policy(), at(52));
    assert!(pending.is_err(), "a pending run cannot be requeued");
}

#[test]
fn memory_pressure_freezes_any_preemptible_run_then_requeues_it_with_its_attempt() {
    let cause = "memory.some avg10=34.20 above 20".to_owned();
    for mode in [PreemptionMode::Suspend, PreemptionMode::Requeue] {
        let policy = with(|p| p.preemption = mode);
        let freeze = Event::PressureFreeze { cause: cause.clone() };
        let tr = transition(&running(), &freeze, &policy, at(50)).unwrap();
        assert_eq!(
            tr.next.phase,
            Phase::Suspended { by: SuspendedBy::Pressure, frozen: false, oom_pending: false }
        );
        assert_eq!(
            tr.actions,
            [
                Action::RecordEvent(RunEvent::PressureFrozen { reading: cause.clone() }),
                Action::Freeze
            ]
        );
        assert_eq!(tr.reason, format!("freezing under memory pressure: {cause}"));
        assert_eq!(tr.next.active, s(50), "frozen time does not count against the deadline");
        let frozen = transition(&tr.next, &Event::Frozen, &policy, at(51)).unwrap().next;
        // A second freeze is nothing new; a requeue stops it, thawed so
        // that the signal lands.
        assert!(transition(&frozen, &freeze, &policy, at(52)).unwrap().is_noop(&frozen));
        let requeue = Event::PressureRequeue { cause: cause.clone() };
        let tr = transition(&frozen, &requeue, &policy, at(60)).unwrap();
        assert!(tr.actions.contains(&Action::Thaw), "{:?}", tr.actions);
        assert!(tr
            .actions
            .contains(&Action::RecordEvent(RunEvent::PressureRequeued { reading: cause.clone() })));
        assert!(tr.reason.ends_with(&cause), "{}", tr.reason);
        let st = transition(&tr.next, &Event::Exited(ExitStatus::Signal(15)), &policy, at(61))
            .unwrap()
            .next;
        assert_eq!(st.phase, Phase::Pending);
        assert_eq!((st.attempt, st.restarts), (1, 0));
        // Resumed instead: a reason of its own.
        let tr = transition(&frozen, &Event::Resume, &policy, at(70)).unwrap();
        assert_eq!(tr.reason, "resumed; the memory pressure is over");
    }
}

#[test]
fn memory_pressure_never_touches_never_runs_nor_requeues_runs_frozen_for_others() {
    let never = with(|p| p.preemption = PreemptionMode::Never);
    let freeze = Event::PressureFreeze { cause: "x".into() };
    assert!(transition(&running(), &freeze, &never, at(5)).is_err());
    let requeue = Event::PressureRequeue { cause: "x".into() };
    // Frozen for another run, or by hand: not the watch's to requeue.
    assert!(transition(&suspended(true, false), &requeue, &policy(), at(5)).is_err());
    assert!(transition(&running(), &requeue, &policy(), at(5)).is_err());
    assert!(transition(&pending(), &freeze, &policy(), at(5)).is_err());
}

#[test]
fn noop_transitions_are_recognisable() {
    let from = running();
    let tr = transition(&from, &Event::Thawed, &policy(), at(5)).unwrap();
    assert!(tr.is_noop(&from));
    let tr = transition(&from, &Event::OomNotified, &policy(), at(5)).unwrap();
    assert!(!tr.is_noop(&from));
}

#[test]
fn jitter_moves_the_restart_time() {
    let late = transition(
        &running(),
        &Event::Exited(ExitStatus::Code(1)),
        &policy(),
        Moment::new(t(50), Jitter::new(1.0)),
    )
    .unwrap();
    assert_eq!(
        late.next.phase,
        Phase::BackoffWaiting {
            until: t(50).plus(Duration::from_millis(12_500)),
            after: Some(FailReason::Exit { status: ExitStatus::Code(1) }),
        }
    );
}

#[test]
fn run_state_round_trips_through_json() {
    for st in [
        running(),
        suspended(true, true),
        stopping(StopIntent::Requeue { by: SuspendedBy::Run(run("a-1")) }, true),
        state(Phase::BackoffWaiting { until: t(3), after: Some(FailReason::Timeout) }),
        state(Phase::Killed { reason: StopReason::Requested { by: "ops".into() } }),
    ] {
        let json = serde_json::to_string(&st).unwrap();
        assert_eq!(serde_json::from_str::<RunState>(&json).unwrap(), st, "{json}");
    }
}

#[test]
fn a_changed_job_raises_the_limit_of_a_run_under_way_never_lowers_it() {
    let two = Bytes::from_gib(2);
    let half = Bytes::from_mib(512);
    let changed = |st: &RunState, hard| {
        transition(st, &Event::JobChanged { memory_hard: hard }, &policy(), at(40)).unwrap()
    };
    // Running for 30s of its 100s timeout: raised in place, deadline re-armed
    // from the running time already spent.
    let mut st = running();
    st.phase = Phase::Running { since: t(10) };
    let raised = changed(&st, Some(two));
    assert_eq!(raised.next.memory_limit, Some(two));
    assert_eq!(raised.next.phase, st.phase, "the phase and its entry time stay");
    assert_eq!(raised.next.since, st.since);
    assert_eq!(raised.actions, [Action::SetMemoryLimit(two), arm(Timer::ActiveDeadline, 110)]);
    assert!(raised.reason.contains("hard memory limit 2Gi"), "{}", raised.reason);
    // Lower or gone: kept; the new settings still go to the cgroup.
    for hard in [Some(half), None] {
        let kept = changed(&st, hard);
        assert_eq!(kept.next.memory_limit, Some(GIB));
        assert_eq!(kept.actions, [Action::UpdateSettings, arm(Timer::ActiveDeadline, 110)]);
    }
    // Frozen: no deadline to re-arm.
    let frozen = changed(&suspended(true, false), Some(two));
    assert_eq!(frozen.actions, [Action::SetMemoryLimit(two)]);
    // Not started yet: the new value as it is, lower or none included.
    for hard in [Some(half), Some(two), None] {
        let fresh = changed(&pending(), hard);
        assert_eq!(fresh.next.memory_limit, hard);
        assert!(fresh.actions.is_empty(), "no processes, nothing to set");
    }
    // Queued again after an OOM or a restart, it has started before: kept.
    let mut requeued = pending();
    requeued.oom_requeues = 1;
    requeued.attempt = 2;
    assert_eq!(changed(&requeued, Some(half)).next.memory_limit, Some(GIB));
    let mut restarted = state(Phase::BackoffWaiting { until: t(60), after: None });
    restarted.attempt = 2;
    restarted.restarts = 1;
    assert_eq!(changed(&restarted, Some(half)).next.memory_limit, Some(GIB));
    // The same limit on a run without processes changes nothing.
    assert!(changed(&pending(), Some(GIB)).is_noop(&pending()));
}

#[test]
fn a_removed_job_stops_its_run_or_lets_it_finish() {
    let removed_event = |finish| Event::JobRemoved { finish };
    let restarting = with(|p| {
        p.restart.on = RestartOn::Always;
        p.oom = OomPolicy::Requeue { factor: Factor::from_hundredths(200), cap: None, max: 3 };
    });
    // Stopped: exactly as a stop for good.
    let stopped = transition(&running(), &removed_event(false), &restarting, at(5)).unwrap();
    let as_stop =
        transition(&running(), &Event::StopRequested { reason: removed() }, &restarting, at(5))
            .unwrap();
    assert_eq!(stopped, as_stop);
    // A run without processes is stopped even when the job says finish.
    let pending_gone = transition(&pending(), &removed_event(true), &restarting, at(5)).unwrap();
    assert_eq!(pending_gone.next.phase, Phase::Killed { reason: removed() });

    // Left to finish: on record, nothing done now.
    let left = transition(&running(), &removed_event(true), &restarting, at(5)).unwrap();
    assert!(left.next.finishing);
    assert!(left.actions.is_empty());
    assert!(!left.is_noop(&running()), "the decision is recorded");
    let again = transition(&left.next, &removed_event(true), &restarting, at(6)).unwrap();
    assert!(again.is_noop(&left.next));
    // It ends for good however it ends: no restart, no OOM requeue.
    let failed =
        transition(&left.next, &Event::Exited(ExitStatus::Code(1)), &restarting, at(7)).unwrap();
    assert_eq!(failed.next.phase, Phase::Failed { reason: failed_exit(1) });
    let succeeded =
        transition(&left.next, &Event::Exited(ExitStatus::Code(0)), &restarting, at(7)).unwrap();
    assert_eq!(succeeded.next.phase, Phase::Succeeded);
    let oom = transition(&left.next, &Event::OomKilled, &restarting, at(7)).unwrap().next;
    let oom = transition(&oom, &Event::Exited(ExitStatus::Signal(9)), &restarting, at(8)).unwrap();
    assert_eq!(oom.next.phase, Phase::Failed { reason: FailReason::Oom });
    // Under `grow` too: a kill that growing in place did not prevent ends
    // it, where a run of a job in force would start over with more memory.
    let growing = with(|p| p.oom = OomPolicy::Grow { step: GIB, ceiling: Bytes::from_gib(4) });
    let mut limited = left.next.clone();
    limited.memory_limit = Some(GIB);
    let oom = transition(&limited, &Event::OomKilled, &growing, at(7)).unwrap().next;
    let oom = transition(&oom, &Event::Exited(ExitStatus::Signal(9)), &growing, at(8)).unwrap();
    assert_eq!(oom.next.phase, Phase::Failed { reason: FailReason::Oom });
    assert_eq!(oom.next.attempt, left.next.attempt);
    // The job back: its run again, with the job's own policy.
    let back =
        transition(&left.next, &Event::JobChanged { memory_hard: Some(GIB) }, &restarting, at(9))
            .unwrap();
    assert!(!back.next.finishing);
    let restarted =
        transition(&back.next, &Event::Exited(ExitStatus::Code(0)), &restarting, at(10)).unwrap();
    assert!(matches!(restarted.next.phase, Phase::BackoffWaiting { .. }));
}

fn failed_exit(code: i32) -> FailReason {
    FailReason::Exit { status: ExitStatus::Code(code) }
}

#[test]
fn growth_in_place_needs_the_room_on_the_runs_nodes() {
    let grow = with(|p| p.oom = OomPolicy::Grow { step: GIB, ceiling: Bytes::from_gib(4) });
    let paused = state(Phase::OomPaused { frozen: false });
    let frozen_with = |free| {
        let moment = at(5).with_memory_free(free);
        transition(&paused, &Event::Frozen, &grow, moment).unwrap()
    };
    let grown = frozen_with(GIB);
    assert_eq!(grown.next.memory_limit, Some(Bytes::from_gib(2)), "exactly the room it needs");
    let refused = frozen_with(Bytes::from_mib(1023));
    assert_eq!(
        refused.next.phase,
        Phase::Stopping { intent: StopIntent::Oom, deadline: t(5), escalated: true }
    );
    assert_eq!(refused.actions, [Action::KillAll]);
    assert_eq!(refused.next.memory_limit, Some(GIB), "not grown");
    assert!(
        refused.reason.contains("cannot grow the memory limit: 1Gi more needed, 1023Mi free"),
        "{}",
        refused.reason
    );
    // Its end follows the policy: queued again with the grown limit.
    let ended =
        transition(&refused.next, &Event::Exited(ExitStatus::Signal(9)), &grow, at(6)).unwrap();
    assert_eq!(ended.next.phase, Phase::Pending);
    assert_eq!(ended.next.memory_limit, Some(Bytes::from_gib(2)));
    // A resume that finds an OOM waiting decides by the same rule.
    let resumed = transition(
        &suspended(true, true),
        &Event::Resume,
        &grow,
        at(5).with_memory_free(Bytes::ZERO),
    )
    .unwrap();
    assert!(matches!(resumed.next.phase, Phase::Stopping { intent: StopIntent::Oom, .. }));
    // Room unknown: no bound.
    let unbounded = transition(&paused, &Event::Frozen, &grow, at(5)).unwrap();
    assert_eq!(unbounded.next.memory_limit, Some(Bytes::from_gib(2)));
}

#[test]
fn a_launch_that_never_started_is_placed_again_under_a_later_time() {
    let placed = state(Phase::Placed);
    let event = Event::NeverStarted { detail: "no process was started".into() };
    // The clock behind the record: still later than the spent placement.
    let again = transition(&placed, &event, &policy(), Moment::new(t(-5), Jitter::NONE)).unwrap();
    assert_eq!(again.next.phase, Phase::Placed);
    assert_eq!(again.next.since, t(0).plus(Duration::from_millis(1)));
    assert!(again.actions.is_empty());
    assert_eq!(again.reason, "no process was started; starting it again");
    let later = transition(&placed, &event, &policy(), at(7)).unwrap();
    assert_eq!(later.next.since, t(7));
    assert!(transition(&running(), &event, &policy(), at(7)).is_err());
}

#[test]
fn an_oom_kill_while_stopping_is_recorded_once() {
    let first = stopping(StopIntent::Oom, true);
    let t1 = transition(&first, &Event::OomKilled, &policy(), at(11)).unwrap();
    assert!(t1.next.oom_killed);
    assert_eq!(t1.actions, vec![Action::RecordEvent(RunEvent::OomKilled)]);
    // The next process of the same job the kernel kills is no news.
    let t2 = transition(&t1.next, &Event::OomKilled, &policy(), at(11)).unwrap();
    assert!(t2.actions.is_empty(), "{:?}", t2.actions);
    assert_eq!(t2.next, t1.next);
}

fn exited(code: i32) -> Event {
    Event::Exited(ExitStatus::Code(code))
}

#[test]
fn exit_code_lists_decide_restarts_and_say_why_not() {
    let p = with(|p| {
        p.restart.on_exit_codes = ExitCodes::of([1, 75]);
        p.restart.never_on_exit_codes = ExitCodes::of([2]);
    });
    let restarted = transition(&running(), &exited(75), &p, at(5)).unwrap();
    assert!(matches!(restarted.next.phase, Phase::BackoffWaiting { .. }));
    assert_eq!(restarted.next.restarts, 1);

    let never = transition(&running(), &exited(2), &p, at(5)).unwrap();
    assert_eq!(never.next.phase, Phase::Failed { reason: failed_exit(2) });
    assert_eq!(
        never.reason,
        "failed: exit code 2; not restarted: exit code 2 is in never_on_exit_codes"
    );
    let unlisted = transition(&running(), &exited(3), &p, at(5)).unwrap();
    assert_eq!(
        unlisted.reason,
        "failed: exit code 3; not restarted: exit code 3 is not in on_exit_codes"
    );
    let signal = transition(&running(), &Event::Exited(ExitStatus::Signal(9)), &p, at(5)).unwrap();
    assert!(signal.reason.ends_with(
        "not restarted: it did not end with an exit code, and on_exit_codes restarts only those"
    ));
    // never_on_exit_codes wins over `always`.
    let always = with(|p| {
        p.restart.on = RestartOn::Always;
        p.restart.never_on_exit_codes = ExitCodes::of([2]);
    });
    let t2 = transition(&running(), &exited(2), &always, at(5)).unwrap();
    assert_eq!(t2.next.phase, Phase::Failed { reason: failed_exit(2) });
    // Without lists, as before: the plain reason, and "no restarts left" at the end.
    let plain = with(|p| p.restart.on = RestartOn::Never);
    assert_eq!(
        transition(&running(), &exited(1), &plain, at(5)).unwrap().reason,
        "failed: exit code 1"
    );
    let mut spent = running();
    spent.restarts = 2;
    spent.attempt = 3;
    let last = transition(&spent, &exited(75), &p, at(5)).unwrap();
    assert_eq!(last.reason, "failed: exit code 75; no restarts left");
}

#[test]
fn restart_on_oom_restarts_only_what_the_oom_policy_gives_up() {
    let p = with(|p| {
        p.restart.on = RestartOn::Oom;
        p.oom = OomPolicy::Requeue { factor: Factor::from_hundredths(200), cap: None, max: 1 };
    });
    // The OOM policy first: a requeue with a doubled limit, no restart used.
    let mut st = stopping(StopIntent::Oom, true);
    let first = transition(&st, &exited(137), &p, at(5)).unwrap();
    assert_eq!(first.next.phase, Phase::Pending);
    assert_eq!((first.next.oom_requeues, first.next.restarts), (1, 0));
    // Requeues spent: now the restart policy has its say, and restarts it.
    st.oom_requeues = 1;
    st.attempt = 2;
    let second = transition(&st, &exited(137), &p, at(5)).unwrap();
    assert!(matches!(
        second.next.phase,
        Phase::BackoffWaiting { after: Some(FailReason::Oom), .. }
    ));
    assert_eq!(second.next.restarts, 1);
    assert_eq!(second.next.memory_limit, Some(GIB), "the limit in force is kept");
    // Any other failure ends the run, and says why.
    let other = transition(&running(), &exited(1), &p, at(5)).unwrap();
    assert_eq!(other.next.phase, Phase::Failed { reason: failed_exit(1) });
    assert!(other
        .reason
        .ends_with("not restarted: restart.on is oom and it did not run out of memory"));
    let timed_out =
        transition(&stopping(StopIntent::Timeout, false), &exited(143), &p, at(5)).unwrap();
    assert_eq!(timed_out.next.phase, Phase::Failed { reason: FailReason::Timeout });
}

fn warned() -> Policy {
    with(|p| {
        p.timeout_signal =
            Some(TimeoutSignal { signal: JobSignal::parse("USR1").unwrap(), before: s(30) });
    })
}

#[test]
fn the_timeout_signal_is_armed_with_the_deadline_from_the_running_time_left() {
    let placed = state(Phase::Placed);
    let launched =
        transition(&placed, &Event::Launched { pid: 7, start_time: 1 }, &warned(), at(2)).unwrap();
    assert_eq!(launched.actions, [arm(Timer::ActiveDeadline, 102), arm(Timer::TimeoutSignal, 72)]);
    // 40s ran before a suspension: 30s of running time left to the signal.
    let mut frozen = suspended(true, false);
    frozen.active = s(40);
    let resumed = transition(&frozen, &Event::Resume, &warned(), at(500)).unwrap();
    assert_eq!(
        resumed.actions,
        [
            Action::Thaw,
            Action::RecordEvent(RunEvent::Resumed),
            arm(Timer::ActiveDeadline, 560),
            arm(Timer::TimeoutSignal, 530)
        ]
    );
    // Due while frozen: stale, the clock of the attempt is stopped.
    assert!(transition(&frozen, &Event::TimeoutSignalDue, &warned(), at(900))
        .unwrap()
        .is_noop(&frozen));
    // Once sent, an adoption re-arms only the deadline.
    let mut sent = running();
    sent.timeout_signal_sent = true;
    let adopted = transition(&sent, &Event::AdoptedAfterRestart, &warned(), at(80)).unwrap();
    assert_eq!(adopted.actions, [Action::Watch, arm(Timer::ActiveDeadline, 100)]);
    let unsent = transition(&running(), &Event::AdoptedAfterRestart, &warned(), at(80)).unwrap();
    assert_eq!(
        unsent.actions,
        [Action::Watch, arm(Timer::ActiveDeadline, 100), arm(Timer::TimeoutSignal, 80)]
    );
    // No timeout_signal: the deadline alone, as before.
    let plain = transition(&placed, &Event::Launched { pid: 7, start_time: 1 }, &policy(), at(2));
    assert_eq!(plain.unwrap().actions, [arm(Timer::ActiveDeadline, 102)]);
}

#[test]
fn the_timeout_signal_is_sent_once_when_due_and_again_only_for_a_new_try() {
    let usr1 = JobSignal::parse("USR1").unwrap();
    let early = transition(&running(), &Event::TimeoutSignalDue, &warned(), at(69)).unwrap();
    assert!(early.is_noop(&running()), "due at 70s of running time");
    let due = transition(&running(), &Event::TimeoutSignalDue, &warned(), at(70)).unwrap();
    assert!(due.next.timeout_signal_sent);
    assert_eq!(
        due.actions,
        [
            Action::RecordEvent(RunEvent::TimeoutSignalled { signal: usr1, before: s(30) }),
            Action::Signal(usr1)
        ]
    );
    assert_eq!(due.reason, "sent SIGUSR1 30s ahead of its timeout");
    let again = transition(&due.next, &Event::TimeoutSignalDue, &warned(), at(75)).unwrap();
    assert!(again.is_noop(&due.next), "never twice in one try");
    // The timeout then stops it with the stop signal, as any timeout.
    let timeout = transition(&due.next, &Event::TimeoutElapsed, &warned(), at(100)).unwrap();
    assert!(timeout.actions.contains(&Action::Terminate));
    // A restart and a requeue start a new try, with the signal unsent.
    let ended = transition(&timeout.next, &exited(143), &warned(), at(101)).unwrap();
    assert!(matches!(ended.next.phase, Phase::BackoffWaiting { .. }));
    assert!(!ended.next.timeout_signal_sent);
    let requeue = StopIntent::Requeue { by: SuspendedBy::Operator };
    let mut stopping_sent = stopping(requeue, false);
    stopping_sent.timeout_signal_sent = true;
    let requeued = transition(&stopping_sent, &exited(143), &warned(), at(5)).unwrap();
    assert_eq!(requeued.next.phase, Phase::Pending);
    assert!(!requeued.next.timeout_signal_sent);
    // Without the setting the event changes nothing.
    assert!(transition(&running(), &Event::TimeoutSignalDue, &policy(), at(99))
        .unwrap()
        .is_noop(&running()));
}
