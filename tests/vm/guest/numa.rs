//! NUMA placement on a real multi-node kernel: corral's view of the machine,
//! and jobs whose CPUs and memory the kernel keeps where placement put them.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use corral::cgroup::{MemoryLimits, Resources};
use corral::placement::{
    place, Assignment, Ledger, NumaPolicy, PlacementConfig, PlacementError, Request, RunId,
};
use corral::topology::{discover, CpuSet, NodeId, NodeSet, Topology};
use corral::vocab::Bytes;

use super::util::{
    allowed_lists, anon_pages_per_node, manager, read, self_exe, wait_line, Job, CORRAL, MI,
};
use super::Context;

/// Memory each test job really allocates.
const HOG_MIB: u64 = 32;

pub fn live_topology() -> Topology {
    discover(Path::new("/sys"), Path::new("/proc")).expect("discover the guest's topology")
}

fn cpuset(cpus: &[u32]) -> CpuSet {
    CpuSet::parse(&cpus.iter().map(u32::to_string).collect::<Vec<_>>().join(",")).unwrap()
}

pub fn topology_is_seen_as_booted(ctx: &Context) {
    let out = Command::new(CORRAL).arg("topology").output().expect("run corral topology");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "corral topology: {}", out.status);
    let json = Command::new(CORRAL).args(["topology", "--json"]).output().expect("corral topology");
    assert!(json.status.success());
    let _: serde_json::Value = serde_json::from_slice(&json.stdout).expect("topology JSON");

    let spec = &ctx.topology;
    let topo = live_topology();
    assert_eq!(topo.nodes().len(), spec.nodes.len(), "nodes: {:?}", topo.nodes().keys());
    assert_eq!(topo.cpus().len() as u32, spec.cpu_count());
    assert_eq!(topo.packages().len() as u32, spec.sockets);
    for (id, want) in spec.nodes.iter().enumerate() {
        let id = id as u32;
        let node = topo.node(NodeId(id)).unwrap_or_else(|| panic!("node {id} missing"));
        assert_eq!(node.cpus, cpuset(want.cpus), "CPUs of node {id}");
        let mib = node.memory_total.get() / MI;
        assert!(
            mib <= u64::from(want.memory_mib) && mib * 10 >= u64::from(want.memory_mib) * 7,
            "node {id} has {mib} MiB, booted with {}",
            want.memory_mib
        );
        for other in 0..spec.nodes.len() as u32 {
            assert_eq!(
                topo.distance(NodeId(id), NodeId(other)),
                Some(spec.distance(id, other)),
                "distance {id} -> {other}"
            );
        }
    }
}

/// The nodes of an exclusive assignment's CPUs.
fn cpu_nodes(topo: &Topology, a: &Assignment) -> BTreeSet<NodeId> {
    let cpus = a.exclusive_cpus().expect("exclusive CPUs");
    cpus.iter().map(|c| topo.cpu(c).expect("known CPU").node).collect()
}

/// A job holding `HOG_MIB` of touched memory in a cgroup made from `a`.
struct Placed {
    job: Job,
    child: Child,
    cpus: CpuSet,
    mems: NodeSet,
}

impl Drop for Placed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_placed(name: &str, a: &Assignment) -> Placed {
    let cpus = a.exclusive_cpus().expect("exclusive CPUs").clone();
    let resources = Resources {
        cpus: Some(cpus.clone()),
        mems: Some(a.mems.clone()),
        memory: MemoryLimits { hard_bytes: Some(4 * HOG_MIB * MI), ..MemoryLimits::default() },
        ..Resources::default()
    };
    let job = Job::create(&manager(), name, &resources);
    let exe = self_exe();
    let mut child =
        job.spawn(&[&exe, "hog", "--mib", &HOG_MIB.to_string(), "--hold"], Stdio::piped());
    wait_line(child.stdout.take().unwrap(), "allocated", Duration::from_secs(60));
    Placed { job, child, cpus, mems: a.mems.clone() }
}

