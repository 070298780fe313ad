//! One agent per state directory: an exclusive `flock` on `<state_dir>/lock`.
//!
//! `flock` rather than a pid file alone: the kernel drops the lock when the
//! holder dies, however it dies (kill -9 included), so a stale lock can never
//! keep the next agent out, and no pid-liveness guessing is needed. The pid
//! written into the file is only there to name the holder in the error.
//!
//! The lock belongs to the open file description. The descriptor is
//! close-on-exec (std opens every file that way), so an exec'd job does not
//! inherit it; a child that forks without exec and outlives the agent would
//! keep the lock, so such children must close it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::error::StoreError;

/// Holds the state directory for as long as it lives.
#[derive(Debug)]
pub struct StateDirLock {
    path: PathBuf,
    _file: Flock<File>,
}

impl StateDirLock {
    /// The lock file's name inside the state directory.
    pub const FILE_NAME: &'static str = "lock";

    /// Creates `state_dir` if needed and takes its lock, or says who has it.
    pub fn acquire(state_dir: &Path) -> Result<StateDirLock, StoreError> {
        let path = state_dir.join(Self::FILE_NAME);
        let io_err = |source| StoreError::Lock { path: path.clone(), source };
        std::fs::create_dir_all(state_dir).map_err(io_err)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(io_err)?;
        let mut locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                // The holder may be between taking the lock and writing its
                // pid: an unreadable or empty file just means "pid unknown".
                let holder =
                    file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse().ok());
                return Err(StoreError::Locked { path, holder });
            }
            Err((_, errno)) => return Err(io_err(errno.into())),
        };
        // Truncate and write through the same descriptor: the previous
        // holder's pid must not survive as a suffix.
        locked.set_len(0).map_err(io_err)?;
        locked.rewind().map_err(io_err)?;
        writeln!(locked, "{}", std::process::id()).map_err(io_err)?;
        Ok(StateDirLock { path, _file: locked })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
