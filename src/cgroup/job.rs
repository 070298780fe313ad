//! [`JobCgroup`]: one job's cgroups, one directory per tree, behind one set
//! of operations whatever the layout.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::unistd::Pid;

use super::error::CgroupError;
use super::events::{EventDirs, EventOptions, EventStream};
use super::freezer::FreezerState;
use super::fs::{read_knob, read_pids, read_u64, read_value, rmdir, write_knob};
use super::layout::Controller;
use super::manager::{FreezerKind, KillKind, Shared};
use super::notify::Notifier;
use super::path::CgroupName;
use super::plan::{apply, plan, Plan, PlanContext, PlanMode, Target};
use super::resources::Resources;
use super::stats::{Stats, StatsReader, StatsSources};
use super::{v1, v2};
use crate::topology::{CpuSet, NodeSet};

pub const PROCS: &str = "cgroup.procs";

/// One job's cgroup in each tree corral uses.
#[derive(Debug, Clone)]
pub struct JobCgroup {
    name: CgroupName,
    shared: Arc<Shared>,
    /// `(controllers of the hierarchy, job dir)`.
    v1: Vec<(Vec<Controller>, PathBuf)>,
    unified: Option<PathBuf>,
}

impl JobCgroup {
    pub(crate) fn new(name: CgroupName, shared: Arc<Shared>) -> Self {
        let v1 =
            shared.v1.iter().map(|h| (h.controllers.clone(), h.dir.join(name.as_str()))).collect();
        let unified = shared.unified.as_ref().map(|d| d.join(name.as_str()));
        JobCgroup { name, shared, v1, unified }
    }

    pub fn name(&self) -> &CgroupName {
        &self.name
    }

