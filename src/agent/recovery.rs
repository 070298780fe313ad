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
//! The decisions are `Survey::read` (the store and the runtime, read
//! once), then `take_over` (the ledger, the stray cgroups and each run as
//! `Adopted`, a value); the supervisor carries them out through its
//! ordinary paths, feeding each run its [`Adoption`] events.
//!
//! A run is started only after its placement is recorded, in a directory
//! named by that record, and a directory is used for one start only: so a
//! start interrupted at any point is either found (and adopted) or known
//! not to have happened, and nothing runs twice.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn, Span};

use crate::placement::{Assignment, CpuGrant, Ledger};
use crate::scheduler::{Event, Phase, RunMeta, RunState, SuspendedBy};
use crate::spec;
use crate::store::{ExitInfo, LaunchInfo, RunRecord, RunStore};
use crate::topology::{CpuSet, Topology};
use crate::vocab::{Bytes, JobName, RunId};

use super::control::is_held;
use super::error::AgentError;
use super::ops::RunOps;
use super::orders::Order;
use super::runs::{exit_info, LaunchState, Run};
use super::runtime::{FinalStats, Probe, Runtime};
use super::supervisor::run_dir;

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

/// What the store and the runtime say about the runs of an earlier agent:
/// everything recovery decides from, read before anything is decided.
#[derive(Debug, Default)]
pub(super) struct Survey {
    /// The runs the store says are not over.
    pub records: Vec<RunRecord>,
    /// Job cgroups under the agent's parent, with their cpusets.
    pub live: BTreeMap<RunId, Option<CpuSet>>,
    /// What the probe of each run that may have processes found.
    pub probes: BTreeMap<RunId, Probe>,
    /// The accounting of runs that ended while the agent was down.
    pub stats: BTreeMap<RunId, FinalStats>,
    /// Runs suspended by the operator and not thawed since.
    pub held: BTreeSet<RunId>,
}

impl Survey {
    /// Reads the runs not over from `store`, and probes each one that may
    /// have processes through its run directory (under `runs_dir` for a run
    /// placed but without a launch on record).
    pub fn read<R: Runtime, S: RunStore>(
        store: &S,
        runtime: &R,
        runs_dir: &Path,
    ) -> Result<Survey, AgentError> {
        let records = store.active_runs()?;
        let live = match runtime.live_runs() {
            Ok(live) => live.into_iter().collect(),
            Err(e) => {
                warn!("cannot list the cgroups of runs: {e}");
                BTreeMap::new()
            }
        };
        let mut survey = Survey { live, ..Survey::default() };
        for record in &records {
            let phase = &record.state.phase;
            if matches!(phase, Phase::Suspended { by: SuspendedBy::Operator, .. })
                && store.run(&record.id)?.is_some_and(|detail| is_held(&detail))
            {
                survey.held.insert(record.id.clone());
            }
            if !phase.may_have_processes() {
                continue;
            }
            let dir = match (&record.launch, phase) {
                (Some(launch), _) => launch.run_dir.clone(),
                (None, Phase::Placed) => run_dir(runs_dir, &record.id, record.state.since),
                (None, _) => continue,
            };
            let probe = match runtime.probe(&record.id, &dir) {
                Ok(probe) => probe,
                Err(e) => Probe::Lost { detail: e.to_string() },
            };
            if matches!(probe, Probe::Finished { .. }) {
                survey
                    .stats
                    .insert(record.id.clone(), runtime.stats(&record.id).unwrap_or_default());
            }
            survey.probes.insert(record.id.clone(), probe);
        }
        survey.records = records;
        Ok(survey)
    }
}

/// How the agent takes over: the ledger rebuilt from the runs' placements,
/// the cgroups to remove, and each run as it is adopted, in the store's order.
#[derive(Debug)]
pub(super) struct TakeOver {
    pub ledger: Ledger,
    /// Cgroups of no run that may have processes.
    pub strays: Vec<RunId>,
    pub runs: Vec<Adopted>,
    pub summary: Recovered,
}

/// One run of an earlier agent, as this one manages it from now on.
#[derive(Debug)]
pub(super) struct Adopted {
    pub id: RunId,
    pub job: JobName,
    pub meta: RunMeta,
    pub fingerprint: String,
    pub state: RunState,
    pub assignment: Option<Assignment>,
    pub launch: LaunchState,
    /// A launch the probe found that the store does not have yet.
    pub launch_to_record: Option<LaunchInfo>,
    pub exit: Option<ExitInfo>,
    /// Frozen by the operator and not thawed: stays frozen.
    pub held: bool,
    /// Placed, and its start was found never to have happened: it gets a new
    /// placement time (a fresh directory) before anything else.
    pub never_started: Option<String>,
    /// What to tell it once it is managed.
    pub adoption: Adoption,
}

