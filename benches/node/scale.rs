//! Section "scale" of the node benchmark: the agent holding many live runs.
//!
//! One real agent (`corral agent`, `RUST_LOG=info`) is given `sleep` jobs on
//! the shared pool, first a small number, then ten times as many. At each
//! step: the agent's RSS and open descriptors. At the large step: its CPU
//! use while nothing happens, a real `/metrics` scrape over HTTP beside the
//! floor (one pass of `pread`s over the same runs' cgroup files, opened
//! beforehand in this process), `corral ps` over the control socket, and
//! the time to stop every run by removing the job files (the agent kills a
//! removed job's run) until no run is live and no cgroup is left.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::agent_harness::{job, secs, TestAgent};
use crate::table::{Figure, Goal, Row};
use crate::Bench;

const SECTION: &str = "scale";

/// Phases of a run that has not ended (the store's `phase` column).
const LIVE: &str = "phase NOT IN ('succeeded', 'failed', 'killed', 'cancelled')";

/// The cgroup files the metrics collector reads for each run on this
/// machine's hybrid layout, per tree, as `src/cgroup/stats.rs` chooses them
/// (`StatsReader::open`): the files a scrape cannot do without, so their
/// `pread`s are the scrape's floor. Optional ones are taken only where the
/// kernel has them, as the reader does.
const STAT_FILES: &[(&str, &str)] = &[
    ("cpuacct", "cpuacct.usage"),
    ("cpuacct", "cpuacct.stat"),
    ("cpu", "cpu.stat"),
    ("memory", "memory.usage_in_bytes"),
    ("memory", "memory.max_usage_in_bytes"),
    ("memory", "memory.failcnt"),
    ("memory", "memory.memsw.failcnt"),
    ("memory", "memory.stat"),
    ("memory", "memory.oom_control"),
    ("pids", "pids.current"),
    ("blkio", "blkio.throttle.io_service_bytes"),
    ("blkio", "blkio.throttle.io_serviced"),
    ("unified", "cpu.pressure"),
    ("unified", "memory.pressure"),
    ("unified", "io.pressure"),
    ("unified", "cgroup.events"),
    ("freezer", "freezer.state"),
];

fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn rss_bytes(pid: u32) -> Option<f64> {
    proc_status_kib(pid, "VmRSS:").map(|kib| kib as f64 * 1024.0)
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(Iterator::count).unwrap_or(0)
}

/// User plus system CPU time of `pid`, all its threads.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: utime and stime
    // are the 14th and 15th fields overall, the 12th and 13th after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

