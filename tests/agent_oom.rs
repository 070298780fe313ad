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

/// The v1 pause, measured: the kernel stops the job at its limit
/// (`under_oom 1`) on its own, so nothing is allocated past it; the agent's
/// reaction is the time from the pause to the raised limit. The figures
/// are printed (run with `--nocapture`), not asserted; what is asserted is
/// that the job never held more than its limit before it was grown.
#[test]
fn grow_on_v1_holds_the_job_at_its_limit_until_it_is_grown() {
    const LIMIT: u64 = 32 << 20;
    let mut agent = TestAgent::new("");
    agent.start();
    let dir = agent.cgroup("memory", "measure-1");
    let number = |file: &str| -> Option<u64> {
        std::fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok()
    };
    agent.write_job(
        "measure.yaml",
        &job(
            "measure",
            &hog(&agent, "measure"),
            "resources: {memory: {hard: 32Mi}}\noom: {action: grow, grow_to: 1Gi, grow_step: 64Mi}\n",
        ),
    );
    let (mut paused_at, mut grown_after, mut peak_when_paused) = (None, None, None);
    let deadline = std::time::Instant::now() + secs(60);
    while grown_after.is_none() && std::time::Instant::now() < deadline {
        let control = std::fs::read_to_string(dir.join("memory.oom_control")).unwrap_or_default();
        if paused_at.is_none() && control.lines().any(|l| l == "under_oom 1") {
            paused_at = Some(std::time::Instant::now());
            peak_when_paused = number("memory.max_usage_in_bytes");
        }
        if let Some(at) = paused_at {
            if number("memory.limit_in_bytes").is_some_and(|l| l > LIMIT) {
                grown_after = Some(at.elapsed());
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    agent.wait_phase("measure-1", "succeeded", secs(60));
    let (Some(grown_after), Some(peak)) = (grown_after, peak_when_paused) else {
        panic!("the pause at the limit was not seen: {:?}", agent.events("measure-1"));
    };
    println!(
        "measured (v1 pause, grow): paused at the limit to the limit raised {:.1} ms; \
         peak {} KiB, {} KiB past the hard limit",
        grown_after.as_secs_f64() * 1000.0,
        peak / 1024,
        peak.saturating_sub(LIMIT) / 1024
    );
    assert!(peak <= LIMIT, "held {peak} bytes at a {LIMIT}-byte limit");
    assert_eq!(agent.events("measure-1")[..2], ["oom", "memory-grown"]);
}
