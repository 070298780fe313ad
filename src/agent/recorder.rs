//! What goes on record about a run, and who hears of it once it is.
//!
//! The `Recorder` owns the feed followers of `corral events -f` read. A
//! transition is written to the store before any of its actions runs, and
//! announced only once it is on record, so that a follower never sees what
//! the store does not hold.

use tracing::{debug, info};

use crate::api::protocol::EventLine;
use crate::api::EventFeed;
use crate::scheduler::{Action, Event, RunEvent, RunState, Transition};
use crate::store::{Alongside, LaunchInfo, RunStore};
use crate::vocab::{JobName, RunId, Timestamp};

use super::error::AgentError;
use super::runs::{exit_on_record, run_span, Run};
use super::telemetry::Telemetry;

/// Puts what happens to runs on record, and announces it.
#[derive(Debug, Default)]
pub(super) struct Recorder {
    /// Every transition and run event, to followers of `corral events -f`.
    feed: EventFeed,
    /// A launch reported and not on record yet: it goes with the run's next
    /// transition, which the report leads to (see [`Recorder::launched`]).
    launch: Option<(RunId, LaunchInfo)>,
}

impl Recorder {
    pub fn feed(&self) -> &EventFeed {
        &self.feed
    }

    /// Run `id` of `job` was created in the store in state `initial`.
    pub fn created(&self, job: &JobName, id: &RunId, initial: &RunState) {
        self.announce(|| {
            // As the store records a creation.
            EventLine::transition(
                initial.since,
                job.as_str(),
                id.as_str(),
                None,
                initial.phase.name(),
                "created",
            )
        });
    }

    /// Run `id` was launched as `launch`: on record with the transition the
    /// report leads to, in the same commit, before any of its actions runs.
    /// What no transition took goes on record alone
    /// ([`take_unrecorded_launch`](Self::take_unrecorded_launch)).
    pub fn launched(&mut self, id: &RunId, launch: LaunchInfo) {
        self.launch = Some((id.clone(), launch));
    }

    /// The launch [`launched`](Self::launched) kept that no transition put
    /// on record.
    pub fn take_unrecorded_launch(&mut self) -> Option<(RunId, LaunchInfo)> {
        self.launch.take()
    }

    /// Puts `t`, what `event` does to run `id`, on record before any of its
    /// actions runs, in one commit with what it explains: the placement it
    /// makes or releases, the launch it follows and the exit it records
    /// (whoever reads a finished run from the store also finds its exit).
    /// Starts the span of a new attempt, and logs and announces the
    /// transition.
    pub fn transition<S: RunStore>(
        &mut self,
        store: &mut S,
        id: &RunId,
        run: &mut Run,
        event: &Event,
        t: &Transition,
        now: Timestamp,
    ) -> Result<(), AgentError> {
        let mut alongside = Alongside::default();
        if let Event::Placed(assignment) = event {
            // A run recorded as placed always has its placement on record.
            alongside.placement = Some(Some(assignment));
        }
        let mut exit = None;
        for action in &t.actions {
            match action {
                Action::RecordExit(status) => {
                    exit = Some(exit_on_record(run.exit.as_ref(), *status, now));
                }
                // Released with the transition that releases it (the
                // supervisor's release then changes only the ledger).
                Action::ReleasePlacement => alongside.placement = Some(None),
                _ => {}
            }
        }
        alongside.exit = exit.as_ref();
        let launch = self.launch.take_if(|(of, _)| of == id);
        alongside.launch = launch.as_ref().map(|(_, l)| l);
        if let Err(e) =
            store.record_transition_with(id, &run.state, &t.next, now, &t.reason, alongside)
        {
            // Not on record: still waiting for a transition to take it.
            self.launch = self.launch.take().or(launch);
            return Err(e.into());
        }
        if t.next.attempt != run.state.attempt {
            // The transition that starts an attempt is its span's first line.
            run.span = run_span(&run.job, id, t.next.attempt);
        }
        let from = run.state.phase.name();
        let to = t.next.phase.name();
        self.announce(|| {
            EventLine::transition(now, run.job.as_str(), id.as_str(), Some(from), to, &t.reason)
        });
        if from != to {
            info!(parent: &run.span, from = %from, to = %to, "{}", t.reason);
        } else {
            debug!(parent: &run.span, phase = to, "{}", t.reason);
        }
        Ok(())
    }

    /// Records something that happened to run `id`, counts it and announces
    /// it (`run`: the run, while the agent manages it).
    #[allow(clippy::too_many_arguments)]
    pub fn event<S: RunStore>(
        &self,
        store: &mut S,
        telemetry: Option<&Telemetry>,
        id: &RunId,
        run: Option<&Run>,
        event: &RunEvent,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), AgentError> {
        store.record_event(id, now, event, reason)?;
        if let Some(run) = run {
            if let Some(t) = telemetry {
                t.count_event(id, run, event);
            }
            self.announce(|| {
                EventLine::run_event(now, run.job.as_str(), id.as_str(), event.kind(), reason)
            });
        }
        Ok(())
    }

    /// Sends what `line` builds to followers of the feed.
    fn announce(&self, line: impl FnOnce() -> EventLine) {
        if self.feed.is_followed() {
            self.feed.announce(line());
        }
    }
}
