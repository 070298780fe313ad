//! What a job asks of block I/O, independent of cgroup version: a relative
//! weight and per-device throttles, devices by number.

/// The weight scale jobs use: cgroup v2 `io.weight`'s (1 to 10000, default 100).
pub const WEIGHT_DEFAULT: u16 = 100;
pub const WEIGHT_MIN: u16 = 1;
pub const WEIGHT_MAX: u16 = 10_000;

/// Throttles on one block device; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoThrottle {
    pub major: u32,
    pub minor: u32,
    pub read_bps: Option<u64>,
    pub write_bps: Option<u64>,
    pub read_iops: Option<u64>,
    pub write_iops: Option<u64>,
}

impl IoThrottle {
    pub fn device(&self) -> String {
        format!("{}:{}", self.major, self.minor)
    }
}

/// Block I/O settings of one job cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoResources {
    /// On the `io.weight` scale; mapped onto the scale of whichever weight
    /// file the host has.
    pub weight: Option<u16>,
    pub throttles: Vec<IoThrottle>,
}

impl IoResources {
    pub fn is_empty(&self) -> bool {
        self.weight.is_none() && self.throttles.is_empty()
    }
}

/// Maps an `io.weight` onto a scale of `min..=max` with its own default,
/// linearly on each side of the default, so that the defaults meet and the
/// ends meet (the mapping systemd uses between its I/O weight and BFQ's or
/// CFQ's).
pub fn rescale_weight(weight: u16, min: u64, default: u64, max: u64) -> u64 {
    let w = u64::from(weight.clamp(WEIGHT_MIN, WEIGHT_MAX));
    let (wmin, wdef, wmax) =
        (u64::from(WEIGHT_MIN), u64::from(WEIGHT_DEFAULT), u64::from(WEIGHT_MAX));
    if w <= wdef {
        default - (wdef - w) * (default - min) / (wdef - wmin)
    } else {
        default + (w - wdef) * (max - default) / (wmax - wdef)
    }
}

/// BFQ's weights (`io.bfq.weight`, v1 `blkio.bfq.weight`): 1 to 1000, default 100.
pub fn bfq_weight(weight: u16) -> u64 {
    rescale_weight(weight, 1, 100, 1000)
}

/// The weight a plan writes to the weight files among `names` the job's
/// cgroup has: the job's, or the default when an update finds it unset;
/// `None` when there is nothing to write.
pub(crate) fn planned_weight(
    res: &super::resources::Resources,
    b: &super::plan::Builder<'_>,
    names: &[&'static str],
) -> Option<(u16, Vec<&'static str>)> {
    let weight = match res.io.weight {
        Some(weight) => weight,
        None if b.updating() => WEIGHT_DEFAULT,
        None => return None,
    };
    let files = b.ctx.io_weight_files.iter().copied().filter(|f| names.contains(f)).collect();
    Some((weight, files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_keep_defaults_and_ends_aligned() {
        assert_eq!(bfq_weight(100), 100);
        assert_eq!(bfq_weight(1), 1);
        assert_eq!(bfq_weight(50), 50);
        assert_eq!(bfq_weight(10_000), 1000);
        assert_eq!(bfq_weight(5050), 550);
        // CFQ's blkio.weight: 10 to 1000, default 500.
        assert_eq!(rescale_weight(100, 10, 500, 1000), 500);
        assert_eq!(rescale_weight(1, 10, 500, 1000), 10);
        assert_eq!(rescale_weight(10_000, 10, 500, 1000), 1000);
    }
}
