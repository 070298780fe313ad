//! v1 `blkio`: bytes and operations per device.
//!
//! `blkio.throttle.io_service_bytes`/`io_serviced` are the files that count
//! I/O on every scheduler. On recent kernels they only count I/O to devices
//! that have a throttle rule in the cgroup; without one they read `Total 0`.

use crate::cgroup::stats::DeviceIo;

pub const SERVICE_BYTES: &str = "blkio.throttle.io_service_bytes";
pub const SERVICED: &str = "blkio.throttle.io_serviced";

/// Parses a pair of `MAJ:MIN Op VALUE` files into per-device counters.
pub fn parse_throttle(bytes: &str, ops: &str) -> Vec<DeviceIo> {
    let mut devices: Vec<DeviceIo> = Vec::new();
    for (text, is_bytes) in [(bytes, true), (ops, false)] {
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            let (Some(dev), Some(op), Some(value)) = (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let (Some((major, minor)), Ok(value)) = (parse_dev(dev), value.parse::<u64>()) else {
                continue;
            };
            let pos = match devices.iter().position(|d| d.major == major && d.minor == minor) {
                Some(pos) => pos,
                None => {
                    devices.push(DeviceIo { major, minor, ..Default::default() });
                    devices.len() - 1
                }
            };
            let device = &mut devices[pos];
            match (op, is_bytes) {
                ("Read", true) => device.read_bytes = value,
                ("Write", true) => device.write_bytes = value,
                ("Read", false) => device.read_ops = value,
                ("Write", false) => device.write_ops = value,
                _ => {}
            }
        }
    }
    devices
}

pub(crate) fn parse_dev(dev: &str) -> Option<(u32, u32)> {
    let (major, minor) = dev.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_throttle_files() {
        let devices = parse_throttle(
            include_str!("../../../tests/fixtures/cgroup/v1/blkio.throttle.io_service_bytes"),
            include_str!("../../../tests/fixtures/cgroup/v1/blkio.throttle.io_serviced"),
        );
        assert_eq!(
            devices,
            vec![DeviceIo {
                major: 254,
                minor: 0,
                read_bytes: 8_388_608,
                write_bytes: 8_388_608,
                read_ops: 8,
                write_ops: 16,
            }]
        );
    }

    #[test]
    fn no_rule_means_no_devices() {
        assert!(parse_throttle("Total 0\n", "Total 0\n").is_empty());
    }
}
