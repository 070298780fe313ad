//! The machines the suite boots: CPUs, NUMA nodes, memory and distances.
//! The host turns one into qemu options; the guest checks that corral sees
//! exactly this machine.

/// One NUMA node of a guest.
#[derive(Debug, Clone, Copy)]
pub struct NodeSpec {
    pub cpus: &'static [u32],
    pub memory_mib: u32,
}

/// A guest machine.
#[derive(Debug, Clone, Copy)]
pub struct GuestTopology {
    /// Used in test names (`vm::<name>::<test>`).
    pub name: &'static str,
    pub sockets: u32,
    pub cores_per_socket: u32,
    pub nodes: &'static [NodeSpec],
    /// `(a, b, distance)` for every pair of distinct nodes; 10 to itself.
    pub distances: &'static [(u32, u32, u32)],
}

impl GuestTopology {
    pub fn cpu_count(&self) -> u32 {
        self.sockets * self.cores_per_socket
    }

    pub fn memory_mib(&self) -> u32 {
        self.nodes.iter().map(|n| n.memory_mib).sum()
    }

    pub fn distance(&self, a: u32, b: u32) -> u32 {
        if a == b {
            return 10;
        }
        self.distances
            .iter()
            .find(|&&(x, y, _)| (x, y) == (a, b) || (x, y) == (b, a))
            .map(|&(_, _, d)| d)
            .unwrap_or_else(|| panic!("{}: no distance between nodes {a} and {b}", self.name))
    }

    /// The smallest distance between two distinct nodes.
    pub fn nearest_distance(&self) -> u32 {
        self.distances.iter().map(|&(_, _, d)| d).min().unwrap_or(10)
    }

    pub fn cpus_per_node(&self) -> usize {
        self.nodes.iter().map(|n| n.cpus.len()).max().unwrap_or(0)
    }
}

/// Two sockets, one node each, two cores per node: the common dual-socket
/// server in small.
pub const TWO_NODES: GuestTopology = GuestTopology {
    name: "two_nodes",
    sockets: 2,
    cores_per_socket: 2,
    nodes: &[
        NodeSpec { cpus: &[0, 1], memory_mib: 512 },
        NodeSpec { cpus: &[2, 3], memory_mib: 512 },
    ],
    distances: &[(0, 1, 20)],
};

/// Four single-CPU nodes in two pairs: near within a pair (12), far across
/// (20 and 30), so "the nearest nodes" has one right answer per seed.
pub const FOUR_NODES: GuestTopology = GuestTopology {
    name: "four_nodes",
    sockets: 4,
    cores_per_socket: 1,
    nodes: &[
        NodeSpec { cpus: &[0], memory_mib: 256 },
        NodeSpec { cpus: &[1], memory_mib: 256 },
        NodeSpec { cpus: &[2], memory_mib: 256 },
        NodeSpec { cpus: &[3], memory_mib: 256 },
    ],
    distances: &[(0, 1, 12), (2, 3, 12), (0, 2, 20), (1, 3, 20), (0, 3, 30), (1, 2, 30)],
};

pub const ALL: &[GuestTopology] = &[TWO_NODES, FOUR_NODES];

pub fn by_name(name: &str) -> Option<GuestTopology> {
    ALL.iter().copied().find(|t| t.name == name)
}
