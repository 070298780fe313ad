//! Many job files at once on a 2-CPU machine: every one runs to completion,
//! the queue goes by priority, and exclusive CPUs are never handed out twice.

mod agent_harness;

use agent_harness::{job, secs, TestAgent};

#[test]
fn two_hundred_files_at_once_all_complete_in_priority_order_on_two_cpus() {
    const JOBS: usize = 200;
    let mut agent = TestAgent::new("");
    agent.start();
    agent.wait_for("the agent to start", secs(10), || agent.log_text().contains("agent starting"));
    // A file per run: each job runs under a uid of its own, so they cannot
    // all append to one file.
    let ran = agent.data_file("ran");
    std::fs::create_dir(&ran).unwrap();
    std::fs::set_permissions(&ran, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    for i in 0..JOBS {
        let name = format!("j{i:03}");
        let priority = (i * 7) % 5 * 10;
        // One exclusive CPU each: with two CPUs and one always kept for the
        // shared pool, they have to take turns.
        agent.write_job(
            &format!("{name}.yaml"),
            &job(
                &name,
                &format!("echo $CORRAL_RUN >> {}/$CORRAL_RUN", ran.display()),
                &format!("priority: {priority}\nresources: {{cpus: 1}}\n"),
            ),
        );
    }
    agent.wait_for("every run to succeed", secs(150), || {
        let Some(db) = agent.db() else { return false };
        db.query_row("SELECT COUNT(*) FROM runs WHERE phase = 'succeeded'", [], |r| {
            r.get::<_, i64>(0)
        })
        .is_ok_and(|n| n as usize == JOBS)
    });
    assert_eq!(agent.count_runs(), JOBS, "one run per file");
    for entry in std::fs::read_dir(&ran).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1, "{path:?} ran once");
    }
    assert_eq!(std::fs::read_dir(&ran).unwrap().count(), JOBS, "each ran");

    // (job, placed at, ended at, created at) of every run, by placement.
    let db = agent.db().unwrap();
    let mut stmt = db
        .prepare(
            "SELECT r.job, t.at, r.finished_at, r.created_at FROM runs r
             JOIN transitions t ON t.run_id = r.id AND t.to_phase = 'placed' ORDER BY t.at, r.id",
        )
        .unwrap();
    let placed: Vec<(String, i64, i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(placed.len(), JOBS, "each placed once");
    let priority_of = |job: &str| -> usize {
        let i: usize = job[1..].parse().unwrap();
        (i * 7) % 5 * 10
    };
    // The exclusive CPU is held by one run at a time.
    for pair in placed.windows(2) {
        assert!(
            pair[1].1 >= pair[0].2,
            "{} placed at {} before {} ended at {}",
            pair[1].0,
            pair[1].1,
            pair[0].0,
            pair[0].2
        );
    }
    // No run was placed while a more important one was already waiting.
    for (i, (job, at, _, _)) in placed.iter().enumerate() {
        for (other, _, _, created) in &placed[i + 1..] {
            assert!(
                !(priority_of(other) > priority_of(job) && *created < *at),
                "{job} (priority {}) placed at {at} while {other} (priority {}) waited since {created}",
                priority_of(job),
                priority_of(other)
            );
        }
    }
    agent.wait_for("cgroups removed", secs(20), || agent.job_cgroups().is_empty());
}
