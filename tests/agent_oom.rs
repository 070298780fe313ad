//! OOM policies on the real kernel: grow continues in place, requeue starts
//! again with a larger limit, fail fails with reason OOM.

mod agent_harness;

use agent_harness::{job, secs, TestAgent};

/// Doubles a shell string to 64 MiB (needing about three times that while
/// copying) and writes its length. The copies are made in user space, so
/// reaching the limit is a page fault, which the kernel can pause.
fn hog(agent: &TestAgent, name: &str) -> String {
    format!(
        "x=abcdefgh; i=0; while [ $i -lt 23 ]; do x=\"$x$x\"; i=$((i+1)); done; echo ${{#x}} > {}",
        agent.data_file(name).display()
    )
}

#[test]
fn grow_raises_the_limit_and_the_job_goes_on() {
    let mut agent = TestAgent::new("");
    agent.start();
    agent.write_job(
        "grow.yaml",
        &job(
            "grow",
            &hog(&agent, "grow"),
            "resources: {memory: {hard: 32Mi}}\noom: {action: grow, grow_to: 1Gi, grow_step: 64Mi}\n",
        ),
    );
    agent.wait_phase("grow-1", "succeeded", secs(60));
    assert_eq!(agent.read_data("grow").trim(), "67108864");
    let events = agent.events("grow-1");
    assert_eq!(events.first().map(String::as_str), Some("oom"), "{events:?}");
    assert!(events.iter().any(|e| e == "memory-grown"), "{events:?}");
    assert!(!events.iter().any(|e| e == "oom-killed"), "{events:?}");
    let state = agent.state_json("grow-1");
    assert!(state.contains("\"attempt\":1"), "grown in place, same attempt: {state}");
    assert_eq!(agent.exit("grow-1"), (Some(0), None));
}

#[test]
fn requeue_starts_again_with_a_larger_limit_and_succeeds_on_the_second_attempt() {
    let mut agent = TestAgent::new("");
    agent.start();
    let counter = agent.data_file("requeue.count").display().to_string();
    agent.write_job(
        "requeue.yaml",
        &job(
            "requeue",
            &format!("echo x >> {counter}; {}", hog(&agent, "requeue")),
            "resources: {memory: {hard: 32Mi}}\noom: {action: requeue, requeue_factor: 8}\n",
        ),
    );
    agent.wait_phase("requeue-1", "succeeded", secs(60));
    assert_eq!(agent.read_data("requeue").trim(), "67108864");
    assert_eq!(agent.read_data("requeue.count"), "x\nx\n", "two attempts");
    let state = agent.state_json("requeue-1");
    assert!(state.contains("\"attempt\":2"), "{state}");
    assert!(state.contains(&format!("\"memory_limit\":{}", 256u64 << 20)), "{state}");
    let events = agent.events("requeue-1");
    assert!(events.iter().any(|e| e == "oom-requeued"), "{events:?}");
}

#[test]
fn fail_fails_the_run_with_reason_oom() {
    let mut agent = TestAgent::new("");
    agent.start();
    agent.write_job(
        "fail.yaml",
        &job("fail", &hog(&agent, "fail"), "resources: {memory: {hard: 32Mi}}\n"),
    );
    agent.wait_phase("fail-1", "failed", secs(60));
    let state = agent.state_json("fail-1");
    assert!(
        state.contains("\"failure\":\"oom\""),
        "failed with reason OOM, not a bare signal: {state}"
    );
    assert!(agent.read_data("fail").is_empty());
}
