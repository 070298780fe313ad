//! What a report from a run's operation task means for the run.
//!
//! [`events`] is the meaning itself, the events for the run state machine;
//! the agent and `corral run` both read their runs' reports through it.
//! `read` takes a report about the run's current attempt (older ones are
//! dropped before) and notes on the run what it says (the launch, how the
//! attempt ended); it returns what goes on record before anything else, and
//! the events for the state machine, which the supervisor records and
//! carries out.

use tracing::warn;

use crate::scheduler::{Event, ExitStatus, Phase, RunState};
use crate::store::LaunchInfo;
use crate::vocab::RunId;

use super::orders::Order;
use super::runs::{exit_info, LaunchState, Run};
use super::runtime::{FinalStats, Observed, Operation};

/// What a report asks of the supervisor, in this order.
#[derive(Debug, Default)]
pub(super) struct Reading {
    /// The launch, on record before the state machine hears of it.
    pub launch: Option<LaunchInfo>,
    /// The exit status the shim saw, on record before the run's end.
    pub exit: Option<ExitStatus>,
    /// The run is no victim of a preemption under way any more.
    pub preempted: bool,
    pub orders: Vec<Order>,
}

/// The events report `what` about a run's current attempt means, in order,
/// for the run in `state`. `owner` names who manages the run, in the reason
/// of a cgroup removed behind its back.
pub fn events(what: &Observed, state: &RunState, owner: &str) -> Vec<Event> {
    match what {
        Observed::Launched(launch) => {
            vec![Event::Launched { pid: launch.init_pid, start_time: launch.pid_start_time }]
        }
        Observed::LaunchFailed(detail) => vec![Event::LaunchFailed { detail: detail.clone() }],
        Observed::Exited { status, stats, .. } => {
            end_events(*status, stats.oom_kills.unwrap_or(0), state)
        }
        // Lost, not Exited: the job did not end by itself, and what ended
        // it is known only from the missing cgroup.
        Observed::CgroupRemoved { status, .. } => vec![Event::Lost {
            detail: format!("{status} after its cgroup was removed by someone other than {owner}"),
        }],
        Observed::Lost(detail) => vec![Event::Lost { detail: detail.clone() }],
        Observed::Oom => vec![Event::OomNotified],
        Observed::OomKilled => vec![Event::OomKilled],
        Observed::Frozen => vec![Event::Frozen],
        Observed::Failed(error) => match (&state.phase, error.op) {
            // Removed behind its owner's back, which killed what ran in it:
            // the run's end is on its way from its watch and says so; acting
            // on the run now would only fail again.
            _ if error.is_cgroup_gone() => Vec::new(),
            // A freeze that found the job already killed by the kernel (v2,
            // faster than its watcher): a kill, never a pause to decide on.
            (_, Operation::Freeze) if error.is_oom_kill() => vec![Event::OomKilled],
            // The freeze did not happen: the run is not suspended after all.
            (Phase::Suspended { frozen: false, .. }, Operation::Freeze) => vec![Event::Resume],
            // Paused at its limit it cannot run anyway: decide now.
            (Phase::OomPaused { frozen: false }, Operation::Freeze) => vec![Event::Frozen],
            (_, Operation::Watch) => vec![Event::WatchFailed { detail: error.cause.to_string() }],
            _ => Vec::new(),
        },
    }
}

/// The events of an end with `status` after `oom_kills` kernel OOM kills:
/// one the kernel's notification did not report goes first, since a kernel
/// OOM kill is an OOM, never an unexplained signal.
fn end_events(status: ExitStatus, oom_kills: u64, state: &RunState) -> Vec<Event> {
    let unreported_oom_kill = oom_kills > 0 && !state.oom_killed;
    unreported_oom_kill
        .then_some(Event::OomKilled)
        .into_iter()
        .chain([Event::Exited(status)])
        .collect()
}

/// What feeds run `id` (`run`, unless it is over), whose processes ended
/// with `status`, the accounting of the end already on the run (see
/// [`end_events`]).
pub(super) fn ended(id: &RunId, run: Option<&Run>, status: ExitStatus) -> Vec<Order> {
    let events = match run {
        Some(run) => {
            let oom_kills = run.exit.as_ref().map_or(0, |e| e.oom_kills);
            end_events(status, oom_kills, &run.state)
        }
        None => vec![Event::Exited(status)],
    };
    events.into_iter().map(|event| Order::Feed(id.clone(), event)).collect()
}

