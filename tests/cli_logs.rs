//! `corral logs` against a real agent: each launch of a run has its own
//! directory, and `--launch` reaches every one of them.

mod agent_harness;

use std::process::{Command, Output};

use agent_harness::{job, secs, TestAgent};

fn logs(agent: &TestAgent, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("logs")
        .args(args)
        .arg("--config")
        .arg(&agent.config)
        .env_remove("CORRAL_CONFIG")
        .env_remove("CORRAL_SOCKET")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn every_launch_of_a_restarted_run_can_be_printed() {
    let mut agent = TestAgent::new("");
    agent.start();
    let marker = agent.data_file("failed-once").display().to_string();
    agent.write_job(
        "flaky.yaml",
        &job(
            "flaky",
            &format!(
                "if [ -e {marker} ]; then echo second; \
                 else touch {marker}; echo first; echo trouble >&2; exit 3; fi"
            ),
            "restart: {on: failure, attempts: 2, backoff: 1s..1s}\n",
        ),
    );
    agent.wait_phase("flaky-1", "succeeded", secs(30));

    // The latest launch by default: the restart's.
    let latest = logs(&agent, &["flaky-1"]);
    assert!(latest.status.success(), "{}", text(&latest.stderr));
    assert_eq!(text(&latest.stdout), "second\n");
    assert_eq!(text(&latest.stderr), "");

    let first = logs(&agent, &["flaky-1", "--launch", "1"]);
    assert_eq!(text(&first.stdout), "first\n");
    assert_eq!(text(&first.stderr), "trouble\n");

    // All of them, in order, each after a header naming it on each stream
    // that has output.
    let all = logs(&agent, &["flaky-1", "--launch", "all"]);
    assert!(all.status.success(), "{}", text(&all.stderr));
    let stdout = text(&all.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[0].starts_with("==> launch 1 of 2, placed 20"), "{stdout}");
    assert_eq!(lines[1], "first");
    assert!(lines[2].starts_with("==> launch 2 of 2, placed "), "{stdout}");
    assert_eq!(lines[3], "second");
    let run_dir = agent.state.join("runs/flaky-1");
    assert!(lines[0].contains(&run_dir.display().to_string()), "{stdout}");
    let stderr = text(&all.stderr);
    assert_eq!(stderr, format!("{}\ntrouble\n", lines[0]));

    let past = logs(&agent, &["flaky-1", "--launch", "3"]);
    assert_eq!(past.status.code(), Some(2));
    assert!(
        text(&past.stderr).contains("flaky-1 was launched 2 time(s)"),
        "{}",
        text(&past.stderr)
    );
}

#[test]
fn follow_goes_on_into_the_launch_of_a_restart() {
    let mut agent = TestAgent::new("");
    agent.start();
    let marker = agent.data_file("slow-failed-once").display().to_string();
    agent.write_job(
        "slow.yaml",
        &job(
            "slow",
            &format!(
                "if [ -e {marker} ]; then echo second; \
                 else touch {marker}; echo first; sleep 2; exit 3; fi"
            ),
            "restart: {on: failure, attempts: 2, backoff: 1s..1s}\n",
        ),
    );
    agent.wait_phase("slow-1", "running", secs(30));
    // Started during the first launch; ends when the run is over.
    let followed = logs(&agent, &["slow-1", "-f"]);
    assert!(followed.status.success(), "{}", text(&followed.stderr));
    let stdout = text(&followed.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(lines[0], "first");
    assert!(lines[1].starts_with("==> launch 2 of 2, placed "), "{stdout}");
    assert_eq!(lines[2], "second");
    assert_eq!(agent.phase("slow-1").as_deref(), Some("succeeded"));
}

/// The agent config of the tests below: a small head and tail, so that a
/// job overflows them quickly.
const SMALL_LOGS: &str = "log_max_bytes: 1Ki\nlog_tail_bytes: 2Ki\n";

/// `line 0\n` to `line {n-1}\n`.
fn lines(range: std::ops::Range<u32>) -> String {
    range.map(|i| format!("line {i}\n")).collect()
}

/// The launch directories of `run` (one per launch).
fn run_dirs(agent: &TestAgent, run: &str) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(agent.state.join("runs").join(run)) else {
        return Vec::new();
    };
    entries.map(|e| e.unwrap().path()).collect()
}

#[test]
fn a_chatty_run_shows_its_head_a_marker_and_its_last_words() {
    let mut agent = TestAgent::new(SMALL_LOGS);
    agent.start();
    agent.write_job(
        "chatty.yaml",
        &job(
            "chatty",
            "i=0; while [ $i -lt 5000 ]; do echo \"line $i\"; i=$((i+1)); done; \
             echo \"fatal: it all went wrong at the end\"; exit 7",
            "",
        ),
    );
    agent.wait_phase("chatty-1", "failed", secs(60));
    let shown = logs(&agent, &["chatty-1"]);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let stdout = text(&shown.stdout);
    let stream = lines(0..5000) + "fatal: it all went wrong at the end\n";
    // The head byte for byte, the marker on its own line, the tail byte
    // for byte: the job's last 2 KiB, its last words included.
    let dropped = &stream[1024..stream.len() - 2048];
    let marker = format!(
        "--- corral: {} bytes ({} lines) dropped here (log_max_bytes 1Ki, log_tail_bytes 2Ki) ---\n",
        dropped.len(),
        dropped.matches('\n').count()
    );
    let newline = if stream.as_bytes()[1023] == b'\n' { "" } else { "\n" };
    let expected =
        format!("{}{newline}{marker}{}", &stream[..1024], &stream[stream.len() - 2048..]);
    assert_eq!(stdout, expected);
    assert!(stdout.ends_with("line 4999\nfatal: it all went wrong at the end\n"));
    // The counts are in the run's status.json.
    let dirs = run_dirs(&agent, "chatty-1");
    assert_eq!(dirs.len(), 1);
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dirs[0].join("status.json")).unwrap()).unwrap();
    assert_eq!(status["stdout"]["kept_bytes"], 1024 + 2048);
    assert_eq!(status["stdout"]["tail_bytes"], 2048);
    assert_eq!(status["stdout"]["dropped_bytes"], dropped.len() as u64);
    assert_eq!(status["stdout"]["dropped_lines"], dropped.matches('\n').count() as u64);
    // `corral show` says so too.
    let show = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["show", "chatty-1", "--config"])
        .arg(&agent.config)
        .env_remove("CORRAL_CONFIG")
        .env_remove("CORRAL_SOCKET")
        .output()
        .unwrap();
    let expected_line = format!(
        "logs:      stdout: {} bytes ({} lines) dropped between head and tail, 3072 kept (2048 of them the tail)\n",
        dropped.len(),
        dropped.matches('\n').count()
    );
    assert!(text(&show.stdout).contains(&expected_line), "{}", text(&show.stdout));
    // Only the log itself is left in the run directory: no segments.
    let names: Vec<String> = std::fs::read_dir(&dirs[0])
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".log"))
        .collect();
    assert!(names.iter().all(|n| n == "stdout.log" || n == "stderr.log"), "{names:?}");
}

