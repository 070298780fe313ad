//! CPU, memory and process-count limits, and how each maps onto cgroup v1 and v2 files.

use super::check::{Checker, Choice};
use super::error::{FieldPath, SpecError};
use super::hugepages::HugepageLimits;
use super::tree::Node;
use crate::vocab::Bytes;
use crate::vocab::{CpuWeight, MilliCpus, NumaPolicy};

/// How a job gets CPU time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CpuRequest {
    /// Whole cores of its own, pinned (`cpuset.cpus`), taken out of the shared pool.
    Exclusive { cpus: u32 },
    /// A share of the pool of CPUs no job holds exclusively, by weight.
    Shared { weight: CpuWeight },
}

impl Default for CpuRequest {
    fn default() -> Self {
        CpuRequest::Shared { weight: CpuWeight::DEFAULT }
    }
}

impl Choice for NumaPolicy {
    const ALL: &'static [(&'static str, Self)] = &[
        (NumaPolicy::None.word(), NumaPolicy::None),
        (NumaPolicy::Prefer.word(), NumaPolicy::Prefer),
        (NumaPolicy::SingleNode.word(), NumaPolicy::SingleNode),
    ];
}

/// Memory limits. Each is optional; when several are set, `soft <= high <= hard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MemoryLimits {
    /// Reclaimed first under pressure above this; protected below it.
    /// v1 `memory.soft_limit_in_bytes`, v2 `memory.low`.
    pub soft: Option<Bytes>,
    /// Throttled and reclaimed hard above this, not killed. v2 `memory.high`; v1 has no
    /// such limit, so it is not enforced on v1 hosts.
    pub high: Option<Bytes>,
    /// Never more than this: the OOM policy takes over. v1 `memory.limit_in_bytes`,
    /// v2 `memory.max`.
    pub hard: Option<Bytes>,
    /// Swap allowed on top of `hard`. v2 `memory.swap.max`; v1
    /// `memory.memsw.limit_in_bytes` = hard + swap.
    pub swap: Option<Bytes>,
}

impl MemoryLimits {
    /// The value for cgroup v1 `memory.memsw.limit_in_bytes`, which counts memory and swap
    /// together.
    pub fn v1_memsw(&self) -> Option<Bytes> {
        self.hard?.checked_add(self.swap?)
    }
}

/// The resource section of a job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Resources {
    pub cpu: CpuRequest,
    /// A cap on CPU time, whatever the CPUs are (`cpu.max` / `cpu.cfs_quota_us`).
    pub cpu_quota: Option<MilliCpus>,
    pub numa: NumaPolicy,
    pub memory: MemoryLimits,
    /// Most tasks (processes and threads) at once: `pids.max`.
    pub pids: Option<u32>,
    /// Block I/O weight and per-device throttles (`io.*` / `blkio.*`).
    pub io: super::io::IoLimits,
    /// Most memory in huge pages, per page size: v1
    /// `hugetlb.<size>.limit_in_bytes`, v2 `hugetlb.<size>.max`.
    pub hugepages: HugepageLimits,
}

/// The smallest memory limit accepted: less cannot even start a shell.
pub const MIN_MEMORY: Bytes = Bytes::MIB;
/// The kernel's largest `pid_max`.
pub const MAX_PIDS: u32 = 4_194_304;
pub const MAX_EXCLUSIVE_CPUS: u32 = 4096;

const FIELDS: &[&str] =
    &["cpus", "cpu_weight", "cpu_quota", "numa", "memory", "pids", "io", "hugepages"];

