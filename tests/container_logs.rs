//! Job output lands in size-capped log files that keep the head and the
//! tail of each stream; what is dropped between them is counted.

mod common;

use common::{launcher, stderr_of, stdout_of, Sandbox};
use std::time::{Duration, Instant};

use corral::container::logs::{marker, segment_path, LogLimits};
use corral::container::logview::{live_marker, LogCursor, LogView, Stream};
use corral::container::rundir::RunDir;
use corral::container::LogStats;
use nix::sys::signal::Signal;

#[test]
fn stdout_and_stderr_go_to_their_own_files() {
    let sandbox = Sandbox::new();
    let cfg = sandbox.config("streams", "echo out; echo err >&2; echo out2");
    let status = launcher().launch(&cfg).unwrap().wait().unwrap();
    assert_eq!(stdout_of(&cfg), "out\nout2\n");
    assert_eq!(stderr_of(&cfg), "err\n");
    assert_eq!(status.stdout, LogStats { kept_bytes: 9, ..LogStats::default() });
    assert_eq!(status.stderr, LogStats { kept_bytes: 4, ..LogStats::default() });
}

#[test]
fn without_a_tail_the_log_keeps_the_head_and_counts_the_rest() {
    let sandbox = Sandbox::new();
    // 100 000 bytes of 'a' on stdout, a short line on stderr.
    let mut cfg = sandbox.config(
        "capped",
        "dd if=/dev/zero bs=1000 count=100 2>/dev/null | tr '\\0' a; echo small >&2",
    );
    cfg.log_max_bytes = 1000;
    cfg.log_tail_bytes = 0;
    let status = launcher().launch(&cfg).unwrap().wait().unwrap();
    assert!(status.exit.success());
    assert_eq!(
        status.stdout,
        LogStats { kept_bytes: 1000, dropped_bytes: 99_000, ..LogStats::default() }
    );
    assert_eq!(status.stderr, LogStats { kept_bytes: 6, ..LogStats::default() });
    let limits = LogLimits { head: 1000, tail: 0 };
    let expected = format!("{}\n{}", "a".repeat(1000), marker(99_000, 0, limits));
    assert_eq!(stdout_of(&cfg), expected);
    assert_eq!(stderr_of(&cfg), "small\n");
}

#[test]
fn a_chatty_job_keeps_its_last_words() {
    let sandbox = Sandbox::new();
    // 20 000 numbered lines (about 200 KB) on stdout, then the error that
    // matters on both streams.
    let mut cfg = sandbox.config(
        "chatty",
        "i=0; while [ $i -lt 20000 ]; do echo \"line $i of the chatter\"; i=$((i+1)); done; \
         echo 'fatal: the last line' ; echo 'fatal: on stderr' >&2; exit 3",
    );
    cfg.log_max_bytes = 4096;
    cfg.log_tail_bytes = 8192;
    let status = launcher().launch(&cfg).unwrap().wait().unwrap();
    assert_eq!(status.exit.code(), 3);
    let stdout = stdout_of(&cfg);
    let total: u64 =
        (0..20000).map(|i| format!("line {i} of the chatter\n").len() as u64).sum::<u64>()
            + "fatal: the last line\n".len() as u64;
    // The head, byte for byte.
    assert!(stdout.starts_with("line 0 of the chatter\nline 1 of the chatter\n"), "{stdout:.200}");
    // The marker on its own line, with what was dropped between.
    let dropped = total - 4096 - 8192;
    let marker_line =
        marker(dropped, status.stdout.dropped_lines, LogLimits { head: 4096, tail: 8192 });
    let (head, rest) = stdout.split_once(&format!("\n{marker_line}")).expect("a marker line");
    // The head ends inside a line (line 75 of the 24-byte ones), which the
    // newline before the marker ends.
    assert_eq!(head.len(), 4096);
    // The tail: the last 8 KiB, ending with the job's last words.
    assert_eq!(rest.len(), 8192);
    assert!(rest.ends_with("line 19999 of the chatter\nfatal: the last line\n"), "{rest}");
    assert_eq!(
        status.stdout,
        LogStats {
            kept_bytes: 4096 + 8192,
            dropped_bytes: dropped,
            tail_bytes: 8192,
            dropped_lines: status.stdout.dropped_lines,
        }
    );
    // Lines dropped: those that end between the head and the tail.
    let newlines_kept = head.matches('\n').count() + rest.matches('\n').count();
    assert_eq!(status.stdout.dropped_lines, 20001 - newlines_kept as u64);
    assert_eq!(stderr_of(&cfg), "fatal: on stderr\n");
    // The segments are gone once the status is written.
    for n in 0..30 {
        assert!(!segment_path(&cfg.run_dir.join("stdout.log"), n).exists(), "segment {n}");
    }
}

#[test]
fn output_of_background_processes_is_kept_until_the_container_ends() {
    let sandbox = Sandbox::new();
    let cfg = sandbox.config("bg", "(sleep 0.1; echo late) & echo early; wait");
    launcher().launch(&cfg).unwrap().wait().unwrap();
    assert_eq!(stdout_of(&cfg), "early\nlate\n");
}

/// The log of `cfg`'s run as `corral logs` prints it.
fn shown(cfg: &corral::container::ContainerConfig) -> String {
    let run = RunDir::new(&cfg.run_dir);
    let mut out = Vec::new();
    let view = LogView::read(&run, Stream::Stdout).unwrap();
    LogCursor::default().copy(&view, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn a_killed_shim_leaves_a_readable_log_with_its_tail() {
    let sandbox = Sandbox::new();
    let mut cfg = sandbox.config(
        "killed",
        "i=0; while [ $i -lt 3000 ]; do echo \"line $i\"; i=$((i+1)); done; sleep 60",
    );
    cfg.log_max_bytes = 1024;
    cfg.log_tail_bytes = 2048;
    let launched = launcher().launch(&cfg).unwrap();
    let stream: String = (0..3000).map(|i| format!("line {i}\n")).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !shown(&cfg).ends_with("line 2999\n") {
        assert!(Instant::now() < deadline, "the job's output never showed: {}", shown(&cfg));
        std::thread::sleep(Duration::from_millis(20));
    }
    // No status, no assembled log: the shim dies as the host would take it.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(launched.shim().pid), Signal::SIGKILL)
        .unwrap();
    assert!(launched.wait().is_err());
    let log = cfg.run_dir.join("stdout.log");
    assert_eq!(std::fs::metadata(&log).unwrap().len(), 1024, "the head file holds the head only");
    // 28890 bytes: 1 KiB of head, segments 0 to 12 full and 13 started.
    assert!(segment_path(&log, 12).exists() && segment_path(&log, 13).exists());
    assert!(!segment_path(&log, 11).exists());
    let limits = LogLimits { head: 1024, tail: 2048 };
    let tail_start = 1024 + 12 * 2048;
    let expected = format!(
        "{}{}{}",
        &stream[..1024],
        live_marker(tail_start as u64 - 1024, limits),
        &stream[tail_start..]
    );
    assert_eq!(shown(&cfg), expected);
}
