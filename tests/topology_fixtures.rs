//! Topology discovery on the fake sysfs/procfs trees in tests/fixtures/sysfs
//! (see generate.py there for what each machine is).

use std::collections::BTreeMap;
use std::path::PathBuf;

use corral::topology::{discover, CoreId, CpuId, CpuSet, NodeId, PackageId, Topology};
use corral::vocab::Bytes;

fn fixture(name: &str) -> Topology {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysfs").join(name);
    discover(&root.join("sys"), &root.join("proc"))
        .unwrap_or_else(|err| panic!("fixture {name}: {err}"))
}

fn set(list: &str) -> CpuSet {
    list.parse().unwrap()
}

fn node_cpus(topo: &Topology) -> Vec<(u32, String)> {
    topo.nodes().iter().map(|(id, n)| (id.0, n.cpus.to_string())).collect()
}

fn cores(topo: &Topology) -> Vec<String> {
    topo.cores().iter().map(|c| c.cpus.to_string()).collect()
}

fn distances(topo: &Topology) -> Vec<Vec<u32>> {
    topo.nodes().values().map(|n| n.distances.values().copied().collect()).collect()
}

#[test]
fn vm_two_cpus_one_node() {
    let topo = fixture("vm-2cpu");
    assert_eq!(topo.online_cpus(), set("0-1"));
    assert!(topo.offline_cpus().is_empty());
    assert_eq!(node_cpus(&topo), [(0, "0-1".to_owned())]);
    assert_eq!(cores(&topo), ["0", "1"]);
    assert_eq!(topo.threads_per_core(), 1);
    let cpu1 = topo.cpu(CpuId(1)).unwrap();
    assert_eq!((cpu1.core, cpu1.package, cpu1.node), (CoreId(1), PackageId(0), NodeId(0)));
    // node0/meminfo says 7956692 kB (deferred page init); /proc/meminfo's
    // 24684092 kB is the real size of the single node.
    let node = topo.node(NodeId(0)).unwrap();
    assert_eq!(node.memory_total, Bytes::from_kib(24684092));
    assert_eq!(node.memory_free, Bytes::from_kib(21060224));
    assert_eq!(distances(&topo), [[10]]);
    assert_eq!(topo.allowed_cpus(), &set("0-1"));
    assert_eq!(topo.allowed_mems().to_string(), "0");
}

#[test]
fn dual_socket_four_nodes_smt2() {
    let topo = fixture("dual-socket-snc");
    assert_eq!(topo.online_cpus(), set("0-63"));
    assert_eq!(
        node_cpus(&topo),
        [
            (0, "0-7,32-39".to_owned()),
            (1, "8-15,40-47".to_owned()),
            (2, "16-23,48-55".to_owned()),
            (3, "24-31,56-63".to_owned()),
        ]
    );
    assert_eq!(topo.cores().len(), 32);
    assert_eq!(topo.threads_per_core(), 2);
    for core in topo.cores() {
        let first = core.cpus.iter().next().unwrap().0;
        assert_eq!(core.cpus, [CpuId(first), CpuId(first + 32)].into_iter().collect());
        assert_eq!(core.package, PackageId(first / 16));
        assert_eq!(core.node, NodeId(first / 8));
    }
    // core_id restarts per package: cpu16 is core 0 of package 1, yet a
    // different physical core from cpu0.
    assert_eq!(topo.cpu(CpuId(16)).unwrap().core, CoreId(0));
    assert_eq!(topo.cpu(CpuId(48)).unwrap().siblings, set("16,48"));
    assert_ne!(topo.cpu(CpuId(0)).unwrap().siblings, topo.cpu(CpuId(16)).unwrap().siblings);
    assert_eq!(
        distances(&topo),
        [[10, 16, 32, 32], [16, 10, 32, 32], [32, 32, 10, 16], [32, 32, 16, 10]]
    );
    let totals: BTreeMap<u32, Bytes> =
        topo.nodes().iter().map(|(id, n)| (id.0, n.memory_total)).collect();
    assert_eq!(
        totals,
        BTreeMap::from([
            (0, Bytes::from_kib(65271424)),
            (1, Bytes::from_kib(66045952)),
            (2, Bytes::from_kib(66045952)),
            (3, Bytes::from_kib(66043904)),
        ])
    );
    assert_eq!(topo.node(NodeId(0)).unwrap().memory_free, Bytes::from_kib(60112384));
    assert_eq!(topo.allowed_mems().to_string(), "0-3");
}

