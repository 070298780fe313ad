//! Kernel operations on one run, carried out one at a time and in order by a
//! task of the run's own, so the agent's loop never waits on the kernel.
//!
//! Order matters and is kept: a cpuset written before a thaw, a limit raised
//! before a thaw, a cgroup removed before the next attempt creates it again.
//! Outcomes the state machine needs (launched, frozen, failures) come back as
//! [`Observation`]s on the agent's channel, tagged with the attempt's epoch.

use std::sync::Arc;

use nix::sys::signal::Signal;
use tokio::sync::mpsc;
use tracing::{Instrument as _, Span};

use crate::spec::JobSignal;
use crate::store::LaunchInfo;
use crate::vocab::RunId;

use super::runtime::{LaunchPlan, LiveSettings, Observation, Observed, Runtime, Sink};

#[derive(Debug)]
pub enum Op {
    Launch(Box<LaunchPlan>),
    Watch(LaunchInfo),
    Freeze,
    Thaw,
    Update(Box<LiveSettings>),
    Signal(LaunchInfo, Signal),
    KillAll,
    Remove,
}

/// The kernel's signal for a job signal. Every [`JobSignal`] is one init
/// forwards (see the test below), all of them signals nix knows.
pub fn nix_signal(signal: JobSignal) -> Signal {
    Signal::try_from(signal.number()).unwrap_or(Signal::SIGTERM)
}

/// The handle on a run's operation task. Dropping it lets the task finish
/// what is queued and end.
#[derive(Debug)]
pub struct RunOps {
    tx: mpsc::UnboundedSender<(u64, Op, Span)>,
}

impl RunOps {
    pub fn spawn<R: Runtime>(runtime: Arc<R>, run: RunId, sink: Sink) -> RunOps {
        let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Op, Span)>();
        tokio::spawn(async move {
            while let Some((epoch, op, span)) = rx.recv().await {
                // Boxed: the task waits on the channel most of its life,
                // and should not be the size of a launch's future then.
                Box::pin(carry_out(&*runtime, &run, &sink, epoch, op).instrument(span)).await;
            }
        });
        RunOps { tx }
    }

    /// Queues `op` for the attempt `epoch`; what it logs goes in `span`,
    /// the attempt's.
    pub fn send(&self, epoch: u64, op: Op, span: Span) {
        // The task ends only when this handle is dropped.
        let _ = self.tx.send((epoch, op, span));
    }
}

/// Carries out one operation on `run` for the attempt `epoch`, reporting
/// what the state machine needs to `sink`. The operation task runs these
/// one after another; `corral run` calls it directly for its one run.
pub async fn carry_out<R: Runtime>(runtime: &R, run: &RunId, sink: &Sink, epoch: u64, op: Op) {
    let report = |what| {
        // The agent is gone only when it is shutting down.
        let _ = sink.send(Observation { run: run.clone(), epoch, what });
    };
    match op {
        Op::Launch(plan) => match runtime.launch(*plan).await {
            Ok(launch) => {
                report(Observed::Launched(launch.clone()));
                if let Err(e) = runtime.watch(run, &launch, epoch, sink.clone()) {
                    report(Observed::Failed(e));
                }
            }
            // The run is named in the run's log lines already.
            Err(e) => report(Observed::LaunchFailed(e.cause.to_string())),
        },
        Op::Watch(launch) => {
            if let Err(e) = runtime.watch(run, &launch, epoch, sink.clone()) {
                report(Observed::Failed(e));
            }
        }
        Op::Freeze => match runtime.freeze(run).await {
            Ok(()) => report(Observed::Frozen),
            Err(e) => report(Observed::Failed(e)),
        },
        Op::Thaw => {
            if let Err(e) = runtime.thaw(run).await {
                report(Observed::Failed(e));
            }
        }
        Op::Update(settings) => {
            if let Err(e) = runtime.update(run, &settings) {
                report(Observed::Failed(e));
            }
        }
        Op::Signal(launch, signal) => {
            // A process already gone is not a failure: its exit is on its way.
            let _ = runtime.signal(run, &launch, signal);
        }
        Op::KillAll => {
            if let Err(e) = runtime.kill_all(run).await {
                report(Observed::Failed(e));
            }
        }
        Op::Remove => {
            if let Err(e) = runtime.remove(run).await {
                report(Observed::Failed(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job file may name only signals the container's init passes on:
    /// any other sent to init (PID 1 of the job's pid namespace) from
    /// outside would never reach the job.
    #[test]
    fn job_signals_are_the_ones_init_forwards() {
        let named: Vec<Signal> = crate::spec::signal::JOB_SIGNALS
            .iter()
            .map(|(name, _)| nix_signal(JobSignal::parse(name).unwrap()))
            .collect();
        assert_eq!(named, crate::container::init::FORWARDED);
        for (name, _) in crate::spec::signal::JOB_SIGNALS {
            assert_eq!(nix_signal(JobSignal::parse(name).unwrap()).as_str(), name);
        }
    }
}
