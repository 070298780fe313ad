//! [`Host`]: what launching needs to know about the machine, gathered once.

use std::path::{Path, PathBuf};

use super::devices::DeviceNumbers;
use super::error::LaunchError;
use super::hugepages::HugepageHost;
use super::plan::{self, PlanInputs, RunInputs, RunPlan};
use crate::cgroup::delegation::{self, Mode, RootRequest};
use crate::cgroup::{
    self, Anchor, CgroupManager, CgroupName, CgroupPath, Controller, HostPaths, ManagerConfig,
};
use crate::config::{AgentConfig, CgroupRoot};
use crate::container::Launcher;
use crate::placement::{Ledger, PlacementConfig};
use crate::spec::JobSpec;
use crate::topology::{self, Topology};

/// Where the kernel's views are mounted; the real ones by default, fake
/// trees in tests.
#[derive(Debug, Clone)]
pub struct HostRoots {
    pub sysfs: PathBuf,
    pub procfs: PathBuf,
    pub cgroups: HostPaths,
}

impl Default for HostRoots {
    fn default() -> Self {
        HostRoots {
            sysfs: PathBuf::from(topology::DEFAULT_SYSFS),
            procfs: PathBuf::from(topology::DEFAULT_PROCFS),
            cgroups: HostPaths::default(),
        }
    }
}

/// The machine: its topology, the cgroup parent jobs go under, the agent's
/// configuration, and the executable that runs shims.
#[derive(Debug, Clone)]
pub struct Host {
    config: AgentConfig,
    topology: Topology,
    cgroups: CgroupManager,
    launcher: Launcher,
    /// Where the cgroup tree is rooted, and why.
    cgroup_mode: Mode,
    /// `<sysfs>/kernel/mm/hugepages`, read when a job limits huge pages.
    hugepages_dir: PathBuf,
}

impl Host {
    /// Reads the real machine; see [`discover_at`](Self::discover_at).
    pub fn discover(config: &AgentConfig) -> Result<Host, LaunchError> {
        Host::discover_at(config, &HostRoots::default())
    }

    /// Reads the topology and the cgroup layout under `roots`, and creates
    /// the cgroup parent (`config.cgroup_parent`) if it is missing: below
    /// the cgroup delegated to this process (which moves itself into its
    /// `agent` leaf there, its shims going to `shims`) when `cgroup_root`
    /// finds or names one, else at the root of every hierarchy. Shims are
    /// the `corral-shim` installed with this executable
    /// ([`Launcher::of_current_exe`]).
    pub fn discover_at(config: &AgentConfig, roots: &HostRoots) -> Result<Host, LaunchError> {
        let topology = topology::discover(&roots.sysfs, &roots.procfs)
            .map_err(|e| LaunchError::Topology(e.into()))?;
        let layout =
            cgroup::detect(&roots.cgroups).map_err(|e| LaunchError::CgroupLayout(e.into()))?;
        let parent = config.cgroup_parent.as_str();
        let cgroup_parent = |source: cgroup::CgroupError| LaunchError::CgroupParent {
            parent: parent.to_owned(),
            source: source.into(),
        };
        let parent_path = CgroupPath::new(parent).map_err(cgroup_parent)?;
        let request = match &config.cgroup_root {
            CgroupRoot::Auto => RootRequest::Auto,
            CgroupRoot::Delegated(cgroup) => RootRequest::Cgroup(cgroup.clone()),
        };
        let cgroup_mode = delegation::decide(&layout, &request, nix::unistd::geteuid().as_raw())
            .map_err(cgroup_parent)?;
        let mut launcher = Launcher::of_current_exe();
        let anchor = match &cgroup_mode {
            Mode::Root(_) => {
                launcher = launcher.with_attach_warm_up(own_cgroup_procs(&layout));
                Anchor::HierarchyRoot
            }
            Mode::Delegated(delegated) => {
                let prepared = delegation::prepare(delegated, &parent_path, std::process::id())
                    .map_err(cgroup_parent)?;
                launcher = launcher.with_shim_cgroup(prepared.shims_procs);
                Anchor::Delegated(delegated.cgroup.clone())
            }
        };
        let manager_config = ManagerConfig { parent: parent_path, anchor, use_unified: true };
        let cgroups = CgroupManager::open(layout, &manager_config).map_err(cgroup_parent)?;
        Ok(Host {
            config: config.clone(),
            topology,
            cgroups,
            launcher,
            cgroup_mode,
            hugepages_dir: roots.sysfs.join("kernel/mm/hugepages"),
        })
    }

