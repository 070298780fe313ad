//! Topology discovery on this machine's real /sys and /proc.

use std::path::Path;

use corral::topology::discover;
use corral::vocab::Bytes;

#[test]
fn discovers_the_running_machine() {
    let topo = discover(Path::new("/sys"), Path::new("/proc")).expect("discover /sys");
    let online = topo.online_cpus();
    assert!(!online.is_empty());
    let parallelism = std::thread::available_parallelism().unwrap().get();
    // The agent's own affinity can be narrower than the machine.
    assert!(online.len() >= parallelism, "{online:?} vs {parallelism}");
    assert!(!topo.allowed_cpus().intersection(&online).is_empty());
    // Every online CPU is in exactly one core and one node.
    let in_cores: usize = topo.cores().iter().map(|c| c.cpus.len()).sum();
    assert_eq!(in_cores, online.len());
    let in_nodes: usize = topo.nodes().values().map(|n| n.cpus.len()).sum();
    assert_eq!(in_nodes, online.len());
    assert!(topo.memory_total() > Bytes::from_mib(64));
    // Each node is nearest to itself: 10 by the ACPI SLIT convention, and the
    // kernel refuses a table that puts another node as near.
    for (id, node) in topo.nodes() {
        assert_eq!(topo.distance(*id, *id), Some(10), "{id}");
        assert!(
            node.distances.iter().all(|(other, &distance)| other == id || distance > 10),
            "{id}: {:?}",
            node.distances
        );
    }
}
