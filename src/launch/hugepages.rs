//! Huge page limits on the host a run is planned on.
//!
//! The job file's sizes are the architecture's ([`crate::spec::hugepages`]);
//! whether this host can honour a limit is a fact of the host: the job's
//! cgroup must have the hugetlb controller, and the kernel must have a pool
//! of pages of that size with pages in it (reserved, or allowed by
//! overcommit). A run that asks for a limit the host cannot give is refused
//! with the reason, never started without the limit.
//!
//! [`check`] is pure; [`HugepageHost::read`] reads the pools from
//! `<sysfs>/kernel/mm/hugepages`, where the kernel lists one
//! `hugepages-<size>kB` directory per page size it has.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use crate::cgroup::HugetlbLimit;
use crate::spec::HugepageLimits;
use crate::vocab::Bytes;

/// One size's pool, as `hugepages-<size>kB` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HugepagePool {
    /// `nr_hugepages`: pages reserved for huge page use.
    pub pages: u64,
    /// `nr_overcommit_hugepages`: more the kernel may take from free memory.
    pub overcommit: u64,
}

/// What the host offers for huge pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HugepageHost {
    /// The directory the pools were read from, for messages.
    pub dir: PathBuf,
    /// A job's cgroup gets the hugetlb controller (a v1 hierarchy, or
    /// enabled in the v2 tree jobs get a cgroup in).
    pub controller: bool,
    /// Pools by page size in bytes.
    pub pools: BTreeMap<u64, HugepagePool>,
}

/// The facts of a host nobody read: no controller, no pools. Any limit is
/// refused against it.
pub static UNKNOWN_HOST: LazyLock<HugepageHost> = LazyLock::new(|| HugepageHost {
    dir: PathBuf::new(),
    controller: false,
    pools: BTreeMap::new(),
});

impl HugepageHost {
    /// The pools under `dir` (`/sys/kernel/mm/hugepages`). A missing or
    /// unreadable directory means no pools: hugetlbfs is not built in.
    pub fn read(dir: &Path, controller: bool) -> HugepageHost {
        let mut pools = BTreeMap::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let Some(kib) = name
                .to_str()
                .and_then(|n| n.strip_prefix("hugepages-"))
                .and_then(|n| n.strip_suffix("kB"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let count = |file: &str| {
                std::fs::read_to_string(entry.path().join(file))
                    .ok()
                    .and_then(|t| t.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            pools.insert(
                kib << 10,
                HugepagePool {
                    pages: count("nr_hugepages"),
                    overcommit: count("nr_overcommit_hugepages"),
                },
            );
        }
        HugepageHost { dir: dir.to_owned(), controller, pools }
    }

    fn pool_dir(&self, size: Bytes) -> PathBuf {
        self.dir.join(format!("hugepages-{}kB", size.get() >> 10))
    }
}

/// Why a host cannot honour a job's huge page limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HugepageRefusal {
    /// The job cgroup has no hugetlb controller.
    NoController,
    /// The kernel has no pool of that size.
    NoSuchSize { size: Bytes, dir: PathBuf },
    /// The pool has no pages and allows no overcommit.
    NoPages { size: Bytes, dir: PathBuf },
}

impl fmt::Display for HugepageRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HugepageRefusal::NoController => f.write_str(
                "resources.hugepages needs the hugetlb cgroup controller, which this host does \
                 not give jobs (neither a v1 hierarchy nor the v2 tree jobs are placed in has it)",
            ),
            HugepageRefusal::NoSuchSize { size, dir } => write!(
                f,
                "resources.hugepages: this host has no {size} huge pages ({} does not exist)",
                dir.display()
            ),
            HugepageRefusal::NoPages { size, dir } => write!(
                f,
                "resources.hugepages: this host has no {size} huge pages to give: nr_hugepages \
                 and nr_overcommit_hugepages are 0 in {}; reserve some or drop the limit",
                dir.display()
            ),
        }
    }
}

