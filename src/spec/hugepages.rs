//! `resources.hugepages`: how much memory a job may hold in huge pages of
//! each size, enforced by the hugetlb cgroup controller (v1
//! `hugetlb.<size>.limit_in_bytes`, v2 `hugetlb.<size>.max`).
//!
//! The sizes a kernel can have are fixed by the architecture, so a size
//! the architecture does not have is an error in the job file, named with
//! the valid ones. Whether this host has the controller and pages of that
//! size is known only where the job runs: the launch refuses the run there.

use super::check::Checker;
use super::error::{FieldPath, SpecError};
use super::tree::Node;
use crate::vocab::Bytes;

/// The huge page sizes of the architecture corral was built for, smallest
/// first, as the kernel offers them with its default base page size (4 KiB
/// where there is a choice). A constant of the build, not read from the
/// host, so that a job file means the same on every machine of the
/// architecture.
#[cfg(target_arch = "x86_64")]
pub const ARCH_SIZES: &[Bytes] = &[Bytes::from_mib(2), Bytes::GIB];
#[cfg(target_arch = "x86")]
pub const ARCH_SIZES: &[Bytes] = &[Bytes::from_mib(2), Bytes::from_mib(4)];
/// Contiguous-PTE 64 KiB, PMD 2 MiB, contiguous-PMD 32 MiB, PUD 1 GiB.
#[cfg(target_arch = "aarch64")]
pub const ARCH_SIZES: &[Bytes] =
    &[Bytes::from_kib(64), Bytes::from_mib(2), Bytes::from_mib(32), Bytes::GIB];
/// Svnapot 64 KiB, PMD 2 MiB, PUD 1 GiB.
#[cfg(target_arch = "riscv64")]
pub const ARCH_SIZES: &[Bytes] = &[Bytes::from_kib(64), Bytes::from_mib(2), Bytes::GIB];
#[cfg(target_arch = "s390x")]
pub const ARCH_SIZES: &[Bytes] = &[Bytes::MIB, Bytes::from_gib(2)];
/// Radix MMU 2 MiB and 1 GiB, hash MMU 16 MiB and 16 GiB.
#[cfg(target_arch = "powerpc64")]
pub const ARCH_SIZES: &[Bytes] =
    &[Bytes::from_mib(2), Bytes::from_mib(16), Bytes::GIB, Bytes::from_gib(16)];
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "s390x",
    target_arch = "powerpc64"
)))]
pub const ARCH_SIZES: &[Bytes] = &[];

/// The most sizes any architecture above has.
const MAX_SIZES: usize = 4;

/// One limit: at most `limit` bytes in pages of `size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HugepageLimit {
    pub size: Bytes,
    pub limit: Bytes,
}

/// The job's huge page limits, at most one per size of [`ARCH_SIZES`];
/// sizes without a limit keep the kernel's default (unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HugepageLimits {
    /// By index into [`ARCH_SIZES`]: a fixed array keeps `Resources` `Copy`.
    by_size: [Option<Bytes>; MAX_SIZES],
}

impl HugepageLimits {
    /// Limits for `(size, limit)` pairs; `None` if a size is not one of
    /// the architecture's.
    pub fn new(limits: impl IntoIterator<Item = (Bytes, Bytes)>) -> Option<HugepageLimits> {
        let mut out = HugepageLimits::default();
        for (size, limit) in limits {
            out.by_size[ARCH_SIZES.iter().position(|s| *s == size)?] = Some(limit);
        }
        Some(out)
    }

    /// Every limit set, smallest page size first.
    pub fn iter(&self) -> impl Iterator<Item = HugepageLimit> + '_ {
        ARCH_SIZES
            .iter()
            .zip(self.by_size)
            .filter_map(|(&size, limit)| limit.map(|limit| HugepageLimit { size, limit }))
    }

    pub fn is_empty(&self) -> bool {
        self.by_size.iter().all(Option::is_none)
    }
}

