//! The scheduler's decision core: what happens to a run, event by event, and
//! when recurring jobs fire.
//!
//! Pure: nothing here reads the clock, the kernel or the store. The shell
//! reports [`Event`]s, calls [`transition()`] with the job's [`Policy`] and a
//! [`Moment`] (the time and a random draw), records the resulting state and
//! reason, and executes the [`Action`]s in order.
//!
//! - [`state`]: [`RunState`] and its [`Phase`]s; [`SuspendedBy`], who a run
//!   is frozen for (a run, or an operator).
//! - [`event`]: [`Event`], the facts the shell reports.
//! - [`action`]: [`Action`], what the shell must do; [`RunEvent`], what the
//!   run's history keeps.
//! - [`policy`]: [`Policy`]: restart, OOM, preemption, timeout, stop grace.
//! - [`backoff`]: [`backoff_delay()`], exponential with jitter.
//! - [`transition()`](mod@transition): the state machine.
//! - Times are [`crate::vocab::Timestamp`]s: milliseconds since the epoch, UTC.
//! - [`run_meta`]: a job spec mapped onto the [`Policy`] and the
//!   [`RunMeta`] its runs are managed with.
//! - [`queue`]: the queue of runs waiting for placement, by priority then
//!   arrival. [`preempt`]: one scheduling pass over it: which runs start or
//!   resume now, and whom to preempt for the most important one that does
//!   not fit. [`backfill`]: the reservation for the head of the queue, and
//!   which lower runs may start ahead of it.
//!   not fit.
//! - [`pressure`]: node-pressure protection: which run to freeze, requeue
//!   or release when the node's memory runs short, with hysteresis.
//! - [`cron`]: recurring jobs: when a schedule fires (daylight saving time
//!   included), what to catch up after downtime, what a firing does while the
//!   previous run is still going, and the per-job state and journal that make
//!   all of it survive a restart.
//!
//! # The run state machine
//!
//! ```text
//! Pending   ─Placed(a)──────────→ Placed      [Launch]
//! Placed    ─Launched───────────→ Running     [ArmTimer(deadline), ArmTimer(timeout signal)]
//! Running   ─TimeoutSignalDue───→ Running, signal sent on record  [RecordEvent, Signal]  (once per try)
//! Placed    ─LaunchFailed───────→ (ending: failed)
//! Running   ─Exited(0)──────────→ (ending: succeeded)       [RecordExit, ReleasePlacement]
//! Running   ─Exited(≠0)/Lost────→ (ending: failed)
//! Running   ─PreemptSuspend─────→ Suspended   [Freeze]      ─Frozen→ [YieldCpus]
//! Suspended ─Resume─────────────→ Running     [Thaw]        (or OomPaused if an OOM came meanwhile)
//! Running   ─OomNotified────────→ OomPaused   [Freeze]
//! OomPaused ─Frozen─────────────→ Running     [SetMemoryLimit, Thaw]   (grow, below the ceiling)
//!                               → Stopping(oom) [KillAll]              (otherwise)
//! Running   ─OomKilled──────────→ Stopping(oom) [KillAll]
//! Running   ─TimeoutElapsed─────→ Stopping(timeout)  [Terminate, ArmTimer(grace)]
//! Running   ─PreemptRequeue─────→ Stopping(requeue)  [Terminate, ArmTimer(grace)]
//! Running   ─RequeueRequested───→ Stopping(requeue)  [Terminate, ArmTimer(grace)]  (by hand)
//! any live  ─StopRequested──────→ Stopping(stop)     [Terminate, ArmTimer(grace)]
//! Stopping  ─GraceElapsed───────→ Stopping  [KillAll]
//! Stopping  ─Exited─────────────→ stop: Killed · timeout: (ending: failed)
//!                                 requeue: Pending (same attempt) · oom: (ending: oom)
//! (ending: oom)       → Pending, attempt+1, larger limit   [Enqueue]   (requeue/grow policy allows)
//!                     → (ending: failed)                               (otherwise)
//! (ending: failed)    → BackoffWaiting{until} [ArmTimer(backoff)]      (restart policy allows:
//!                                                  `RestartPolicy::decide`)
//!                     → Failed                [RecordOutcome]
//! (ending: succeeded) → BackoffWaiting (restart: always) | Succeeded
//! BackoffWaiting ─BackoffElapsed→ Pending     [Enqueue]
//! Pending | BackoffWaiting ─StopRequested→ Killed
//! any live  ─JobChanged(hard)───→ same phase, limit raised (never lowered
//!                                  once started)  [SetMemoryLimit | UpdateSettings, ArmTimer]
//! any live  ─JobRemoved{finish}─→ same phase, finishing: no restart, no OOM requeue
//!                                  (with processes; otherwise as StopRequested)
//! Placed    ─NeverStarted───────→ Placed under a new placement time
//! ```
//!
//! Growing in place also needs the room: [`Moment::memory_free`] is the free
//! memory on the run's nodes, and a growth that does not fit takes the kill
//! path with the refusal in the transition's reason.
//!
//! Succeeded, Failed and Killed are terminal: every event is refused there.
//! Every transition carries a reason for the run's history.
//!
//! Timeouts measure *running* time: time spent frozen, for preemption or at
//! the memory limit, does not count against the active deadline.

pub mod action;
pub mod backfill;
pub mod backoff;
pub mod cron;
pub mod dependency;
pub mod error;
pub mod event;
pub mod policy;
pub mod preempt;
pub mod pressure;
pub mod queue;
pub mod run_meta;
pub mod state;
pub mod transition;

/// Runs and journals name their job with the spec's validated name.
pub use action::{Action, RunEvent, Timer};
pub use backoff::{backoff_delay, Jitter};
pub use error::InvalidTransition;
pub use event::{Event, ExitStatus};
pub use policy::{NoRestart, OomPolicy, Policy, PreemptionMode, RestartPolicy};
pub use preempt::{Active, Step, Waiting};
pub use queue::RunQueue;
pub use run_meta::RunMeta;
pub use state::{
    FailReason, Outcome, Phase, RequeuedBy, RunState, StopIntent, StopReason, SuspendedBy,
};
pub use transition::{transition, Moment, Transition};
