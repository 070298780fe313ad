//! Job output lands in size-capped log files; what does not fit is counted.

mod common;

use common::{launcher, stderr_of, stdout_of, Sandbox};
use corral::container::logs::marker;
use corral::container::LogStats;

#[test]
fn stdout_and_stderr_go_to_their_own_files() {
    let sandbox = Sandbox::new();
    let cfg = sandbox.config("streams", "echo out; echo err >&2; echo out2");
    let status = launcher().launch(&cfg).unwrap().wait().unwrap();
    assert_eq!(stdout_of(&cfg), "out\nout2\n");
    assert_eq!(stderr_of(&cfg), "err\n");
    assert_eq!(status.stdout, LogStats { kept_bytes: 9, dropped_bytes: 0 });
    assert_eq!(status.stderr, LogStats { kept_bytes: 4, dropped_bytes: 0 });
}

#[test]
fn log_cap_keeps_the_head_and_counts_the_rest() {
    let sandbox = Sandbox::new();
    // 100 000 bytes of 'a' on stdout, a short line on stderr.
    let mut cfg = sandbox.config(
        "capped",
        "dd if=/dev/zero bs=1000 count=100 2>/dev/null | tr '\\0' a; echo small >&2",
    );
    cfg.log_max_bytes = 1000;
    let status = launcher().launch(&cfg).unwrap().wait().unwrap();
    assert!(status.exit.success());
    assert_eq!(status.stdout, LogStats { kept_bytes: 1000, dropped_bytes: 99_000 });
    assert_eq!(status.stderr, LogStats { kept_bytes: 6, dropped_bytes: 0 });
    let expected = format!("{}{}", "a".repeat(1000), marker(1000));
    assert_eq!(stdout_of(&cfg), expected);
    assert_eq!(stderr_of(&cfg), "small\n");
}

#[test]
fn output_of_background_processes_is_kept_until_the_container_ends() {
    let sandbox = Sandbox::new();
    let cfg = sandbox.config("bg", "(sleep 0.1; echo late) & echo early; wait");
    launcher().launch(&cfg).unwrap().wait().unwrap();
    assert_eq!(stdout_of(&cfg), "early\nlate\n");
}
