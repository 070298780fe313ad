//! Scrapes of a fake agent: what is read, when, and what comes out.

use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;

use super::*;
use crate::cgroup::{CgroupError, LayoutKind, Stats};
use crate::scheduler::{ExitStatus, Phase, PreemptionMode};
use crate::topology::{NodeId, NodeSet};
use crate::vocab::Bytes;
use crate::vocab::JobName;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

/// Canned statistics that count how often they are read.
struct Canned {
    stats: Option<Stats>,
    reads: Arc<AtomicUsize>,
}

impl ReadStats for Canned {
    fn read_stats(&mut self) -> Result<Stats, CgroupError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.stats.clone().ok_or_else(|| CgroupError::Read {
            path: "/gone/cpu.stat".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
    }
}

fn stats() -> Stats {
    let mut s = Stats::default();
    s.cpu.usage_ns = Some(2_500_000_000);
    s.cpu.user_ns = Some(2_000_000_000);
    s.memory.usage_bytes = Some(1 << 20);
    s.memory.oom_kills = Some(1);
    s
}

fn live(id: &str, phase: Phase, stats: Option<Stats>, reads: &Arc<AtomicUsize>) -> LiveRun {
    LiveRun {
        job: JobName::parse("etl").unwrap(),
        run: RunId::new(id),
        phase,
        frozen: false,
        exclusive_cpus: 2,
        numa_nodes: NodeSet::from_iter([NodeId(0)]),
        memory_soft_limit: None,
        memory_hard_limit: Some(Bytes::GIB),
        stats: Some(StatsHandle::new(Canned { stats, reads: reads.clone() })),
    }
}

fn running() -> Phase {
    Phase::Running { since: Timestamp::EPOCH }
}

fn finished(id: &str, ended: SystemTime) -> FinishedRun {
    FinishedRun {
        job: JobName::parse("etl").unwrap(),
        run: RunId::new(id),
        phase: Phase::Succeeded,
        ended_at: ended,
        cpu_seconds: 4.0,
        peak_memory: Some(Bytes::MIB),
        oom_kills: 2,
        exit: Some(ExitStatus::Code(0)),
    }
}

fn lines_for<'a>(scrape: &'a str, name: &str) -> Vec<&'a str> {
    scrape.lines().filter(|l| l.split(['{', ' ']).next() == Some(name)).collect()
}

#[test]
fn each_run_is_read_once_per_scrape() {
    let reads = Arc::new(AtomicUsize::new(0));
    let source = PublishedSnapshot::new(Snapshot {
        runs: vec![live("etl-1", running(), Some(stats()), &reads)],
        ..Default::default()
    });
    let metrics = Metrics::new(&MetricsConfig::default(), Arc::new(source));
    let scrape = metrics.render(Format::Prometheus).unwrap();
    assert_eq!(reads.load(Ordering::SeqCst), 1);
    assert_eq!(
        lines_for(&scrape, "corral_run_cpu_usage_seconds_total"),
        ["corral_run_cpu_usage_seconds_total{job_name=\"etl\",run=\"etl-1\"} 2.5"]
    );
    assert_eq!(
        lines_for(&scrape, "corral_run_memory_hard_limit_bytes"),
        ["corral_run_memory_hard_limit_bytes{job_name=\"etl\",run=\"etl-1\"} 1073741824"]
    );
    // Missing values (no soft limit, no system time) are left out, not 0.
    assert!(lines_for(&scrape, "corral_run_memory_soft_limit_bytes").is_empty());
    assert!(lines_for(&scrape, "corral_run_cpu_system_seconds_total").is_empty());
    metrics.render(Format::OpenMetrics).unwrap();
    assert_eq!(reads.load(Ordering::SeqCst), 2);
}

#[test]
fn a_run_whose_files_are_gone_is_counted_and_skipped() {
    let reads = Arc::new(AtomicUsize::new(0));
    let source = PublishedSnapshot::new(Snapshot {
        runs: vec![
            live("etl-1", running(), None, &reads),
            live("etl-2", running(), Some(stats()), &reads),
        ],
        ..Default::default()
    });
    let metrics = Metrics::new(&MetricsConfig::default(), Arc::new(source));
    let scrape = metrics.render(Format::Prometheus).unwrap();
    assert_eq!(
        lines_for(&scrape, "corral_scrape_read_errors_total"),
        ["corral_scrape_read_errors_total 1"]
    );
    let usage = lines_for(&scrape, "corral_run_cpu_usage_seconds_total");
    assert_eq!(usage.len(), 1);
    assert!(usage[0].contains("etl-2"));
    // Its state is still known from the snapshot.
    assert_eq!(lines_for(&scrape, "corral_run_state").len(), 2);
}

