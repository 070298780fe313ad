//! v2 `cpuset`: `cpuset.cpus`, `cpuset.mems`. Empty means "the parent's
//! effective set", which is the v2 default.

use crate::cgroup::plan::{Builder, Target};
use crate::cgroup::resources::Resources;

pub const CPUS: &str = "cpuset.cpus";
pub const MEMS: &str = "cpuset.mems";
pub const CPUS_EFFECTIVE: &str = "cpuset.cpus.effective";
pub const MEMS_EFFECTIVE: &str = "cpuset.mems.effective";

pub(crate) fn plan(res: &Resources, b: &mut Builder<'_>) {
    match &res.cpus {
        Some(cpus) => b.write(Target::Unified, CPUS, cpus),
        None if b.updating() => b.write(Target::Unified, CPUS, ""),
        None => {}
    }
    match &res.mems {
        Some(mems) => b.write(Target::Unified, MEMS, mems),
        None if b.updating() => b.write(Target::Unified, MEMS, ""),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::plan::tests::v2_ctx;
    use crate::cgroup::plan::{plan, PlanMode};
    use crate::topology::CpuSet;

    #[test]
    fn cpus_only_when_asked_and_reset_to_inherit() {
        let res = Resources { cpus: Some(CpuSet::parse("0-1").unwrap()), ..Default::default() };
        let p = plan(&v2_ctx(PlanMode::Create), &res).unwrap();
        assert_eq!(p.value_of(CPUS), Some("0-1"));
        assert_eq!(p.value_of(MEMS), None);
        let p = plan(&v2_ctx(PlanMode::Update), &Resources::default()).unwrap();
        assert_eq!(p.value_of(CPUS), Some(""));
        assert_eq!(p.value_of(MEMS), Some(""));
    }
}
