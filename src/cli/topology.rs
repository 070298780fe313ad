//! `corral topology`: what the agent sees of the machine.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::topology::{self, Topology};

#[derive(Debug, clap::Args)]
pub struct TopologyArgs {
    /// sysfs root to read the CPU and NUMA topology from.
    #[arg(long, value_name = "DIR", default_value = topology::DEFAULT_SYSFS)]
    pub sysfs: PathBuf,
    /// procfs root; `self/status` gives the CPUs and memory nodes the agent may use.
    #[arg(long, value_name = "DIR", default_value = topology::DEFAULT_PROCFS)]
    pub procfs: PathBuf,
    /// Print JSON for scripts instead of the summary.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: TopologyArgs) -> anyhow::Result<ExitCode> {
    let topo = topology::discover(&args.sysfs, &args.procfs).with_context(|| {
        format!(
            "cannot read the topology from {} and {}",
            args.sysfs.display(),
            args.procfs.display()
        )
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&topo)?);
    } else {
        print!("{}", render(&topo));
    }
    Ok(ExitCode::SUCCESS)
}

/// The human-readable summary.
pub fn render(topo: &Topology) -> String {
    let mut out = String::new();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let _ = writeln!(
        out,
        "{} online in {}, {}, {} per core, {}, {} memory",
        plural(topo.cpus().len(), "CPU"),
        plural(topo.packages().len(), "package"),
        plural(topo.cores().len(), "core"),
        plural(topo.threads_per_core(), "thread"),
        plural(topo.nodes().len(), "NUMA node"),
        topo.memory_total().human(),
    );
    let offline = topo.offline_cpus();
    let _ = writeln!(
        out,
        "offline CPUs: {}",
        if offline.is_empty() { "none".to_owned() } else { offline.to_string() }
    );
    let _ = writeln!(
        out,
        "agent may use CPUs {}, memory nodes {}",
        topo.allowed_cpus().intersection(&topo.online_cpus()),
        topo.allowed_mems()
    );

    for (id, node) in topo.nodes() {
        out.push('\n');
        if node.cpus.is_empty() {
            let _ = writeln!(out, "{id}: no CPUs");
        } else {
            let cores: Vec<_> = topo.cores().iter().filter(|c| c.node == *id).collect();
            let packages: BTreeSet<u32> = cores.iter().map(|c| c.package.0).collect();
            let packages: Vec<String> = packages.iter().map(u32::to_string).collect();
            let _ = writeln!(
                out,
                "{id}: CPUs {}, {}, package {}",
                node.cpus,
                plural(cores.len(), "core"),
                packages.join(",")
            );
            let cores: Vec<String> = cores.iter().map(|c| c.cpus.to_string()).collect();
            let _ = writeln!(out, "  cores {}", cores.join(" "));
        }
        if node.memory_total.get() == 0 {
            let _ = writeln!(out, "  no memory");
        } else {
            let _ = writeln!(
                out,
                "  memory {} total, {} free",
                node.memory_total.human(),
                node.memory_free.human()
            );
        }
    }

    out.push_str("\ndistances");
    for id in topo.nodes().keys() {
        let _ = write!(out, " {:>6}", id.to_string());
    }
    out.push('\n');
    for (id, node) in topo.nodes() {
        let _ = write!(out, "{:<9}", id.to_string());
        for distance in node.distances.values() {
            let _ = write!(out, " {distance:>6}");
        }
        out.push('\n');
    }
    out
}
