//! One inotify instance for every job's event stream.
//!
//! The kernel caps inotify *instances* per user
//! (`fs.inotify.max_user_instances`, 128 by default on Debian) far below the
//! number of runs a node holds, while *watches*
//! (`fs.inotify.max_user_watches`, hundreds of thousands) are plentiful. So
//! the agent opens one instance, lazily, on the first stream that needs one,
//! and every stream adds its watches to it. A reader task drains the
//! instance and routes each event, by watch descriptor, to the
//! [`Subscription`] that asked for it; a subscription keeps what arrived as
//! a set of flags, so a stream that is slow to look loses nothing and
//! queues nothing (it re-reads its files anyway).
//!
//! Several subscriptions may watch one inode (every job watches the common
//! parent directory for its own removal): the kernel hands out one watch
//! descriptor per inode and instance, so routes are a list per descriptor,
//! and the watch is removed only when its last route goes.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{oneshot, Notify};

use super::error::CgroupError;
use super::fs::{register, OwnsFd};

/// A handle on the shared inotify instance; cheap to clone. The instance is
/// opened by the first [`Notifier::subscribe`] that watches something and
/// closed when the last handle and subscription are gone.
#[derive(Clone, Default)]
pub struct Notifier {
    hub: Arc<Mutex<Option<Arc<Hub>>>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let open = lock(&self.hub).is_some();
        f.debug_struct("Notifier").field("open", &open).finish()
    }
}

/// What has arrived for a subscription since it last looked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Delivered {
    /// Bit `i` set: the file watched as slot `i` was modified.
    pub modified: u64,
    /// Bit `i` set: the watch on slot `i` is gone (its file was removed).
    pub ignored: u64,
    /// The watched child was removed from its parent.
    pub removed: bool,
    /// The kernel's queue overflowed: events were lost, so anything may have
    /// changed. Every file should be read again.
    pub overflowed: bool,
}

impl Delivered {
    fn is_empty(&self) -> bool {
        *self == Delivered::default()
    }
}

enum Target {
    File(u32),
    Child(OsString),
}

struct Route {
    subscriber: u64,
    target: Target,
}

struct Mailbox {
    delivered: Mutex<Delivered>,
    notify: Notify,
}

impl Mailbox {
    fn post(&self, f: impl FnOnce(&mut Delivered)) {
        f(&mut lock(&self.delivered));
        // Stored as a permit if the subscriber is not waiting right now.
        self.notify.notify_one();
    }
}

#[derive(Default)]
struct Routes {
    by_wd: HashMap<WatchDescriptor, Vec<Route>>,
    mailboxes: HashMap<u64, Arc<Mailbox>>,
    next_subscriber: u64,
}

struct InotifyFd(Inotify);

impl OwnsFd for InotifyFd {}

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

struct Hub {
    fd: Arc<AsyncFd<InotifyFd>>,
    routes: Arc<Mutex<Routes>>,
    /// Dropped with the hub, which ends the reader task.
    _stop: oneshot::Sender<()>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing holding these locks can panic halfway through an update.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn inotify_err(path: &Path) -> impl Fn(Errno) -> CgroupError + '_ {
    move |errno| CgroupError::Event { path: path.to_owned(), source: errno.into() }
}

impl Notifier {
    pub fn new() -> Notifier {
        Notifier::default()
    }

    /// True once the inotify instance is open.
    pub fn is_open(&self) -> bool {
        lock(&self.hub).is_some()
    }

    fn hub(&self) -> Result<Arc<Hub>, CgroupError> {
        let mut slot = lock(&self.hub);
        if let Some(hub) = slot.as_ref() {
            return Ok(Arc::clone(hub));
        }
        // A failure is not kept: the next subscription tries again.
        let hub = Arc::new(Hub::open()?);
        *slot = Some(Arc::clone(&hub));
        Ok(hub)
    }

    /// A new subscription with nothing watched yet. Opens nothing until it
    /// watches something.
    pub(crate) fn subscribe(&self) -> Subscription {
        Subscription {
            notifier: self.clone(),
            hub: None,
            id: 0,
            mailbox: Arc::new(Mailbox {
                delivered: Mutex::new(Delivered::default()),
                notify: Notify::new(),
            }),
            wds: Vec::new(),
        }
    }
}