/// Compiles `resources`. Besides the result, returns the hard memory limit on its own
/// (`None` if `memory` did not compile), so that the OOM policy can be checked against it
/// even when another part of `resources` is wrong.
pub(super) fn compile(
    cx: &mut Checker,
    node: Option<&Node>,
    path: &FieldPath,
) -> (Option<Resources>, Option<Option<Bytes>>) {
    let Some(node) = node else { return (Some(Resources::default()), Some(None)) };
    let Some(fields) = cx.map(node, path, FIELDS) else { return (None, None) };

    let cpus = fields.get("cpus").map(|n| cx.int(n, &fields.field("cpus"), 1..=MAX_EXCLUSIVE_CPUS));
    let weight = fields.get("cpu_weight").map(|n| {
        cx.int(n, &fields.field("cpu_weight"), CpuWeight::MIN..=CpuWeight::MAX)
            .and_then(CpuWeight::new)
    });
    let cpu = match (cpus, weight) {
        (Some(_), Some(_)) => {
            cx.report(
                fields.key_pos("cpu_weight"),
                &fields.field("cpu_weight"),
                SpecError::MutuallyExclusive {
                    first: "cpus",
                    second: "cpu_weight",
                    why: "exclusive cores are not shared, so there is nothing to weigh",
                },
            );
            None
        }
        (Some(cpus), None) => cpus.map(|cpus| CpuRequest::Exclusive { cpus }),
        (None, Some(weight)) => weight.map(|weight| CpuRequest::Shared { weight }),
        (None, None) => Some(CpuRequest::default()),
    };

    let cpu_quota = match fields.get("cpu_quota") {
        None => Some(None),
        Some(n) => {
            let expected = "a number of CPUs such as 1.5 or 500m";
            cx.decimal(n, &fields.field("cpu_quota"), expected, "CPU quota", MilliCpus::parse)
                .map(Some)
        }
    };
    if let (Some(Some(quota)), Some(Some(cpus))) = (cpu_quota, cpus) {
        if u64::from(quota.get()) > u64::from(cpus) * 1000 {
            cx.report(
                fields.key_pos("cpu_quota"),
                &fields.field("cpu_quota"),
                SpecError::NotInOrder {
                    lower: "cpu_quota",
                    lower_value: quota.to_string(),
                    upper: "cpus",
                    upper_value: cpus.to_string(),
                },
            );
        }
    }

    let numa = match fields.get("numa") {
        None => Some(NumaPolicy::None),
        Some(n) => cx.choice(n, &fields.field("numa")),
    };
    // NUMA placement is a property of exclusive cores: a shared-pool job runs on the
    // whole pool, which spans every node, so `prefer`/`single-node` there would promise
    // a locality the placer does not give.
    if matches!(numa, Some(NumaPolicy::Prefer | NumaPolicy::SingleNode)) && cpus.is_none() {
        cx.report(
            fields.key_pos("numa"),
            &fields.field("numa"),
            SpecError::Requires {
                field: "numa",
                requirement: "exclusive `cpus`; shared-pool jobs run on every node".to_owned(),
            },
        );
    }
    let memory = match fields.get("memory") {
        None => Some(MemoryLimits::default()),
        Some(n) => memory(cx, n, &fields.field("memory")),
    };
    let pids = match fields.get("pids") {
        None => Some(None),
        Some(n) => cx.int(n, &fields.field("pids"), 1..=MAX_PIDS).map(Some),
    };

    let io = match fields.get("io") {
        None => Some(super::io::IoLimits::default()),
        Some(n) => super::io::compile(cx, n, &fields.field("io")),
    };
    let hugepages = match fields.get("hugepages") {
        None => Some(HugepageLimits::default()),
        Some(n) => super::hugepages::compile(cx, n, &fields.field("hugepages")),
    };

    let hard = memory.map(|m| m.hard);
    let resources = (|| {
        Some(Resources {
            cpu: cpu?,
            cpu_quota: cpu_quota?,
            numa: numa?,
            memory: memory?,
            pids: pids?,
            io: io?,
            hugepages: hugepages?,
        })
    })();
    (resources, hard)
}

