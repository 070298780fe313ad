//! `corral run` on the guest: whole jobs from job files, placed against the
//! live topology, in their containers, reporting from inside where the
//! kernel put them.

use std::collections::BTreeSet;

use corral::topology::{CpuSet, NodeId, NodeSet};

use super::numa::live_topology;
use super::Context;

/// Where job files and run directories go.
const STATE_DIR: &str = "/run/corral";

/// The output and exit code of `corral run` on a job file with `body`.
fn corral_run(name: &str, body: &str) -> (String, Option<i32>) {
    let dir = std::path::Path::new(STATE_DIR).join("jobs");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, format!("name: {name}\n{body}")).unwrap();
    super::util::corral_run_file(&file, None, STATE_DIR)
}

fn hog_command(mib: u64) -> String {
    format!("command: [/corral-vm/vm_guest, hog, --mib, \"{mib}\", --report]\n")
}

/// What the hog reported about itself from inside its container.
struct Report {
    cpus: CpuSet,
    mems: NodeSet,
    /// Anonymous pages per node.
    pages: Vec<(u32, u64)>,
}

fn report(output: &str) -> Report {
    let field = |key: &str| {
        output
            .lines()
            .find_map(|l| l.strip_prefix("hog: ").and_then(|l| l.strip_prefix(key)))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("the job did not report {key}"))
    };
    let pages = field("anon pages")
        .split_whitespace()
        .filter_map(|p| {
            let (node, count) = p.strip_prefix('N')?.split_once('=')?;
            Some((node.parse().ok()?, count.parse().ok()?))
        })
        .collect();
    Report {
        cpus: CpuSet::parse(&field("Cpus_allowed_list:")).unwrap(),
        mems: NodeSet::parse(&field("Mems_allowed_list:")).unwrap(),
        pages,
    }
}

/// The nodes the CPUs of `r` sit on; checks its memory is on its nodes.
fn check_report(r: &Report, mib: u64) -> BTreeSet<NodeId> {
    let topo = live_topology();
    let nodes: BTreeSet<NodeId> = r.cpus.iter().map(|c| topo.cpu(c).unwrap().node).collect();
    assert_eq!(r.mems, nodes.iter().copied().collect::<NodeSet>(), "memory nodes = CPU nodes");
    let inside: u64 =
        r.pages.iter().filter(|(n, _)| r.mems.contains(NodeId(*n))).map(|(_, c)| c).sum();
    let outside: Vec<_> = r.pages.iter().filter(|(n, _)| !r.mems.contains(NodeId(*n))).collect();
    assert!(inside >= mib * 256, "only {inside} anonymous pages on {}", r.mems);
    assert!(outside.is_empty(), "anonymous pages outside {}: {outside:?}", r.mems);
    nodes
}

pub fn corral_run_places_a_single_node_job_with_its_memory_there(_: &Context) {
    let body = format!(
        "{}resources:\n  cpus: 1\n  numa: single-node\n  memory: {{hard: 128Mi}}\n",
        hog_command(32)
    );
    let (output, code) = corral_run("numa-single", &body);
    assert_eq!(code, Some(0), "corral run failed");
    let r = report(&output);
    assert_eq!(r.cpus.len(), 1);
    let nodes = check_report(&r, 32);
    assert_eq!(nodes.len(), 1);
}

pub fn corral_run_refuses_too_big_single_node_and_spreads_prefer_to_nearest(ctx: &Context) {
    let cpus = ctx.topology.cpus_per_node() + 1;
    let resources = |numa: &str| {
        format!(
            "{}resources:\n  cpus: {cpus}\n  numa: {numa}\n  memory: {{hard: 128Mi}}\n",
            hog_command(32)
        )
    };
    let (output, code) = corral_run("numa-strict", &resources("single-node"));
    assert_ne!(code, Some(0), "a {cpus}-CPU single-node job ran");
    assert!(!output.contains("hog: allocated"), "the job started");
    assert!(output.contains("no room"), "no placement refusal in the output");

    let (output, code) = corral_run("numa-prefer", &resources("prefer"));
    assert_eq!(code, Some(0), "corral run failed");
    let r = report(&output);
    assert_eq!(r.cpus.len(), cpus);
    let nodes: Vec<u32> = check_report(&r, 32).iter().map(|n| n.0).collect();
    assert_eq!(nodes.len(), 2, "the fewest nodes with {cpus} CPUs");
    assert_eq!(
        ctx.topology.distance(nodes[0], nodes[1]),
        ctx.topology.nearest_distance(),
        "nodes {nodes:?} are not the nearest pair"
    );
}

/// On pure v2 `oom: grow` puts `memory.high` at the hard limit and
/// `memory.max` 16 MiB above it (the freeze margin of a limit this small):
/// the job is frozen at `memory.high` and grown in place, or, when it
/// allocates faster than the freeze (this one touches 48 MiB in one go),
/// killed at `memory.max` and started again with a grown limit. Which of
/// the two happens is a race; whatever the path, every attempt's
/// `memory.high` is its hard limit and `memory.max` the margin above, which
/// each attempt prints from its own cgroup first, and the job finishes.
pub fn corral_run_grows_a_killed_job_and_raises_memory_high(_: &Context) {
    use corral::cgroup::v2::memory::freeze_margin;
    let script = "dir=/sys/fs/cgroup$(sed -n s/^0:://p /proc/self/cgroup); \
                  echo limits $(cat $dir/memory.max) $(cat $dir/memory.high); \
                  exec /corral-vm/vm_guest hog --mib 48";
    let body = format!(
        "command: [/bin/sh, -c, '{script}']\nresources:\n  memory: {{high: 30Mi, hard: 32Mi}}\n\
         oom: {{action: grow, grow_to: 224Mi, grow_step: 64Mi}}\n"
    );
    let (output, code) = corral_run("grow-v2", &body);
    assert_eq!(code, Some(0), "no grown attempt succeeded");
    let limits: Vec<(u64, u64)> = output
        .lines()
        .filter_map(|l| l.strip_prefix("limits "))
        .map(|l| {
            let (max, high) = l.split_once(' ').unwrap();
            (max.parse().unwrap(), high.parse().unwrap())
        })
        .collect();
    assert!(!limits.is_empty(), "no attempt printed its limits");
    assert_eq!(freeze_margin(32 << 20), 16 << 20);
    assert_eq!(limits[0], (48 << 20, 32 << 20), "the pause point at the spec's hard limit");
    for (max, high) in &limits[1..] {
        assert!(*high > 32 << 20, "not grown: {limits:?}");
        assert_eq!(*max, high + freeze_margin(*high), "max not the margin above high: {limits:?}");
    }
    assert!(
        output.contains("; starting again with a limit of ")
            || output.contains("; limit raised to "),
        "not grown"
    );
    assert!(output.contains("hog: allocated 48 MiB"));
}

pub fn corral_run_reports_an_oom_kill(_: &Context) {
    let body = format!("{}resources:\n  memory: {{hard: 32Mi}}\n", hog_command(96));
    let (output, code) = corral_run("oom-hog", &body);
    assert_eq!(code, Some(137), "exit code of an OOM-killed job");
    assert!(
        output.contains("OOM-killed (killed by the kernel OOM killer)"),
        "no OOM in the summary"
    );
    assert!(!output.contains("hog: allocated"));
}
