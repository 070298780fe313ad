//! v2 `io`: `io.stat`, one line per device of `key=value` counters, and the
//! limits: `io.max` (`MAJ:MIN rbps=… wbps=… riops=… wiops=…`, `max` for no
//! limit) and the weight.
//!
//! Two weight files, honoured by different parts of the kernel: `io.weight`
//! by the iocost controller (when `io.cost.qos` enables it for a device at
//! the root) and `io.bfq.weight` by the BFQ scheduler (when it is the
//! device's scheduler in `/sys/block/*/queue/scheduler`; the file exists
//! only while BFQ is loaded). corral writes both where they exist, as
//! systemd does, so the weight holds whichever of the two is in use; with
//! `none`, `mq-deadline` or `kyber` and iocost off, neither divides disk time.

use crate::cgroup::io::{bfq_weight, planned_weight};
use crate::cgroup::plan::{Builder, Target};
use crate::cgroup::resources::Resources;
use crate::cgroup::stats::DeviceIo;
use crate::cgroup::v1::blkio::parse_dev;

pub const STAT: &str = "io.stat";
pub const MAX: &str = "io.max";
pub const WEIGHT: &str = "io.weight";
pub const BFQ_WEIGHT: &str = "io.bfq.weight";

pub(crate) fn plan(res: &Resources, b: &mut Builder<'_>) {
    if let Some((weight, files)) = planned_weight(res, b, &[WEIGHT, BFQ_WEIGHT]) {
        for file in &files {
            let value = if *file == BFQ_WEIGHT { bfq_weight(weight) } else { u64::from(weight) };
            b.write(Target::Unified, file, format!("default {value}"));
        }
        if files.is_empty() && res.io.weight.is_some() {
            b.skip("I/O weight", "the job's cgroup has neither io.weight nor io.bfq.weight");
        }
    }
    for t in &res.io.throttles {
        let value = |v: Option<u64>| v.map_or_else(|| "max".to_owned(), |v| v.to_string());
        b.write(
            Target::Unified,
            MAX,
            format!(
                "{} rbps={} wbps={} riops={} wiops={}",
                t.device(),
                value(t.read_bps),
                value(t.write_bps),
                value(t.read_iops),
                value(t.write_iops)
            ),
        );
    }
}

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
    use crate::cgroup::io::IoThrottle;
    use crate::cgroup::plan::tests::{v2_ctx, writes_to};
    use crate::cgroup::plan::{plan, PlanMode};

    #[test]
    fn io_max_names_every_key_and_weight_goes_to_both_files() {
        let mut res = Resources::default();
        res.io.weight = Some(400);
        res.io.throttles = vec![IoThrottle {
            major: 8,
            minor: 16,
            write_bps: Some(1 << 20),
            ..Default::default()
        }];
        let mut ctx = v2_ctx(PlanMode::Create);
        ctx.io_weight_files = vec![WEIGHT, BFQ_WEIGHT];
        let p = plan(&ctx, &res).unwrap();
        assert_eq!(
            writes_to(&p, "io."),
            [
                (WEIGHT, "default 400"),
                (BFQ_WEIGHT, "default 127"),
                (MAX, "8:16 rbps=max wbps=1048576 riops=max wiops=max"),
            ]
        );
        // Without a weight file the weight is dropped, and said so.
        let p = plan(&v2_ctx(PlanMode::Create), &res).unwrap();
        assert_eq!(writes_to(&p, "io.").len(), 1);
        assert_eq!(p.skipped[0].setting, "I/O weight");
    }

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
