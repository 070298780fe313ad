//! Watching one foreground run until it ends: signals from the terminal,
//! the cgroup's OOM events, the job's timeout.

use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

use super::summary::Observed;
use crate::cgroup::{CgroupEvent, JobCgroup, Notifier};
use crate::container::{signal_process, ContainerConfig, ProcessIdentity};
use crate::launch::{self, EndedRun, Host, RunPlan};
use crate::spec::OomPolicy;
use crate::units::Bytes;

/// How long killing what is left of a job may take.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// The run's time limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Option<Duration>,
    /// Between SIGTERM and killing the whole cgroup, once timed out.
    pub stop_grace: Duration,
}

/// Prints corral's own progress lines, unless quiet.
#[derive(Debug, Clone, Copy)]
pub struct Notes {
    pub quiet: bool,
}

impl Notes {
    pub fn say(&self, line: &str) {
        self.print(&format!("corral: {line}"));
    }

    pub fn print(&self, line: &str) {
        if !self.quiet {
            error(line);
        }
    }
}

/// Writes a line to stderr, ignoring failure: a closed terminal must not
/// stop `corral run` from seeing its job to the end (`eprintln!` would
/// panic).
pub fn error(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// SIGINT, SIGTERM and SIGHUP, caught for the whole of `corral run`: from
/// the first one on, the job gets them and corral does not die of them.
pub struct Signals {
    interrupts: tokio::signal::unix::Signal,
    terminations: tokio::signal::unix::Signal,
    hangups: tokio::signal::unix::Signal,
}

impl Signals {
    /// Must be called within the runtime.
    pub fn catch() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupts: signal(SignalKind::interrupt())?,
            terminations: signal(SignalKind::terminate())?,
            hangups: signal(SignalKind::hangup())?,
        })
    }

    /// The next of the three to arrive.
    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.interrupts.recv() => Signal::SIGINT,
            _ = self.terminations.recv() => Signal::SIGTERM,
            _ = self.hangups.recv() => Signal::SIGHUP,
        }
    }
}

/// Starts the run and watches it to its end. Returns the ended run (its
/// cgroup not yet collected) and what was seen on the way.
pub async fn supervise(
    host: &Host,
    plan: &RunPlan,
    spec_memory: &crate::spec::MemoryLimits,
    container: &ContainerConfig,
    limits: Limits,
    signals: &mut Signals,
    notes: Notes,
) -> anyhow::Result<(EndedRun, Observed)> {
    let prepared = launch::prepare(host, plan)?;
    // Subscribed before the job starts, so that no OOM goes unseen.
    let events = match prepared.cgroup().oom_events(&Notifier::new()) {
        Ok(events) => Some(events),
        Err(err) => {
            notes
                .say(&format!("cannot watch the job's cgroup events, OOMs are not counted: {err}"));
            None
        }
    };
    let started = prepared.launch(container)?;
    let job = plan.job.to_string();
    let run = plan.run.to_string();
    let cgroup = started.cgroup().clone();
    let init = started.init();
    let mut wait = tokio::task::spawn_blocking(move || started.wait());

    let mut watch = Watch {
        cgroup,
        init,
        plan,
        spec_memory,
        resources: plan.resources.clone(),
        observed: Observed::default(),
        notes,
        name: format!("{job} run {run}"),
    };
    let mut events = events;
    let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let deadline = limits.timeout.map(|t| Instant::now() + t);
    let mut kill_at: Option<Instant> = None;
    let ended = loop {
        tokio::select! {
            // Events first: an OOM that killed the job is counted before
            // its end is.
            biased;
            event = async { events.as_mut().expect("guarded").next().await }, if events.is_some() => {
                match event {
                    Some(Ok(event)) => watch.on_event(event).await,
                    Some(Err(err)) => {
                        watch.notes.say(&format!("stopped watching cgroup events: {err}"));
                        events = None;
                    }
                    None => events = None,
                }
            }
            ended = &mut wait => break ended?,
            signal = signals.next() => {
                watch.observed.signaled = Some(signal);
                watch.forward(signal);
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() && kill_at.is_none() => {
                let timeout = limits.timeout.unwrap_or_default();
                watch.observed.timed_out = Some(timeout);
                watch.notes.say(&format!(
                    "{}: timed out after {}; SIGTERM, then everything is killed after {}",
                    watch.name,
                    crate::spec::duration::format(timeout),
                    crate::spec::duration::format(limits.stop_grace),
                ));
                watch.forward(Signal::SIGTERM);
                kill_at = Some(Instant::now() + limits.stop_grace);
            }
            _ = tokio::time::sleep_until(kill_at.unwrap_or(far)), if kill_at.is_some() => {
                kill_at = Some(far);
                watch.kill().await;
            }
        }
    };
    // Notifications the kernel sent before the end and not read yet: one
    // turn of the reactor to notice them, then whatever is ready, without
    // waiting (the final statistics count OOM kills anyway).
    if let Some(events) = &mut events {
        tokio::task::yield_now().await;
        while let Ok(Some(Ok(event))) = tokio::time::timeout(Duration::ZERO, events.next()).await {
            watch.on_event(event).await;
        }
    }
    Ok((ended, watch.observed))
}

struct Watch<'a> {
    cgroup: JobCgroup,
    init: ProcessIdentity,
    plan: &'a RunPlan,
    spec_memory: &'a crate::spec::MemoryLimits,
    /// The cgroup's resources now (grown from the plan's).
    resources: crate::cgroup::Resources,
    observed: Observed,
    notes: Notes,
    name: String,
}

