//! A job's kernel notifications as one async stream of [`CgroupEvent`]s.
//!
//! Every source is a file descriptor registered with the tokio reactor
//! (`AsyncFd`); nothing is polled on a timer. inotify watches go on one
//! instance shared by every stream ([`Notifier`]): the kernel allows a user
//! only a few inotify instances (128 by default), and a node holds many more
//! runs than that.
//!
//! | Source | Layout | Events |
//! |---|---|---|
//! | eventfd registered in `cgroup.event_control` on `memory.oom_control` | v1 memory | `Oom`, then `PausedAtLimit` (`under_oom 1`) or `OomKill` (`oom_kill` grew) |
//! | inotify `IN_MODIFY` on `memory.events` | v2 memory | `MemoryHigh`, `MemoryMax`, `Oom`, `OomKill` (counter deltas); `LimitReached` where `memory.high` is the pause point |
//! | inotify `IN_MODIFY` on `cgroup.events` | v2 tree (hybrid too) | `Populated`, `Emptied`, `Frozen` |
//! | PSI trigger on `memory.pressure`, `POLLPRI` | v2 tree (hybrid too) | `MemoryPressure` |
//!
//! Removal ends the stream: the parent of the job's v2 directory is watched
//! for the job's `IN_DELETE` (the watched files are held open, so neither
//! they nor the directory report their own deletion), and the v1 eventfd
//! fires once more when its cgroup goes, after which `memory.oom_control` is
//! found gone. Once every source has ended, [`EventStream::next`] returns
//! `None`.
//!
//! # Reached the limit, or being killed
//!
//! Where `memory.high` is the pause point (`memory.max` the freeze margin
//! above it, [`OomMode::FreezeAtHigh`](super::OomMode::FreezeAtHigh), read
//! from the cgroup's own files when the stream opens), a `high` increment
//! is [`CgroupEvent::LimitReached`]: the job is throttled at its limit and
//! should be frozen. A job that allocates fast enough crosses `high` and
//! reaches `memory.max` between two notifications (the kernel sends at most
//! one per 10 ms), and is then already being killed: a reading in which
//! `oom_kill` grew is a kill and nothing else, so a dying job is never
//! frozen and grown as if it were paused, and `oom` alone (reclaim at
//! `memory.max` failed, the kill is coming) is not reported as reaching the
//! limit either.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::eventfd::{EfdFlags, EventFd};
use serde::Serialize;
use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, Ready};

use super::error::CgroupError;
use super::fs::{read_knob, register, write_knob, KnobFile};
use super::notify::{Delivered, Notifier, Subscription};
use super::v1::memory::{parse_oom_control, EVENT_CONTROL, OOM_CONTROL};
use super::v2::events::{parse_events, CgroupEventsState, EVENTS};
use super::v2::memory::{
    parse_events as parse_memory_events, pauses_at_high, MemoryEventCounts,
    EVENTS as MEMORY_EVENTS, HIGH, MAX,
};
use super::v2::psi::{PsiTrigger, MEMORY as MEMORY_PRESSURE};

/// Something the kernel reported about a job's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CgroupEvent {
    /// The job reached its hard limit and reclaim failed: the kernel's OOM
    /// handling ran `count` times.
    Oom { count: u64 },
    /// `count` of the job's processes were OOM-killed.
    OomKill { count: u64 },
    /// v1 with the OOM killer disabled: the job is stopped at its hard limit
    /// (`under_oom 1`) until the limit is raised or the job is killed.
    PausedAtLimit,
    /// v2: usage went over `memory.high` `count` times (throttled).
    MemoryHigh { count: u64 },
    /// v2 with `memory.high` as the pause point at the hard limit: usage
    /// reached the limit and no OOM kill came with it; the job is throttled
    /// there until it is frozen.
    LimitReached,
    /// v2: usage hit `memory.max` `count` times.
    MemoryMax { count: u64 },
    /// The memory pressure trigger fired.
    MemoryPressure,
    /// A first process arrived.
    Populated,
    /// The last process left.
    Emptied,
    /// The v2 freezer state changed.
    Frozen(bool),
}

