use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::cgroup::fake::{FakeFs, FakeKind};
use crate::cgroup::{CgroupManager, CgroupPath, FreezerKind, KillKind, ManagerConfig, OomMode};
use crate::config::compile_str as compile_config;
use crate::container::MountKind;
use crate::placement::{CpuDemand, CpuGrant};
use crate::spec::UserRef;
use crate::topology::{NodeId, NodeSet};
use crate::vocab::Capability;
use crate::vocab::CpuWeight;
use crate::vocab::MilliCpus;
use crate::vocab::Namespace;

const MI: u64 = 1 << 20;

fn spec(yaml: &str) -> JobSpec {
    let text = format!("name: etl\ncommand: [/usr/bin/python3, etl.py, --fast]\n{yaml}");
    match spec::compile_str(Path::new("t.yaml"), &text) {
        Ok(mut jobs) => jobs.remove(0).spec,
        Err(problems) => panic!("{yaml}\n{problems}"),
    }
}

fn config(yaml: &str) -> AgentConfig {
    compile_config(Path::new("agent.yaml"), yaml, Path::new("/etc/corral"))
        .unwrap_or_else(|e| panic!("{yaml}\n{e}"))
}

fn run() -> RunId {
    RunId::new("etl-7")
}

/// The directory of the run placed at 1s past the epoch.
const RUN_DIR: &str = "/state/runs/etl-7/1000";

fn no_env() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn caps(pause_at_limit: bool) -> Capabilities {
    Capabilities {
        freezer: FreezerKind::V2,
        kill: KillKind::CgroupKill,
        memsw: true,
        swap_max: false,
        populated_events: true,
        pressure: true,
        pause_at_limit,
    }
}

fn cpus(list: &str) -> CpuSet {
    list.parse().unwrap()
}

fn exclusive(list: &str, mems: &str) -> Assignment {
    Assignment {
        owner: run(),
        cpus: CpuGrant::Exclusive(cpus(list)),
        mems: mems.parse().unwrap(),
        memory: BTreeMap::new(),
    }
}

fn shared() -> Assignment {
    Assignment { cpus: CpuGrant::Shared, ..exclusive("0", "0") }
}

/// Under the default configuration: a job without `user` has a dynamic uid.
fn container(yaml: &str) -> ContainerConfig {
    container_config(
        &spec(yaml),
        &config(""),
        &run(),
        Path::new(RUN_DIR),
        &no_env(),
        &[],
        Some(61184),
    )
    .unwrap()
}

// --- placement request -------------------------------------------------------

#[test]
fn exclusive_cpus_numa_and_hard_memory_make_the_request() {
    let r = request(
        &spec("resources: {cpus: 2, numa: single-node, memory: {soft: 1Gi, hard: 2Gi}}\n"),
        &run(),
    );
    assert_eq!(r.owner, run());
    assert_eq!(r.cpus, CpuDemand::Exclusive(2));
    assert_eq!(r.numa, crate::vocab::NumaPolicy::SingleNode);
    // The hard limit is what is accounted, not the soft one.
    assert_eq!(r.memory, Some(Bytes::from_gib(2)));
}

#[test]
fn a_shared_job_without_limits_asks_for_the_pool_and_no_memory() {
    let r = request(&spec(""), &run());
    assert_eq!(r.cpus, CpuDemand::Shared);
    assert_eq!(r.numa, crate::vocab::NumaPolicy::None);
    assert_eq!(r.memory, None);
    let r = request(&spec("resources: {cpu_weight: 300, memory: {soft: 64Mi}}\n"), &run());
    assert_eq!((r.cpus, r.memory), (CpuDemand::Shared, None));
}

#[test]
fn every_numa_policy_converts() {
    for (word, want) in [
        ("none", crate::vocab::NumaPolicy::None),
        ("prefer", crate::vocab::NumaPolicy::Prefer),
        ("single-node", crate::vocab::NumaPolicy::SingleNode),
    ] {
        let r = request(&spec(&format!("resources: {{cpus: 1, numa: {word}}}\n")), &run());
        assert_eq!(r.numa, want, "{word}");
    }
}

