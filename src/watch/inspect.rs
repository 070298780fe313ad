//! Looking at one job file on disk: stat it, apply the [`policy`] rules, and
//! only then open and read it.
//!
//! This is the thin layer under the rules: it gathers facts with `lstat`,
//! `canonicalize` and `fstat` and leaves every decision to [`policy`].

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use super::policy::{self, DirProblem, Facts, Refusal, Rules};
use super::snapshot::FileStamp;

/// What is at a path in the jobs directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    pub outcome: Outcome,
    /// Where the path leads if it is a symlink to somewhere strictly inside
    /// the jobs directory, whether or not what is there passed the rules:
    /// events there must bring the link back for another look.
    pub link_target: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing there.
    Absent,
    /// Passed the rules; this is its whole content.
    Accepted(Vec<u8>),
    Refused {
        reason: Refusal,
        stamp: Option<FileStamp>,
    },
    /// It changed while being looked at; look again once it settles.
    Unsettled,
}

/// A directory that did not pass [`policy::check_dir`], or could not be looked at.
#[derive(Debug)]
pub enum DirCheckError {
    Unsafe { dir: PathBuf, problem: DirProblem },
    Stat { dir: PathBuf, source: io::Error },
}

/// Checks each of `dirs`. They must be canonical: `lstat` is used, so a
/// symlink among them is refused as not a directory.
pub fn check_dirs<'a>(
    dirs: impl IntoIterator<Item = &'a Path>,
    rules: &Rules,
) -> Result<(), DirCheckError> {
    for dir in dirs {
        let meta = fs::symlink_metadata(dir)
            .map_err(|source| DirCheckError::Stat { dir: dir.to_path_buf(), source })?;
        policy::check_dir(&Facts::from(&meta), rules)
            .map_err(|problem| DirCheckError::Unsafe { dir: dir.to_path_buf(), problem })?;
    }
    Ok(())
}

/// Looks at `name` in `dir`, the canonical path of the jobs directory.
pub fn inspect(dir: &Path, name: &OsStr, rules: &Rules) -> Inspection {
    let path = dir.join(name);
    let mut link_target = None;
    let outcome = look(dir, &path, rules, &mut link_target);
    Inspection { outcome, link_target }
}

fn look(dir: &Path, path: &Path, rules: &Rules, link_target: &mut Option<PathBuf>) -> Outcome {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Outcome::Absent,
        Err(e) => return unreadable(&e, None),
    };
    let (target, meta) = if meta.file_type().is_symlink() {
        let link_stamp = Some(FileStamp::from(&meta));
        if let Err(reason) = policy::check_link(&Facts::from(&meta), rules) {
            return Outcome::Refused { reason, stamp: link_stamp };
        }
        // Resolving every component, rather than reading the one link, is what
        // catches `a -> b -> /etc/shadow` and `a -> sub/../../etc/shadow`.
        let target = match fs::canonicalize(path) {
            Ok(target) => target,
            Err(e) => {
                // Recorded so that the target's arrival brings the link back.
                *link_target = dangling_target(dir, path);
                let reason = Refusal::LinkBroken { error: e.to_string() };
                return Outcome::Refused { reason, stamp: link_stamp };
            }
        };
        if !target.starts_with(dir) {
            return Outcome::Refused { reason: Refusal::LinkOutside { target }, stamp: link_stamp };
        }
        if target != dir {
            *link_target = Some(target.clone());
        }
        let below: Vec<&Path> =
            target.ancestors().skip(1).take_while(|a| *a != dir && a.starts_with(dir)).collect();
        match check_dirs(below, rules) {
            Ok(()) => {}
            Err(DirCheckError::Unsafe { dir, problem }) => {
                let reason = Refusal::UnsafeDirectory { dir, problem };
                return Outcome::Refused { reason, stamp: link_stamp };
            }
            Err(DirCheckError::Stat { source, .. }) => return unreadable(&source, link_stamp),
        }
        match fs::symlink_metadata(&target) {
            Ok(meta) => (target, meta),
            // Replaced or removed since it was resolved: whatever did that
            // is still at work.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Outcome::Unsettled,
            Err(e) => return unreadable(&e, link_stamp),
        }
    } else {
        (path.to_path_buf(), meta)
    };

    let stamp = FileStamp::from(&meta);
    // Type, owner, mode and size are judged before the file is opened: opening
    // a fifo blocks until a writer comes, opening a device can have effects of
    // its own, and reading a huge file is what the size limit is there to stop.
    if let Err(reason) = policy::check_file(&Facts::from(&meta), rules) {
        return Outcome::Refused { reason, stamp: Some(stamp) };
    }
    read(&target, stamp, rules.max_file_bytes)
}

/// Where a link that does not resolve would lead, if that is inside `dir`.
/// Worked out from the text of the link alone (`..` taken lexically), so it is
/// only a hint of where to look for its target appearing, never trusted for
/// reading: the link is resolved properly once its target exists.
fn dangling_target(dir: &Path, link: &Path) -> Option<PathBuf> {
    let text = fs::read_link(link).ok()?;
    let mut target = PathBuf::new();
    for component in dir.join(text).components() {
        match component {
            Component::ParentDir => {
                target.pop();
            }
            Component::CurDir => {}
            other => target.push(other),
        }
    }
    (target.starts_with(dir) && target != dir).then_some(target)
}

