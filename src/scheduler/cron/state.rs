//! A recurring job's scheduling state: what the agent persists so that a restart neither
//! runs a firing twice nor forgets a run it must not overlap or a firing waiting its turn.
//!
//! The agent drives it with two events: a tick, when the job's next firing is due (and once
//! at start-up), and the end of one of the job's runs. Each returns the [`CronAction`]s to
//! carry out and the journal records to write. The agent persists the new state and the
//! records together, *then* carries out the actions: a crash in between loses at most the
//! start of a run, never repeats one. After a restart it reloads the state, calls
//! [`CronState::run_ended`] for runs that ended meanwhile (their shims recorded how), repeats
//! [`CronState::pending_stops`], and ticks. When a job file changes the job's timing, the
//! agent calls [`CronState::reschedule`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::catch_up::plan_catch_up;
use super::concurrency::{
    on_fire, on_run_finished, AfterRun, OverlapDecision, RunSummary, SkipReason,
};
use super::job::{earlier, CronJob};
use super::journal::{FiringOutcome, FiringRecord};
use crate::vocab::RunId;

/// The persisted scheduling state of one recurring job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronState {
    /// Every firing scheduled at or before this instant has been decided. `None` until the
    /// job's first tick: a job new to the agent catches nothing up.
    pub last_considered: Option<DateTime<Utc>>,
    /// A firing waiting for the job's runs to end (`queue`), or for the runs it replaces to
    /// stop (`replace`).
    pub queued: Option<DateTime<Utc>>,
    /// The job's runs that have started and not ended, oldest first.
    pub active: Vec<RunSummary>,
}

/// Something for the agent to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CronAction {
    /// Start a run of the job, with this id, for this firing.
    Start { run: RunId, scheduled: DateTime<Utc> },
    /// Stop a run gracefully (SIGTERM, the grace period, SIGKILL).
    Stop { run: RunId },
}

/// What one event produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decisions {
    pub actions: Vec<CronAction>,
    /// Journal records, to be written with the state.
    pub records: Vec<FiringRecord>,
    /// When to tick next: when the next firing is due. `None`: never again.
    pub wake_at: Option<DateTime<Utc>>,
}

impl CronState {
    /// Decides every firing due by `now`. `max_starts` caps the runs one tick starts;
    /// `new_run` names a run about to be started.
    pub fn tick(
        &mut self,
        job: &CronJob<'_>,
        now: DateTime<Utc>,
        max_starts: u32,
        new_run: &mut dyn FnMut() -> RunId,
    ) -> Decisions {
        let mut out = Decisions::default();
        self.settle_queue(job, now, new_run, &mut out);
        let plan = plan_catch_up(job, self.last_considered, now, max_starts);
        if let Some(missed) = plan.missed {
            out.records.push(FiringRecord {
                job: job.name.clone(),
                scheduled: missed.first,
                decided_at: now,
                outcome: FiringOutcome::Missed {
                    count: missed.count,
                    last: missed.last,
                    suspended: job.recurrence.suspend,
                },
            });
        }
        for scheduled in plan.to_start {
            self.fire(job, scheduled, now, new_run, &mut out);
        }
        self.last_considered = Some(plan.last_considered);
        out.wake_at = self.wake_at(job);
        out
    }

    /// Someone asked for a run now, outside the schedule: decided like a firing scheduled
    /// `now`, so the job's concurrency policy applies to it as to any other.
    pub fn trigger(
        &mut self,
        job: &CronJob<'_>,
        now: DateTime<Utc>,
        new_run: &mut dyn FnMut() -> RunId,
    ) -> Decisions {
        let mut out = Decisions::default();
        self.fire(job, now, now, new_run, &mut out);
        out.wake_at = self.wake_at(job);
        out
    }

    /// One of the job's runs ended (or was found ended after a restart): the firing waiting
    /// for it may start.
    pub fn run_ended(
        &mut self,
        job: &CronJob<'_>,
        run: &RunId,
        now: DateTime<Utc>,
        new_run: &mut dyn FnMut() -> RunId,
    ) -> Decisions {
        let mut out = Decisions::default();
        self.active.retain(|r| &r.run != run);
        self.settle_queue(job, now, new_run, &mut out);
        out.wake_at = self.wake_at(job);
        out
    }

