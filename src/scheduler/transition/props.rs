//! Random event sequences: no panics, terminal stays terminal, budgets hold,
//! placement is taken and returned exactly once per attempt, a changed job
//! never lowers the limit of a run under way, a run left to finish is never
//! started again, a growth in place fits the room it was given, a restart
//! follows only an ending its policy restarts (exit code lists, `on: oom`),
//! and the `timeout_signal` goes out at most once per try, when it is due.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::placement::CpuGrant;
use crate::scheduler::policy::RestartPolicy;
use crate::spec::{ExitCodes, JobSignal, RestartOn, TimeoutSignal};
use crate::topology::NodeSet;
use crate::vocab::Factor;

/// How many kinds of event [`event`] makes; the strategy draws from all of them.
const EVENT_KINDS: u8 = 33;

/// The hard limits a changed job may set: none, below, at and above the
/// initial limits the test draws (1..4 GiB).
fn changed_hard(by: u8) -> Option<Bytes> {
    [None, Some(Bytes::from_mib(512)), Some(Bytes::from_gib(3)), Some(Bytes::from_gib(6))]
        [usize::from(by) % 4]
}

fn event(i: u8, by: u8) -> Event {
    let by_run = RunId::new(format!("other-{by}"));
    match i % EVENT_KINDS {
        0 | 1 => Event::Placed(Assignment {
            owner: RunId::new("job-1"),
            cpus: CpuGrant::Shared,
            mems: "0".parse::<NodeSet>().unwrap(),
            memory: Default::default(),
        }),
        2 => Event::Launched { pid: 100, start_time: 1 },
        3 => Event::LaunchFailed { detail: "exec".into() },
        4 => Event::Exited(ExitStatus::Code(0)),
        5 => Event::Exited(ExitStatus::Code(EXIT_CODES[usize::from(by) % 4].into())),
        6 => Event::Exited(ExitStatus::Signal(9)),
        7 => Event::Lost { detail: "gone".into() },
        8 => Event::Frozen,
        9 => Event::Thawed,
        10 => Event::OomNotified,
        11 => Event::OomKilled,
        12 => Event::PreemptSuspend { by: by_run },
        13 => Event::PreemptRequeue { by: by_run },
        14 => Event::Resume,
        15 => Event::StopRequested { reason: StopReason::JobRemoved },
        16 => Event::TimeoutElapsed,
        17 => Event::GraceElapsed,
        18 => Event::SuspendRequested,
        19 => Event::WatchFailed { detail: "inotify".into() },
        21 => Event::JobChanged { memory_hard: changed_hard(by) },
        22 => Event::JobRemoved { finish: by % 2 == 1 },
        23 => Event::NeverStarted { detail: "directory spent".into() },
        24 => Event::Refused { detail: "root".into() },
        25 => Event::TimeoutSignalDue,
        26 => Event::PressureFreeze { cause: "memory.some avg10=50.00 above 20".into() },
        27 => Event::PressureRequeue { cause: "memory.some avg10=50.00 above 20".into() },
        28 => Event::Released,
        29 => Event::DependencyFailed { detail: "extract-1 failed".into() },
        30 => Event::AfterChanged { after: format!("extract-{by} ended") },
        31 => Event::FenceFreeze { cause: "no etcd member answers (0 of 3)".into() },
        32 => Event::Superseded { cluster_run: "job-9".into() },
        _ => {
            if by == 0 {
                Event::AdoptedAfterRestart
            } else {
                Event::BackoffElapsed
            }
        }
    }
}

/// The non-zero exit codes the events use, and the lists draw from.
const EXIT_CODES: [u8; 4] = [1, 2, 3, 75];

/// The codes of `EXIT_CODES` whose bit is set in `mask`.
fn codes(mask: u8) -> ExitCodes {
    ExitCodes::of((0..4).filter(|i| mask & (1 << i) != 0).map(|i| EXIT_CODES[i]))
}