/// The kernel confines the job to its cpuset, and its anonymous memory is
/// on its memory nodes only.
fn check_confined(p: &Placed) {
    let effective_cpus = read(p.job.file("cpuset.cpus.effective"));
    let effective_mems = read(p.job.file("cpuset.mems.effective"));
    println!("{}: cpus {effective_cpus}, mems {effective_mems}", p.job.cgroup.name());
    assert_eq!(CpuSet::parse(&effective_cpus).unwrap(), p.cpus);
    assert_eq!(NodeSet::parse(&effective_mems).unwrap(), p.mems);
    let (cpus, mems) = allowed_lists(p.child.id());
    assert_eq!(CpuSet::parse(&cpus).unwrap(), p.cpus, "Cpus_allowed_list");
    assert_eq!(NodeSet::parse(&mems).unwrap(), p.mems, "Mems_allowed_list");

    let maps = read(format!("/proc/{}/numa_maps", p.child.id()));
    let pages = anon_pages_per_node(&maps);
    println!("{}: anonymous pages per node {pages:?}", p.job.cgroup.name());
    let inside: u64 =
        pages.iter().filter(|(n, _)| p.mems.contains(NodeId(**n))).map(|(_, c)| c).sum();
    let outside: u64 =
        pages.iter().filter(|(n, _)| !p.mems.contains(NodeId(**n))).map(|(_, c)| c).sum();
    assert!(inside >= HOG_MIB * MI / 4096, "only {inside} anonymous pages on {}", p.mems);
    assert_eq!(outside, 0, "anonymous pages outside {}: {pages:?}", p.mems);
}

pub fn single_node_jobs_get_a_node_each_with_their_memory_there(_: &Context) {
    let topo = live_topology();
    let mut ledger = Ledger::new(&topo, PlacementConfig::default()).expect("ledger");
    let smallest = topo.nodes().values().map(|n| n.memory_total.get()).min().unwrap();
    // More than half of any node: two such jobs cannot share one.
    let need = Bytes(smallest * 6 / 10);
    let mut placed = Vec::new();
    for i in 0..2 {
        let request = Request::exclusive(RunId::new(format!("node-{i}")), 1)
            .with_numa(NumaPolicy::SingleNode)
            .with_memory(need);
        let a = ledger.admit(&topo, &request).expect("a node with room");
        println!("{}: cpus {:?}, mems {}", a.owner, a.exclusive_cpus(), a.mems);
        assert_eq!(a.mems.len(), 1, "single-node memory");
        assert_eq!(cpu_nodes(&topo, &a), a.mems.iter().collect(), "CPUs on the memory node");
        placed.push(run_placed(&format!("node-{i}"), &a));
    }
    assert!(placed[0].mems.is_disjoint(&placed[1].mems), "both jobs on {}", placed[0].mems);
    for p in &placed {
        check_confined(p);
    }
}

pub fn too_big_for_a_node_single_node_refused_prefer_spans_nearest(ctx: &Context) {
    let topo = live_topology();
    let ledger = Ledger::new(&topo, PlacementConfig::default()).expect("ledger");
    let cpus = ctx.topology.cpus_per_node() as u32 + 1;

    let strict = Request::exclusive(RunId::new("strict"), cpus).with_numa(NumaPolicy::SingleNode);
    match place(&topo, &ledger, &strict) {
        Err(e @ PlacementError::NoFit { .. }) => println!("single-node, {cpus} CPUs: {e}"),
        other => panic!("a {cpus}-CPU single-node job was placed: {other:?}"),
    }

    let loose = Request::exclusive(RunId::new("loose"), cpus).with_numa(NumaPolicy::Prefer);
    let a = place(&topo, &ledger, &loose).expect("prefer places across nodes");
    let nodes = cpu_nodes(&topo, &a);
    println!(
        "prefer, {cpus} CPUs: cpus {:?} on nodes {nodes:?}, mems {}",
        a.exclusive_cpus(),
        a.mems
    );
    assert_eq!(nodes.len(), 2, "the fewest nodes that hold {cpus} CPUs");
    let pair: Vec<u32> = nodes.iter().map(|n| n.0).collect();
    assert_eq!(
        ctx.topology.distance(pair[0], pair[1]),
        ctx.topology.nearest_distance(),
        "nodes {pair:?} are not the nearest pair"
    );
    assert_eq!(a.mems, nodes.iter().copied().collect::<NodeSet>());
    let p = run_placed("prefer", &a);
    check_confined(&p);
}
