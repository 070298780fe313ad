//! A node holding a thousand live runs, far past the kernel's default of 128
//! inotify instances per user: every run's memory notification is seen (each
//! is a `grow` job that the kernel pauses at its limit, so one missed
//! notification leaves a run paused for good), and a restarted agent adopts
//! all of them and handles their OOMs.

mod agent_harness;

use std::time::{Duration, Instant};

use agent_harness::{job, secs, TestAgent};

const RUNS: usize = 1000;

/// Descriptors of `pid` that are inotify instances.
fn inotify_instances(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy() == "anon_inode:inotify")
                })
                .count()
        })
        .unwrap_or(0)
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(Iterator::count).unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn count_phase(agent: &TestAgent, phase: &str) -> usize {
    let Some(db) = agent.db() else { return 0 };
    db.query_row("SELECT COUNT(*) FROM runs WHERE phase = ?1", [phase], |r| r.get::<_, i64>(0))
        .map_or(0, |n| n as usize)
}

#[test]
fn a_thousand_live_runs_all_have_their_ooms_handled_across_an_agent_restart() {
    let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_instances").unwrap();
    eprintln!("fs.inotify.max_user_instances = {}", limit.trim());
    let mut agent = TestAgent::new("reserved_memory: 512Mi\n");
    agent.start();
    agent.wait_for("the agent to start", secs(10), || agent.log_text().contains("agent starting"));

    // Every job blocks opening the FIFO until the test opens its other end:
    // no CPU spent while a thousand of them wait.
    let gate = agent.data_file("gate");
    nix::unistd::mkfifo(&gate, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    std::fs::set_permissions(&gate, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    for i in 0..RUNS {
        let name = format!("g{i:04}");
        // Released together, they reach their limits spread over ten
        // seconds, so only a few dozen hold their grown memory at once.
        let delay = (i % 40) as f64 / 4.0;
        // A 4 MiB shell string (about twice that while copying) in a 4 MiB
        // cgroup: paused at the limit until grown to 16 MiB. A thousand runs
        // grown at once still fit in the node's memory, so placement never
        // refuses a grow, however slowly the runs get their CPU time.
        let script = format!(
            "read x < {gate}; sleep {delay}; x=abcdefgh; i=0; \
             while [ $i -lt 19 ]; do x=\"$x$x\"; i=$((i+1)); done; [ ${{#x}} -eq 4194304 ]",
            gate = gate.display()
        );
        agent.write_job(
            &format!("{name}.yaml"),
            &job(
                &name,
                &script,
                "resources: {memory: {hard: 4Mi}}\noom: {action: grow, grow_to: 16Mi}\n",
            ),
        );
    }
    let started = Instant::now();
    agent.wait_for("every run to be running", secs(300), || count_phase(&agent, "running") == RUNS);
    let pid = agent.pid();
    eprintln!(
        "{RUNS} runs live after {:.1} s; agent: {} inotify instances, {} descriptors, {} KiB RSS",
        started.elapsed().as_secs_f64(),
        inotify_instances(pid),
        open_descriptors(pid),
        rss_kib(pid)
    );
    assert!(inotify_instances(pid) <= 2, "the jobs directory's and the runs' shared one");
    let log = agent.log_text();
    assert!(!log.contains("memory notifications could not be set up"), "{log}");

    // A restart adopts every live run, and watches each again.
    agent.kill9();
    agent.start();
    agent.wait_for("the restarted agent to take over", secs(120), || {
        agent.log_text().contains("took over the runs of the previous agent")
    });
    let pid = agent.pid();
    assert_eq!(count_phase(&agent, "running"), RUNS, "every run adopted, none killed as stray");
    assert!(inotify_instances(pid) <= 2);

    // Release them: each reaches its limit under the restarted agent.
    let released = Instant::now();
    let writer = std::fs::OpenOptions::new().write(true).open(&gate).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    drop(writer);
    agent.wait_for("every run to be grown and succeed", secs(600), || {
        count_phase(&agent, "succeeded") + count_phase(&agent, "failed") == RUNS
    });
    eprintln!("all {RUNS} ended {:.1} s after release", released.elapsed().as_secs_f64());
    let db = agent.db().unwrap();
    let failed: Vec<String> = db
        .prepare("SELECT id FROM runs WHERE phase != 'succeeded' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // The first few, with what happened to them, so that a failure says why.
    let told: Vec<String> = failed
        .iter()
        .take(3)
        .map(|run| {
            format!(
                "{run}: transitions {:?}, events {:?}, exit {:?}",
                agent.transitions(run),
                agent.events(run),
                agent.exit(run)
            )
        })
        .collect();
    assert!(failed.is_empty(), "{} of {RUNS} runs did not succeed: {told:#?}", failed.len());
    let grown: i64 = db
        .query_row(
            "SELECT COUNT(DISTINCT run_id) FROM run_events WHERE kind = 'memory-grown'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(grown as usize, RUNS, "every run was grown at its limit");
    assert_eq!(agent.count_runs(), RUNS, "one run per file, none started twice");
    let log = agent.log_text();
    assert!(!log.contains("memory notifications could not be set up"), "{log}");
    agent.wait_for("cgroups removed", secs(60), || agent.job_cgroups().is_empty());
}