    /// The job's directory in every tree.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.v1.iter().map(|(_, d)| d.as_path()).chain(self.unified.as_deref())
    }

    /// The job's directory in the tree carrying `controller` (v1), if any.
    pub fn v1_dir(&self, controller: Controller) -> Option<&Path> {
        self.v1.iter().find(|(cs, _)| cs.contains(&controller)).map(|(_, d)| d.as_path())
    }

    /// The job's directory in the v2 tree, if it has one.
    pub fn unified_dir(&self) -> Option<&Path> {
        self.unified.as_deref()
    }

    fn dir_for(&self, target: Target) -> Option<&Path> {
        match target {
            Target::V1(controller) => self.v1_dir(controller),
            Target::Unified => self.unified_dir(),
        }
    }

    /// Every `cgroup.procs` the job's processes must be in. A launcher can
    /// join them itself before `exec`: writing `0` moves the writer.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs().map(|d| d.join(PROCS)).collect()
    }

    /// Moves `pid` into the job's cgroup in every tree.
    pub fn add_process(&self, pid: Pid) -> Result<(), CgroupError> {
        let value = pid.as_raw().to_string();
        for file in self.procs_files() {
            write_knob(&file, &value)?;
        }
        Ok(())
    }

    /// The processes in the job (read from its first tree).
    pub fn pids(&self) -> Result<Vec<Pid>, CgroupError> {
        match self.procs_files().first() {
            Some(file) => Ok(read_pids(file)?.into_iter().map(Pid::from_raw).collect()),
            None => Ok(Vec::new()),
        }
    }

    pub(crate) fn ensure_empty(&self) -> Result<(), CgroupError> {
        for file in self.procs_files() {
            if !read_pids(&file)?.is_empty() {
                let path = file.parent().unwrap_or(&file).to_path_buf();
                return Err(CgroupError::LeafBusy { path });
            }
        }
        Ok(())
    }

    /// Gathers what planning needs, with reads only.
    pub(crate) fn plan_context(&self, mode: PlanMode) -> Result<PlanContext, CgroupError> {
        let shared = &self.shared;
        let v1: BTreeSet<Controller> =
            self.v1.iter().flat_map(|(cs, _)| cs.iter().copied()).collect();
        let v2: BTreeSet<Controller> = shared.v2_enabled.iter().copied().collect();
        let parse_cpus = |path: PathBuf| -> Result<CpuSet, CgroupError> {
            let text = read_value(&path)?;
            CpuSet::parse(&text).map_err(|e| CgroupError::Parse { path, reason: e.to_string() })
        };
        let parse_mems = |path: PathBuf| -> Result<NodeSet, CgroupError> {
            let text = read_value(&path)?;
            NodeSet::parse(&text).map_err(|e| CgroupError::Parse { path, reason: e.to_string() })
        };
        let (parent_cpus, parent_mems) = if v1.contains(&Controller::Cpuset) {
            let parent = shared.v1.iter().find(|h| h.controllers.contains(&Controller::Cpuset));
            match parent {
                Some(h) => (
                    Some(parse_cpus(h.dir.join(v1::cpuset::CPUS))?),
                    Some(parse_mems(h.dir.join(v1::cpuset::MEMS))?),
                ),
                None => (None, None),
            }
        } else if v2.contains(&Controller::Cpuset) {
            match &shared.unified {
                Some(dir) => (
                    Some(parse_cpus(dir.join(v2::cpuset::CPUS_EFFECTIVE))?),
                    Some(parse_mems(dir.join(v2::cpuset::MEMS_EFFECTIVE))?),
                ),
                None => (None, None),
            }
        } else {
            (None, None)
        };
        let current_memory_limit = match (mode, shared.caps.memsw, self.v1_dir(Controller::Memory))
        {
            (PlanMode::Update, true, Some(dir)) => Some(read_u64(&dir.join(v1::memory::LIMIT))?),
            _ => None,
        };
        Ok(PlanContext {
            mode,
            v1,
            v2,
            memsw: shared.caps.memsw,
            swap_max: shared.caps.swap_max,
            parent_cpus,
            parent_mems,
            current_memory_limit,
            io_weight_files: self.io_weight_files(),
            device_program: shared.device_program,
            current_device_list: match (mode, self.v1_dir(Controller::Devices)) {
                (PlanMode::Update, Some(dir)) => Some(read_knob(&dir.join(v1::devices::LIST))?),
                _ => None,
            },
            hugetlb_sizes: shared.hugetlb_sizes.clone(),
        })
    }

    /// The I/O weight files the job's cgroup will have: its parent's, which
    /// shows the same files (they come and go with the I/O schedulers).
    fn io_weight_files(&self) -> Vec<&'static str> {
        let shared = &self.shared;
        let mut files = Vec::new();
        if let Some(h) = shared.v1.iter().find(|h| h.controllers.contains(&Controller::Blkio)) {
            files.extend(
                [v1::blkio::WEIGHT, v1::blkio::BFQ_WEIGHT]
                    .into_iter()
                    .filter(|f| h.dir.join(f).exists()),
            );
        } else if let Some(dir) = &shared.unified {
            files.extend(
                [v2::io::WEIGHT, v2::io::BFQ_WEIGHT].into_iter().filter(|f| dir.join(f).exists()),
            );
        }
        files
    }

    pub(crate) fn apply(&self, plan: &Plan) -> Result<(), CgroupError> {
        apply(plan, |target| self.dir_for(target))
    }

    /// Changes a running job's resources to exactly `resources` (unset
    /// settings return to the kernel's defaults). Returns what was written.
    pub fn update(&self, resources: &Resources) -> Result<Plan, CgroupError> {
        let plan = plan(&self.plan_context(PlanMode::Update)?, resources)?;
        self.apply(&plan)?;
        Ok(plan)
    }

    /// Stops every task of the job; returns once the kernel reports the
    /// cgroup frozen. Memory stays charged.
    pub async fn freeze(&self, timeout: Duration) -> Result<(), CgroupError> {
        self.set_frozen(true, timeout).await
    }

    /// Lets a frozen job run again; returns once the kernel reports it.
    pub async fn thaw(&self, timeout: Duration) -> Result<(), CgroupError> {
        self.set_frozen(false, timeout).await
    }

    async fn set_frozen(&self, frozen: bool, timeout: Duration) -> Result<(), CgroupError> {
        match (self.shared.caps.freezer, &self.unified, self.v1_dir(Controller::Freezer)) {
            (FreezerKind::V2, Some(dir), _) => v2::freezer::set(dir, frozen, timeout).await,
            (FreezerKind::V1, _, Some(dir)) => {
                let want = if frozen { FreezerState::Frozen } else { FreezerState::Thawed };
                v1::freezer::set(dir, want, timeout).await
            }
            _ => Err(CgroupError::Unsupported {
                what: "freezing",
                reason: "no v1 freezer hierarchy and no cgroup.freeze in the v2 tree".into(),
            }),
        }
    }

    /// Whether the job is stopped at its hard memory limit: v1 with the OOM
    /// killer disabled parks it there (`under_oom 1`) until the limit is
    /// raised. Never true elsewhere: v2 cannot pause at `memory.max`.
    pub fn paused_at_limit(&self) -> Result<bool, CgroupError> {
        let Some(dir) = self.v1_dir(Controller::Memory) else { return Ok(false) };
        let text = read_knob(&dir.join(v1::memory::OOM_CONTROL))?;
        Ok(v1::memory::parse_oom_control(&text).under_oom)
    }

    /// How many of the job's processes the kernel OOM-killed, from v2
    /// `memory.events`; `None` where the memory controller is not on v2 (v1
    /// reports kills through its OOM eventfd).
    pub fn v2_oom_kills(&self) -> Result<Option<u64>, CgroupError> {
        let Some(dir) = self.unified.as_deref() else { return Ok(None) };
        if !self.shared.v2_enabled.contains(&Controller::Memory) {
            return Ok(None);
        }
        let text = read_knob(&dir.join(v2::memory::EVENTS))?;
        Ok(Some(v2::memory::parse_events(&text).oom_kill))
    }

    /// The CPUs the job may run on now, as its cpuset says; `None` where it
    /// has no cpuset controller, or its own set is empty (a v2 cgroup then
    /// inherits its parent's).
    pub fn cpus(&self) -> Result<Option<CpuSet>, CgroupError> {
        let file = match (self.v1_dir(Controller::Cpuset), &self.unified) {
            (Some(dir), _) => dir.join(v1::cpuset::CPUS),
            (None, Some(dir)) if self.shared.v2_enabled.contains(&Controller::Cpuset) => {
                dir.join(v2::cpuset::CPUS)
            }
            _ => return Ok(None),
        };
        let text = read_value(&file)?;
        let set = CpuSet::parse(&text)
            .map_err(|e| CgroupError::Parse { path: file.clone(), reason: e.to_string() })?;
        Ok(Some(set).filter(|set| !set.is_empty()))
    }

    /// Whether the job's cgroup exists in any tree (it may have been removed
    /// behind the agent's back).
    pub fn exists(&self) -> bool {
        self.dirs().any(Path::exists)
    }

    pub fn freezer_state(&self) -> Result<FreezerState, CgroupError> {
        match (self.shared.caps.freezer, &self.unified, self.v1_dir(Controller::Freezer)) {
            (FreezerKind::V2, Some(dir), _) => v2::freezer::read_state(dir),
            (FreezerKind::V1, _, Some(dir)) => v1::freezer::read_state(dir),
            _ => Err(CgroupError::Unsupported {
                what: "freezer state",
                reason: "no freezer available".into(),
            }),
        }
    }

    /// SIGKILLs every process of the job, including ones forked meanwhile,
    /// and returns once the job's cgroups are empty (ready for [`remove`]).
    ///
    /// [`remove`]: Self::remove
    pub async fn kill(&self, timeout: Duration) -> Result<(), CgroupError> {
        let v1_procs: Vec<PathBuf> = self.v1.iter().map(|(_, d)| d.join(PROCS)).collect();
        let start = tokio::time::Instant::now();
        if let (KillKind::CgroupKill, Some(dir)) = (self.shared.caps.kill, &self.unified) {
            if !v2::kill::kill(dir, timeout).await? {
                return Err(CgroupError::KillTimeout {
                    path: dir.clone(),
                    remaining: read_pids(&dir.join(PROCS))?.len(),
                    timeout,
                });
            }
        }
        // A process that joined only the v1 hierarchies would have escaped
        // cgroup.kill; the v1 method finishes the job there.
        if v1_procs.is_empty() {
            return Ok(());
        }
        let remaining = timeout.saturating_sub(start.elapsed());
        let freezer = match self.shared.caps.freezer {
            FreezerKind::V1 => self.v1_dir(Controller::Freezer),
            _ => None,
        };
        v1::kill::kill_all(freezer, &v1_procs, remaining).await
    }

    /// Opens the job's statistics files for repeated reading.
    pub fn stats_reader(&self) -> Result<StatsReader, CgroupError> {
        let mut v1 = Vec::new();
        for (controllers, dir) in &self.v1 {
            for c in controllers {
                v1.push((*c, dir.as_path()));
            }
        }
        let sources = StatsSources {
            v1,
            unified: self.unified.as_deref().map(|d| (d, self.shared.v2_enabled.as_slice())),
        };
        StatsReader::open(&sources, self.shared.clk_tck)
    }

    /// Reads the job's statistics once.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        self.stats_reader()?.read()
    }

    /// Subscribes to the job's kernel notifications; inotify watches go on
    /// `notifier`'s shared instance. Must be called from within a tokio
    /// runtime.
    pub fn events(
        &self,
        notifier: &Notifier,
        options: &EventOptions,
    ) -> Result<EventStream, CgroupError> {
        let dirs = EventDirs {
            v1_memory: self.v1_dir(Controller::Memory),
            unified: self.unified.as_deref(),
            unified_memory: self.shared.v2_enabled.contains(&Controller::Memory),
        };
        EventStream::open(notifier, &dirs, options)
    }

    /// Subscribes to the job's OOM notifications only (`Oom`, `OomKill`,
    /// `PausedAtLimit`, and v2's `MemoryHigh`/`MemoryMax`): the v1 eventfd,
    /// or v2 `memory.events`. Where the memory controller is v1 (hybrid
    /// hosts) this watches nothing with inotify, so `notifier` opens no
    /// instance, whose closing waits for an SRCU grace period (around
    /// 10 ms): the choice for a short-lived process that must exit promptly,
    /// and for the agent, which needs nothing else. Must be called from
    /// within a tokio runtime.
    pub fn oom_events(&self, notifier: &Notifier) -> Result<EventStream, CgroupError> {
        let unified_memory = self.shared.v2_enabled.contains(&Controller::Memory);
        let dirs = EventDirs {
            v1_memory: self.v1_dir(Controller::Memory),
            unified: if unified_memory { self.unified.as_deref() } else { None },
            unified_memory,
        };
        EventStream::open(notifier, &dirs, &EventOptions { memory_pressure: None })
    }

    /// Removes the job's cgroups. They must be empty (see [`kill`]); a
    /// cgroup that is already gone is not an error. Every tree is tried; the
    /// first failure is returned.
    ///
    /// [`kill`]: Self::kill
    pub fn remove(&self) -> Result<(), CgroupError> {
        let mut first_error = None;
        for dir in self.dirs() {
            if let Err(err) = rmdir(dir) {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_can_run_on_any_tokio_worker() {
        fn send<T: Send>(_: &T) {}
        // Compile-time check only: the futures and the stream are `Send`.
        fn check(job: &JobCgroup, events: &mut EventStream) {
            send(job);
            send(&job.freeze(Duration::ZERO));
            send(&job.thaw(Duration::ZERO));
            send(&job.kill(Duration::ZERO));
            send(&events.next());
        }
        let _ = check;
    }
}
