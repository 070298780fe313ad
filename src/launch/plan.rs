//! The pure mapping: a compiled job, the agent's configuration and a run id
//! become a placement request, then (with the placement's answer) the job
//! cgroup's resources and the container's configuration.
//!
//! Nothing here touches the machine: the cgroup's `cgroup.procs` paths and
//! the host's cgroup capabilities come in as data. A plan is final: what
//! the run gets (the memory limit in force, its directory, the extra
//! environment, its uid) is an input, and nothing changes the plan after
//! it is built.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::devices::{device_rules, io_resources, rootfs_nodes, DeviceNumbers, NO_DEVICES};
use super::error::{LaunchError, UserOrigin};
use super::hugepages::{self, cgroup_limit, HugepageHost, UNKNOWN_HOST};
use super::oom::oom_mode;
use crate::cgroup::{self, Capabilities, CgroupName, MemoryLimits};
use crate::config::AgentConfig;
use crate::container::{ContainerConfig, IdSpec, Mount, Rlimit, RlimitResource};
use crate::placement::{Assignment, PlacementConfig, Request};
use crate::spec::{self, JobSpec, OomPolicy};
use crate::topology::{CpuSet, Topology};
use crate::vocab::Bytes;
use crate::vocab::JobName;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

/// The directory under the state directory that holds one directory per run.
pub const RUNS_DIR: &str = "runs";

/// Everything needed to start one run, decided before anything is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlan {
    pub job: JobName,
    pub run: RunId,
    /// The job cgroup's name under the agent's parent: the run id.
    pub cgroup: CgroupName,
    pub resources: cgroup::Resources,
    pub container: ContainerConfig,
    /// The job's OOM policy, for whoever handles the cgroup's OOM events.
    pub oom: OomPolicy,
    /// The uid from the `dynamic_users` range the job runs as, if it runs
    /// as a dynamic user.
    pub dynamic_uid: Option<u32>,
}

/// What one placement of a run brings to its plan, besides the job and the
/// host's facts.
#[derive(Debug, Clone, Copy)]
pub struct RunInputs<'a> {
    pub run: &'a RunId,
    /// What placement handed the run.
    pub assignment: &'a Assignment,
    /// The shared pool now, the cpuset of a shared-pool run.
    pub shared_pool: &'a CpuSet,
    /// The hard memory limit in force: the spec's, or what OOM handling
    /// made of it ([`crate::scheduler::RunState::memory_limit`]).
    pub memory_limit: Option<Bytes>,
    /// The directory of this placement of the run ([`run_dir`]).
    pub run_dir: &'a Path,
    /// Variables added to the job's `env` for this run (for a run of a
    /// recurring job, the firing it is for); they win over the job's own.
    pub env: &'a BTreeMap<String, String>,
    /// The job's uid from the `dynamic_users` range, when it has no `user`
    /// and the default user is `dynamic`.
    pub dynamic_uid: Option<u32>,
    /// The job's output goes to the caller's stdout and stderr too, besides
    /// the run directory's logs (`corral run`).
    pub tee_output: bool,
}

/// What [`plan`] maps, besides the job: the run's inputs and the host's
/// facts.
#[derive(Debug, Clone, Copy)]
pub struct PlanInputs<'a> {
    pub config: &'a AgentConfig,
    pub run: &'a RunId,
    /// What placement handed the run.
    pub assignment: &'a Assignment,
    /// The shared pool now, the cpuset of a shared-pool run.
    pub shared_pool: &'a CpuSet,
    /// What the host's cgroups can do ([`crate::cgroup::CgroupManager::capabilities`]).
    pub capabilities: &'a Capabilities,
    /// The `cgroup.procs` files of the run's cgroup
    /// ([`crate::cgroup::JobCgroup::procs_files`]), which the container's init
    /// joins.
    pub cgroup_procs: &'a [PathBuf],
    pub dynamic_uid: Option<u32>,
    pub memory_limit: Option<Bytes>,
    pub run_dir: &'a Path,
    pub env: &'a BTreeMap<String, String>,
    pub tee_output: bool,
    /// The host's nodes behind the job's device paths
    /// ([`DeviceNumbers::resolve`]); none by [`PlanInputs::new`].
    pub devices: &'a DeviceNumbers,
    /// What the host offers for huge pages; read only for a job that
    /// limits them ([`HugepageHost::read`]).
    pub hugepages: &'a HugepageHost,
}

