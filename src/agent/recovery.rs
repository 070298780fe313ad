//! Crash recovery: a starting agent takes over every run the store says is
//! not over.
//!
//! Jobs keep running while the agent is down: each run's shim outlives it
//! and records the exit status in the run directory. At start the agent
//!
//! 1. reads the runs not over from the store;
//! 2. probes each one that may have processes through its run directory
//!    ([`Runtime::probe`]: the shim's and init's pid *and start time* must
//!    match, so a reused pid is never taken for the job);
//! 3. rebuilds the placement ledger from the placements of those runs, with
//!    the cpusets read back from their live cgroups (where an exclusive run's
//!    live cpuset differs from the record, the kernel's is what the run uses,
//!    so it wins);
//! 4. kills and removes cgroups under its parent that belong to no run with
//!    processes;
//! 5. feeds each run what happened ([`adoption`]): still running → watched
//!    again, timers re-armed; ended while the agent was down → its recorded
//!    exit status (and an OOM kill, if its cgroup counted one); gone without
//!    a status → lost; suspended → kept frozen; placed but never started →
//!    started once its job file has been read.
//!
//! A run is started only after its placement is recorded, in a directory
//! named by that record, and a directory is used for one start only: so a
//! start interrupted at any point is either found (and adopted) or known
//! not to have happened, and nothing runs twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tracing::{info, warn};

use crate::placement::{Assignment, CpuGrant, Ledger};
use crate::scheduler::{Event, Phase, RunState};
use crate::spec;
use crate::store::{RunRecord, RunStore};
use crate::topology::CpuSet;
use crate::vocab::RunId;

use super::control::{is_held, OPERATOR};
use super::error::AgentError;
use super::job::RunMeta;
use super::ops::RunOps;
use super::runtime::{Probe, Runtime};
use super::supervisor::{exit_info, run_dir, run_span, Run, Supervisor};

/// What to tell a re-adopted run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adoption {
    /// These events, in order.
    Events(Vec<Event>),
    /// Placed but never started: start it once its job is known.
    Start,
}

/// How a run found in the store, in `state`, is taken over given what the
/// probe of its run directory found (`None`: it has no processes to probe).
pub fn adoption(state: &RunState, probe: Option<&Probe>) -> Adoption {
    use Adoption::{Events, Start};
    let launched = |p: &Probe| match p {
        Probe::Running { launch } | Probe::Finished { launch, .. } => {
            Some(Event::Launched { pid: launch.init_pid, start_time: launch.pid_start_time })
        }
        _ => None,
    };
    match (&state.phase, probe) {
        (Phase::Placed, None | Some(Probe::NotStarted | Probe::NeverRan { .. })) => Start,
        (Phase::Placed, Some(p @ Probe::Running { .. })) => {
            Events(vec![launched(p).expect("running"), Event::AdoptedAfterRestart])
        }
        (Phase::Placed, Some(p @ Probe::Finished { status, .. })) => {
            Events(vec![launched(p).expect("finished"), Event::Exited(*status)])
        }
        (Phase::Placed, Some(Probe::Lost { detail })) => Events(vec![Event::LaunchFailed {
            detail: format!("start interrupted by an agent restart: {detail}"),
        }]),
        (phase, Some(probe)) if phase.may_have_processes() => match probe {
            Probe::Running { .. } => Events(vec![Event::AdoptedAfterRestart]),
            Probe::Finished { status, .. } => Events(vec![Event::Exited(*status)]),
            Probe::Lost { detail } => Events(vec![Event::Lost { detail: detail.clone() }]),
            Probe::NotStarted => Events(vec![Event::Lost {
                detail: "its run directory holds no trace of a start".into(),
            }]),
            Probe::NeverRan { detail } => Events(vec![Event::Lost { detail: detail.clone() }]),
        },
        (phase, None) if phase.may_have_processes() => {
            Events(vec![Event::Lost { detail: "no launch on record".into() }])
        }
        _ => Events(vec![Event::AdoptedAfterRestart]),
    }
}

/// Whether the database at `path` holds nothing: missing, or a file of
/// zero bytes (what SQLite would take for a new, empty database).
pub fn store_is_blank(path: &std::path::Path) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) => meta.len() == 0,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// The runs whose directories under `runs_dir` were used for a start (they
/// hold a `config.json`): each is a run some agent recorded, and the
/// directories of pruned runs go with their records.
pub fn used_run_dirs(runs_dir: &std::path::Path) -> Vec<RunId> {
    let Ok(entries) = std::fs::read_dir(runs_dir) else { return Vec::new() };
    let mut found: Vec<RunId> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let id = RunId::new(entry.file_name().to_str()?.to_owned());
            crate::vocab::parse_run_id(&id)?;
            let used = std::fs::read_dir(entry.path()).ok()?.filter_map(Result::ok).any(|placed| {
                crate::container::rundir::RunDir::new(placed.path()).config().exists()
            });
            used.then_some(id)
        })
        .collect();
    found.sort();
    found
}