#[test]
fn finished_runs_keep_their_counters_for_the_retention_then_go() {
    let now = Arc::new(Mutex::new(SystemTime::UNIX_EPOCH + Duration::from_secs(10_000)));
    let clock_now = now.clone();
    let clock: WallClock = Arc::new(move || *clock_now.lock().unwrap());
    let config =
        MetricsConfig { finished_retention: Duration::from_secs(300), ..Default::default() };
    let metrics = Metrics::with_clock(&config, Arc::new(PublishedSnapshot::default()), clock);
    metrics.run_finished(finished("etl-7", SystemTime::UNIX_EPOCH + Duration::from_secs(9_900)));

    let scrape = metrics.render(Format::Prometheus).unwrap();
    assert_eq!(
        lines_for(&scrape, "corral_run_memory_oom_kills_total"),
        ["corral_run_memory_oom_kills_total{job_name=\"etl\",run=\"etl-7\"} 2"]
    );
    assert_eq!(
        lines_for(&scrape, "corral_run_state"),
        ["corral_run_state{job_name=\"etl\",run=\"etl-7\",state=\"succeeded\"} 1"]
    );
    assert_eq!(lines_for(&scrape, "corral_run_exit_code").len(), 1);
    assert_eq!(
        lines_for(&scrape, "corral_run_end_timestamp_seconds"),
        ["corral_run_end_timestamp_seconds{job_name=\"etl\",run=\"etl-7\"} 9900.0"]
    );

    *now.lock().unwrap() = SystemTime::UNIX_EPOCH + Duration::from_secs(10_201);
    let scrape = metrics.render(Format::Prometheus).unwrap();
    assert!(lines_for(&scrape, "corral_run_memory_oom_kills_total").is_empty());
    assert!(lines_for(&scrape, "corral_run_state").is_empty());
}

#[test]
fn a_finished_entry_for_a_live_run_is_not_duplicated() {
    let reads = Arc::new(AtomicUsize::new(0));
    let source = PublishedSnapshot::new(Snapshot {
        runs: vec![live("etl-1", running(), Some(stats()), &reads)],
        ..Default::default()
    });
    let metrics = Metrics::new(&MetricsConfig::default(), Arc::new(source));
    metrics.run_finished(finished("etl-1", SystemTime::now()));
    let scrape = metrics.render(Format::Prometheus).unwrap();
    assert_eq!(lines_for(&scrape, "corral_run_state").len(), 1);
    assert_eq!(lines_for(&scrape, "corral_run_cpu_usage_seconds_total").len(), 1);
}

