//! Pure parsers for the sysfs and procfs files topology discovery reads.
//!
//! Each takes the file's text and knows nothing of paths; the discovery layer
//! attaches the path to any error.

use super::cpuset::{CpuSet, NodeSet};
use super::error::ParseError;
use crate::vocab::Bytes;

/// The two memory figures placement cares about, from a meminfo file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    pub total: Bytes,
    pub free: Bytes,
}

/// A single decimal number, as in `topology/core_id`.
///
/// `physical_package_id` and `core_id` read `-1` on architectures that do not
/// know them; those become 0, since every CPU then shares the one package.
pub fn parse_id(text: &str, what: &'static str) -> Result<u32, ParseError> {
    let trimmed = text.trim();
    let value: i64 =
        trimmed.parse().map_err(|_| ParseError::Value { what, value: trimmed.to_owned() })?;
    if value == -1 {
        return Ok(0);
    }
    u32::try_from(value).map_err(|_| ParseError::Value { what, value: trimmed.to_owned() })
}

/// `/sys/devices/system/node/nodeN/meminfo`: lines `Node 0 MemTotal:  24589956 kB`.
/// Every line must name `node`; hugepage counters without a unit are skipped.
pub fn parse_node_meminfo(text: &str, node: u32) -> Result<MemInfo, ParseError> {
    meminfo_fields(text, |number, line| {
        let rest = line.trim_start().strip_prefix("Node ").ok_or_else(|| bad_line(number, line))?;
        let (id, rest) = rest.trim_start().split_once(' ').ok_or_else(|| bad_line(number, line))?;
        let found: u32 = id.parse().map_err(|_| bad_line(number, line))?;
        if found != node {
            return Err(ParseError::WrongNode { line: number, found, expected: node });
        }
        Ok(rest)
    })
}

/// `/proc/meminfo`: lines `MemTotal:       24684092 kB`.
pub fn parse_meminfo(text: &str) -> Result<MemInfo, ParseError> {
    meminfo_fields(text, |_, line| Ok(line.trim_start()))
}

fn bad_line(number: usize, line: &str) -> ParseError {
    ParseError::Line { line: number, text: line.to_owned(), what: "meminfo line" }
}

/// Shared body of both meminfo formats; `strip` removes the per-format prefix
/// and returns `Key:   value [kB]`.
fn meminfo_fields(
    text: &str,
    strip: impl for<'l> Fn(usize, &'l str) -> Result<&'l str, ParseError>,
) -> Result<MemInfo, ParseError> {
    let mut total = None;
    let mut free = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let rest = strip(number, line)?;
        let (key, value) = rest.split_once(':').ok_or_else(|| bad_line(number, line))?;
        let slot = match key.trim() {
            "MemTotal" => &mut total,
            "MemFree" => &mut free,
            _ => continue,
        };
        // The kernel's "kB" is KiB (it prints `pages << (PAGE_SHIFT - 10)`).
        let kib = value
            .trim()
            .strip_suffix("kB")
            .and_then(|n| n.trim().parse::<u64>().ok())
            .ok_or_else(|| bad_line(number, line))?;
        *slot = Some(Bytes::from_kib(kib));
    }
    Ok(MemInfo {
        total: total.ok_or(ParseError::Missing { field: "MemTotal" })?,
        free: free.ok_or(ParseError::Missing { field: "MemFree" })?,
    })
}

/// `/sys/devices/system/node/nodeN/distance`: one relative distance per online
/// node, in node order (`10 21`). 10 means local by ACPI SLIT convention.
pub fn parse_distances(text: &str) -> Result<Vec<u32>, ParseError> {
    let distances = text
        .split_whitespace()
        .map(|field| {
            field
                .parse()
                .map_err(|_| ParseError::Value { what: "distance", value: field.to_owned() })
        })
        .collect::<Result<Vec<u32>, _>>()?;
    if distances.is_empty() {
        return Err(ParseError::Value { what: "distance row", value: text.to_owned() });
    }
    Ok(distances)
}

