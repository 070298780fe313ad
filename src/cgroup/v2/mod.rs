//! cgroup v2: one tree; a controller reaches a cgroup only if every ancestor
//! lists it in `cgroup.subtree_control`. A file per controller here.

pub mod cpu;
pub mod cpuset;
pub mod devices;
pub mod events;
pub mod freezer;
pub mod hugetlb;
pub mod io;
pub mod kill;
pub mod memory;
pub mod pids;
pub mod psi;

use std::collections::BTreeSet;
use std::path::Path;

use crate::cgroup::error::CgroupError;
use crate::cgroup::fs::{read_knob, write_knob};
use crate::cgroup::layout::Controller;

pub const CONTROLLERS: &str = "cgroup.controllers";
pub const SUBTREE_CONTROL: &str = "cgroup.subtree_control";

pub fn parse_controllers(text: &str) -> BTreeSet<Controller> {
    text.split_whitespace().filter_map(Controller::from_name).collect()
}

/// Enables `wanted` for `dir`'s children, writing only what is missing, in
/// one write (`+cpu +memory`). The kernel refuses domain controllers in a
/// non-root cgroup that holds processes (`EBUSY`), reported as
/// [`CgroupError::ParentHasProcesses`].
pub(crate) fn enable_for_children(
    dir: &Path,
    wanted: &BTreeSet<Controller>,
) -> Result<(), CgroupError> {
    let path = dir.join(SUBTREE_CONTROL);
    let enabled = parse_controllers(&read_knob(&path)?);
    let missing: Vec<&Controller> = wanted.difference(&enabled).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let value = missing.iter().map(|c| format!("+{c}")).collect::<Vec<_>>().join(" ");
    match write_knob(&path, &value) {
        Err(CgroupError::Write { source, .. }) if source.raw_os_error() == Some(libc::EBUSY) => {
            Err(CgroupError::ParentHasProcesses { path: dir.to_owned(), controllers: value })
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enables_only_missing_controllers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SUBTREE_CONTROL), "cpu pids\n").unwrap();
        let wanted = BTreeSet::from([Controller::Cpu, Controller::Memory, Controller::Cpuset]);
        enable_for_children(dir.path(), &wanted).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(SUBTREE_CONTROL)).unwrap(),
            "+cpuset +memory"
        );
    }

    #[test]
    fn nothing_missing_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SUBTREE_CONTROL), "cpuset cpu memory\n").unwrap();
        let wanted = BTreeSet::from([Controller::Cpu, Controller::Memory]);
        enable_for_children(dir.path(), &wanted).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(SUBTREE_CONTROL)).unwrap(),
            "cpuset cpu memory\n"
        );
    }
}