#[test]
fn reserved_memory_sits_on_the_first_memory_node() {
    let topology = crate::topology::testing::fixture("memoryless-nodes");
    let first = topology.memory_nodes().iter().next().unwrap();
    let p = placement_config(&config("reserved_cpus: '0'\nreserved_memory: 1Gi\n"), &topology);
    assert_eq!(p.reserved_cpus, cpus("0"));
    assert_eq!(p.reserved_memory, BTreeMap::from([(first, Bytes::from_gib(1))]));
    assert_eq!(p.min_shared_cpus, 1);
    assert!(placement_config(&config(""), &topology).reserved_memory.is_empty());
}

// --- cgroup resources --------------------------------------------------------

#[test]
fn a_shared_job_gets_its_weight_and_the_pool() {
    let job = spec(
        "resources:\n  cpu_weight: 200\n  cpu_quota: 500m\n  memory: {soft: 16Mi, high: 24Mi, hard: 32Mi, swap: 8Mi}\n  pids: 64\n",
    );
    let r = resources(
        &job,
        &shared(),
        &cpus("0-2"),
        &caps(true),
        job.resources.memory.hard,
        &NO_DEVICES,
    );
    assert_eq!(
        r,
        cgroup::Resources {
            cpu_weight: Some(CpuWeight::new(200).unwrap()),
            cpu_quota: Some(MilliCpus::new(500).unwrap()),
            cpus: Some(cpus("0-2")),
            mems: Some(NodeSet::parse("0").unwrap()),
            memory: MemoryLimits {
                hard_bytes: Some(32 * MI),
                soft_bytes: Some(16 * MI),
                high_bytes: Some(24 * MI),
                swap_bytes: Some(8 * MI),
            },
            pids_max: Some(64),
            oom: OomMode::Kill,
            io: Default::default(),
            devices: Some(crate::cgroup::SAFE_DEVICES.to_vec()),
            ..Default::default()
        }
    );
    // The default weight is written too: a shared job always says its weight.
    let r = resources(&spec(""), &shared(), &cpus("0-2"), &caps(true), None, &NO_DEVICES);
    assert_eq!(r.cpu_weight, Some(CpuWeight::DEFAULT));
    assert_eq!(r.memory, MemoryLimits::default());
    assert_eq!(r.pids_max, None);
}

#[test]
fn an_exclusive_job_gets_its_cores_and_mems_and_no_weight() {
    let job = spec("resources: {cpus: 2, numa: single-node, cpu_quota: 1.5}\n");
    let r = resources(&job, &exclusive("2-3", "1"), &cpus("0-1"), &caps(true), None, &NO_DEVICES);
    assert_eq!(r.cpu_weight, None);
    assert_eq!(r.cpu_quota, Some(MilliCpus::new(1500).unwrap()));
    assert_eq!(r.cpus, Some(cpus("2-3")));
    assert_eq!(r.mems, Some(NodeSet::parse("1").unwrap()));
}

#[test]
fn oom_mode_follows_policy_and_host() {
    let grow = spec("resources: {memory: {hard: 64Mi}}\noom: {action: grow, grow_to: 128Mi}\n");
    let requeue = spec("resources: {memory: {hard: 64Mi}}\noom: {action: requeue}\n");
    let fail = spec("resources: {memory: {hard: 64Mi}}\n");
    let mode = |job: &JobSpec, pause| {
        resources(job, &shared(), &cpus("0"), &caps(pause), None, &NO_DEVICES).oom
    };
    assert_eq!(mode(&grow, true), OomMode::PauseAtLimit);
    assert_eq!(mode(&requeue, true), OomMode::PauseAtLimit);
    assert_eq!(mode(&fail, true), OomMode::Kill);
    assert_eq!(mode(&grow, false), OomMode::FreezeAtHigh);
    assert_eq!(mode(&fail, false), OomMode::Kill);
}

