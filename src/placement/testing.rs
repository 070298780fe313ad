//! Fixtures and constructors shared by the placement unit tests.

pub use crate::topology::testing::fixture;
use crate::topology::{CpuSet, NodeSet, Topology};
use crate::vocab::Bytes;

use super::{Assignment, CpuGrant, Ledger, PlacementConfig, Request};
use crate::vocab::RunId;

pub fn ledger(topology: &Topology) -> Ledger {
    Ledger::new(topology, PlacementConfig::default()).unwrap()
}

pub fn run(id: &str) -> RunId {
    RunId::new(id)
}

pub fn cpus(list: &str) -> CpuSet {
    list.parse().unwrap()
}

pub fn nodes(list: &str) -> NodeSet {
    list.parse().unwrap()
}

pub fn gib(n: u64) -> Bytes {
    Bytes::from_gib(n)
}

pub fn exclusive(owner: &str, n: u32) -> Request {
    Request::exclusive(run(owner), n)
}

pub fn pinned(owner: &str, list: &str, mems: &str) -> Assignment {
    Assignment {
        owner: run(owner),
        cpus: CpuGrant::Exclusive(cpus(list)),
        mems: nodes(mems),
        memory: Default::default(),
    }
}