    /// The job's schedule (or time zone, or jitter) was changed: the new one applies from
    /// `now`, and catches nothing up from before the change.
    pub fn reschedule(&mut self, job: &CronJob<'_>, now: DateTime<Utc>) {
        let horizon = earlier(now, job.offset);
        self.last_considered = Some(self.last_considered.map_or(horizon, |last| last.max(horizon)));
    }

    /// Stops decided before a restart, which may not have been carried out. Stopping a run
    /// twice is harmless; not stopping it would leave the replacing firing waiting forever.
    pub fn pending_stops(&self) -> Vec<CronAction> {
        self.active
            .iter()
            .filter(|r| r.stopping)
            .map(|r| CronAction::Stop { run: r.run.clone() })
            .collect()
    }

    /// When the job's next firing is due, once it has ticked.
    pub fn wake_at(&self, job: &CronJob<'_>) -> Option<DateTime<Utc>> {
        job.next_due(self.last_considered?).map(|due| due.at)
    }

    fn fire(
        &mut self,
        job: &CronJob<'_>,
        scheduled: DateTime<Utc>,
        now: DateTime<Utc>,
        new_run: &mut dyn FnMut() -> RunId,
        out: &mut Decisions,
    ) {
        match on_fire(job.recurrence.concurrency, &self.active, self.queued.is_some()) {
            OverlapDecision::Start => self.start(job, scheduled, now, new_run, out),
            OverlapDecision::Skip { reason } => {
                out.records.push(skipped(job, scheduled, now, reason))
            }
            OverlapDecision::ReplaceThenStart { stop } => {
                for run in stop {
                    if let Some(active) = self.active.iter_mut().find(|r| r.run == run) {
                        active.stopping = true;
                    }
                    out.actions.push(CronAction::Stop { run });
                }
                if let Some(waiting) = self.queued.replace(scheduled) {
                    out.records.push(skipped(job, waiting, now, SkipReason::Superseded));
                }
            }
            OverlapDecision::Queue => self.queued = Some(scheduled),
        }
    }

    fn settle_queue(
        &mut self,
        job: &CronJob<'_>,
        now: DateTime<Utc>,
        new_run: &mut dyn FnMut() -> RunId,
        out: &mut Decisions,
    ) {
        match on_run_finished(&self.active, self.queued, |t| job.may_start(t, now)) {
            AfterRun::Nothing => {}
            AfterRun::Start { scheduled } => {
                self.queued = None;
                self.start(job, scheduled, now, new_run, out);
            }
            AfterRun::Drop { scheduled, reason } => {
                self.queued = None;
                out.records.push(skipped(job, scheduled, now, reason));
            }
        }
    }

    fn start(
        &mut self,
        job: &CronJob<'_>,
        scheduled: DateTime<Utc>,
        now: DateTime<Utc>,
        new_run: &mut dyn FnMut() -> RunId,
        out: &mut Decisions,
    ) {
        let run = new_run();
        self.active.push(RunSummary { run: run.clone(), scheduled, stopping: false });
        out.records.push(FiringRecord {
            job: job.name.clone(),
            scheduled,
            decided_at: now,
            outcome: FiringOutcome::started(run.clone(), job.due(scheduled), now, job.late_after()),
        });
        out.actions.push(CronAction::Start { run, scheduled });
    }
}

