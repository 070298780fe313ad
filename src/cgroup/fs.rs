//! The only place that reads and writes cgroupfs files.
//!
//! Writes never create files (`create(false)`): on a real cgroupfs an absent
//! knob means the controller is missing, and on a fake tree in a test it means
//! the code wrote somewhere the fixture did not expect. Both must fail loudly.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::CgroupError;

/// Writes `value` to the knob at `path` in a single `write(2)`; cgroupfs
/// parses each write on its own, so a value must never be split.
pub(crate) fn write_knob(path: &Path, value: &str) -> Result<(), CgroupError> {
    let fail =
        |source| CgroupError::Write { path: path.to_owned(), value: value.to_owned(), source };
    // Truncation is a no-op on cgroupfs and keeps fake trees showing the last value.
    let mut file = OpenOptions::new().write(true).truncate(true).open(path).map_err(fail)?;
    let written = file.write(value.as_bytes()).map_err(fail)?;
    if written != value.len() {
        return Err(fail(io::Error::new(io::ErrorKind::WriteZero, "short write")));
    }
    Ok(())
}

pub(crate) fn read_knob(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path)
        .map_err(|source| CgroupError::Read { path: path.to_owned(), source })
}

/// Reads a knob that holds one value (`cpuset.cpus`, `freezer.state`).
pub(crate) fn read_value(path: &Path) -> Result<String, CgroupError> {
    Ok(read_knob(path)?.trim().to_owned())
}

pub(crate) fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    let text = read_value(path)?;
    text.parse().map_err(|_| CgroupError::Parse {
        path: path.to_owned(),
        reason: format!("expected an unsigned integer, found {text:?}"),
    })
}

/// Creates one cgroup directory. Returns `false` when it already existed.
pub(crate) fn mkdir(path: &Path) -> Result<bool, CgroupError> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(CgroupError::Create { path: path.to_owned(), source }),
    }
}

/// Removes one cgroup directory; an already absent directory is not an error.
pub(crate) fn rmdir(path: &Path) -> Result<(), CgroupError> {
    match std::fs::remove_dir(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CgroupError::Remove { path: path.to_owned(), source }),
    }
}

/// Parses `cgroup.procs`: one pid per line.
pub fn parse_pids(path: &Path, text: &str) -> Result<Vec<i32>, CgroupError> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            line.trim().parse().map_err(|_| CgroupError::Parse {
                path: path.to_owned(),
                reason: format!("bad pid {line:?}"),
            })
        })
        .collect()
}

pub(crate) fn read_pids(path: &Path) -> Result<Vec<i32>, CgroupError> {
    parse_pids(path, &read_knob(path)?)
}

/// A cgroup file held open and re-read from offset 0 on demand.
///
/// cgroupfs regenerates a file's content whenever it is read from offset 0,
/// so a scrape loop can keep its files open and skip the `open(2)`/`close(2)`
/// pair per read, which dominates the cost of reading small files.
#[derive(Debug)]
pub struct KnobFile {
    path: PathBuf,
    file: File,
}

impl KnobFile {
    pub fn open(path: PathBuf) -> Result<Self, CgroupError> {
        match File::open(&path) {
            Ok(file) => Ok(KnobFile { path, file }),
            Err(source) => Err(CgroupError::Read { path, source }),
        }
    }

    /// Opens the file if it exists; `None` when the kernel does not offer it.
    pub fn open_optional(path: PathBuf) -> Result<Option<Self>, CgroupError> {
        match File::open(&path) {
            Ok(file) => Ok(Some(KnobFile { path, file })),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CgroupError::Read { path, source }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces `buf` with the file's current content.
    pub fn read_into(&self, buf: &mut String) -> Result<(), CgroupError> {
        buf.clear();
        let mut bytes = std::mem::take(buf).into_bytes();
        let mut offset = 0u64;
        let mut chunk = [0u8; 4096];
        loop {
            let n = self
                .file
                .read_at(&mut chunk, offset)
                .map_err(|source| CgroupError::Read { path: self.path.clone(), source })?;
            bytes.extend_from_slice(&chunk[..n]);
            offset += n as u64;
            // A short read is the end: kernfs fills the buffer up to the end
            // of the content (seq_file and single-page attributes alike), and
            // so does a regular file no one is writing. Stopping here spares
            // the read that would return 0, half the system calls of a scrape.
            if n < chunk.len() {
                break;
            }
        }
        *buf = String::from_utf8(bytes).map_err(|_| CgroupError::Parse {
            path: self.path.clone(),
            reason: "not UTF-8".to_owned(),
        })?;
        Ok(())
    }

    pub fn read_string(&self) -> Result<String, CgroupError> {
        let mut buf = String::new();
        self.read_into(&mut buf)?;
        Ok(buf)
    }
}

impl AsRawFd for KnobFile {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// Types that own one descriptor for their whole life and always return it
/// from `as_raw_fd`: the condition for registering them with the reactor.
pub(crate) trait OwnsFd: AsRawFd {}

impl OwnsFd for File {}
impl OwnsFd for KnobFile {}
impl OwnsFd for nix::sys::eventfd::EventFd {}

/// Registers `inner` with the tokio reactor for `interest`.
pub(crate) fn register<T: OwnsFd>(
    inner: T,
    interest: tokio::io::Interest,
    path: &Path,
) -> Result<tokio::io::unix::AsyncFd<T>, CgroupError> {
    // SAFETY: `OwnsFd` is only implemented for types that own their
    // descriptor, keep it open until dropped and return the same one from
    // every `as_raw_fd` call; the `AsyncFd` takes ownership of `inner`, so the
    // descriptor stays valid for the whole registration.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(inner, interest) }
        .map_err(|err| CgroupError::Event { path: path.to_owned(), source: err.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_into_reads_files_of_any_size_again_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        // Around the 4096-byte chunk: short, exactly one chunk, several.
        for len in [0, 10, 4095, 4096, 4097, 8192, 10_000] {
            let path = dir.path().join(format!("f{len}"));
            let content: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            std::fs::write(&path, &content).unwrap();
            let file = KnobFile::open(path.clone()).unwrap();
            let mut buf = String::from("stale");
            file.read_into(&mut buf).unwrap();
            assert_eq!(buf, content, "{len} bytes");
            std::fs::write(&path, "changed\n").unwrap();
            file.read_into(&mut buf).unwrap();
            assert_eq!(buf, "changed\n", "re-read after {len} bytes");
        }
    }
}
