//! The jobs directory watcher on real inotify, in temporary directories, on
//! real time with a short quiet period.
//!
//! Tests that change ownership need root, as the test machine runs them.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use corral::watch::{FileChange, FileKind, JobDirWatcher, Refusal, WatchError, WatchOptions};
use nix::unistd::{chown, Uid};
use tokio::time::timeout;

/// Short, but long enough that consecutive steps of one test, meant to land in
/// one batch, do so on a machine busy with other work.
const QUIET: Duration = Duration::from_millis(250);
/// How long to wait for a batch that should come: generous, for a busy machine.
const PATIENCE: Duration = Duration::from_secs(10);

fn options() -> WatchOptions {
    WatchOptions {
        quiet_period: QUIET,
        max_batch_delay: Duration::from_secs(1),
        ..Default::default()
    }
}

/// A jobs directory `jobs/` inside a fresh temporary directory, so that its
/// parent is private to the test.
struct Fixture {
    tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("jobs");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        Fixture { tmp, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write(&self, name: &str, content: &str) {
        fs::write(self.path(name), content).unwrap();
    }

    /// A watcher whose (empty or not) first batch has been taken.
    async fn watch(&self) -> JobDirWatcher {
        let mut watcher = JobDirWatcher::new(&self.dir, options()).unwrap();
        batch(&mut watcher).await;
        watcher
    }
}

async fn batch(watcher: &mut JobDirWatcher) -> Vec<FileChange> {
    timeout(PATIENCE, watcher.next_batch()).await.expect("no batch came").unwrap()
}

/// Asserts that nothing is reported for a while (long past the quiet period).
async fn quiet(watcher: &mut JobDirWatcher) {
    if let Ok(batch) = timeout(QUIET * 3, watcher.next_batch()).await {
        panic!("expected nothing, got {:?}", batch.map(|b| summary(&b)));
    }
}

/// A batch as short strings: `+name: content`, `-name`, `!name: reason`.
fn summary(changes: &[FileChange]) -> Vec<String> {
    changes
        .iter()
        .map(|change| {
            let name = change.path().file_name().unwrap().to_string_lossy().into_owned();
            match change {
                FileChange::Upserted { bytes, .. } => {
                    format!("+{name}: {}", String::from_utf8_lossy(bytes))
                }
                FileChange::Removed { .. } => format!("-{name}"),
                FileChange::Refused { reason, .. } => format!("!{name}: {reason}"),
            }
        })
        .collect()
}

fn refusal(changes: &[FileChange], name: &str) -> Refusal {
    match changes.iter().find(|c| c.path().file_name().unwrap() == name) {
        Some(FileChange::Refused { reason, .. }) => reason.clone(),
        other => panic!("{name} not refused: {other:?} in {:?}", summary(changes)),
    }
}

#[tokio::test]
async fn the_first_batch_reports_every_existing_job_file() {
    let f = Fixture::new();
    f.write("a.yaml", "name: a\n");
    f.write("b.yml", "name: b\n");
    f.write("notes.txt", "not a job\n");
    let mut watcher = JobDirWatcher::new(&f.dir, options()).unwrap();
    let first = batch(&mut watcher).await;
    assert_eq!(summary(&first), ["+a.yaml: name: a\n", "+b.yml: name: b\n"]);
    assert_eq!(first[0].path(), f.dir.join("a.yaml"));
    quiet(&mut watcher).await;
}

#[tokio::test]
async fn the_first_batch_comes_even_for_an_empty_directory() {
    let f = Fixture::new();
    let mut watcher = JobDirWatcher::new(&f.dir, options()).unwrap();
    assert!(batch(&mut watcher).await.is_empty());
    quiet(&mut watcher).await;
}

#[tokio::test]
async fn three_files_dropped_together_are_one_batch() {
    let f = Fixture::new();
    let mut watcher = f.watch().await;
    f.write("a.yaml", "name: a\n");
    f.write("b.yaml", "name: b\n");
    f.write("c.yaml", "name: c\n");
    assert_eq!(
        summary(&batch(&mut watcher).await),
        ["+a.yaml: name: a\n", "+b.yaml: name: b\n", "+c.yaml: name: c\n"]
    );
    quiet(&mut watcher).await;
}

#[tokio::test]
async fn write_then_rename_is_one_upsert_and_the_temporary_is_ignored() {
    let f = Fixture::new();
    f.write("a.yaml", "name: a\n");
    let mut watcher = f.watch().await;
    // As rsync does it: a hidden temporary, renamed over the file.
    f.write(".a.yaml.Xa81bQ", "name: a\nversion: 2\n");
    fs::rename(f.path(".a.yaml.Xa81bQ"), f.path("a.yaml")).unwrap();
    assert_eq!(summary(&batch(&mut watcher).await), ["+a.yaml: name: a\nversion: 2\n"]);
    quiet(&mut watcher).await;
}

#[tokio::test]
async fn truncate_then_write_within_the_quiet_period_is_one_upsert_of_the_end_result() {
    let f = Fixture::new();
    f.write("a.yaml", "name: a\n");
    let mut watcher = f.watch().await;
    // Truncated and closed: on its own this would settle as an empty file.
    File::create(f.path("a.yaml")).unwrap();
    tokio::time::sleep(QUIET / 3).await;
    let mut file = OpenOptions::new().append(true).open(f.path("a.yaml")).unwrap();
    file.write_all(b"name: a\nversion: 2\n").unwrap();
    drop(file);
    assert_eq!(summary(&batch(&mut watcher).await), ["+a.yaml: name: a\nversion: 2\n"]);
    quiet(&mut watcher).await;
}

#[tokio::test]
async fn a_slow_writer_is_waited_for_until_it_closes() {
    let f = Fixture::new();
    let mut watcher = f.watch().await;
    let mut file = File::create(f.path("a.yaml")).unwrap();
    for chunk in ["name: a\n", "command: [/bin/true]\n", "priority: 5\n"] {
        // Each wait outlasts the quiet period several times over, and is
        // also a `next_batch` given up half way.
        quiet(&mut watcher).await;
        file.write_all(chunk.as_bytes()).unwrap();
    }
    quiet(&mut watcher).await;
    drop(file);
    assert_eq!(
        summary(&batch(&mut watcher).await),
        ["+a.yaml: name: a\ncommand: [/bin/true]\npriority: 5\n"]
    );
}

#[tokio::test]
async fn a_deleted_file_is_removed() {
    let f = Fixture::new();
    f.write("a.yaml", "name: a\n");
    f.write("b.yaml", "name: b\n");
    let mut watcher = f.watch().await;
    fs::remove_file(f.path("a.yaml")).unwrap();
    assert_eq!(summary(&batch(&mut watcher).await), ["-a.yaml"]);
    assert_eq!(batch_or_none(&mut watcher).await, None);
}

async fn batch_or_none(watcher: &mut JobDirWatcher) -> Option<Vec<String>> {
    timeout(QUIET * 3, watcher.next_batch()).await.ok().map(|b| summary(&b.unwrap()))
}

#[tokio::test]
async fn a_rename_within_the_directory_removes_the_old_name_and_adds_the_new() {
    let f = Fixture::new();
    f.write("a.yaml", "name: a\n");
    let mut watcher = f.watch().await;
    fs::rename(f.path("a.yaml"), f.path("b.yaml")).unwrap();
    assert_eq!(summary(&batch(&mut watcher).await), ["-a.yaml", "+b.yaml: name: a\n"]);
}

#[tokio::test]
async fn a_rename_out_of_the_directory_removes_it() {
    let f = Fixture::new();
    f.write("a.yaml", "name: a\n");
    let mut watcher = f.watch().await;
    fs::rename(f.path("a.yaml"), f.tmp.path().join("a.yaml")).unwrap();
    assert_eq!(summary(&batch(&mut watcher).await), ["-a.yaml"]);
}

#[tokio::test]
async fn five_hundred_files_at_once_are_all_reported_once_in_few_batches() {
    let f = Fixture::new();
    let mut watcher = f.watch().await;
    let dir = f.dir.clone();
    let writer = tokio::task::spawn_blocking(move || {
        for i in 0..500 {
            fs::write(dir.join(format!("job-{i:03}.yaml")), format!("name: job-{i:03}\n")).unwrap();
        }
    });
    let mut seen = BTreeSet::new();
    let mut batches = 0;
    while seen.len() < 500 {
        let changes = batch(&mut watcher).await;
        batches += 1;
        for change in changes {
            let FileChange::Upserted { path, bytes } = change else { panic!("{change:?}") };
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            assert_eq!(bytes, format!("name: {name}\n").into_bytes());
            assert!(seen.insert(name.clone()), "{name} reported twice");
        }
    }
    writer.await.unwrap();
    assert!(batches <= 3, "{batches} batches");
    quiet(&mut watcher).await;
}

#[tokio::test]
async fn editor_swap_backup_and_temporary_files_are_ignored() {
    let f = Fixture::new();
    let mut watcher = f.watch().await;
    for name in [".a.yaml.swp", ".a.yaml.swx", "a.yaml~", "4913", ".a.yaml", "#a.yaml#", "a.json"] {
        f.write(name, "junk");
    }
    // Emacs' lock file is a dangling symlink.
    symlink("root@host.4242:1700000000", f.path(".#a.yaml")).unwrap();
    quiet(&mut watcher).await;
    f.write("a.yaml", "name: a\n");
    assert_eq!(summary(&batch(&mut watcher).await), ["+a.yaml: name: a\n"]);
}

#[tokio::test]
async fn subdirectories_are_not_followed() {
    let f = Fixture::new();
    fs::create_dir(f.path("sub")).unwrap();
    f.write("sub/old.yaml", "name: old\n");
    let mut watcher = JobDirWatcher::new(&f.dir, options()).unwrap();
    assert!(batch(&mut watcher).await.is_empty());
    f.write("sub/x.yaml", "name: x\n");
    fs::create_dir(f.path("sub/deeper")).unwrap();
    f.write("sub/deeper/y.yaml", "name: y\n");
    quiet(&mut watcher).await;
}

#[tokio::test]
async fn a_directory_named_like_a_job_file_is_refused() {
    let f = Fixture::new();
    let mut watcher = f.watch().await;
    fs::create_dir(f.path("odd.yaml")).unwrap();
    let changes = batch(&mut watcher).await;
    assert_eq!(refusal(&changes, "odd.yaml"), Refusal::NotRegular { kind: FileKind::Directory });
}

#[tokio::test]
async fn a_world_writable_file_is_refused_until_fixed() {
    let f = Fixture::new();
    let mut watcher = f.watch().await;
    f.write("a.yaml", "name: a\n");
    fs::set_permissions(f.path("a.yaml"), fs::Permissions::from_mode(0o666)).unwrap();
    let changes = batch(&mut watcher).await;
    assert!(matches!(refusal(&changes, "a.yaml"), Refusal::WorldWritable { .. }));
    assert_eq!(changes.len(), 1);
    assert_eq!(
        summary(&changes),
        ["!a.yaml: it is world-writable (mode 0666)"],
        "the reason reads as a sentence"
    );
    fs::set_permissions(f.path("a.yaml"), fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(summary(&batch(&mut watcher).await), ["+a.yaml: name: a\n"]);
}

#[tokio::test]
async fn a_refused_file_is_reported_once_per_change() {
    let f = Fixture::new();
    let mut watcher = f.watch().await;
    f.write("a.yaml", "name: a\n");
    fs::set_permissions(f.path("a.yaml"), fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(batch(&mut watcher).await.len(), 1);
    watcher.rescan();
    quiet(&mut watcher).await;
    f.write("a.yaml", "name: a2\n");
    assert!(matches!(refusal(&batch(&mut watcher).await, "a.yaml"), Refusal::WorldWritable { .. }));
}

#[tokio::test]
async fn group_writable_files_pass_only_when_allowed() {
    let f = Fixture::new();
    f.write("a.yaml", "name: a\n");
    fs::set_permissions(f.path("a.yaml"), fs::Permissions::from_mode(0o664)).unwrap();
    let mut strict = JobDirWatcher::new(&f.dir, options()).unwrap();
    assert!(matches!(refusal(&batch(&mut strict).await, "a.yaml"), Refusal::GroupWritable { .. }));
    let lenient_options = WatchOptions { allow_group_writable: true, ..options() };
    let mut lenient = JobDirWatcher::new(&f.dir, lenient_options).unwrap();
    assert_eq!(summary(&batch(&mut lenient).await), ["+a.yaml: name: a\n"]);
}

#[tokio::test]
async fn files_owned_by_others_pass_only_for_the_configured_owner() {
    let f = Fixture::new();
    f.write("a.yaml", "name: a\n");
    f.write("b.yaml", "name: b\n");
    chown(&f.path("a.yaml"), Some(Uid::from_raw(4242)), None).unwrap();
    chown(&f.path("b.yaml"), Some(Uid::from_raw(4343)), None).unwrap();
    let owned = WatchOptions { owner_uid: Some(Uid::from_raw(4242)), ..options() };
    let mut watcher = JobDirWatcher::new(&f.dir, owned).unwrap();
    let changes = batch(&mut watcher).await;
    assert_eq!(
        summary(&changes),
        [
            "+a.yaml: name: a\n",
            "!b.yaml: it is owned by uid 4343; job files must be owned by root or uid 4242"
        ]
    );
}

#[tokio::test]
async fn a_file_over_the_size_limit_is_refused_unread() {
    let f = Fixture::new();
    let mut watcher = f.watch().await;
    let file = File::create(f.path("big.yaml")).unwrap();
    file.set_len((1 << 20) + 1).unwrap();
    drop(file);
    let changes = batch(&mut watcher).await;
    assert_eq!(
        refusal(&changes, "big.yaml"),
        Refusal::TooLarge { size: (1 << 20) + 1, limit: 1 << 20 }
    );
}

#[tokio::test]
async fn a_symlink_leading_outside_is_refused() {
    let f = Fixture::new();
    let mut watcher = f.watch().await;
    symlink("/etc/shadow", f.path("shadow.yaml")).unwrap();
    symlink("../../../../../../../../etc/passwd", f.path("passwd.yaml")).unwrap();
    let changes = batch(&mut watcher).await;
    assert_eq!(
        refusal(&changes, "shadow.yaml"),
        Refusal::LinkOutside { target: PathBuf::from("/etc/shadow") }
    );
    assert_eq!(
        refusal(&changes, "passwd.yaml"),
        Refusal::LinkOutside { target: PathBuf::from("/etc/passwd") }
    );
}

#[tokio::test]
async fn a_symlink_owned_by_another_user_is_refused_even_inside() {
    let f = Fixture::new();
    f.write("real.yaml", "name: real\n");
    let mut watcher = f.watch().await;
    symlink("real.yaml", f.path("link.yaml")).unwrap();
    std::os::unix::fs::lchown(f.path("link.yaml"), Some(4242), None).unwrap();
    let changes = batch(&mut watcher).await;
    assert!(matches!(refusal(&changes, "link.yaml"), Refusal::LinkOwner { .. }));
}

#[tokio::test]
async fn a_symlink_inside_is_followed_and_its_target_watched() {
    let f = Fixture::new();
    fs::create_dir(f.path("available")).unwrap();
    f.write("available/etl.yaml", "name: etl\n");
    f.write("base.yaml", "name: base\n");
    let mut watcher = f.watch().await;
    symlink("available/etl.yaml", f.path("etl.yaml")).unwrap();
    symlink("base.yaml", f.path("alias.yaml")).unwrap();
    assert_eq!(
        summary(&batch(&mut watcher).await),
        ["+alias.yaml: name: base\n", "+etl.yaml: name: etl\n"]
    );
    // Editing a target in a subdirectory is an edit of the link.
    f.write("available/etl.yaml", "name: etl\nversion: 2\n");
    assert_eq!(summary(&batch(&mut watcher).await), ["+etl.yaml: name: etl\nversion: 2\n"]);
    // So is editing one directly in the directory, which is a job file too.
    f.write("base.yaml", "name: base2\n");
    assert_eq!(
        summary(&batch(&mut watcher).await),
        ["+alias.yaml: name: base2\n", "+base.yaml: name: base2\n"]
    );
    // Removing the target leaves a dangling link.
    fs::remove_file(f.path("available/etl.yaml")).unwrap();
    let changes = batch(&mut watcher).await;
    assert!(matches!(refusal(&changes, "etl.yaml"), Refusal::LinkBroken { .. }));
}

#[tokio::test]
async fn a_symlink_made_before_its_target_follows_when_the_target_arrives() {
    let f = Fixture::new();
    let mut watcher = f.watch().await;
    symlink("later.yml", f.path("a.yaml")).unwrap();
    assert!(matches!(refusal(&batch(&mut watcher).await, "a.yaml"), Refusal::LinkBroken { .. }));
    f.write("later.yml", "name: later\n");
    assert_eq!(
        summary(&batch(&mut watcher).await),
        ["+a.yaml: name: later\n", "+later.yml: name: later\n"]
    );
}

#[tokio::test]
async fn a_fifo_is_refused_without_hanging() {
    let f = Fixture::new();
    let mut watcher = f.watch().await;
    nix::unistd::mkfifo(&f.path("pipe.yaml"), nix::sys::stat::Mode::from_bits_truncate(0o644))
        .unwrap();
    f.write("a.yaml", "name: a\n");
    let changes = batch(&mut watcher).await;
    assert_eq!(refusal(&changes, "pipe.yaml"), Refusal::NotRegular { kind: FileKind::Fifo });
    assert_eq!(changes.len(), 2);
}

#[tokio::test]
async fn a_fifo_at_start_is_refused_without_hanging() {
    let f = Fixture::new();
    nix::unistd::mkfifo(&f.path("pipe.yaml"), nix::sys::stat::Mode::from_bits_truncate(0o600))
        .unwrap();
    let mut watcher = JobDirWatcher::new(&f.dir, options()).unwrap();
    let changes = batch(&mut watcher).await;
    assert_eq!(refusal(&changes, "pipe.yaml"), Refusal::NotRegular { kind: FileKind::Fifo });
}

#[tokio::test]
async fn touching_a_file_or_rewriting_the_same_bytes_reports_nothing() {
    let f = Fixture::new();
    f.write("a.yaml", "name: a\n");
    let mut watcher = f.watch().await;
    let file = File::options().write(true).open(f.path("a.yaml")).unwrap();
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(60)).unwrap();
    drop(file);
    f.write("a.yaml", "name: a\n");
    f.write(".a.yaml.tmp", "name: a\n");
    fs::rename(f.path(".a.yaml.tmp"), f.path("a.yaml")).unwrap();
    fs::set_permissions(f.path("a.yaml"), fs::Permissions::from_mode(0o600)).unwrap();
    quiet(&mut watcher).await;
    f.write("a.yaml", "name: a\nchanged: yes\n");
    assert_eq!(summary(&batch(&mut watcher).await), ["+a.yaml: name: a\nchanged: yes\n"]);
}

#[tokio::test]
async fn a_rescan_reports_only_what_changed() {
    let f = Fixture::new();
    f.write("a.yaml", "name: a\n");
    f.write("b.yaml", "name: b\n");
    let mut watcher = f.watch().await;
    watcher.rescan();
    quiet(&mut watcher).await;
}

#[tokio::test]
async fn a_replaced_directory_is_watched_anew_and_only_differences_reported() {
    let f = Fixture::new();
    f.write("same.yaml", "name: same\n");
    f.write("old.yaml", "name: old\n");
    f.write("edited.yaml", "name: edited\n");
    let mut watcher = f.watch().await;

    // A deploy that builds the new directory aside and swaps it in.
    let new = f.tmp.path().join("jobs.new");
    fs::create_dir(&new).unwrap();
    fs::write(new.join("same.yaml"), "name: same\n").unwrap();
    fs::write(new.join("edited.yaml"), "name: edited\nversion: 2\n").unwrap();
    fs::write(new.join("added.yaml"), "name: added\n").unwrap();
    fs::rename(&f.dir, f.tmp.path().join("jobs.old")).unwrap();
    fs::rename(&new, &f.dir).unwrap();
    let changes = batch(&mut watcher).await;
    assert_eq!(
        summary(&changes),
        ["-old.yaml", "+added.yaml: name: added\n", "+edited.yaml: name: edited\nversion: 2\n"]
    );
    assert_eq!(changes[0].path(), f.dir.join("old.yaml"));

    // The old directory is no longer watched; the new one is.
    fs::write(f.tmp.path().join("jobs.old/ghost.yaml"), "name: ghost\n").unwrap();
    quiet(&mut watcher).await;
    f.write("later.yaml", "name: later\n");
    assert_eq!(summary(&batch(&mut watcher).await), ["+later.yaml: name: later\n"]);
}

#[tokio::test]
async fn a_symlinked_directory_swapped_to_another_release_is_followed() {
    let f = Fixture::new();
    let releases = f.tmp.path().join("releases");
    for (release, content) in [("1", "name: etl\n"), ("2", "name: etl\nversion: 2\n")] {
        fs::create_dir_all(releases.join(release)).unwrap();
        fs::write(releases.join(release).join("etl.yaml"), content).unwrap();
    }
    let current = f.tmp.path().join("current");
    symlink("releases/1", &current).unwrap();
    let mut watcher = JobDirWatcher::new(&current, options()).unwrap();
    assert_eq!(summary(&batch(&mut watcher).await), ["+etl.yaml: name: etl\n"]);

    // `ln -sfn releases/2 current`: a new link renamed over the old one.
    symlink("releases/2", f.tmp.path().join("current.tmp")).unwrap();
    fs::rename(f.tmp.path().join("current.tmp"), &current).unwrap();
    let changes = batch(&mut watcher).await;
    assert_eq!(summary(&changes), ["+etl.yaml: name: etl\nversion: 2\n"]);
    assert_eq!(changes[0].path(), current.join("etl.yaml"));
}

#[tokio::test]
async fn a_removed_directory_is_an_error_once_and_its_return_a_diff() {
    let f = Fixture::new();
    f.write("a.yaml", "name: a\n");
    f.write("b.yaml", "name: b\n");
    let mut watcher = f.watch().await;
    fs::remove_dir_all(&f.dir).unwrap();
    let error = timeout(PATIENCE, watcher.next_batch()).await.unwrap().unwrap_err();
    assert!(matches!(error, WatchError::DirectoryGone { ref path } if *path == f.dir), "{error}");
    assert!(!error.is_fatal());
    // Reported once: waiting again is quiet.
    quiet(&mut watcher).await;

    fs::create_dir(&f.dir).unwrap();
    f.write("a.yaml", "name: a\n");
    assert_eq!(summary(&batch(&mut watcher).await), ["-b.yaml"]);
}

#[tokio::test]
async fn a_directory_made_world_writable_is_an_error_until_fixed() {
    let f = Fixture::new();
    f.write("a.yaml", "name: a\n");
    let mut watcher = f.watch().await;
    fs::set_permissions(&f.dir, fs::Permissions::from_mode(0o777)).unwrap();
    let error = timeout(PATIENCE, watcher.next_batch()).await.unwrap().unwrap_err();
    assert!(
        matches!(error, WatchError::UnsafeDirectory { ref dir, .. } if *dir == f.dir),
        "{error}"
    );
    // Not watched meanwhile.
    f.write("b.yaml", "name: b\n");
    quiet(&mut watcher).await;
    fs::set_permissions(&f.dir, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(summary(&batch(&mut watcher).await), ["+b.yaml: name: b\n"]);
}

#[tokio::test]
async fn an_unsafe_or_missing_directory_is_refused_at_start() {
    let f = Fixture::new();
    fs::set_permissions(&f.dir, fs::Permissions::from_mode(0o777)).unwrap();
    let error = JobDirWatcher::new(&f.dir, options()).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "not trusting job directory {0}: {0} is world-writable without the sticky bit (mode 0777)",
            f.dir.display()
        )
    );
    // The sticky bit makes it safe: only an entry's owner can replace it.
    fs::set_permissions(&f.dir, fs::Permissions::from_mode(0o1777)).unwrap();
    JobDirWatcher::new(&f.dir, options()).unwrap();

    // So must every directory above it be.
    fs::set_permissions(f.tmp.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let error = JobDirWatcher::new(&f.dir, options()).unwrap_err();
    assert!(
        matches!(error, WatchError::UnsafeDirectory { ref dir, .. } if dir == f.tmp.path()),
        "{error}"
    );

    let missing = JobDirWatcher::new(f.tmp.path().join("missing"), options()).unwrap_err();
    assert!(matches!(missing, WatchError::DirectoryGone { .. }), "{missing}");
}

#[tokio::test]
async fn a_directory_owned_by_another_user_is_refused_unless_theirs() {
    let f = Fixture::new();
    chown(&f.dir, Some(Uid::from_raw(4242)), None).unwrap();
    let error = JobDirWatcher::new(&f.dir, options()).unwrap_err();
    assert!(matches!(error, WatchError::UnsafeDirectory { .. }), "{error}");
    let theirs = WatchOptions { owner_uid: Some(Uid::from_raw(4242)), ..options() };
    JobDirWatcher::new(&f.dir, theirs).unwrap();
}

/// Paths as given are reported as given, even when relative or through a
/// symlink.
#[tokio::test]
async fn reported_paths_are_under_the_directory_as_given() {
    let f = Fixture::new();
    f.write("a.yaml", "name: a\n");
    let link = f.tmp.path().join("link");
    symlink(&f.dir, &link).unwrap();
    let mut watcher = JobDirWatcher::new(&link, options()).unwrap();
    let changes = batch(&mut watcher).await;
    assert_eq!(changes[0].path(), link.join("a.yaml"));
    assert_eq!(watcher.dir(), link);
    assert!(Path::new(watcher.dir()).is_absolute());
}

#[tokio::test]
async fn a_file_still_being_written_at_start_comes_after_its_close() {
    let f = Fixture::new();
    f.write("done.yaml", "name: done\n");
    let mut watcher = JobDirWatcher::new(&f.dir, options()).unwrap();
    // Opened for writing after the watch is in place, before anything settled.
    let mut file = File::create(f.path("busy.yaml")).unwrap();
    file.write_all(b"name: bu").unwrap();
    assert_eq!(summary(&batch(&mut watcher).await), ["+done.yaml: name: done\n"]);
    quiet(&mut watcher).await;
    file.write_all(b"sy\n").unwrap();
    drop(file);
    assert_eq!(summary(&batch(&mut watcher).await), ["+busy.yaml: name: busy\n"]);
}

/// A real inotify queue overflow, without touching the global limit: the
/// instance's queue holds `max_queued_events` and the watcher is not reading
/// while more happen. Events after the overflow are lost, among them the
/// writers' closes, a deletion and a creation; the rescan that follows finds
/// exactly what changed.
#[tokio::test]
async fn after_a_queue_overflow_a_rescan_reports_exactly_what_changed() {
    use std::os::unix::fs::FileExt;

    let f = Fixture::new();
    f.write("a.yaml", "name: a\n");
    f.write("b.yaml", "name: b\n");
    f.write("c.yaml", "name: c\n");
    let mut watcher = f.watch().await;

    let limit: usize = fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let dir = f.dir.clone();
    tokio::task::spawn_blocking(move || {
        let a = OpenOptions::new().write(true).open(dir.join("a.yaml")).unwrap();
        let b = OpenOptions::new().write(true).open(dir.join("b.yaml")).unwrap();
        // Alternating, so that the kernel cannot merge them into one event.
        for i in 0..limit + 1000 {
            let file = if i % 2 == 0 { &a } else { &b };
            file.write_all_at(b"n", 0).unwrap();
        }
        a.set_len(0).unwrap();
        a.write_all_at(b"name: a2\n", 0).unwrap();
        fs::remove_file(dir.join("c.yaml")).unwrap();
        fs::write(dir.join("d.yaml"), "name: d\n").unwrap();
    })
    .await
    .unwrap();

    // b.yaml was written too, but ends as it began.
    assert_eq!(
        summary(&batch(&mut watcher).await),
        ["-c.yaml", "+a.yaml: name: a2\n", "+d.yaml: name: d\n"]
    );
    quiet(&mut watcher).await;
}

async fn reload(watcher: &mut JobDirWatcher) -> Vec<FileChange> {
    timeout(PATIENCE, watcher.reload()).await.expect("the reload did not finish").unwrap()
}

/// With a quiet period of an hour, nothing settles during the test: whatever
/// comes out came from the reload, read at once.
#[tokio::test]
async fn a_reload_reads_every_file_at_once_and_reports_only_what_changed() {
    let f = Fixture::new();
    f.write("same.yaml", "name: same\n");
    f.write("edited.yaml", "name: edited\n");
    f.write("gone.yaml", "name: gone\n");
    let slow = WatchOptions { quiet_period: Duration::from_secs(3600), ..options() };
    let mut watcher = JobDirWatcher::new(&f.dir, slow).unwrap();
    // Before the first batch: the reload reports the directory as found.
    assert_eq!(
        summary(&reload(&mut watcher).await),
        ["+edited.yaml: name: edited\n", "+gone.yaml: name: gone\n", "+same.yaml: name: same\n"]
    );

    f.write("edited.yaml", "name: edited\nversion: 2\n");
    fs::remove_file(f.path("gone.yaml")).unwrap();
    f.write("new.yaml", "name: new\n");
    f.write("open.yaml", "name: open\n");
    fs::set_permissions(f.path("open.yaml"), fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(
        summary(&reload(&mut watcher).await),
        [
            "-gone.yaml",
            "+edited.yaml: name: edited\nversion: 2\n",
            "+new.yaml: name: new\n",
            "!open.yaml: it is world-writable (mode 0666)"
        ]
    );
    // Nothing new: an empty answer, not the same changes again.
    assert!(reload(&mut watcher).await.is_empty());
}

#[tokio::test]
async fn what_a_reload_reported_is_not_reported_again() {
    let f = Fixture::new();
    f.write("a.yaml", "name: a\n");
    let mut watcher = f.watch().await;
    f.write("a.yaml", "name: a\nversion: 2\n");
    f.write("b.yaml", "name: b\n");
    assert_eq!(
        summary(&reload(&mut watcher).await),
        ["+a.yaml: name: a\nversion: 2\n", "+b.yaml: name: b\n"]
    );
    quiet(&mut watcher).await;
    f.write("c.yaml", "name: c\n");
    assert_eq!(summary(&batch(&mut watcher).await), ["+c.yaml: name: c\n"]);
}

#[tokio::test]
async fn a_reload_reads_a_file_still_being_written_as_it_stands() {
    let f = Fixture::new();
    let mut watcher = f.watch().await;
    let mut file = File::create(f.path("a.yaml")).unwrap();
    file.write_all(b"name: a\n").unwrap();
    // Open for writing, the file never settles on its own.
    quiet(&mut watcher).await;
    assert_eq!(summary(&reload(&mut watcher).await), ["+a.yaml: name: a\n"]);
    // The writer goes on and closes: the close brings the rest.
    file.write_all(b"command: [/bin/true]\n").unwrap();
    drop(file);
    assert_eq!(summary(&batch(&mut watcher).await), ["+a.yaml: name: a\ncommand: [/bin/true]\n"]);
}

#[tokio::test]
async fn a_reload_of_a_missing_directory_is_an_error_and_its_return_a_diff() {
    let f = Fixture::new();
    f.write("a.yaml", "name: a\n");
    f.write("b.yaml", "name: b\n");
    let mut watcher = f.watch().await;
    fs::remove_dir_all(&f.dir).unwrap();
    let error = timeout(PATIENCE, watcher.reload()).await.unwrap().unwrap_err();
    assert!(matches!(error, WatchError::DirectoryGone { ref path } if *path == f.dir), "{error}");
    // Asked again, it says so again: each reload answers for itself.
    let again = timeout(PATIENCE, watcher.reload()).await.unwrap().unwrap_err();
    assert!(matches!(again, WatchError::DirectoryGone { .. }), "{again}");
    // next_batch does not repeat what the reload said.
    quiet(&mut watcher).await;

    fs::create_dir(&f.dir).unwrap();
    f.write("a.yaml", "name: a\n");
    assert_eq!(summary(&reload(&mut watcher).await), ["-b.yaml"]);
    f.write("c.yaml", "name: c\n");
    assert_eq!(summary(&batch(&mut watcher).await), ["+c.yaml: name: c\n"]);
}

/// A directory above the jobs directory made world-writable: no watch sees
/// a change of mode two levels up, a reload does.
#[tokio::test]
async fn a_reload_checks_the_directories_above_again() {
    let f = Fixture::new();
    f.write("a.yaml", "name: a\n");
    let mut watcher = f.watch().await;
    fs::set_permissions(f.tmp.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let error = timeout(PATIENCE, watcher.reload()).await.unwrap().unwrap_err();
    assert!(
        matches!(error, WatchError::UnsafeDirectory { ref dir, .. } if dir == f.tmp.path()),
        "{error}"
    );
    // Not trusted, so not watched meanwhile.
    f.write("b.yaml", "name: b\n");
    quiet(&mut watcher).await;

    fs::set_permissions(f.tmp.path(), fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(summary(&reload(&mut watcher).await), ["+b.yaml: name: b\n"]);
    // Watched again.
    f.write("c.yaml", "name: c\n");
    assert_eq!(summary(&batch(&mut watcher).await), ["+c.yaml: name: c\n"]);
}
