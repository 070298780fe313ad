//! The fake machines under `tests/fixtures/sysfs` (see `generate.py` there),
//! for unit tests anywhere in the crate.

use std::path::PathBuf;

use super::{discover, Topology};

/// The directory of one machine, holding its `sys` and `proc` trees.
pub fn fixture_root(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysfs").join(name)
}

/// One machine's topology.
pub fn fixture(name: &str) -> Topology {
    let root = fixture_root(name);
    discover(&root.join("sys"), &root.join("proc"))
        .unwrap_or_else(|err| panic!("fixture {name}: {err}"))
}
