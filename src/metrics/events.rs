//! One typed event per place in the agent where something countable
//! happens: emitting it writes the log line and counts the metric together,
//! so the two cannot drift apart.
//!
//! ```ignore
//! RunPreempted { job: &job, run: &victim, by: &winner, mode: PreemptKind::Suspend }
//!     .emit(metrics.agent());
//! ```

use std::time::Duration;

use chrono::SecondsFormat;

use tracing::{debug, info, warn};

use super::agent::{
    AgentMetrics, CronOutcome, EndState, HttpDeadline, LabelValue, OomAction, OomReached,
    PlacementOutcome, PreemptKind, PressureActionKind, RefusedReason,
};
use crate::placement::PlacementError;
use crate::scheduler::cron::{FiringOutcome, FiringRecord};
use crate::vocab::JobName;
use crate::vocab::RunId;

/// Something that happened, logged and counted in one call.
pub trait Event {
    fn emit(&self, metrics: &AgentMetrics);
}

/// A queued run was given CPUs and memory.
#[derive(Debug)]
pub struct RunPlaced<'a> {
    pub job: &'a JobName,
    pub run: &'a RunId,
    /// Time it spent in the queue.
    pub waited: Duration,
}

impl Event for RunPlaced<'_> {
    fn emit(&self, metrics: &AgentMetrics) {
        debug!(job = %self.job, run = %self.run, waited_ms = self.waited.as_millis(), "placed");
        metrics.placement_decisions.inc(PlacementOutcome::Placed);
        metrics.scheduling_delay.observe(self.waited.as_secs_f64());
    }
}

/// A placement attempt for a queued run did not succeed.
#[derive(Debug)]
pub struct PlacementFailed<'a> {
    pub job: &'a JobName,
    pub run: &'a RunId,
    pub error: &'a PlacementError,
}

impl Event for PlacementFailed<'_> {
    fn emit(&self, metrics: &AgentMetrics) {
        let outcome = PlacementOutcome::of_error(self.error);
        match outcome {
            // Routine on a busy node: the run waits for room.
            PlacementOutcome::NoFit => {
                debug!(job = %self.job, run = %self.run, "not placed: {}", self.error)
            }
            _ => warn!(job = %self.job, run = %self.run, "placement refused: {}", self.error),
        }
        metrics.placement_decisions.inc(outcome);
    }
}

/// A run's process is running in its container.
#[derive(Debug)]
pub struct RunLaunched<'a> {
    pub job: &'a JobName,
    pub run: &'a RunId,
    /// From placement to running.
    pub took: Duration,
}

impl Event for RunLaunched<'_> {
    fn emit(&self, metrics: &AgentMetrics) {
        info!(job = %self.job, run = %self.run, took_ms = self.took.as_millis(), "launched");
        metrics.launch_latency.observe(self.took.as_secs_f64());
    }
}

/// A run was preempted to make room for a higher-priority one.
#[derive(Debug)]
pub struct RunPreempted<'a> {
    pub job: &'a JobName,
    pub run: &'a RunId,
    /// The run it makes room for.
    pub by: &'a RunId,
    pub mode: PreemptKind,
}

impl Event for RunPreempted<'_> {
    fn emit(&self, metrics: &AgentMetrics) {
        info!(job = %self.job, run = %self.run, by = %self.by, mode = self.mode.as_str(), "preempted");
        metrics.preemptions.inc(self.mode);
    }
}

/// A run reached its memory limit and the OOM policy acted.
#[derive(Debug)]
pub struct OomHandled<'a> {
    pub job: &'a JobName,
    pub run: &'a RunId,
    pub action: OomAction,
    pub reached: OomReached,
}

impl Event for OomHandled<'_> {
    fn emit(&self, metrics: &AgentMetrics) {
        let (action, reached) = (self.action.as_str(), self.reached.as_str());
        warn!(job = %self.job, run = %self.run, action, reached, "out of memory");
        metrics.oom_events.inc(self.action, self.reached);
    }
}

/// Node-pressure protection froze, requeued or released a run.
#[derive(Debug)]
pub struct PressureActed<'a> {
    pub job: &'a JobName,
    pub run: &'a RunId,
    pub action: PressureActionKind,
    /// The reading that caused it.
    pub reading: &'a str,
}

impl Event for PressureActed<'_> {
    fn emit(&self, metrics: &AgentMetrics) {
        let action = self.action.as_str();
        match self.action {
            PressureActionKind::Release => {
                info!(job = %self.job, run = %self.run, action, "memory pressure over: {}", self.reading)
            }
            _ => {
                warn!(job = %self.job, run = %self.run, action, "memory pressure: {}", self.reading)
            }
        }
        metrics.pressure_actions.inc(self.action);
    }
}

/// A cron firing was decided (and is on record).
#[derive(Debug)]
pub struct CronFired<'a> {
    pub record: &'a FiringRecord,
}

impl CronFired<'_> {
    fn log(&self) {
        let record = self.record;
        let job = &record.job;
        let scheduled = record.scheduled.to_rfc3339_opts(SecondsFormat::Millis, true);
        match &record.outcome {
            FiringOutcome::Started { run } => {
                info!(job = %job, run = %run, scheduled = %scheduled, "firing: run {run} queued")
            }
            FiringOutcome::Late { run, delay } => info!(
                job = %job, run = %run, scheduled = %scheduled, delay_ms = delay.as_millis() as u64,
                "late firing: run {run} queued {:.1}s after it was due", delay.as_secs_f64()
            ),
            FiringOutcome::Skipped { reason } => {
                info!(job = %job, scheduled = %scheduled, reason = reason.as_str(), "firing skipped: {reason}")
            }
            FiringOutcome::Missed { count, last, suspended } => {
                let last = last.to_rfc3339_opts(SecondsFormat::Millis, true);
                let why = if *suspended {
                    "the job was suspended"
                } else {
                    "they fell due while the agent was down (or the clock jumped), and catch_up \
                     or starting_deadline does not start them"
                };
                warn!(
                    job = %job, missed = count, first = %scheduled, last = %last,
                    "{count} firing(s) missed, {scheduled} to {last}: {why}"
                )
            }
        }
    }
}