#[test]
fn follow_shows_the_head_then_the_rolling_tail_until_the_end() {
    let mut agent = TestAgent::new(SMALL_LOGS);
    agent.start();
    let go = agent.data_file("go").display().to_string();
    let waiting = agent.data_file("waiting").display().to_string();
    agent.write_job(
        "rolling.yaml",
        &job(
            "rolling",
            &format!(
                "i=0; while [ $i -lt 3000 ]; do echo \"line $i\"; i=$((i+1)); done; \
                 touch {waiting}; while [ ! -e {go} ]; do sleep 0.1; done; \
                 while [ $i -lt 6000 ]; do echo \"line $i\"; i=$((i+1)); done; echo 'last words'"
            ),
            "",
        ),
    );
    agent.wait_phase("rolling-1", "running", secs(60));
    // Started once the head is full and the tail has rolled many times:
    // the job waits for `go` with 3000 lines written.
    agent.wait_for("the tail to roll", secs(60), || std::path::Path::new(&waiting).exists());
    let dirs = run_dirs(&agent, "rolling-1");
    assert!(
        dirs[0].join("stdout.log.tail.13").exists(),
        "28890 bytes: 1Ki of head, segments 0 to 12 full and 13 started"
    );
    assert!(!dirs[0].join("stdout.log.tail.11").exists(), "at most two segments");
    let follower = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["logs", "-f", "rolling-1", "--config"])
        .arg(&agent.config)
        .env_remove("CORRAL_CONFIG")
        .env_remove("CORRAL_SOCKET")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::fs::write(&go, "").unwrap();
    let followed = follower.wait_with_output().unwrap();
    assert!(followed.status.success(), "{}", text(&followed.stderr));
    assert_eq!(agent.phase("rolling-1").as_deref(), Some("succeeded"));
    let stdout = text(&followed.stdout);
    let stream = lines(0..6000) + "last words\n";
    // The head, then the marker of what the tail had let go of when the
    // follower started, counted so far.
    assert!(stdout.starts_with(&stream[..1024]), "{stdout:.1200}");
    let after_head = stdout[1024..].trim_start_matches('\n');
    assert!(after_head.starts_with("--- corral: "), "{after_head:.300}");
    let first_marker = after_head.lines().next().unwrap();
    assert!(
        first_marker
            .ends_with(" bytes dropped here so far (log_max_bytes 1Ki, log_tail_bytes 2Ki) ---"),
        "{first_marker}"
    );
    // Then everything from there on, less what went by faster than the
    // follower (each gap has a marker of its own), to the job's last words.
    for line in after_head.lines().skip(1).filter(|l| l.starts_with("--- corral: ")) {
        assert!(
            line.ends_with(" bytes went by here faster than they could be followed ---"),
            "{line}"
        );
    }
    assert!(
        stdout.ends_with("line 5999\nlast words\n"),
        "{}",
        &stdout[stdout.len().saturating_sub(300)..]
    );
    assert!(!stdout.contains("lines) dropped here"), "the follower was past the final marker");
}