#[test]
fn node_families_and_zeroed_counters() {
    let reads = Arc::new(AtomicUsize::new(0));
    let mut suspended = live(
        "etl-2",
        Phase::Suspended {
            by: crate::scheduler::SuspendedBy::Run(RunId::new("x-1")),
            frozen: true,
            oom_pending: false,
        },
        None,
        &reads,
    );
    suspended.frozen = true;
    suspended.stats = None;
    let source = PublishedSnapshot::new(Snapshot {
        runs: vec![suspended],
        jobs: vec![JobInfo {
            job: JobName::parse("etl").unwrap(),
            priority: 50,
            preemption: PreemptionMode::Suspend,
            scheduled: true,
            user: "etl".into(),
            next_fire: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(60)),
        }],
        queue_length: 3,
        held_back: 2,
        spec_files: SpecFiles { valid: 4, invalid: 1 },
        layout: Some(LayoutKind::Hybrid),
        numa: vec![NumaAllocation {
            node: NodeId(0),
            allocatable_cpus: 2,
            allocated_cpus: 1,
            allocatable_memory: Bytes::GIB,
            allocated_memory: Bytes::MIB,
        }],
        store_unwritable: true,
        // Pending runs of an array are counted with it, not listed.
        arrays: vec![crate::metrics::ArrayCounts {
            array: JobName::parse("sweep").unwrap(),
            by_state: vec![("pending", 3)],
        }],
    });
    let metrics = Metrics::new(&MetricsConfig::default(), Arc::new(source));
    let scrape = metrics.render(Format::Prometheus).unwrap();
    for line in [
        "corral_array_runs{array=\"sweep\",state=\"pending\"} 3",
        "corral_runs{state=\"pending\"} 3",
        "corral_runs{state=\"suspended\"} 1",
        "corral_store_writable 0",
        "corral_runs{state=\"running\"} 0",
        "corral_queue_length 3",
        "corral_queue_held_back 2",
        "corral_spec_files{status=\"invalid\"} 1",
        "corral_cgroup_layout_info{layout=\"hybrid\"} 1",
        "corral_allocated_cpus{numa_node=\"0\"} 1",
        "corral_allocatable_memory_bytes{numa_node=\"0\"} 1073741824",
        "corral_run_frozen{job_name=\"etl\",run=\"etl-2\"} 1",
        "corral_job_info{job_name=\"etl\",priority=\"50\",preemption=\"suspend\",scheduled=\"yes\",user=\"etl\"} 1",
        "corral_job_next_fire_timestamp_seconds{job_name=\"etl\"} 60.0",
        "corral_preemptions_total{mode=\"suspend\"} 0",
        "corral_cron_firings_total{outcome=\"missed\"} 0",
        "corral_build_info{version=\"0.1.0\"} 1",
    ] {
        let line = line.replace("0.1.0", env!("CARGO_PKG_VERSION"));
        assert!(scrape.lines().any(|l| l == line), "missing {line} in\n{scrape}");
    }
    assert_eq!(reads.load(Ordering::SeqCst), 0, "a run without a cgroup handle is not read");
}

#[test]
fn scrape_duration_reports_the_previous_scrape() {
    let metrics = Metrics::new(&MetricsConfig::default(), Arc::new(PublishedSnapshot::default()));
    let around = Instant::now();
    let first = metrics.render(Format::Prometheus).unwrap();
    let first_took = around.elapsed().as_secs_f64();
    assert_eq!(
        lines_for(&first, "corral_scrape_duration_seconds"),
        ["corral_scrape_duration_seconds 0.0"]
    );
    let second = metrics.render(Format::Prometheus).unwrap();
    let value: f64 = lines_for(&second, "corral_scrape_duration_seconds")[0]
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Seconds, not a finer unit: the render timed from outside took at least
    // as long as the part it timed itself.
    assert!(value > 0.0 && value <= first_took, "{value} s of {first_took} s");
}

#[test]
fn openmetrics_has_units_types_and_eof() {
    let metrics = Metrics::new(&MetricsConfig::default(), Arc::new(PublishedSnapshot::default()));
    let scrape = metrics.render(Format::OpenMetrics).unwrap();
    assert!(scrape.ends_with("# EOF\n"));
    assert!(scrape.contains("# TYPE corral_scheduling_delay_seconds histogram\n"));
    assert!(scrape.contains("# UNIT corral_scheduling_delay_seconds seconds\n"));
    assert!(scrape.contains("# TYPE corral_preemptions counter\n"));
    assert!(scrape.contains("corral_preemptions_total{mode=\"requeue\"} 0\n"));
    assert!(scrape.contains("# TYPE corral_build info\n"));
    let text = metrics.render(Format::Prometheus).unwrap();
    assert!(!text.contains("# EOF"));
    assert!(text.contains("# TYPE corral_preemptions_total counter\n"));
}

#[test]
fn the_cluster_families_join_the_agents_scrape_and_show_only_while_leading() {
    let mut metrics =
        Metrics::new(&MetricsConfig::default(), Arc::new(PublishedSnapshot::default()));
    let cluster = Arc::new(crate::cluster::scheduler::ClusterMetrics::new());
    metrics.register_cluster(cluster.clone());
    let text = metrics.render(Format::Prometheus).unwrap();
    assert_eq!(lines_for(&text, "corral_cluster_leader"), vec!["corral_cluster_leader 0"]);
    assert!(lines_for(&text, "corral_cluster_runs").is_empty(), "{text}");
    cluster.set_leader(true);
    let text = metrics.render(Format::OpenMetrics).unwrap();
    assert_eq!(lines_for(&text, "corral_cluster_leader"), vec!["corral_cluster_leader 1"]);
    // pending, bound, ended, lost.
    assert_eq!(lines_for(&text, "corral_cluster_runs").len(), 4, "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
}
