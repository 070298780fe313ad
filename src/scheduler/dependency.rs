//! Whether a blocked run may go: the rule of `after:`.
//!
//! Pure. A prerequisite is judged by its job's *latest* run: the newest run
//! the store has of that job when the judgement is made. The shell judges a
//! blocked run at the end of each batch of job file changes (new runs,
//! prerequisites loaded or changed, the first reading after a restart) and
//! whenever a run of one of its prerequisites ends.

use crate::spec::{After, AfterWhen};
use crate::vocab::RunId;

use super::state::Phase;

/// How the latest run of a prerequisite stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Latest {
    /// The job is not in force and has no run on record: its file may not
    /// be there yet.
    NotLoaded,
    /// The job is in force and has no run yet (a recurring job before its
    /// first firing).
    NoRun,
    /// Its latest run has not ended.
    Underway(RunId),
    Succeeded(RunId),
    /// Failed or killed.
    Unsuccessful(RunId, &'static str),
}

impl Latest {
    /// How `run`, the latest run of a job, stands in `phase`.
    pub fn of(run: RunId, phase: &Phase) -> Latest {
        match phase {
            Phase::Succeeded => Latest::Succeeded(run),
            Phase::Failed { .. } => Latest::Unsuccessful(run, "failed"),
            Phase::Killed { .. } => Latest::Unsuccessful(run, "was killed"),
            _ => Latest::Underway(run),
        }
    }
}

/// What becomes of a blocked run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every prerequisite ended as asked.
    Release,
    /// At least one can still end as asked and none has ended the wrong way;
    /// what is awaited, one item per prerequisite not yet satisfied.
    Wait(Vec<String>),
    /// A prerequisite ended the other way: why, for every one that did.
    Fail(String),
}

