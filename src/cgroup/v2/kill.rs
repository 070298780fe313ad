//! `cgroup.kill`: the kernel SIGKILLs every task of the cgroup and its
//! descendants, including ones forked concurrently, frozen ones too.
//! Completion is `populated 0` in `cgroup.events`.

use std::path::Path;
use std::time::Duration;

use crate::cgroup::error::CgroupError;
use crate::cgroup::fs::write_knob;

use super::events::EventsWatch;

pub const KILL: &str = "cgroup.kill";

/// Writes `cgroup.kill` and waits until the cgroup is empty. Returns `false`
/// when it is still populated after `timeout`.
pub(crate) async fn kill(dir: &Path, timeout: Duration) -> Result<bool, CgroupError> {
    let mut watch = EventsWatch::open(dir)?;
    write_knob(&dir.join(KILL), "1")?;
    Ok(watch.wait(|s| !s.populated, timeout).await?.is_ok())
}
