//! v1 `cpuacct`: total CPU time in ns, user/system split in USER_HZ ticks.

use crate::cgroup::stats::{flat_keyed, CpuStats};

pub const USAGE: &str = "cpuacct.usage";
pub const STAT: &str = "cpuacct.stat";

/// Parses `cpuacct.usage` (one number, nanoseconds).
pub fn parse_usage(text: &str, cpu: &mut CpuStats) {
    cpu.usage_ns = text.trim().parse().ok();
}

/// Parses `cpuacct.stat` (`user`/`system` in ticks of `clk_tck` per second,
/// `sysconf(_SC_CLK_TCK)`, almost always 100).
pub fn parse_stat(text: &str, clk_tck: u64, cpu: &mut CpuStats) {
    let ns_per_tick = 1_000_000_000 / clk_tck.max(1);
    for (key, value) in flat_keyed(text) {
        match key {
            "user" => cpu.user_ns = Some(value.saturating_mul(ns_per_tick)),
            "system" => cpu.system_ns = Some(value.saturating_mul(ns_per_tick)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_samples() {
        let mut cpu = CpuStats::default();
        parse_usage(include_str!("../../../tests/fixtures/cgroup/v1/cpuacct.usage"), &mut cpu);
        parse_stat(include_str!("../../../tests/fixtures/cgroup/v1/cpuacct.stat"), 100, &mut cpu);
        assert_eq!(cpu.usage_ns, Some(187_324_370));
        assert_eq!(cpu.user_ns, Some(140_000_000));
        assert_eq!(cpu.system_ns, Some(40_000_000));
    }

    #[test]
    fn garbage_usage_is_unknown() {
        let mut cpu = CpuStats::default();
        parse_usage("nope\n", &mut cpu);
        assert_eq!(cpu.usage_ns, None);
    }
}
