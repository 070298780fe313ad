//! Section "throughput" of the node benchmark: a burst of one-shot
//! `/bin/true` jobs dropped into a real agent's jobs directory at once, timed
//! until the store records every run as ended, beside a shell loop of
//! `crun run` of the same bundle and Slurm on this node.
//!
//! Each job runs in corral's default container (pid, mount, uts, ipc and net
//! namespaces) on the busybox root filesystem `bench.rootfs`, which is the
//! bundle the crun peer runs: the same `/bin/true`, the same kind of root.
//!
//! The agent runs at `RUST_LOG=info`, as it would on a node: the test
//! harness's default (debug) logs several lines per run and costs time of its
//! own.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::agent_harness::TestAgent;
use crate::peers::{self, Throughput};
use crate::table::{Figure, Goal, Row};
use crate::Bench;

const SECTION: &str = "throughput";

/// What one burst cost.
struct Burst {
    jobs: usize,
    /// From the first file renamed in to the last run recorded as ended.
    elapsed: Duration,
    /// CPU time of the agent process itself: all its threads, the blocking
    /// threads that create cgroups and start shims included; not the
    /// shims' own time.
    agent_cpu: Duration,
    /// CPU time per run inside its cgroup (the container's init and
    /// `/bin/true`), as the store recorded it at each run's end.
    run_cpu: Duration,
    /// Store commits the agent made meanwhile; `None` from an agent that
    /// does not count them.
    commits: Option<u64>,
}

impl Burst {
    fn throughput(&self) -> Throughput {
        Throughput { jobs: self.jobs, elapsed: self.elapsed }
    }
}

pub fn measure(bench: &Bench) -> Vec<Row> {
    let jobs = bench.scale(1000, 20);
    let shared = burst(bench, jobs, "");
    let crun = peers::crun::loop_throughput(bench, jobs);
    let slurm = peers::slurm::throughput(bench, jobs);
    let rate = |t: &Throughput| Figure::new(t.jobs_per_sec(), "jobs/s");
    let what = format!("{jobs} /bin/true jobs dropped at once → all ended");
    let why = "CPU per job: the agent's own (all threads: cgroups made, knobs written and \
               removed, the shim spawned, store commits) plus the container's init and job \
               in their cgroup, shown below; on 2 CPUs their sum bounds the rate, before the \
               kernel's deferred work (network namespace teardown, cgroup destruction) that \
               no process is charged for. Before the small shim, a profile of the burst put \
               34% of all CPU in the shim's start and 27% in init joining its cgroups; what \
               is left is mostly kernel work per run: fewer v1 hierarchies per run and, on a \
               pure v2 host, starting init straight in its cgroup (CLONE_INTO_CGROUP) would \
               cut it";
    let mut rows = vec![
        Row::new(SECTION, format!("{what}: jobs/s"), Ok(rate(&shared.throughput())))
            .against("crun run, shell loop", crun.as_ref().map(rate).map_err(Clone::clone))
            .goal(Goal::AtLeast(Figure::new(200.0, "jobs/s")))
            .when_missed(why),
        Row::new(SECTION, format!("{what}: jobs/s (vs Slurm)"), Ok(rate(&shared.throughput())))
            .against("Slurm sbatch", slurm.as_ref().map(rate).map_err(Clone::clone))
            .goal(Goal::AtLeast(Figure::new(200.0, "jobs/s")))
            .when_missed(why),
        Row::new(
            SECTION,
            "agent CPU per job (all its threads, cgroup creation and shim start included)",
            Ok(Figure::new(shared.agent_cpu.as_secs_f64() * 1e3 / jobs as f64, "ms")),
        ),
        Row::new(
            SECTION,
            "CPU per job in its cgroup (container init + /bin/true)",
            Ok(Figure::new(shared.run_cpu.as_secs_f64() * 1e3, "ms")),
        ),
        Row::new(
            SECTION,
            "store commits per run",
            shared
                .commits
                .map(|c| Figure::new(c as f64 / jobs as f64, ""))
                .ok_or_else(|| "the agent has no corral_store_commits_total".to_owned()),
        ),
    ];
    // One exclusive CPU each: with two CPUs, one kept for the shared pool,
    // the runs take turns on the other, so a smaller burst says as much.
    let exclusive_jobs = bench.scale(200, 5);
    let exclusive = burst(bench, exclusive_jobs, "resources: {cpus: 1}\n");
    rows.push(Row::new(
        SECTION,
        format!("{exclusive_jobs} /bin/true jobs, one exclusive CPU each → all ended: jobs/s"),
        Ok(rate(&exclusive.throughput())),
    ));
    rows
}

