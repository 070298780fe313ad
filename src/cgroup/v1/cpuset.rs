//! v1 `cpuset`: `cpuset.cpus`, `cpuset.mems`.
//!
//! A new v1 cpuset starts with empty `cpus` and `mems`, and the kernel refuses
//! to move a task into it (`ENOSPC`) until both are set. Every level corral
//! creates is therefore filled from its parent, and a job without a request
//! gets its parent's sets. `cgroup.clone_children` would do the copy on
//! `mkdir`, but it is a setting of the parent, which corral may not own, and
//! it changes what every other child of that parent inherits.
//!
//! `cpuset.cpu_exclusive` is not used: it forbids siblings from overlapping,
//! requires every ancestor to be exclusive too and makes a later resize
//! order-dependent. Exclusivity of cores is the placement ledger's job.

use std::path::Path;

use crate::cgroup::error::CgroupError;
use crate::cgroup::fs::{read_value, write_knob};
use crate::cgroup::layout::Controller;
use crate::cgroup::plan::{Builder, PlanProblem, Target};
use crate::cgroup::resources::Resources;

pub const CPUS: &str = "cpuset.cpus";
pub const MEMS: &str = "cpuset.mems";

const TARGET: Target = Target::V1(Controller::Cpuset);

pub(crate) fn plan(res: &Resources, b: &mut Builder<'_>) {
    let cpus = res.cpus.as_ref().or(b.ctx.parent_cpus.as_ref()).map(ToString::to_string);
    let mems = res.mems.as_ref().or(b.ctx.parent_mems.as_ref()).map(ToString::to_string);
    match (cpus, mems) {
        (Some(cpus), Some(mems)) => {
            b.write(TARGET, CPUS, cpus);
            b.write(TARGET, MEMS, mems);
        }
        _ => b.problem(PlanProblem::Unsupported {
            setting: "cpuset",
            reason:
                "the parent's cpuset.cpus/cpuset.mems are unknown, so a v1 cpuset cannot be filled",
        }),
    }
}

/// Fills `dir`'s empty `cpuset.cpus`/`cpuset.mems` from `parent`, so tasks
/// can join `dir` or its children.
pub(crate) fn inherit_from(parent: &Path, dir: &Path) -> Result<(), CgroupError> {
    for file in [CPUS, MEMS] {
        if read_value(&dir.join(file))?.is_empty() {
            write_knob(&dir.join(file), &read_value(&parent.join(file))?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::plan::tests::v1_ctx;
    use crate::cgroup::plan::{plan, PlanMode};
    use crate::topology::{CpuSet, NodeSet};

    #[test]
    fn requested_sets_win_over_the_parents() {
        let res = Resources {
            cpus: Some(CpuSet::parse("1,3").unwrap()),
            mems: Some(NodeSet::parse("1").unwrap()),
            ..Default::default()
        };
        let p = plan(&v1_ctx(PlanMode::Create), &res).unwrap();
        assert_eq!(p.value_of(CPUS), Some("1,3"));
        assert_eq!(p.value_of(MEMS), Some("1"));
    }

    #[test]
    fn update_without_request_resets_to_the_parents_sets() {
        let p = plan(&v1_ctx(PlanMode::Update), &Resources::default()).unwrap();
        assert_eq!(p.value_of(CPUS), Some("0-3"));
        assert_eq!(p.value_of(MEMS), Some("0-1"));
    }

    #[test]
    fn unknown_parent_sets_are_a_problem() {
        let mut ctx = v1_ctx(PlanMode::Create);
        ctx.parent_mems = None;
        assert!(plan(&ctx, &Resources::default()).is_err());
    }

    #[test]
    fn inherit_copies_only_empty_sets() {
        let dir = tempfile::tempdir().unwrap();
        let parent = dir.path();
        let child = parent.join("c");
        std::fs::create_dir(&child).unwrap();
        std::fs::write(parent.join(CPUS), "0-7\n").unwrap();
        std::fs::write(parent.join(MEMS), "0\n").unwrap();
        std::fs::write(child.join(CPUS), "\n").unwrap();
        std::fs::write(child.join(MEMS), "0\n").unwrap();
        inherit_from(parent, &child).unwrap();
        assert_eq!(std::fs::read_to_string(child.join(CPUS)).unwrap(), "0-7");
        assert_eq!(std::fs::read_to_string(child.join(MEMS)).unwrap(), "0\n");
    }
}