/// The knob writes the mapped resources turn into, per layout: the table in
/// docs/run.md.
fn planned(kind: FakeKind, job: &JobSpec, assignment: &Assignment) -> cgroup::Plan {
    let fs = FakeFs::new(kind);
    fs.add_cgroup("corral");
    let manager =
        CgroupManager::open(fs.layout(), &ManagerConfig::new(CgroupPath::new("corral").unwrap()))
            .unwrap();
    let r = resources(
        job,
        assignment,
        &cpus("0-1"),
        manager.capabilities(),
        job.resources.memory.hard,
        &NO_DEVICES,
    );
    manager.plan(&r).unwrap()
}

#[test]
fn shared_job_cgroup_writes_on_v1_and_v2() {
    let job = spec(
        "resources:\n  cpu_weight: 200\n  cpu_quota: 500m\n  memory: {soft: 16Mi, high: 24Mi, hard: 32Mi, swap: 8Mi}\n  pids: 64\n",
    );
    let v1 = planned(FakeKind::V1, &job, &shared());
    let v1_writes: Vec<String> = v1.writes.iter().map(ToString::to_string).collect();
    assert_eq!(
        v1_writes,
        [
            "cpuset.cpus = \"0-1\"",
            "cpuset.mems = \"0\"",
            "cpu.shares = \"2048\"",
            "cpu.cfs_period_us = \"100000\"",
            "cpu.cfs_quota_us = \"50000\"",
            "memory.soft_limit_in_bytes = \"16777216\"",
            "memory.limit_in_bytes = \"33554432\"",
            "memory.memsw.limit_in_bytes = \"41943040\"",
            "pids.max = \"64\"",
            "devices.deny = \"a\"",
            "devices.allow = \"c 1:3 rwm\"",
            "devices.allow = \"c 1:5 rwm\"",
            "devices.allow = \"c 1:7 rwm\"",
            "devices.allow = \"c 1:8 rwm\"",
            "devices.allow = \"c 1:9 rwm\"",
            "devices.allow = \"c 5:0 rwm\"",
            "devices.allow = \"c 5:2 rwm\"",
            "devices.allow = \"c 136:* rwm\"",
        ]
    );
    // v1 has no memory.high: dropped, and said so.
    assert_eq!(v1.skipped.len(), 1);
    assert_eq!(v1.skipped[0].setting, "memory high limit");

    let v2 = planned(FakeKind::V2, &job, &shared());
    assert_eq!(v2.value_of("cpu.weight"), Some("200"));
    assert_eq!(v2.value_of("cpu.max"), Some("50000 100000"));
    assert_eq!(v2.value_of("cpuset.cpus"), Some("0-1"));
    assert_eq!(v2.value_of("cpuset.mems"), Some("0"));
    assert_eq!(v2.value_of("memory.low"), Some("16777216"));
    assert_eq!(v2.value_of("memory.high"), Some("25165824"));
    assert_eq!(v2.value_of("memory.max"), Some("33554432"));
    assert_eq!(v2.value_of("memory.swap.max"), Some("8388608"));
    assert_eq!(v2.value_of("memory.oom.group"), Some("1"));
    assert_eq!(v2.value_of("pids.max"), Some("64"));
    // Device rules are a program attached to a cgroup2 filesystem, which a
    // fake tree is not: the only setting dropped, and said so.
    let skipped: Vec<&str> = v2.skipped.iter().map(|s| s.setting).collect();
    assert_eq!(skipped, ["device allow-list"]);
}

