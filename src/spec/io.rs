//! `resources.io`: a relative I/O weight and per-device throttles.
//!
//! The compiler checks syntax, ranges and repeats only. Whether a path names a block
//! device, and which `MAJ:MIN` it has, is a fact of the host the run starts on, so the
//! launch layer resolves it there and refuses the run if it cannot.

use std::fmt;

use super::check::Checker;
use super::error::{FieldPath, SpecError};
use super::paths::AbsPath;
use super::tree::Node;
use crate::vocab::Bytes;

/// The relative I/O weight range, that of cgroup v2 `io.weight` (default 100).
pub const MIN_IO_WEIGHT: u16 = 1;
pub const MAX_IO_WEIGHT: u16 = 10_000;
/// Above this a bandwidth limit is no limit at all (no block device moves a tebibyte a
/// second), so such a value is taken for a typo.
pub const MAX_BPS: Bytes = Bytes(1 << 40);
/// Above this an operation limit is no limit at all.
pub const MAX_IOPS: u64 = 100_000_000;

/// A block device as a job file names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlockDevice {
    /// A device node such as `/dev/vda`, resolved on the host at launch.
    Path(AbsPath),
    /// `MAJ:MIN`, as the kernel's cgroup files write it.
    Number { major: u32, minor: u32 },
}

impl BlockDevice {
    pub fn parse(text: &str) -> Result<BlockDevice, SpecError> {
        if text.starts_with('/') {
            return AbsPath::parse(text, "block device").map(BlockDevice::Path);
        }
        let number = text.split_once(':').and_then(|(major, minor)| {
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if !digits(major) || !digits(minor) {
                return None;
            }
            // The kernel's device numbers: 12 bits of major, 20 of minor.
            let major = major.parse::<u32>().ok().filter(|&m| m < 1 << 12)?;
            let minor = minor.parse::<u32>().ok().filter(|&m| m < 1 << 20)?;
            Some(BlockDevice::Number { major, minor })
        });
        number.ok_or_else(|| SpecError::Invalid {
            what: "block device",
            value: text.to_owned(),
            reason: "expected a device path such as /dev/vda or MAJ:MIN such as 254:0".into(),
        })
    }
}

impl fmt::Display for BlockDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockDevice::Path(path) => write!(f, "{path}"),
            BlockDevice::Number { major, minor } => write!(f, "{major}:{minor}"),
        }
    }
}

/// Throttles on one device; each unset one is unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IoDeviceLimit {
    pub device: BlockDevice,
    pub read_bps: Option<Bytes>,
    pub write_bps: Option<Bytes>,
    pub read_iops: Option<u64>,
    pub write_iops: Option<u64>,
}

/// The `io` part of `resources`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct IoLimits {
    /// Share of disk time against other jobs, 1 to 10000; unset keeps the kernel default.
    pub weight: Option<u16>,
    pub devices: Vec<IoDeviceLimit>,
}

impl IoLimits {
    pub fn is_empty(&self) -> bool {
        self.weight.is_none() && self.devices.is_empty()
    }
}

const FIELDS: &[&str] = &["weight", "limits"];
const LIMIT_FIELDS: &[&str] = &["device", "read_bps", "write_bps", "read_iops", "write_iops"];

pub(super) fn compile(cx: &mut Checker, node: &Node, path: &FieldPath) -> Option<IoLimits> {
    let fields = cx.map(node, path, FIELDS)?;
    let weight = match fields.get("weight") {
        None => Some(None),
        Some(n) => cx.int(n, &fields.field("weight"), MIN_IO_WEIGHT..=MAX_IO_WEIGHT).map(Some),
    };
    let devices = match fields.get("limits") {
        None => Some(Vec::new()),
        Some(n) => limits(cx, n, &fields.field("limits")),
    };
    Some(IoLimits { weight: weight?, devices: devices? })
}