    /// Where the cgroup tree is rooted, and why.
    pub fn cgroup_mode(&self) -> &Mode {
        &self.cgroup_mode
    }

    /// Starts shims from another executable (tests, benchmarks).
    pub fn with_launcher(self, launcher: Launcher) -> Host {
        let launcher = match &self.cgroup_mode {
            Mode::Delegated(d) => launcher.with_shim_cgroup(d.shims_dir().join("cgroup.procs")),
            Mode::Root(_) => {
                launcher.with_attach_warm_up(self.launcher.attach_warm_up().map(Path::to_path_buf))
            }
        };
        Host { launcher, ..self }
    }

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn cgroups(&self) -> &CgroupManager {
        &self.cgroups
    }

    pub fn launcher(&self) -> &Launcher {
        &self.launcher
    }

    /// The placement configuration the agent config describes here.
    pub fn placement_config(&self) -> PlacementConfig {
        plan::placement_config(&self.config, &self.topology)
    }

    /// An empty ledger for this machine.
    pub fn ledger(&self) -> Result<Ledger, LaunchError> {
        Ledger::new(&self.topology, self.placement_config())
            .map_err(|e| LaunchError::PlacementConfig(e.into()))
    }

    /// The final plan of one placement of a run of `spec`, from the facts
    /// gathered at discovery; nothing is written. Two things are read: the
    /// nodes behind the job's device paths, and, for a job that limits huge
    /// pages, the host's huge page pools (an administrator reserves pages
    /// while the agent runs).
    pub fn plan(&self, spec: &JobSpec, run: &RunInputs<'_>) -> Result<RunPlan, LaunchError> {
        // Only the paths are needed here; a bad run id is reported by plan().
        let cgroup_procs = match CgroupName::new(run.run.as_str()) {
            Ok(name) => self.cgroups.job(&name).procs_files(),
            Err(_) => Vec::new(),
        };
        // The nodes behind the job's device paths refuse the run here if the
        // host lacks them.
        let devices = DeviceNumbers::resolve(spec)?;
        let hugepages = if spec.resources.hugepages.is_empty() {
            None
        } else {
            let controller = self.cgroups.jobs_have(Controller::Hugetlb);
            Some(HugepageHost::read(&self.hugepages_dir, controller))
        };
        let inputs = PlanInputs {
            devices: &devices,
            ..PlanInputs::new(run, &self.config, self.cgroups.capabilities(), &cgroup_procs)
        };
        match &hugepages {
            Some(hugepages) => plan::plan(spec, &inputs.with_hugepages(hugepages)),
            None => plan::plan(spec, &inputs),
        }
    }
}