/// What an [`EventStream`] listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventOptions {
    /// PSI trigger on `memory.pressure`; `None` to not register one.
    pub memory_pressure: Option<PsiTrigger>,
}

impl Default for EventOptions {
    fn default() -> Self {
        EventOptions { memory_pressure: Some(PsiTrigger::DEFAULT_MEMORY) }
    }
}

/// Which sources an [`EventStream`] has registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EventSources {
    pub v1_oom: bool,
    pub memory_events: bool,
    pub cgroup_events: bool,
    /// The PSI trigger in force, which may be the unprivileged equivalent of
    /// the one asked for.
    pub memory_pressure: Option<PsiTrigger>,
}

/// The job directories events come from.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct EventDirs<'a> {
    pub v1_memory: Option<&'a Path>,
    pub unified: Option<&'a Path>,
    /// The v2 memory controller is enabled in `unified`.
    pub unified_memory: bool,
}

struct V1Oom {
    fd: AsyncFd<EventFd>,
    // Held open: the registration lives as long as both descriptors.
    oom_control: KnobFile,
    oom_kill: u64,
}

struct Watched<T> {
    slot: u32,
    file: KnobFile,
    last: T,
}

/// How a job's `memory.events` readings are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemoryEventsMeaning {
    /// `memory.high` is a throttle (or unset): its events are only counted.
    Throttle,
    /// `memory.high` is the pause point at the hard limit.
    PausePoint,
}

/// Slots of the two watched files in the stream's [`Subscription`].
const CGROUP_EVENTS_SLOT: u32 = 0;
const MEMORY_EVENTS_SLOT: u32 = 1;

struct Inotified {
    /// Watches on the agent's shared inotify instance ([`Notifier`]). The
    /// parent of the job's v2 directory is watched for the job's removal:
    /// the watched files are held open, which keeps their inodes alive, so
    /// neither they nor the directory itself report `IN_DELETE_SELF`.
    sub: Subscription,
    memory: Option<Watched<MemoryEventCounts>>,
    memory_meaning: MemoryEventsMeaning,
    cgroup: Option<Watched<CgroupEventsState>>,
    populated: PopulatedTracker,
}

struct Psi {
    fd: AsyncFd<File>,
    path: PathBuf,
    trigger: PsiTrigger,
}

/// Turns successive `cgroup.events` readings into events.
///
/// The kernel coalesces notifications (at most one per 10 ms) and the file is
/// read some time after a notification, so a short-lived job may be seen
/// only as "notified, still empty". Such a reading still reports `Emptied`
/// once, unless the notification is explained by a freezer change.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PopulatedTracker {
    last: CgroupEventsState,
    reported_empty: bool,
}

impl PopulatedTracker {
    pub fn new(baseline: CgroupEventsState) -> Self {
        PopulatedTracker { last: baseline, reported_empty: false }
    }

    pub fn observe(&mut self, now: CgroupEventsState, out: &mut VecDeque<CgroupEvent>) {
        let frozen_changed = now.frozen != self.last.frozen;
        if frozen_changed {
            out.push_back(CgroupEvent::Frozen(now.frozen));
        }
        if now.populated {
            if !self.last.populated {
                out.push_back(CgroupEvent::Populated);
            }
            self.reported_empty = false;
        } else if self.last.populated || (!self.reported_empty && !frozen_changed) {
            out.push_back(CgroupEvent::Emptied);
            self.reported_empty = true;
        }
        self.last = now;
    }
}