#[test]
fn high_follows_the_hard_limit_in_force_and_never_passes_it() {
    let memory = spec("resources: {memory: {soft: 16Mi, high: 48Mi, hard: 64Mi, swap: 8Mi}}\n")
        .resources
        .memory;
    let at = |mib: u64| memory_limits(&memory, Some(Bytes::from_mib(mib)));
    assert_eq!(
        at(64),
        MemoryLimits {
            hard_bytes: Some(64 * MI),
            soft_bytes: Some(16 * MI),
            high_bytes: Some(48 * MI),
            swap_bytes: Some(8 * MI),
        },
        "the spec's limits when its hard limit is in force"
    );
    // Grown by 30Mi (an OOM grow step, or a requeue with a larger limit):
    // high by as much; soft and swap stay.
    assert_eq!(
        at(94),
        MemoryLimits { hard_bytes: Some(94 * MI), high_bytes: Some(78 * MI), ..at(64) }
    );
    // Below the spec's hard limit, high is cut at the limit in force.
    assert_eq!(at(32).high_bytes, Some(32 * MI));
    // No high in the spec: none, however far hard grows.
    let no_high = spec("resources: {memory: {hard: 64Mi}}\n").resources.memory;
    assert_eq!(memory_limits(&no_high, Some(Bytes::from_mib(256))).high_bytes, None);
    // No hard limit in force: high as the spec says.
    let no_hard = spec("resources: {memory: {high: 48Mi}}\n").resources.memory;
    assert_eq!(
        memory_limits(&no_hard, None),
        MemoryLimits { high_bytes: Some(48 * MI), ..MemoryLimits::default() }
    );
}

#[test]
fn a_grown_limit_moves_the_pause_point_and_memory_max_together_on_v2() {
    let job = spec(
        "resources: {memory: {high: 48Mi, hard: 64Mi}}\noom: {action: grow, grow_to: 160Mi, grow_step: 48Mi}\n",
    );
    let fs = FakeFs::new(FakeKind::V2);
    fs.add_cgroup("corral");
    let manager =
        CgroupManager::open(fs.layout(), &ManagerConfig::new(CgroupPath::new("corral").unwrap()))
            .unwrap();
    let grown = Some(Bytes::from_mib(112));
    let r = resources(&job, &shared(), &cpus("0-1"), manager.capabilities(), grown, &NO_DEVICES);
    let v2 = manager.plan(&r).unwrap();
    // memory.high is the pause point at the grown limit (the spec's lower
    // `high` gives way to it); memory.max the 16 MiB margin above.
    assert_eq!(v2.value_of("memory.high"), Some("117440512"));
    assert_eq!(v2.value_of("memory.max"), Some("134217728"));
}

#[test]
fn weight_to_shares_and_soft_to_low_table() {
    for (weight, shares) in
        [(1, "10"), (50, "512"), (100, "1024"), (200, "2048"), (10000, "102400")]
    {
        let job = spec(&format!("resources: {{cpu_weight: {weight}}}\n"));
        assert_eq!(planned(FakeKind::V1, &job, &shared()).value_of("cpu.shares"), Some(shares));
        let v2 = planned(FakeKind::V2, &job, &shared());
        assert_eq!(v2.value_of("cpu.weight"), Some(weight.to_string().as_str()));
    }
    for (soft, bytes) in [("1Mi", "1048576"), ("512Mi", "536870912"), ("2Gi", "2147483648")] {
        let job = spec(&format!("resources: {{memory: {{soft: {soft}}}}}\n"));
        let v1 = planned(FakeKind::V1, &job, &shared());
        assert_eq!(v1.value_of("memory.soft_limit_in_bytes"), Some(bytes));
        assert_eq!(planned(FakeKind::V2, &job, &shared()).value_of("memory.low"), Some(bytes));
    }
}

#[test]
fn exclusive_job_with_grow_policy_on_a_hybrid_host() {
    let job = spec(
        "resources: {cpus: 1, numa: single-node, memory: {hard: 64Mi}}\noom: {action: grow, grow_to: 160Mi, grow_step: 48Mi}\n",
    );
    let plan = planned(FakeKind::Hybrid, &job, &exclusive("1", "0"));
    assert_eq!(plan.value_of("cpuset.cpus"), Some("1"));
    assert_eq!(plan.value_of("cpu.shares"), None, "no weight for exclusive cores");
    // Paused at the limit instead of killed: the v1 memory controller can.
    assert_eq!(plan.value_of("memory.oom_control"), Some("1"));
    assert_eq!(plan.value_of("memory.limit_in_bytes"), Some("67108864"));
    // The same job on pure v2 cannot pause; the whole job is killed together.
    let plan = planned(FakeKind::V2, &job, &exclusive("1", "0"));
    assert_eq!(plan.value_of("memory.oom.group"), Some("1"));
}

