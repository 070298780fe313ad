//! Cost of one full scrape with 1000 running runs, next to the cost of just
//! reading their cgroup files. The goal is a scrape at a small multiple of
//! the reads it cannot avoid.
//!
//! Each run is backed by real files in a temporary v1 tree, with the
//! contents of v1 cgroup stat files captured from a kernel
//! (`tests/fixtures/cgroup/v1`): 12 files per run, opened once through
//! [`CgroupManager`] and [`JobCgroup::stats_reader`] as the agent does.
//! Four numbers are printed, each the median of several rounds:
//!
//! - `open+read`: opening, reading and closing each of the 12,000 files;
//! - `read`: reading each through a descriptor kept open (what a scrape
//!   has to do at least);
//! - `read+parse`: the scrape's own reading, every run's `Stats` through its
//!   open files, without encoding;
//! - `scrape`: `Metrics::render`, snapshot to the last byte of text.
//!
//! A tempdir is page cache, not cgroupfs: the kernel formats cgroup files
//! on each read, which makes real reads dearer and the ratio smaller.
//!
//! `cargo bench --bench scrape` measures; under `cargo test` one small round
//! runs as a smoke test.

use std::fs;
use std::hint::black_box;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral::cgroup::{
    detect, CgroupManager, CgroupName, CgroupPath, Controller, HostPaths, JobCgroup, ManagerConfig,
};
use corral::metrics::{
    Format, JobInfo, LiveRun, Metrics, MetricsConfig, NumaAllocation, PublishedSnapshot, Snapshot,
    SpecFiles, StatsHandle,
};
use corral::scheduler::{Phase, PreemptionMode};
use corral::topology::{NodeId, NodeSet};
use corral::vocab::Bytes;
use corral::vocab::JobName;
use corral::vocab::RunId;
use corral::vocab::Timestamp;