fn skipped(
    job: &CronJob<'_>,
    scheduled: DateTime<Utc>,
    now: DateTime<Utc>,
    reason: SkipReason,
) -> FiringRecord {
    FiringRecord {
        job: job.name.clone(),
        scheduled,
        decided_at: now,
        outcome: FiringOutcome::Skipped { reason },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::scheduler::cron::testutil::{recurrence, utc};
    use crate::spec::{CatchUp, Concurrency, Recurrence};
    use crate::vocab::JobName;

    /// A job every ten minutes with the given policy, and a run counter.
    struct Agent {
        name: JobName,
        recurrence: Recurrence,
        runs: u32,
    }

    impl Agent {
        fn new(concurrency: Concurrency) -> Agent {
            Agent {
                name: JobName::parse("job").unwrap(),
                recurrence: Recurrence { concurrency, ..recurrence("*/10 * * * *") },
                runs: 0,
            }
        }

        fn job(&self) -> CronJob<'_> {
            utc_job(&self.name, &self.recurrence)
        }

        /// Calls `f` with the job and a namer that goes on from the last run named: r1, r2, …
        fn decide(
            &mut self,
            f: impl FnOnce(&CronJob<'_>, &mut dyn FnMut() -> RunId) -> Decisions,
        ) -> Decisions {
            let Agent { name, recurrence, runs } = self;
            f(&utc_job(name, recurrence), &mut || {
                *runs += 1;
                RunId::new(format!("r{runs}"))
            })
        }

        fn tick(&mut self, state: &mut CronState, now: &str) -> Decisions {
            self.decide(|job, new_run| state.tick(job, utc(now), 100, new_run))
        }

        fn ended(&mut self, state: &mut CronState, run: &str, now: &str) -> Decisions {
            self.decide(|job, new_run| state.run_ended(job, &RunId::new(run), utc(now), new_run))
        }
    }

    fn utc_job<'a>(name: &'a JobName, recurrence: &'a Recurrence) -> CronJob<'a> {
        CronJob { name, recurrence, tz: chrono_tz::UTC, offset: Duration::ZERO }
    }

    /// A job's state after a tick at `last`.
    fn considered_at(last: &str) -> CronState {
        CronState { last_considered: Some(utc(last)), ..Default::default() }
    }

    /// What the agent would read back after a restart.
    fn restart(state: &CronState) -> CronState {
        serde_json::from_str(&serde_json::to_string(state).unwrap()).unwrap()
    }

    fn start(run: &str, scheduled: &str) -> CronAction {
        CronAction::Start { run: RunId::new(run), scheduled: utc(scheduled) }
    }

    fn outcomes(out: &Decisions) -> Vec<FiringOutcome> {
        out.records.iter().map(|r| r.outcome.clone()).collect()
    }

    #[test]
    fn the_first_tick_catches_nothing_up_and_says_when_to_wake() {
        let mut agent = Agent::new(Concurrency::Forbid);
        let mut state = CronState::default();
        let out = agent.tick(&mut state, "2026-05-01T12:05:00Z");
        assert_eq!(
            out,
            Decisions { wake_at: Some(utc("2026-05-01T12:10:00Z")), ..Default::default() }
        );
        assert_eq!(state.last_considered, Some(utc("2026-05-01T12:05:00Z")));
        let out = agent.tick(&mut state, "2026-05-01T12:10:00.003Z");
        assert_eq!(out.actions, vec![start("r1", "2026-05-01T12:10:00Z")]);
        assert_eq!(outcomes(&out), vec![FiringOutcome::Started { run: RunId::new("r1") }]);
        assert_eq!(out.wake_at, Some(utc("2026-05-01T12:20:00Z")));
    }

    #[test]
    fn a_restart_never_runs_a_firing_twice() {
        let mut agent = Agent::new(Concurrency::Allow);
        let mut state = considered_at("2026-05-01T12:05:00Z");
        let out = agent.tick(&mut state, "2026-05-01T12:10:00Z");
        assert_eq!(out.actions, vec![start("r1", "2026-05-01T12:10:00Z")]);
        // The agent persisted, crashed before or after starting r1, and came back.
        let mut state = restart(&state);
        let out = agent.tick(&mut state, "2026-05-01T12:10:30Z");
        assert!(out.actions.is_empty() && out.records.is_empty(), "{out:?}");
        assert_eq!(out.wake_at, Some(utc("2026-05-01T12:20:00Z")));
    }

    #[test]
    fn forbid_remembers_the_running_run_across_a_restart() {
        let mut agent = Agent::new(Concurrency::Forbid);
        let mut state = considered_at("2026-05-01T12:05:00Z");
        agent.tick(&mut state, "2026-05-01T12:10:00Z");
        let mut state = restart(&state);
        let out = agent.tick(&mut state, "2026-05-01T12:20:00Z");
        assert!(out.actions.is_empty());
        assert_eq!(outcomes(&out), vec![FiringOutcome::Skipped { reason: SkipReason::Overlap }]);
        assert_eq!(out.records[0].scheduled, utc("2026-05-01T12:20:00Z"));
        let out = agent.ended(&mut state, "r1", "2026-05-01T12:25:00Z");
        assert_eq!(out.actions, vec![]);
        let out = agent.tick(&mut state, "2026-05-01T12:30:00Z");
        assert_eq!(out.actions, vec![start("r2", "2026-05-01T12:30:00Z")]);
    }

    #[test]
    fn queue_holds_one_firing_across_a_restart() {
        let mut agent = Agent::new(Concurrency::Queue);
        let mut state = considered_at("2026-05-01T12:05:00Z");
        agent.tick(&mut state, "2026-05-01T12:10:00Z");
        let out = agent.tick(&mut state, "2026-05-01T12:20:00Z");
        assert!(out.actions.is_empty() && out.records.is_empty());
        assert_eq!(state.queued, Some(utc("2026-05-01T12:20:00Z")));
        let out = agent.tick(&mut state, "2026-05-01T12:30:00Z");
        assert_eq!(outcomes(&out), vec![FiringOutcome::Skipped { reason: SkipReason::QueueFull }]);
        let mut state = restart(&state);
        let out = agent.ended(&mut state, "r1", "2026-05-01T12:34:00Z");
        assert_eq!(out.actions, vec![start("r2", "2026-05-01T12:20:00Z")]);
        assert_eq!(
            outcomes(&out),
            vec![FiringOutcome::Late {
                run: RunId::new("r2"),
                delay: Duration::from_secs(14 * 60)
            }]
        );
        assert_eq!(state.queued, None);
        assert_eq!(state.active.len(), 1);
    }

    #[test]
    fn a_queued_firing_past_its_deadline_is_dropped() {
        let mut agent = Agent::new(Concurrency::Queue);
        agent.recurrence.starting_deadline = Some(Duration::from_secs(300));
        let mut state = considered_at("2026-05-01T12:05:00Z");
        agent.tick(&mut state, "2026-05-01T12:10:00Z");
        agent.tick(&mut state, "2026-05-01T12:20:00Z");
        // At 12:30 the 12:20 firing is 10 minutes old: dropped, and 12:30 takes the slot.
        let out = agent.tick(&mut state, "2026-05-01T12:30:00Z");
        assert_eq!(
            outcomes(&out),
            vec![FiringOutcome::Skipped { reason: SkipReason::DeadlineExceeded }]
        );
        assert_eq!(out.records[0].scheduled, utc("2026-05-01T12:20:00Z"));
        assert_eq!(state.queued, Some(utc("2026-05-01T12:30:00Z")));
        let out = agent.ended(&mut state, "r1", "2026-05-01T12:36:00Z");
        assert_eq!(
            outcomes(&out),
            vec![FiringOutcome::Skipped { reason: SkipReason::DeadlineExceeded }]
        );
        assert!(out.actions.is_empty());
    }

    #[test]
    fn replace_stops_then_starts_and_the_newest_firing_wins() {
        let mut agent = Agent::new(Concurrency::Replace);
        let mut state = considered_at("2026-05-01T12:05:00Z");
        agent.tick(&mut state, "2026-05-01T12:10:00Z");
        let out = agent.tick(&mut state, "2026-05-01T12:20:00Z");
        assert_eq!(out.actions, vec![CronAction::Stop { run: RunId::new("r1") }]);
        assert!(state.active[0].stopping);
        // The agent restarts before r1 has stopped: it asks again.
        let mut state = restart(&state);
        assert_eq!(state.pending_stops(), vec![CronAction::Stop { run: RunId::new("r1") }]);
        // r1 ignores SIGTERM for ten minutes; the 12:30 firing replaces the waiting one.
        let out = agent.tick(&mut state, "2026-05-01T12:30:00Z");
        assert!(out.actions.is_empty());
        assert_eq!(outcomes(&out), vec![FiringOutcome::Skipped { reason: SkipReason::Superseded }]);
        assert_eq!(out.records[0].scheduled, utc("2026-05-01T12:20:00Z"));
        let out = agent.ended(&mut state, "r1", "2026-05-01T12:30:20Z");
        assert_eq!(out.actions, vec![start("r2", "2026-05-01T12:30:00Z")]);
        assert_eq!(outcomes(&out), vec![FiringOutcome::Started { run: RunId::new("r2") }]);
    }

    #[test]
    fn downtime_is_one_missed_record_and_a_late_start() {
        let mut agent = Agent::new(Concurrency::Forbid);
        let mut state = considered_at("2026-05-01T12:05:00Z");
        let out = agent.tick(&mut state, "2026-05-03T09:01:00Z");
        assert_eq!(out.actions, vec![start("r1", "2026-05-03T09:00:00Z")]);
        let missed = &out.records[0];
        assert_eq!(missed.scheduled, utc("2026-05-01T12:10:00Z"));
        assert_eq!(
            missed.outcome,
            FiringOutcome::Missed {
                count: 269,
                last: utc("2026-05-03T08:50:00Z"),
                suspended: false
            }
        );
        assert_eq!(
            out.records[1].outcome,
            FiringOutcome::Late { run: RunId::new("r1"), delay: Duration::from_secs(60) }
        );
        assert_eq!(out.wake_at, Some(utc("2026-05-03T09:10:00Z")));
    }

    #[test]
    fn a_suspended_job_records_its_firings_as_missed_while_suspended() {
        let mut agent = Agent::new(Concurrency::Forbid);
        agent.recurrence.suspend = true;
        agent.recurrence.catch_up = CatchUp::All { max: 10 };
        let mut state = considered_at("2026-05-01T12:05:00Z");
        let out = agent.tick(&mut state, "2026-05-01T12:30:00Z");
        assert!(out.actions.is_empty());
        assert_eq!(
            outcomes(&out),
            vec![FiringOutcome::Missed {
                count: 3,
                last: utc("2026-05-01T12:30:00Z"),
                suspended: true
            }]
        );
        agent.recurrence.suspend = false;
        let out = agent.tick(&mut state, "2026-05-01T12:31:00Z");
        assert!(out.actions.is_empty() && out.records.is_empty(), "resuming starts nothing old");
    }

    #[test]
    fn jitter_delays_the_wake_up_not_the_scheduled_time() {
        let agent = Agent::new(Concurrency::Forbid);
        let mut state = considered_at("2026-05-01T12:05:00Z");
        let job = CronJob { offset: Duration::from_secs(42), ..agent.job() };
        assert_eq!(state.wake_at(&job), Some(utc("2026-05-01T12:10:42Z")));
        // Woken early: the firing is not due yet.
        let out = state.tick(&job, utc("2026-05-01T12:10:30Z"), 100, &mut || RunId::new("x"));
        assert!(out.actions.is_empty());
        assert_eq!(out.wake_at, Some(utc("2026-05-01T12:10:42Z")));
        let out = state.tick(&job, utc("2026-05-01T12:10:42Z"), 100, &mut || RunId::new("x"));
        assert_eq!(out.actions, vec![start("x", "2026-05-01T12:10:00Z")]);
        assert_eq!(outcomes(&out), vec![FiringOutcome::Started { run: RunId::new("x") }]);
    }

    #[test]
    fn a_new_schedule_applies_from_now() {
        let mut agent = Agent::new(Concurrency::Forbid);
        let mut state = considered_at("2026-05-01T12:00:00Z");
        // At 12:33 the job file changes from */10 to */15; 12:15 and 12:30 are not owed.
        agent.recurrence = recurrence("*/15 * * * *");
        state.reschedule(&agent.job(), utc("2026-05-01T12:33:00Z"));
        let out = agent.tick(&mut state, "2026-05-01T12:33:00Z");
        assert!(out.actions.is_empty() && out.records.is_empty(), "{out:?}");
        assert_eq!(out.wake_at, Some(utc("2026-05-01T12:45:00Z")));
        // A clock that went back does not move it back.
        state.reschedule(&agent.job(), utc("2026-05-01T11:00:00Z"));
        assert_eq!(state.last_considered, Some(utc("2026-05-01T12:33:00Z")));
    }

    #[test]
    fn the_state_is_plain_json() {
        let state = CronState {
            last_considered: Some(utc("2026-05-01T12:05:00Z")),
            queued: Some(utc("2026-05-01T12:10:00Z")),
            active: vec![RunSummary {
                run: RunId::new("r1"),
                scheduled: utc("2026-05-01T12:00:00Z"),
                stopping: false,
            }],
        };
        assert_eq!(
            serde_json::to_value(&state).unwrap(),
            serde_json::json!({
                "last_considered": "2026-05-01T12:05:00Z",
                "queued": "2026-05-01T12:10:00Z",
                "active": [{"run": "r1", "scheduled": "2026-05-01T12:00:00Z", "stopping": false}],
            })
        );
    }
}