/// `/proc/self/status`: the process's `Cpus_allowed_list` and `Mems_allowed_list`.
pub fn parse_status_allowed(text: &str) -> Result<(CpuSet, NodeSet), ParseError> {
    let mut cpus = None;
    let mut mems = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        match key {
            "Cpus_allowed_list" => cpus = Some(CpuSet::parse(value)?),
            "Mems_allowed_list" => mems = Some(NodeSet::parse(value)?),
            _ => {}
        }
    }
    Ok((
        cpus.ok_or(ParseError::Missing { field: "Cpus_allowed_list" })?,
        mems.ok_or(ParseError::Missing { field: "Mems_allowed_list" })?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE_MEMINFO: &str = "\
Node 0 MemTotal:        24589956 kB
Node 0 MemFree:         21060224 kB
Node 0 MemUsed:          3529732 kB
Node 0 HugePages_Total:     0
Node 0 HugePages_Free:      0
";

    #[test]
    fn node_meminfo_reads_total_and_free_in_kib() {
        let info = parse_node_meminfo(NODE_MEMINFO, 0).unwrap();
        assert_eq!(info.total, Bytes(24589956 * 1024));
        assert_eq!(info.free, Bytes(21060224 * 1024));
    }

    #[test]
    fn node_meminfo_rejects_another_nodes_lines() {
        let err = parse_node_meminfo(NODE_MEMINFO, 1).unwrap_err();
        assert!(matches!(err, ParseError::WrongNode { line: 1, found: 0, expected: 1 }), "{err}");
    }

    #[test]
    fn node_meminfo_reports_missing_and_malformed_fields() {
        let err = parse_node_meminfo("Node 0 MemTotal: 5 kB\n", 0).unwrap_err();
        assert!(matches!(err, ParseError::Missing { field: "MemFree" }), "{err}");
        let err =
            parse_node_meminfo("Node 0 MemTotal: five kB\nNode 0 MemFree: 1 kB\n", 0).unwrap_err();
        assert!(matches!(err, ParseError::Line { line: 1, .. }), "{err}");
        assert!(parse_node_meminfo("MemTotal: 5 kB\n", 0).is_err());
    }

    #[test]
    fn node_meminfo_of_a_memoryless_node_is_zero() {
        let info =
            parse_node_meminfo("Node 1 MemTotal:  0 kB\nNode 1 MemFree:  0 kB\n", 1).unwrap();
        assert_eq!(info, MemInfo { total: Bytes(0), free: Bytes(0) });
    }

    #[test]
    fn proc_meminfo() {
        let text = "MemTotal:       24684092 kB\nMemFree:        21060224 kB\n\
                    MemAvailable:   24258920 kB\nHugePages_Total:       0\n";
        let info = parse_meminfo(text).unwrap();
        assert_eq!(info.total, Bytes::from_kib(24684092));
        assert_eq!(info.free, Bytes::from_kib(21060224));
    }

    #[test]
    fn distances() {
        assert_eq!(parse_distances("10 16 32 32\n").unwrap(), vec![10, 16, 32, 32]);
        assert_eq!(parse_distances("10\n").unwrap(), vec![10]);
        assert!(parse_distances("\n").is_err());
        assert!(parse_distances("10 x\n").is_err());
    }

    #[test]
    fn status_allowed_lists() {
        let text = "Name:\tcorral\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\n\
                    Mems_allowed:\t00000000,00000001\nMems_allowed_list:\t0\n";
        let (cpus, mems) = parse_status_allowed(text).unwrap();
        assert_eq!(cpus.to_string(), "0-1");
        assert_eq!(mems.to_string(), "0");
        let err = parse_status_allowed("Name:\tcorral\n").unwrap_err();
        assert!(matches!(err, ParseError::Missing { field: "Cpus_allowed_list" }));
        assert!(parse_status_allowed("Cpus_allowed_list:\tx\nMems_allowed_list:\t0\n").is_err());
    }

    #[test]
    fn ids() {
        assert_eq!(parse_id("3\n", "core_id").unwrap(), 3);
        assert_eq!(parse_id("-1\n", "core_id").unwrap(), 0);
        assert!(parse_id("-2", "core_id").is_err());
        assert!(parse_id("", "core_id").is_err());
    }
}
