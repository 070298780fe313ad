//! The run directory: where one run's files live, and how they are written.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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
    file.write_all(contents)?;
    if durability == Durability::PowerLoss {
        file.sync_all()?;
    }
    drop(file);
    fs::rename(&tmp, path)
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
    fn layout_is_flat_under_the_root() {
        let run = RunDir::new("/runs/r1");
        assert_eq!(run.status(), Path::new("/runs/r1/status.json"));
        assert_eq!(run.init_pid(), Path::new("/runs/r1/init.pid"));
    }
}
