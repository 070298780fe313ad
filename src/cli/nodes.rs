//! `corral nodes`: the cluster's nodes as they publish themselves.

use std::process::ExitCode;

use super::client::{age, table};
use super::cluster::{cluster_config, read_view, ClusterArgs};
use crate::cluster::view::{self, labels_text, share};
use crate::vocab::Timestamp;

/// List the nodes in the cluster: labels, cgroup mode, CPUs and memory
/// allocated of allocatable (after each node's reservations), runs held and
/// waiting, version, and how long ago the node last updated its record; then
/// which node is the cluster scheduler. A node whose lease expired is gone
/// from the list.
#[derive(Debug, clap::Args)]
pub struct NodesArgs {
    /// Each NUMA node's CPUs and memory too.
    #[arg(short, long)]
    pub verbose: bool,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn run(args: NodesArgs) -> anyhow::Result<ExitCode> {
    let cluster = cluster_config(&args.cluster.config)?;
    let view = read_view(&cluster)?;
    let rows = view::node_rows(&view);
    if args.json {
        #[derive(serde::Serialize)]
        struct Nodes<'a> {
            nodes: &'a [view::NodeRow],
            scheduler: Option<&'a crate::cluster::records::LeaderRecord>,
            bad: Vec<String>,
        }
        let bad = view.bad.iter().map(ToString::to_string).collect();
        let nodes = Nodes { nodes: &rows, scheduler: view.leader.as_ref(), bad };
        println!("{}", serde_json::to_string_pretty(&nodes)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now = Timestamp::now();
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                labels_text(&n.labels),
                n.cgroup_mode.clone(),
                share(n.cpus_allocated.into(), n.cpus_allocatable.into(), false),
                share(n.memory_allocated, n.memory_allocatable, true),
                format!("{} ({} pending)", n.runs, n.pending),
                n.version.clone(),
                age(now.since(n.updated_at).as_secs()),
            ]
        })
        .collect();
    table(&["NAME", "LABELS", "CGROUPS", "CPUS", "MEMORY", "RUNS", "VERSION", "AGE"], &lines);
    if args.verbose {
        for n in &rows {
            for numa in &n.numa {
                println!(
                    "{} NUMA node {}: CPUs {}, memory {}",
                    n.name,
                    numa.node,
                    share(numa.cpus_allocated.into(), numa.cpus_allocatable.into(), false),
                    share(numa.memory_allocated, numa.memory_allocatable, true)
                );
            }
        }
    }
    match &view.leader {
        Some(leader) => println!("scheduler: {} (since {})", leader.node, leader.since),
        None => println!("scheduler: none elected"),
    }
    let nodes = crate::cluster::Keys::new(&cluster.prefix).nodes();
    for bad in view.bad.iter().filter(|b| b.key.starts_with(&nodes)) {
        eprintln!("corral: {bad}");
    }
    Ok(ExitCode::SUCCESS)
}
