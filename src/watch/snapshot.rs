//! The last reported state of every job file, and the pure diff between it and
//! what is on disk now.
//!
//! The watcher reports a file only when its entry here changes, which is what
//! makes a `touch`, a rewrite with the same bytes, or a rescan after an
//! overflow report nothing that did not really change.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;

use super::policy::Refusal;

/// A file's content, summarised: its length and a keyed 64-bit hash.
///
/// Two contents with the same digest are taken to be the same content. The
/// hash key is drawn at random per process, so nobody can craft an edit that
/// collides with the file it replaces and goes unreported; by accident two
/// different contents of one file collide with odds of 2^-64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentDigest {
    len: u64,
    hash: u64,
}

/// Computes [`ContentDigest`]s with one key. Digests from different
/// `Digester`s do not compare.
#[derive(Debug, Clone, Default)]
pub struct Digester {
    key: RandomState,
}

impl Digester {
    pub fn new() -> Digester {
        Digester::default()
    }

    pub fn digest(&self, bytes: &[u8]) -> ContentDigest {
        let mut hasher = self.key.build_hasher();
        hasher.write(bytes);
        ContentDigest { len: bytes.len() as u64, hash: hasher.finish() }
    }
}

/// The metadata that changes when a file is written, replaced, chmod'ed or
/// chown'ed. A refused file is not read, so this is what tells whether it
/// changed since it was last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStamp {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub uid: u32,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl From<&std::fs::Metadata> for FileStamp {
    fn from(meta: &std::fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            mode: meta.mode(),
            uid: meta.uid(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// What was last reported for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Reported as `Upserted` with content of this digest.
    Accepted(ContentDigest),
    /// Reported as `Refused`. It is reported again when the reason or the
    /// file changes (`stamp` is the metadata the refusal was decided on, when
    /// there was any).
    Refused { reason: Refusal, stamp: Option<FileStamp> },
}

/// What was found at some paths: `None` where nothing is (or nothing that is a
/// job file any more).
pub type Findings = BTreeMap<PathBuf, Option<Entry>>;

/// The paths whose entry changed, each in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotDiff {
    /// Not in the snapshot, present now.
    pub added: Vec<PathBuf>,
    /// In the snapshot, present now with a different entry.
    pub changed: Vec<PathBuf>,
    /// In the snapshot, absent now.
    pub removed: Vec<PathBuf>,
}

impl SnapshotDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    entries: BTreeMap<PathBuf, Entry>,
}

impl Snapshot {
    pub fn new() -> Snapshot {
        Snapshot::default()
    }

    pub fn get(&self, path: &std::path::Path) -> Option<&Entry> {
        self.entries.get(path)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        self.entries.keys()
    }

    /// The paths a full rescan must look at: everything listed in the
    /// directory now, and everything reported before (to find what went away).
    pub fn rescan_paths(&self, listed: impl IntoIterator<Item = PathBuf>) -> BTreeSet<PathBuf> {
        let mut paths: BTreeSet<PathBuf> = listed.into_iter().collect();
        paths.extend(self.entries.keys().cloned());
        paths
    }

    /// How `observed` differs from the snapshot. Paths not in `observed` are
    /// not compared: after events only the paths they touched are looked at,
    /// after a rescan every path from [`Snapshot::rescan_paths`] is.
    pub fn diff(&self, observed: &Findings) -> SnapshotDiff {
        let mut diff = SnapshotDiff::default();
        for (path, now) in observed {
            match (self.entries.get(path), now) {
                (None, None) => {}
                (None, Some(_)) => diff.added.push(path.clone()),
                (Some(_), None) => diff.removed.push(path.clone()),
                (Some(before), Some(now)) if before != now => diff.changed.push(path.clone()),
                (Some(_), Some(_)) => {}
            }
        }
        diff
    }

