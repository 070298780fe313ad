//! `corral ps`: the runs the agent has under way.

use std::process::ExitCode;

use super::client::{age, bytes, table, SocketArgs};
use crate::api::{Request, Response};

/// List the runs not yet over: job, run, state, priority, CPUs, NUMA
/// nodes, CPU %, memory limit, age and the job's next firing.
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
                bytes(r.memory_limit_bytes),
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

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_owned()
    }
}
