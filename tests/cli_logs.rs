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