impl Hub {
    /// Must be called from within a tokio runtime: it starts the reader.
    fn open() -> Result<Hub, CgroupError> {
        let what = Path::new("inotify");
        let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(inotify_err(what))?;
        let fd = Arc::new(register(InotifyFd(ino), Interest::READABLE, what)?);
        let routes = Arc::new(Mutex::new(Routes::default()));
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(read_loop(Arc::clone(&fd), Arc::clone(&routes), stopped));
        Ok(Hub { fd, routes, _stop: stop })
    }

    fn inotify(&self) -> &Inotify {
        &self.fd.get_ref().0
    }
}

/// Drains the instance and routes what it reads, until the hub is dropped.
async fn read_loop(
    fd: Arc<AsyncFd<InotifyFd>>,
    routes: Arc<Mutex<Routes>>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        let mut guard = tokio::select! {
            _ = &mut stopped => return,
            ready = fd.readable() => match ready {
                Ok(guard) => guard,
                Err(err) => {
                    tracing::error!("inotify reader failed, no more cgroup notifications: {err}");
                    overflow_all(&routes);
                    return;
                }
            },
        };
        // Cleared before draining, so a change during the drain raises
        // readiness again instead of being lost.
        guard.clear_ready();
        loop {
            match fd.get_ref().0.read_events() {
                Ok(events) => route(&routes, events),
                Err(Errno::EAGAIN) => break,
                Err(errno) => {
                    tracing::error!("reading inotify events failed: {errno}");
                    overflow_all(&routes);
                    break;
                }
            }
        }
    }
}

fn overflow_all(routes: &Mutex<Routes>) {
    for mailbox in lock(routes).mailboxes.values() {
        mailbox.post(|d| d.overflowed = true);
    }
}

fn route(routes: &Mutex<Routes>, events: Vec<InotifyEvent>) {
    let mut routes = lock(routes);
    for event in events {
        if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            for mailbox in routes.mailboxes.values() {
                mailbox.post(|d| d.overflowed = true);
            }
            continue;
        }
        let ignored = event.mask.contains(AddWatchFlags::IN_IGNORED);
        let Some(list) = routes.by_wd.get(&event.wd) else {
            // A watch removed by its last subscriber; its IN_IGNORED trails.
            continue;
        };
        for r in list {
            let Some(mailbox) = routes.mailboxes.get(&r.subscriber) else { continue };
            match &r.target {
                Target::File(slot) if ignored => mailbox.post(|d| d.ignored |= 1 << slot),
                Target::File(slot) => mailbox.post(|d| d.modified |= 1 << slot),
                Target::Child(name) if event.name.as_deref() == Some(name.as_os_str()) => {
                    mailbox.post(|d| d.removed = true)
                }
                // The parent itself went: so did every child.
                Target::Child(_) if ignored => mailbox.post(|d| d.removed = true),
                Target::Child(_) => {}
            }
        }
        if ignored {
            // The kernel dropped the watch; the descriptor may be handed out
            // again for another inode.
            routes.by_wd.remove(&event.wd);
        }
    }
}

/// One stream's watches on the shared instance. Dropping it removes them.
pub(crate) struct Subscription {
    notifier: Notifier,
    hub: Option<Arc<Hub>>,
    id: u64,
    mailbox: Arc<Mailbox>,
    wds: Vec<WatchDescriptor>,
}

/// The number of file slots a subscription has (bits of [`Delivered`]).
pub(crate) const SLOTS: u32 = u64::BITS;

impl Subscription {
    fn add(
        &mut self,
        path: &Path,
        flags: AddWatchFlags,
        target: Target,
    ) -> Result<WatchDescriptor, CgroupError> {
        let hub = match &self.hub {
            Some(hub) => Arc::clone(hub),
            None => {
                let hub = self.notifier.hub()?;
                let mut routes = lock(&hub.routes);
                routes.next_subscriber += 1;
                self.id = routes.next_subscriber;
                routes.mailboxes.insert(self.id, Arc::clone(&self.mailbox));
                drop(routes);
                self.hub = Some(Arc::clone(&hub));
                hub
            }
        };
        // Under the lock: a watch being removed by another subscription's
        // drop cannot race with this one adding a route to it.
        let mut routes = lock(&hub.routes);
        // IN_MASK_ADD (which nix does not name): another subscription may
        // watch the same inode for other events; its mask is kept.
        let mask_add = AddWatchFlags::from_bits_retain(libc::IN_MASK_ADD);
        let wd = hub.inotify().add_watch(path, flags | mask_add).map_err(inotify_err(path))?;
        routes.by_wd.entry(wd).or_default().push(Route { subscriber: self.id, target });
        self.wds.push(wd);
        Ok(wd)
    }