/// What report `what` about run `id`'s current attempt means for `run`.
pub(super) fn read(id: &RunId, run: &mut Run, what: Observed) -> Reading {
    let mut reading = Reading::default();
    match &what {
        Observed::Launched(launch) => {
            run.launch = LaunchState::Launched(launch.clone());
            reading.launch = Some(launch.clone());
        }
        Observed::LaunchFailed(detail) => {
            run.launch = LaunchState::NotStarted;
            warn!(parent: &run.span, "launch failed: {detail}");
        }
        // Decided when it is reached (see [`ended`]), with the accounting
        // noted on the run here.
        Observed::Exited { status, at, stats } => {
            run.exit = Some(exit_info(*status, *at, *stats));
            reading.orders.push(Order::Exited(id.clone(), *status));
            return reading;
        }
        // The exit status the shim saw goes on record first, as for any
        // end; the accounting went with the cgroup.
        Observed::CgroupRemoved { status, at } => {
            run.exit = Some(exit_info(*status, *at, FinalStats::default()));
            reading.exit = Some(*status);
        }
        Observed::Failed(error) => {
            warn!(parent: &run.span, "{error}");
            // A freeze that did not happen ends the preemption it was for.
            reading.preempted = error.op == Operation::Freeze
                && !error.is_cgroup_gone()
                && matches!(run.state.phase, Phase::Suspended { frozen: false, .. });
        }
        _ => {}
    }
    let events = events(&what, &run.state, "the agent");
    reading.orders = events.into_iter().map(|event| Order::Feed(id.clone(), event)).collect();
    reading
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::agent::runs::testing;
    use crate::store::ExitInfo;
    use crate::vocab::Timestamp;

    const RUNNING: Phase = Phase::Running { since: Timestamp::EPOCH };

    fn feeds(orders: &[Order]) -> Vec<&'static str> {
        orders
            .iter()
            .map(|o| match o {
                Order::Feed(_, event) => event.name(),
                Order::Exited(..) => "exited (to decide)",
                _ => "other",
            })
            .collect()
    }

    fn exit_with(oom_kills: u64) -> ExitInfo {
        ExitInfo {
            status: ExitStatus::Signal(9),
            exited_at: Timestamp::EPOCH,
            peak_memory: None,
            oom_kills,
            cpu_seconds: 0.0,
        }
    }

    #[tokio::test]
    async fn an_oom_kill_the_kernel_did_not_report_goes_before_the_exit() {
        let id = RunId::new("a-1");
        let mut run = testing::run("a-1", RUNNING, 50);
        run.exit = Some(exit_with(1));
        let status = ExitStatus::Signal(9);
        assert_eq!(feeds(&ended(&id, Some(&run), status)), ["oom-killed", "exited"]);
        // Reported already: counted once.
        run.state.oom_killed = true;
        assert_eq!(feeds(&ended(&id, Some(&run), status)), ["exited"]);
        run.state.oom_killed = false;
        run.exit = Some(exit_with(0));
        assert_eq!(feeds(&ended(&id, Some(&run), status)), ["exited"]);
        // A run that is over still hears of it, and ignores it.
        assert_eq!(feeds(&ended(&id, None, status)), ["exited"]);
    }

    #[tokio::test]
    async fn a_launch_goes_on_record_and_on_the_run_before_the_state_machine_hears_of_it() {
        let id = RunId::new("a-1");
        let mut run = testing::run("a-1", Phase::Placed, 50);
        let launch = LaunchInfo {
            shim_pid: 10,
            init_pid: 11,
            pid_start_time: 99,
            run_dir: PathBuf::from("/r"),
            launched_at: Timestamp::EPOCH,
        };
        let reading = read(&id, &mut run, Observed::Launched(launch.clone()));
        assert_eq!(reading.launch.as_ref(), Some(&launch));
        assert_eq!(run.launch, LaunchState::Launched(launch));
        assert_eq!(feeds(&reading.orders), ["launched"]);
        assert!(reading.exit.is_none() && !reading.preempted);
    }

    #[tokio::test]
    async fn a_removed_cgroup_records_the_shims_status_and_loses_the_run() {
        let id = RunId::new("a-1");
        let mut run = testing::run("a-1", RUNNING, 50);
        let status = ExitStatus::Signal(9);
        let reading = read(&id, &mut run, Observed::CgroupRemoved { status, at: Timestamp::EPOCH });
        assert_eq!(reading.exit, Some(status));
        assert_eq!(run.exit.as_ref().map(|e| e.status), Some(status));
        assert_eq!(feeds(&reading.orders), ["lost"]);
    }

    #[tokio::test]
    async fn an_exit_is_decided_when_it_is_reached() {
        let id = RunId::new("a-1");
        let mut run = testing::run("a-1", RUNNING, 50);
        let status = ExitStatus::Code(0);
        let what = Observed::Exited { status, at: Timestamp::EPOCH, stats: FinalStats::default() };
        let reading = read(&id, &mut run, what);
        assert_eq!(feeds(&reading.orders), ["exited (to decide)"]);
        assert!(reading.exit.is_none(), "a watched exit is recorded by its transition");
        assert_eq!(run.exit.as_ref().map(|e| e.status), Some(status));
    }

    #[tokio::test]
    async fn a_freeze_that_finds_an_oom_kill_is_the_kill_not_a_pause() {
        use super::super::runtime::{Cause, RuntimeError};
        let id = RunId::new("a-1");
        let failed =
            |cause: Cause| Observed::Failed(RuntimeError::new(Operation::Freeze, &id, cause));
        let paused = || testing::run("a-1", Phase::OomPaused { frozen: false }, 50);
        let killed = failed(Cause::OomKilledFirst { kills: 1 });
        assert_eq!(feeds(&read(&id, &mut paused(), killed).orders), ["oom-killed"]);
        // Any other failed freeze at the limit still lets the policy decide.
        let timeout = failed(Cause::Cgroup(crate::cgroup::CgroupError::FreezerTimeout {
            path: "/sys/fs/cgroup/corral/a-1".into(),
            wanted: "frozen",
            state: "0".into(),
            timeout: std::time::Duration::from_secs(1),
        }));
        assert_eq!(feeds(&read(&id, &mut paused(), timeout).orders), ["frozen"]);
    }
}
