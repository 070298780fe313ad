//! inotify events, read as touches of paths.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use nix::sys::inotify::AddWatchFlags;

use super::debounce::Touch;

/// Why a directory is watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The jobs directory.
    Dir,
    /// The directory holding the jobs directory, to see it replaced (a
    /// `mv new jobs`, or a symlink swapped by `ln -sfn`).
    Parent,
    /// A directory below the jobs directory that holds symlink targets.
    Target(PathBuf),
}

/// What an event means to the watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// Events were lost: look at everything again.
    Overflow,
    /// Something happened to an entry of the jobs directory.
    JobEntry(&'a OsStr),
    /// Something happened to an entry of a target directory.
    TargetEntry(&'a Path, &'a OsStr),
    /// The jobs directory may have been replaced, removed or changed mode:
    /// look at it again once things settle.
    CheckDir,
    /// As `CheckDir`, and the watch on the jobs directory is gone.
    DirGone,
    /// The watch on the parent is gone.
    ParentGone,
    /// The watch on a target directory is gone.
    TargetDirGone(&'a Path),
    /// A target directory changed mode or owner: its links need another look.
    TargetDirChanged(&'a Path),
    Ignore,
}

/// Routes one event. `role` is that of the event's watch (`None`: a watch
/// already given up); `dir_name` is the jobs directory's name in its parent.
pub fn route<'a>(
    role: Option<&'a Role>,
    mask: AddWatchFlags,
    name: Option<&'a OsStr>,
    dir_name: Option<&OsStr>,
) -> Route<'a> {
    if is_overflow(mask) {
        return Route::Overflow;
    }
    match (role, name) {
        (None, _) => Route::Ignore,
        (Some(Role::Dir), Some(name)) => Route::JobEntry(name),
        (Some(Role::Dir), None) if is_gone(mask) => Route::DirGone,
        (Some(Role::Dir), None) if mask.contains(AddWatchFlags::IN_ATTRIB) => Route::CheckDir,
        (Some(Role::Parent), Some(name)) if Some(name) == dir_name => Route::CheckDir,
        (Some(Role::Parent), None) if is_gone(mask) => Route::ParentGone,
        (Some(Role::Target(dir)), Some(name)) => Route::TargetEntry(dir, name),
        (Some(Role::Target(dir)), None) if is_gone(mask) => Route::TargetDirGone(dir),
        (Some(Role::Target(dir)), None) if mask.contains(AddWatchFlags::IN_ATTRIB) => {
            Route::TargetDirChanged(dir)
        }
        _ => Route::Ignore,
    }
}

/// The events every watch asks for. One mask for all watches, because adding
/// a watch on an inode that is already watched replaces its mask: were the
/// jobs directory ever also a target directory, a narrower mask would blind
/// the other role.
pub fn watch_mask() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
        // A process still writing to a job file that was deleted or replaced
        // would otherwise keep producing IN_MODIFY under the old name, making
        // the new file there look busy.
        | AddWatchFlags::from_bits_retain(libc::IN_EXCL_UNLINK)
}

/// How an event on an entry of a watched directory touches it; `None` for
/// events that say nothing about content.
///
/// `created_whole` is asked only for IN_CREATE, which is ambiguous: `creat()`
/// makes an empty file that is open for writing and will be closed, but a
/// symlink, fifo, directory or hard link appears complete with no close to
/// follow.
pub fn touch_for(mask: AddWatchFlags, created_whole: impl FnOnce() -> bool) -> Option<Touch> {
    let complete = AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_DELETE;
    if mask.intersects(complete) {
        Some(Touch::Completed)
    } else if mask.contains(AddWatchFlags::IN_CREATE) {
        Some(if created_whole() { Touch::Completed } else { Touch::Written })
    } else if mask.contains(AddWatchFlags::IN_MODIFY) {
        Some(Touch::Written)
    } else if mask.contains(AddWatchFlags::IN_ATTRIB) {
        Some(Touch::Looked)
    } else {
        None
    }
}

/// Whether an event on a watched directory itself says the watch is gone:
/// the directory was deleted, moved, or its filesystem unmounted.
pub fn is_gone(mask: AddWatchFlags) -> bool {
    mask.intersects(
        AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF
            | AddWatchFlags::IN_IGNORED
            | AddWatchFlags::IN_UNMOUNT,
    )
}

