//! Smarter retries and signals on the real kernel, with a real agent:
//! `restart.on_exit_codes` / `never_on_exit_codes`, `timeout_signal` (also
//! across a `kill -9` of the agent) and `stop_signal`.

mod agent_harness;

use agent_harness::{job, secs, TestAgent, OOM_HOG};

/// The reason of the run's last transition.
fn last_reason(agent: &TestAgent, run: &str) -> String {
    agent.transitions(run).pop().map(|(_, _, reason)| reason).unwrap_or_default()
}

#[test]
fn an_exit_code_in_on_exit_codes_restarts_and_the_next_success_ends_the_run() {
    let agent = TestAgent::started("");
    let count = agent.data_file("temp.count").display().to_string();
    // 75 (EX_TEMPFAIL) the first time, 0 the second.
    let script = format!("echo start >> {count}; [ $(wc -l < {count}) -ge 2 ] && exit 0; exit 75");
    let extra = "restart: {on: failure, attempts: 3, backoff: 200ms, on_exit_codes: [75]}\n";
    agent.write_job("temp.yaml", &job("temp", &script, extra));
    agent.wait_phase("temp-1", "succeeded", secs(30));
    assert_eq!(agent.read_data("temp.count").lines().count(), 2, "one restart");
    assert_eq!(agent.events("temp-1"), ["restart-scheduled"]);
    let state = agent.state_json("temp-1");
    assert!(state.contains("\"attempt\":2") && state.contains("\"restarts\":1"), "{state}");
    let reasons: Vec<String> = agent.transitions("temp-1").into_iter().map(|t| t.2).collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("attempt 1 exit code 75; restart 1 of 3")),
        "{reasons:#?}"
    );
}

#[test]
fn an_exit_code_in_never_on_exit_codes_is_not_restarted_and_show_says_why() {
    let agent = TestAgent::started("");
    let count = agent.data_file("config.count").display().to_string();
    // `on: always` restarts everything, except what never_on_exit_codes names.
    let extra = "restart: {on: always, attempts: 3, backoff: 200ms, never_on_exit_codes: [2]}\n";
    agent
        .write_job("config.yaml", &job("config", &format!("echo start >> {count}; exit 2"), extra));
    agent.wait_phase("config-1", "failed", secs(30));
    assert_eq!(agent.read_data("config.count").lines().count(), 1, "never restarted");
    assert!(agent.events("config-1").is_empty(), "no restart scheduled");
    let why = "failed: exit code 2; not restarted: exit code 2 is in never_on_exit_codes";
    assert_eq!(last_reason(&agent, "config-1"), why);
    let show = agent.corral_ok(&["show", "config-1"]);
    assert!(show.contains(why), "{show}");
}

#[test]
fn restart_on_oom_restarts_an_oom_kill_and_nothing_else() {
    let agent = TestAgent::started("");
    let count = agent.data_file("hog.count").display().to_string();
    // Out of memory the first time (the kernel's OOM killer, `oom: fail`), done the second.
    let script =
        format!("echo start >> {count}; [ $(wc -l < {count}) -ge 2 ] && exit 0; {OOM_HOG}");
    let extra = "resources: {memory: {hard: 16Mi}}\noom: {action: fail}\n\
                 restart: {on: oom, attempts: 2, backoff: 200ms}\n";
    agent.write_job("hog.yaml", &job("hog", &script, extra));
    // A plain failure under the same policy ends the run.
    agent.write_job("plain.yaml", &job("plain", "exit 1", extra));
    agent.wait_phase("hog-1", "succeeded", secs(60));
    assert_eq!(agent.read_data("hog.count").lines().count(), 2, "one restart");
    let events = agent.events("hog-1");
    assert_eq!(events.last().map(String::as_str), Some("restart-scheduled"), "{events:?}");
    assert!(events.iter().any(|e| e == "oom-killed"), "{events:?}");
    agent.wait_phase("plain-1", "failed", secs(30));
    assert_eq!(
        last_reason(&agent, "plain-1"),
        "failed: exit code 1; not restarted: restart.on is oom and it did not run out of memory"
    );
}