fn policy_strategy() -> impl Strategy<Value = Policy> {
    let on = [RestartOn::Never, RestartOn::Failure, RestartOn::Always, RestartOn::Oom];
    let restart = (0u8..4, 0u32..4, 1u64..20, 0u64..100, 0u8..16, 0u8..16).prop_map(
        move |(on_index, attempts, min, extra, on_mask, never_mask)| RestartPolicy {
            on: on[usize::from(on_index)],
            attempts,
            backoff_min: Duration::from_secs(min),
            backoff_max: Duration::from_secs(min + extra),
            on_exit_codes: codes(on_mask),
            // Overlaps the spec refuses are drawn too: never_ must still win.
            never_on_exit_codes: codes(never_mask),
        },
    );
    let oom = prop_oneof![
        Just(OomPolicy::Fail),
        (100u32..400, proptest::option::of(1u64..8), 0u32..4).prop_map(|(f, cap, max)| {
            OomPolicy::Requeue {
                factor: Factor::from_hundredths(f),
                cap: cap.map(Bytes::from_gib),
                max,
            }
        }),
        (0u64..3, 1u64..8).prop_map(|(step, ceiling)| OomPolicy::Grow {
            step: Bytes::from_mib(step * 512),
            ceiling: Bytes::from_gib(ceiling),
        }),
    ];
    let preemption = prop_oneof![
        Just(PreemptionMode::Suspend),
        Just(PreemptionMode::Requeue),
        Just(PreemptionMode::Never)
    ];
    let warning = proptest::option::of(1u64..200);
    (restart, oom, preemption, proptest::option::of(0u64..200), 0u64..30, warning).prop_map(
        |(restart, oom, preemption, timeout, grace, before)| Policy {
            restart,
            oom,
            preemption,
            timeout: timeout.map(Duration::from_secs),
            stop_grace: Duration::from_secs(grace),
            stop_signal: JobSignal::SIGTERM,
            // As the spec allows it: with a timeout, and shorter.
            timeout_signal: before.filter(|b| timeout.is_some_and(|t| *b < t)).map(|b| {
                TimeoutSignal {
                    signal: JobSignal::parse("USR1").unwrap(),
                    before: Duration::from_secs(b),
                }
            }),
        },
    )
}

