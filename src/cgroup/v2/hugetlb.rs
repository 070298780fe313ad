//! v2 `hugetlb`: `hugetlb.<size>.max`, in bytes, `max` for none.

use crate::cgroup::hugetlb::{unlisted, v2_max_file};
use crate::cgroup::plan::{Builder, PlanProblem, Target};
use crate::cgroup::resources::Resources;

pub(crate) fn plan(res: &Resources, b: &mut Builder<'_>) {
    for limit in &res.hugetlb {
        match v2_max_file(limit.page_size) {
            Some(file) => b.write(Target::Unified, file, limit.limit_bytes),
            None => b.problem(PlanProblem::Unsupported {
                setting: "huge page limit",
                reason: "no huge page size of that many bytes is known",
            }),
        }
    }
    if b.updating() {
        for file in unlisted(&res.hugetlb, &b.ctx.hugetlb_sizes).filter_map(v2_max_file) {
            b.write(Target::Unified, file, "max");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::hugetlb::HugetlbLimit;
    use crate::cgroup::layout::Controller;
    use crate::cgroup::plan::tests::v2_ctx;
    use crate::cgroup::plan::{plan, PlanMode};

    #[test]
    fn each_limit_goes_to_its_size_file_in_the_unified_tree() {
        let res = Resources {
            hugetlb: vec![HugetlbLimit { page_size: 2 << 20, limit_bytes: 64 << 20 }],
            ..Default::default()
        };
        let mut ctx = v2_ctx(PlanMode::Create);
        ctx.v2.insert(Controller::Hugetlb);
        let p = plan(&ctx, &res).unwrap();
        let write = p.writes.iter().find(|w| w.file == "hugetlb.2MB.max").unwrap();
        assert_eq!((write.target, write.value.as_str()), (Target::Unified, "67108864"));
        ctx.v2.remove(&Controller::Hugetlb);
        let err = plan(&ctx, &res).unwrap_err().to_string();
        assert!(err.contains("needs the hugetlb controller"), "{err}");
    }

    #[test]
    fn an_update_lifts_the_limits_no_longer_asked_for() {
        let mut ctx = v2_ctx(PlanMode::Update);
        ctx.v2.insert(Controller::Hugetlb);
        ctx.hugetlb_sizes = vec![2 << 20, 1 << 30];
        let p = plan(&ctx, &Resources::default()).unwrap();
        assert_eq!(p.value_of("hugetlb.2MB.max"), Some("max"));
        assert_eq!(p.value_of("hugetlb.1GB.max"), Some("max"));
    }
}