/// What shows that runs were recorded in a database that is now gone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LostStoreEvidence {
    pub run_dirs: Vec<RunId>,
    /// Job cgroups under the agent's parent.
    pub live_cgroups: Vec<String>,
}

impl LostStoreEvidence {
    pub fn is_empty(&self) -> bool {
        self.run_dirs.is_empty() && self.live_cgroups.is_empty()
    }
}

impl std::fmt::Display for LostStoreEvidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn some(names: &[&str]) -> String {
            const SHOWN: usize = 5;
            let mut text = names.iter().take(SHOWN).copied().collect::<Vec<_>>().join(", ");
            if names.len() > SHOWN {
                text.push_str(&format!(" and {} more", names.len() - SHOWN));
            }
            text
        }
        let dirs: Vec<&str> = self.run_dirs.iter().map(RunId::as_str).collect();
        let live: Vec<&str> = self.live_cgroups.iter().map(String::as_str).collect();
        let mut parts = Vec::new();
        if !dirs.is_empty() {
            parts.push(format!("{} run directories ({})", dirs.len(), some(&dirs)));
        }
        if !live.is_empty() {
            parts.push(format!("{} live job cgroups ({})", live.len(), some(&live)));
        }
        f.write_str(&parts.join(" and "))
    }
}

/// What recovery found, for the start-up log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    pub runs: usize,
    pub running: usize,
    pub ended_while_down: usize,
    pub stray_cgroups: usize,
}

impl<R: Runtime, S: RunStore> Supervisor<R, S> {
    /// Takes over the runs of an earlier agent. Called once, before the
    /// jobs directory is read.
    pub fn recover(&mut self) -> Result<Recovered, AgentError> {
        self.recovering = true;
        let recovered = self.take_over_runs();
        self.recovering = false;
        recovered
    }

    fn take_over_runs(&mut self) -> Result<Recovered, AgentError> {
        // First, so that the runs of recurring jobs are known as such.
        self.cron_load()?;
        let records = self.store.active_runs()?;
        let mut summary = Recovered { runs: records.len(), ..Recovered::default() };
        let live: BTreeMap<RunId, Option<CpuSet>> = match self.runtime.live_runs() {
            Ok(live) => live.into_iter().collect(),
            Err(e) => {
                warn!("cannot list the cgroups of runs: {e}");
                BTreeMap::new()
            }
        };

        let mut probes = BTreeMap::new();
        for record in &records {
            let phase = &record.state.phase;
            if !phase.may_have_processes() {
                continue;
            }
            let dir = match (&record.launch, phase) {
                (Some(launch), _) => launch.run_dir.clone(),
                (None, Phase::Placed) => {
                    run_dir(&self.settings.runs_dir, &record.id, record.state.since)
                }
                (None, _) => continue,
            };
            let probe = match self.runtime.probe(&record.id, &dir) {
                Ok(probe) => probe,
                Err(e) => Probe::Lost { detail: e.to_string() },
            };
            probes.insert(record.id.clone(), probe);
        }

        // The ledger: what runs with processes hold, as the kernel has it.
        let mut held = Vec::new();
        for record in &records {
            let (Some(assignment), true) =
                (&record.assignment, record.state.phase.may_have_processes())
            else {
                continue;
            };
            held.push(live_assignment(record, assignment, live.get(&record.id).cloned().flatten()));
        }
        self.ledger =
            match Ledger::rebuild(&self.topology, self.ledger.config().clone(), held.clone()) {
                Ok(ledger) => ledger,
                Err(e) => {
                    warn!("the runs' placements do not add up ({e}); keeping those that fit");
                    let mut ledger = Ledger::new(&self.topology, self.ledger.config().clone())?;
                    for a in held {
                        if let Err(e) = ledger.record(a) {
                            warn!("placement dropped: {e}");
                        }
                    }
                    ledger
                }
            };

        // The pool the live cpusets were written for: runs that ended while
        // the agent was down change it as they are released below, and the
        // shared-pool runs' cpusets follow.
        self.pool = self.ledger.shared_pool().clone();

        // Cgroups of no run that may have processes.
        let keep: BTreeSet<&RunId> =
            records.iter().filter(|r| r.state.phase.may_have_processes()).map(|r| &r.id).collect();
        for stray in live.keys().filter(|id| !keep.contains(id)) {
            summary.stray_cgroups += 1;
            info!(cgroup = %stray, "removing the cgroup of a run that no longer exists");
            let runtime = Arc::clone(&self.runtime);
            let stray = stray.clone();
            tokio::spawn(async move {
                if let Err(e) = runtime.remove(&stray).await {
                    warn!("{e}");
                }
            });
        }

        for record in records {
            let probe = probes.remove(&record.id);
            match &probe {
                Some(Probe::Running { .. }) => summary.running += 1,
                Some(Probe::Finished { .. }) => summary.ended_while_down += 1,
                _ => {}
            }
            self.adopt(record, probe)?;
        }
        self.cron_recovered()?;
        Ok(summary)
    }