    /// Records `observed` as reported.
    pub fn apply(&mut self, observed: Findings) {
        for (path, now) in observed {
            match now {
                Some(entry) => self.entries.insert(path, entry),
                None => self.entries.remove(&path),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::policy::{FileKind, Mode};

    fn path(name: &str) -> PathBuf {
        PathBuf::from("/jobs").join(name)
    }

    fn observed(entries: &[(&str, Option<Entry>)]) -> Findings {
        entries.iter().map(|(name, entry)| (path(name), entry.clone())).collect()
    }

    fn snapshot(entries: &[(&str, Entry)]) -> Snapshot {
        let mut snapshot = Snapshot::new();
        snapshot.apply(entries.iter().map(|(n, e)| (path(n), Some(e.clone()))).collect());
        snapshot
    }

    fn stamp(size: u64, mtime: i64) -> FileStamp {
        FileStamp {
            dev: 1,
            ino: 2,
            mode: 0o100666,
            uid: 0,
            size,
            mtime: (mtime, 0),
            ctime: (mtime, 0),
        }
    }

    fn world_writable(stamp: FileStamp) -> Entry {
        Entry::Refused {
            reason: Refusal::WorldWritable { mode: Mode(stamp.mode) },
            stamp: Some(stamp),
        }
    }

    #[test]
    fn digests_compare_content() {
        let digester = Digester::new();
        assert_eq!(digester.digest(b"name: a\n"), digester.digest(b"name: a\n"));
        assert_ne!(digester.digest(b"name: a\n"), digester.digest(b"name: b\n"));
        assert_ne!(digester.digest(b""), digester.digest(b"\0"));
    }

    #[test]
    fn everything_is_added_to_an_empty_snapshot() {
        let d = Digester::new();
        let seen = observed(&[
            ("a.yaml", Some(Entry::Accepted(d.digest(b"a")))),
            ("b.yaml", Some(world_writable(stamp(1, 1)))),
            ("gone.yaml", None),
        ]);
        let diff = Snapshot::new().diff(&seen);
        assert_eq!(diff.added, vec![path("a.yaml"), path("b.yaml")]);
        assert!(diff.changed.is_empty() && diff.removed.is_empty());
    }

    #[test]
    fn the_same_content_is_no_change() {
        let d = Digester::new();
        let old = snapshot(&[("a.yaml", Entry::Accepted(d.digest(b"name: a\n")))]);
        let seen = observed(&[("a.yaml", Some(Entry::Accepted(d.digest(b"name: a\n"))))]);
        assert!(old.diff(&seen).is_empty());
    }

    #[test]
    fn new_content_is_a_change() {
        let d = Digester::new();
        let old = snapshot(&[("a.yaml", Entry::Accepted(d.digest(b"name: a\n")))]);
        let seen = observed(&[("a.yaml", Some(Entry::Accepted(d.digest(b"name: a2\n"))))]);
        assert_eq!(old.diff(&seen).changed, vec![path("a.yaml")]);
    }

    #[test]
    fn refusals_change_with_their_reason_or_their_file() {
        let d = Digester::new();
        let old = snapshot(&[("a.yaml", world_writable(stamp(10, 1)))]);
        // Looked at again, nothing different: not reported twice.
        assert!(old.diff(&observed(&[("a.yaml", Some(world_writable(stamp(10, 1))))])).is_empty());
        // Written to while still world-writable: reported again.
        let written = observed(&[("a.yaml", Some(world_writable(stamp(12, 2))))]);
        assert_eq!(old.diff(&written).changed, vec![path("a.yaml")]);
        // Another reason.
        let fifo =
            Entry::Refused { reason: Refusal::NotRegular { kind: FileKind::Fifo }, stamp: None };
        assert_eq!(old.diff(&observed(&[("a.yaml", Some(fifo))])).changed, vec![path("a.yaml")]);
        // Fixed.
        let fixed = observed(&[("a.yaml", Some(Entry::Accepted(d.digest(b"x"))))]);
        assert_eq!(old.diff(&fixed).changed, vec![path("a.yaml")]);
    }

    #[test]
    fn absent_paths_are_removed() {
        let d = Digester::new();
        let old = snapshot(&[
            ("a.yaml", Entry::Accepted(d.digest(b"a"))),
            ("b.yaml", world_writable(stamp(1, 1))),
        ]);
        let diff = old.diff(&observed(&[("a.yaml", None), ("b.yaml", None)]));
        assert_eq!(diff.removed, vec![path("a.yaml"), path("b.yaml")]);
    }

    #[test]
    fn paths_not_observed_are_left_alone() {
        let d = Digester::new();
        let old = snapshot(&[("a.yaml", Entry::Accepted(d.digest(b"a")))]);
        let diff = old.diff(&observed(&[("b.yaml", Some(Entry::Accepted(d.digest(b"b"))))]));
        assert_eq!(diff.added, vec![path("b.yaml")]);
        assert!(diff.removed.is_empty());
    }

    /// After an inotify queue overflow nothing is known about which files
    /// changed: the directory is listed and every listed and every known path
    /// is looked at. Only what really changed while events were lost comes out.
    #[test]
    fn a_rescan_after_overflow_reports_only_real_changes() {
        let d = Digester::new();
        let old = snapshot(&[
            ("same.yaml", Entry::Accepted(d.digest(b"same"))),
            ("edited.yaml", Entry::Accepted(d.digest(b"v1"))),
            ("deleted.yaml", Entry::Accepted(d.digest(b"gone"))),
            ("still-refused.yaml", world_writable(stamp(3, 3))),
        ]);
        let listed = ["same.yaml", "edited.yaml", "new.yaml", "still-refused.yaml"].map(path);
        let paths = old.rescan_paths(listed);
        assert_eq!(paths.len(), 5);

        // What reading each path finds now.
        let now = |p: &PathBuf| match p.file_name().unwrap().to_str().unwrap() {
            "same.yaml" => Some(Entry::Accepted(d.digest(b"same"))),
            "edited.yaml" => Some(Entry::Accepted(d.digest(b"v2"))),
            "new.yaml" => Some(Entry::Accepted(d.digest(b"new"))),
            "still-refused.yaml" => Some(world_writable(stamp(3, 3))),
            "deleted.yaml" => None,
            other => panic!("unexpected {other}"),
        };
        let seen: Findings = paths.iter().map(|p| (p.clone(), now(p))).collect();

        let diff = old.diff(&seen);
        assert_eq!(
            diff,
            SnapshotDiff {
                added: vec![path("new.yaml")],
                changed: vec![path("edited.yaml")],
                removed: vec![path("deleted.yaml")],
            }
        );

        // Applied, the same rescan again finds nothing.
        let mut next = old.clone();
        next.apply(seen.clone());
        assert!(next.diff(&seen).is_empty());
        assert_eq!(next.len(), 4);
        assert!(next.get(&path("deleted.yaml")).is_none());
    }
}
