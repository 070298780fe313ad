//! v1 `pids`: `pids.max` (same file and format as v2).

use crate::cgroup::layout::Controller;
use crate::cgroup::plan::{Builder, Target};
use crate::cgroup::resources::Resources;

pub const MAX: &str = "pids.max";
pub const CURRENT: &str = "pids.current";

pub(crate) fn plan(res: &Resources, b: &mut Builder<'_>) {
    crate::cgroup::v2::pids::plan_into(Target::V1(Controller::Pids), res, b);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::plan::tests::v1_ctx;
    use crate::cgroup::plan::{plan, PlanMode};

    #[test]
    fn pids_max_is_a_number_or_max() {
        let res = Resources { pids_max: Some(64), ..Default::default() };
        let p = plan(&v1_ctx(PlanMode::Create), &res).unwrap();
        assert_eq!(p.value_of(MAX), Some("64"));
        let p = plan(&v1_ctx(PlanMode::Update), &Resources::default()).unwrap();
        assert_eq!(p.value_of(MAX), Some("max"));
    }
}