/// A shell job that writes `ready` once its traps are set, then waits
/// without a foreground command (a trap runs only between commands; `wait`
/// returns at once on a trapped signal).
fn trapping(marker: &str, traps: &str) -> String {
    format!("{traps}; echo ready >> {marker}; sleep 60 & while :; do wait; done")
}

#[test]
fn the_timeout_signal_comes_ahead_of_the_timeout_for_a_checkpoint() {
    let agent = TestAgent::started("");
    let marker = agent.data_file("ckpt.marker").display().to_string();
    let traps = format!(
        "trap 'echo checkpoint >> {marker}' USR1; trap 'echo stopped >> {marker}; exit 0' TERM"
    );
    let extra = "timeout: 3s\ntimeout_signal: {signal: SIGUSR1, before: 2s}\n";
    agent.write_job("ckpt.yaml", &job("ckpt", &trapping(&marker, &traps), extra));
    agent.wait_phase("ckpt-1", "failed", secs(30));
    // Signalled once, then stopped the usual way at the timeout.
    assert_eq!(agent.read_data("ckpt.marker"), "ready\ncheckpoint\nstopped\n");
    let state = agent.state_json("ckpt-1");
    assert!(state.contains("\"failure\":\"timeout\""), "{state}");
    assert!(state.contains("\"timeout_signal_sent\":true"), "{state}");
    assert_eq!(agent.events("ckpt-1"), ["timeout-signalled"]);
    let reasons: Vec<String> = agent.transitions("ckpt-1").into_iter().map(|t| t.2).collect();
    assert!(reasons.iter().any(|r| r == "sent SIGUSR1 2s ahead of its timeout"), "{reasons:#?}");
}

#[test]
fn a_timeout_signal_not_sent_before_a_kill_9_is_sent_once_by_the_next_agent() {
    let mut agent = TestAgent::started("");
    let marker = agent.data_file("long.marker").display().to_string();
    let traps = format!(
        "trap 'echo checkpoint >> {marker}' USR1; trap 'echo stopped >> {marker}; exit 0' TERM"
    );
    // Due after 4 s of running time, once the agent below is gone; the
    // timeout leaves the next agent 6 s more to start before it.
    let extra = "timeout: 10s\ntimeout_signal: {signal: USR1, before: 6s}\n";
    agent.write_job("long.yaml", &job("long", &trapping(&marker, &traps), extra));
    agent.wait_for("the job's traps", secs(20), || agent.read_data("long.marker") == "ready\n");
    agent.kill9();
    assert!(!agent.state_json("long-1").contains("\"timeout_signal_sent\":true"));
    agent.start();
    agent.wait_phase("long-1", "failed", secs(30));
    assert_eq!(agent.read_data("long.marker"), "ready\ncheckpoint\nstopped\n");
    assert_eq!(agent.events("long-1"), ["timeout-signalled"]);
}

#[test]
fn corral_kill_sends_the_job_s_stop_signal() {
    let agent = TestAgent::started("");
    let marker = agent.data_file("int.marker").display().to_string();
    // Without a TERM trap, SIGTERM would kill the shell (exit signal 15).
    let traps = format!("trap 'echo interrupted >> {marker}; exit 0' INT");
    agent.write_job("int.yaml", &job("int", &trapping(&marker, &traps), "stop_signal: SIGINT\n"));
    agent.wait_for("the job's trap", secs(20), || agent.read_data("int.marker") == "ready\n");
    agent.corral_ok(&["kill", "int-1"]);
    agent.wait_phase("int-1", "killed", secs(30));
    assert_eq!(agent.read_data("int.marker"), "ready\ninterrupted\n");
    assert_eq!(agent.exit("int-1"), (Some(0), None), "the trap ended it, not a kill");
}
