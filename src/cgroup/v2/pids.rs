//! `pids.max`: same file and format in v1 and v2.

use crate::cgroup::plan::{Builder, Target};
use crate::cgroup::resources::Resources;

pub const MAX: &str = "pids.max";
pub const CURRENT: &str = "pids.current";

pub(crate) fn plan(res: &Resources, b: &mut Builder<'_>) {
    plan_into(Target::Unified, res, b);
}

pub(crate) fn plan_into(target: Target, res: &Resources, b: &mut Builder<'_>) {
    match res.pids_max {
        Some(max) => b.write(target, MAX, max),
        None if b.updating() => b.write(target, MAX, "max"),
        None => {}
    }
}