impl<'a> PlanInputs<'a> {
    /// The run's inputs with the host's facts: its agent configuration,
    /// its cgroup capabilities and the run cgroup's `cgroup.procs` files.
    pub fn new(
        run: &RunInputs<'a>,
        config: &'a AgentConfig,
        capabilities: &'a Capabilities,
        cgroup_procs: &'a [PathBuf],
    ) -> PlanInputs<'a> {
        PlanInputs {
            config,
            run: run.run,
            assignment: run.assignment,
            shared_pool: run.shared_pool,
            capabilities,
            cgroup_procs,
            dynamic_uid: run.dynamic_uid,
            memory_limit: run.memory_limit,
            run_dir: run.run_dir,
            env: run.env,
            tee_output: run.tee_output,
            devices: &NO_DEVICES,
            hugepages: &UNKNOWN_HOST,
        }
    }

    /// The same, with the host's huge page facts.
    pub fn with_hugepages(self, hugepages: &'a HugepageHost) -> PlanInputs<'a> {
        PlanInputs { hugepages, ..self }
    }
}

/// The directory that holds one directory per run: `<state_dir>/runs`.
pub fn runs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join(RUNS_DIR)
}

/// Where one placement of a run keeps its files:
/// `<runs_dir>/<run>/<placed_at in ms>`. Each placement gets a directory
/// not used before (a shim's status files are never reused), and the name
/// is derived from the placement time the agent's store records, so a
/// restarted agent finds it again. `corral run` uses the same layout.
pub fn run_dir(runs_dir: &Path, run: &RunId, placed_at: Timestamp) -> PathBuf {
    runs_dir.join(run.as_str()).join(placed_at.as_millis().to_string())
}

/// The placement configuration the agent's settings describe. The
/// configuration reserves memory as one total; it is reserved on the first
/// node with memory, where the kernel and the system's own processes
/// mostly live.
pub fn placement_config(config: &AgentConfig, topology: &Topology) -> PlacementConfig {
    let mut placement = PlacementConfig {
        reserved_cpus: config.reserved_cpus.clone(),
        ..PlacementConfig::default()
    };
    if config.reserved_memory.get() > 0 {
        if let Some(node) = topology.memory_nodes().iter().next() {
            placement.reserved_memory.insert(node, config.reserved_memory);
        }
    }
    placement
}

/// The job's demand on the machine. The memory accounted against the NUMA
/// nodes is the hard limit: what the kernel guarantees the job can never
/// exceed (soft and high are targets, not bounds).
pub fn request(spec: &JobSpec, run: &RunId) -> Request {
    let resources = &spec.resources;
    let request = match resources.cpu {
        spec::CpuRequest::Exclusive { cpus } => Request::exclusive(run.clone(), cpus),
        spec::CpuRequest::Shared { .. } => Request::shared(run.clone()),
    };
    let request = request.with_numa(resources.numa);
    match resources.memory.hard {
        Some(hard) => request.with_memory(hard),
        None => request,
    }
}

/// The job cgroup's memory limits with `hard` in force: the spec's limits,
/// the hard one replaced by `hard`, and `high` (if set) raised by as much
/// as `hard` was raised above the spec's, but never above `hard`: a job
/// whose hard limit OOM handling grew is throttled as far below its new
/// limit as it was below its old one.
pub fn memory_limits(memory: &spec::MemoryLimits, hard: Option<Bytes>) -> MemoryLimits {
    let raised = match (memory.hard, hard) {
        (Some(spec), Some(hard)) => hard.saturating_sub(spec),
        _ => Bytes::ZERO,
    };
    let high = memory.high.map(|high| {
        let high = Bytes(high.get().saturating_add(raised.get()));
        hard.map_or(high, |hard| high.min(hard))
    });
    MemoryLimits {
        hard_bytes: hard.map(Bytes::get),
        soft_bytes: memory.soft.map(Bytes::get),
        high_bytes: high.map(Bytes::get),
        swap_bytes: memory.swap.map(Bytes::get),
    }
}

