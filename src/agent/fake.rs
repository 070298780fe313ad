//! An in-memory [`Runtime`] for the supervisor's unit tests: records every
//! call, and lets the test decide how runs end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::sys::signal::Signal;

use crate::cgroup::{Capabilities, FreezerKind, KillKind};
use crate::config::AgentConfig;
use crate::launch::{self, LaunchError, RunInputs, RunPlan};
use crate::scheduler::ExitStatus;
use crate::spec::JobSpec;
use crate::store::LaunchInfo;
use crate::topology::CpuSet;
use crate::vocab::Bytes;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

use super::runtime::{
    Cause, FinalStats, LaunchPlan, LiveSettings, Observation, Observed, Operation, Probe, Runtime,
    RuntimeError, Sink,
};
use crate::cgroup::CgroupError;

#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Launch { run: RunId, cpus: CpuSet, memory: Option<Bytes>, dir: PathBuf },
    Freeze(RunId),
    Thaw(RunId),
    Signal(RunId, Signal),
    KillAll(RunId),
    Update { run: RunId, cpus: CpuSet, memory: Option<Bytes> },
    Remove(RunId),
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    watched: HashMap<RunId, (u64, Sink)>,
    next_pid: u32,
    probes: HashMap<PathBuf, Probe>,
    live: Vec<(RunId, Option<CpuSet>)>,
    stats: HashMap<RunId, FinalStats>,
    /// Runs that die on SIGTERM.
    term_kills: bool,
    /// The variables each run's latest launch added to its job's `env`.
    envs: HashMap<RunId, std::collections::BTreeMap<String, String>>,
    /// The dynamic uid each run's latest launch was given.
    uids: HashMap<RunId, Option<u32>>,
    /// What every freeze fails with, when set.
    freeze_error: Option<fn() -> CgroupError>,
    /// Every freeze finds the job OOM-killed (v2, the kernel faster than
    /// the freeze).
    freeze_finds_oom_kill: bool,
    /// What every watch fails with, when set.
    watch_error: Option<fn() -> CgroupError>,
    /// The agent configuration plans are made with.
    config: AgentConfig,
}

#[derive(Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
}

impl FakeRuntime {
    pub fn new() -> FakeRuntime {
        let fake = FakeRuntime::default();
        fake.state.lock().unwrap().term_kills = true;
        fake
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn launched(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Launch { run, .. } => Some(run.to_string()),
                _ => None,
            })
            .collect()
    }

    /// What the run's latest launch added to its job's `env`.
    pub fn env(&self, run: &str) -> std::collections::BTreeMap<String, String> {
        self.state.lock().unwrap().envs.get(&RunId::new(run)).cloned().unwrap_or_default()
    }

    /// The dynamic uid the run's latest launch was given.
    pub fn uid(&self, run: &str) -> Option<u32> {
        self.state.lock().unwrap().uids.get(&RunId::new(run)).copied().flatten()
    }

    /// Changes the agent configuration runs are planned with.
    pub fn configure(&self, change: impl FnOnce(&mut AgentConfig)) {
        change(&mut self.state.lock().unwrap().config);
    }

    /// Whether SIGTERM ends a run (it does unless told otherwise).
    pub fn set_term_kills(&self, kills: bool) {
        self.state.lock().unwrap().term_kills = kills;
    }

    /// Makes every freeze from now on fail with what `error` makes.
    pub fn fail_freezes(&self, error: fn() -> CgroupError) {
        self.state.lock().unwrap().freeze_error = Some(error);
    }

    /// Makes every watch from now on fail with what `error` makes.
    pub fn fail_watches(&self, error: fn() -> CgroupError) {
        self.state.lock().unwrap().watch_error = Some(error);
    }

    /// Makes every freeze find the job already OOM-killed by the kernel.
    pub fn oom_kill_before_freezes(&self) {
        self.state.lock().unwrap().freeze_finds_oom_kill = true;
    }

    pub fn clear(&self) {
        self.state.lock().unwrap().calls.clear();
    }

    /// Reports `what` about the run's watched attempt.
    pub fn report(&self, run: &RunId, what: Observed) {
        let state = self.state.lock().unwrap();
        let (epoch, sink) = state.watched.get(run).expect("run is watched");
        sink.send(Observation { run: run.clone(), epoch: *epoch, what }).unwrap();
    }

    pub fn exit(&self, run: &str, code: i32) {
        self.report(
            &RunId::new(run),
            Observed::Exited {
                status: ExitStatus::Code(code),
                at: Timestamp::EPOCH,
                stats: FinalStats::default(),
            },
        );
    }

    pub fn set_probe(&self, dir: &Path, probe: Probe) {
        self.state.lock().unwrap().probes.insert(dir.to_owned(), probe);
    }

    pub fn set_live(&self, live: Vec<(RunId, Option<CpuSet>)>) {
        self.state.lock().unwrap().live = live;
    }

    pub fn set_stats(&self, run: &RunId, stats: FinalStats) {
        self.state.lock().unwrap().stats.insert(run.clone(), stats);
    }

    fn record(&self, call: Call) {
        self.state.lock().unwrap().calls.push(call);
    }

    fn end(&self, run: &RunId, status: ExitStatus) {
        let state = self.state.lock().unwrap();
        if let Some((epoch, sink)) = state.watched.get(run) {
            // The accounting read from the cgroup at the end, as the host's.
            let stats = state.stats.get(run).copied().unwrap_or_default();
            let what = Observed::Exited { status, at: Timestamp::EPOCH, stats };
            let _ = sink.send(Observation { run: run.clone(), epoch: *epoch, what });
        }
    }
}

