//! v2 `hugetlb`: `hugetlb.<size>.max`, in bytes, `max` for none.

use crate::cgroup::hugetlb::v2_max_file;
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
}