/// Reads a file that passed the rules when it had `stamp`, making sure that
/// what is read is that file, unchanged from open to end of read.
fn read(path: &Path, stamp: FileStamp, limit: u64) -> Outcome {
    // O_NOFOLLOW and O_NONBLOCK guard the gap between the stat and the open:
    // should a symlink or a fifo have been swapped in, the open fails or returns
    // at once rather than following the link or waiting for a writer; the fstat
    // below then sees that it is not the file that was judged.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path);
    let file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ELOOP) => {
            return Outcome::Unsettled
        }
        Err(e) => return unreadable(&e, Some(stamp)),
    };
    match fstat(&file) {
        Ok(opened) if opened == stamp => {}
        Ok(_) => return Outcome::Unsettled,
        Err(e) => return unreadable(&e, Some(stamp)),
    }
    // One byte over the limit tells a file that grew past it from one at it.
    let mut bytes = Vec::with_capacity(stamp.size.min(limit) as usize);
    if let Err(e) = (&file).take(limit + 1).read_to_end(&mut bytes) {
        return unreadable(&e, Some(stamp));
    }
    // A writer that slipped in after the file settled changes its size or
    // times. Timestamps are only as fine as the kernel's clock tick, so a
    // same-size rewrite within one tick can pass here; its IN_MODIFY event
    // brings the file back for another read all the same.
    match fstat(&file) {
        Ok(after) if after == stamp && bytes.len() as u64 == stamp.size => Outcome::Accepted(bytes),
        Ok(_) => Outcome::Unsettled,
        Err(e) => unreadable(&e, Some(stamp)),
    }
}

fn fstat(file: &File) -> io::Result<FileStamp> {
    file.metadata().map(|meta| FileStamp::from(&meta))
}

