//! The jobs directory, watched: which job files changed, with their bytes,
//! once they are completely written.
//!
//! [`JobDirWatcher`] watches the directory with inotify and yields batches of
//! [`FileChange`]s: `Upserted { path, bytes }`, `Removed { path }` or
//! `Refused { path, reason }`. It deals in files and bytes; compiling the bytes
//! into jobs is the agent's business. [`load`] reads job files with the same
//! rules for the commands that run without an agent (`corral validate`,
//! `corral schedule`).
//!
//! # What is a job file
//!
//! An entry directly in the jobs directory named `*.yaml` or `*.yml` that is
//! not hidden ([`is_job_file_name`]). That leaves out editor and deploy
//! droppings — Vim's `.x.yaml.swp` and its `4913` probe, Emacs' `.#x.yaml`
//! and `x.yaml~`, rsync's `.x.yaml.Xa81bQ` — without naming each tool.
//!
//! **Subdirectories are not followed.** Only entries directly in the jobs
//! directory are job files; a subdirectory (and anything in it) is ignored.
//! This keeps the set of jobs obvious from one `ls`, leaves room for things
//! that are not jobs (a `lib/` of shared snippets, a `.git/`), and needs one
//! watch. The one reach below the top level is through symlinks: a job file
//! may be a symlink to a file in a subdirectory (the `available/` + enabled
//! links pattern); the directory holding such a target gets a watch of its
//! own, so editing the target is seen as editing the link. A link is looked at
//! again when it changes, when its final target (after every link in a chain)
//! or the directory holding that changes, and on rescans.
//!
//! # When a file is read
//!
//! A file is read once it has *settled* (see [`debounce`]): it is complete —
//! closed after writing (`IN_CLOSE_WRITE`), moved in (`IN_MOVED_TO`), or only
//! its metadata changed — and nothing has touched it for the quiet period
//! (200 ms by default). A writer that keeps the file open is waited for however
//! long it pauses between writes. So each way tools write comes out as one
//! change with the final content:
//!
//! - write-then-rename (editors, `install`, rsync): the rename completes it;
//! - truncate-and-write (`>` redirection, `cp` over a file): each close
//!   completes it, each write restarts the wait;
//! - many files at once (`git pull`, `rsync -r`): settled files wait until the
//!   whole directory has been quiet for the quiet period, so they come out as
//!   one batch; a file that never stops being written holds the rest back at
//!   most `max_batch_delay` (2 s).
//!
//! After reading, the file's size and times are compared with those before the
//! read; if they moved, the file is left to settle again. A file is reported
//! only if what was read differs from what was last reported ([`snapshot`]):
//! a `touch`, a rewrite with the same bytes, or a rescan that finds nothing
//! new reports nothing.
//!
//! # Rescans
//!
//! At start, after an inotify queue overflow (`IN_Q_OVERFLOW`, when events
//! were lost), when the directory is replaced, and on [`JobDirWatcher::rescan`],
//! every job file in the directory and every path reported before is looked at
//! again, through the same settling, and the batch is the diff against the
//! snapshot. The first batch, from the start-up scan, reports every job file
//! as added and comes even when the directory is empty. After an overflow no
//! file is known to be still open for writing (its close may be among the lost
//! events), so each is read once it has been quiet for the quiet period.
//!
//! # Reloads
//!
//! [`JobDirWatcher::reload`] is a rescan an operator asked for, done at once:
//! the directory itself is checked again, then every job file in it and every
//! path reported before is read now, with no quiet period, and the diff
//! against the snapshot is returned straight away (possibly empty). A file
//! still being written is read as it stands; its close brings it back through
//! the usual settling. A directory that is gone, unsafe or cannot be listed is
//! an error rather than an empty diff.
//!
//! # The directory itself
//!
//! The directory's parent is watched too. When the jobs directory is removed,
//! renamed, replaced (`mv new jobs`, or `ln -sfn release-2 jobs` when it is a
//! symlink) or changes mode, it is looked at again after the quiet period:
//! if there is a directory at the path and it passes the rules, it is watched
//! and rescanned, and only the differences are reported. Otherwise
//! `next_batch` returns [`WatchError::DirectoryGone`] or
//! [`WatchError::UnsafeDirectory`] once, keeps the snapshot, and waits for the
//! directory to come back. Reported paths stay under the path as configured,
//! whatever it resolves to.
//!
//! # Security rules
//!
//! Whoever can write a job file chooses what runs, so, like sshd's
//! `StrictModes` ([`policy`]):
//!
//! - the jobs directory and every directory above it must be owned by root or
//!   the configured owner and not be world-writable, nor group-writable unless
//!   allowed, except with the sticky bit (`/tmp`); checked when the directory is
//!   first watched and whenever it is watched anew. A failing directory is an
//!   error, not a refusal;
//! - a job file must be a regular file (a fifo would hang the read, a device
//!   could act on open), owned by root or the configured owner, not
//!   world-writable, not group-writable unless allowed, and at most
//!   `max_file_bytes` (1 MiB); all of this is judged from `lstat` before the
//!   file is opened, and the open file is `fstat`ed to make sure it is the
//!   file that was judged;
//! - a symlink must be owned by root or the owner and resolve (fully, every
//!   component) to somewhere inside the jobs directory; the target must pass
//!   the file rules, and the directories between it and the jobs directory the
//!   directory rules. A link to `/etc/shadow` is refused without being read.
//!
//! Hard links are not checked: a hard link is the file itself, and the
//! kernel's `fs.protected_hardlinks` (on by default) stops users from
//! hard-linking files they neither own nor can read and write.
//!
//! A refused file is reported as `Refused` with the reason, once, and again
//! only when the reason or the file changes.
//!
//! # Layout
//!
//! Pure: [`name`] (which entries count), [`policy`] (the rules), [`snapshot`]
//! (what was reported, and the diff), [`debounce`] (when a file has settled,
//! when a batch closes), [`links`] (which links lead where), [`event`] (inotify
//! events as touches). Shell: [`inspect`] (stat, check, read one file) and
//! [`watcher`] (the inotify loop).

pub mod change;
pub mod debounce;
pub mod error;
pub mod event;
pub mod inspect;
pub mod links;
pub mod load;
pub mod name;
pub mod options;
pub mod policy;
pub mod snapshot;
pub mod watcher;

pub use change::FileChange;
pub use error::WatchError;
pub use load::{job_files, load_paths, read_checked, FileLoad, Load, LoadRules};
pub use name::is_job_file_name;
pub use options::{WatchOptions, DEFAULT_MAX_FILE_BYTES};
pub use policy::{DirProblem, FileKind, Mode, Refusal};
pub use snapshot::{Snapshot, SnapshotDiff};
pub use watcher::JobDirWatcher;