/// Hierarchies of a v1 host, as mounted at `/sys/fs/cgroup/<name>`.
const HIERARCHIES: &[&str] = &["cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "blkio"];

/// The stat files of a v1 job cgroup, by hierarchy, from the fixtures.
const STAT_FILES: &[(&str, &[&str])] = &[
    ("cpu", &["cpu.stat"]),
    ("cpuacct", &["cpuacct.usage", "cpuacct.stat"]),
    (
        "memory",
        &[
            "memory.usage_in_bytes",
            "memory.max_usage_in_bytes",
            "memory.failcnt",
            "memory.stat",
            "memory.oom_control",
        ],
    ),
    ("pids", &["pids.current"]),
    ("blkio", &["blkio.throttle.io_service_bytes", "blkio.throttle.io_serviced"]),
];

/// Extra files a job cgroup has that the reader may look for.
const OTHER_FILES: &[(&str, &str, &str)] = &[
    ("memory", "memory.memsw.failcnt", "0\n"),
    ("cpuset", "cpuset.cpus", "0-1\n"),
    ("cpuset", "cpuset.mems", "0\n"),
    ("freezer", "freezer.state", "THAWED\n"),
];

struct Host {
    _dir: tempfile::TempDir,
    jobs: Vec<(JobCgroup, String)>,
    /// Every stat file, in the order a scrape reads them.
    files: Vec<PathBuf>,
}

/// A v1 tree with `runs` job cgroups under `corral/`.
fn build(runs: usize) -> Host {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cgroup/v1");
    let mut mountinfo = String::new();
    for (i, h) in HIERARCHIES.iter().enumerate() {
        let mount = dir.path().join(h);
        fs::create_dir_all(&mount).unwrap();
        mountinfo.push_str(&format!(
            "{} 1 0:{} / {} rw - cgroup cgroup rw,{h}\n",
            30 + i,
            30 + i,
            mount.display()
        ));
    }
    fs::write(dir.path().join("cpuset/cpuset.cpus"), "0-1\n").unwrap();
    fs::write(dir.path().join("cpuset/cpuset.mems"), "0\n").unwrap();
    // The parent as the kernel would show it after mkdir: the manager fills
    // its cpuset from the root, and knob writes never create files.
    for h in HIERARCHIES {
        fs::create_dir_all(dir.path().join(h).join("corral")).unwrap();
    }
    fs::write(dir.path().join("cpuset/corral/cpuset.cpus"), "\n").unwrap();
    fs::write(dir.path().join("cpuset/corral/cpuset.mems"), "\n").unwrap();
    fs::write(dir.path().join("mountinfo"), mountinfo).unwrap();
    let layout = detect(&HostPaths {
        mountinfo: dir.path().join("mountinfo"),
        self_cgroup: dir.path().join("no-self-cgroup"),
        cgroup_root: None,
    })
    .unwrap();
    let manager =
        CgroupManager::open(layout, &ManagerConfig::new(CgroupPath::new("corral").unwrap()))
            .unwrap();

    let contents: Vec<(&str, &str, Vec<u8>)> = STAT_FILES
        .iter()
        .flat_map(|(h, files)| files.iter().map(|f| (*h, *f, fs::read(fixtures.join(f)).unwrap())))
        .collect();
    let mut jobs = Vec::with_capacity(runs);
    for i in 0..runs {
        let job = format!("job{}", i % 100);
        let name = CgroupName::new(format!("{job}-{}", i / 100 + 1)).unwrap();
        for h in HIERARCHIES {
            fs::create_dir_all(dir.path().join(h).join("corral").join(name.as_str())).unwrap();
        }
        for (h, file, content) in &contents {
            fs::write(dir.path().join(h).join("corral").join(name.as_str()).join(file), content)
                .unwrap();
        }
        for (h, file, content) in OTHER_FILES {
            fs::write(dir.path().join(h).join("corral").join(name.as_str()).join(file), content)
                .unwrap();
        }
        jobs.push((manager.job(&name), job));
    }
    let mut files = Vec::new();
    for (cgroup, _) in &jobs {
        files.extend(cgroup.stats_reader().unwrap().paths().map(Path::to_path_buf));
    }
    assert!(jobs.first().is_none_or(|(j, _)| j.v1_dir(Controller::Memory).is_some()));
    Host { _dir: dir, jobs, files }
}

fn snapshot(host: &Host) -> Snapshot {
    let runs = host
        .jobs
        .iter()
        .map(|(cgroup, job)| LiveRun {
            job: JobName::parse(job).unwrap(),
            run: RunId::new(cgroup.name().as_str()),
            phase: Phase::Running { since: Timestamp::EPOCH },
            frozen: false,
            exclusive_cpus: 0,
            numa_nodes: NodeSet::from_iter([NodeId(0)]),
            memory_soft_limit: Some(Bytes::from_mib(64)),
            memory_hard_limit: Some(Bytes::from_mib(128)),
            stats: Some(StatsHandle::new(cgroup.stats_reader().unwrap())),
        })
        .collect();
    let jobs = (0..100.min(host.jobs.len()))
        .map(|i| JobInfo {
            job: JobName::parse(&format!("job{i}")).unwrap(),
            priority: 50,
            preemption: PreemptionMode::Suspend,
            scheduled: i % 2 == 0,
            user: "nobody".into(),
            next_fire: None,
        })
        .collect();
    Snapshot {
        runs,
        jobs,
        queue_length: 0,
        held_back: 0,
        spec_files: SpecFiles { valid: 100, invalid: 0 },
        layout: Some(corral::cgroup::LayoutKind::V1),
        numa: vec![NumaAllocation {
            node: NodeId(0),
            allocatable_cpus: 2,
            allocated_cpus: 0,
            allocatable_memory: Bytes::from_gib(23),
            allocated_memory: Bytes::from_mib(128 * host.jobs.len() as u64),
        }],
        store_unwritable: false,
        arrays: Vec::new(),
    }
}

fn open_and_read(files: &[PathBuf], buf: &mut Vec<u8>) -> usize {
    let mut total = 0;
    for path in files {
        buf.clear();
        total += fs::File::open(path).unwrap().read_to_end(buf).unwrap();
    }
    total
}

fn read_open(files: &[fs::File], buf: &mut [u8]) -> usize {
    files.iter().map(|f| f.read_at(buf, 0).unwrap()).sum()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time<T>(rounds: usize, mut work: impl FnMut() -> T) -> Duration {
    work(); // warm the page cache and the allocator
    median(
        (0..rounds)
            .map(|_| {
                let start = Instant::now();
                black_box(work());
                start.elapsed()
            })
            .collect(),
    )
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this
    // binary without it: one small round as a smoke test.
    let full = std::env::args().any(|a| a == "--bench");
    let (runs, rounds) = if full { (1000, 31) } else { (20, 1) };
    let host = build(runs);

    // The baselines first: their 12 descriptors per run are closed before
    // the scrape's readers open theirs (a process has a descriptor limit).
    let mut buf = Vec::with_capacity(4096);
    let open_read = time(rounds, || open_and_read(&host.files, &mut buf));
    let opened: Vec<fs::File> = host.files.iter().map(|p| fs::File::open(p).unwrap()).collect();
    let mut page = vec![0u8; 4096];
    let read = time(rounds, || read_open(&opened, &mut page));
    drop(opened);

    let source = Arc::new(PublishedSnapshot::new(snapshot(&host)));
    let metrics = Metrics::new(&MetricsConfig::default(), source.clone());
    let scrape = metrics.render(Format::Prometheus).unwrap();
    let series = scrape.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(
        scrape.lines().filter(|l| l.starts_with("corral_run_memory_usage_bytes{")).count(),
        runs,
        "every run is in the scrape"
    );
    let render = time(rounds, || metrics.render(Format::Prometheus).unwrap().len());
    // The scrape's own reading and parsing, without encoding.
    let handles: Vec<StatsHandle> =
        source.latest().runs.iter().filter_map(|r| r.stats.clone()).collect();
    let parse = time(rounds, || {
        handles.iter().map(|h| h.read().unwrap().pids.current.unwrap_or(0)).sum::<u64>()
    });

    println!(
        "{runs} runs, {} files, scrape of {} KiB in {series} series",
        host.files.len(),
        scrape.len() / 1024
    );
    println!("open+read  {:>10}", ms(open_read));
    println!("read       {:>10}", ms(read));
    println!(
        "read+parse {:>10}   {:.1}x read (the scrape's reading, without encoding)",
        ms(parse),
        parse.as_secs_f64() / read.as_secs_f64()
    );
    println!(
        "scrape     {:>10}   {:.1}x read, {:.1}x open+read",
        ms(render),
        render.as_secs_f64() / read.as_secs_f64(),
        render.as_secs_f64() / open_read.as_secs_f64()
    );
    if !full {
        println!("smoke run; `cargo bench --bench scrape` measures");
    }
}
