//! Freezer state shared by both cgroup versions, and the back-off used where
//! the kernel offers no notification.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// The state of a cgroup's freezer as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FreezerState {
    Thawed,
    /// Asked to freeze; some task has not stopped yet (v1 `FREEZING`, v2
    /// `cgroup.freeze` 1 with `frozen 0`).
    Freezing,
    Frozen,
}

impl fmt::Display for FreezerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FreezerState::Thawed => "THAWED",
            FreezerState::Freezing => "FREEZING",
            FreezerState::Frozen => "FROZEN",
        })
    }
}

/// Re-check schedule for state with no kernel notification (v1 freezer,
/// v1 `cgroup.procs`): a few immediate re-checks, as freezing usually takes a
/// fraction of a millisecond, then sleeps doubling from 1 ms to 16 ms.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    step: u32,
}

impl Backoff {
    pub async fn wait(&mut self) {
        if self.step < 3 {
            tokio::task::yield_now().await;
        } else {
            let ms = 1u64 << (self.step - 3).min(4);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        self.step += 1;
    }
}
