//! The guest's initramfs: a `newc` cpio archive written here, uncompressed
//! (the kernel unpacks it faster than it would inflate it under emulation).
//!
//! Binaries go in with the shared libraries `ldd` names for them, at the
//! same paths, so the dynamically linked test build runs unchanged in the
//! guest: no second, static build of corral is needed.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// Streams entries into a `newc` archive.
pub struct CpioWriter<W: Write> {
    out: W,
    ino: u32,
    written: u64,
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter { out, ino: 1, written: 0 }
    }

    fn header(&mut self, name: &str, mode: u32, size: u64, rdev: (u32, u32)) -> io::Result<()> {
        let size = u32::try_from(size)
            .map_err(|_| io::Error::other(format!("{name}: too large for cpio")))?;
        let namesize = name.len() + 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino, mode, 0, 0, 1, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0
        );
        self.ino += 1;
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let pad = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0; 3][..pad])
    }

    pub fn dir(&mut self, name: &str) -> io::Result<()> {
        self.header(name, S_IFDIR | 0o755, 0, (0, 0))
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.header(name, S_IFREG | mode, data.len() as u64, (0, 0))?;
        self.put(data)?;
        self.pad()
    }

    pub fn copy(&mut self, name: &str, mode: u32, source: &Path) -> io::Result<()> {
        let mut file = File::open(source)?;
        let size = file.metadata()?.len();
        self.header(name, S_IFREG | mode, size, (0, 0))?;
        let copied = io::copy(&mut file, &mut self.out)?;
        if copied != size {
            return Err(io::Error::other(format!("{}: changed while copied", source.display())));
        }
        self.written += copied;
        self.pad()
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.header(name, S_IFLNK | 0o777, target.len() as u64, (0, 0))?;
        self.put(target.as_bytes())?;
        self.pad()
    }

    pub fn char_device(&mut self, name: &str, mode: u32, major: u32, minor: u32) -> io::Result<()> {
        self.header(name, S_IFCHR | mode, 0, (major, minor))
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.header("TRAILER!!!", 0, 0, (0, 0))?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The shared libraries (and ELF interpreter) `binary` loads, as absolute
/// paths; empty for a static binary.
pub fn libraries(binary: &Path) -> io::Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(binary).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // ldd exits 1 on a static binary ("not a dynamic executable").
        return Ok(Vec::new());
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        match path {
            Some(p) if p.starts_with('/') => libs.push(PathBuf::from(p)),
            Some("not") | Some("not found") => {
                return Err(io::Error::other(format!("{}: {line}", binary.display())))
            }
            _ => {} // linux-vdso.so.1
        }
    }
    Ok(libs)
}

/// A binary stripped of debug information into `dir` (a debug build of
/// corral is ~70 MB, mostly DWARF), or the original when `strip` is missing.
pub fn stripped(binary: &Path, dir: &Path) -> io::Result<PathBuf> {
    let name = binary.file_name().ok_or_else(|| io::Error::other("binary without a name"))?;
    let out = dir.join(name);
    match Command::new("strip").arg("--strip-debug").arg("-o").arg(&out).arg(binary).status() {
        Ok(status) if status.success() => Ok(out),
        _ => Ok(binary.to_path_buf()),
    }
}

/// Collects what goes into the archive: directories are created for every
/// path on the way.
pub struct Contents {
    dirs: BTreeSet<String>,
    entries: Vec<Entry>,
}

enum Entry {
    Copy { name: String, mode: u32, source: PathBuf },
    Data { name: String, mode: u32, data: Vec<u8> },
    Symlink { name: String, target: String },
    CharDevice { name: String, major: u32, minor: u32 },
}

impl Contents {
    pub fn new() -> Self {
        Contents { dirs: BTreeSet::new(), entries: Vec::new() }
    }

    pub fn dir(&mut self, path: &str) {
        let mut acc = String::new();
        for part in path.trim_matches('/').split('/').filter(|p| !p.is_empty()) {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            self.dirs.insert(acc.clone());
        }
    }

    fn parent_of(&mut self, name: &str) {
        if let Some((parent, _)) = name.rsplit_once('/') {
            self.dir(parent);
        }
    }

    /// `source` at `path` in the guest.
    pub fn copy(&mut self, path: &str, mode: u32, source: &Path) {
        let name = path.trim_start_matches('/').to_owned();
        self.parent_of(&name);
        self.entries.push(Entry::Copy { name, mode, source: source.to_path_buf() });
    }

    /// A binary at `path`, and its libraries at their host paths.
    pub fn binary(&mut self, path: &str, source: &Path, libs_of: &Path) -> io::Result<()> {
        self.copy(path, 0o755, source);
        for lib in libraries(libs_of)? {
            let guest = lib.to_string_lossy().into_owned();
            if !self.entries.iter().any(
                |e| matches!(e, Entry::Copy { name, .. } if *name == guest.trim_start_matches('/')),
            ) {
                // fs::File::open follows the host's symlinks (ld.so, merged /usr).
                self.copy(&guest, 0o755, &lib);
            }
        }
        Ok(())
    }

    pub fn data(&mut self, path: &str, mode: u32, data: impl Into<Vec<u8>>) {
        let name = path.trim_start_matches('/').to_owned();
        self.parent_of(&name);
        self.entries.push(Entry::Data { name, mode, data: data.into() });
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        let name = path.trim_start_matches('/').to_owned();
        self.parent_of(&name);
        self.entries.push(Entry::Symlink { name, target: target.to_owned() });
    }

    pub fn char_device(&mut self, path: &str, major: u32, minor: u32) {
        let name = path.trim_start_matches('/').to_owned();
        self.parent_of(&name);
        self.entries.push(Entry::CharDevice { name, major, minor });
    }

    pub fn write(&self, archive: &Path) -> io::Result<u64> {
        let mut cpio = CpioWriter::new(BufWriter::new(File::create(archive)?));
        // BTreeSet order puts every parent before its children.
        for dir in &self.dirs {
            cpio.dir(dir)?;
        }
        for entry in &self.entries {
            match entry {
                Entry::Copy { name, mode, source } => cpio
                    .copy(name, *mode, source)
                    .map_err(|e| io::Error::other(format!("{}: {e}", source.display())))?,
                Entry::Data { name, mode, data } => cpio.file(name, *mode, data)?,
                Entry::Symlink { name, target } => cpio.symlink(name, target)?,
                Entry::CharDevice { name, major, minor } => {
                    cpio.char_device(name, 0o600, *major, *minor)?
                }
            }
        }
        let written = cpio.written;
        cpio.finish()?;
        Ok(written)
    }
}