/// The job cgroup's huge page limits, if `host` can honour every one.
pub fn check(
    limits: &HugepageLimits,
    host: &HugepageHost,
) -> Result<Vec<HugetlbLimit>, HugepageRefusal> {
    if limits.is_empty() {
        return Ok(Vec::new());
    }
    if !host.controller {
        return Err(HugepageRefusal::NoController);
    }
    limits
        .iter()
        .map(|limit| {
            let dir = host.pool_dir(limit.size);
            match host.pools.get(&limit.size.get()) {
                None => Err(HugepageRefusal::NoSuchSize { size: limit.size, dir }),
                Some(pool) if pool.pages == 0 && pool.overcommit == 0 => {
                    Err(HugepageRefusal::NoPages { size: limit.size, dir })
                }
                Some(_) => Ok(cgroup_limit(limit.size, limit.limit)),
            }
        })
        .collect()
}

/// The cgroup layer's form of one limit.
pub fn cgroup_limit(size: Bytes, limit: Bytes) -> HugetlbLimit {
    HugetlbLimit { page_size: size.get(), limit_bytes: limit.get() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::hugepages::ARCH_SIZES;

    fn limits(pairs: &[(Bytes, Bytes)]) -> HugepageLimits {
        HugepageLimits::new(pairs.iter().copied()).unwrap()
    }

    fn host(pools: &[(Bytes, u64, u64)]) -> HugepageHost {
        HugepageHost {
            dir: "/sys/kernel/mm/hugepages".into(),
            controller: true,
            pools: pools
                .iter()
                .map(|&(size, pages, overcommit)| (size.get(), HugepagePool { pages, overcommit }))
                .collect(),
        }
    }

    #[test]
    fn no_limits_need_nothing_of_the_host() {
        assert_eq!(check(&HugepageLimits::default(), &UNKNOWN_HOST), Ok(Vec::new()));
    }

    #[test]
    fn every_limit_needs_the_controller_and_a_pool_with_pages() {
        let size = ARCH_SIZES[0];
        let want = limits(&[(size, Bytes(size.get() * 4))]);
        let expected = vec![HugetlbLimit { page_size: size.get(), limit_bytes: size.get() * 4 }];
        assert_eq!(check(&want, &host(&[(size, 8, 0)])), Ok(expected.clone()));
        assert_eq!(check(&want, &host(&[(size, 0, 8)])), Ok(expected));
        assert_eq!(check(&want, &UNKNOWN_HOST), Err(HugepageRefusal::NoController));
        let dir =
            PathBuf::from(format!("/sys/kernel/mm/hugepages/hugepages-{}kB", size.get() >> 10));
        assert_eq!(
            check(&want, &host(&[])),
            Err(HugepageRefusal::NoSuchSize { size, dir: dir.clone() })
        );
        let empty = check(&want, &host(&[(size, 0, 0)])).unwrap_err();
        assert_eq!(empty, HugepageRefusal::NoPages { size, dir: dir.clone() });
        let message = empty.to_string();
        assert!(message.contains(&format!("no {size} huge pages")), "{message}");
        assert!(message.contains(&dir.display().to_string()), "{message}");
    }

    #[test]
    fn pools_are_read_from_the_kernel_directories() {
        let root = tempfile::tempdir().unwrap();
        for (name, pages, overcommit) in
            [("hugepages-2048kB", "3\n", "0\n"), ("hugepages-1048576kB", "0\n", "1\n")]
        {
            let dir = root.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("nr_hugepages"), pages).unwrap();
            std::fs::write(dir.join("nr_overcommit_hugepages"), overcommit).unwrap();
        }
        std::fs::create_dir(root.path().join("not-a-pool")).unwrap();
        let host = HugepageHost::read(root.path(), true);
        assert_eq!(
            host.pools,
            BTreeMap::from([
                (2 << 20, HugepagePool { pages: 3, overcommit: 0 }),
                (1 << 30, HugepagePool { pages: 0, overcommit: 1 }),
            ])
        );
        assert!(HugepageHost::read(&root.path().join("absent"), true).pools.is_empty());
    }
}