fn count_where(agent: &TestAgent, condition: &str) -> usize {
    let Some(db) = agent.db() else { return 0 };
    db.query_row(&format!("SELECT COUNT(*) FROM runs WHERE {condition}"), [], |r| {
        r.get::<_, i64>(0)
    })
    .map_or(0, |n| n as usize)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Writes job files `s0000.yaml`... up to `total` jobs (those below `from`
/// exist already) and waits until all `total` runs are running.
fn grow_to(agent: &TestAgent, from: usize, total: usize) -> Result<Duration, String> {
    let started = Instant::now();
    for i in from..total {
        let name = format!("s{i:04}");
        // `exec`: the job's one process is the sleep, so a stop signal ends
        // it at once rather than after the grace period.
        agent.write_job(&format!("{name}.yaml"), &job(&name, "exec sleep 100000", ""));
    }
    let deadline = Duration::from_secs(60 + total as u64 / 2);
    while count_where(agent, "phase = 'running'") < total {
        if started.elapsed() > deadline {
            return Err(format!(
                "only {} of {total} runs running after {deadline:?}",
                count_where(agent, "phase = 'running'")
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(started.elapsed())
}

/// Every stat file the collector reads for the agent's runs, opened.
fn open_stat_files(agent: &TestAgent) -> Vec<File> {
    let mut files = Vec::new();
    for run in agent.job_cgroups() {
        let mut names: Vec<(&str, &str)> = STAT_FILES.to_vec();
        // Without a cpuacct cgroup the reader takes CPU time from the v2
        // tree's cpu.stat, which every v2 cgroup has.
        if !agent.cgroup("cpuacct", &run).exists() {
            names.push(("unified", "cpu.stat"));
        }
        for (tree, name) in names {
            let path: PathBuf = agent.cgroup(tree, &run).join(name);
            if let Ok(file) = File::open(&path) {
                files.push(file);
            }
        }
    }
    files
}

/// One pass of `pread`s from offset 0 over every file, as the collector's
/// kept-open readers do.
fn read_pass(files: &[File], buf: &mut [u8]) -> Duration {
    let started = Instant::now();
    for file in files {
        // A read error would make the floor look cheaper than it is.
        file.read_at(buf, 0).expect("reading a stat file");
    }
    started.elapsed()
}

fn timed_scrape(agent: &TestAgent) -> Result<(Duration, usize), String> {
    let started = Instant::now();
    let (status, _, body) = agent.http_get("/metrics", None);
    let took = started.elapsed();
    if status != 200 {
        return Err(format!("GET /metrics answered {status}"));
    }
    Ok((took, body.len()))
}

fn timed_ps(corral: &Path, socket: &Path) -> Result<Duration, String> {
    let started = Instant::now();
    let status = Command::new(corral)
        .args(["ps", "--socket"])
        .arg(socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("running corral ps: {e}"))?;
    let took = started.elapsed();
    if !status.success() {
        return Err(format!("corral ps exited with {status}"));
    }
    Ok(took)
}

/// Lines of the output of `corral ps`, to check it lists every run.
fn ps_lines(corral: &Path, socket: &Path) -> usize {
    Command::new(corral)
        .args(["ps", "--socket"])
        .arg(socket)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0)
}

/// Medians of `rounds` real scrapes and as many passes over the same runs'
/// stat files, alternated so that both see the same caches; and how many
/// files a pass reads.
fn scrape_and_floor(agent: &TestAgent, rounds: usize) -> (Result<Figure, String>, (Figure, usize)) {
    let files = open_stat_files(agent);
    let mut buf = vec![0u8; 64 * 1024];
    let mut scrapes = Vec::new();
    let mut floors = Vec::new();
    let mut error = None;
    let mut body_len = 0;
    // A first pass and a first scrape warm both up.
    read_pass(&files, &mut buf);
    let _ = timed_scrape(agent);
    for _ in 0..rounds {
        floors.push(read_pass(&files, &mut buf));
        match timed_scrape(agent) {
            Ok((d, len)) => {
                scrapes.push(d);
                body_len = len;
            }
            Err(why) => error = Some(why),
        }
    }
    eprintln!("  scrape: {body_len} bytes; floor: {} stat files", files.len());
    let scrape = match error {
        Some(why) => Err(why),
        None => Ok(Figure::ms(median(scrapes))),
    };
    (scrape, (Figure::ms(median(floors)), files.len()))
}

struct Step {
    rss: Option<f64>,
    descriptors: usize,
    started_in: Duration,
}

fn step(agent: &TestAgent, from: usize, total: usize, settle: Duration) -> Result<Step, String> {
    let started_in = grow_to(agent, from, total)?;
    // Let the burst end: the agent's last turns, and its launch threads,
    // which exit after ten seconds without work.
    std::thread::sleep(settle);
    let pid = agent.pid();
    eprintln!(
        "  {total} runs live after {:.1} s: agent {:.1} MiB RSS, {} descriptors",
        started_in.as_secs_f64(),
        rss_bytes(pid).unwrap_or(0.0) / (1024.0 * 1024.0),
        open_descriptors(pid)
    );
    Ok(Step { rss: rss_bytes(pid), descriptors: open_descriptors(pid), started_in })
}

pub fn measure(bench: &Bench) -> Vec<Row> {
    let small = bench.scale(100, 5);
    let large = bench.scale(1000, 10);
    let idle = Duration::from_secs(bench.scale(60, 2) as u64);
    let mut agent = TestAgent::new("");
    agent.start_with(|c| {
        c.env("RUST_LOG", "info");
    });
    agent.wait_for("the agent to start", secs(20), || agent.log_text().contains("agent starting"));
    let socket = agent.state.join("corral.sock");
    let pid = agent.pid();
    let bare = Step {
        rss: rss_bytes(pid),
        descriptors: open_descriptors(pid),
        started_in: Duration::ZERO,
    };

    let mut rows = Vec::new();
    let failed =
        |why: String| vec![Row::new(SECTION, format!("agent with {large} live runs"), Err(why))];
    let settle = Duration::from_secs(bench.scale(12, 1) as u64);
    let at_small = match step(&agent, 0, small, settle) {
        Ok(s) => s,
        Err(why) => return failed(why),
    };
    let (scrape_small, floor_small) = scrape_and_floor(&agent, bench.scale(9, 2));
    let at_large = match step(&agent, small, large, settle) {
        Ok(s) => s,
        Err(why) => return failed(why),
    };

    let mib = |b: Option<f64>| b.map(Figure::mib).ok_or_else(|| "no VmRSS".to_owned());
    rows.push(Row::new(SECTION, format!("agent RSS, {small} live runs"), mib(at_small.rss)));
    rows.push(
        Row::new(SECTION, format!("agent RSS, {large} live runs"), mib(at_large.rss))
            .goal(Goal::AtMost(Figure::new(30.0, "MiB")))
            .when_missed(
                "about 11.5 MiB is the binary's resident code (file pages, in RSS though not \
                 private) and 25 MiB heap, ~23 KiB per live run: the run's operation task \
                 and its channel (~6 KB), the job's spec held inline (~4 KB), the watch tasks \
                 (~3 KB), one path per stats file (~2 KB); one task per run instead of three, \
                 a boxed spec and one directory per stats reader would cut it",
            ),
    );
    let per_run_kib = match (at_small.rss, at_large.rss) {
        (Some(s), Some(l)) => Ok(Figure::new((l - s) / 1024.0 / (large - small) as f64, "KiB")),
        _ => Err("no VmRSS".to_owned()),
    };
    rows.push(Row::new(SECTION, format!("agent RSS per added run, {small}→{large}"), per_run_kib));
    let growth = match (bare.rss, at_small.rss, at_large.rss) {
        (Some(b), Some(s), Some(l)) if s > b => Ok(Figure::new((l - b) / (s - b), "×")),
        _ => Err("no VmRSS growth to compare".to_owned()),
    };
    rows.push(
        Row::new(
            SECTION,
            format!("RSS growth over the idle agent, {large} vs {small} runs"),
            growth,
        )
        .against("linear", Ok(Figure::new((large as f64) / (small as f64), "×"))),
    );
    let per_run_fds =
        (at_large.descriptors as f64 - at_small.descriptors as f64) / (large - small) as f64;
    rows.push(Row::new(
        SECTION,
        format!(
            "agent descriptors per added live run ({} in all at {large} runs)",
            at_large.descriptors
        ),
        Ok(Figure::new(per_run_fds, "")),
    ));
    rows.push(Row::new(
        SECTION,
        format!("time until {large} runs running (one file each)"),
        Ok(Figure::new(at_large.started_in.as_secs_f64(), "s")),
    ));

    // Idle: nothing changes for the whole window.
    let before = cpu_time(pid);
    std::thread::sleep(idle);
    let idle_cpu = match (before, cpu_time(pid)) {
        (Some(a), Some(b)) => Ok(Figure::ms(b.saturating_sub(a))),
        _ => Err("agent's /proc stat unreadable".to_owned()),
    };
    rows.push(
        Row::new(
            SECTION,
            format!("agent CPU while idle over {} s, {large} runs", idle.as_secs()),
            idle_cpu,
        )
        // 0.1% of one CPU: a clock tick or two, no periodic per-run work.
        .goal(Goal::AtMost(Figure::new(idle.as_secs_f64(), "ms")))
        .when_missed("periodic work in the agent while nothing changes (timers, polls)"),
    );

    let (scrape, floor) = scrape_and_floor(&agent, bench.scale(15, 3));
    rows.push(
        Row::new(SECTION, format!("GET /metrics, {large} runs"), scrape)
            .against(
                format!("reading the same runs' {} cgroup files through open descriptors", floor.1),
                Ok(floor.0),
            )
            .goal(Goal::RatioAtMost(2.0))
            .when_missed("encoding the text exposition; see the note"),
    );
    rows.push(Row::new(SECTION, format!("GET /metrics, {small} runs"), scrape_small).against(
        format!("reading the same runs' {} cgroup files", floor_small.1),
        Ok(floor_small.0),
    ));

    let ps_listed = ps_lines(&bench.corral, &socket);
    let ps: Result<Vec<Duration>, String> =
        (0..bench.scale(7, 2)).map(|_| timed_ps(&bench.corral, &socket)).collect();
    let ps = ps.and_then(|samples| {
        // A header and one line per run.
        if ps_listed < large + 1 {
            Err(format!("corral ps listed {} lines for {large} runs", ps_listed))
        } else {
            Ok(Figure::ms(median(samples)))
        }
    });
    rows.push(
        Row::new(SECTION, format!("corral ps, {large} runs (whole command)"), ps)
            .goal(Goal::AtMost(Figure::new(100.0, "ms")))
            .when_missed("building and sending the run list; see the note"),
    );

    // Stop them all: remove every job file.
    let stopping = Instant::now();
    for i in 0..large {
        agent.remove_job(&format!("s{i:04}.yaml"));
    }
    let deadline = secs(120);
    let mut stop = Ok(());
    while count_where(&agent, LIVE) > 0 || !agent.job_cgroups().is_empty() {
        if stopping.elapsed() > deadline {
            stop = Err(format!(
                "{} runs live and {} cgroups left after {deadline:?}",
                count_where(&agent, LIVE),
                agent.job_cgroups().len()
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped_in = stopping.elapsed();
    let killed = count_where(&agent, "phase = 'killed'");
    let stop = stop.and_then(|()| {
        if killed == large {
            Ok(Figure::new(stopped_in.as_secs_f64(), "s"))
        } else {
            Err(format!("{killed} of {large} runs ended killed"))
        }
    });
    rows.push(Row::new(
        SECTION,
        format!("stop all {large} runs (job files removed) until no cgroup is left"),
        stop,
    ));
    agent.stop();
    rows
}