impl Adopted {
    /// Frozen when the agent stopped: it resumes in the order it is adopted.
    pub fn frozen(&self) -> bool {
        matches!(self.state.phase, Phase::Suspended { frozen: true, .. })
    }

    /// The run as the agent manages it, its operations going to `ops`; and
    /// what to feed it, in order, once it is managed.
    pub fn into_run(self, ops: RunOps, span: Span) -> (Run, Vec<Order>) {
        let id = self.id;
        let mut orders = Vec::new();
        if let Some(detail) = self.never_started {
            // A new placement time, recorded before it is used, names a
            // fresh directory.
            orders.push(Order::Feed(id.clone(), Event::NeverStarted { detail }));
        }
        // `Start`: once the jobs directory has been read.
        if let Adoption::Events(events) = self.adoption {
            orders.extend(events.into_iter().map(|event| match event {
                Event::Exited(status) => Order::Exited(id.clone(), status),
                event => Order::Feed(id.clone(), event),
            }));
        }
        let mut run = Run::new(self.job, None, self.meta, self.fingerprint, self.state, ops, span);
        run.assignment = self.assignment;
        run.launch = self.launch;
        run.exit = self.exit;
        (run, orders)
    }
}

/// Decides how the runs in `survey` are taken over, with `ledger`'s
/// configuration on `topology` for the rebuilt ledger.
pub(super) fn take_over(
    mut survey: Survey,
    topology: &Topology,
    ledger: &Ledger,
    default_grace: Duration,
) -> Result<TakeOver, AgentError> {
    let records = std::mem::take(&mut survey.records);
    let mut summary = Recovered { runs: records.len(), ..Recovered::default() };

    // The ledger: what runs with processes hold, as the kernel has it.
    let mut held = Vec::new();
    for record in &records {
        let (Some(assignment), true) =
            (&record.assignment, record.state.phase.may_have_processes())
        else {
            continue;
        };
        let live = survey.live.get(&record.id).cloned().flatten();
        held.push(live_assignment(record, assignment, live));
    }
    let ledger = match Ledger::rebuild(topology, ledger.config().clone(), held.clone()) {
        Ok(ledger) => ledger,
        Err(e) => {
            warn!("the runs' placements do not add up ({e}); keeping those that fit");
            let mut ledger = Ledger::new(topology, ledger.config().clone())?;
            for a in held {
                if let Err(e) = ledger.record(a) {
                    warn!("placement dropped: {e}");
                }
            }
            ledger
        }
    };

    let keep: BTreeSet<&RunId> =
        records.iter().filter(|r| r.state.phase.may_have_processes()).map(|r| &r.id).collect();
    let strays: Vec<RunId> = survey.live.keys().filter(|id| !keep.contains(id)).cloned().collect();
    summary.stray_cgroups = strays.len();

    let mut runs = Vec::new();
    for record in records {
        let probe = survey.probes.remove(&record.id);
        match &probe {
            Some(Probe::Running { .. }) => summary.running += 1,
            Some(Probe::Finished { .. }) => summary.ended_while_down += 1,
            _ => {}
        }
        let stats = survey.stats.remove(&record.id).unwrap_or_default();
        let held = survey.held.contains(&record.id);
        runs.push(adopted(record, probe, &ledger, stats, held, default_grace));
    }
    Ok(TakeOver { ledger, strays, runs, summary })
}

/// How run `record` is adopted given its `probe`.
fn adopted(
    record: RunRecord,
    probe: Option<Probe>,
    ledger: &Ledger,
    stats: FinalStats,
    held: bool,
    default_grace: Duration,
) -> Adopted {
    let id = record.id.clone();
    let meta = record.version.as_ref().and_then(super::job::meta_of).unwrap_or_else(|| RunMeta {
        priority: spec::Priority::DEFAULT.get(),
        finish_on_removal: false,
        policy: crate::scheduler::Policy { stop_grace: default_grace, ..Default::default() },
    });
    let fingerprint = record.version.as_ref().map(|v| v.fingerprint.clone()).unwrap_or_default();
    let assignment = match &record.assignment {
        Some(a) if record.state.phase.may_have_processes() => {
            ledger.get(&id).cloned().or(Some(a.clone()))
        }
        _ => None,
    };
    let mut launch = record.launch.clone();
    let mut exit = None;
    match &probe {
        Some(Probe::Running { launch: found }) => {
            launch = Some(adopted_launch(found, record.launch.as_ref()))
        }
        Some(Probe::Finished { launch: found, status, at }) => {
            launch = Some(adopted_launch(found, record.launch.as_ref()));
            exit = Some(exit_info(*status, *at, stats));
        }
        _ => {}
    }
    let launch_to_record = launch.clone().filter(|_| launch != record.launch);
    let never_started = match (&record.state.phase, &probe) {
        (Phase::Placed, Some(Probe::NeverRan { detail })) => Some(detail.clone()),
        _ => None,
    };
    Adopted {
        adoption: adoption(&record.state, probe.as_ref()),
        id,
        job: record.job,
        meta,
        fingerprint,
        state: record.state,
        assignment,
        launch: launch.map_or(LaunchState::NotStarted, LaunchState::Launched),
        launch_to_record,
        exit,
        held,
        never_started,
    }
}

