//! v2 `cpu`: `cpu.weight`, `cpu.max`, `cpu.stat`.

use crate::cgroup::plan::{Builder, Target};
use crate::cgroup::resources::{Resources, CFS_PERIOD_US};
use crate::cgroup::stats::{flat_keyed, CpuStats};
use crate::vocab::CpuWeight;

pub const WEIGHT: &str = "cpu.weight";
pub const MAX: &str = "cpu.max";
pub const STAT: &str = "cpu.stat";

pub(crate) fn plan(res: &Resources, b: &mut Builder<'_>) {
    match res.cpu_weight {
        Some(weight) => b.write(Target::Unified, WEIGHT, weight.get()),
        None if b.updating() => b.write(Target::Unified, WEIGHT, CpuWeight::DEFAULT.get()),
        None => {}
    }
    match res.cpu_quota {
        Some(quota) => b.write(
            Target::Unified,
            MAX,
            format!("{} {CFS_PERIOD_US}", quota.quota_us(CFS_PERIOD_US)),
        ),
        None if b.updating() => b.write(Target::Unified, MAX, format!("max {CFS_PERIOD_US}")),
        None => {}
    }
}

/// Parses v2 `cpu.stat`; times are in microseconds there.
pub fn parse_stat(text: &str, cpu: &mut CpuStats) {
    for (key, value) in flat_keyed(text) {
        let ns = value.saturating_mul(1000);
        match key {
            "usage_usec" => cpu.usage_ns = Some(ns),
            "user_usec" => cpu.user_ns = Some(ns),
            "system_usec" => cpu.system_ns = Some(ns),
            "nr_periods" => cpu.periods = Some(value),
            "nr_throttled" => cpu.throttled_periods = Some(value),
            "throttled_usec" => cpu.throttled_ns = Some(ns),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::plan::tests::v2_ctx;
    use crate::cgroup::plan::{plan, PlanMode};
    use crate::vocab::MilliCpus;

    #[test]
    fn weight_is_passed_through_and_quota_uses_the_default_period() {
        let res = Resources {
            cpu_weight: Some(CpuWeight::new(10_000).unwrap()),
            cpu_quota: Some(MilliCpus::new(250).unwrap()),
            ..Default::default()
        };
        let p = plan(&v2_ctx(PlanMode::Create), &res).unwrap();
        assert_eq!(p.value_of(WEIGHT), Some("10000"));
        assert_eq!(p.value_of(MAX), Some("25000 100000"));
        let p = plan(&v2_ctx(PlanMode::Update), &Resources::default()).unwrap();
        assert_eq!(p.value_of(WEIGHT), Some("100"));
        assert_eq!(p.value_of(MAX), Some("max 100000"));
    }

    #[test]
    fn parses_cpu_stat_in_microseconds() {
        let mut cpu = CpuStats::default();
        parse_stat(include_str!("../../../tests/fixtures/cgroup/v2/cpu.stat"), &mut cpu);
        assert_eq!(cpu.usage_ns, Some(2_518_716_000));
        assert_eq!(cpu.user_ns, Some(1_783_243_000));
        assert_eq!(cpu.system_ns, Some(735_473_000));
        assert_eq!(cpu.periods, Some(120));
        assert_eq!(cpu.throttled_periods, Some(18));
        assert_eq!(cpu.throttled_ns, Some(802_516_000));
    }
}
