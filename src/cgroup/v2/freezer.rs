//! v2 freezer: write `cgroup.freeze`, confirmation arrives as `frozen 1` in
//! `cgroup.events` with a `POLLPRI` wake-up, so no re-reading loop is needed.
//! Unlike v1, a task frozen this way still dies on SIGKILL.

use std::path::Path;
use std::time::Duration;

use crate::cgroup::error::CgroupError;
use crate::cgroup::freezer::FreezerState;
use crate::cgroup::fs::{read_value, write_knob};

use super::events::{parse_events, EventsWatch, EVENTS};

pub const FREEZE: &str = "cgroup.freeze";

pub(crate) async fn set(dir: &Path, frozen: bool, timeout: Duration) -> Result<(), CgroupError> {
    let mut watch = EventsWatch::open(dir)?;
    write_knob(&dir.join(FREEZE), if frozen { "1" } else { "0" })?;
    match watch.wait(|s| s.frozen == frozen, timeout).await? {
        Ok(_) => Ok(()),
        Err(last) => Err(CgroupError::FreezerTimeout {
            path: dir.join(EVENTS),
            wanted: if frozen { "frozen 1" } else { "frozen 0" },
            state: format!("frozen {}", u8::from(last.frozen)),
            timeout,
        }),
    }
}

pub(crate) fn read_state(dir: &Path) -> Result<FreezerState, CgroupError> {
    let asked = read_value(&dir.join(FREEZE))? == "1";
    let events = parse_events(&read_value(&dir.join(EVENTS))?);
    Ok(match (asked, events.frozen) {
        // Frozen with cgroup.freeze 0 means an ancestor froze it.
        (_, true) => FreezerState::Frozen,
        (true, false) => FreezerState::Freezing,
        (false, false) => FreezerState::Thawed,
    })
}
