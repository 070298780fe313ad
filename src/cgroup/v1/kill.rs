//! Killing every process of a v1 job without `cgroup.kill`.
//!
//! Listing `cgroup.procs` and signalling races with `fork()`: a child born
//! after the listing survives. With the freezer, the job is frozen first, so
//! nothing can fork while it is listed and signalled; SIGKILL stays pending
//! on frozen tasks and takes effect at the thaw. A pid read from a frozen
//! cgroup cannot be reused before the signal lands, since its owner cannot
//! exit while frozen. Without a freezer the list-and-signal round repeats
//! until the cgroup stays empty.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cgroup::error::CgroupError;
use crate::cgroup::freezer::{Backoff, FreezerState};
use crate::cgroup::fs::read_pids;

use super::freezer;

/// How long one round waits for the signalled processes to be gone before
/// listing again.
const ROUND: Duration = Duration::from_millis(200);

fn all_pids(procs_files: &[PathBuf]) -> Result<Vec<i32>, CgroupError> {
    let mut pids = Vec::new();
    for file in procs_files {
        for pid in read_pids(file)? {
            if !pids.contains(&pid) {
                pids.push(pid);
            }
        }
    }
    Ok(pids)
}

fn signal_all(procs_files: &[PathBuf]) -> Result<(), CgroupError> {
    for pid in all_pids(procs_files)? {
        match kill(Pid::from_raw(pid), Signal::SIGKILL) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(source) => {
                return Err(CgroupError::Signal { path: procs_files[0].clone(), pid, source })
            }
        }
    }
    Ok(())
}

/// Kills every process listed in `procs_files` (one per hierarchy the job
/// has) and returns once all of them are empty.
pub(crate) async fn kill_all(
    freezer_dir: Option<&Path>,
    procs_files: &[PathBuf],
    timeout: Duration,
) -> Result<(), CgroupError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if all_pids(procs_files)?.is_empty() {
            return Ok(());
        }
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            let first = &procs_files[0];
            return Err(CgroupError::KillTimeout {
                path: first.parent().unwrap_or(first).to_path_buf(),
                remaining: all_pids(procs_files)?.len(),
                timeout,
            });
        }
        if let Some(dir) = freezer_dir {
            // A task in uninterruptible sleep can keep the cgroup FREEZING;
            // signal anyway: the tasks that did stop cannot fork.
            match freezer::set(dir, FreezerState::Frozen, remaining.min(ROUND)).await {
                Ok(()) | Err(CgroupError::FreezerTimeout { .. }) => {}
                Err(err) => return Err(err),
            }
            signal_all(procs_files)?;
            // Thawing is immediate; the signals take effect on the way out.
            freezer::set(dir, FreezerState::Thawed, ROUND).await?;
        } else {
            signal_all(procs_files)?;
        }
        let round_end = tokio::time::Instant::now() + ROUND.min(remaining);
        let mut backoff = Backoff::default();
        while tokio::time::Instant::now() < round_end && !all_pids(procs_files)?.is_empty() {
            backoff.wait().await;
        }
    }
}