fn limits(cx: &mut Checker, node: &Node, path: &FieldPath) -> Option<Vec<IoDeviceLimit>> {
    let items = cx.seq(node, path)?;
    let mut out: Vec<IoDeviceLimit> = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = path.index(i);
        match limit(cx, item, &path) {
            Some(limit) if out.iter().any(|other| other.device == limit.device) => {
                ok = false;
                cx.report(
                    item.pos,
                    &path.key("device"),
                    SpecError::DuplicateItem { value: limit.device.to_string() },
                );
            }
            Some(limit) => out.push(limit),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn limit(cx: &mut Checker, node: &Node, path: &FieldPath) -> Option<IoDeviceLimit> {
    let fields = cx.map(node, path, LIMIT_FIELDS)?;
    let device = fields
        .require(cx, "device")
        .and_then(|n| cx.parsed_text(n, &fields.field("device"), BlockDevice::parse));
    let mut bps = |key: &'static str| -> Option<Option<Bytes>> {
        let Some(n) = fields.get(key) else { return Some(None) };
        let value = cx.bytes(n, &fields.field(key))?;
        out_of_band(cx, n, &fields.field(key), value.get(), value.to_string(), MAX_BPS.get())?;
        Some(Some(value))
    };
    let read_bps = bps("read_bps");
    let write_bps = bps("write_bps");
    let mut iops = |key: &'static str| -> Option<Option<u64>> {
        let Some(n) = fields.get(key) else { return Some(None) };
        cx.int(n, &fields.field(key), 1..=MAX_IOPS).map(Some)
    };
    let read_iops = iops("read_iops");
    let write_iops = iops("write_iops");
    if !LIMIT_FIELDS[1..].iter().any(|key| fields.has(key)) {
        cx.report(
            fields.pos(),
            path,
            SpecError::Requires {
                field: "device",
                requirement: "at least one of `read_bps`, `write_bps`, `read_iops`, `write_iops`"
                    .into(),
            },
        );
        return None;
    }
    Some(IoDeviceLimit {
        device: device?,
        read_bps: read_bps?,
        write_bps: write_bps?,
        read_iops: read_iops?,
        write_iops: write_iops?,
    })
}

/// Zero (which would stop all I/O rather than limit it) and absurdly large rates.
fn out_of_band(
    cx: &mut Checker,
    node: &Node,
    path: &FieldPath,
    value: u64,
    text: String,
    max: u64,
) -> Option<()> {
    let reason = if value == 0 {
        "zero would stop all I/O to the device; leave the field out for no limit".to_owned()
    } else if value > max {
        format!("it must be at most {} per second", Bytes(max))
    } else {
        return Some(());
    };
    cx.report(node.pos, path, SpecError::Invalid { what: "I/O rate", value: text, reason });
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testutil::{error, errors, ok};

    #[test]
    fn weight_and_limits_by_path_or_number() {
        let io = ok("resources:\n  io:\n    weight: 500\n    limits:\n      - {device: /dev/vda, write_bps: 1Mi, read_iops: 100}\n      - {device: '8:16', read_bps: 10M}\n")
            .resources
            .io;
        assert_eq!(io.weight, Some(500));
        assert_eq!(
            io.devices,
            vec![
                IoDeviceLimit {
                    device: BlockDevice::Path(AbsPath::parse("/dev/vda", "x").unwrap()),
                    read_bps: None,
                    write_bps: Some(Bytes::MIB),
                    read_iops: Some(100),
                    write_iops: None,
                },
                IoDeviceLimit {
                    device: BlockDevice::Number { major: 8, minor: 16 },
                    read_bps: Some(Bytes(10_000_000)),
                    write_bps: None,
                    read_iops: None,
                    write_iops: None,
                },
            ]
        );
        assert!(ok("resources: {cpu_weight: 10}\n").resources.io.is_empty());
    }

    #[test]
    fn weight_range() {
        assert_eq!(
            error("resources: {io: {weight: 0}}\n"),
            "3 resources.io.weight: 0 is out of range; allowed: 1 to 10000"
        );
        assert_eq!(
            error("resources: {io: {weight: 10001}}\n"),
            "3 resources.io.weight: 10001 is out of range; allowed: 1 to 10000"
        );
    }

    #[test]
    fn zero_absurd_and_repeated_limits_are_all_reported() {
        assert_eq!(
            errors(
                "resources:\n  io:\n    limits:\n      - {device: /dev/vda, write_bps: 0}\n      - {device: /dev/vdb, read_bps: 2Ti, write_iops: 0}\n      - {device: /dev/vdc, read_iops: 1}\n      - {device: /dev/vdc, write_iops: 1}\n"
            ),
            [
                "6 resources.io.limits[0].write_bps: invalid I/O rate \"0\": zero would stop all \
                 I/O to the device; leave the field out for no limit",
                "7 resources.io.limits[1].read_bps: invalid I/O rate \"2Ti\": it must be at \
                 most 1Ti per second",
                "7 resources.io.limits[1].write_iops: 0 is out of range; allowed: 1 to 100000000",
                "9 resources.io.limits[3].device: \"/dev/vdc\" is listed twice",
            ]
        );
    }

    #[test]
    fn a_device_needs_a_limit_and_a_valid_name() {
        assert_eq!(
            error("resources: {io: {limits: [{device: /dev/vda}]}}\n"),
            "3 resources.io.limits[0]: `device` requires at least one of `read_bps`, \
             `write_bps`, `read_iops`, `write_iops`"
        );
        assert_eq!(
            error("resources: {io: {limits: [{write_bps: 1Mi}]}}\n"),
            "3 resources.io.limits[0]: required field `device` is missing"
        );
        for bad in ["vda", "8:", "8:x", "4096:0", "-1:0"] {
            assert!(
                error(&format!(
                    "resources: {{io: {{limits: [{{device: '{bad}', write_bps: 1Mi}}]}}}}\n"
                ))
                .contains("invalid block device"),
                "{bad}"
            );
        }
    }
}
