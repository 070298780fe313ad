//! `corral show`: one run, or a job's latest runs, in detail.

use std::process::ExitCode;

use super::client::{bytes, SocketArgs};
use crate::api::protocol::ShownRun;
use crate::api::{Request, Response};

/// Show a run (by id) or the latest runs of a job (by name): state,
/// placement, exit, transitions, OOM and preemption events.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// A run id (`JOB-N`) or a job name.
    pub target: String,
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
    /// Look the run or job up in the cluster (the `cluster:` section of
    /// --config), not on this node. Without it, a target this node's agent
    /// does not know is looked up in the cluster when one is configured.
    #[arg(long)]
    pub cluster: bool,
}

pub fn run(args: ShowArgs) -> anyhow::Result<ExitCode> {
    if args.cluster {
        let cluster = super::cluster::cluster_config(&args.socket.config)?;
        return super::cluster::show(&cluster, &args.target, args.json)?.ok_or_else(|| {
            anyhow::anyhow!("the cluster has no run or job named {:?}", args.target)
        });
    }
    let answer = match args.socket.ask(&Request::Show { target: args.target.clone() }) {
        Ok(answer) => answer,
        Err(local) => {
            // Not this node's (or no agent here): perhaps a cluster run.
            if let Some(cluster) = super::cluster::configured(&args.socket.config)? {
                match super::cluster::show(&cluster, &args.target, args.json) {
                    Ok(Some(code)) => return Ok(code),
                    Ok(None) => eprintln!(
                        "corral: the cluster has no run or job named {:?} either",
                        args.target
                    ),
                    Err(e) => eprintln!("corral: the cluster could not be asked either: {e:#}"),
                }
            }
            return Err(local);
        }
    };
    let Response::Show { runs } = answer else {
        anyhow::bail!("the agent answered something else than run details");
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    for (i, run) in runs.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print_run(run);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_run(run: &ShownRun) {
    let r = &run.row;
    println!("run:       {} (job {}, attempt {})", r.run, r.job, run.attempt);
    println!("state:     {}", r.state);
    if let Some(c) = &r.cluster_run {
        println!("cluster:   run {} (attempt {})", c.run, c.attempt);
    }
    if let Some(p) = r.priority {
        println!("priority:  {p}");
    }
    if !r.cpus.is_empty() {
        println!("cpus:      {} (NUMA node {})", r.cpus, r.numa);
    }
    println!("memory:    {}", bytes(r.memory_limit_bytes));
    if let Some(pid) = run.pid {
        println!("pid:       {pid}");
    }
    if let Some(uid) = run.dynamic_uid {
        println!("uid:       {uid} (dynamic, gid {uid})");
    }
    if let Some(dir) = &run.run_dir {
        println!("run dir:   {dir}");
        if let Some(line) = dropped_output(std::path::Path::new(dir)) {
            println!("logs:      {line}");
        }
    }
    if let Some(exit) = &run.exit {
        println!(
            "exit:      {} at {} (peak memory {}, OOM kills {}, CPU {:.2}s)",
            exit.status,
            exit.at,
            bytes(exit.peak_memory_bytes),
            exit.oom_kills,
            exit.cpu_seconds
        );
    }
    println!("transitions:");
    for t in &run.transitions {
        let from = t.from.as_deref().unwrap_or("(new)");
        println!("  {}  {from} -> {}: {}", t.at, t.to, t.reason);
    }
    if !run.events.is_empty() {
        println!("events:");
        for e in &run.events {
            println!("  {}  {}: {}", e.at, e.kind, e.detail);
        }
    }
}

/// What the run's logs dropped, from the `status.json` its shim wrote in
/// the run directory (read here, as `corral logs` reads the logs); `None`
/// while it runs or when nothing was dropped.
fn dropped_output(run_dir: &std::path::Path) -> Option<String> {
    let status = crate::container::read_status(run_dir).ok().flatten()?;
    let streams: Vec<String> = [("stdout", status.stdout), ("stderr", status.stderr)]
        .into_iter()
        .filter(|(_, stats)| stats.dropped_bytes > 0)
        .map(|(name, stats)| dropped_text(name, stats))
        .collect();
    (!streams.is_empty()).then(|| streams.join("; "))
}

fn dropped_text(stream: &str, stats: crate::container::LogStats) -> String {
    format!(
        "{stream}: {} bytes ({} lines) dropped between head and tail, {} kept ({} of them the tail)",
        stats.dropped_bytes, stats.dropped_lines, stats.kept_bytes, stats.tail_bytes
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::LogStats;

    #[test]
    fn dropped_output_names_the_stream_and_its_counts() {
        let stats = LogStats {
            kept_bytes: 3072,
            dropped_bytes: 45854,
            tail_bytes: 2048,
            dropped_lines: 4672,
        };
        assert_eq!(
            dropped_text("stdout", stats),
            "stdout: 45854 bytes (4672 lines) dropped between head and tail, 3072 kept \
             (2048 of them the tail)"
        );
    }
}
