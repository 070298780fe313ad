//! Random event sequences: no panics, terminal stays terminal, budgets hold,
//! placement is taken and returned exactly once per attempt, a changed job
//! never lowers the limit of a run under way, a run left to finish is never
//! started again, and a growth in place fits the room it was given.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::placement::CpuGrant;
use crate::scheduler::policy::RestartPolicy;
use crate::topology::NodeSet;
use crate::vocab::Factor;

/// How many kinds of event [`event`] makes; the strategy draws from all of them.
const EVENT_KINDS: u8 = 28;

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
        5 => Event::Exited(ExitStatus::Code(1)),
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
        25 => Event::Released,
        26 => Event::DependencyFailed { detail: "extract-1 failed".into() },
        27 => Event::AfterChanged { after: format!("extract-{by} ended") },
        _ => {
            if by == 0 {
                Event::AdoptedAfterRestart
            } else {
                Event::BackoffElapsed
            }
        }
    }
}

fn policy_strategy() -> impl Strategy<Value = Policy> {
    let restart = (0u8..3, 0u32..4, 1u64..20, 0u64..100).prop_map(|(on, attempts, min, extra)| {
        RestartPolicy {
            on: [RestartOn::Never, RestartOn::Failure, RestartOn::Always][on as usize],
            attempts,
            backoff_min: Duration::from_secs(min),
            backoff_max: Duration::from_secs(min + extra),
        }
    });
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
    (restart, oom, preemption, proptest::option::of(0u64..200), 0u64..30).prop_map(
        |(restart, oom, preemption, timeout, grace)| Policy {
            restart,
            oom,
            preemption,
            timeout: timeout.map(Duration::from_secs),
            stop_grace: Duration::from_secs(grace),
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
            let enqueued = tr.actions.contains(&Action::Enqueue);
            let entered_pending = next.phase == Phase::Pending && st.phase != Phase::Pending;
            let readopted = st.phase == Phase::Pending && matches!(ev, Event::AdoptedAfterRestart);
            prop_assert_eq!(enqueued, entered_pending || readopted);
            st = tr.next;
        }
    }
}