#[test]
fn memoryless_nodes_of_both_kinds() {
    let topo = fixture("memoryless-nodes");
    assert_eq!(
        node_cpus(&topo),
        [(0, "0-7".to_owned()), (1, "8-15".to_owned()), (2, "".to_owned())]
    );
    // AMD numbering: adjacent CPUs are siblings.
    assert_eq!(cores(&topo), ["0-1", "2-3", "4-5", "6-7", "8-9", "10-11", "12-13", "14-15"]);
    let node = |n| topo.node(NodeId(n)).unwrap();
    assert_eq!(node(0).memory_total, Bytes::from_kib(32 * 1024 * 1024 - 262144));
    // node1: CPUs, no memory.
    assert_eq!(node(1).memory_total, Bytes::ZERO);
    assert_eq!(node(1).memory_free, Bytes::ZERO);
    // node2: memory, no CPUs (a CXL expander).
    assert!(node(2).cpus.is_empty());
    assert_eq!(node(2).memory_total, Bytes::from_gib(128));
    assert_eq!(topo.memory_nodes().to_string(), "0,2");
    assert_eq!(distances(&topo), [[10, 21, 17], [21, 10, 28], [17, 28, 10]]);
    assert_eq!(topo.allowed_mems().to_string(), "0,2");
}

#[test]
fn offline_cpus_and_a_lone_sibling() {
    let topo = fixture("offline-cpus");
    assert_eq!(topo.online_cpus(), set("0-1,3-4,7"));
    assert_eq!(topo.offline_cpus(), &set("2,5-6"));
    assert_eq!(node_cpus(&topo), [(0, "0-1,3-4,7".to_owned())]);
    // {2,6} is gone entirely; cpu1 lost its sibling cpu5.
    assert_eq!(cores(&topo), ["0,4", "1", "3,7"]);
    assert_eq!(topo.cpu(CpuId(1)).unwrap().siblings, set("1"));
    // The affinity mask names offline CPUs too; placement intersects.
    assert_eq!(topo.allowed_cpus(), &set("0-7"));
    assert_eq!(
        topo.node(NodeId(0)).unwrap().memory_total,
        Bytes::from_kib(16 * 1024 * 1024 - 131072)
    );
}

#[test]
fn kernel_without_numa_is_one_node() {
    let topo = fixture("no-numa");
    assert_eq!(node_cpus(&topo), [(0, "0-3".to_owned())]);
    assert_eq!(cores(&topo), ["0", "1", "2", "3"]);
    let node = topo.node(NodeId(0)).unwrap();
    assert_eq!(node.memory_total, Bytes::from_kib(8 * 1024 * 1024 - 65536));
    assert_eq!(node.memory_free, Bytes::from_gib(6));
    assert_eq!(distances(&topo), [[10]]);
    assert_eq!(topo.allowed_cpus(), &set("1-3"));
}

#[test]
fn summary_and_json() {
    let topo = fixture("memoryless-nodes");
    let text = corral::cli::topology::render(&topo);
    assert!(
        text.starts_with("16 CPUs online in 1 package, 8 cores, 2 threads per core, 3 NUMA nodes"),
        "{text}"
    );
    assert!(
        text.contains(
            "node1: CPUs 8-15, 4 cores, package 0\n  cores 8-9 10-11 12-13 14-15\n  no memory\n"
        ),
        "{text}"
    );
    assert!(text.contains("node2: no CPUs\n  memory 128 GiB total, 127 GiB free\n"), "{text}");
    assert!(text.contains("node2         17     28     10\n"), "{text}");

    let json: serde_json::Value = serde_json::to_value(&topo).unwrap();
    assert_eq!(json["cpus"]["9"]["siblings"], "8-9");
    assert_eq!(json["cpus"]["9"]["node"], 1);
    assert_eq!(json["nodes"]["2"]["memory_total"], 128u64 << 30);
    assert_eq!(json["nodes"]["0"]["distances"]["2"], 17);
    assert_eq!(json["allowed_mems"], "0,2");
}
