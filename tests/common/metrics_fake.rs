//! A fake agent for scrape tests: one snapshot in which every metric family
//! the metrics module can export has at least one sample.

#![allow(dead_code)] // each test binary uses a different subset

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use corral::cgroup::stats::{DeviceIo, PressureStats};
use corral::cgroup::v2::psi::{Pressure, PsiLine};
use corral::cgroup::{CgroupError, LayoutKind, Stats};
use corral::cluster::scheduler::{BindingOutcome, ClusterMetrics};
use corral::metrics::agent::{CronOutcome, OomAction, OomReached, PreemptKind};
use corral::metrics::{
    ArrayCounts, FinishedRun, JobInfo, LiveRun, Metrics, MetricsConfig, NumaAllocation,
    PublishedSnapshot, ReadStats, Snapshot, SpecFiles, StatsHandle,
};
use corral::scheduler::{ExitStatus, FailReason, Phase, PreemptionMode};
use corral::topology::{NodeId, NodeSet};
use corral::vocab::Bytes;
use corral::vocab::JobName;
use corral::vocab::RunId;
use corral::vocab::Timestamp;

/// Statistics as a hybrid host reports them for a busy run: every field set.
pub fn full_stats() -> Stats {
    let mut s = Stats::default();
    s.cpu.usage_ns = Some(12_500_000_000);
    s.cpu.user_ns = Some(10_000_000_000);
    s.cpu.system_ns = Some(2_500_000_000);
    s.cpu.periods = Some(1200);
    s.cpu.throttled_periods = Some(30);
    s.cpu.throttled_ns = Some(450_000_000);
    s.memory.usage_bytes = Some(300 << 20);
    s.memory.working_set_bytes = Some(200 << 20);
    s.memory.anon_bytes = Some(180 << 20);
    s.memory.file_bytes = Some(120 << 20);
    s.memory.swap_bytes = Some(0);
    s.memory.max_usage_bytes = Some(310 << 20);
    s.memory.limit_hits = Some(4);
    s.memory.oom_events = Some(1);
    s.memory.oom_kills = Some(1);
    s.memory.under_oom = Some(false);
    s.pids.current = Some(7);
    s.io = Some(vec![DeviceIo {
        major: 8,
        minor: 0,
        read_bytes: 4096,
        write_bytes: 8192,
        read_ops: 1,
        write_ops: 2,
    }]);
    let line = |total_us| PsiLine { avg10: 0.5, avg60: 0.25, avg300: 0.1, total_us };
    s.pressure = Some(PressureStats {
        cpu: Some(Pressure { some: line(1_000_000), full: None }),
        memory: Some(Pressure { some: line(2_000_000), full: Some(line(500_000)) }),
        io: Some(Pressure { some: line(300_000), full: Some(line(100_000)) }),
    });
    s
}

struct Fixed(Stats);

impl ReadStats for Fixed {
    fn read_stats(&mut self) -> Result<Stats, CgroupError> {
        Ok(self.0.clone())
    }
}

pub fn job(name: &str) -> JobName {
    JobName::parse(name).unwrap()
}