impl Watch<'_> {
    fn forward(&self, signal: Signal) {
        // The job may be gone already; its status tells the rest.
        let _ = signal_process(self.init, signal);
    }

    async fn kill(&self) {
        if let Err(err) = self.cgroup.kill(KILL_TIMEOUT).await {
            self.notes.say(&format!("{}: {err}", self.name));
        }
    }

    async fn on_event(&mut self, event: CgroupEvent) {
        match event {
            CgroupEvent::Oom { count } => self.observed.oom_events += count,
            CgroupEvent::OomKill { count } => self.observed.oom_kills += count,
            CgroupEvent::PausedAtLimit => self.at_limit().await,
            _ => {}
        }
    }

    /// The kernel stopped the job at its hard limit (v1, `oom: grow` or
    /// `requeue`): grow once more if the policy has room, else the OOM is
    /// fatal and the job is killed as a whole.
    async fn at_limit(&mut self) {
        // The notification may be stale: a grow step made already, or the
        // job gone. Only a job the kernel holds at the limit right now is
        // acted on.
        let under_oom = self.cgroup.stats().ok().and_then(|s| s.memory.under_oom);
        if under_oom == Some(false) {
            return;
        }
        let limit = self.resources.memory.hard_bytes.unwrap_or(0);
        let grown = match self.plan.oom {
            OomPolicy::Grow { to, step } if limit < to.get() => {
                Some(Bytes(limit.saturating_add(step.get()).min(to.get())))
            }
            _ => None,
        };
        match grown {
            Some(grown) => {
                let mut next = self.resources.clone();
                next.memory = launch::memory_limits(self.spec_memory, Some(grown));
                match self.cgroup.update(&next) {
                    Ok(_) => {
                        self.notes.say(&format!(
                            "{}: out of memory at {}; limit raised to {}",
                            self.name,
                            Bytes(limit).human(),
                            grown.human()
                        ));
                        self.resources = next;
                    }
                    Err(err) => {
                        self.notes
                            .say(&format!("{}: cannot raise the memory limit: {err}", self.name));
                        self.observed.killed_at_limit = Some(limit);
                        self.kill().await;
                    }
                }
            }
            None => {
                let why = match self.plan.oom {
                    OomPolicy::Grow { .. } => "with no room to grow",
                    // Requeueing with larger limits is the agent's: a
                    // foreground run is one run.
                    _ => "and `oom: requeue` is not applied by a foreground run",
                };
                self.notes.say(&format!(
                    "{}: out of memory at {}, {why}; killing it",
                    self.name,
                    Bytes(limit).human()
                ));
                self.observed.killed_at_limit = Some(limit);
                self.kill().await;
            }
        }
    }
}