/// The `cgroup.procs` of this process's own cgroup, for the launcher's
/// warm-up move ([`Launcher::with_attach_warm_up`]): in the v2 tree if it
/// is mounted (on a hybrid host it carries no controller that matters),
/// else in the first v1 hierarchy. Only where the cgroup tree is rooted at
/// the hierarchies' roots: a delegated agent moves itself after discovery,
/// and its shims' own move (into `shims`) takes the same kernel lock.
fn own_cgroup_procs(layout: &cgroup::Layout) -> Option<PathBuf> {
    let unified = layout
        .unified
        .as_ref()
        .and_then(|u| u.own_cgroup.as_deref().and_then(|own| u.dir_of(own).ok()));
    let v1 = || {
        layout.v1.iter().find_map(|h| h.own_cgroup.as_deref().and_then(|own| h.dir_of(own).ok()))
    };
    unified.or_else(v1).map(|dir| dir.join("cgroup.procs"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::cgroup::fake::{FakeFs, FakeKind};
    use crate::cgroup::OomMode;
    use crate::placement::place;
    use crate::vocab::RunId;

    #[test]
    fn a_host_from_injected_roots_plans_runs_into_its_cgroup_parent() {
        let fs = FakeFs::new(FakeKind::Hybrid);
        fs.add_cgroup("batch");
        let fixture = crate::topology::testing::fixture_root("vm-2cpu");
        let roots = HostRoots {
            sysfs: fixture.join("sys"),
            procfs: fixture.join("proc"),
            cgroups: fs.host_paths(),
        };
        let config = crate::config::compile_str(
            Path::new("agent.yaml"),
            "cgroup_parent: batch\nstate_dir: /state\nreserved_memory: 256Mi\n",
            Path::new("/etc/corral"),
        )
        .unwrap();
        let host = Host::discover_at(&config, &roots).unwrap();
        assert_eq!(host.config().cgroup_parent.as_str(), "batch");
        assert!(host.cgroups().capabilities().pause_at_limit);
        // The launcher's warm-up move is to where this process is: the root
        // of the v2 tree here.
        assert_eq!(
            host.launcher().attach_warm_up(),
            Some(fs.unified_root().join("cgroup.procs").as_path())
        );
        assert_eq!(host.placement_config().reserved_memory.len(), 1);

        let text = "name: etl\ncommand: [/bin/true]\nresources: {cpus: 1, memory: {hard: 64Mi}}\noom: {action: grow, grow_to: 128Mi}\n";
        let spec = crate::spec::compile_str(Path::new("etl.yaml"), text).unwrap().remove(0).spec;
        let run = RunId::new("etl-1");
        let ledger = host.ledger().unwrap();
        let assignment =
            place(host.topology(), &ledger, &super::super::request(&spec, &run)).unwrap();
        let run_dir = plan::run_dir(
            &plan::runs_dir(&host.config().state_dir),
            &run,
            crate::vocab::Timestamp::from_millis(5),
        );
        let env = std::collections::BTreeMap::from([("X".to_owned(), "1".to_owned())]);
        let inputs = RunInputs {
            run: &run,
            assignment: &assignment,
            shared_pool: ledger.shared_pool(),
            memory_limit: Some(crate::vocab::Bytes::from_mib(96)),
            run_dir: &run_dir,
            env: &env,
            dynamic_uid: Some(61184),
            tee_output: false,
        };
        let plan = host.plan(&spec, &inputs).unwrap();
        assert_eq!(plan.cgroup.as_str(), "etl-1");
        assert_eq!(plan.container.user, Some(crate::container::IdSpec::Id(61184)));
        assert_eq!(plan.resources.oom, OomMode::PauseAtLimit);
        // Final as built: the limit in force, the placement's directory and
        // the extra environment are the inputs'.
        assert_eq!(plan.container.run_dir, Path::new("/state/runs/etl-1/5"));
        assert_eq!(plan.resources.memory.hard_bytes, Some(96 << 20));
        assert_eq!(plan.container.env.get("X").map(String::as_str), Some("1"));
        // Init joins the run's cgroup in every tree: six v1 hierarchies
        // and the v2 tree on a hybrid host.
        let procs = &plan.container.cgroup_procs;
        assert_eq!(procs.len(), 7, "{procs:?}");
        assert!(procs.iter().all(|p| p.ends_with("batch/etl-1/cgroup.procs")), "{procs:?}");
        assert_eq!(procs.last().unwrap(), &fs.unified_root().join("batch/etl-1/cgroup.procs"));
    }
}