// --- container configuration -------------------------------------------------

#[test]
fn command_env_workdir_and_run_dir() {
    let cfg = container("env: {TZ: UTC, EMPTY: ''}\nworkdir: /srv/etl\n");
    assert_eq!(cfg.job, "etl");
    assert_eq!(cfg.run, "etl-7");
    assert_eq!(cfg.command, ["/usr/bin/python3", "etl.py", "--fast"]);
    assert_eq!(
        cfg.env,
        BTreeMap::from([("EMPTY".to_owned(), String::new()), ("TZ".to_owned(), "UTC".to_owned())])
    );
    assert_eq!(cfg.workdir, Some(PathBuf::from("/srv/etl")));
    assert_eq!(cfg.run_dir, Path::new(RUN_DIR));
    let placed_at = crate::vocab::Timestamp::from_millis(1000);
    assert_eq!(run_dir(Path::new("/state/runs"), &run(), placed_at), Path::new(RUN_DIR));
    assert_eq!(runs_dir(Path::new("/state")), Path::new("/state/runs"));
    assert_eq!(container("").workdir, None);
    assert!(!cfg.tee_output, "teeing is the caller's choice");
}

#[test]
fn user_and_group_come_from_the_job_or_the_default_user() {
    let cfg = container("user: etl\ngroup: 1000\n");
    assert_eq!((cfg.user, cfg.group), (Some(IdSpec::Name("etl".into())), Some(IdSpec::Id(1000))));
    let cfg = container("user: 1001\ngroup: staff\n");
    assert_eq!((cfg.user, cfg.group), (Some(IdSpec::Id(1001)), Some(IdSpec::Name("staff".into()))));
    // No user: the agent's default_user; no group: the user's own.
    let cfg = container_config(
        &spec(""),
        &config("default_user: nobody\n"),
        &run(),
        Path::new(RUN_DIR),
        &no_env(),
        &[],
        None,
    )
    .unwrap();
    assert_eq!((cfg.user, cfg.group), (Some(IdSpec::Name("nobody".into())), None));
    let cfg = container_config(
        &spec(""),
        &config("default_user: 4242\n"),
        &run(),
        Path::new(RUN_DIR),
        &no_env(),
        &[],
        None,
    )
    .unwrap();
    assert_eq!(cfg.user, Some(IdSpec::Id(4242)));
    assert!(cfg.refuse_root, "uid 0 under another name is refused by the shim too");
}

#[test]
fn a_dynamic_default_user_runs_as_its_uid_and_the_gid_of_that_number() {
    let cfg = config("dynamic_users: {range: 70000-70009}\n");
    let plan = |yaml: &str, uid| {
        container_config(&spec(yaml), &cfg, &run(), Path::new(RUN_DIR), &no_env(), &[], uid)
    };
    let got = plan("", Some(70003)).unwrap();
    assert_eq!((got.user, got.group), (Some(IdSpec::Id(70003)), Some(IdSpec::Id(70003))));
    assert!(got.refuse_root);
    assert_eq!(got.refuse_ids_in, Some((70000, 70009)), "names mapped into it are refused");
    let got = plan("group: staff\n", Some(70003)).unwrap();
    assert_eq!(got.group, Some(IdSpec::Name("staff".into())), "the job's group wins");
    // A job with a user of its own has no use for the dynamic uid.
    assert_eq!(plan("user: etl\n", Some(70003)).unwrap().user, Some(IdSpec::Name("etl".into())));
    for (uid, says) in [(None, "given no uid"), (Some(61184), "uid 61184, which is not")] {
        let err = plan("", uid).unwrap_err();
        assert!(matches!(err, LaunchError::NoDynamicUid { .. }), "{err}");
        assert!(err.to_string().contains(says), "{err}");
        assert!(err.to_string().contains("70000-70009"), "{err}");
    }
}

