//! v1 `freezer`: `freezer.state` is `THAWED`, `FREEZING` or `FROZEN`.
//!
//! Writing `FROZEN` starts freezing; the state reads `FROZEN` only once every
//! task is stopped (reading it is what advances `FREEZING` to `FROZEN`). The
//! kernel sends no notification, so completion is re-read with a back-off. A
//! task frozen by v1 cannot act on SIGKILL until it is thawed.

use std::path::Path;
use std::time::Duration;

use crate::cgroup::error::CgroupError;
use crate::cgroup::freezer::{Backoff, FreezerState};
use crate::cgroup::fs::{read_value, write_knob};

pub const STATE: &str = "freezer.state";

pub fn parse_state(text: &str) -> Option<FreezerState> {
    match text.trim() {
        "THAWED" => Some(FreezerState::Thawed),
        "FREEZING" => Some(FreezerState::Freezing),
        "FROZEN" => Some(FreezerState::Frozen),
        _ => None,
    }
}

pub(crate) fn read_state(dir: &Path) -> Result<FreezerState, CgroupError> {
    let path = dir.join(STATE);
    let text = read_value(&path)?;
    parse_state(&text).ok_or(CgroupError::Parse { path, reason: format!("unknown state {text:?}") })
}

/// Asks for `want` (`Frozen` or `Thawed`) and returns once the kernel reports it.
pub(crate) async fn set(
    dir: &Path,
    want: FreezerState,
    timeout: Duration,
) -> Result<(), CgroupError> {
    write_knob(&dir.join(STATE), &want.to_string())?;
    wait(dir, want, timeout).await
}

pub(crate) async fn wait(
    dir: &Path,
    want: FreezerState,
    timeout: Duration,
) -> Result<(), CgroupError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut backoff = Backoff::default();
    loop {
        let state = read_state(dir)?;
        if state == want {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CgroupError::FreezerTimeout {
                path: dir.join(STATE),
                wanted: if want == FreezerState::Frozen { "FROZEN" } else { "THAWED" },
                state: state.to_string(),
                timeout,
            });
        }
        backoff.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_states() {
        assert_eq!(parse_state("FROZEN\n"), Some(FreezerState::Frozen));
        assert_eq!(parse_state("FREEZING\n"), Some(FreezerState::Freezing));
        assert_eq!(parse_state("THAWED"), Some(FreezerState::Thawed));
        assert_eq!(parse_state("frozen"), None);
    }

    #[tokio::test]
    async fn set_writes_then_confirms() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE), "THAWED\n").unwrap();
        set(dir.path(), FreezerState::Frozen, Duration::from_millis(50)).await.unwrap();
        assert_eq!(read_state(dir.path()).unwrap(), FreezerState::Frozen);
    }

    #[tokio::test]
    async fn a_state_that_never_arrives_times_out_naming_where_it_is_stuck() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE), "FREEZING\n").unwrap();
        let err =
            wait(dir.path(), FreezerState::Frozen, Duration::from_millis(50)).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("did not reach FROZEN") && text.contains("stuck in FREEZING"),
            "{text}"
        );
    }
}