pub(crate) fn memory_deltas(
    old: MemoryEventCounts,
    new: MemoryEventCounts,
    meaning: MemoryEventsMeaning,
    out: &mut VecDeque<CgroupEvent>,
) {
    let grew = |a: u64, b: u64| Some(b.saturating_sub(a)).filter(|d| *d > 0);
    let killed = grew(old.oom_kill, new.oom_kill);
    let high = grew(old.high, new.high);
    if let Some(count) = high {
        out.push_back(CgroupEvent::MemoryHigh { count });
    }
    if let Some(count) = grew(old.max, new.max) {
        out.push_back(CgroupEvent::MemoryMax { count });
    }
    match meaning {
        MemoryEventsMeaning::Throttle => {
            // With a kill in the same reading there is nothing left to
            // freeze: the kill is the event.
            if let Some(count) = grew(old.oom, new.oom).filter(|_| killed.is_none()) {
                out.push_back(CgroupEvent::Oom { count });
            }
        }
        MemoryEventsMeaning::PausePoint => {
            if high.is_some() && killed.is_none() && new.oom_kill == 0 {
                out.push_back(CgroupEvent::LimitReached);
            }
        }
    }
    if let Some(count) = killed {
        out.push_back(CgroupEvent::OomKill { count });
    }
}

/// The event stream of one job cgroup. Dropping it unregisters everything.
pub struct EventStream {
    v1_oom: Option<V1Oom>,
    inotify: Option<Inotified>,
    psi: Option<Psi>,
    pending: VecDeque<CgroupEvent>,
    buf: String,
}

fn event_err(path: &Path) -> impl Fn(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Event { path: path.to_owned(), source }
}

fn open_v1_oom(dir: &Path) -> Result<V1Oom, CgroupError> {
    let oom_control = KnobFile::open(dir.join(OOM_CONTROL))?;
    let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
        .map_err(|e| event_err(oom_control.path())(e.into()))?;
    // "<eventfd> <fd of memory.oom_control>" registers for OOM notifications.
    write_knob(
        &dir.join(EVENT_CONTROL),
        &format!("{} {}", efd.as_raw_fd(), oom_control.as_raw_fd()),
    )?;
    let oom_kill = parse_oom_control(&oom_control.read_string()?).oom_kill.unwrap_or(0);
    let fd = register(efd, Interest::READABLE, oom_control.path())?;
    Ok(V1Oom { fd, oom_control, oom_kill })
}

fn open_inotify(
    notifier: &Notifier,
    dirs: &EventDirs<'_>,
) -> Result<Option<Inotified>, CgroupError> {
    let Some(unified) = dirs.unified else { return Ok(None) };
    let (Some(parent_dir), Some(name)) = (unified.parent(), unified.file_name()) else {
        return Ok(None);
    };
    let mut sub = notifier.subscribe();
    // Watch first, then read the baseline: a change after the read is seen.
    let mut watch = |file: &str, slot: u32| -> Result<KnobFile, CgroupError> {
        let path = unified.join(file);
        sub.watch_file(&path, slot)?;
        KnobFile::open(path)
    };
    let file = watch(EVENTS, CGROUP_EVENTS_SLOT)?;
    let baseline = parse_events(&file.read_string()?);
    let cgroup = Some(Watched { slot: CGROUP_EVENTS_SLOT, file, last: baseline });
    let memory = if dirs.unified_memory {
        let file = watch(MEMORY_EVENTS, MEMORY_EVENTS_SLOT)?;
        let last = parse_memory_events(&file.read_string()?);
        Some(Watched { slot: MEMORY_EVENTS_SLOT, file, last })
    } else {
        None
    };
    // A grown limit moves `memory.high` and `memory.max` together, so what
    // the files say now holds for the cgroup's life.
    let read = |file: &str| read_knob(&unified.join(file)).ok();
    let memory_meaning = if memory.is_some()
        && read(HIGH).zip(read(MAX)).is_some_and(|(high, max)| pauses_at_high(&high, &max))
    {
        MemoryEventsMeaning::PausePoint
    } else {
        MemoryEventsMeaning::Throttle
    };
    sub.watch_removal(parent_dir, name)?;
    Ok(Some(Inotified {
        sub,
        memory,
        memory_meaning,
        cgroup,
        populated: PopulatedTracker::new(baseline),
    }))
}

fn write_trigger(path: &Path, trigger: PsiTrigger) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    file.write_all(trigger.to_string().as_bytes())?;
    Ok(file)
}