/// The job cgroup's resources, with the hard memory limit `memory_limit`
/// in force (see [`memory_limits`]). A CPU weight is set only for
/// shared-pool jobs: exclusive cores are nobody else's, so there is nothing
/// to weigh. Device access is always an allow-list: the safe set and the
/// job's `isolation.devices`, by the numbers in `devices`.
pub fn resources(
    spec: &JobSpec,
    assignment: &Assignment,
    shared_pool: &CpuSet,
    capabilities: &Capabilities,
    memory_limit: Option<Bytes>,
    devices: &DeviceNumbers,
) -> cgroup::Resources {
    let r = &spec.resources;
    cgroup::Resources {
        cpu_weight: match r.cpu {
            spec::CpuRequest::Shared { weight } => Some(weight),
            spec::CpuRequest::Exclusive { .. } => None,
        },
        cpu_quota: r.cpu_quota,
        cpus: Some(assignment.cpuset(shared_pool)),
        mems: Some(assignment.mems.clone()),
        memory: memory_limits(&r.memory, memory_limit),
        pids_max: r.pids.map(u64::from),
        oom: oom_mode(&spec.oom, capabilities),
        io: io_resources(spec, devices),
        devices: Some(device_rules(spec, devices)),
        hugetlb: r.hugepages.iter().map(|l| cgroup_limit(l.size, l.limit)).collect(),
    }
}

fn id_spec(group: &spec::GroupRef) -> IdSpec {
    match group {
        spec::GroupRef::Name(name) => IdSpec::Name(name.clone()),
        spec::GroupRef::Id(id) => IdSpec::Id(*id),
    }
}

