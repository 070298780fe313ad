//! The run directory: where one run's files live, and how they are written.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Paths of the files in one run directory (see the module docs of
/// [`crate::container`] for who writes what, and when).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RunDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }
    pub fn shim_pid(&self) -> PathBuf {
        self.root.join("shim.pid")
    }
    pub fn init_pid(&self) -> PathBuf {
        self.root.join("init.pid")
    }
    pub fn status(&self) -> PathBuf {
        self.root.join("status.json")
    }
    pub fn stdout_log(&self) -> PathBuf {
        self.root.join("stdout.log")
    }
    pub fn stderr_log(&self) -> PathBuf {
        self.root.join("stderr.log")
    }
    pub fn shim_log(&self) -> PathBuf {
        self.root.join("shim.log")
    }
}

/// Whether [`atomic_write`] waits for the data to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Survives a crash of the writer (rename is atomic), not of the machine.
    ProcessCrash,
    /// Also survives power loss, as `path` or, if the rename had not reached
    /// the disk yet, as a complete `path.tmp` (see [`temp_path`]).
    PowerLoss,
}

/// The temporary file [`atomic_write`] writes before renaming it.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

/// Replaces `path` with `contents` so that readers see the old file or the
/// new one, never a torn mix: write `path.tmp`, (fsync it,) rename it over
/// `path`.
///
/// The directory is not fsynced: that would be a second journal commit
/// (milliseconds on a busy disk) on the path from a job's end to its
/// recorded status. After power loss the rename may be missing, but then
/// `path.tmp` is there, complete, and readers fall back to it.
pub fn atomic_write(path: &Path, contents: &[u8], durability: Durability) -> io::Result<()> {
    let tmp = temp_path(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(&tmp)?;
    let written = file.write_all(contents).and_then(|()| match durability {
        Durability::PowerLoss => file.sync_all(),
        Durability::ProcessCrash => Ok(()),
    });
    drop(file);
    if let Err(e) = written {
        // A torn temporary must not be taken for a record, and on a full
        // disk its blocks are better given back.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path)
}

/// The first wait of [`retry_until_written`]; each failure doubles it.
pub const FIRST_RETRY: Duration = Duration::from_millis(50);
/// The longest wait between two tries.
pub const MAX_RETRY: Duration = Duration::from_secs(5);

/// Calls `write` until it succeeds, waiting with `sleep` between tries
/// ([`FIRST_RETRY`], doubling up to [`MAX_RETRY`]), and telling `failed`
/// about each failure with the try's number (1 for the first).
///
/// For a record that exists nowhere else, such as a job's exit status: a
/// full or read-only disk is waited out, however long it lasts, since
/// giving up would lose the record for good. Only a missing directory
/// (`ENOENT`: the run directory was removed) ends the tries, with its
/// error: nobody could read the record there any more.
pub fn retry_until_written(
    mut write: impl FnMut() -> io::Result<()>,
    mut sleep: impl FnMut(Duration),
    mut failed: impl FnMut(&io::Error, u32),
) -> io::Result<()> {
    let mut wait = FIRST_RETRY;
    for attempt in 1u32.. {
        match write() {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(e),
            Err(e) => failed(&e, attempt),
        }
        sleep(wait);
        wait = (wait * 2).min(MAX_RETRY);
    }
    unreachable!("the loop above only ends by returning")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        atomic_write(&path, b"one", Durability::PowerLoss).unwrap();
        atomic_write(&path, b"two", Durability::ProcessCrash).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["status.json"]);
    }

    #[test]
    fn retries_a_full_disk_with_backoff_until_written() {
        let mut tries = 0;
        let mut slept = Vec::new();
        let mut told = Vec::new();
        let result = retry_until_written(
            || {
                tries += 1;
                if tries <= 9 {
                    Err(io::Error::from_raw_os_error(libc::ENOSPC))
                } else {
                    Ok(())
                }
            },
            |d| slept.push(d.as_millis()),
            |e, n| told.push((e.raw_os_error(), n)),
        );
        assert!(result.is_ok());
        assert_eq!(slept, [50, 100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(told.len(), 9);
        assert_eq!(told[0], (Some(libc::ENOSPC), 1));
        assert_eq!(told[8], (Some(libc::ENOSPC), 9));
    }

    #[test]
    fn stops_retrying_when_the_directory_is_gone() {
        let mut slept = 0;
        let result = retry_until_written(
            || Err(io::Error::from_raw_os_error(libc::ENOENT)),
            |_| slept += 1,
            |_, _| {},
        );
        assert_eq!(result.unwrap_err().raw_os_error(), Some(libc::ENOENT));
        assert_eq!(slept, 0);
    }

    #[test]
    fn a_failed_write_leaves_no_temporary() {
        // /dev/full: every write fails with ENOSPC, like a full disk.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        std::os::unix::fs::symlink("/dev/full", temp_path(&path)).unwrap();
        let err = atomic_write(&path, b"{}", Durability::PowerLoss).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert!(fs::symlink_metadata(temp_path(&path)).is_err(), "temporary removed");
        assert!(!path.exists());
    }

    #[test]
    fn layout_is_flat_under_the_root() {
        let run = RunDir::new("/runs/r1");
        assert_eq!(run.status(), Path::new("/runs/r1/status.json"));
        assert_eq!(run.init_pid(), Path::new("/runs/r1/init.pid"));
    }
}
