//! [`CgroupManager`]: the parent cgroup corral creates jobs under, set up once
//! per agent, and the factory of [`JobCgroup`]s.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::error::CgroupError;
use super::fs::{mkdir, read_knob};
use super::job::JobCgroup;
use super::layout::{Controller, Layout, V2_USED};
use super::path::{CgroupName, CgroupPath};
use super::plan::{Plan, PlanMode};
use super::resources::Resources;
use super::{v1, v2};

/// Where the parent path is rooted in each hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Anchor {
    /// At the root of every hierarchy: `/sys/fs/cgroup/memory/<parent>`.
    #[default]
    HierarchyRoot,
    /// Under this process's own cgroup in every hierarchy (from
    /// `/proc/self/cgroup`), e.g. to nest inside a cgroup delegated to the
    /// agent. On v2, that cgroup must not hold processes itself once
    /// controllers are enabled in it (no-internal-process rule).
    OwnCgroup,
    /// Under this cgroup of the v2 tree (`/system.slice/corral.service`),
    /// delegated to the agent (see [`super::delegation`]): nothing is
    /// created or written outside it, so it needs a pure v2 host.
    Delegated(String),
}

#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// The parent of every job cgroup, relative to the anchor (`corral`).
    pub parent: CgroupPath,
    pub anchor: Anchor,
    /// In a hybrid layout, use the v2 tree for freezing, `cgroup.kill`,
    /// `cgroup.events` and PSI. When `false` the agent behaves as on pure v1.
    pub use_unified: bool,
}

impl ManagerConfig {
    pub fn new(parent: CgroupPath) -> Self {
        ManagerConfig { parent, anchor: Anchor::HierarchyRoot, use_unified: true }
    }
}

/// How jobs are frozen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FreezerKind {
    /// `cgroup.freeze`, confirmed by a `cgroup.events` notification.
    V2,
    /// `freezer.state`, confirmed by re-reading.
    V1,
    None,
}

impl FreezerKind {
    /// The v2 freezer wherever the job's v2 cgroup has `cgroup.freeze`: the
    /// kernel confirms it by notification, and a task it froze still dies
    /// on SIGKILL. Otherwise the v1 hierarchy's, if one is mounted.
    pub(crate) fn choose(v2_freeze: bool, v1_freezer: bool) -> FreezerKind {
        if v2_freeze {
            FreezerKind::V2
        } else if v1_freezer {
            FreezerKind::V1
        } else {
            FreezerKind::None
        }
    }
}

/// How all processes of a job are killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KillKind {
    /// `cgroup.kill` (kernel 5.14+).
    CgroupKill,
    /// v1 freezer: freeze, SIGKILL every pid, thaw.
    FreezeAndSignal,
    /// SIGKILL every pid, repeated until the cgroup stays empty.
    Signal,
}

impl KillKind {
    /// `cgroup.kill` where the job's v2 cgroup has it; else freezing first
    /// with a v1 freezer, so nothing forks between listing and signalling.
    pub(crate) fn choose(v2_kill: bool, freezer: FreezerKind) -> KillKind {
        if v2_kill {
            KillKind::CgroupKill
        } else if freezer == FreezerKind::V1 {
            KillKind::FreezeAndSignal
        } else {
            KillKind::Signal
        }
    }
}

/// What this host's layout lets corral do, probed once on the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    pub freezer: FreezerKind,
    pub kill: KillKind,
    /// v1 `memory.memsw.*` (swap accounting): swap limits work on v1.
    pub memsw: bool,
    /// v2 `memory.swap.max`.
    pub swap_max: bool,
    /// `cgroup.events` notifications (`Populated`/`Emptied` events).
    pub populated_events: bool,
    /// PSI files in the job's v2 cgroup.
    pub pressure: bool,
    /// v1 memory controller: `OomMode::PauseAtLimit` works.
    pub pause_at_limit: bool,
}

/// One v1 hierarchy jobs get a cgroup in.
#[derive(Debug, Clone)]
pub(crate) struct V1Parent {
    pub controllers: Vec<Controller>,
    pub dir: PathBuf,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub layout: Layout,
    pub v1: Vec<V1Parent>,
    /// The parent in the v2 tree, when jobs get a v2 cgroup.
    pub unified: Option<PathBuf>,
    /// Controllers enabled for jobs in the v2 tree.
    pub v2_enabled: Vec<Controller>,
    pub caps: Capabilities,
    pub clk_tck: u64,
    /// How the parent was made in each tree, to make it again.
    pub parent_levels: Vec<ParentLevels>,
    /// The v2 parent is on a cgroup2 filesystem, where jobs can get a
    /// device program (`BPF_CGROUP_DEVICE` attaches to nothing else).
    pub device_program: bool,
    /// The huge page sizes the kernel has hugetlb limits for, found once on
    /// the parent.
    pub hugetlb_sizes: Vec<u64>,
}

/// The parent's directories in one tree, from below its anchor down, and
/// what each new level needs before it can hold children.
#[derive(Debug, Clone)]
pub(crate) struct ParentLevels {
    pub anchor: PathBuf,
    pub dirs: Vec<PathBuf>,
    pub prepare: Prepare,
}