/// The container's configuration. Refuses a job that would run as root
/// unless the agent allows root jobs; with them refused, the shim also
/// refuses any name that resolves to uid 0 in the job's `/etc/passwd`.
///
/// A job without `user` under a `dynamic` default runs as `dynamic_uid`,
/// with the gid of the same number (unless it names a `group`): no passwd
/// entry, no supplementary groups, `HOME=/` unless its `env` says otherwise.
///
/// `extra_env` is added to the job's `env`, winning where both name a
/// variable.
pub fn container_config(
    spec: &JobSpec,
    config: &AgentConfig,
    run: &RunId,
    run_dir: &Path,
    extra_env: &BTreeMap<String, String>,
    cgroup_procs: &[PathBuf],
    dynamic_uid: Option<u32>,
) -> Result<ContainerConfig, LaunchError> {
    let job = spec.name.as_str();
    let dynamic;
    let (user, origin) = match (&spec.user, &config.default_user) {
        (Some(user), _) => (user, UserOrigin::Job),
        (None, spec::DefaultUser::Account(user)) => (user, UserOrigin::DefaultUser),
        (None, spec::DefaultUser::Dynamic) => {
            let uid =
                dynamic_uid.filter(|&uid| config.dynamic_users.contains(uid)).ok_or_else(|| {
                    LaunchError::NoDynamicUid {
                        job: job.to_owned(),
                        uid: dynamic_uid,
                        range: config.dynamic_users.to_string(),
                    }
                })?;
            dynamic = spec::UserRef::Id(uid);
            (&dynamic, UserOrigin::Dynamic)
        }
    };
    if user.is_root() && !config.allow_root_jobs {
        return Err(LaunchError::RootRefused {
            job: job.to_owned(),
            user: user.to_string(),
            origin,
        });
    }
    let isolation = &spec.isolation;
    let mut cfg = ContainerConfig::new(job, run.as_str(), run_dir, &[]);
    cfg.command = spec.command.argv().map(str::to_owned).collect();
    cfg.env = spec.env.clone();
    cfg.env.extend(extra_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    cfg.workdir = spec.workdir.as_ref().map(|p| p.as_path().to_path_buf());
    cfg.user = Some(match user {
        spec::UserRef::Name(name) => IdSpec::Name(name.clone()),
        spec::UserRef::Id(id) => IdSpec::Id(*id),
    });
    cfg.group = match (&spec.group, origin) {
        (Some(group), _) => Some(id_spec(group)),
        // Spelled out: a host group of that number, had one appeared since
        // the allocation, would otherwise still not be the job's.
        (None, UserOrigin::Dynamic) => cfg.user.clone(),
        (None, _) => None,
    };
    cfg.namespaces = isolation.namespaces.clone();
    // Spelled out rather than left to the container's default, so that
    // config.json says what the job saw.
    cfg.hostname = match &isolation.hostname {
        Some(hostname) => Some(hostname.as_str().to_owned()),
        None if isolation.has(crate::vocab::Namespace::Uts) => Some(job.to_owned()),
        None => None,
    };
    cfg.rootfs = isolation.rootfs.as_ref().map(|p| p.as_path().to_path_buf());
    cfg.readonly_rootfs = isolation.readonly;
    cfg.mounts = isolation.mounts.iter().map(mount).collect();
    cfg.cgroup_procs = cgroup_procs.to_vec();
    cfg.capabilities = isolation.capabilities.clone();
    cfg.refuse_root = !config.allow_root_jobs;
    cfg.refuse_ids_in = Some((config.dynamic_users.first(), config.dynamic_users.last()));
    if !config.allow_root_jobs {
        cfg.refuse_groups = config.privileged_groups.iter().map(id_spec).collect();
    }
    cfg.rlimits = spec
        .rlimits
        .0
        .iter()
        .map(|(&limit, &value)| {
            // The spec sets soft and hard alike; RLIM_INFINITY is all ones.
            let value = match value {
                spec::RlimitValue::Limited(n) => n,
                spec::RlimitValue::Unlimited => u64::MAX,
            };
            Rlimit { resource: rlimit(limit), soft: value, hard: value }
        })
        .collect();
    cfg.log_max_bytes = config.log_max_bytes.get();
    cfg.log_tail_bytes = config.log_tail_bytes.get();
    Ok(cfg)
}

/// The whole plan of one run. Also checks the container configuration,
/// so that a job the container layer would refuse is refused here, before
/// anything is created.
pub fn plan(spec: &JobSpec, inputs: &PlanInputs<'_>) -> Result<RunPlan, LaunchError> {
    let job = spec.name.as_str();
    let cgroup = CgroupName::new(inputs.run.as_str()).map_err(|source| LaunchError::RunId {
        job: job.to_owned(),
        run: inputs.run.to_string(),
        source: source.into(),
    })?;
    let mut container = container_config(
        spec,
        inputs.config,
        inputs.run,
        inputs.run_dir,
        inputs.env,
        inputs.cgroup_procs,
        inputs.dynamic_uid,
    )?;
    container.tee_output = inputs.tee_output;
    inputs.devices.check(spec)?;
    container.devices = rootfs_nodes(spec, inputs.devices);
    container.validate().map_err(|problems| LaunchError::Container {
        job: job.to_owned(),
        run: inputs.run.to_string(),
        problems,
    })?;
    // Refused rather than started without the limit.
    hugepages::check(&spec.resources.hugepages, inputs.hugepages).map_err(|refusal| {
        LaunchError::Hugepages { job: job.to_owned(), run: inputs.run.to_string(), refusal }
    })?;
    Ok(RunPlan {
        job: spec.name.clone(),
        run: inputs.run.clone(),
        cgroup,
        resources: resources(
            spec,
            inputs.assignment,
            inputs.shared_pool,
            inputs.capabilities,
            inputs.memory_limit,
            inputs.devices,
        ),
        container,
        oom: spec.oom,
        dynamic_uid: inputs.dynamic_uid.filter(|_| {
            spec.user.is_none() && inputs.config.default_user == spec::DefaultUser::Dynamic
        }),
    })
}

/// The container layer's name for a job file's rlimit: one for one.
pub fn rlimit(limit: spec::Rlimit) -> RlimitResource {
    match limit {
        spec::Rlimit::Nofile => RlimitResource::Nofile,
        spec::Rlimit::Nproc => RlimitResource::Nproc,
        spec::Rlimit::Core => RlimitResource::Core,
        spec::Rlimit::Stack => RlimitResource::Stack,
        spec::Rlimit::Memlock => RlimitResource::Memlock,
        spec::Rlimit::Fsize => RlimitResource::Fsize,
        spec::Rlimit::Data => RlimitResource::Data,
        spec::Rlimit::As => RlimitResource::As,
        spec::Rlimit::Cpu => RlimitResource::Cpu,
    }
}

fn mount(m: &spec::Mount) -> Mount {
    let target = m.target.as_path();
    match &m.kind {
        spec::MountKind::Bind { source } => Mount::bind(source.as_path(), target, m.readonly),
        spec::MountKind::Tmpfs { size } => Mount::tmpfs(target, size.map(Bytes::get), m.readonly),
    }
}

#[cfg(test)]
mod tests;
