//! What the agent's components decide and the supervisor carries out.
//!
//! The job side ([`job_side`](super::job_side)), recovery
//! ([`recovery`](super::recovery)), the cron engine ([`cron`](super::cron))
//! and a run's reports ([`reports`](super::reports)) change no run's phase
//! themselves: they return orders, which the supervisor carries out in
//! sequence through its one path into the run state machine.

use crate::scheduler::{Event, ExitStatus};
use crate::vocab::{JobName, RunId};

use super::cron::{CronOrder, NewRun};
use super::job_side::JobStep;

/// What a component decided that the supervisor carries out, in order.
#[derive(Debug)]
pub(super) enum Order {
    /// Feed `event` to the run's state machine.
    Feed(RunId, Event),
    /// The run's processes ended with this status (an OOM kill its cgroup
    /// counted but no notification reported goes first).
    Exited(RunId, ExitStatus),
    /// Queue a run created in the store; `current`: as its job's run under way.
    Add { run: Box<NewRun>, current: bool },
    /// What a cron step put on record.
    Cron(CronOrder),
    /// Start a re-adopted run that was placed but never started.
    Relaunch(RunId),
    /// Give up the job's dynamic uid if nothing uses it any more.
    ReleaseUid(JobName),
    /// Decide the job side's step once the orders before it are carried out.
    Then(JobStep),
}