#[derive(Debug, Clone)]
pub(crate) enum Prepare {
    /// v2: these controllers enabled in `cgroup.subtree_control`.
    Unified(BTreeSet<Controller>),
    /// v1 cpuset: `cpuset.cpus` and `cpuset.mems` copied from the level above.
    V1Cpuset,
    /// Any other v1 hierarchy: nothing but the directory.
    V1,
}

impl ParentLevels {
    /// Makes the missing levels (an existing one is left as it is: it may
    /// have children whose settings depend on it). Returns whether any was
    /// made.
    fn make(&self) -> Result<bool, CgroupError> {
        let mut made = false;
        let mut above = self.anchor.clone();
        for dir in &self.dirs {
            if mkdir(dir)? {
                made = true;
                match &self.prepare {
                    Prepare::Unified(wanted) => v2::enable_for_children(dir, wanted)?,
                    Prepare::V1Cpuset => v1::cpuset::inherit_from(&above, dir)?,
                    Prepare::V1 => {}
                }
            }
            above = dir.clone();
        }
        Ok(made)
    }
}

/// Creates and finds job cgroups under one parent.
#[derive(Debug, Clone)]
pub struct CgroupManager {
    shared: Arc<Shared>,
}

fn anchor_dir(
    anchor: &Anchor,
    mount_point: &Path,
    own: Option<&str>,
    dir_of: impl Fn(&str) -> Result<PathBuf, CgroupError>,
    hierarchy: &str,
) -> Result<PathBuf, CgroupError> {
    match anchor {
        Anchor::HierarchyRoot => Ok(mount_point.to_path_buf()),
        Anchor::OwnCgroup => match own {
            Some(own) => dir_of(own),
            None => Err(CgroupError::OwnCgroupUnknown { hierarchy: hierarchy.to_owned() }),
        },
        Anchor::Delegated(cgroup) => dir_of(cgroup),
    }
}

/// The delegated cgroup's directory when the tree is anchored in one; every
/// directory the manager writes must be inside it.
fn delegated_dir(layout: &Layout, anchor: &Anchor) -> Result<Option<PathBuf>, CgroupError> {
    let Anchor::Delegated(cgroup) = anchor else { return Ok(None) };
    match &layout.unified {
        Some(u) if layout.v1.is_empty() => Ok(Some(u.dir_of(cgroup)?)),
        _ => Err(CgroupError::Delegation {
            cgroup: cgroup.clone(),
            reason: format!(
                "the host's layout is {}: its v1 hierarchies are outside any delegated cgroup",
                layout.kind
            ),
        }),
    }
}

/// Refuses a directory outside the delegated cgroup (the single-writer rule
/// of a tree a service manager owns).
fn confine(delegated: Option<&Path>, dir: &Path) -> Result<(), CgroupError> {
    match delegated {
        Some(root) if !dir.starts_with(root) => {
            Err(CgroupError::OutsideDelegation { path: dir.to_owned(), delegated: root.to_owned() })
        }
        _ => Ok(()),
    }
}

fn on_cgroup2(dir: &Path) -> bool {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
    statfs(dir).is_ok_and(|fs| fs.filesystem_type() == CGROUP2_SUPER_MAGIC)
}

fn clk_tck() -> u64 {
    use nix::unistd::{sysconf, SysconfVar};
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(hz)) if hz > 0 => hz as u64,
        _ => 100,
    }
}