/// A running exclusive run, a suspended one and a queued one; two jobs, one
/// scheduled; a hybrid layout on one NUMA node.
pub fn full_snapshot() -> Snapshot {
    let running = LiveRun {
        job: job("etl"),
        run: RunId::new("etl-3"),
        phase: Phase::Running { since: Timestamp::EPOCH },
        frozen: false,
        exclusive_cpus: 1,
        numa_nodes: NodeSet::from_iter([NodeId(0)]),
        memory_soft_limit: Some(Bytes::from_mib(256)),
        memory_hard_limit: Some(Bytes::from_mib(512)),
        stats: Some(StatsHandle::new(Fixed(full_stats()))),
    };
    let suspended = LiveRun {
        job: job("batch"),
        run: RunId::new("batch-1"),
        phase: Phase::Suspended {
            by: corral::scheduler::SuspendedBy::Run(RunId::new("etl-3")),
            frozen: true,
            oom_pending: false,
        },
        frozen: true,
        exclusive_cpus: 0,
        numa_nodes: NodeSet::from_iter([NodeId(0)]),
        memory_soft_limit: None,
        memory_hard_limit: Some(Bytes::GIB),
        stats: Some(StatsHandle::new(Fixed(full_stats()))),
    };
    let queued = LiveRun {
        job: job("batch"),
        run: RunId::new("batch-2"),
        phase: Phase::Pending,
        frozen: false,
        exclusive_cpus: 0,
        numa_nodes: NodeSet::new(),
        memory_soft_limit: None,
        memory_hard_limit: Some(Bytes::GIB),
        stats: None,
    };
    Snapshot {
        runs: vec![running, suspended, queued],
        jobs: vec![
            JobInfo {
                job: job("etl"),
                priority: 100,
                preemption: PreemptionMode::Never,
                scheduled: true,
                user: "etl".into(),
                next_fire: Some(SystemTime::now() + Duration::from_secs(3600)),
            },
            JobInfo {
                job: job("batch"),
                priority: 10,
                preemption: PreemptionMode::Suspend,
                scheduled: false,
                user: "1000".into(),
                next_fire: None,
            },
        ],
        queue_length: 1,
        held_back: 1,
        spec_files: SpecFiles { valid: 2, invalid: 1 },
        layout: Some(LayoutKind::Hybrid),
        numa: vec![NumaAllocation {
            node: NodeId(0),
            allocatable_cpus: 2,
            allocated_cpus: 1,
            allocatable_memory: Bytes::from_gib(23),
            allocated_memory: Bytes::from_mib(1536),
        }],
        store_unwritable: false,
        // An array whose four runs wait: counted here, not listed above.
        arrays: vec![ArrayCounts { array: job("sweep"), by_state: vec![("pending", 4)] }],
    }
}

/// A run of `etl` that the kernel's OOM killer ended a minute ago.
pub fn oom_killed_run() -> FinishedRun {
    FinishedRun {
        job: job("etl"),
        run: RunId::new("etl-2"),
        phase: Phase::Failed { reason: FailReason::Oom },
        ended_at: SystemTime::now() - Duration::from_secs(60),
        cpu_seconds: 3.25,
        peak_memory: Some(Bytes::from_mib(512)),
        oom_kills: 1,
        exit: Some(ExitStatus::Signal(9)),
    }
}

/// Metrics over [`full_snapshot`], with a finished run and one of each
/// agent event counted, and the cluster scheduler's families of a leading
/// agent ([`leading_cluster`]), so every family has samples.
pub fn full_metrics() -> Metrics {
    let source = Arc::new(PublishedSnapshot::new(full_snapshot()));
    let mut metrics = Metrics::new(&MetricsConfig::default(), source);
    metrics.register_cluster(leading_cluster());
    metrics.run_finished(oom_killed_run());
    let agent = metrics.agent();
    agent.preemptions.inc(PreemptKind::Suspend);
    agent.oom_events.inc(OomAction::Fail, OomReached::Killed);
    agent.cron_firings.inc(CronOutcome::Started);
    agent.cron_firings.inc_by(CronOutcome::Missed, 2);
    agent.scheduling_delay.observe(0.003);
    agent.launch_latency.observe(0.002);
    metrics
}

/// The cluster scheduler's metrics as a leading agent shows them (only the
/// leader shows more than `corral_cluster_leader`): three ready nodes and a
/// lost one, runs in every state, a rescheduled run, a binding of each
/// outcome, a scheduling latency, a bad record.
pub fn leading_cluster() -> Arc<ClusterMetrics> {
    let cluster = Arc::new(ClusterMetrics::new());
    cluster.set_leader(true);
    cluster.set_view(3, 1, [2, 5, 40, 1], 1);
    cluster.rescheduled();
    cluster.binding(BindingOutcome::Bound);
    cluster.binding(BindingOutcome::HandedBack);
    cluster.binding(BindingOutcome::Conflict);
    cluster.scheduled(Duration::from_millis(20));
    cluster
}

/// The metric names of a Prometheus text scrape: every sample's name
/// (with `_total`, `_bucket`, `_sum`, `_count`, `_info` as written).
pub fn sample_names(scrape: &str) -> std::collections::BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}