fn memory(cx: &mut Checker, node: &Node, path: &FieldPath) -> Option<MemoryLimits> {
    let fields = cx.map(node, path, &["soft", "high", "hard", "swap"])?;
    let mut limit = |key: &'static str, min: Bytes| -> Option<Option<(Bytes, &'static str)>> {
        let Some(n) = fields.get(key) else { return Some(None) };
        let bytes = cx.bytes(n, &fields.field(key))?;
        if bytes < min {
            cx.report(
                n.pos,
                &fields.field(key),
                SpecError::Invalid {
                    what: "memory limit",
                    value: bytes.to_string(),
                    reason: format!("it must be at least {min}; a job cannot run in less"),
                },
            );
            return None;
        }
        Some(Some((bytes, key)))
    };
    let soft = limit("soft", MIN_MEMORY);
    let high = limit("high", MIN_MEMORY);
    let hard = limit("hard", MIN_MEMORY);
    let swap = limit("swap", Bytes(0));

    // Every pair among the limits that are set, reported at the one that should be the
    // smaller; the message gives both values.
    let ordered = [soft.flatten(), high.flatten(), hard.flatten()];
    for (i, lower) in ordered.iter().enumerate() {
        for upper in &ordered[i + 1..] {
            if let (Some((lo, lo_key)), Some((hi, hi_key))) = (lower, upper) {
                if lo > hi {
                    cx.report(
                        fields.key_pos(lo_key),
                        &fields.field(lo_key),
                        SpecError::NotInOrder {
                            lower: lo_key,
                            lower_value: lo.to_string(),
                            upper: hi_key,
                            upper_value: hi.to_string(),
                        },
                    );
                }
            }
        }
    }
    if fields.has("swap") && !fields.has("hard") {
        cx.report(
            fields.key_pos("swap"),
            &fields.field("swap"),
            SpecError::Requires {
                field: "swap",
                requirement: "`hard`: swap is allowed on top of a hard limit".into(),
            },
        );
    }
    let value = |o: Option<(Bytes, &str)>| o.map(|(b, _)| b);
    Some(MemoryLimits {
        soft: value(soft?),
        high: value(high?),
        hard: value(hard?),
        swap: value(swap?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testutil::{error, errors, ok};

    #[test]
    fn exclusive_cpus_or_a_weight() {
        let r = ok("resources: {cpus: 2, numa: single-node}\n").resources;
        assert_eq!(r.cpu, CpuRequest::Exclusive { cpus: 2 });
        assert_eq!(r.numa, NumaPolicy::SingleNode);
        let r = ok("resources: {cpus: 1, numa: prefer}\n").resources;
        assert_eq!(r.numa, NumaPolicy::Prefer);
        let r = ok("resources: {cpu_weight: 500}\n").resources;
        assert_eq!(r.cpu, CpuRequest::Shared { weight: CpuWeight::new(500).unwrap() });
        assert_eq!(r.numa, NumaPolicy::None);
    }

    #[test]
    fn numa_placement_needs_exclusive_cpus() {
        for policy in ["prefer", "single-node"] {
            assert_eq!(
                error(&format!("resources: {{cpu_weight: 500, numa: {policy}}}\n")),
                "3 resources.numa: `numa` requires exclusive `cpus`; shared-pool jobs run on every node"
            );
        }
        ok("resources: {cpu_weight: 500, numa: none}\n");
    }

    #[test]
    fn cpus_and_cpu_weight_together_are_an_error() {
        assert_eq!(
            error("resources:\n  cpus: 1\n  cpu_weight: 200\n"),
            "5 resources.cpu_weight: `cpus` and `cpu_weight` cannot both be set: \
             exclusive cores are not shared, so there is nothing to weigh"
        );
    }

    #[test]
    fn cpu_ranges() {
        assert_eq!(
            error("resources: {cpus: 0}\n"),
            "3 resources.cpus: 0 is out of range; allowed: 1 to 4096"
        );
        assert_eq!(
            error("resources: {cpu_weight: 0}\n"),
            "3 resources.cpu_weight: 0 is out of range; allowed: 1 to 10000"
        );
        assert_eq!(
            error("resources: {cpu_weight: 10001}\n"),
            "3 resources.cpu_weight: 10001 is out of range; allowed: 1 to 10000"
        );
        assert_eq!(
            error("resources: {cpus: 1.5}\n"),
            "3 resources.cpus: expected an integer, found the number 1.5"
        );
        assert_eq!(
            error("resources: {numa: both}\n"),
            "3 resources.numa: \"both\" is not one of: none, prefer, single-node"
        );
    }

    #[test]
    fn cpu_quota_as_number_or_millicpus() {
        let quota = |v: &str| {
            ok(&format!("resources: {{cpu_quota: {v}}}\n")).resources.cpu_quota.unwrap().get()
        };
        assert_eq!(quota("1.5"), 1500);
        assert_eq!(quota("2"), 2000);
        assert_eq!(quota("500m"), 500);
        assert_eq!(quota("'0.25'"), 250);
        assert!(error("resources: {cpu_quota: 0.0001}\n").contains("at most three decimal places"));
        assert!(error("resources: {cpu_quota: 5m}\n").contains("between 10m and 4096 CPUs"));
        assert!(error("resources: {cpu_quota: lots}\n")
            .starts_with("3 resources.cpu_quota: invalid CPU quota"));
        assert_eq!(
            error("resources: {cpus: 1, cpu_quota: 2}\n"),
            "3 resources.cpu_quota: `cpu_quota` (2) must not be larger than `cpus` (1)"
        );
        assert_eq!(
            ok("resources: {cpus: 2, cpu_quota: 1.5}\n").resources.cpu_quota.unwrap().get(),
            1500
        );
    }

    #[test]
    fn memory_limits_in_order() {
        let m = ok("resources:\n  memory: {soft: 256Mi, high: 512Mi, hard: 1Gi, swap: 0}\n")
            .resources
            .memory;
        assert_eq!(m.soft, Some(Bytes(256 << 20)));
        assert_eq!(m.high, Some(Bytes(512 << 20)));
        assert_eq!(m.hard, Some(Bytes::GIB));
        assert_eq!(m.swap, Some(Bytes(0)));
        assert_eq!(
            ok("resources: {memory: {hard: 1073741824}}\n").resources.memory.hard,
            Some(Bytes::GIB)
        );
        assert_eq!(
            error("resources:\n  memory:\n    soft: 2Gi\n    hard: 1Gi\n"),
            "5 resources.memory.soft: `soft` (2Gi) must not be larger than `hard` (1Gi)"
        );
        assert_eq!(
            errors("resources:\n  memory:\n    soft: 2Gi\n    high: 1Gi\n    hard: 512Mi\n"),
            [
                "5 resources.memory.soft: `soft` (2Gi) must not be larger than `high` (1Gi)",
                "5 resources.memory.soft: `soft` (2Gi) must not be larger than `hard` (512Mi)",
                "6 resources.memory.high: `high` (1Gi) must not be larger than `hard` (512Mi)",
            ]
        );
        assert_eq!(
            error("resources: {memory: {swap: 1Gi}}\n"),
            "3 resources.memory.swap: `swap` requires `hard`: swap is allowed on top of a hard limit"
        );
        assert_eq!(
            error("resources: {memory: {hard: 1Ki}}\n"),
            "3 resources.memory.hard: invalid memory limit \"1Ki\": it must be at least 1Mi; a job cannot run in less"
        );
        assert_eq!(
            error("resources: {memory: {hard: 1GB}}\n"),
            "3 resources.memory.hard: invalid quantity \"1GB\": unit `GB` is written without the B: \
             use G (powers of 1000) or Gi (powers of 1024)"
        );
        assert_eq!(
            error("resources: {memory: {hard: -1}}\n"),
            "3 resources.memory.hard: invalid quantity \"-1\": it is negative"
        );
    }

    #[test]
    fn pids_range() {
        assert_eq!(ok("resources: {pids: 512}\n").resources.pids, Some(512));
        assert_eq!(
            error("resources: {pids: 0}\n"),
            "3 resources.pids: 0 is out of range; allowed: 1 to 4194304"
        );
    }

    #[test]
    fn weight_maps_to_v1_shares_like_systemd() {
        assert_eq!(CpuWeight::DEFAULT.v1_shares(), 1024);
        assert_eq!(CpuWeight::DEFAULT.v2_weight(), 100);
        assert_eq!(CpuWeight::new(1).unwrap().v1_shares(), 10);
        assert_eq!(CpuWeight::new(50).unwrap().v1_shares(), 512);
        assert_eq!(CpuWeight::new(10_000).unwrap().v1_shares(), 102_400);
        assert_eq!(CpuWeight::new(0), None);
        assert_eq!(CpuWeight::new(10_001), None);
    }

    #[test]
    fn quota_parses_cpus_and_millicpus() {
        let q = |s: &str| MilliCpus::parse(s).map(MilliCpus::get);
        assert_eq!(q("1.5"), Ok(1500));
        assert_eq!(q("2"), Ok(2000));
        assert_eq!(q("0.25"), Ok(250));
        assert_eq!(q("0.01"), Ok(10));
        assert_eq!(q("500m"), Ok(500));
        assert_eq!(q("10m"), Ok(10));
        assert!(q("9m").is_err());
        assert!(q("0").is_err());
        assert!(q("0.0001").is_err());
        assert!(q("1.5m").is_err());
        assert!(q("m").is_err());
        assert!(q("-1").is_err());
        assert!(q("1.").is_err());
        assert!(q(".5").is_err());
        assert!(q("4097").is_err());
        assert!(q("99999999999999999999").is_err());
        assert!(q("1 CPU").is_err());
    }

    #[test]
    fn quota_display_and_cgroup_value() {
        assert_eq!(MilliCpus::parse("1.5").unwrap().to_string(), "1.5");
        assert_eq!(MilliCpus::parse("500m").unwrap().to_string(), "0.5");
        assert_eq!(MilliCpus::parse("2").unwrap().to_string(), "2");
        assert_eq!(MilliCpus::parse("5m").map(|q| q.to_string()).ok(), None);
        assert_eq!(MilliCpus::parse("0.125").unwrap().to_string(), "0.125");
        assert_eq!(MilliCpus::parse("1.5").unwrap().quota_us(100_000), 150_000);
        assert_eq!(MilliCpus::parse("10m").unwrap().quota_us(100_000), 1_000);
    }

    #[test]
    fn memsw_is_hard_plus_swap() {
        let m =
            MemoryLimits { hard: Some(Bytes::GIB), swap: Some(Bytes::MIB), ..Default::default() };
        assert_eq!(m.v1_memsw(), Some(Bytes((1 << 30) + (1 << 20))));
        assert_eq!(MemoryLimits::default().v1_memsw(), None);
    }
}