impl Event for CronFired<'_> {
    fn emit(&self, metrics: &AgentMetrics) {
        self.log();
        let (outcome, firings) = CronOutcome::of(&self.record.outcome);
        metrics.cron_firings.inc_by(outcome, firings);
    }
}

/// A run ended for good.
#[derive(Debug)]
pub struct RunEnded<'a> {
    pub job: &'a JobName,
    pub run: &'a RunId,
    pub state: EndState,
    /// Why, in words (the final phase's reason).
    pub detail: &'a str,
}

impl Event for RunEnded<'_> {
    fn emit(&self, metrics: &AgentMetrics) {
        match self.state {
            EndState::Succeeded => info!(job = %self.job, run = %self.run, "succeeded"),
            _ => warn!(
                job = %self.job, run = %self.run, state = self.state.as_str(),
                "ended: {}", self.detail
            ),
        }
        metrics.runs_ended.inc(self.state);
    }
}

/// The HTTP endpoint turned a connection away. Logged at debug level: a
/// flood is thousands of these, and the counter is what an alert watches.
pub struct HttpConnectionRefused<'a> {
    pub reason: RefusedReason,
    /// The peer, when the connection was accepted; otherwise the error.
    pub detail: &'a dyn std::fmt::Display,
}

impl Event for HttpConnectionRefused<'_> {
    fn emit(&self, metrics: &AgentMetrics) {
        debug!(reason = self.reason.as_str(), "HTTP connection refused: {}", self.detail);
        metrics.http_refused.inc(self.reason);
    }
}

/// The HTTP endpoint closed a connection at one of its deadlines.
#[derive(Debug)]
pub struct HttpConnectionTimedOut {
    pub peer: std::net::SocketAddr,
    pub phase: HttpDeadline,
}

impl Event for HttpConnectionTimedOut {
    fn emit(&self, metrics: &AgentMetrics) {
        debug!(peer = %self.peer, phase = self.phase.as_str(), "HTTP connection closed at its deadline");
        metrics.http_timed_out.inc(self.phase);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn each_event_counts_where_it_should() {
        let mut registry = Registry::default();
        let metrics = AgentMetrics::register(&mut registry);
        let job = JobName::parse("etl").unwrap();
        let run = RunId::new("etl-1");
        RunPlaced { job: &job, run: &run, waited: Duration::from_millis(20) }.emit(&metrics);
        let full = PlacementError::NoFit { owner: run.clone(), reason: "full".into() };
        PlacementFailed { job: &job, run: &run, error: &full }.emit(&metrics);
        RunLaunched { job: &job, run: &run, took: Duration::from_millis(2) }.emit(&metrics);
        RunPreempted { job: &job, run: &run, by: &run, mode: PreemptKind::Requeue }.emit(&metrics);
        OomHandled { job: &job, run: &run, action: OomAction::Grow, reached: OomReached::Paused }
            .emit(&metrics);
        let missed = FiringOutcome::Missed {
            count: 3,
            last: chrono::DateTime::UNIX_EPOCH,
            suspended: false,
        };
        let record = FiringRecord {
            job: job.clone(),
            scheduled: chrono::DateTime::UNIX_EPOCH,
            decided_at: chrono::DateTime::UNIX_EPOCH,
            outcome: missed,
        };
        CronFired { record: &record }.emit(&metrics);
        RunEnded { job: &job, run: &run, state: EndState::Failed, detail: "exit 1" }.emit(&metrics);
        let peer: std::net::SocketAddr = "127.0.0.1:4000".parse().unwrap();
        HttpConnectionRefused { reason: RefusedReason::MaxConnections, detail: &peer }
            .emit(&metrics);
        HttpConnectionTimedOut { peer, phase: HttpDeadline::Idle }.emit(&metrics);

        assert_eq!(metrics.placement_decisions.get(PlacementOutcome::Placed), 1);
        assert_eq!(metrics.placement_decisions.get(PlacementOutcome::NoFit), 1);
        assert_eq!(metrics.placement_decisions.get(PlacementOutcome::Refused), 0);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("\nscheduling_delay_seconds_count 1\n"), "{text}");
        assert!(text.contains("\nscheduling_delay_seconds_sum 0.02\n"), "{text}");
        assert!(text.contains("\nlaunch_latency_seconds_count 1\n"), "{text}");
        assert_eq!(metrics.preemptions.get(PreemptKind::Requeue), 1);
        assert_eq!(metrics.oom_events.get(OomAction::Grow, OomReached::Paused), 1);
        assert_eq!(metrics.oom_events.get(OomAction::Grow, OomReached::Killed), 0);
        assert_eq!(metrics.cron_firings.get(CronOutcome::Missed), 3);
        assert_eq!(metrics.runs_ended.get(EndState::Failed), 1);
        assert_eq!(metrics.http_refused.get(RefusedReason::MaxConnections), 1);
        assert_eq!(metrics.http_refused.get(RefusedReason::AcceptError), 0);
        assert_eq!(metrics.http_timed_out.get(HttpDeadline::Idle), 1);
        assert_eq!(metrics.http_timed_out.get(HttpDeadline::Header), 0);
        for state in EndState::ALL {
            if *state != EndState::Failed {
                assert_eq!(metrics.runs_ended.get(*state), 0);
            }
        }
    }
}
