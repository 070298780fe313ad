//! Section "footprint" of the node benchmark: what corral keeps in memory
//! for every run (its shim and the container's init), at 100 and 1,000
//! sleeping runs of a real agent, beside conmon's per-container cost for the
//! same jobs; and, at full scale, the sizes of the release binaries.
//!
//! The figure is proportional set size (PSS): a page shared by k processes
//! counts 1/k in each, so the sum over all shims and inits is what they
//! hold together, and its share of the binary's code shrinks as runs grow.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::agent_harness::TestAgent;
use crate::peers;
use crate::table::{Figure, Goal, Row};
use crate::Bench;

const GOAL_MIB: f64 = 0.4;

pub fn measure(bench: &Bench) -> Vec<Row> {
    let mut rows = Vec::new();
    for (full, smoke) in [(100, 3), (1000, 5)] {
        let runs = bench.scale(full, smoke);
        let label = if full == 1000 { "1,000" } else { "100" };
        rows.push(
            Row::new(
                "footprint",
                format!("per-run PSS (shim + init), {label} runs"),
                per_run_pss(runs),
            )
            .against("conmon", peers::conmon::footprint(bench, runs))
            .goal(Goal::AtMost(Figure::new(GOAL_MIB, "MiB")))
            .when_missed(
                "each of the two processes keeps ~125 KiB of private pages: heap (~35 KiB \
                 after malloc_trim), stack, anonymous maps and the dynamic loader's and \
                 libc's written data (~30 KiB); a shim that is also the job's init where \
                 there is no pid namespace would drop one of the two, and a static shim \
                 the loader's and libc's relocations",
            ),
        );
    }
    if bench.full {
        rows.extend(binary_sizes(bench));
    }
    rows
}

/// Starts `runs` sleeping one-shot jobs on the shared pool of a real agent,
/// waits until every one has its shim, init and job, and returns the summed
/// PSS of the shims and inits divided by `runs`.
fn per_run_pss(runs: usize) -> Result<Figure, String> {
    // Each run costs the agent descriptors (and the runs' shims inherit the
    // agent's starting limit); a thousand runs need more than the usual
    // default. Raised here so the agent, a child, starts with it.
    raise_nofile(65536);
    let mut agent = TestAgent::new("");
    agent.start_with(|command| {
        command.env("RUST_LOG", "info");
    });
    for i in 0..runs {
        agent.write_job(
            &format!("sleep-{i}.yaml"),
            &format!("name: sleep-{i}\ncommand: [/bin/sleep, \"3600\"]\n"),
        );
    }
    let agent_pid = agent.pid() as i32;
    let deadline = Instant::now() + Duration::from_secs(60 + runs as u64 / 2);
    let supervisors = loop {
        let found = supervisors_of(agent_pid);
        if found.iter().filter(|s| s.job_started).count() >= runs {
            break found;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {runs} runs started within the deadline; agent log: {}",
                found.iter().filter(|s| s.job_started).count(),
                agent.log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Let setup's last writes settle: the figure is what a run keeps.
    std::thread::sleep(Duration::from_secs(2));
    let mut total_kib = 0u64;
    for s in &supervisors {
        total_kib += pss_kib(s.shim).map_err(|e| format!("shim {}: {e}", s.shim))?;
        total_kib += pss_kib(s.init).map_err(|e| format!("init {}: {e}", s.init))?;
    }
    let _ = agent.stop();
    end_runs(&supervisors);
    Ok(Figure::mib(total_kib as f64 * 1024.0 / runs as f64))
}

/// A run's corral processes: the shim (a child of the agent) and the
/// container's init (the shim's child), and whether the job (init's child)
/// exists yet.
struct Supervisor {
    shim: i32,
    init: i32,
    job_started: bool,
}

/// The parent of every process, from /proc.
fn parents() -> HashMap<i32, Vec<i32>> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return children };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // The command name in parentheses may hold spaces; the fields after
        // its closing parenthesis are state, then the parent pid.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    children
}

fn supervisors_of(agent: i32) -> Vec<Supervisor> {
    let children = parents();
    let none = Vec::new();
    children
        .get(&agent)
        .unwrap_or(&none)
        .iter()
        .filter_map(|&shim| {
            let &init = children.get(&shim)?.first()?;
            let job_started = children.get(&init).is_some_and(|jobs| !jobs.is_empty());
            Some(Supervisor { shim, init, job_started })
        })
        .collect()
}

/// Kills every run's init (which ends its container) and waits until each
/// shim has recorded the end and exited: the run directories are removed
/// with the harness, and a shim must not be left writing into a directory
/// that is gone.
fn end_runs(supervisors: &[Supervisor]) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for s in supervisors {
        let _ = kill(Pid::from_raw(s.init), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while supervisors.iter().any(|s| Path::new(&format!("/proc/{}", s.shim)).exists())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pss_kib(pid: i32) -> Result<u64, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .map_err(|e| format!("reading smaps_rollup: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no Pss line in smaps_rollup".to_owned())
}

fn raise_nofile(at_least: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < at_least || hard < at_least {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, soft.max(at_least), hard.max(at_least));
        }
    }
}

/// The sizes of the release `corral` and `corral-shim` beside the binary
/// under test, and of their debug info when it is in a file of its own.
fn binary_sizes(bench: &Bench) -> Vec<Row> {
    let dir = bench.corral.parent().unwrap_or(Path::new("."));
    ["corral", "corral-shim"]
        .into_iter()
        .map(|name| {
            let path = dir.join(name);
            let size = std::fs::metadata(&path)
                .map(|m| Figure::mib(m.len() as f64))
                .map_err(|e| format!("cannot stat {}: {e}", path.display()));
            Row::new(
                "footprint",
                format!("release binary {name} (as built, with line tables)"),
                size,
            )
        })
        .collect()
}