fn open_psi(dir: &Path, trigger: PsiTrigger) -> Result<Option<Psi>, CgroupError> {
    let path = dir.join(MEMORY_PRESSURE);
    let (file, trigger) = match write_trigger(&path, trigger) {
        Ok(file) => (file, trigger),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
            // Without CAP_SYS_RESOURCE only 2 s-multiple windows are allowed.
            let Some(alt) = trigger.unprivileged_equivalent() else {
                return Err(CgroupError::Write { path, value: trigger.to_string(), source: err });
            };
            match write_trigger(&path, alt) {
                Ok(file) => {
                    tracing::debug!(asked = %trigger, used = %alt, "PSI trigger window rounded for an unprivileged opener");
                    (file, alt)
                }
                Err(source) => {
                    return Err(CgroupError::Write { path, value: alt.to_string(), source })
                }
            }
        }
        Err(source) => return Err(CgroupError::Write { path, value: trigger.to_string(), source }),
    };
    let fd = register(file, Interest::PRIORITY | Interest::ERROR, &path)?;
    Ok(Some(Psi { fd, path, trigger }))
}

async fn wait_ready<T: AsRawFd>(fd: Option<&AsyncFd<T>>, interest: Interest) -> io::Result<Ready> {
    let Some(fd) = fd else { return std::future::pending().await };
    let mut guard = fd.ready(interest).await?;
    let ready = guard.ready();
    // Cleared before the source is drained, so a change during the drain
    // raises readiness again instead of being lost.
    guard.clear_ready();
    Ok(ready)
}

async fn delivered(inotify: Option<&Inotified>) -> Delivered {
    match inotify {
        Some(src) => src.sub.next().await,
        None => std::future::pending().await,
    }
}

enum Wake {
    V1Oom(io::Result<Ready>),
    Inotify(Delivered),
    Psi(io::Result<Ready>),
}

impl EventStream {
    /// Must be called from within a tokio runtime.
    pub(crate) fn open(
        notifier: &Notifier,
        dirs: &EventDirs<'_>,
        options: &EventOptions,
    ) -> Result<Self, CgroupError> {
        let v1_oom = dirs.v1_memory.map(open_v1_oom).transpose()?;
        let inotify = open_inotify(notifier, dirs)?;
        let psi = match (dirs.unified, options.memory_pressure) {
            (Some(dir), Some(trigger)) => open_psi(dir, trigger)?,
            _ => None,
        };
        Ok(EventStream { v1_oom, inotify, psi, pending: VecDeque::new(), buf: String::new() })
    }

    pub fn sources(&self) -> EventSources {
        let ino = self.inotify.as_ref();
        EventSources {
            v1_oom: self.v1_oom.is_some(),
            memory_events: ino.is_some_and(|i| i.memory.is_some()),
            cgroup_events: ino.is_some_and(|i| i.cgroup.is_some()),
            memory_pressure: self.psi.as_ref().map(|p| p.trigger),
        }
    }

