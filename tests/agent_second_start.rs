//! A second start on the same state directory runs none of the one-shot
//! jobs the first finished, and says so, with how to start afresh.

mod agent_harness;

use agent_harness::{job, secs, TestAgent};

const NOTICE: &str = "going on from the state of earlier starts";

#[test]
fn a_second_start_says_its_state_is_kept_and_how_to_start_afresh() {
    let mut agent = TestAgent::new("");
    agent.write_job("once.yaml", &job("once", "echo done", ""));
    agent.start();
    agent.wait_phase("once-1", "succeeded", secs(30));
    agent.stop();
    assert!(!agent.log_text().contains(NOTICE), "a first start has no earlier state");

    agent.start();
    agent.wait_for("the second start", secs(20), || {
        agent.log_text().matches("serving /metrics").count() == 2
    });
    let log = agent.log_text();
    assert!(log.contains(NOTICE), "{log}");
    assert!(log.contains("remove the state directory"), "{log}");
    assert!(log.contains(&format!("state_dir={}", agent.state.display())), "{log}");
    // What the notice says: the job that ended is not run again.
    assert_eq!(agent.runs_of("once"), ["once-1"]);
}
