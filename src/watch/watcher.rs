//! [`JobDirWatcher`]: the shell around the pure parts. It owns the inotify
//! instance, turns events into touches, and on each batch reads the settled
//! files and reports how they differ from the snapshot.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::inotify::{InitFlags, Inotify, InotifyEvent, WatchDescriptor};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::Instant;

use super::change::FileChange;
use super::debounce::{Debouncer, Touch};
use super::error::WatchError;
use super::event::{self, Role, Route};
use super::inspect::{self, DirCheckError, Outcome};
use super::links::Links;
use super::name::is_job_file_name;
use super::options::WatchOptions;
use super::policy::{DirProblem, Rules};
use super::snapshot::{Digester, Entry, Findings, Snapshot};

/// How often to look for the jobs directory while even its parent is missing,
/// and there is no watch left to say when either comes back.
const PARENT_RETRY: Duration = Duration::from_secs(2);

/// Watches a jobs directory and yields settled batches of [`FileChange`]s.
/// See the [module documentation](super) for the rules.
#[derive(Debug)]
pub struct JobDirWatcher {
    /// As configured, made absolute. Reported paths are under it.
    dir: PathBuf,
    /// Its name in its parent.
    dir_name: Option<OsString>,
    rules: Rules,
    quiet: Duration,
    inotify: AsyncFd<InotifyFd>,
    roles: HashMap<WatchDescriptor, Role>,
    parent_wd: Option<WatchDescriptor>,
    /// The directory watched, resolved, while it is watched.
    watched: Option<Watched>,
    target_wds: BTreeMap<PathBuf, WatchDescriptor>,
    debouncer: Debouncer,
    snapshot: Snapshot,
    links: Links,
    digester: Digester,
    /// A look at everything, asked for and not yet done.
    rescan: Option<Touch>,
    /// When to look at the directory itself again.
    dir_check_at: Option<Instant>,
    /// The directory's last reported problem, so each is returned once.
    dir_problem: Option<DirStatus>,
    /// The first batch is still to come.
    initial: bool,
}

#[derive(Debug)]
struct Watched {
    real: PathBuf,
    wd: WatchDescriptor,
}

/// A directory problem, as far as telling one from the next goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DirStatus {
    Gone,
    Unsafe(PathBuf, DirProblem),
    Failed(String),
}

impl DirStatus {
    fn of(error: &WatchError) -> DirStatus {
        match error {
            WatchError::DirectoryGone { .. } => DirStatus::Gone,
            WatchError::UnsafeDirectory { dir, problem, .. } => {
                DirStatus::Unsafe(dir.clone(), problem.clone())
            }
            other => DirStatus::Failed(other.to_string()),
        }
    }
}

