//! Timeouts and restarts with backoff, from the run state machine, on the
//! real kernel.

mod agent_harness;

use agent_harness::{job, secs, TestAgent};

#[test]
fn a_run_past_its_timeout_is_stopped_and_fails_with_reason_timeout() {
    let mut agent = TestAgent::new("");
    agent.start();
    agent.write_job("slow.yaml", &job("slow", "sleep 30", "timeout: 1s\n"));
    agent.wait_phase("slow-1", "failed", secs(20));
    let state = agent.state_json("slow-1");
    assert!(state.contains("\"failure\":\"timeout\""), "{state}");
    assert_eq!(agent.exit("slow-1"), (None, Some(15)), "SIGTERM ended it");
}

#[test]
fn failures_are_restarted_with_backoff_until_the_attempts_run_out() {
    let mut agent = TestAgent::new("");
    agent.start();
    let count = agent.data_file("flaky.count").display().to_string();
    agent.write_job(
        "flaky.yaml",
        &job(
            "flaky",
            &format!("date +%s%N >> {count}; exit 3"),
            "restart: {on: failure, attempts: 2, backoff: 500ms..1s}\n",
        ),
    );
    agent.wait_phase("flaky-1", "failed", secs(30));
    let starts: Vec<u128> =
        agent.read_data("flaky.count").lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(starts.len(), 3, "the first attempt and two restarts");
    // Exponential: about 0.5 s, then about 1 s (±25% jitter).
    let gaps: Vec<u128> = starts.windows(2).map(|w| (w[1] - w[0]) / 1_000_000).collect();
    assert!(gaps[0] >= 350 && gaps[1] >= 700, "backoff gaps {gaps:?} ms");
    assert_eq!(agent.exit("flaky-1"), (Some(3), None));
    let state = agent.state_json("flaky-1");
    assert!(state.contains("\"attempt\":3"), "{state}");
    assert_eq!(agent.events("flaky-1"), ["restart-scheduled", "restart-scheduled"]);
}