#[test]
fn root_is_refused_unless_the_agent_allows_it() {
    for user in ["root", "0"] {
        let err = container_config(
            &spec(&format!("user: '{user}'\n")),
            &config(""),
            &run(),
            Path::new(RUN_DIR),
            &no_env(),
            &[],
            None,
        )
        .unwrap_err();
        assert!(
            matches!(&err, LaunchError::RootRefused { job, origin: UserOrigin::Job, .. } if job == "etl"),
            "{err}"
        );
        assert!(err.to_string().contains("allow_root_jobs"), "{err}");
    }
    // A default_user of root is refused by the config compiler already; a
    // config built otherwise (flags, code) is checked here all the same.
    let mut rooted = config("");
    rooted.default_user = spec::DefaultUser::Account(UserRef::Id(0));
    let err =
        container_config(&spec(""), &rooted, &run(), Path::new(RUN_DIR), &no_env(), &[], None)
            .unwrap_err();
    assert!(matches!(err, LaunchError::RootRefused { origin: UserOrigin::DefaultUser, .. }));
    assert!(err.to_string().contains("default_user"), "{err}");

    let allowed = config("allow_root_jobs: true\ndefault_user: root\n");
    let cfg =
        container_config(&spec(""), &allowed, &run(), Path::new(RUN_DIR), &no_env(), &[], None)
            .unwrap();
    assert_eq!(cfg.user, Some(IdSpec::Name("root".into())));
    assert!(!cfg.refuse_root);
    let cfg = container_config(
        &spec("user: 0\n"),
        &allowed,
        &run(),
        Path::new(RUN_DIR),
        &no_env(),
        &[],
        None,
    )
    .unwrap();
    assert_eq!(cfg.user, Some(IdSpec::Id(0)));
}

#[test]
fn namespaces_and_hostname() {
    let cfg = container("");
    assert_eq!(
        cfg.namespaces,
        [Namespace::Pid, Namespace::Mount, Namespace::Uts, Namespace::Ipc, Namespace::Net].into()
    );
    assert_eq!(cfg.hostname.as_deref(), Some("etl"), "the job name by default");
    let cfg = container(
        "isolation: {namespaces: [pid, mount, uts, ipc, net, user, cgroup], hostname: etl.example}\n",
    );
    assert_eq!(cfg.namespaces.len(), 7);
    assert!(cfg.has(Namespace::User) && cfg.has(Namespace::Cgroup));
    assert_eq!(cfg.hostname.as_deref(), Some("etl.example"));
    let cfg = container("isolation: {namespaces: [pid, net]}\n");
    assert_eq!(cfg.namespaces, [Namespace::Pid, Namespace::Net].into());
    assert_eq!(cfg.hostname, None, "no uts namespace, no hostname");
    assert!(container("isolation: {namespaces: []}\n").namespaces.is_empty());
}

#[test]
fn rootfs_readonly_and_mounts() {
    let cfg = container(
        "isolation:\n  rootfs: /srv/rootfs\n  readonly: true\n  mounts:\n    - {source: /data, target: /data}\n    - {kind: bind, source: /out, target: /out, readonly: false}\n    - {kind: tmpfs, target: /tmp, size: 16Mi, readonly: false}\n    - {kind: tmpfs, target: /scratch}\n",
    );
    assert_eq!(cfg.rootfs, Some(PathBuf::from("/srv/rootfs")));
    assert!(cfg.readonly_rootfs);
    assert_eq!(
        cfg.mounts,
        [
            Mount::bind("/data", "/data", true),
            Mount::bind("/out", "/out", false),
            Mount::tmpfs("/tmp", Some(16 * MI), false),
            Mount::tmpfs("/scratch", None, true),
        ]
    );
    assert!(matches!(cfg.mounts[2].kind, MountKind::Tmpfs { size_bytes: Some(_) }));
    let cfg = container("");
    assert_eq!((cfg.rootfs, cfg.readonly_rootfs), (None, false));
    assert!(cfg.mounts.is_empty());
}

