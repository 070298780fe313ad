//! When a touched file has settled enough to be read, and when a batch closes.
//!
//! Pure: time comes in as arguments ([`tokio::time::Instant`], so the shell's
//! clock can be paused in tests).
//!
//! A path is *settled* when it is complete — the last writer closed it, or it
//! was moved in, removed or moved out, or only its metadata changed — and
//! nothing has touched it for the quiet period. A file still open for writing
//! is never settled however long it sits idle: a slow writer's half file is
//! never read.
//!
//! Settled paths wait for the rest of the directory: a batch closes when
//! nothing at all has been touched for the quiet period, so a `git pull` or
//! `rsync` of many files comes out as one batch rather than one per file. So
//! that a busy file cannot hold the others back forever, a batch also closes
//! once some settled path was last touched `max_batch_delay` ago.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

/// What happened to a path, as far as settling goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touch {
    /// Created or written, and perhaps still open for writing: wait for a close.
    Written,
    /// Complete as it stands: closed after writing, moved in, removed, moved out,
    /// or created whole (a symlink, a hard link, a fifo).
    Completed,
    /// Metadata changed, or a rescan asks to look again: complete, unless a
    /// writer already had it open.
    Looked,
    /// Events were lost (queue overflow). A pending writer's close may be among
    /// them, so the path is taken as complete rather than left waiting for a
    /// close that will never be reported.
    Lost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    last_touch: Instant,
    complete: bool,
}

#[derive(Debug, Clone)]
pub struct Debouncer {
    quiet: Duration,
    max_delay: Duration,
    pending: BTreeMap<PathBuf, Pending>,
    /// When any path was last touched.
    last_activity: Option<Instant>,
}

impl Debouncer {
    /// `max_batch_delay` below `quiet` is taken as `quiet`.
    pub fn new(quiet: Duration, max_batch_delay: Duration) -> Debouncer {
        Debouncer {
            quiet,
            max_delay: max_batch_delay.max(quiet),
            pending: BTreeMap::new(),
            last_activity: None,
        }
    }

    pub fn touch(&mut self, path: PathBuf, touch: Touch, now: Instant) {
        let before = self.pending.get(&path).map(|p| p.complete);
        let complete = match touch {
            Touch::Written => false,
            Touch::Completed | Touch::Lost => true,
            Touch::Looked => before.unwrap_or(true),
        };
        self.pending.insert(path, Pending { last_touch: now, complete });
        self.last_activity = Some(self.last_activity.map_or(now, |last| last.max(now)));
    }

    fn is_settled(&self, pending: &Pending, now: Instant) -> bool {
        pending.complete && now >= pending.last_touch + self.quiet
    }

    /// The paths to read now, in name order: every settled path if a batch
    /// closes now, else none. They stay pending until [`Debouncer::remove`]d,
    /// so that a batch abandoned half way is not lost.
    pub fn settled(&self, now: Instant) -> Vec<PathBuf> {
        let directory_quiet = self.last_activity.is_some_and(|last| now >= last + self.quiet);
        let mut overdue = false;
        let settled: Vec<PathBuf> = self
            .pending
            .iter()
            .filter(|(_, p)| self.is_settled(p, now))
            .inspect(|(_, p)| overdue |= now >= p.last_touch + self.max_delay)
            .map(|(path, _)| path.clone())
            .collect();
        if directory_quiet || overdue {
            settled
        } else {
            Vec::new()
        }
    }

    /// When [`Debouncer::settled`] will next return paths unless something is
    /// touched before then; `None` when nothing pending is complete, so that
    /// only an event can make progress.
    pub fn next_deadline(&self) -> Option<Instant> {
        let oldest_complete =
            self.pending.values().filter(|p| p.complete).map(|p| p.last_touch).min()?;
        // Every path was touched no later than the last activity, so once the
        // directory has been quiet for the quiet period every complete path is
        // settled and the batch closes.
        let quiet = self.last_activity? + self.quiet;
        Some(quiet.min(oldest_complete + self.max_delay))
    }

