//! v2 `io`: `io.stat`, one line per device of `key=value` counters.

use crate::cgroup::stats::DeviceIo;
use crate::cgroup::v1::blkio::parse_dev;

pub const STAT: &str = "io.stat";

pub fn parse_stat(text: &str) -> Vec<DeviceIo> {
    let mut devices = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some((major, minor)) = fields.next().and_then(parse_dev) else {
            continue;
        };
        let mut device = DeviceIo { major, minor, ..Default::default() };
        for field in fields {
            let Some((key, value)) = field.split_once('=') else { continue };
            let Ok(value) = value.parse() else { continue };
            match key {
                "rbytes" => device.read_bytes = value,
                "wbytes" => device.write_bytes = value,
                "rios" => device.read_ops = value,
                "wios" => device.write_ops = value,
                _ => {}
            }
        }
        devices.push(device);
    }
    devices
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_io_stat() {
        let devices = parse_stat(include_str!("../../../tests/fixtures/cgroup/v2/io.stat"));
        assert_eq!(
            devices,
            vec![
                DeviceIo {
                    major: 8,
                    minor: 16,
                    read_bytes: 1_459_200,
                    write_bytes: 314_773_504,
                    read_ops: 192,
                    write_ops: 353,
                },
                DeviceIo {
                    major: 8,
                    minor: 0,
                    read_bytes: 90_430_464,
                    write_bytes: 299_008_000,
                    read_ops: 8950,
                    write_ops: 1252,
                },
            ]
        );
    }
}