fn unreadable(error: &io::Error, stamp: Option<FileStamp>) -> Outcome {
    Outcome::Refused { reason: Refusal::Unreadable { error: error.to_string() }, stamp }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use nix::unistd::Uid;

    use super::*;
    use crate::watch::policy::{FileKind, Owners};

    fn rules() -> Rules {
        Rules { owners: Owners { extra: None }, allow_group_writable: false, max_file_bytes: 64 }
    }

    /// A canonical temporary directory the current user owns, trusted as
    /// owner so the tests pass whoever runs them.
    fn setup() -> (tempfile::TempDir, PathBuf, Rules) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = fs::canonicalize(tmp.path()).unwrap();
        let rules = Rules { owners: Owners { extra: Some(Uid::current()) }, ..rules() };
        (tmp, dir, rules)
    }

    fn write(path: &Path, content: &str, mode: u32) {
        fs::write(path, content).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn look_at(dir: &Path, name: &str, rules: &Rules) -> Inspection {
        inspect(dir, OsStr::new(name), rules)
    }

    #[test]
    fn a_plain_file_is_read() {
        let (_tmp, dir, rules) = setup();
        write(&dir.join("a.yaml"), "name: a\n", 0o644);
        let seen = look_at(&dir, "a.yaml", &rules);
        assert_eq!(seen.outcome, Outcome::Accepted(b"name: a\n".to_vec()));
        assert_eq!(seen.link_target, None);
    }

    #[test]
    fn a_missing_file_is_absent() {
        let (_tmp, dir, rules) = setup();
        assert_eq!(look_at(&dir, "a.yaml", &rules).outcome, Outcome::Absent);
    }

    #[test]
    fn rules_are_applied_before_reading() {
        let (_tmp, dir, rules) = setup();
        write(&dir.join("ww.yaml"), "x", 0o666);
        write(&dir.join("big.yaml"), &"x".repeat(65), 0o644);
        write(&dir.join("limit.yaml"), &"x".repeat(64), 0o644);
        assert!(matches!(
            look_at(&dir, "ww.yaml", &rules).outcome,
            Outcome::Refused { reason: Refusal::WorldWritable { .. }, stamp: Some(_) }
        ));
        assert!(matches!(
            look_at(&dir, "big.yaml", &rules).outcome,
            Outcome::Refused { reason: Refusal::TooLarge { size: 65, limit: 64 }, .. }
        ));
        assert!(matches!(look_at(&dir, "limit.yaml", &rules).outcome, Outcome::Accepted(_)));
    }

    #[test]
    fn a_fifo_is_refused_without_opening_it() {
        let (_tmp, dir, rules) = setup();
        nix::unistd::mkfifo(&dir.join("f.yaml"), nix::sys::stat::Mode::from_bits_truncate(0o644))
            .unwrap();
        let reason = Refusal::NotRegular { kind: FileKind::Fifo };
        assert!(matches!(
            look_at(&dir, "f.yaml", &rules).outcome,
            Outcome::Refused { reason: r, .. } if r == reason
        ));
    }

    #[test]
    fn a_fifo_swapped_in_after_the_stat_is_not_waited_on() {
        let (_tmp, dir, _) = setup();
        let fifo = dir.join("f.yaml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let stamp = FileStamp {
            mode: libc::S_IFREG | 0o644,
            ..FileStamp::from(&fs::metadata(&fifo).unwrap())
        };
        assert_eq!(read(&fifo, stamp, 64), Outcome::Unsettled);
    }

    #[test]
    fn symlinks_inside_are_followed_and_recorded() {
        let (_tmp, dir, rules) = setup();
        fs::create_dir(dir.join("lib")).unwrap();
        write(&dir.join("lib/x.yaml"), "name: x\n", 0o644);
        symlink("lib/x.yaml", dir.join("a.yaml")).unwrap();
        let seen = look_at(&dir, "a.yaml", &rules);
        assert_eq!(seen.outcome, Outcome::Accepted(b"name: x\n".to_vec()));
        assert_eq!(seen.link_target, Some(dir.join("lib/x.yaml")));
    }

    #[test]
    fn symlinks_leading_outside_are_refused_however_they_get_there() {
        let (_tmp, dir, rules) = setup();
        fs::create_dir(dir.join("lib")).unwrap();
        symlink("/etc/passwd", dir.join("direct.yaml")).unwrap();
        symlink("lib/../../../../../../etc/passwd", dir.join("dots.yaml")).unwrap();
        symlink("direct.yaml", dir.join("chain.yaml")).unwrap();
        for name in ["direct.yaml", "dots.yaml", "chain.yaml"] {
            let seen = look_at(&dir, name, &rules);
            assert!(
                matches!(
                    &seen.outcome,
                    Outcome::Refused { reason: Refusal::LinkOutside { target }, .. }
                        if target == Path::new("/etc/passwd")
                ),
                "{name}: {seen:?}"
            );
            assert_eq!(seen.link_target, None);
        }
    }

    #[test]
    fn dangling_symlinks_are_refused() {
        let (_tmp, dir, rules) = setup();
        symlink("nowhere.yaml", dir.join("a.yaml")).unwrap();
        assert!(matches!(
            look_at(&dir, "a.yaml", &rules).outcome,
            Outcome::Refused { reason: Refusal::LinkBroken { .. }, .. }
        ));
    }

    #[test]
    fn dangling_symlinks_record_where_their_target_would_be() {
        let (_tmp, dir, rules) = setup();
        symlink("lib/./../later.yaml", dir.join("a.yaml")).unwrap();
        symlink("../outside.yaml", dir.join("b.yaml")).unwrap();
        symlink(dir.join("lib/x.yaml"), dir.join("c.yaml")).unwrap();
        assert_eq!(look_at(&dir, "a.yaml", &rules).link_target, Some(dir.join("later.yaml")));
        assert_eq!(look_at(&dir, "b.yaml", &rules).link_target, None);
        assert_eq!(look_at(&dir, "c.yaml", &rules).link_target, Some(dir.join("lib/x.yaml")));
    }

    #[test]
    fn a_link_into_an_unsafe_subdirectory_is_refused() {
        let (_tmp, dir, rules) = setup();
        fs::create_dir(dir.join("open")).unwrap();
        fs::set_permissions(dir.join("open"), fs::Permissions::from_mode(0o777)).unwrap();
        write(&dir.join("open/x.yaml"), "name: x\n", 0o644);
        symlink("open/x.yaml", dir.join("a.yaml")).unwrap();
        let seen = look_at(&dir, "a.yaml", &rules);
        assert!(matches!(
            &seen.outcome,
            Outcome::Refused { reason: Refusal::UnsafeDirectory { dir: d, .. }, .. } if *d == dir.join("open")
        ));
        // Still recorded: fixing the target's directory must be noticed.
        assert_eq!(seen.link_target, Some(dir.join("open/x.yaml")));
    }

    #[test]
    fn a_file_that_changed_since_its_stat_is_unsettled() {
        let (_tmp, dir, _) = setup();
        let path = dir.join("a.yaml");
        write(&path, "name: a\n", 0o644);
        let stamp = FileStamp::from(&fs::metadata(&path).unwrap());
        fs::write(&path, "name: a, longer\n").unwrap();
        assert_eq!(read(&path, stamp, 64), Outcome::Unsettled);
    }

    #[test]
    fn directories_are_checked_one_by_one() {
        let (_tmp, dir, rules) = setup();
        fs::create_dir(dir.join("open")).unwrap();
        fs::set_permissions(dir.join("open"), fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check_dirs([dir.as_path()], &rules).is_ok());
        let open = dir.join("open");
        assert!(matches!(
            check_dirs([dir.as_path(), open.as_path()], &rules),
            Err(DirCheckError::Unsafe { dir: d, problem: DirProblem::WorldWritable { .. } }) if d == open
        ));
        let missing = dir.join("missing");
        assert!(matches!(check_dirs([missing.as_path()], &rules), Err(DirCheckError::Stat { .. })));
    }
}