#[test]
fn capabilities_rlimits_log_cap_and_cgroups() {
    let job = spec(
        "isolation: {capabilities: [CAP_NET_BIND_SERVICE, CAP_SYS_NICE]}\nrlimits: {nofile: 1024, core: 0, data: 1Gi, as: unlimited, cpu: 1m, nproc: 100, stack: 8Mi, memlock: 64Ki, fsize: 1Gi}\n",
    );
    let procs = [PathBuf::from("/sys/fs/cgroup/pids/corral/etl-7/cgroup.procs")];
    let cfg = container_config(
        &job,
        &config("log_max_bytes: 1Mi\nlog_tail_bytes: 64Ki\n"),
        &run(),
        Path::new(RUN_DIR),
        &no_env(),
        &procs,
        Some(61184),
    )
    .unwrap();
    assert_eq!(
        cfg.capabilities,
        [Capability::NET_BIND_SERVICE, "CAP_SYS_NICE".parse().unwrap()].into()
    );
    let limits: BTreeMap<RlimitResource, (u64, u64)> =
        cfg.rlimits.iter().map(|r| (r.resource, (r.soft, r.hard))).collect();
    let gi = 1u64 << 30;
    assert_eq!(
        limits,
        BTreeMap::from([
            (RlimitResource::Nofile, (1024, 1024)),
            (RlimitResource::Nproc, (100, 100)),
            (RlimitResource::Core, (0, 0)),
            (RlimitResource::Stack, (8 * MI, 8 * MI)),
            (RlimitResource::Cpu, (60, 60)),
            (RlimitResource::Memlock, (64 << 10, 64 << 10)),
            (RlimitResource::Fsize, (gi, gi)),
            (RlimitResource::Data, (gi, gi)),
            (RlimitResource::As, (u64::MAX, u64::MAX)),
        ])
    );
    assert_eq!(cfg.log_max_bytes, MI);
    assert_eq!(cfg.log_tail_bytes, 64 << 10);
    assert_eq!(cfg.cgroup_procs, procs);
    assert_eq!(container("").log_max_bytes, 16 * MI, "the agent's default");
    assert_eq!(container("").log_tail_bytes, MI, "the agent's default");
}

// --- the whole plan ----------------------------------------------------------

#[test]
fn plan_names_the_cgroup_after_the_run_and_keeps_the_oom_policy() {
    let job = spec("resources: {memory: {hard: 64Mi}}\noom: {action: grow, grow_to: 160Mi}\n");
    let cfg = config("state_dir: /state\n");
    let inputs = PlanInputs {
        config: &cfg,
        run: &run(),
        assignment: &shared(),
        shared_pool: &cpus("0-1"),
        capabilities: &caps(true),
        cgroup_procs: &[],
        dynamic_uid: Some(61184),
        memory_limit: None,
        run_dir: Path::new(RUN_DIR),
        env: &no_env(),
        tee_output: false,
        devices: &NO_DEVICES,
        hugepages: &crate::launch::hugepages::UNKNOWN_HOST,
    };
    let plan = plan(&job, &inputs).unwrap();
    assert_eq!(plan.job.as_str(), "etl");
    assert_eq!(plan.run, run());
    assert_eq!(plan.cgroup.as_str(), "etl-7");
    assert_eq!(plan.container.run_dir, Path::new(RUN_DIR));
    assert_eq!(plan.dynamic_uid, Some(61184));
    assert_eq!(plan.resources.oom, OomMode::PauseAtLimit);
    assert_eq!(plan.oom, OomPolicy::Grow { to: Bytes::from_mib(160), step: Bytes::from_mib(96) });
    assert_eq!(plan.resources.cpus, Some(cpus("0-1")));
}