impl Runtime for FakeRuntime {
    fn plan(&self, spec: &JobSpec, run: &RunInputs<'_>) -> Result<RunPlan, LaunchError> {
        // A v2 host; the run's cgroup is nowhere in particular.
        let capabilities = Capabilities {
            freezer: FreezerKind::V2,
            kill: KillKind::CgroupKill,
            memsw: false,
            swap_max: true,
            populated_events: true,
            pressure: true,
            pause_at_limit: false,
        };
        let config = self.state.lock().unwrap().config.clone();
        launch::plan(spec, &launch::PlanInputs::new(run, &config, &capabilities, &[]))
    }

    async fn launch(&self, plan: LaunchPlan) -> Result<LaunchInfo, RuntimeError> {
        let run = plan.run().clone();
        let plan = plan.plan;
        self.record(Call::Launch {
            run: run.clone(),
            cpus: plan.resources.cpus.clone().unwrap_or_default(),
            memory: plan.resources.memory.hard_bytes.map(Bytes),
            dir: plan.container.run_dir.clone(),
        });
        let mut state = self.state.lock().unwrap();
        state.envs.insert(run.clone(), plan.container.env.clone());
        state.uids.insert(run, plan.dynamic_uid);
        state.next_pid += 2;
        Ok(LaunchInfo {
            shim_pid: 1000 + state.next_pid,
            init_pid: 1001 + state.next_pid,
            pid_start_time: 7,
            run_dir: plan.container.run_dir,
            launched_at: Timestamp::EPOCH,
        })
    }

    fn watch(
        &self,
        run: &RunId,
        _: &LaunchInfo,
        epoch: u64,
        sink: Sink,
    ) -> Result<(), RuntimeError> {
        let mut state = self.state.lock().unwrap();
        // The end is watched even when memory notifications fail.
        state.watched.insert(run.clone(), (epoch, sink));
        match state.watch_error {
            Some(error) => Err(RuntimeError::new(Operation::Watch, run, error())),
            None => Ok(()),
        }
    }

    async fn freeze(&self, run: &RunId) -> Result<(), RuntimeError> {
        self.record(Call::Freeze(run.clone()));
        let state = self.state.lock().unwrap();
        match state.freeze_error {
            Some(error) => Err(RuntimeError::new(Operation::Freeze, run, error())),
            None if state.freeze_finds_oom_kill => {
                Err(RuntimeError::new(Operation::Freeze, run, Cause::OomKilledFirst { kills: 1 }))
            }
            None => Ok(()),
        }
    }

    async fn thaw(&self, run: &RunId) -> Result<(), RuntimeError> {
        self.record(Call::Thaw(run.clone()));
        Ok(())
    }

    fn signal(&self, run: &RunId, _: &LaunchInfo, signal: Signal) -> Result<(), RuntimeError> {
        self.record(Call::Signal(run.clone(), signal));
        if self.state.lock().unwrap().term_kills {
            self.end(run, ExitStatus::Signal(signal as i32));
        }
        Ok(())
    }

    async fn kill_all(&self, run: &RunId) -> Result<(), RuntimeError> {
        self.record(Call::KillAll(run.clone()));
        self.end(run, ExitStatus::Signal(9));
        Ok(())
    }

    fn update(&self, run: &RunId, settings: &LiveSettings) -> Result<(), RuntimeError> {
        self.record(Call::Update {
            run: run.clone(),
            cpus: settings.cpus.clone(),
            memory: settings.memory_limit,
        });
        Ok(())
    }

    async fn remove(&self, run: &RunId) -> Result<(), RuntimeError> {
        self.record(Call::Remove(run.clone()));
        Ok(())
    }

    fn probe(&self, _: &RunId, run_dir: &Path) -> Result<Probe, RuntimeError> {
        Ok(self.state.lock().unwrap().probes.get(run_dir).cloned().unwrap_or(Probe::NotStarted))
    }

    fn stats(&self, run: &RunId) -> Option<FinalStats> {
        self.state.lock().unwrap().stats.get(run).copied()
    }

    fn live_runs(&self) -> Result<Vec<(RunId, Option<CpuSet>)>, RuntimeError> {
        Ok(self.state.lock().unwrap().live.clone())
    }
}
