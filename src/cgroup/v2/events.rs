//! `cgroup.events` (`populated`, `frozen`) and waiting on its changes.
//!
//! The kernel wakes `poll()` on this file with `POLLPRI` (and `POLLERR`) when
//! it changes, and raises an inotify `IN_MODIFY`. A reader is "caught up"
//! when it reads the file; a change after that read wakes it. Waiting is
//! therefore: read, check, wait for `POLLPRI`, repeat. Changes are rate-limited
//! by the kernel to one notification per 10 ms; the last state is always
//! reported.

use std::path::Path;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::cgroup::error::CgroupError;
use crate::cgroup::fs::{register, KnobFile};
use crate::cgroup::stats::flat_keyed;

pub const EVENTS: &str = "cgroup.events";

/// The content of `cgroup.events`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupEventsState {
    /// Some process lives in the cgroup or a descendant.
    pub populated: bool,
    /// The cgroup is frozen (all its tasks stopped).
    pub frozen: bool,
}

pub fn parse_events(text: &str) -> CgroupEventsState {
    let mut out = CgroupEventsState::default();
    for (key, value) in flat_keyed(text) {
        match key {
            "populated" => out.populated = value != 0,
            "frozen" => out.frozen = value != 0,
            _ => {}
        }
    }
    out
}

/// `cgroup.events` of one cgroup, registered for `POLLPRI` wake-ups.
pub(crate) struct EventsWatch {
    fd: AsyncFd<KnobFile>,
    buf: String,
}

impl EventsWatch {
    /// Must be called from within a tokio runtime.
    pub fn open(dir: &Path) -> Result<Self, CgroupError> {
        let file = KnobFile::open(dir.join(EVENTS))?;
        let path = file.path().to_path_buf();
        let fd = register(file, Interest::PRIORITY, &path)?;
        Ok(EventsWatch { fd, buf: String::new() })
    }

    pub fn read(&mut self) -> Result<CgroupEventsState, CgroupError> {
        self.fd.get_ref().read_into(&mut self.buf)?;
        Ok(parse_events(&self.buf))
    }

    /// Returns the first state satisfying `done`, or `Err(last state)` once
    /// `timeout` has passed.
    pub async fn wait(
        &mut self,
        done: impl Fn(CgroupEventsState) -> bool,
        timeout: Duration,
    ) -> Result<Result<CgroupEventsState, CgroupEventsState>, CgroupError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Reading first both checks and re-arms the notification.
            let state = self.read()?;
            if done(state) {
                return Ok(Ok(state));
            }
            match tokio::time::timeout_at(deadline, self.fd.ready(Interest::PRIORITY)).await {
                Err(_elapsed) => return Ok(Err(self.read()?)),
                Ok(Ok(mut guard)) => guard.clear_ready(),
                Ok(Err(source)) => {
                    return Err(CgroupError::Event {
                        path: self.fd.get_ref().path().to_path_buf(),
                        source,
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events() {
        let s = parse_events(include_str!("../../../tests/fixtures/cgroup/v2/cgroup.events"));
        assert_eq!(s, CgroupEventsState { populated: true, frozen: false });
        assert!(parse_events("populated 0\nfrozen 1\n").frozen);
    }
}