impl CgroupManager {
    /// Creates the parent in every hierarchy corral uses (if missing) and
    /// prepares it for children: v1 cpusets filled from above, v2
    /// controllers enabled in `cgroup.subtree_control` from the anchor down.
    /// Then probes what the kernel offers there.
    pub fn open(layout: Layout, config: &ManagerConfig) -> Result<Self, CgroupError> {
        let delegated = delegated_dir(&layout, &config.anchor)?;
        let mut unified_parent = None;
        let mut v2_enabled = Vec::new();
        let mut parent_levels = Vec::new();
        if let Some(u) = layout.unified_for_jobs(config.use_unified) {
            let anchor = anchor_dir(
                &config.anchor,
                &u.mount_point,
                u.own_cgroup.as_deref(),
                |c| u.dir_of(c),
                "unified",
            )?;
            confine(delegated.as_deref(), &anchor)?;
            let available = v2::parse_controllers(&read_knob(&anchor.join(v2::CONTROLLERS))?);
            let wanted: BTreeSet<Controller> =
                V2_USED.into_iter().filter(|c| available.contains(c)).collect();
            // Every level that has children needs the controllers enabled.
            v2::enable_for_children(&anchor, &wanted)?;
            let dirs = config.parent.dirs_under(&anchor);
            for dir in &dirs {
                mkdir(dir)?;
                v2::enable_for_children(dir, &wanted)?;
            }
            unified_parent = dirs.last().cloned();
            v2_enabled = wanted.iter().copied().collect();
            parent_levels.push(ParentLevels { anchor, dirs, prepare: Prepare::Unified(wanted) });
        }
        let unified_has =
            |file: &str| unified_parent.as_ref().is_some_and(|d| d.join(file).exists());

        let freezer = FreezerKind::choose(
            unified_has(v2::freezer::FREEZE),
            layout.v1_hierarchy(Controller::Freezer).is_some(),
        );
        // Controllers jobs need a v1 cgroup for. cpuacct only feeds
        // statistics, which the v2 tree's cpu.stat also provides.
        let mut needed = vec![
            Controller::Cpu,
            Controller::Cpuset,
            Controller::Memory,
            Controller::Pids,
            Controller::Blkio,
            Controller::Devices,
        ];
        if freezer == FreezerKind::V1 {
            needed.push(Controller::Freezer);
        }
        if unified_parent.is_none() {
            needed.push(Controller::Cpuacct);
        }
        // Huge page limits on a v1 host; on a hybrid host the kernel may
        // have bound hugetlb to the v2 tree instead, enabled there above.
        needed.push(Controller::Hugetlb);

        let mut v1 = Vec::new();
        for h in &layout.v1 {
            if !h.controllers.iter().any(|c| needed.contains(c)) {
                continue;
            }
            let anchor = anchor_dir(
                &config.anchor,
                &h.mount_point,
                h.own_cgroup.as_deref(),
                |c| h.dir_of(c),
                &h.label(),
            )?;
            confine(delegated.as_deref(), &anchor)?;
            let dirs = config.parent.dirs_under(&anchor);
            let mut above = anchor.clone();
            for dir in &dirs {
                mkdir(dir)?;
                if h.controllers.contains(&Controller::Cpuset) {
                    v1::cpuset::inherit_from(&above, dir)?;
                }
                above = dir.clone();
            }
            v1.push(V1Parent { controllers: h.controllers.clone(), dir: above });
            let prepare = if h.controllers.contains(&Controller::Cpuset) {
                Prepare::V1Cpuset
            } else {
                Prepare::V1
            };
            parent_levels.push(ParentLevels { anchor, dirs, prepare });
        }

        let v1_dir = |c: Controller| v1.iter().find(|h| h.controllers.contains(&c)).map(|h| &h.dir);
        let v1_memory = v1_dir(Controller::Memory);
        let hugetlb_parent = v1_dir(Controller::Hugetlb).cloned().or_else(|| {
            unified_parent.clone().filter(|_| v2_enabled.contains(&Controller::Hugetlb))
        });
        let hugetlb_sizes =
            hugetlb_parent.map_or_else(Vec::new, |dir| super::hugetlb::sizes_in(&dir));
        let caps = Capabilities {
            freezer,
            kill: KillKind::choose(unified_has(v2::kill::KILL), freezer),
            memsw: v1_memory.is_some_and(|d| d.join(v1::memory::MEMSW_LIMIT).exists()),
            swap_max: unified_has(v2::memory::SWAP_MAX),
            populated_events: unified_has(v2::events::EVENTS),
            pressure: unified_has(v2::psi::MEMORY),
            pause_at_limit: v1_memory.is_some(),
        };
        let device_program = unified_parent.as_deref().is_some_and(on_cgroup2);
        Ok(CgroupManager {
            shared: Arc::new(Shared {
                layout,
                v1,
                unified: unified_parent,
                v2_enabled,
                caps,
                clk_tck: clk_tck(),
                parent_levels,
                device_program,
                hugetlb_sizes,
            }),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.shared.layout
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.shared.caps
    }

    /// Whether a job cgroup gets `controller`: a v1 hierarchy of it, or
    /// the v2 tree jobs are placed in with it enabled.
    pub fn jobs_have(&self, controller: Controller) -> bool {
        self.shared.v1.iter().any(|h| h.controllers.contains(&controller))
            || self.shared.v2_enabled.contains(&controller)
    }

    /// The parent directory in every tree jobs are created in.
    pub fn parent_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.shared.v1.iter().map(|h| h.dir.clone()).collect();
        dirs.extend(self.shared.unified.clone());
        dirs
    }

    /// The parent's `memory.pressure` in the v2 tree jobs are placed in, if
    /// that tree has one there: PSI counts the stalls of every run below
    /// it, with or without controllers (on a hybrid host too).
    pub fn parent_memory_pressure(&self) -> Option<PathBuf> {
        let file = self.shared.unified.as_ref()?.join(v2::psi::MEMORY);
        file.exists().then_some(file)
    }

    /// Makes the parent again in every tree where it is gone (an
    /// administrator removed it, after killing what ran under it), prepared
    /// as [`CgroupManager::open`] prepares it. Returns the trees' parent
    /// directories that were made; empty when all were there.
    pub fn restore_parent(&self) -> Result<Vec<PathBuf>, CgroupError> {
        let mut made = Vec::new();
        for levels in &self.shared.parent_levels {
            if levels.dirs.last().is_some_and(|d| !d.exists()) && levels.make()? {
                made.extend(levels.dirs.last().cloned());
            }
        }
        Ok(made)
    }

    /// A handle on the job cgroup `name`, whether or not it exists (e.g. to
    /// adopt a running job after an agent restart).
    pub fn job(&self, name: &CgroupName) -> JobCgroup {
        JobCgroup::new(name.clone(), Arc::clone(&self.shared))
    }

    /// The job cgroups that exist under the parent (in its first tree).
    pub fn jobs(&self) -> Result<Vec<CgroupName>, CgroupError> {
        let Some(parent) = self.parent_dirs().into_iter().next() else { return Ok(Vec::new()) };
        let entries = std::fs::read_dir(&parent)
            .map_err(|source| CgroupError::Read { path: parent.clone(), source })?;
        let mut names = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|source| CgroupError::Read { path: parent.clone(), source })?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if let Some(name) = entry.file_name().to_str().and_then(|n| CgroupName::new(n).ok())
                {
                    names.push(name);
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Validates `resources` for a new job under this parent without
    /// creating anything: what [`create`](Self::create) would write.
    pub fn plan(&self, resources: &Resources) -> Result<Plan, CgroupError> {
        let probe = CgroupName::new("plan").expect("valid name");
        let job = self.job(&probe);
        Ok(super::plan::plan(&job.plan_context(PlanMode::Create)?, resources)?)
    }

    /// Creates the job cgroup `name` in every tree and applies `resources`.
    ///
    /// Nothing is created when `resources` is invalid. A leftover empty
    /// cgroup of the same name (from an agent that died) is reused and fully
    /// reset; one that holds processes is refused. On a failed write, the
    /// directories created here are removed again.
    pub fn create(
        &self,
        name: &CgroupName,
        resources: &Resources,
    ) -> Result<JobCgroup, CgroupError> {
        let job = self.job(name);
        let mut plan = super::plan::plan(&job.plan_context(PlanMode::Create)?, resources)?;
        let mut created = Vec::new();
        let mut reused = false;
        for dir in job.dirs() {
            match mkdir(dir) {
                Ok(true) => created.push(dir.to_path_buf()),
                Ok(false) => reused = true,
                Err(err) => {
                    remove_dirs(&created);
                    return Err(err);
                }
            }
        }
        let result = (|| {
            if reused {
                job.ensure_empty()?;
                plan = super::plan::plan(&job.plan_context(PlanMode::Update)?, resources)?;
            }
            job.apply(&plan)
        })();
        match result {
            Ok(()) => Ok(job),
            Err(err) => {
                remove_dirs(&created);
                Err(err)
            }
        }
    }
}

fn remove_dirs(dirs: &[PathBuf]) {
    for dir in dirs {
        let _ = std::fs::remove_dir(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::fake::{FakeFs, FakeKind};
    use crate::cgroup::resources::{MemoryLimits, OomMode};
    use crate::topology::{CpuSet, NodeSet};
    use crate::vocab::CpuWeight;
    use crate::vocab::MilliCpus;

    const MI: u64 = 1 << 20;

    fn config() -> ManagerConfig {
        ManagerConfig::new(CgroupPath::new("corral").unwrap())
    }

    fn name(n: &str) -> CgroupName {
        CgroupName::new(n).unwrap()
    }

    fn full_resources() -> Resources {
        Resources {
            cpu_weight: Some(CpuWeight::new(200).unwrap()),
            cpu_quota: Some(MilliCpus::new(500).unwrap()),
            cpus: Some(CpuSet::parse("1").unwrap()),
            mems: Some(NodeSet::parse("0").unwrap()),
            memory: MemoryLimits {
                hard_bytes: Some(32 * MI),
                soft_bytes: Some(16 * MI),
                high_bytes: None,
                swap_bytes: Some(0),
            },
            pids_max: Some(64),
            oom: OomMode::Kill,
            ..Default::default()
        }
    }

    #[test]
    fn v1_parent_is_created_with_its_cpuset_filled() {
        let fs = FakeFs::new(FakeKind::V1);
        fs.add_cgroup("corral");
        let m = CgroupManager::open(fs.layout(), &config()).unwrap();
        let cpuset = fs.v1_root("cpuset").join("corral");
        assert_eq!(fs.read(&cpuset.join("cpuset.cpus")), "0-3");
        assert_eq!(fs.read(&cpuset.join("cpuset.mems")), "0");
        assert_eq!(m.parent_dirs().len(), 8);
        assert_eq!(
            *m.capabilities(),
            Capabilities {
                freezer: FreezerKind::V1,
                kill: KillKind::FreezeAndSignal,
                memsw: true,
                swap_max: false,
                populated_events: false,
                pressure: false,
                pause_at_limit: true,
            }
        );
    }

    #[test]
    fn a_removed_parent_is_made_again_only_where_it_is_missing() {
        let fs = FakeFs::new(FakeKind::V1);
        fs.add_cgroup("corral");
        let m = CgroupManager::open(fs.layout(), &config()).unwrap();
        assert_eq!(m.restore_parent().unwrap(), Vec::<PathBuf>::new());
        let pids = fs.v1_root("pids").join("corral");
        std::fs::remove_dir_all(&pids).unwrap();
        assert_eq!(m.restore_parent().unwrap(), vec![pids.clone()]);
        assert!(pids.is_dir());
        // A cpuset parent made again gets its CPUs from above, like at start:
        // the fake's new directories have no knob files, so the write fails,
        // naming the file.
        let cpuset = fs.v1_root("cpuset").join("corral");
        std::fs::remove_dir_all(&cpuset).unwrap();
        let err = m.restore_parent().unwrap_err().to_string();
        assert!(err.contains(&cpuset.join("cpuset.cpus").display().to_string()), "{err}");
    }

    #[test]
    fn v1_create_reuses_an_empty_leftover_and_writes_every_knob() {
        let fs = FakeFs::new(FakeKind::V1);
        fs.add_cgroup("corral");
        fs.add_cgroup("corral/job-1");
        let m = CgroupManager::open(fs.layout(), &config()).unwrap();
        let res = Resources { oom: OomMode::PauseAtLimit, ..full_resources() };
        let job = m.create(&name("job-1"), &res).unwrap();
        let leaf = |c: &str, f: &str| fs.read(&fs.v1_root(c).join("corral/job-1").join(f));
        assert_eq!(leaf("cpuset", "cpuset.cpus"), "1");
        assert_eq!(leaf("cpuset", "cpuset.mems"), "0");
        assert_eq!(leaf("cpu", "cpu.shares"), "2048");
        assert_eq!(leaf("cpu", "cpu.cfs_period_us"), "100000");
        assert_eq!(leaf("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(leaf("memory", "memory.limit_in_bytes"), "33554432");
        assert_eq!(leaf("memory", "memory.memsw.limit_in_bytes"), "33554432");
        assert_eq!(leaf("memory", "memory.soft_limit_in_bytes"), "16777216");
        assert_eq!(leaf("memory", "memory.oom_control"), "1");
        assert_eq!(leaf("pids", "pids.max"), "64");
        assert_eq!(job.procs_files().len(), 8);
        assert_eq!(m.jobs().unwrap(), vec![name("job-1")]);
    }

    #[test]
    fn a_leftover_with_processes_is_refused() {
        let fs = FakeFs::new(FakeKind::V1);
        fs.add_cgroup("corral");
        fs.add_cgroup("corral/job-1");
        std::fs::write(fs.v1_root("pids").join("corral/job-1/cgroup.procs"), "4242\n").unwrap();
        let m = CgroupManager::open(fs.layout(), &config()).unwrap();
        let err = m.create(&name("job-1"), &Resources::default()).unwrap_err();
        assert!(matches!(err, CgroupError::LeafBusy { .. }), "{err}");
    }

    #[test]
    fn invalid_resources_create_nothing() {
        let fs = FakeFs::new(FakeKind::V1);
        fs.add_cgroup("corral");
        let m = CgroupManager::open(fs.layout(), &config()).unwrap();
        let res = Resources { pids_max: Some(0), ..Default::default() };
        let err = m.create(&name("job-2"), &res).unwrap_err();
        let CgroupError::Plan(plan) = &err else { panic!("{err}") };
        assert_eq!(plan.problems.len(), 1);
        for dir in m.parent_dirs() {
            assert!(!dir.join("job-2").exists());
        }
    }

    #[test]
    fn a_failed_write_names_file_and_value_and_removes_what_was_created() {
        let fs = FakeFs::new(FakeKind::V1);
        fs.add_cgroup("corral");
        let m = CgroupManager::open(fs.layout(), &config()).unwrap();
        // The fake's mkdir makes empty directories: the first write fails.
        let err = m.create(&name("job-3"), &Resources::default()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("\"0-3\"") && text.contains("corral/job-3/cpuset.cpus"), "{text}");
        for dir in m.parent_dirs() {
            assert!(!dir.join("job-3").exists());
        }
    }

    #[test]
    fn parent_can_be_anchored_at_the_agents_own_cgroup() {
        let fs = FakeFs::new(FakeKind::V1);
        let own: String =
            ["cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "blkio", "devices"]
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{}:{c}:/agent\n", i + 1))
                .collect();
        std::fs::write(fs.dir.path().join("self-cgroup"), own).unwrap();
        fs.add_cgroup("agent");
        std::fs::write(fs.v1_root("cpuset").join("agent/cpuset.cpus"), "2-3\n").unwrap();
        std::fs::write(fs.v1_root("cpuset").join("agent/cpuset.mems"), "0\n").unwrap();
        fs.add_cgroup("agent/corral");
        let cfg = ManagerConfig { anchor: Anchor::OwnCgroup, ..config() };
        let m = CgroupManager::open(fs.layout(), &cfg).unwrap();
        assert!(m.parent_dirs().iter().all(|d| d.ends_with("agent/corral")));
        assert_eq!(fs.read(&fs.v1_root("cpuset").join("agent/corral/cpuset.cpus")), "2-3");
        // A job asking for CPUs outside the agent's cgroup is refused.
        let res = Resources { cpus: Some(CpuSet::parse("0").unwrap()), ..Default::default() };
        let err = m.plan(&res).unwrap_err();
        assert!(err.to_string().contains("not within the parent's 2-3"), "{err}");
    }

    #[test]
    fn unknown_own_cgroup_is_an_error() {
        let fs = FakeFs::new(FakeKind::V1);
        std::fs::write(fs.dir.path().join("self-cgroup"), "").unwrap();
        let cfg = ManagerConfig { anchor: Anchor::OwnCgroup, ..config() };
        let err = CgroupManager::open(fs.layout(), &cfg).unwrap_err();
        assert!(matches!(err, CgroupError::OwnCgroupUnknown { .. }), "{err}");
    }

    #[test]
    fn v2_enables_controllers_from_the_root_down() {
        let fs = FakeFs::new(FakeKind::V2);
        fs.add_cgroup("corral");
        let m = CgroupManager::open(fs.layout(), &config()).unwrap();
        let root = fs.unified_root();
        assert_eq!(fs.read(&root.join("cgroup.subtree_control")), "+cpu +cpuset +memory +pids +io");
        assert_eq!(
            fs.read(&root.join("corral/cgroup.subtree_control")),
            "+cpu +cpuset +memory +pids +io"
        );
        assert_eq!(
            *m.capabilities(),
            Capabilities {
                freezer: FreezerKind::V2,
                kill: KillKind::CgroupKill,
                memsw: false,
                swap_max: true,
                populated_events: true,
                pressure: true,
                pause_at_limit: false,
            }
        );
    }

    #[test]
    fn v2_create_then_update_resets_unset_knobs() {
        let fs = FakeFs::new(FakeKind::V2);
        fs.add_cgroup("corral");
        fs.add_cgroup("corral/job-1");
        let m = CgroupManager::open(fs.layout(), &config()).unwrap();
        let mut res = full_resources();
        res.memory.high_bytes = Some(24 * MI);
        let job = m.create(&name("job-1"), &res).unwrap();
        let leaf = |f: &str| fs.read(&fs.unified_root().join("corral/job-1").join(f));
        assert_eq!(leaf("cpuset.cpus"), "1");
        assert_eq!(leaf("cpu.weight"), "200");
        assert_eq!(leaf("cpu.max"), "50000 100000");
        assert_eq!(leaf("memory.max"), "33554432");
        assert_eq!(leaf("memory.low"), "16777216");
        assert_eq!(leaf("memory.high"), "25165824");
        assert_eq!(leaf("memory.swap.max"), "0");
        assert_eq!(leaf("memory.oom.group"), "1");
        assert_eq!(leaf("pids.max"), "64");

        let written = job
            .update(&Resources {
                cpu_weight: Some(CpuWeight::new(50).unwrap()),
                ..Default::default()
            })
            .unwrap();
        assert!(written.skipped.is_empty());
        assert_eq!(leaf("cpu.weight"), "50");
        assert_eq!(leaf("cpu.max"), "max 100000");
        assert_eq!(leaf("cpuset.cpus"), "");
        assert_eq!(leaf("memory.max"), "max");
        assert_eq!(leaf("memory.low"), "0");
        assert_eq!(leaf("pids.max"), "max");

        // Pausing at the limit is a v1 feature.
        let err = job
            .update(&Resources { oom: OomMode::PauseAtLimit, ..Default::default() })
            .unwrap_err();
        assert!(err.to_string().contains("pause at memory limit"), "{err}");
    }

    #[test]
    fn hybrid_sets_resources_in_v1_and_uses_the_v2_tree_for_the_rest() {
        let fs = FakeFs::new(FakeKind::Hybrid);
        fs.add_cgroup("corral");
        fs.add_cgroup("corral/job-1");
        let m = CgroupManager::open(fs.layout(), &config()).unwrap();
        // The v2 tree carries only hugetlb, enabled for jobs' huge page limits.
        assert_eq!(fs.read(&fs.unified_root().join("cgroup.subtree_control")), "+hugetlb");
        assert!(m.jobs_have(Controller::Hugetlb) && m.jobs_have(Controller::Memory));
        assert!(m.jobs_have(Controller::Devices));
        let caps = *m.capabilities();
        assert_eq!((caps.freezer, caps.kill), (FreezerKind::V2, KillKind::CgroupKill));
        assert!(caps.memsw && caps.pause_at_limit && caps.populated_events && caps.pressure);
        // freezer and cpuacct hierarchies are not joined.
        let parents = m.parent_dirs();
        assert_eq!(parents.len(), 7);
        assert!(!parents.iter().any(|d| d.starts_with(fs.v1_root("freezer"))));
        assert!(!parents.iter().any(|d| d.starts_with(fs.v1_root("cpuacct"))));

        let job = m.create(&name("job-1"), &full_resources()).unwrap();
        assert_eq!(
            fs.read(&fs.v1_root("memory").join("corral/job-1/memory.limit_in_bytes")),
            "33554432"
        );
        let files = job.procs_files();
        assert_eq!(files.len(), 7);
        assert_eq!(files.last().unwrap(), &fs.unified_root().join("corral/job-1/cgroup.procs"));

        let stats = job.stats().unwrap();
        assert_eq!(stats.cpu.usage_ns, Some(0));
        assert_eq!(stats.memory.under_oom, Some(false));
        assert!(stats.pressure.unwrap().memory.is_some());
    }

    #[test]
    fn hybrid_without_the_v2_tree_behaves_like_v1() {
        let fs = FakeFs::new(FakeKind::Hybrid);
        fs.add_cgroup("corral");
        let cfg = ManagerConfig { use_unified: false, ..config() };
        let m = CgroupManager::open(fs.layout(), &cfg).unwrap();
        assert_eq!(m.capabilities().freezer, FreezerKind::V1);
        assert_eq!(m.capabilities().kill, KillKind::FreezeAndSignal);
        assert_eq!(m.parent_dirs().len(), 8);
    }

    #[tokio::test]
    async fn v1_freeze_and_thaw_go_through_freezer_state() {
        let fs = FakeFs::new(FakeKind::V1);
        fs.add_cgroup("corral");
        fs.add_cgroup("corral/job-1");
        let m = CgroupManager::open(fs.layout(), &config()).unwrap();
        let job = m.create(&name("job-1"), &Resources::default()).unwrap();
        let state = fs.v1_root("freezer").join("corral/job-1/freezer.state");
        job.freeze(std::time::Duration::from_millis(100)).await.unwrap();
        assert_eq!(fs.read(&state), "FROZEN");
        assert_eq!(job.freezer_state().unwrap(), crate::cgroup::FreezerState::Frozen);
        job.thaw(std::time::Duration::from_millis(100)).await.unwrap();
        assert_eq!(fs.read(&state), "THAWED");
        // An empty job is killed at once.
        job.kill(std::time::Duration::from_millis(100)).await.unwrap();
    }

    #[test]
    fn the_parents_memory_pressure_is_in_the_v2_tree_where_there_is_one() {
        for kind in [FakeKind::V1, FakeKind::V2, FakeKind::Hybrid] {
            let fs = FakeFs::new(kind);
            fs.add_cgroup("corral");
            let m = CgroupManager::open(fs.layout(), &config()).unwrap();
            let want = (kind != FakeKind::V1)
                .then(|| fs.unified_root().join("corral").join(v2::psi::MEMORY));
            assert_eq!(m.parent_memory_pressure(), want, "{kind:?}");
        }
    }

    #[test]
    fn a_job_reports_its_pause_at_the_limit_and_its_cpuset_on_every_layout() {
        for kind in [FakeKind::V1, FakeKind::V2, FakeKind::Hybrid] {
            let fs = FakeFs::new(kind);
            fs.add_cgroup("corral");
            fs.add_cgroup("corral/job-1");
            let m = CgroupManager::open(fs.layout(), &config()).unwrap();
            let job = m.job(&name("job-1"));
            assert!(job.exists(), "{kind:?}");
            assert!(!job.paused_at_limit().unwrap(), "{kind:?}");
            // The fixture's job cpuset is empty: nothing of its own yet.
            assert_eq!(job.cpus().unwrap(), None, "{kind:?}");

            let resources =
                Resources { cpus: Some(CpuSet::parse("1-2").unwrap()), ..full_resources() };
            job.update(&resources).unwrap();
            assert_eq!(job.cpus().unwrap(), Some(CpuSet::parse("1-2").unwrap()), "{kind:?}");

            if kind != FakeKind::V2 {
                let oom_control = fs.v1_root("memory").join("corral/job-1/memory.oom_control");
                std::fs::write(&oom_control, "oom_kill_disable 1\nunder_oom 1\noom_kill 0\n")
                    .unwrap();
                assert!(job.paused_at_limit().unwrap(), "{kind:?}");
                // A file that cannot be read is an error, not "not paused".
                std::fs::remove_file(&oom_control).unwrap();
                assert!(job.paused_at_limit().is_err(), "{kind:?}");
            }
        }
        // No cgroup at all: not there, and nothing to read.
        let fs = FakeFs::new(FakeKind::V2);
        fs.add_cgroup("corral");
        let m = CgroupManager::open(fs.layout(), &config()).unwrap();
        let job = m.job(&name("job-2"));
        assert!(!job.exists());
        assert!(job.cpus().unwrap_err().is_gone());
    }
}

#[cfg(test)]
mod event_tests {
    use std::io::Write;
    use std::time::Duration;

    use super::*;
    use crate::cgroup::events::{CgroupEvent, EventOptions};
    use crate::cgroup::fake::{FakeFs, FakeKind};
    use crate::cgroup::Notifier;

    /// Rewrites a fake knob in place, as the kernel does: no truncation, so
    /// a reader never sees it empty.
    fn kernel_update(path: &Path, content: &str) {
        let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.write_all(content.as_bytes()).unwrap();
    }

    async fn next(events: &mut crate::cgroup::EventStream) -> Option<CgroupEvent> {
        tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("an event or the end of the stream")
            .map(|r| r.unwrap())
    }

    #[tokio::test]
    async fn oom_events_only_use_what_reports_ooms() {
        let config = ManagerConfig::new(CgroupPath::new("corral").unwrap());
        let name = CgroupName::new("job-1").unwrap();
        // Hybrid: the v1 eventfd; nothing from the v2 tree, so no inotify.
        let fs = FakeFs::new(FakeKind::Hybrid);
        fs.add_cgroup("corral");
        fs.add_cgroup("corral/job-1");
        let job = CgroupManager::open(fs.layout(), &config)
            .unwrap()
            .create(&name, &Resources::default())
            .unwrap();
        let notifier = Notifier::new();
        let sources = job.oom_events(&notifier).unwrap().sources();
        assert!(sources.v1_oom && !sources.memory_events && !sources.cgroup_events);
        assert!(!notifier.is_open());
        assert_eq!(sources.memory_pressure, None);
        // Pure v2: memory.events.
        let fs = FakeFs::new(FakeKind::V2);
        fs.add_cgroup("corral");
        fs.add_cgroup("corral/job-1");
        let job = CgroupManager::open(fs.layout(), &config)
            .unwrap()
            .create(&name, &Resources::default())
            .unwrap();
        let sources = job.oom_events(&Notifier::new()).unwrap().sources();
        assert!(!sources.v1_oom && sources.memory_events);
        assert_eq!(sources.memory_pressure, None);
    }

    /// A job created to freeze at `memory.high` is recognised from its own
    /// files: its `high` events are the limit reached, until a kill.
    #[tokio::test]
    async fn a_high_event_of_a_job_paused_at_high_is_the_limit_reached() {
        use crate::cgroup::resources::{MemoryLimits, OomMode};
        let fs = FakeFs::new(FakeKind::V2);
        fs.add_cgroup("corral");
        fs.add_cgroup("corral/job-1");
        let m = CgroupManager::open(
            fs.layout(),
            &ManagerConfig::new(CgroupPath::new("corral").unwrap()),
        )
        .unwrap();
        let res = Resources {
            memory: MemoryLimits { hard_bytes: Some(32 << 20), ..Default::default() },
            oom: OomMode::FreezeAtHigh,
            ..Default::default()
        };
        let job = m.create(&CgroupName::new("job-1").unwrap(), &res).unwrap();
        let mut events = job.oom_events(&Notifier::new()).unwrap();
        let dir = fs.unified_root().join("corral/job-1");
        kernel_update(&dir.join("memory.events"), "low 0\nhigh 3\nmax 0\noom 0\noom_kill 0\n");
        assert_eq!(next(&mut events).await, Some(CgroupEvent::MemoryHigh { count: 3 }));
        assert_eq!(next(&mut events).await, Some(CgroupEvent::LimitReached));
        kernel_update(&dir.join("memory.events"), "low 0\nhigh 4\nmax 1\noom 1\noom_kill 1\n");
        assert_eq!(next(&mut events).await, Some(CgroupEvent::MemoryHigh { count: 1 }));
        assert_eq!(next(&mut events).await, Some(CgroupEvent::MemoryMax { count: 1 }));
        assert_eq!(next(&mut events).await, Some(CgroupEvent::OomKill { count: 1 }));

        // The same high event of a job with a plain throttle is only counted.
        fs.add_cgroup("corral/job-2");
        let plain = Resources {
            memory: MemoryLimits {
                hard_bytes: Some(32 << 20),
                high_bytes: Some(24 << 20),
                ..Default::default()
            },
            ..Default::default()
        };
        let job = m.create(&CgroupName::new("job-2").unwrap(), &plain).unwrap();
        let mut events = job.oom_events(&Notifier::new()).unwrap();
        let dir = fs.unified_root().join("corral/job-2");
        kernel_update(&dir.join("memory.events"), "low 0\nhigh 3\nmax 0\noom 0\noom_kill 0\n");
        assert_eq!(next(&mut events).await, Some(CgroupEvent::MemoryHigh { count: 3 }));
        kernel_update(&dir.join("memory.events"), "low 0\nhigh 3\nmax 1\noom 1\noom_kill 0\n");
        assert_eq!(next(&mut events).await, Some(CgroupEvent::MemoryMax { count: 1 }));
        assert_eq!(next(&mut events).await, Some(CgroupEvent::Oom { count: 1 }));
    }

    #[tokio::test]
    async fn v2_memory_and_cgroup_events_become_a_stream_that_ends_on_removal() {
        let fs = FakeFs::new(FakeKind::V2);
        fs.add_cgroup("corral");
        fs.add_cgroup("corral/job-1");
        let m = CgroupManager::open(
            fs.layout(),
            &ManagerConfig::new(CgroupPath::new("corral").unwrap()),
        )
        .unwrap();
        let job = m.create(&CgroupName::new("job-1").unwrap(), &Resources::default()).unwrap();
        // A regular file cannot be polled, so no PSI trigger on a fake tree.
        let mut events =
            job.events(&Notifier::new(), &EventOptions { memory_pressure: None }).unwrap();
        let sources = events.sources();
        assert!(sources.memory_events && sources.cgroup_events && !sources.v1_oom);

        let dir = fs.unified_root().join("corral/job-1");
        kernel_update(&dir.join("cgroup.events"), "populated 1\nfrozen 0\n");
        assert_eq!(next(&mut events).await, Some(CgroupEvent::Populated));
        kernel_update(&dir.join("memory.events"), "low 0\nhigh 2\nmax 0\noom 1\noom_kill 0\n");
        assert_eq!(next(&mut events).await, Some(CgroupEvent::MemoryHigh { count: 2 }));
        assert_eq!(next(&mut events).await, Some(CgroupEvent::Oom { count: 1 }));
        kernel_update(&dir.join("memory.events"), "low 0\nhigh 2\nmax 0\noom 1\noom_kill 1\n");
        assert_eq!(next(&mut events).await, Some(CgroupEvent::OomKill { count: 1 }));
        kernel_update(&dir.join("cgroup.events"), "populated 0\nfrozen 0\n");
        assert_eq!(next(&mut events).await, Some(CgroupEvent::Emptied));

        for entry in std::fs::read_dir(&dir).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        job.remove().unwrap();
        assert_eq!(next(&mut events).await, None);
    }
}
