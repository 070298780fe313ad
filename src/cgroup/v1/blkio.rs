//! v1 `blkio`: bytes and operations per device.
//!
//! `blkio.throttle.io_service_bytes`/`io_serviced` are the files that count
//! I/O on every scheduler. On recent kernels they only count I/O to devices
//! that have a throttle rule in the cgroup; without one they read `Total 0`.

//!
//! Limits: `blkio.throttle.{read,write}_{bps,iops}_device`, one `MAJ:MIN
//! VALUE` line per device (0 removes the rule), and a weight in
//! `blkio.bfq.weight` (BFQ, 1 to 1000) or `blkio.weight` (CFQ, 10 to 1000),
//! whichever the kernel has: each exists only while its scheduler is loaded.

use crate::cgroup::io::{bfq_weight, planned_weight, rescale_weight};
use crate::cgroup::layout::Controller;
use crate::cgroup::plan::{Builder, Target};
use crate::cgroup::resources::Resources;
use crate::cgroup::stats::DeviceIo;

pub const SERVICE_BYTES: &str = "blkio.throttle.io_service_bytes";
pub const SERVICED: &str = "blkio.throttle.io_serviced";
pub const WEIGHT: &str = "blkio.weight";
pub const BFQ_WEIGHT: &str = "blkio.bfq.weight";
pub const READ_BPS: &str = "blkio.throttle.read_bps_device";
pub const WRITE_BPS: &str = "blkio.throttle.write_bps_device";
pub const READ_IOPS: &str = "blkio.throttle.read_iops_device";
pub const WRITE_IOPS: &str = "blkio.throttle.write_iops_device";

pub(crate) fn plan(res: &Resources, b: &mut Builder<'_>) {
    let target = Target::V1(Controller::Blkio);
    if let Some((weight, files)) = planned_weight(res, b, &[WEIGHT, BFQ_WEIGHT]) {
        for file in &files {
            let value = if *file == BFQ_WEIGHT {
                bfq_weight(weight)
            } else {
                rescale_weight(weight, 10, 500, 1000)
            };
            b.write(target, file, value);
        }
        if files.is_empty() && res.io.weight.is_some() {
            b.skip(
                "I/O weight",
                "no blkio.weight or blkio.bfq.weight: the devices' scheduler (none, \
                 mq-deadline, kyber) does not divide disk time by weight",
            );
        }
    }
    for t in &res.io.throttles {
        for (file, value) in [
            (READ_BPS, t.read_bps),
            (WRITE_BPS, t.write_bps),
            (READ_IOPS, t.read_iops),
            (WRITE_IOPS, t.write_iops),
        ] {
            match value {
                Some(value) => b.write(target, file, format!("{} {value}", t.device())),
                None if b.updating() => b.write(target, file, format!("{} 0", t.device())),
                None => {}
            }
        }
    }
}

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
    use crate::cgroup::io::IoThrottle;
    use crate::cgroup::plan::tests::{v1_ctx, writes_to};
    use crate::cgroup::plan::{plan, PlanMode, PlanProblem};

    fn io_res(weight: Option<u16>, write_bps: Option<u64>) -> Resources {
        let mut res = Resources::default();
        res.io.weight = weight;
        res.io.throttles = vec![IoThrottle {
            major: 254,
            minor: 0,
            write_bps,
            read_iops: Some(50),
            ..Default::default()
        }];
        res
    }

    #[test]
    fn throttles_are_one_line_per_device_and_file() {
        let mut ctx = v1_ctx(PlanMode::Create);
        ctx.v1.insert(Controller::Blkio);
        let p = plan(&ctx, &io_res(None, Some(1 << 20))).unwrap();
        assert_eq!(
            writes_to(&p, "blkio."),
            [(WRITE_BPS, "254:0 1048576"), (READ_IOPS, "254:0 50")]
        );
        // An update removes what is no longer asked for.
        let p = plan(&v1_with_blkio(PlanMode::Update), &io_res(None, None)).unwrap();
        assert_eq!(
            writes_to(&p, "blkio."),
            [
                (READ_BPS, "254:0 0"),
                (WRITE_BPS, "254:0 0"),
                (READ_IOPS, "254:0 50"),
                (WRITE_IOPS, "254:0 0")
            ]
        );
    }

    fn v1_with_blkio(mode: PlanMode) -> crate::cgroup::plan::PlanContext {
        let mut ctx = v1_ctx(mode);
        ctx.v1.insert(Controller::Blkio);
        ctx
    }

    #[test]
    fn weight_goes_to_the_files_the_scheduler_has_or_is_skipped() {
        let mut ctx = v1_with_blkio(PlanMode::Create);
        let p = plan(&ctx, &io_res(Some(1000), None)).unwrap();
        assert!(writes_to(&p, "blkio.weight").is_empty());
        assert_eq!(p.skipped.len(), 1, "{:?}", p.skipped);
        ctx.io_weight_files = vec![BFQ_WEIGHT, WEIGHT];
        let p = plan(&ctx, &io_res(Some(1000), None)).unwrap();
        assert_eq!(writes_to(&p, "blkio.bfq.weight"), [(BFQ_WEIGHT, "181")]);
        assert_eq!(writes_to(&p, "blkio.weight"), [(WEIGHT, "545")]);
        assert!(p.skipped.is_empty());
    }

    #[test]
    fn throttles_without_the_controller_are_refused() {
        let err = plan(&v1_ctx(PlanMode::Create), &io_res(None, Some(1))).unwrap_err();
        assert_eq!(
            err.problems,
            [PlanProblem::ControllerMissing { setting: "I/O limits", controller: Controller::Io }]
        );
    }

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