    /// Watches `path` for modification, reported in bit `slot`.
    pub fn watch_file(&mut self, path: &Path, slot: u32) -> Result<(), CgroupError> {
        assert!(slot < SLOTS, "a subscription has {SLOTS} file slots");
        self.add(path, AddWatchFlags::IN_MODIFY, Target::File(slot)).map(drop)
    }

    /// Watches `parent` for the removal of its entry `name`.
    pub fn watch_removal(&mut self, parent: &Path, name: &OsStr) -> Result<(), CgroupError> {
        let flags = AddWatchFlags::IN_DELETE | AddWatchFlags::IN_ONLYDIR;
        self.add(parent, flags, Target::Child(name.to_owned())).map(drop)
    }

    /// Waits until something arrives and takes it. Cancel-safe.
    pub async fn next(&self) -> Delivered {
        loop {
            let delivered = std::mem::take(&mut *lock(&self.mailbox.delivered));
            if !delivered.is_empty() {
                return delivered;
            }
            self.mailbox.notify.notified().await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some(hub) = self.hub.take() else { return };
        let mut routes = lock(&hub.routes);
        routes.mailboxes.remove(&self.id);
        for wd in self.wds.drain(..) {
            let Some(list) = routes.by_wd.get_mut(&wd) else { continue };
            list.retain(|r| r.subscriber != self.id);
            if list.is_empty() {
                routes.by_wd.remove(&wd);
                // Fails when the kernel already dropped the watch (its file
                // is gone): nothing left to undo.
                let _ = hub.inotify().rm_watch(wd);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn soon(sub: &Subscription) -> Delivered {
        tokio::time::timeout(Duration::from_secs(5), sub.next()).await.expect("an event")
    }

    #[tokio::test]
    async fn many_subscriptions_share_one_instance_and_see_only_their_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let notifier = Notifier::new();
        let mut subs = Vec::new();
        for i in 0..300 {
            let child = dir.path().join(format!("c{i}"));
            std::fs::create_dir(&child).unwrap();
            std::fs::write(child.join("f"), "").unwrap();
            let mut sub = notifier.subscribe();
            sub.watch_removal(dir.path(), child.file_name().unwrap()).unwrap();
            sub.watch_file(&child.join("f"), 3).unwrap();
            subs.push(sub);
        }
        // More than the default per-user instance limit, on one instance.
        assert!(notifier.is_open());
        std::fs::write(dir.path().join("c7/f"), "x").unwrap();
        assert_eq!(soon(&subs[7]).await, Delivered { modified: 1 << 3, ..Default::default() });
        std::fs::remove_file(dir.path().join("c9/f")).unwrap();
        std::fs::remove_dir(dir.path().join("c9")).unwrap();
        let mut got = soon(&subs[9]).await;
        while !(got.removed && got.ignored != 0) {
            let more = soon(&subs[9]).await;
            got.removed |= more.removed;
            got.ignored |= more.ignored;
        }
        assert_eq!(got.ignored, 1 << 3, "{got:?}");
        // Nobody else heard anything.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for (i, sub) in subs.iter().enumerate() {
            if i != 9 {
                assert_eq!(*lock(&sub.mailbox.delivered), Delivered::default(), "c{i}");
            }
        }
    }

    #[tokio::test]
    async fn the_shared_parent_watch_outlives_the_subscriptions_that_leave() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        let notifier = Notifier::new();
        let mut a = notifier.subscribe();
        a.watch_removal(dir.path(), OsStr::new("a")).unwrap();
        let mut b = notifier.subscribe();
        b.watch_removal(dir.path(), OsStr::new("b")).unwrap();
        drop(a);
        std::fs::remove_dir(dir.path().join("b")).unwrap();
        assert!(soon(&b).await.removed);
    }

    #[tokio::test]
    async fn nothing_is_opened_until_something_is_watched() {
        let notifier = Notifier::new();
        let sub = notifier.subscribe();
        assert!(!notifier.is_open() && sub.wds.is_empty());
    }

    #[tokio::test]
    async fn a_watch_that_fails_is_reported_with_its_path() {
        let notifier = Notifier::new();
        let mut sub = notifier.subscribe();
        let err = sub.watch_file(Path::new("/nonexistent/corral/f"), 0).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/corral/f"), "{err}");
    }
}