/// tokio's `AsyncFd` wants `AsRawFd`, which nix's `Inotify` does not implement.
#[derive(Debug)]
struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl JobDirWatcher {
    /// Starts watching `dir`, which must exist and pass the directory rules.
    /// The first [`JobDirWatcher::next_batch`] reports every job file found in
    /// it. Must be called within a tokio runtime.
    pub fn new(dir: impl AsRef<Path>, options: WatchOptions) -> Result<JobDirWatcher, WatchError> {
        let given = dir.as_ref();
        let mut dir = std::path::absolute(given)
            .map_err(|source| WatchError::Resolve { path: given.to_path_buf(), source })?;
        // A path ending in `..` has no name to look for in its parent.
        if dir.file_name().is_none() {
            dir = fs::canonicalize(&dir)
                .map_err(|source| WatchError::Resolve { path: given.to_path_buf(), source })?;
        }
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| WatchError::Init { source: e.into() })?;
        // SAFETY: `InotifyFd` owns the descriptor (an `OwnedFd` inside
        // `Inotify`), never swaps it, and is only dropped with the `AsyncFd`,
        // so the descriptor stays open and the same while registered.
        let inotify =
            unsafe { AsyncFd::register_with_interest(InotifyFd(inotify), Interest::READABLE) }
                .map_err(|e| WatchError::Init { source: e.into() })?;
        let mut watcher = JobDirWatcher {
            dir_name: dir.file_name().map(OsStr::to_os_string),
            dir,
            rules: Rules::from(&options),
            quiet: options.quiet_period,
            inotify,
            roles: HashMap::new(),
            parent_wd: None,
            watched: None,
            target_wds: BTreeMap::new(),
            debouncer: Debouncer::new(options.quiet_period, options.max_batch_delay),
            snapshot: Snapshot::new(),
            links: Links::new(),
            digester: Digester::new(),
            rescan: None,
            dir_check_at: None,
            dir_problem: None,
            initial: true,
        };
        // The parent first, so that a replacement of the directory while it
        // is being set up is seen.
        match watcher.watch_parent() {
            Err(WatchError::AddWatch { source, .. })
                if source.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
        watcher.establish(Instant::now())?;
        Ok(watcher)
    }

    /// The jobs directory, as reported paths begin.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Asks for every job file to be looked at again, as after a lost event.
    /// What differs from what was last reported comes out of a later
    /// [`JobDirWatcher::next_batch`]; what does not, does not. Should listing
    /// the directory fail, `next_batch` returns [`WatchError::List`] and the
    /// rescan is dropped.
    pub fn rescan(&mut self) {
        if self.rescan.is_none() {
            self.rescan = Some(Touch::Looked);
        }
    }

    /// Reads the jobs directory now, as an operator asks for it, and returns
    /// what differs from what was last reported (possibly nothing).
    ///
    /// Pending events are taken in first, then the directory itself is looked
    /// at again (it may have been replaced, or a directory above it made
    /// unsafe, without an event the watcher sees). Then every job file in it
    /// and every path reported before is read at once, without waiting for
    /// the quiet period: the operator asked, so a file still being written is
    /// read as it stands. Should that half file not compile, the agent keeps
    /// its last good version, and the writer's close brings it back for
    /// another read once it settles. A file that changes while it is read is
    /// left to settle and comes in a later batch.
    ///
    /// What this returns is recorded as reported, so `next_batch` does not
    /// report it again. A directory that is gone, fails the directory rules or
    /// cannot be listed is an error, never an empty answer; the error is not
    /// returned again by `next_batch`, which waits for the directory to come
    /// back as it does after an event.
    ///
    /// Cancel safe as `next_batch` is: nothing is recorded until the reads
    /// are done.
    pub async fn reload(&mut self) -> Result<Vec<FileChange>, WatchError> {
        let now = Instant::now();
        self.drain(now)?;
        if let Err(error) = self.look_at_dir(now) {
            // The caller hears of it now; next_batch need not say it again.
            self.dir_problem = Some(DirStatus::of(&error));
            return Err(error);
        }
        let paths = self.rescan_paths()?;
        // This is the look at everything a pending rescan asked for.
        self.rescan = None;
        let changes = self.settle(paths.into_iter().collect()).await;
        self.initial = false;
        Ok(changes)
    }

    /// Waits for the next batch of changes, in the order removals first, then
    /// additions and changes, each in path order. A batch is never empty,
    /// except the first, which reports the directory as found at start and
    /// comes even if there is nothing in it (files still being written then
    /// come in later batches, once closed).
    ///
    /// Cancel safe: dropped before it returns, nothing is lost, and the next
    /// call picks up where it left off.
    pub async fn next_batch(&mut self) -> Result<Vec<FileChange>, WatchError> {
        loop {
            let now = Instant::now();
            self.drain(now)?;
            if let Some(touch) = self.rescan.take() {
                self.list(touch, now)?;
            }
            if self.dir_check_at.is_some_and(|at| now >= at) {
                self.check_dir(now)?;
            }
            let due = self.debouncer.settled(now);
            if !due.is_empty() {
                let changes = self.settle(due).await;
                if !changes.is_empty() {
                    self.initial = false;
                    return Ok(changes);
                }
                continue;
            }
            // Nothing found at start, or only files still open for writing,
            // which come in later batches.
            if self.initial && self.watched.is_some() && self.debouncer.next_deadline().is_none() {
                self.initial = false;
                return Ok(Vec::new());
            }
            let deadline =
                self.debouncer.next_deadline().into_iter().chain(self.dir_check_at).min();
            self.wait(deadline).await?;
        }
    }

    /// Sleeps until events arrive or `deadline` passes.
    async fn wait(&self, deadline: Option<Instant>) -> Result<(), WatchError> {
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            ready = self.inotify.readable() => {
                let mut guard = ready.map_err(|source| self.read_error(source))?;
                // Cleared before the events are read (by `drain`, next), so
                // an event arriving in between sets it again.
                guard.clear_ready();
            }
            () = sleep => {}
        }
        Ok(())
    }

    /// Reads and handles every queued event.
    fn drain(&mut self, now: Instant) -> Result<(), WatchError> {
        loop {
            match self.inotify.get_ref().0.read_events() {
                Ok(events) => events.into_iter().for_each(|e| self.handle(e, now)),
                Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(self.read_error(e.into())),
            }
        }
    }

    fn read_error(&self, source: io::Error) -> WatchError {
        WatchError::Read { path: self.dir.clone(), source }
    }

    fn handle(&mut self, event: InotifyEvent, now: Instant) {
        let role = self.roles.get(&event.wd);
        match event::route(role, event.mask, event.name.as_deref(), self.dir_name.as_deref()) {
            Route::Overflow => {
                self.rescan = Some(Touch::Lost);
                // Events about the directory itself may be among those lost.
                self.schedule_dir_check(now);
            }
            Route::JobEntry(name) => {
                let Some(watched) = &self.watched else { return };
                let target = watched.real.join(name);
                let job = is_job_file_name(name).then(|| self.dir.join(name));
                self.touch_entry(job, &target, event.mask, now);
            }
            Route::TargetEntry(dir, name) => {
                let target = dir.join(name);
                self.touch_entry(None, &target, event.mask, now);
            }
            Route::CheckDir => self.schedule_dir_check(now),
            Route::DirGone => {
                self.forget_dir();
                self.schedule_dir_check(now);
            }
            // A moved directory keeps its watch, so it is removed here rather
            // than left to report on a directory that is no longer where it was.
            Route::ParentGone => {
                self.remove_watch(event.wd);
                self.parent_wd = None;
                self.schedule_dir_check(now);
            }
            Route::TargetDirGone(dir) => {
                let dir = dir.to_path_buf();
                self.remove_watch(event.wd);
                self.target_wds.remove(&dir);
                self.touch_links_below(&dir, Touch::Completed, now);
            }
            Route::TargetDirChanged(dir) => {
                let dir = dir.to_path_buf();
                self.touch_links_below(&dir, Touch::Looked, now);
            }
            Route::Ignore => {}
        }
    }

    /// Touches the job file `job` (if the entry is one) and every link that
    /// leads to `target`, the entry's resolved path.
    fn touch_entry(
        &mut self,
        job: Option<PathBuf>,
        target: &Path,
        mask: nix::sys::inotify::AddWatchFlags,
        now: Instant,
    ) {
        let mut paths: Vec<PathBuf> = self.links.links_to(target).cloned().collect();
        paths.extend(job);
        if paths.is_empty() {
            return;
        }
        let Some(touch) = event::touch_for(mask, || created_whole(target)) else { return };
        for path in paths {
            self.debouncer.touch(path, touch, now);
        }
    }

    fn touch_links_below(&mut self, dir: &Path, touch: Touch, now: Instant) {
        let links: Vec<PathBuf> = self.links.links_below(dir).cloned().collect();
        for link in links {
            self.debouncer.touch(link, touch, now);
        }
    }

    fn schedule_dir_check(&mut self, now: Instant) {
        self.dir_check_at = Some(now + self.quiet);
    }

    /// Looks at the jobs directory again after something happened to it: a
    /// replacement is watched and rescanned, a problem is returned once.
    fn check_dir(&mut self, now: Instant) -> Result<(), WatchError> {
        let Err(error) = self.look_at_dir(now) else { return Ok(()) };
        let status = DirStatus::of(&error);
        if self.dir_problem.as_ref() == Some(&status) {
            return Ok(());
        }
        self.dir_problem = Some(status);
        Err(error)
    }

    /// Watches the parent again if its watch is gone, and establishes the
    /// jobs directory; a directory that fails is no longer watched.
    fn look_at_dir(&mut self, now: Instant) -> Result<(), WatchError> {
        self.dir_check_at = None;
        if self.parent_wd.is_none() && self.watch_parent().is_err() {
            self.dir_check_at = Some(now + PARENT_RETRY);
        }
        match self.establish(now) {
            Ok(()) => {
                self.dir_problem = None;
                Ok(())
            }
            Err(error) => {
                self.forget_dir();
                Err(error)
            }
        }
    }

    fn watch_parent(&mut self) -> Result<(), WatchError> {
        let Some(parent) = self.dir.parent() else { return Ok(()) };
        let wd = self.add_watch(parent)?;
        self.roles.insert(wd, Role::Parent);
        self.parent_wd = Some(wd);
        Ok(())
    }

    fn add_watch(&self, path: &Path) -> Result<WatchDescriptor, WatchError> {
        self.inotify
            .get_ref()
            .0
            .add_watch(path, event::watch_mask())
            .map_err(|e| WatchError::AddWatch { path: path.to_path_buf(), source: e.into() })
    }

    fn remove_watch(&mut self, wd: WatchDescriptor) {
        self.roles.remove(&wd);
        // Fails when the kernel dropped the watch already (its directory went
        // away); either way it is gone.
        let _ = self.inotify.get_ref().0.rm_watch(wd);
    }

    /// Resolves the jobs directory, checks it, and watches it; when it is not
    /// the one watched so far, switches to it and rescans.
    fn establish(&mut self, now: Instant) -> Result<(), WatchError> {
        let real = fs::canonicalize(&self.dir).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                WatchError::DirectoryGone { path: self.dir.clone() }
            } else {
                WatchError::Resolve { path: self.dir.clone(), source }
            }
        })?;
        self.check_dir_chain(&real)?;
        if self.watched.as_ref().is_some_and(|w| w.real == real) {
            return Ok(());
        }
        self.forget_dir();
        let wd = self.add_watch(&real)?;
        self.roles.insert(wd, Role::Dir);
        self.watched = Some(Watched { real, wd });
        // Listed after the watch is in place, so nothing falls between.
        self.list(Touch::Looked, now)
    }

    /// Checks the resolved jobs directory and every directory above it, and
    /// above the configured path when that is a symlink: whoever can write any
    /// of them can swap the jobs for their own.
    fn check_dir_chain(&self, real: &Path) -> Result<(), WatchError> {
        let mut dirs: Vec<PathBuf> = real.ancestors().map(Path::to_path_buf).collect();
        if let Some(parent) = self.dir.parent().and_then(|p| fs::canonicalize(p).ok()) {
            for dir in parent.ancestors() {
                if !dirs.iter().any(|d| d == dir) {
                    dirs.push(dir.to_path_buf());
                }
            }
        }
        inspect::check_dirs(dirs.iter().map(PathBuf::as_path), &self.rules).map_err(|e| match e {
            DirCheckError::Unsafe { dir, problem } => {
                WatchError::UnsafeDirectory { path: self.dir.clone(), dir, problem }
            }
            DirCheckError::Stat { dir, source } => {
                WatchError::Stat { path: self.dir.clone(), dir, source }
            }
        })
    }

    /// Stops watching the jobs directory and what hangs off it. The snapshot
    /// stays: once a directory is watched again, only what differs from it is
    /// reported.
    fn forget_dir(&mut self) {
        if let Some(watched) = self.watched.take() {
            self.remove_watch(watched.wd);
        }
        for wd in std::mem::take(&mut self.target_wds).into_values() {
            self.remove_watch(wd);
        }
        self.debouncer.clear();
        self.links.clear();
    }

    /// Touches every job file in the directory and every one reported before.
    fn list(&mut self, touch: Touch, now: Instant) -> Result<(), WatchError> {
        for path in self.rescan_paths()? {
            self.debouncer.touch(path, touch, now);
        }
        Ok(())
    }

    /// Every job file in the directory now and every one reported before
    /// (to find what went away); none while no directory is watched.
    fn rescan_paths(&self) -> Result<BTreeSet<PathBuf>, WatchError> {
        let Some(watched) = &self.watched else { return Ok(BTreeSet::new()) };
        let list_error = |source| WatchError::List { path: self.dir.clone(), source };
        let mut listed = Vec::new();
        for entry in fs::read_dir(&watched.real).map_err(list_error)? {
            let name = entry.map_err(list_error)?.file_name();
            if is_job_file_name(&name) {
                listed.push(self.dir.join(name));
            }
        }
        Ok(self.snapshot.rescan_paths(listed))
    }

    /// Reads the settled paths and turns what differs from the snapshot into
    /// changes. Nothing is recorded until the reads are done, which is what
    /// makes `next_batch` cancel safe.
    async fn settle(&mut self, due: Vec<PathBuf>) -> Vec<FileChange> {
        let Some(watched) = &self.watched else { return Vec::new() };
        let real = watched.real.clone();
        let rules = self.rules;
        let paths = due.clone();
        // Reading a few hundred files is blocking work; keep it off the
        // runtime's worker threads.
        let inspections = tokio::task::spawn_blocking(move || {
            paths
                .into_iter()
                .map(|path| {
                    let name = path.file_name().unwrap_or_default().to_os_string();
                    let inspection = inspect::inspect(&real, &name, &rules);
                    (path, inspection)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let inspections = match inspections {
            Ok(inspections) => inspections,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down.
            Err(_) => return Vec::new(),
        };

        let now = Instant::now();
        self.debouncer.remove(&due);
        let mut observed = Findings::new();
        let mut contents = HashMap::new();
        for (path, inspection) in inspections {
            self.links.set(&path, inspection.link_target);
            match inspection.outcome {
                Outcome::Absent => {
                    observed.insert(path, None);
                }
                Outcome::Accepted(bytes) => {
                    observed
                        .insert(path.clone(), Some(Entry::Accepted(self.digester.digest(&bytes))));
                    contents.insert(path, bytes);
                }
                Outcome::Refused { reason, stamp } => {
                    observed.insert(path, Some(Entry::Refused { reason, stamp }));
                }
                Outcome::Unsettled => self.debouncer.touch(path, Touch::Completed, now),
            }
        }
        let diff = self.snapshot.diff(&observed);
        let mut changes: Vec<FileChange> =
            diff.removed.into_iter().map(|path| FileChange::Removed { path }).collect();
        let mut upserts: Vec<PathBuf> = diff.added.into_iter().chain(diff.changed).collect();
        upserts.sort();
        for path in upserts {
            changes.push(match &observed[&path] {
                Some(Entry::Refused { reason, .. }) => {
                    FileChange::Refused { reason: reason.clone(), path }
                }
                _ => {
                    FileChange::Upserted { bytes: contents.remove(&path).unwrap_or_default(), path }
                }
            });
        }
        self.snapshot.apply(observed);
        self.watch_targets(now);
        changes
    }

    /// Watches the directories below the jobs directory that hold link
    /// targets, and stops watching those that no longer do.
    fn watch_targets(&mut self, now: Instant) {
        let Some(watched) = &self.watched else { return };
        let wanted = self.links.target_dirs(&watched.real);
        let stale: Vec<PathBuf> =
            self.target_wds.keys().filter(|dir| !wanted.contains(*dir)).cloned().collect();
        for dir in stale {
            if let Some(wd) = self.target_wds.remove(&dir) {
                self.remove_watch(wd);
            }
        }
        for dir in wanted {
            if self.target_wds.contains_key(&dir) {
                continue;
            }
            match self.add_watch(&dir) {
                // The same directory under another role (a pathological
                // layout): its events already come, under that role.
                Ok(wd) if self.roles.contains_key(&wd) => {}
                Ok(wd) => {
                    self.roles.insert(wd, Role::Target(dir.clone()));
                    // A target edited between its read and this watch would
                    // go unseen: look at its links once more.
                    self.touch_links_below(&dir, Touch::Looked, now);
                    self.target_wds.insert(dir, wd);
                }
                // A dangling link's target directory that does not exist yet.
                Err(WatchError::AddWatch { source, .. })
                    if source.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(
                        error = %error,
                        "edits to symlink targets in {} are seen only on rescan",
                        dir.display()
                    );
                }
            }
        }
    }
}

/// Whether what appeared at `path` is complete as it is (see
/// [`event::touch_for`]): anything but a regular file with one link, which
/// is what `creat()` makes.
fn created_whole(path: &Path) -> bool {
    fs::symlink_metadata(path).map_or(true, |meta| !meta.is_file() || meta.nlink() > 1)
}