/// Whether the kernel dropped events because the queue was full.
pub fn is_overflow(mask: AddWatchFlags) -> bool {
    mask.contains(AddWatchFlags::IN_Q_OVERFLOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> bool {
        panic!("asked about a creation for another event")
    }

    #[test]
    fn closes_moves_and_deletes_complete_a_file() {
        for mask in [
            AddWatchFlags::IN_CLOSE_WRITE,
            AddWatchFlags::IN_MOVED_TO,
            AddWatchFlags::IN_MOVED_FROM,
            AddWatchFlags::IN_DELETE,
            AddWatchFlags::IN_DELETE | AddWatchFlags::IN_ISDIR,
        ] {
            assert_eq!(touch_for(mask, never), Some(Touch::Completed), "{mask:?}");
        }
    }

    #[test]
    fn writes_wait_for_a_close() {
        assert_eq!(touch_for(AddWatchFlags::IN_MODIFY, never), Some(Touch::Written));
        assert_eq!(touch_for(AddWatchFlags::IN_CREATE, || false), Some(Touch::Written));
    }

    #[test]
    fn things_created_whole_are_complete() {
        assert_eq!(touch_for(AddWatchFlags::IN_CREATE, || true), Some(Touch::Completed));
    }

    #[test]
    fn metadata_changes_look_again() {
        assert_eq!(touch_for(AddWatchFlags::IN_ATTRIB, never), Some(Touch::Looked));
    }

    #[test]
    fn other_events_touch_nothing() {
        assert_eq!(touch_for(AddWatchFlags::IN_OPEN, never), None);
        assert_eq!(touch_for(AddWatchFlags::IN_CLOSE_NOWRITE, never), None);
        assert_eq!(touch_for(AddWatchFlags::IN_IGNORED, never), None);
    }

    fn name(s: &str) -> Option<&OsStr> {
        Some(OsStr::new(s))
    }

    #[test]
    fn an_overflow_is_routed_whatever_its_watch() {
        // The kernel reports an overflow on watch descriptor -1, which is no
        // watch of ours.
        let jobs = name("jobs");
        assert_eq!(route(None, AddWatchFlags::IN_Q_OVERFLOW, None, jobs), Route::Overflow);
        assert_eq!(
            route(Some(&Role::Dir), AddWatchFlags::IN_Q_OVERFLOW, None, jobs),
            Route::Overflow
        );
    }

    #[test]
    fn entries_are_routed_by_their_watch() {
        let jobs = name("jobs");
        let lib = Role::Target(PathBuf::from("/jobs/lib"));
        let modify = AddWatchFlags::IN_MODIFY;
        assert_eq!(
            route(Some(&Role::Dir), modify, name("a.yaml"), jobs),
            Route::JobEntry(OsStr::new("a.yaml"))
        );
        assert_eq!(
            route(Some(&lib), modify, name("x.yaml"), jobs),
            Route::TargetEntry(Path::new("/jobs/lib"), OsStr::new("x.yaml"))
        );
        assert_eq!(route(None, modify, name("a.yaml"), jobs), Route::Ignore);
    }

    #[test]
    fn the_parent_matters_only_for_the_jobs_directory() {
        let jobs = name("jobs");
        let moved_in = AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_ISDIR;
        assert_eq!(route(Some(&Role::Parent), moved_in, name("jobs"), jobs), Route::CheckDir);
        assert_eq!(route(Some(&Role::Parent), moved_in, name("other"), jobs), Route::Ignore);
        let chmod = AddWatchFlags::IN_ATTRIB | AddWatchFlags::IN_ISDIR;
        assert_eq!(route(Some(&Role::Parent), chmod, name("jobs"), jobs), Route::CheckDir);
        assert_eq!(
            route(Some(&Role::Parent), AddWatchFlags::IN_DELETE_SELF, None, jobs),
            Route::ParentGone
        );
    }

    #[test]
    fn watched_directories_going_away_are_routed() {
        let jobs = name("jobs");
        let lib = Role::Target(PathBuf::from("/jobs/lib"));
        for gone in
            [AddWatchFlags::IN_DELETE_SELF, AddWatchFlags::IN_MOVE_SELF, AddWatchFlags::IN_IGNORED]
        {
            assert_eq!(route(Some(&Role::Dir), gone, None, jobs), Route::DirGone);
            assert_eq!(
                route(Some(&lib), gone, None, jobs),
                Route::TargetDirGone(Path::new("/jobs/lib"))
            );
        }
        assert_eq!(route(Some(&Role::Dir), AddWatchFlags::IN_ATTRIB, None, jobs), Route::CheckDir);
        assert_eq!(
            route(Some(&lib), AddWatchFlags::IN_ATTRIB, None, jobs),
            Route::TargetDirChanged(Path::new("/jobs/lib"))
        );
    }

    #[test]
    fn self_events_end_a_watch() {
        assert!(is_gone(AddWatchFlags::IN_DELETE_SELF));
        assert!(is_gone(AddWatchFlags::IN_MOVE_SELF));
        assert!(is_gone(AddWatchFlags::IN_IGNORED));
        assert!(is_gone(AddWatchFlags::IN_UNMOUNT));
        assert!(!is_gone(AddWatchFlags::IN_ATTRIB));
        assert!(is_overflow(AddWatchFlags::IN_Q_OVERFLOW));
        assert!(!is_overflow(AddWatchFlags::IN_MODIFY));
    }
}