    pub fn remove<'a>(&mut self, paths: impl IntoIterator<Item = &'a PathBuf>) {
        for path in paths {
            self.pending.remove(path);
        }
    }

    pub fn clear(&mut self) {
        self.pending.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUIET: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(2);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn p(name: &str) -> PathBuf {
        PathBuf::from("/jobs").join(name)
    }

    fn debouncer() -> Debouncer {
        Debouncer::new(QUIET, MAX)
    }

    #[test]
    fn a_closed_file_settles_after_the_quiet_period() {
        let t0 = Instant::now();
        let mut d = debouncer();
        d.touch(p("a.yaml"), Touch::Written, t0);
        d.touch(p("a.yaml"), Touch::Completed, t0 + ms(5));
        assert_eq!(d.next_deadline(), Some(t0 + ms(205)));
        assert!(d.settled(t0 + ms(204)).is_empty());
        assert_eq!(d.settled(t0 + ms(205)), vec![p("a.yaml")]);
    }

    #[test]
    fn a_file_open_for_writing_never_settles() {
        let t0 = Instant::now();
        let mut d = debouncer();
        d.touch(p("a.yaml"), Touch::Written, t0);
        assert_eq!(d.next_deadline(), None);
        assert!(d.settled(t0 + Duration::from_secs(3600)).is_empty());
        // Metadata changes do not stand for the missing close.
        d.touch(p("a.yaml"), Touch::Looked, t0 + ms(500));
        assert_eq!(d.next_deadline(), None);
        d.touch(p("a.yaml"), Touch::Completed, t0 + ms(900));
        assert_eq!(d.settled(t0 + ms(1100)), vec![p("a.yaml")]);
    }

    #[test]
    fn a_second_write_within_the_quiet_period_restarts_it() {
        let t0 = Instant::now();
        let mut d = debouncer();
        d.touch(p("a.yaml"), Touch::Completed, t0);
        d.touch(p("a.yaml"), Touch::Written, t0 + ms(100));
        assert!(d.settled(t0 + ms(250)).is_empty());
        d.touch(p("a.yaml"), Touch::Completed, t0 + ms(120));
        assert!(d.settled(t0 + ms(319)).is_empty());
        assert_eq!(d.settled(t0 + ms(320)), vec![p("a.yaml")]);
    }

    #[test]
    fn metadata_changes_on_an_idle_file_settle_it() {
        let t0 = Instant::now();
        let mut d = debouncer();
        d.touch(p("a.yaml"), Touch::Looked, t0);
        assert_eq!(d.settled(t0 + QUIET), vec![p("a.yaml")]);
    }

    #[test]
    fn a_lost_event_completes_a_pending_writer() {
        let t0 = Instant::now();
        let mut d = debouncer();
        d.touch(p("a.yaml"), Touch::Written, t0);
        d.touch(p("a.yaml"), Touch::Lost, t0 + ms(10));
        assert_eq!(d.settled(t0 + ms(210)), vec![p("a.yaml")]);
    }

    #[test]
    fn files_arriving_one_after_another_come_out_together() {
        // An rsync renaming 50 files into place, one every 20 ms: each file is
        // quiet long before the last arrives, but the batch waits for the end.
        let t0 = Instant::now();
        let mut d = debouncer();
        for i in 0..50u64 {
            let at = t0 + ms(20 * i);
            assert!(d.settled(at).is_empty(), "closed early at file {i}");
            d.touch(p(&format!("{i:02}.yaml")), Touch::Completed, at);
        }
        let last = t0 + ms(20 * 49);
        assert_eq!(d.next_deadline(), Some(last + QUIET));
        assert_eq!(d.settled(last + QUIET).len(), 50);
    }

    #[test]
    fn a_busy_file_holds_a_batch_back_no_longer_than_the_max_delay() {
        let t0 = Instant::now();
        let mut d = debouncer();
        d.touch(p("a.yaml"), Touch::Completed, t0);
        // Something writes b.yaml every 100 ms and never closes it.
        let mut now = t0;
        while now < t0 + MAX {
            d.touch(p("b.yaml"), Touch::Written, now);
            assert!(d.settled(now).is_empty());
            now += ms(100);
        }
        assert_eq!(d.next_deadline(), Some(t0 + MAX));
        assert_eq!(d.settled(t0 + MAX), vec![p("a.yaml")]);
    }

    #[test]
    fn only_settled_paths_leave_with_an_overdue_batch() {
        let t0 = Instant::now();
        let mut d = debouncer();
        d.touch(p("a.yaml"), Touch::Completed, t0);
        d.touch(p("c.yaml"), Touch::Completed, t0 + MAX - ms(50));
        d.touch(p("b.yaml"), Touch::Written, t0 + MAX - ms(10));
        assert_eq!(d.settled(t0 + MAX), vec![p("a.yaml")]);
    }

    #[test]
    fn settled_paths_stay_until_removed() {
        let t0 = Instant::now();
        let mut d = debouncer();
        d.touch(p("a.yaml"), Touch::Completed, t0);
        d.touch(p("b.yaml"), Touch::Completed, t0);
        let due = d.settled(t0 + QUIET);
        assert_eq!(due, d.settled(t0 + QUIET));
        d.remove(&due);
        assert!(d.is_empty());
        assert_eq!(d.next_deadline(), None);
    }

    #[test]
    fn a_max_delay_below_the_quiet_period_is_the_quiet_period() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(QUIET, ms(10));
        d.touch(p("a.yaml"), Touch::Completed, t0);
        assert!(d.settled(t0 + ms(100)).is_empty());
        assert_eq!(d.next_deadline(), Some(t0 + QUIET));
    }

    /// The same rules on tokio's clock, paused, the way the watcher's loop
    /// sleeps on them: the sleep ends exactly at the deadline, and not before.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn deadlines_line_up_with_tokio_sleep() {
        let mut d = debouncer();
        let start = Instant::now();
        d.touch(p("a.yaml"), Touch::Written, start);
        tokio::time::advance(ms(150)).await;
        d.touch(p("a.yaml"), Touch::Completed, Instant::now());
        tokio::time::advance(ms(150)).await;
        assert!(d.settled(Instant::now()).is_empty());
        tokio::time::sleep_until(d.next_deadline().unwrap()).await;
        assert_eq!(Instant::now(), start + ms(350));
        assert_eq!(d.settled(Instant::now()), vec![p("a.yaml")]);
    }
}
