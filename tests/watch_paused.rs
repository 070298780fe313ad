//! The watcher's timing on real inotify with tokio's clock paused: the runtime
//! jumps straight to the next deadline whenever it has nothing else to do, so
//! these tests measure the debounce rules exactly and take no real time to
//! wait. Events are queued by the kernel as each write returns, so they are
//! there before the clock can move past them.

use std::fs::{self, File};
use std::io::Write;
use std::time::Duration;

use corral::watch::{FileChange, JobDirWatcher, WatchOptions};
use tokio::time::Instant;

const QUIET: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(2);

fn options() -> WatchOptions {
    WatchOptions { quiet_period: QUIET, max_batch_delay: MAX_DELAY, ..Default::default() }
}

fn jobs_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("jobs");
    fs::create_dir(&dir).unwrap();
    (tmp, dir)
}

fn names(changes: &[FileChange]) -> Vec<String> {
    changes.iter().map(|c| c.path().file_name().unwrap().to_string_lossy().into_owned()).collect()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_batch_closes_one_quiet_period_after_the_last_event() {
    let (_tmp, dir) = jobs_dir();
    fs::write(dir.join("a.yaml"), "name: a\n").unwrap();
    let start = Instant::now();
    let mut watcher = JobDirWatcher::new(&dir, options()).unwrap();
    assert_eq!(names(&watcher.next_batch().await.unwrap()), ["a.yaml"]);
    assert_eq!(start.elapsed(), QUIET);

    // Two files written 150 ms apart: one batch, a quiet period after the second.
    let start = Instant::now();
    fs::write(dir.join("b.yaml"), "name: b\n").unwrap();
    let writer = tokio::spawn({
        let dir = dir.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            fs::write(dir.join("c.yaml"), "name: c\n").unwrap();
        }
    });
    assert_eq!(names(&watcher.next_batch().await.unwrap()), ["b.yaml", "c.yaml"]);
    assert_eq!(start.elapsed(), Duration::from_millis(150) + QUIET);
    writer.await.unwrap();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_file_kept_busy_holds_others_back_no_longer_than_the_max_delay() {
    let (_tmp, dir) = jobs_dir();
    let mut watcher = JobDirWatcher::new(&dir, options()).unwrap();
    assert!(watcher.next_batch().await.unwrap().is_empty());

    // Written every 100 ms for 5 s and closed only then.
    let mut busy = File::create(dir.join("busy.yaml")).unwrap();
    let writer = tokio::spawn(async move {
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            busy.write_all(b"#\n").unwrap();
        }
    });
    let start = Instant::now();
    fs::write(dir.join("a.yaml"), "name: a\n").unwrap();
    assert_eq!(names(&watcher.next_batch().await.unwrap()), ["a.yaml"]);
    assert_eq!(start.elapsed(), MAX_DELAY);

    writer.await.unwrap();
    let closed = Instant::now();
    assert_eq!(names(&watcher.next_batch().await.unwrap()), ["busy.yaml"]);
    assert_eq!(closed.elapsed(), QUIET);
}
