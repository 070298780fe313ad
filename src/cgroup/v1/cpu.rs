//! v1 `cpu`: `cpu.shares`, CFS bandwidth, throttling statistics.

use crate::cgroup::layout::Controller;
use crate::cgroup::plan::{Builder, Target};
use crate::cgroup::resources::{Resources, CFS_PERIOD_US};
use crate::cgroup::stats::{flat_keyed, CpuStats};

pub const SHARES: &str = "cpu.shares";
pub const CFS_PERIOD: &str = "cpu.cfs_period_us";
pub const CFS_QUOTA: &str = "cpu.cfs_quota_us";
pub const STAT: &str = "cpu.stat";

const TARGET: Target = Target::V1(Controller::Cpu);
const DEFAULT_SHARES: u64 = 1024;

pub(crate) fn plan(res: &Resources, b: &mut Builder<'_>) {
    match res.cpu_weight {
        Some(weight) => b.write(TARGET, SHARES, weight.v1_shares()),
        None if b.updating() => b.write(TARGET, SHARES, DEFAULT_SHARES),
        None => {}
    }
    match res.cpu_quota {
        Some(quota) => {
            // Period before quota: the kernel checks quota against the period
            // in force when the quota is written.
            b.write(TARGET, CFS_PERIOD, CFS_PERIOD_US);
            b.write(TARGET, CFS_QUOTA, quota.quota_us(CFS_PERIOD_US));
        }
        None if b.updating() => b.write(TARGET, CFS_QUOTA, -1),
        None => {}
    }
}

/// Parses v1 `cpu.stat` (`nr_periods`, `nr_throttled`, `throttled_time` in ns).
pub fn parse_stat(text: &str, cpu: &mut CpuStats) {
    for (key, value) in flat_keyed(text) {
        match key {
            "nr_periods" => cpu.periods = Some(value),
            "nr_throttled" => cpu.throttled_periods = Some(value),
            "throttled_time" => cpu.throttled_ns = Some(value),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::plan::tests::v1_ctx;
    use crate::cgroup::plan::{plan, PlanMode};
    use crate::vocab::CpuWeight;
    use crate::vocab::MilliCpus;

    #[test]
    fn weight_and_quota_map_to_shares_and_cfs() {
        let res = Resources {
            cpu_weight: Some(CpuWeight::new(250).unwrap()),
            cpu_quota: Some(MilliCpus::new(1500).unwrap()),
            ..Default::default()
        };
        let p = plan(&v1_ctx(PlanMode::Create), &res).unwrap();
        assert_eq!(p.value_of(SHARES), Some("2560"));
        assert_eq!(p.value_of(CFS_PERIOD), Some("100000"));
        assert_eq!(p.value_of(CFS_QUOTA), Some("150000"));
        let period = p.writes.iter().position(|w| w.file == CFS_PERIOD).unwrap();
        let quota = p.writes.iter().position(|w| w.file == CFS_QUOTA).unwrap();
        assert!(period < quota);
    }

    #[test]
    fn update_resets_unset_knobs() {
        let p = plan(&v1_ctx(PlanMode::Update), &Resources::default()).unwrap();
        assert_eq!(p.value_of(SHARES), Some("1024"));
        assert_eq!(p.value_of(CFS_QUOTA), Some("-1"));
        let p = plan(&v1_ctx(PlanMode::Create), &Resources::default()).unwrap();
        assert_eq!(p.value_of(SHARES), None);
    }

    #[test]
    fn parses_a_real_cpu_stat() {
        let mut cpu = CpuStats::default();
        parse_stat(include_str!("../../../tests/fixtures/cgroup/v1/cpu.stat"), &mut cpu);
        assert_eq!(cpu.periods, Some(4));
        assert_eq!(cpu.throttled_periods, Some(2));
        assert_eq!(cpu.throttled_ns, Some(36_454_527));
    }
}