    /// The next event; `None` once every source has ended because the
    /// cgroup is gone. A source that fails is dropped after its error is
    /// returned.
    pub async fn next(&mut self) -> Option<Result<CgroupEvent, CgroupError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.v1_oom.is_none() && self.inotify.is_none() && self.psi.is_none() {
                return None;
            }
            let wake = tokio::select! {
                r = wait_ready(self.v1_oom.as_ref().map(|s| &s.fd), Interest::READABLE) => Wake::V1Oom(r),
                d = delivered(self.inotify.as_ref()) => Wake::Inotify(d),
                r = wait_ready(self.psi.as_ref().map(|s| &s.fd), Interest::PRIORITY | Interest::ERROR) => Wake::Psi(r),
            };
            let result = match wake {
                Wake::V1Oom(r) => self.on_v1_oom(r),
                Wake::Inotify(r) => self.on_inotify(r),
                Wake::Psi(r) => self.on_psi(r),
            };
            if let Err(err) = result {
                return Some(Err(err));
            }
        }
    }

    fn on_v1_oom(&mut self, ready: io::Result<Ready>) -> Result<(), CgroupError> {
        let Some(src) = self.v1_oom.as_mut() else { return Ok(()) };
        let path = src.oom_control.path().to_path_buf();
        if let Err(source) = ready {
            self.v1_oom = None;
            return Err(CgroupError::Event { path, source });
        }
        let count = match src.fd.get_ref().read() {
            Ok(count) => count,
            Err(Errno::EAGAIN) => return Ok(()),
            Err(errno) => {
                self.v1_oom = None;
                return Err(CgroupError::Event { path, source: errno.into() });
            }
        };
        match src.oom_control.read_into(&mut self.buf) {
            Ok(()) => {}
            Err(err) if err.is_gone() => {
                // The eventfd fires once more when the cgroup is removed.
                self.v1_oom = None;
                return Ok(());
            }
            Err(err) => {
                self.v1_oom = None;
                return Err(err);
            }
        }
        let state = parse_oom_control(&self.buf);
        self.pending.push_back(CgroupEvent::Oom { count });
        if state.under_oom {
            self.pending.push_back(CgroupEvent::PausedAtLimit);
        }
        let kills = state.oom_kill.unwrap_or(0);
        if kills > src.oom_kill {
            self.pending.push_back(CgroupEvent::OomKill { count: kills - src.oom_kill });
        }
        src.oom_kill = kills;
        Ok(())
    }

    fn on_inotify(&mut self, delivered: Delivered) -> Result<(), CgroupError> {
        let Some(src) = self.inotify.as_mut() else { return Ok(()) };
        // After an overflow every file is read again: events were lost.
        let hit = |slot: u32| delivered.overflowed || delivered.modified & (1 << slot) != 0;
        let gone = |slot: u32| delivered.ignored & (1 << slot) != 0;

        if let Some(watch) = src.memory.as_mut().filter(|w| hit(w.slot)) {
            match watch.file.read_into(&mut self.buf) {
                Ok(()) => {
                    let now = parse_memory_events(&self.buf);
                    memory_deltas(watch.last, now, src.memory_meaning, &mut self.pending);
                    watch.last = now;
                }
                Err(err) if err.is_gone() => src.memory = None,
                Err(err) => return Err(err),
            }
        }
        if src.memory.as_ref().is_some_and(|w| gone(w.slot)) {
            src.memory = None;
        }
        if let Some(watch) = src.cgroup.as_mut().filter(|w| hit(w.slot)) {
            match watch.file.read_into(&mut self.buf) {
                Ok(()) => {
                    let now = parse_events(&self.buf);
                    src.populated.observe(now, &mut self.pending);
                    watch.last = now;
                }
                Err(err) if err.is_gone() => src.cgroup = None,
                Err(err) => return Err(err),
            }
        }
        if src.cgroup.as_ref().is_some_and(|w| gone(w.slot)) {
            src.cgroup = None;
        }
        if delivered.removed {
            // The cgroup was removed: every source is finished.
            self.inotify = None;
            self.v1_oom = None;
            self.psi = None;
        } else if src.memory.is_none() && src.cgroup.is_none() {
            self.inotify = None;
        }
        Ok(())
    }

    fn on_psi(&mut self, ready: io::Result<Ready>) -> Result<(), CgroupError> {
        let Some(src) = self.psi.as_ref() else { return Ok(()) };
        match ready {
            Err(source) => {
                let path = src.path.clone();
                self.psi = None;
                Err(CgroupError::Event { path, source })
            }
            // POLLERR/POLLHUP: the cgroup, and with it the trigger, is gone.
            Ok(r) if r.is_error() || r.is_read_closed() => {
                self.psi = None;
                Ok(())
            }
            Ok(r) if r.is_priority() => {
                self.pending.push_back(CgroupEvent::MemoryPressure);
                Ok(())
            }
            Ok(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(populated: bool, frozen: bool) -> CgroupEventsState {
        CgroupEventsState { populated, frozen }
    }

    fn run(baseline: CgroupEventsState, readings: &[CgroupEventsState]) -> Vec<CgroupEvent> {
        let mut tracker = PopulatedTracker::new(baseline);
        let mut out = VecDeque::new();
        for r in readings {
            tracker.observe(*r, &mut out);
        }
        out.into()
    }

    #[test]
    fn start_and_exit_are_reported_once() {
        use CgroupEvent::*;
        let e = run(
            state(false, false),
            &[state(true, false), state(false, false), state(false, false)],
        );
        assert_eq!(e, vec![Populated, Emptied]);
    }

    #[test]
    fn a_run_shorter_than_the_notification_interval_still_reports_emptied() {
        // Notified once, and by the time of the read the job is gone again.
        let e = run(state(false, false), &[state(false, false), state(false, false)]);
        assert_eq!(e, vec![CgroupEvent::Emptied]);
    }

    #[test]
    fn freezer_changes_are_not_mistaken_for_an_exit() {
        use CgroupEvent::*;
        let e = run(state(false, false), &[state(false, true), state(false, false)]);
        assert_eq!(e, vec![Frozen(true), Frozen(false)]);
        let e =
            run(state(true, false), &[state(true, true), state(true, false), state(false, false)]);
        assert_eq!(e, vec![Frozen(true), Frozen(false), Emptied]);
    }

    fn deltas(
        old: MemoryEventCounts,
        new: MemoryEventCounts,
        meaning: MemoryEventsMeaning,
    ) -> Vec<CgroupEvent> {
        let mut out = VecDeque::new();
        memory_deltas(old, new, meaning, &mut out);
        out.into()
    }

    fn counts(high: u64, max: u64, oom: u64, oom_kill: u64) -> MemoryEventCounts {
        MemoryEventCounts { high, max, oom, oom_kill, ..Default::default() }
    }

    #[test]
    fn memory_event_deltas() {
        use CgroupEvent::*;
        let old = counts(1, 2, 0, 0);
        let new = MemoryEventCounts { low: 9, oom_group_kill: 1, ..counts(4, 3, 1, 0) };
        assert_eq!(
            deltas(old, new, MemoryEventsMeaning::Throttle),
            vec![MemoryHigh { count: 3 }, MemoryMax { count: 1 }, Oom { count: 1 }]
        );
    }

    #[test]
    fn a_kill_in_the_reading_is_the_only_oom_event() {
        use CgroupEvent::*;
        let old = counts(1, 2, 0, 0);
        let new = counts(4, 3, 1, 1);
        assert_eq!(
            deltas(old, new, MemoryEventsMeaning::Throttle),
            vec![MemoryHigh { count: 3 }, MemoryMax { count: 1 }, OomKill { count: 1 }]
        );
        assert_eq!(
            deltas(old, new, MemoryEventsMeaning::PausePoint),
            vec![MemoryHigh { count: 3 }, MemoryMax { count: 1 }, OomKill { count: 1 }]
        );
    }

    #[test]
    fn at_the_pause_point_a_high_event_is_the_limit_reached() {
        use CgroupEvent::*;
        assert_eq!(
            deltas(counts(0, 0, 0, 0), counts(1, 0, 0, 0), MemoryEventsMeaning::PausePoint),
            vec![MemoryHigh { count: 1 }, LimitReached]
        );
        // A throttle is only counted.
        assert_eq!(
            deltas(counts(0, 0, 0, 0), counts(1, 0, 0, 0), MemoryEventsMeaning::Throttle),
            vec![MemoryHigh { count: 1 }]
        );
    }

    #[test]
    fn at_the_pause_point_reaching_max_is_not_the_limit_reached() {
        use CgroupEvent::*;
        // Reclaim at memory.max failed: the kill follows in a later reading.
        assert_eq!(
            deltas(counts(5, 0, 0, 0), counts(5, 1, 1, 0), MemoryEventsMeaning::PausePoint),
            vec![MemoryMax { count: 1 }]
        );
        // A job already killed once in this cgroup is dying, however many
        // high events its last allocations raised.
        assert_eq!(
            deltas(counts(5, 1, 1, 1), counts(6, 1, 1, 1), MemoryEventsMeaning::PausePoint),
            vec![MemoryHigh { count: 1 }]
        );
    }
}