/// The architecture's sizes as a message lists them: `2Mi and 1Gi`.
pub fn valid_sizes() -> String {
    let sizes: Vec<String> = ARCH_SIZES.iter().map(ToString::to_string).collect();
    match sizes.split_last() {
        None => "none".to_owned(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// Compiles `resources.hugepages`: a list of `{size, limit}`.
pub(super) fn compile(cx: &mut Checker, node: &Node, path: &FieldPath) -> Option<HugepageLimits> {
    let items = cx.seq(node, path)?;
    let mut limits: Vec<(Bytes, Bytes)> = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let item_path = path.index(i);
        let Some(fields) = cx.map(item, &item_path, &["size", "limit"]) else {
            ok = false;
            continue;
        };
        let size = fields.require(cx, "size").and_then(|n| {
            let size = cx.bytes(n, &fields.field("size"))?;
            if ARCH_SIZES.contains(&size) {
                return Some(size);
            }
            cx.report(
                n.pos,
                &fields.field("size"),
                SpecError::Invalid {
                    what: "huge page size",
                    value: size.to_string(),
                    reason: format!(
                        "this architecture ({}) has huge pages of {}",
                        std::env::consts::ARCH,
                        valid_sizes()
                    ),
                },
            );
            None
        });
        let limit = fields.require(cx, "limit").and_then(|n| cx.bytes(n, &fields.field("limit")));
        let (Some(size), Some(limit)) = (size, limit) else {
            ok = false;
            continue;
        };
        // The kernel rounds the limit down to whole pages: say so here
        // rather than enforce less than was written.
        if limit.get() % size.get() != 0 {
            ok = false;
            cx.report(
                fields.key_pos("limit"),
                &fields.field("limit"),
                SpecError::Invalid {
                    what: "huge page limit",
                    value: limit.to_string(),
                    reason: format!("it must be a whole number of {size} pages"),
                },
            );
            continue;
        }
        if limits.iter().any(|(s, _)| *s == size) {
            ok = false;
            cx.report(
                fields.key_pos("size"),
                &fields.field("size"),
                SpecError::DuplicateItem { value: size.to_string() },
            );
            continue;
        }
        limits.push((size, limit));
    }
    if !ok {
        return None;
    }
    HugepageLimits::new(limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testutil::{error, errors, ok};

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x86_64_has_2mi_and_1gi_pages() {
        assert_eq!(ARCH_SIZES, [Bytes::from_mib(2), Bytes::GIB]);
        assert_eq!(valid_sizes(), "2Mi and 1Gi");
        assert_eq!(
            error("resources:\n  hugepages: [{size: 4Mi, limit: 8Mi}]\n"),
            "4 resources.hugepages[0].size: invalid huge page size \"4Mi\": this architecture \
             (x86_64) has huge pages of 2Mi and 1Gi"
        );
    }

    #[test]
    fn limits_per_size_in_size_order() {
        let small = ARCH_SIZES[0];
        let large = *ARCH_SIZES.last().unwrap();
        let text = format!(
            "resources:\n  hugepages:\n    - {{size: {large}, limit: {large}}}\n    - {{size: {small}, limit: 0}}\n"
        );
        let limits: Vec<HugepageLimit> = ok(&text).resources.hugepages.iter().collect();
        let expected = [
            HugepageLimit { size: small, limit: Bytes::ZERO },
            HugepageLimit { size: large, limit: large },
        ];
        assert_eq!(limits, expected[..ARCH_SIZES.len().min(2)]);
        assert!(ok("resources: {cpus: 1}\n").resources.hugepages.is_empty());
    }

    #[test]
    fn a_size_not_of_the_architecture_names_the_valid_ones() {
        let message = error("resources:\n  hugepages: [{size: 3Mi, limit: 3Mi}]\n");
        assert!(
            message.starts_with("4 resources.hugepages[0].size: invalid huge page size \"3Mi\"")
        );
        assert!(message.ends_with(&valid_sizes()), "{message}");
    }

    #[test]
    fn every_problem_of_the_list_at_once() {
        let size = ARCH_SIZES[0];
        let text = format!(
            "resources:\n  hugepages:\n    - {{size: {size}, limit: 1}}\n    - {{size: {size}, limit: {size}}}\n    - {{size: {size}, limit: {size}}}\n    - {{limit: {size}}}\n    - {{size: {size}, limit: lots, max: 1}}\n"
        );
        let all = errors(&text);
        assert_eq!(all.len(), 5, "{all:#?}");
        assert!(all[0].starts_with("5 resources.hugepages[0].limit: invalid huge page limit \"1\""));
        assert!(all[0].ends_with(&format!("whole number of {size} pages")), "{}", all[0]);
        assert!(all[1].contains("hugepages[2].size") && all[1].contains("listed twice"), "{all:?}");
        assert!(all[2].contains("hugepages[3]") && all[2].contains("`size` is missing"), "{all:?}");
        assert!(all.iter().any(|e| e.contains("hugepages[4].limit: invalid quantity")), "{all:?}");
        assert!(all.iter().any(|e| e.contains("unknown field `max`")), "{all:?}");
        assert!(error("resources: {hugepages: {size: 2Mi}}\n").contains("expected a list"));
    }
}