#[test]
fn a_run_id_that_cannot_be_a_cgroup_is_refused() {
    let cfg = config("");
    let bad = RunId::new("etl/7");
    let inputs = PlanInputs {
        config: &cfg,
        run: &bad,
        assignment: &shared(),
        shared_pool: &cpus("0"),
        capabilities: &caps(false),
        cgroup_procs: &[],
        dynamic_uid: Some(61184),
        memory_limit: None,
        run_dir: Path::new(RUN_DIR),
        env: &no_env(),
        tee_output: false,
        devices: &NO_DEVICES,
        hugepages: &crate::launch::hugepages::UNKNOWN_HOST,
    };
    let err = plan(&spec(""), &inputs).unwrap_err();
    assert!(matches!(&err, LaunchError::RunId { job, run, .. } if job == "etl" && run == "etl/7"));
}

#[test]
fn mems_of_every_node_for_a_shared_job_on_two_nodes() {
    let assignment = Assignment { mems: "0-1".parse().unwrap(), ..shared() };
    let r = resources(&spec(""), &assignment, &cpus("0-7"), &caps(false), None, &NO_DEVICES);
    assert_eq!(r.mems, Some([NodeId(0), NodeId(1)].into_iter().collect()));
}

#[test]
fn a_job_naming_a_device_the_plan_was_not_given_is_refused() {
    let cfg = config("state_dir: /state\n");
    let job = spec("isolation: {devices: [{path: /dev/fuse}]}\n");
    let inputs = PlanInputs {
        config: &cfg,
        run: &run(),
        assignment: &shared(),
        shared_pool: &cpus("0-1"),
        capabilities: &caps(true),
        cgroup_procs: &[],
        dynamic_uid: Some(61184),
        memory_limit: None,
        run_dir: Path::new(RUN_DIR),
        env: &no_env(),
        tee_output: false,
        devices: &NO_DEVICES,
        hugepages: &crate::launch::hugepages::UNKNOWN_HOST,
    };
    let err = plan(&job, &inputs).unwrap_err();
    assert!(matches!(&err, LaunchError::Device { path, .. } if path == Path::new("/dev/fuse")));
    let fuse = crate::launch::devices::DeviceNode {
        kind: crate::cgroup::DeviceType::Char,
        major: 10,
        minor: 229,
    };
    let numbers = DeviceNumbers::from_nodes([(PathBuf::from("/dev/fuse"), fuse)]);
    let plan = plan(&job, &PlanInputs { devices: &numbers, ..inputs }).unwrap();
    let rules = plan.resources.devices.unwrap();
    assert_eq!(rules.last().unwrap().to_string(), "c 10:229 rw");
}

// --- huge pages ----------------------------------------------------------------

#[test]
fn huge_page_limits_are_planned_where_the_host_has_pages_and_refused_elsewhere() {
    use crate::launch::hugepages::{HugepageHost, HugepagePool, UNKNOWN_HOST};
    let size = crate::spec::hugepages::ARCH_SIZES[0];
    let job = spec(&format!("resources:\n  hugepages: [{{size: {size}, limit: {size}}}]\n"));
    let cfg = config("state_dir: /state\n");
    let pool = HugepagePool { pages: 4, overcommit: 0 };
    let host = HugepageHost {
        dir: "/sys/kernel/mm/hugepages".into(),
        controller: true,
        pools: [(size.get(), pool)].into(),
    };
    let inputs = PlanInputs {
        config: &cfg,
        run: &run(),
        assignment: &shared(),
        shared_pool: &cpus("0-1"),
        capabilities: &caps(true),
        cgroup_procs: &[],
        dynamic_uid: Some(61184),
        memory_limit: None,
        run_dir: Path::new(RUN_DIR),
        env: &no_env(),
        tee_output: false,
        devices: &NO_DEVICES,
        hugepages: &host,
    };
    let planned = plan(&job, &inputs).unwrap();
    assert_eq!(
        planned.resources.hugetlb,
        [cgroup::HugetlbLimit { page_size: size.get(), limit_bytes: size.get() }]
    );
    let err = plan(&job, &PlanInputs { hugepages: &UNKNOWN_HOST, ..inputs }).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, LaunchError::Hugepages { .. }), "{message}");
    assert!(message.starts_with("job etl, run etl-7: resources.hugepages needs the hugetlb"));
}