/// Kills and removes the cgroups of `strays`, runs that no longer exist,
/// each on a task of its own.
pub(super) fn remove_strays<R: Runtime>(runtime: &Arc<R>, strays: Vec<RunId>) {
    for stray in strays {
        info!(cgroup = %stray, "removing the cgroup of a run that no longer exists");
        let runtime = Arc::clone(runtime);
        tokio::spawn(async move {
            if let Err(e) = runtime.remove(&stray).await {
                warn!("{e}");
            }
        });
    }
}

/// Where a re-adopted run that was placed but never started is started,
/// once its job is known; `None`: its placement is lost, and it cannot be.
pub(super) fn relaunch(run: &Run) -> Option<(Assignment, Option<Bytes>)> {
    match &run.assignment {
        Some(assignment) if run.spec.is_some() => {
            Some((assignment.clone(), run.state.memory_limit))
        }
        _ => None,
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

/// The launch a probe found, as the run keeps it. The probe can only tell
/// when the job started from its run directory; the launch on record, when it
/// is the same process, keeps the time the agent recorded, which the API
/// showed before the restart and CPU shares are measured from.
fn adopted_launch(found: &LaunchInfo, recorded: Option<&LaunchInfo>) -> LaunchInfo {
    match recorded {
        Some(r)
            if r.init_pid == found.init_pid
                && r.pid_start_time == found.pid_start_time
                && r.run_dir == found.run_dir =>
        {
            LaunchInfo { launched_at: r.launched_at, ..found.clone() }
        }
        _ => found.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::scheduler::{ExitStatus, StopIntent};
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

    fn record(id: &str, phase: Phase, assignment: Option<Assignment>) -> RunRecord {
        let id = RunId::new(id);
        let (job, seq) = crate::vocab::parse_run_id(&id).unwrap();
        RunRecord {
            id,
            job,
            seq,
            state: state(phase),
            created_at: Timestamp::EPOCH,
            updated_at: Timestamp::EPOCH,
            finished_at: None,
            assignment,
            launch: None,
            exit: None,
            version: None,
        }
    }

    fn pinned(owner: &str, cpu: u32) -> Assignment {
        Assignment {
            owner: RunId::new(owner),
            cpus: CpuGrant::Exclusive(CpuSet::from_iter([crate::topology::CpuId(cpu)])),
            mems: "0".parse().unwrap(),
            memory: Default::default(),
        }
    }

    #[test]
    fn a_take_over_keeps_the_placements_of_runs_with_processes_and_removes_stray_cgroups() {
        let topology = crate::topology::testing::fixture("vm-2cpu");
        let ledger = Ledger::new(&topology, Default::default()).unwrap();
        let running = record("a-1", RUNNING, Some(pinned("a-1", 1)));
        // Waiting again: what it held before the restart is not its any more.
        let pending = record("b-1", Phase::Pending, Some(pinned("b-1", 1)));
        let launch = launch();
        let survey = Survey {
            records: vec![running, pending],
            live: BTreeMap::from([(RunId::new("a-1"), None), (RunId::new("old-3"), None)]),
            probes: BTreeMap::from([(RunId::new("a-1"), Probe::Running { launch })]),
            ..Survey::default()
        };
        let plan = take_over(survey, &topology, &ledger, Duration::from_secs(10)).unwrap();
        assert_eq!(plan.strays, [RunId::new("old-3")]);
        assert_eq!(
            plan.summary,
            Recovered { runs: 2, running: 1, ended_while_down: 0, stray_cgroups: 1 }
        );
        assert_eq!(plan.ledger.get(&RunId::new("a-1")), Some(&pinned("a-1", 1)));
        assert_eq!(plan.ledger.get(&RunId::new("b-1")), None);
        let ids: Vec<&str> = plan.runs.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["a-1", "b-1"]);
        let (a, b) = (&plan.runs[0], &plan.runs[1]);
        assert_eq!(a.adoption, Adoption::Events(vec![Event::AdoptedAfterRestart]));
        assert_eq!(a.launch_to_record.as_ref().map(|l| l.init_pid), Some(11));
        assert_eq!(b.assignment, None);
        assert_eq!(b.meta.policy.stop_grace, Duration::from_secs(10));
    }

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
            Phase::Suspended {
                by: crate::scheduler::SuspendedBy::Run(RunId::new("x-1")),
                frozen: true,
                oom_pending: false,
            },
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
