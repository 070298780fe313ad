//! `corral ps`: the runs the agent has under way.

use std::process::ExitCode;

use super::client::{age, table, SocketArgs};
use crate::api::protocol::RunRow;
use crate::api::{Request, Response};
use crate::vocab::Bytes;

/// List the runs not yet over: job, run, state, priority, CPUs, NUMA
/// nodes, CPU %, memory in use and its limit, age and the job's next firing.
/// An array's runs are one line, with how many are in each state, unless
/// `--expand` or the array's name asks for each.
#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// Only the runs of this job or array, each on its own line.
    pub job: Option<String>,
    /// Each run of an array on its own line, with its index.
    #[arg(long)]
    pub expand: bool,
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Print JSON for scripts: every run, arrays expanded.
    #[arg(long)]
    pub json: bool,
    /// Every cluster run instead, from etcd (the `cluster:` section of
    /// --config): its state, the node it is bound to and that node's run.
    #[arg(long)]
    pub cluster: bool,
}

pub fn run(args: PsArgs) -> anyhow::Result<ExitCode> {
    if args.cluster {
        return super::cluster::ps(&args.socket.config, args.job.as_deref(), args.json);
    }
    let Response::Ps { mut runs } = args.socket.ask(&Request::Ps)? else {
        anyhow::bail!("the agent answered something else than a run list");
    };
    if let Some(job) = &args.job {
        runs.retain(|r| &r.job == job);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    let expand = args.expand || args.job.is_some();
    let rows: Vec<Vec<String>> = lines(&runs, expand)
        .into_iter()
        .map(|line| match line {
            Line::Run(r) => run_row(r),
            Line::Array { name, runs } => array_row(name, &runs),
        })
        .collect();
    table(
        &["JOB", "RUN", "STATE", "PRIORITY", "CPUS", "NUMA", "CPU%", "MEMORY", "AGE", "NEXT"],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

/// One line of the table: a run, or an array's runs together.
#[derive(Debug, PartialEq)]
enum Line<'a> {
    Run(&'a RunRow),
    Array { name: &'a str, runs: Vec<&'a RunRow> },
}

/// The table's lines: each array at the place of its first run, unless
/// `expand`.
fn lines(runs: &[RunRow], expand: bool) -> Vec<Line<'_>> {
    let mut lines: Vec<Line<'_>> = Vec::new();
    for run in runs {
        match run.array.as_deref() {
            Some(name) if !expand => {
                let found = lines.iter_mut().find_map(|l| match l {
                    Line::Array { name: n, runs } if *n == name => Some(runs),
                    _ => None,
                });
                match found {
                    Some(members) => members.push(run),
                    None => lines.push(Line::Array { name, runs: vec![run] }),
                }
            }
            _ => lines.push(Line::Run(run)),
        }
    }
    lines
}

/// An array's line: how many of its runs under way are in each state
/// (`2 running, 6 pending (array limit 2)`), the oldest one's age.
fn array_row(name: &str, runs: &[&RunRow]) -> Vec<String> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for r in runs {
        let state = state_of(r);
        match counts.iter_mut().find(|(s, _)| *s == state) {
            Some((_, n)) => *n += 1,
            None => counts.push((state, 1)),
        }
    }
    let state = counts.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", ");
    let priority = runs.first().and_then(|r| r.priority).map_or("-".into(), |p| p.to_string());
    let oldest = runs.iter().map(|r| r.age_seconds).max().unwrap_or(0);
    let noun = if runs.len() == 1 { "run" } else { "runs" };
    vec![
        name.to_owned(),
        format!("array: {} {noun}", runs.len()),
        state,
        priority,
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
        age(oldest),
        "-".into(),
    ]
}

/// The state column: the phase, and why a pending run waits when the
/// agent says (`pending (array limit 2)`).
fn state_of(r: &RunRow) -> String {
    match &r.waiting_for {
        Some(why) => format!("{} ({why})", r.state),
        None => r.state.clone(),
    }
}

fn run_row(r: &RunRow) -> Vec<String> {
    let run = match r.array_index {
        Some(index) => format!("{} [{index}]", r.run),
        None => r.run.clone(),
    };
    // A cluster run's own id beside the node's.
    let run = match &r.cluster_run {
        Some(c) => format!("{run} ({})", c.run),
        None => run,
    };
    {
        {
            vec![
                r.job.clone(),
                run,
                state_of(r),
                r.priority.map_or("-".into(), |p| p.to_string()),
                or_dash(&r.cpus),
                or_dash(&r.numa),
                r.cpu_percent.map_or("-".into(), |p| format!("{p:.1}")),
                memory(r.memory_bytes, r.memory_limit_bytes),
                age(r.age_seconds),
                r.next_fire_in_seconds.map_or("-".into(), |s| format!("in {}", age(s))),
            ]
        }
    }
}

/// Memory in use against the hard limit: `812.5 MiB / 2 GiB`.
fn memory(used: Option<u64>, limit: Option<u64>) -> String {
    match (used, limit) {
        (None, None) => "-".into(),
        (used, limit) => {
            let show = |b: Option<u64>| b.map_or("-".into(), |b| Bytes(b).human().to_string());
            format!("{} / {}", show(used), show(limit))
        }
    }
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(job: &str, run: &str, state: &str, array: Option<u32>, waiting: bool) -> RunRow {
        RunRow {
            job: job.into(),
            run: run.into(),
            state: state.into(),
            priority: Some(50),
            cpus: String::new(),
            numa: String::new(),
            memory_limit_bytes: None,
            memory_bytes: None,
            cpu_percent: None,
            next_fire: None,
            next_fire_in_seconds: None,
            age_seconds: 3,
            created_at: 0,
            array: array.map(|_| job.to_owned()),
            array_index: array,
            waiting_for: waiting.then(|| "array limit 2".into()),
            cluster_run: None,
        }
    }

    #[test]
    fn an_array_is_one_line_with_counts_by_state_unless_expanded() {
        let runs = vec![
            row("a", "a-1", "running", None, false),
            row("s", "s-1", "running", Some(0), false),
            row("b", "b-4", "pending", None, false),
            row("s", "s-2", "running", Some(1), false),
            row("s", "s-3", "pending", Some(2), true),
            row("s", "s-4", "pending", Some(3), true),
        ];
        let grouped = lines(&runs, false);
        assert_eq!(grouped.len(), 3);
        let Line::Array { name, runs: members } = &grouped[1] else { panic!("{grouped:?}") };
        assert_eq!(*name, "s");
        let line = array_row(name, members);
        assert_eq!(line[1], "array: 4 runs");
        assert_eq!(line[2], "2 running, 2 pending (array limit 2)");
        let expanded = lines(&runs, true);
        assert_eq!(expanded.len(), 6);
        let Line::Run(r) = expanded[4] else { panic!() };
        assert_eq!(run_row(r)[1..3], ["s-3 [2]", "pending (array limit 2)"]);
    }

    #[test]
    fn memory_shows_use_against_the_limit() {
        assert_eq!(memory(Some(852_000_000), Some(2 << 30)), "812.5 MiB / 2 GiB");
        assert_eq!(memory(Some(4096), None), "4 KiB / -");
        assert_eq!(memory(None, Some(64 << 20)), "- / 64 MiB");
        assert_eq!(memory(None, None), "-");
    }
}
