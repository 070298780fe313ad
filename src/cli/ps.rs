//! `corral ps`: the runs the agent has under way.

use std::process::ExitCode;

use super::client::{age, table, SocketArgs};
use crate::api::{Request, Response};
use crate::vocab::Bytes;

/// List the runs not yet over: job, run, state, priority, CPUs, NUMA
/// nodes, CPU %, memory in use and its limit, age and the job's next firing.
#[derive(Debug, clap::Args)]
pub struct PsArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PsArgs) -> anyhow::Result<ExitCode> {
    let Response::Ps { runs } = args.socket.ask(&Request::Ps)? else {
        anyhow::bail!("the agent answered something else than a run list");
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.job.clone(),
                r.run.clone(),
                r.state.clone(),
                r.priority.map_or("-".into(), |p| p.to_string()),
                or_dash(&r.cpus),
                or_dash(&r.numa),
                r.cpu_percent.map_or("-".into(), |p| format!("{p:.1}")),
                memory(r.memory_bytes, r.memory_limit_bytes),
                age(r.age_seconds),
                r.next_fire_in_seconds.map_or("-".into(), |s| format!("in {}", age(s))),
            ]
        })
        .collect();
    table(
        &["JOB", "RUN", "STATE", "PRIORITY", "CPUS", "NUMA", "CPU%", "MEMORY", "AGE", "NEXT"],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
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

    #[test]
    fn memory_shows_use_against_the_limit() {
        assert_eq!(memory(Some(852_000_000), Some(2 << 30)), "812.5 MiB / 2 GiB");
        assert_eq!(memory(Some(4096), None), "4 KiB / -");
        assert_eq!(memory(None, Some(64 << 20)), "- / 64 MiB");
        assert_eq!(memory(None, None), "-");
    }
}