/// The verdict on a run whose job comes `after` each of `prerequisites`,
/// each paired with how its job's latest run stands.
pub fn judge<'a>(prerequisites: impl IntoIterator<Item = (&'a After, Latest)>) -> Verdict {
    let mut waiting = Vec::new();
    let mut broken = Vec::new();
    for (after, latest) in prerequisites {
        let job = &after.job;
        match (latest, after.when) {
            (Latest::NotLoaded, _) => waiting.push(format!("{job}: job not loaded")),
            (Latest::NoRun, _) => waiting.push(format!("{job}: no run yet")),
            (Latest::Underway(run), _) => waiting.push(format!("{job}: {run} under way")),
            (Latest::Succeeded(_), AfterWhen::Succeeded | AfterWhen::Ended) => {}
            (Latest::Unsuccessful(_, _), AfterWhen::Failed | AfterWhen::Ended) => {}
            (Latest::Succeeded(run), AfterWhen::Failed) => {
                broken.push(format!("{run} succeeded, and it waited for {job} to fail"))
            }
            (Latest::Unsuccessful(run, how), AfterWhen::Succeeded) => {
                broken.push(format!("{run} {how}"))
            }
        }
    }
    if !broken.is_empty() {
        Verdict::Fail(broken.join("; "))
    } else if !waiting.is_empty() {
        Verdict::Wait(waiting)
    } else {
        Verdict::Release
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::vocab::JobName;

    fn after(job: &str, when: AfterWhen) -> After {
        After { job: JobName::parse(job).unwrap(), when }
    }

    fn run(id: &str) -> RunId {
        RunId::new(id)
    }

    #[test]
    fn each_condition_against_each_ending() {
        use AfterWhen::*;
        let ok = Latest::Succeeded(run("x-1"));
        let failed = Latest::Unsuccessful(run("x-1"), "failed");
        let killed = Latest::Unsuccessful(run("x-1"), "was killed");
        for (when, latest, verdict) in [
            (Succeeded, ok.clone(), Verdict::Release),
            (Succeeded, failed.clone(), Verdict::Fail("x-1 failed".into())),
            (Succeeded, killed.clone(), Verdict::Fail("x-1 was killed".into())),
            (
                Failed,
                ok.clone(),
                Verdict::Fail("x-1 succeeded, and it waited for x to fail".into()),
            ),
            (Failed, failed.clone(), Verdict::Release),
            (Failed, killed.clone(), Verdict::Release),
            (Ended, ok, Verdict::Release),
            (Ended, failed, Verdict::Release),
            (Ended, killed, Verdict::Release),
        ] {
            assert_eq!(judge([(&after("x", when), latest.clone())]), verdict, "{when} {latest:?}");
        }
    }

    #[test]
    fn it_waits_visibly_for_what_has_not_ended() {
        let a = after("a", AfterWhen::Succeeded);
        let b = after("b", AfterWhen::Ended);
        let c = after("c", AfterWhen::Failed);
        assert_eq!(
            judge([
                (&a, Latest::NotLoaded),
                (&b, Latest::Underway(run("b-4"))),
                (&c, Latest::NoRun)
            ]),
            Verdict::Wait(vec![
                "a: job not loaded".into(),
                "b: b-4 under way".into(),
                "c: no run yet".into()
            ])
        );
        // One ended the wrong way: no point waiting for the others.
        assert_eq!(
            judge([(&a, Latest::Unsuccessful(run("a-2"), "failed")), (&b, Latest::NotLoaded)]),
            Verdict::Fail("a-2 failed".into())
        );
        assert_eq!(judge([]), Verdict::Release);
    }

    /// The state machine's side: a blocked run leaves by its dependencies
    /// or a stop, and nothing else moves it.
    #[test]
    fn a_blocked_run_is_released_failed_or_stopped_and_nothing_else() {
        use crate::scheduler::{
            transition, Action, Event, FailReason, Jitter, Moment, Outcome, Policy, RunState,
            StopReason,
        };
        use crate::vocab::Timestamp;
        let now = Timestamp::from_millis(10);
        let mut blocked = RunState::new(None, Timestamp::EPOCH);
        blocked.phase = Phase::Blocked { after: "a succeeded".into() };
        let policy = Policy::default();
        let step = |event: Event| {
            transition(&blocked, &event, &policy, Moment::new(now, Jitter::new(0.5)))
        };

        let released = step(Event::Released).unwrap();
        assert_eq!(
            (released.next.phase.clone(), released.actions),
            (Phase::Pending, vec![Action::Enqueue])
        );
        assert_eq!(released.next.since, now);

        let failed = step(Event::DependencyFailed { detail: "a-1 failed".into() }).unwrap();
        let reason = FailReason::Dependency { detail: "a-1 failed".into() };
        assert_eq!(failed.next.phase, Phase::Failed { reason: reason.clone() });
        assert_eq!(failed.actions, [Action::RecordOutcome(Outcome::Failed { reason })]);
        assert_eq!(failed.reason, "failed: dependency failed: a-1 failed; it never started");

        let stopped = step(Event::StopRequested { reason: StopReason::JobRemoved }).unwrap();
        assert_eq!(stopped.next.phase, Phase::Killed { reason: StopReason::JobRemoved });
        let removed = step(Event::JobRemoved { finish: true }).unwrap();
        assert_eq!(removed.next.phase, Phase::Killed { reason: StopReason::JobRemoved });

        let adopted = step(Event::AdoptedAfterRestart).unwrap();
        assert!(adopted.is_noop(&blocked), "{adopted:?}");
        let changed = step(Event::AfterChanged { after: "a ended".into() }).unwrap();
        assert_eq!(changed.next.phase, Phase::Blocked { after: "a ended".into() });
        assert!(step(Event::AfterChanged { after: "a succeeded".into() })
            .unwrap()
            .is_noop(&blocked));

        for event in [
            Event::Launched { pid: 1, start_time: 1 },
            Event::Exited(super::super::ExitStatus::Code(0)),
            Event::Resume,
        ] {
            assert!(step(event.clone()).is_err(), "{event:?}");
        }
        let pending = RunState::new(None, Timestamp::EPOCH);
        assert!(transition(
            &pending,
            &Event::Released,
            &policy,
            Moment::new(now, Jitter::new(0.5))
        )
        .is_err());
    }

    fn latest_strategy() -> impl Strategy<Value = Latest> {
        prop_oneof![
            Just(Latest::NotLoaded),
            Just(Latest::NoRun),
            Just(Latest::Underway(run("p-1"))),
            Just(Latest::Succeeded(run("p-1"))),
            Just(Latest::Unsuccessful(run("p-1"), "failed")),
        ]
    }

    fn when_strategy() -> impl Strategy<Value = AfterWhen> {
        prop_oneof![Just(AfterWhen::Succeeded), Just(AfterWhen::Failed), Just(AfterWhen::Ended)]
    }

    /// Whether one prerequisite alone is met, can still be, or never will.
    fn alone(when: AfterWhen, latest: &Latest) -> Verdict {
        judge([(&after("p", when), latest.clone())])
    }

    proptest! {
        /// Released exactly when each prerequisite alone would release it;
        /// failed exactly when one alone would fail it; `ended` never fails.
        #[test]
        fn the_verdict_is_the_conjunction_of_each_prerequisite(
            items in proptest::collection::vec((when_strategy(), latest_strategy()), 0..6)
        ) {
            let afters: Vec<After> = items.iter().map(|(w, _)| after("p", *w)).collect();
            let verdict = judge(afters.iter().zip(items.iter().map(|(_, l)| l.clone())));
            let each: Vec<Verdict> = items.iter().map(|(w, l)| alone(*w, l)).collect();
            let release = each.iter().all(|v| *v == Verdict::Release);
            let fail = each.iter().any(|v| matches!(v, Verdict::Fail(_)));
            prop_assert_eq!(verdict == Verdict::Release, release);
            prop_assert_eq!(matches!(verdict, Verdict::Fail(_)), fail);
            for (w, l) in &items {
                if *w == AfterWhen::Ended {
                    prop_assert!(!matches!(alone(*w, l), Verdict::Fail(_)));
                }
                // A prerequisite that has not ended never decides the run.
                if matches!(l, Latest::NotLoaded | Latest::NoRun | Latest::Underway(_)) {
                    prop_assert!(matches!(alone(*w, l), Verdict::Wait(_)));
                }
            }
        }
    }
}