/// The most memory the policy can ever grant, starting from `initial`.
fn memory_bound(policy: &Policy, initial: Bytes) -> Option<Bytes> {
    match policy.oom {
        OomPolicy::Fail => Some(initial),
        OomPolicy::Grow { ceiling, .. } => Some(initial.max(ceiling)),
        OomPolicy::Requeue { cap: Some(cap), .. } => Some(initial.max(cap)),
        OomPolicy::Requeue { cap: None, .. } => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_event_sequences_keep_the_invariants(
        policy in policy_strategy(),
        limit in proptest::option::of(1u64..4),
        blocked in any::<bool>(),
        steps in proptest::collection::vec(
            (0..EVENT_KINDS, 0u8..4, 0u64..120_000, 0.0f64..=1.0, proptest::option::of(0u64..3)),
            0..60,
        ),
    ) {
        let initial = limit.map(Bytes::from_gib);
        let mut now = Timestamp::from_millis(1_700_000_000_000);
        let mut st = RunState::new(initial, now);
        if blocked {
            st.phase = Phase::Blocked { after: "extract succeeded".into() };
        }
        let mut holds_placement = false;
        // The largest limit a changed job has asked for so far.
        let mut asked = initial;
        for (i, by, dt, jitter, free_gib) in steps {
            now = now.plus(Duration::from_millis(dt));
            let ev = event(i, by);
            let mut moment = Moment::new(now, Jitter::new(jitter));
            if let Some(gib) = free_gib {
                moment = moment.with_memory_free(Bytes::from_gib(gib));
            }
            if let Event::JobChanged { memory_hard: Some(hard) } = ev {
                asked = asked.max(Some(hard));
            }
            let result = transition(&st, &ev, &policy, moment);
            if st.is_terminal() {
                prop_assert!(result.is_err(), "terminal {} accepted {}", st.phase, ev.name());
                continue;
            }
            let was_blocked = matches!(st.phase, Phase::Blocked { .. });
            if matches!(ev, Event::Released | Event::DependencyFailed { .. }) {
                prop_assert_eq!(result.is_ok(), was_blocked, "{} took {}", st.phase, ev.name());
            }
            let Ok(tr) = result else { continue };
            if was_blocked {
                // A blocked run leaves only by its dependencies or a stop:
                // never placed, launched or ended by anything else.
                let left = !matches!(tr.next.phase, Phase::Blocked { .. });
                let by = matches!(ev, Event::Released | Event::DependencyFailed { .. }
                    | Event::StopRequested { .. } | Event::JobRemoved { .. });
                prop_assert!(!left || by, "blocked -{}-> {}", ev.name(), tr.next.phase);
                if let Event::DependencyFailed { .. } = ev {
                    prop_assert_eq!(tr.next.phase.name(), "failed");
                    prop_assert_eq!(tr.next.attempt, 1, "no restart for a run that never started");
                }
            }
            for action in &tr.actions {
                match action {
                    Action::Launch { memory_limit, .. } => {
                        prop_assert!(!holds_placement, "launched twice");
                        prop_assert_eq!(*memory_limit, st.memory_limit);
                        holds_placement = true;
                    }
                    Action::ReleasePlacement => {
                        prop_assert!(holds_placement, "released twice");
                        holds_placement = false;
                    }
                    _ => {}
                }
            }
            let next = &tr.next;
            prop_assert_eq!(holds_placement, next.phase.may_have_processes(),
                "{} -{}-> {}", st.phase, ev.name(), next.phase);
            prop_assert!(next.restarts <= policy.restart.attempts);
            if let OomPolicy::Requeue { max, .. } = policy.oom {
                prop_assert!(next.oom_requeues <= max);
            }
            prop_assert_eq!(next.attempt, 1 + next.restarts + next.oom_requeues);
            prop_assert!(next.attempt >= st.attempt, "attempts only grow");
            if let (Some(bound), Some(limit)) = (memory_bound(&policy, asked.unwrap_or_default()), next.memory_limit) {
                prop_assert!(limit <= bound, "{limit} over {bound}");
            }
            let not_started = matches!(st.phase, Phase::Pending | Phase::Blocked { .. })
                && st.attempt == 1
                && st.oom_requeues == 0;
            match &ev {
                // The one place a limit may go down: a run that never ran
                // takes its changed job's limit as it is.
                Event::JobChanged { memory_hard } if not_started => {
                    prop_assert_eq!(next.memory_limit, *memory_hard);
                }
                Event::JobChanged { memory_hard } => {
                    prop_assert!(next.memory_limit >= st.memory_limit, "lowered under way");
                    let raised = match (st.memory_limit, *memory_hard) {
                        (Some(old), Some(new)) => Some(old.max(new)),
                        (old, _) => old,
                    };
                    prop_assert_eq!(next.memory_limit, raised);
                    prop_assert_eq!(&next.phase, &st.phase, "a changed job changes no phase");
                    prop_assert!(!next.finishing, "a job back in force ends the finishing");
                }
                _ => prop_assert!(next.memory_limit >= st.memory_limit, "limits never shrink"),
            }
            for action in &tr.actions {
                let Action::SetMemoryLimit(to) = action else { continue };
                prop_assert!(next.phase.may_have_processes(), "a limit set on no processes");
                prop_assert_eq!(next.memory_limit, Some(*to));
                if !matches!(ev, Event::JobChanged { .. }) {
                    // Growth in place: one step of the policy's rule, within the room.
                    prop_assert_eq!(policy.oom.grown_limit(st.memory_limit), Some(*to));
                    if let (Some(free), Some(from)) = (moment.memory_free, st.memory_limit) {
                        prop_assert!(to.saturating_sub(from) <= free, "grown past the room");
                    }
                }
            }
            if st.finishing && next.finishing {
                // Left to finish: this attempt and nothing after it.
                prop_assert_eq!(next.attempt, st.attempt, "{} started again", st.phase);
                prop_assert!(!matches!(next.phase, Phase::BackoffWaiting { .. }),
                    "{} -{}-> {}", st.phase, ev.name(), next.phase);
            }
            if matches!(ev, Event::JobRemoved { finish: true }) && st.phase.may_have_processes() {
                prop_assert!(next.finishing);
                prop_assert_eq!(&next.phase, &st.phase);
            }
            prop_assert!(next.since <= now && next.since >= st.since);
            if let Some(timeout) = policy.timeout {
                if matches!(next.phase, Phase::Running { .. }) {
                    prop_assert!(next.active <= timeout.max(st.active),
                        "running past the deadline without being stopped");
                }
            }
            // A restart follows only an ending its policy restarts.
            let restarted = next.restarts > st.restarts;
            if restarted {
                let Phase::BackoffWaiting { after, .. } = &next.phase else {
                    return Err(TestCaseError::fail(format!("restart into {}", next.phase)));
                };
                let r = &policy.restart;
                match after {
                    None => prop_assert_eq!(r.on, RestartOn::Always),
                    Some(FailReason::Exit { status: ExitStatus::Code(code) }) => {
                        prop_assert!(!r.never_on_exit_codes.contains(*code),
                            "exit code {} is in never_on_exit_codes", code);
                        prop_assert!(r.on_exit_codes.is_empty() || r.on_exit_codes.contains(*code));
                        prop_assert!(matches!(r.on, RestartOn::Failure | RestartOn::Always));
                    }
                    Some(FailReason::Oom) => {
                        prop_assert!(r.on == RestartOn::Oom || r.on_exit_codes.is_empty());
                        prop_assert!(r.on != RestartOn::Never);
                    }
                    Some(other) => {
                        prop_assert!(r.on_exit_codes.is_empty(), "{} restarted", other);
                        prop_assert!(matches!(r.on, RestartOn::Failure | RestartOn::Always));
                    }
                }
            }
            // The timeout signal: once per try, when due, while running.
            let signals = tr.actions.iter().filter(|a| matches!(a, Action::Signal(_))).count();
            prop_assert!(signals <= 1);
            if signals == 1 {
                let warning = policy.timeout_signal.expect("sent without timeout_signal");
                let timeout = policy.timeout.expect("timeout_signal without timeout");
                prop_assert!(matches!(st.phase, Phase::Running { .. }), "sent in {}", st.phase);
                prop_assert!(!st.timeout_signal_sent, "sent twice");
                prop_assert!(next.timeout_signal_sent, "sent and not on record");
                prop_assert!(st.active_at(now) >= warning.due_after(timeout), "sent early");
            }
            prop_assert!(!next.timeout_signal_sent || policy.timeout_signal.is_some());
            if matches!(next.phase, Phase::Pending | Phase::BackoffWaiting { .. }) {
                prop_assert!(!next.timeout_signal_sent, "a new try starts with the signal unsent");
            }
            if next.timeout_signal_sent && !st.timeout_signal_sent {
                prop_assert_eq!(signals, 1, "on record as sent, never sent");
            }
            let enqueued = tr.actions.contains(&Action::Enqueue);
            let entered_pending = next.phase == Phase::Pending && st.phase != Phase::Pending;
            let readopted = st.phase == Phase::Pending && matches!(ev, Event::AdoptedAfterRestart);
            prop_assert_eq!(enqueued, entered_pending || readopted);
            st = tr.next;
        }
    }
}

proptest! {
    /// Whatever the policy and wherever the run is, an exit with a code in
    /// `never_on_exit_codes` starts no new attempt, unless the kernel
    /// OOM-killed the attempt (then it is an OOM ending, which the OOM
    /// policy and `restart` handle).
    #[test]
    fn an_exit_code_in_never_on_exit_codes_never_restarts(
        policy in policy_strategy(),
        code in 1i32..=255,
        restarts in 0u32..4,
        suspended in any::<bool>(),
    ) {
        let mut policy = policy;
        policy.restart.never_on_exit_codes.insert(u8::try_from(code).unwrap());
        let now = Timestamp::from_millis(1_700_000_000_000);
        let mut st = RunState::new(None, now);
        st.restarts = restarts.min(policy.restart.attempts);
        st.attempt = 1 + st.restarts;
        st.phase = if suspended {
            Phase::Suspended { by: SuspendedBy::Operator, frozen: true, oom_pending: false }
        } else {
            Phase::Running { since: now }
        };
        let later = now.plus(Duration::from_secs(1));
        let exit = Event::Exited(ExitStatus::Code(code));
        let tr = transition(&st, &exit, &policy, Moment::new(later, Jitter::NONE)).unwrap();
        prop_assert_eq!(tr.next.restarts, st.restarts);
        prop_assert_eq!(tr.next.attempt, st.attempt);
        let failed = Phase::Failed { reason: FailReason::Exit { status: ExitStatus::Code(code) } };
        prop_assert_eq!(&tr.next.phase, &failed);
        // `on: never` restarts nothing, so there is no rule to name.
        if policy.restart.on != RestartOn::Never {
            let why = format!("not restarted: exit code {code} is in never_on_exit_codes");
            prop_assert!(tr.reason.ends_with(&why), "{}", tr.reason);
        }
    }
}