    fn adopt(&mut self, record: RunRecord, probe: Option<Probe>) -> Result<(), AgentError> {
        let id = record.id.clone();
        let job = record.job.clone();
        let meta =
            record.version.as_ref().and_then(RunMeta::from_version).unwrap_or_else(|| RunMeta {
                priority: spec::Priority::DEFAULT.get(),
                finish_on_removal: false,
                policy: crate::scheduler::Policy {
                    stop_grace: self.settings.default_grace,
                    ..Default::default()
                },
            });
        let fingerprint =
            record.version.as_ref().map(|v| v.fingerprint.clone()).unwrap_or_default();
        let assignment = match &record.assignment {
            Some(a) if record.state.phase.may_have_processes() => {
                self.ledger.get(&id).cloned().or(Some(a.clone()))
            }
            _ => None,
        };
        let ops = RunOps::spawn(Arc::clone(&self.runtime), id.clone(), self.sink.clone());
        let mut launch = record.launch.clone();
        let mut exit = None;
        match &probe {
            Some(Probe::Running { launch: found }) => launch = Some(found.clone()),
            Some(Probe::Finished { launch: found, status, at }) => {
                launch = Some(found.clone());
                let stats = self.runtime.stats(&id).unwrap_or_default();
                exit = Some(exit_info(*status, *at, stats));
            }
            _ => {}
        }
        if launch != record.launch {
            if let Some(found) = &launch {
                self.store.set_launch(&id, found)?;
            }
        }
        let span = run_span(&job, &id, record.state.attempt);
        info!(parent: &span, phase = record.state.phase.name(), "re-adopting run");
        if matches!(&record.state.phase, Phase::Suspended { by, .. } if by.as_str() == OPERATOR) {
            let held = self.store.run(&id)?.is_some_and(|detail| is_held(&detail));
            if held {
                info!(parent: &span, "frozen by operator: stays frozen until `corral thaw`");
                self.held.insert(id.clone());
            }
        }
        if self.cron.owner(&id).is_none() {
            // A recurring job's runs are found through its cron state.
            self.by_job.insert(job.clone(), id.clone());
        }
        self.runs.insert(
            id.clone(),
            Run {
                job,
                spec: None,
                meta,
                fingerprint,
                state: record.state.clone(),
                assignment,
                launch,
                epoch: 0,
                ops,
                exit,
                launching: false,
                removed: false,
                suspended_at: 0,
                span,
            },
        );
        if let (Phase::Placed, Some(Probe::NeverRan { detail })) = (&record.state.phase, &probe) {
            // Its directory is spent (a directory serves one start): a new
            // placement time names a fresh one, recorded before it is used.
            let now =
                self.clock.now().max(record.state.since.plus(std::time::Duration::from_millis(1)));
            let next = RunState { since: now, ..record.state.clone() };
            let reason = format!("{detail}; starting it again");
            self.set_state(&id, next, &reason, now)?;
        }
        if matches!(record.state.phase, Phase::Suspended { frozen: true, .. }) {
            self.suspensions += 1;
            self.runs.get_mut(&id).expect("inserted").suspended_at = self.suspensions;
        }
        match adoption(&record.state, probe.as_ref()) {
            Adoption::Start => {} // once the jobs directory has been read
            Adoption::Events(events) => {
                for event in events {
                    match event {
                        Event::Exited(status) => self.exited(&id, status)?,
                        event => {
                            self.handle(&id, event)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Starts a re-adopted run that was placed but never started.
    pub(super) fn relaunch(&mut self, id: &RunId) -> Result<(), AgentError> {
        let Some(run) = self.runs.get(id) else { return Ok(()) };
        match run.assignment.clone() {
            Some(assignment) if run.spec.is_some() => {
                let memory_limit = run.state.memory_limit;
                info!(parent: &run.span, "starting a run that was placed before the agent restarted");
                self.execute_launch(id, assignment, memory_limit)
            }
            _ => {
                self.handle(
                    id,
                    Event::LaunchFailed { detail: "placement lost in an agent restart".into() },
                )?;
                Ok(())
            }
        }
    }
}

/// The run's assignment with the exclusive CPUs its cgroup has now.
fn live_assignment(record: &RunRecord, stored: &Assignment, live: Option<CpuSet>) -> Assignment {
    let mut a = stored.clone();
    if let (CpuGrant::Exclusive(cpus), Some(live)) = (&stored.cpus, live) {
        if !live.is_empty() && &live != cpus {
            warn!(
                run = %record.id,
                "cgroup cpuset {live} differs from the recorded {cpus}; the kernel's is kept"
            );
            a.cpus = CpuGrant::Exclusive(live);
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::scheduler::{ExitStatus, StopIntent};
    use crate::store::LaunchInfo;
    use crate::vocab::RunId;
    use crate::vocab::Timestamp;

    fn state(phase: Phase) -> RunState {
        RunState { phase, ..RunState::new(None, Timestamp::EPOCH) }
    }

    fn launch() -> LaunchInfo {
        LaunchInfo {
            shim_pid: 10,
            init_pid: 11,
            pid_start_time: 99,
            run_dir: PathBuf::from("/r"),
            launched_at: Timestamp::EPOCH,
        }
    }

    fn running() -> Probe {
        Probe::Running { launch: launch() }
    }

    fn finished(code: i32) -> Probe {
        Probe::Finished { launch: launch(), status: ExitStatus::Code(code), at: Timestamp::EPOCH }
    }

    const RUNNING: Phase = Phase::Running { since: Timestamp::EPOCH };

    #[test]
    fn runs_without_processes_are_resumed_where_they_were() {
        assert_eq!(
            adoption(&state(Phase::Pending), None),
            Adoption::Events(vec![Event::AdoptedAfterRestart])
        );
        let backoff = Phase::BackoffWaiting { until: Timestamp::EPOCH, after: None };
        assert_eq!(
            adoption(&state(backoff), None),
            Adoption::Events(vec![Event::AdoptedAfterRestart])
        );
    }

    #[test]
    fn a_placed_run_is_started_only_if_it_never_was() {
        let placed = state(Phase::Placed);
        assert_eq!(adoption(&placed, Some(&Probe::NotStarted)), Adoption::Start);
        let never = Probe::NeverRan { detail: "interrupted".into() };
        assert_eq!(adoption(&placed, Some(&never)), Adoption::Start);
        assert!(matches!(
            adoption(&state(RUNNING), Some(&never)),
            Adoption::Events(e) if matches!(e[..], [Event::Lost { .. }])
        ));
        assert_eq!(
            adoption(&placed, Some(&running())),
            Adoption::Events(vec![
                Event::Launched { pid: 11, start_time: 99 },
                Event::AdoptedAfterRestart
            ])
        );
        assert_eq!(
            adoption(&placed, Some(&finished(3))),
            Adoption::Events(vec![
                Event::Launched { pid: 11, start_time: 99 },
                Event::Exited(ExitStatus::Code(3))
            ])
        );
        assert!(matches!(
            adoption(&placed, Some(&Probe::Lost { detail: "x".into() })),
            Adoption::Events(e) if matches!(e[..], [Event::LaunchFailed { .. }])
        ));
    }

    #[test]
    fn runs_with_processes_are_watched_or_told_how_they_ended() {
        for phase in [
            RUNNING,
            Phase::Suspended { by: RunId::new("x-1"), frozen: true, oom_pending: false },
            Phase::OomPaused { frozen: true },
            Phase::Stopping {
                intent: StopIntent::Timeout,
                deadline: Timestamp::EPOCH,
                escalated: false,
            },
        ] {
            let s = state(phase);
            assert_eq!(
                adoption(&s, Some(&running())),
                Adoption::Events(vec![Event::AdoptedAfterRestart])
            );
            assert_eq!(
                adoption(&s, Some(&finished(0))),
                Adoption::Events(vec![Event::Exited(ExitStatus::Code(0))])
            );
            assert!(matches!(
                adoption(&s, Some(&Probe::Lost { detail: "gone".into() })),
                Adoption::Events(e) if matches!(e[..], [Event::Lost { .. }])
            ));
            assert!(
                matches!(adoption(&s, None), Adoption::Events(e) if matches!(e[..], [Event::Lost { .. }]))
            );
        }
    }
}
