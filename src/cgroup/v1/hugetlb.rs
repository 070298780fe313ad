//! v1 `hugetlb`: `hugetlb.<size>.limit_in_bytes`, in bytes, `-1` for none.

use crate::cgroup::hugetlb::{unlisted, v1_limit_file};
use crate::cgroup::layout::Controller;
use crate::cgroup::plan::{Builder, PlanProblem, Target};
use crate::cgroup::resources::Resources;

pub(crate) fn plan(res: &Resources, b: &mut Builder<'_>) {
    let target = Target::V1(Controller::Hugetlb);
    for limit in &res.hugetlb {
        match v1_limit_file(limit.page_size) {
            Some(file) => b.write(target, file, limit.limit_bytes),
            None => b.problem(PlanProblem::Unsupported {
                setting: "huge page limit",
                reason: "no huge page size of that many bytes is known",
            }),
        }
    }
    if b.updating() {
        for file in unlisted(&res.hugetlb, &b.ctx.hugetlb_sizes).filter_map(v1_limit_file) {
            b.write(target, file, "-1");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::hugetlb::HugetlbLimit;
    use crate::cgroup::plan::tests::v1_ctx;
    use crate::cgroup::plan::{plan, PlanMode};

    #[test]
    fn each_limit_goes_to_its_size_file() {
        let res = Resources {
            hugetlb: vec![
                HugetlbLimit { page_size: 2 << 20, limit_bytes: 64 << 20 },
                HugetlbLimit { page_size: 1 << 30, limit_bytes: 0 },
            ],
            ..Default::default()
        };
        let mut ctx = v1_ctx(PlanMode::Create);
        ctx.v1.insert(Controller::Hugetlb);
        let p = plan(&ctx, &res).unwrap();
        assert_eq!(p.value_of("hugetlb.2MB.limit_in_bytes"), Some("67108864"));
        assert_eq!(p.value_of("hugetlb.1GB.limit_in_bytes"), Some("0"));
        let odd = Resources {
            hugetlb: vec![HugetlbLimit { page_size: 3 << 20, limit_bytes: 0 }],
            ..Default::default()
        };
        assert!(plan(&ctx, &odd).unwrap_err().to_string().contains("huge page limit"));
    }

    #[test]
    fn an_update_lifts_the_limits_no_longer_asked_for() {
        let mut ctx = v1_ctx(PlanMode::Update);
        ctx.v1.insert(Controller::Hugetlb);
        ctx.hugetlb_sizes = vec![2 << 20, 1 << 30];
        let res = Resources {
            hugetlb: vec![HugetlbLimit { page_size: 1 << 30, limit_bytes: 1 << 30 }],
            ..Default::default()
        };
        let p = plan(&ctx, &res).unwrap();
        assert_eq!(p.value_of("hugetlb.2MB.limit_in_bytes"), Some("-1"));
        assert_eq!(p.value_of("hugetlb.1GB.limit_in_bytes"), Some("1073741824"));
        ctx.mode = PlanMode::Create;
        assert_eq!(plan(&ctx, &res).unwrap().value_of("hugetlb.2MB.limit_in_bytes"), None);
    }
}
