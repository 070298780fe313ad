//! Huge page limits: the same setting in v1 and v2, in files named after
//! the page size as the kernel spells it (`2MB`, `1GB`: binary units with
//! decimal-looking names).

/// Most bytes a job may hold in huge pages of `page_size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HugetlbLimit {
    pub page_size: u64,
    pub limit_bytes: u64,
}

/// A size's spelling and its v1 and v2 limit files. The planner's writes
/// name their files as `&'static str`, so the names are spelled out for
/// every size an architecture corral knows has.
const FILES: [(u64, &str, &str, &str); 9] = [
    (64 << 10, "64KB", "hugetlb.64KB.limit_in_bytes", "hugetlb.64KB.max"),
    (1 << 20, "1MB", "hugetlb.1MB.limit_in_bytes", "hugetlb.1MB.max"),
    (2 << 20, "2MB", "hugetlb.2MB.limit_in_bytes", "hugetlb.2MB.max"),
    (4 << 20, "4MB", "hugetlb.4MB.limit_in_bytes", "hugetlb.4MB.max"),
    (16 << 20, "16MB", "hugetlb.16MB.limit_in_bytes", "hugetlb.16MB.max"),
    (32 << 20, "32MB", "hugetlb.32MB.limit_in_bytes", "hugetlb.32MB.max"),
    (1 << 30, "1GB", "hugetlb.1GB.limit_in_bytes", "hugetlb.1GB.max"),
    (2 << 30, "2GB", "hugetlb.2GB.limit_in_bytes", "hugetlb.2GB.max"),
    (16 << 30, "16GB", "hugetlb.16GB.limit_in_bytes", "hugetlb.16GB.max"),
];

/// The kernel's name for a page size (`mm/hugetlb_cgroup.c`: GB from 1 GiB
/// up, MB from 1 MiB up, KB below).
pub fn size_name(page_size: u64) -> String {
    match page_size {
        s if s >= 1 << 30 && s % (1 << 30) == 0 => format!("{}GB", s >> 30),
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{}MB", s >> 20),
        s => format!("{}KB", s >> 10),
    }
}

fn files(page_size: u64) -> Option<(&'static str, &'static str)> {
    FILES.iter().find(|f| f.0 == page_size).map(|f| (f.2, f.3))
}

/// The page sizes the hugetlb controller has limit files for in `dir` (a
/// cgroup of its hierarchy): the kernel makes them for every size it has.
pub fn sizes_in(dir: &std::path::Path) -> Vec<u64> {
    FILES
        .iter()
        .filter(|(_, _, v1, v2)| dir.join(v1).exists() || dir.join(v2).exists())
        .map(|f| f.0)
        .collect()
}

/// The sizes in `sizes` that `limits` does not limit.
pub fn unlisted(limits: &[HugetlbLimit], sizes: &[u64]) -> impl Iterator<Item = u64> {
    let unlisted: Vec<u64> =
        sizes.iter().copied().filter(|s| !limits.iter().any(|l| l.page_size == *s)).collect();
    unlisted.into_iter()
}

/// v1 `hugetlb.<size>.limit_in_bytes`.
pub fn v1_limit_file(page_size: u64) -> Option<&'static str> {
    files(page_size).map(|f| f.0)
}

/// v2 `hugetlb.<size>.max`.
pub fn v2_max_file(page_size: u64) -> Option<&'static str> {
    files(page_size).map(|f| f.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_spelled_as_the_kernel_names_sizes() {
        for (size, name, v1, v2) in FILES {
            assert_eq!(size_name(size), name);
            assert_eq!(v1, format!("hugetlb.{name}.limit_in_bytes"));
            assert_eq!(v2, format!("hugetlb.{name}.max"));
        }
        assert_eq!(v1_limit_file(2 << 20), Some("hugetlb.2MB.limit_in_bytes"));
        assert_eq!(v2_max_file(1 << 30), Some("hugetlb.1GB.max"));
        assert_eq!(v2_max_file(8 << 20), None);
        assert_eq!(size_name(8 << 10), "8KB");
    }

    #[test]
    fn sizes_are_found_by_their_limit_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hugetlb.2MB.max"), "max\n").unwrap();
        std::fs::write(dir.path().join("hugetlb.1GB.limit_in_bytes"), "-1\n").unwrap();
        std::fs::write(dir.path().join("hugetlb.2MB.current"), "0\n").unwrap();
        assert_eq!(sizes_in(dir.path()), [2 << 20, 1 << 30]);
    }
}