/// Drops `jobs` one-shot `/bin/true` job files (each with `extra` YAML
/// lines) into a fresh agent's jobs directory at once and waits until every
/// run is recorded as ended.
fn burst(bench: &Bench, jobs: usize, extra: &str) -> Burst {
    let mut agent = TestAgent::new("");
    agent.start_with(|c| {
        c.env("RUST_LOG", "info");
    });
    agent.wait_for("the agent to be ready", Duration::from_secs(30), || {
        std::net::TcpStream::connect(agent.listen).is_ok()
            && agent.http_get("/readyz", None).0 == 200
    });
    // Staged beside the jobs directory (same filesystem) and renamed in, so
    // the watcher only ever sees whole files.
    let staging = agent.root.path().join("staging");
    fs::create_dir(&staging).unwrap();
    let rootfs = bench.rootfs.display();
    for i in 0..jobs {
        let name = format!("t{i:04}");
        let text =
            format!("name: {name}\ncommand: [/bin/true]\nisolation: {{rootfs: {rootfs}}}\n{extra}");
        let file = staging.join(format!("{name}.yaml"));
        fs::write(&file, text).unwrap();
        fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    }
    let pid = agent.pid();
    let commits_before = store_commits(&agent);
    let cpu_before = cpu_times(pid);
    let started = Instant::now();
    for i in 0..jobs {
        let file = format!("t{i:04}.yaml");
        fs::rename(staging.join(&file), agent.jobs.join(&file)).unwrap();
    }
    let db = wait_for_store(&agent);
    let ended = || -> usize {
        db.query_row(
            "SELECT COUNT(*) FROM runs WHERE phase IN ('succeeded', 'failed', 'killed')",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_or(0, |n| n as usize)
    };
    let timeout = Duration::from_secs(60 + jobs as u64);
    agent.wait_for(&format!("all {jobs} runs to end"), timeout, || ended() >= jobs);
    let elapsed = started.elapsed();
    let cpu_after = cpu_times(pid);
    let (succeeded, run_cpu): (i64, Option<f64>) = db
        .query_row(
            "SELECT COUNT(*), AVG(cpu_seconds) FROM runs WHERE phase = 'succeeded'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(succeeded as usize, jobs, "every /bin/true run succeeds\n{}", agent.log_text());
    // Left tidy for the sections after this one.
    agent.wait_for("job cgroups removed", Duration::from_secs(60), || {
        agent.job_cgroups().is_empty()
    });
    // Read once the agent is quiet: the counter is published after a turn.
    let commits = store_commits(&agent).zip(commits_before).map(|(after, before)| after - before);
    Burst {
        jobs,
        elapsed,
        agent_cpu: cpu_after.saturating_sub(cpu_before),
        run_cpu: Duration::from_secs_f64(run_cpu.unwrap_or(0.0)),
        commits,
    }
}

/// A read-only connection to the agent's store, kept for the whole wait (a
/// new connection per poll would cost more than the query).
fn wait_for_store(agent: &TestAgent) -> rusqlite::Connection {
    let mut db = None;
    agent.wait_for("the store", Duration::from_secs(10), || {
        db = agent.db();
        db.is_some()
    });
    db.unwrap()
}

/// `corral_store_commits_total` from the agent's metrics endpoint.
fn store_commits(agent: &TestAgent) -> Option<u64> {
    let (status, _, body) = agent.http_get("/metrics", None);
    assert_eq!(status, 200, "/metrics: {body}");
    body.lines()
        .find_map(|l| l.strip_prefix("corral_store_commits_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// The CPU time (user + system, all threads) of process `pid`, from
/// `/proc/PID/stat`.
fn cpu_times(pid: u32) -> Duration {
    let stat = fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).unwrap();
    // The command name (field 2) may hold spaces: count fields after its ')'.
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 of proc(5): utime and stime; the first field after
    // ')' is field 3.
    let ticks = |i: usize| fields[i - 3];
    clock_tick() * (ticks(14) + ticks(15)) as u32
}

/// The length of one clock tick, the unit of `/proc/PID/stat` times.
fn clock_tick() -> Duration {
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Duration::from_secs(1) / u32::try_from(hz).ok().filter(|h| *h > 0).unwrap_or(100)
}
