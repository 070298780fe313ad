//! The declarative jobs directory, end to end: a real agent, real files,
//! real cgroups.

mod agent_harness;

use agent_harness::{job, secs, TestAgent};

#[test]
fn dropping_three_files_runs_three_jobs_once_each() {
    let mut agent = TestAgent::new("");
    agent.start();
    for name in ["one", "two", "three"] {
        let script = format!("echo $CORRAL_RUN >> {}", agent.data_file(name).display());
        agent.write_job(&format!("{name}.yaml"), &job(name, &script, ""));
    }
    for name in ["one", "two", "three"] {
        agent.wait_phase(&format!("{name}-1"), "succeeded", secs(20));
        assert_eq!(agent.read_data(name), format!("{name}-1\n"));
        assert_eq!(agent.exit(&format!("{name}-1")), (Some(0), None));
    }
    // Their cgroups are gone once their accounting is read.
    agent.wait_for("job cgroups removed", secs(10), || agent.job_cgroups().is_empty());
    // A graceful stop and a restart: the same versions do not run again.
    assert!(agent.stop().success());
    agent.start();
    agent.wait_for("the restarted agent to read the directory", secs(10), || {
        agent.log_text().matches("job file loaded: one").count() == 2
    });
    agent.sync_files("later");
    assert_eq!(agent.count_runs(), 3);
    assert_eq!(agent.read_data("one"), "one-1\n");
}

#[test]
fn edits_apply_live_where_the_kernel_allows_and_a_deleted_file_stops_its_run() {
    let mut agent = TestAgent::new("");
    agent.start();
    agent.write_job(
        "svc.yaml",
        &job(
            "svc",
            "trap 'echo term >> DATA; exit 0' TERM; while true; do sleep 0.1; done",
            "resources: {cpu_weight: 100, memory: {hard: 128Mi}}\n",
        )
        .replace("DATA", &agent.data_file("svc").display().to_string()),
    );
    agent.wait_phase("svc-1", "running", secs(20));
    let shares = agent.cgroup("cpu", "svc-1").join("cpu.shares");
    assert_eq!(std::fs::read_to_string(&shares).unwrap().trim(), "1024");

    // A new weight and a higher memory limit reach the running job's cgroup;
    // the run takes the new version, no second run starts.
    agent.write_job(
        "svc.yaml",
        &job(
            "svc",
            "trap 'echo term >> DATA; exit 0' TERM; while true; do sleep 0.1; done",
            "resources: {cpu_weight: 300, memory: {hard: 256Mi}}\n",
        )
        .replace("DATA", &agent.data_file("svc").display().to_string()),
    );
    let limit = agent.cgroup("memory", "svc-1").join("memory.limit_in_bytes");
    agent.wait_for("the new weight in cpu.shares", secs(10), || {
        std::fs::read_to_string(&shares).is_ok_and(|s| s.trim() == "3072")
    });
    assert_eq!(std::fs::read_to_string(&limit).unwrap().trim(), (256u64 << 20).to_string());
    assert_eq!(agent.runs_of("svc"), ["svc-1"]);
    assert_eq!(agent.phase("svc-1").as_deref(), Some("running"));

    // Deleting the file stops the run: SIGTERM first, which the job handles.
    agent.remove_job("svc.yaml");
    agent.wait_phase("svc-1", "killed", secs(20));
    assert_eq!(agent.read_data("svc"), "term\n");
    assert!(agent.state_json("svc-1").contains("job-removed"), "{}", agent.state_json("svc-1"));
}

#[test]
fn a_removed_job_that_ignores_sigterm_is_killed_after_its_grace() {
    let mut agent = TestAgent::new("");
    agent.start();
    agent
        .write_job("stubborn.yaml", &job("stubborn", "trap '' TERM; sleep 60", "stop_grace: 1s\n"));
    agent.wait_phase("stubborn-1", "running", secs(20));
    agent.remove_job("stubborn.yaml");
    agent.wait_phase("stubborn-1", "killed", secs(20));
    let transitions = agent.transitions("stubborn-1");
    assert!(
        transitions.iter().any(|(_, _, reason)| reason.contains("stop grace over")),
        "{transitions:?}"
    );
}

#[test]
fn an_invalid_file_reports_its_error_once_and_leaves_the_previous_version_running() {
    let mut agent = TestAgent::new("");
    agent.start();
    agent.write_job("keep.yaml", &job("keep", "sleep 60", ""));
    agent.wait_phase("keep-1", "running", secs(20));
    agent.write_job(
        "keep.yaml",
        "name: keep\ncommand: [/bin/sh, -c, 'sleep 60']\nresources: {cpus: lots}\n",
    );
    agent.wait_for("the error in the log", secs(10), || {
        agent.log_text().contains("job file not applied")
    });
    let log = agent.log_text();
    assert!(log.contains("keep.yaml:3"), "the error names file and line:\n{log}");
    assert!(log.contains("its last good version stays in force (keep)"), "{log}");
    agent.run_marker("later");
    assert_eq!(agent.log_text().matches("job file not applied").count(), 1, "logged once");
    assert_eq!(agent.phase("keep-1").as_deref(), Some("running"));
    assert_eq!(agent.runs_of("keep"), ["keep-1"]);
    // A new file that is invalid from the start adds nothing.
    agent.write_job("bad.yaml", "name: bad\n");
    agent.wait_for("the second error", secs(10), || {
        agent.log_text().matches("job file not applied").count() == 2
    });
    assert!(agent.runs_of("bad").is_empty());
    // Valid again: picked up.
    agent.write_job("bad.yaml", &job("bad", "true", ""));
    agent.wait_phase("bad-1", "succeeded", secs(20));
}

#[test]
fn world_writable_files_and_root_jobs_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let mut agent = TestAgent::new("");
    agent.start();
    let path = agent.jobs.join("open.yaml");
    std::fs::write(&path, job("open", "true", "")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    agent.write_job("root.yaml", &job("root", "true", "user: root\n"));
    agent.wait_for("the refusal in the log", secs(10), || {
        agent.log_text().contains("world-writable")
    });
    agent.wait_for("the root refusal in the log", secs(10), || {
        agent.log_text().contains("allow_root_jobs is false")
    });
    agent.run_marker("later");
    assert!(agent.runs_of("open").is_empty());
    assert!(agent.runs_of("root").is_empty());
    assert_eq!(agent.log_text().matches("world-writable").count(), 1, "logged once");
    // Fixed permissions: the file is read.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    agent.wait_phase("open-1", "succeeded", secs(20));
}

#[test]
fn privileged_groups_and_a_shared_uid_without_pid_namespace_wait_for_permission() {
    let files = |agent: &TestAgent| {
        let out = |name: &str| agent.data_file(name).display().to_string();
        agent.write_job(
            "shadow.yaml",
            &job("shadow", &format!("id -g > {}", out("shadow")), "group: shadow\n"),
        );
        agent.write_job(
            "gid0.yaml",
            &job("gid0", &format!("id -g > {}", out("gid0")), "group: '0'\n"),
        );
        agent.write_job(
            "nopid.yaml",
            &job("nopid", &format!("echo $$ > {}", out("nopid")), "isolation:\n  namespaces: []\n"),
        );
    };
    // The jobs share the default user only when it is an account.
    let mut agent = TestAgent::new("default_user: nobody\n");
    agent.start();
    files(&agent);
    for said in [
        "shadow.yaml:3:8: group: group \"shadow\" is privileged",
        "gid0.yaml:3:8: group: group \"0\" is privileged",
        "nopid.yaml:4:15: isolation.namespaces: without a pid namespace",
    ] {
        agent.wait_for(said, secs(10), || agent.log_text().contains(said));
    }
    agent.run_marker("later");
    for name in ["shadow", "gid0", "nopid"] {
        assert!(agent.runs_of(name).is_empty(), "{name} ran");
    }
    agent.stop();

    let mut allowed =
        TestAgent::new("allow_root_jobs: true\nallow_shared_uid_without_pid_namespace: true\n");
    allowed.start();
    files(&allowed);
    for name in ["shadow", "gid0", "nopid"] {
        allowed.wait_phase(&format!("{name}-1"), "succeeded", secs(20));
    }
    let shadow = std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("shadow:x:").map(|r| r.trim_end_matches(':').to_owned()))
        .unwrap();
    assert_eq!(allowed.read_data("shadow").trim(), shadow);
    assert_eq!(allowed.read_data("gid0"), "0\n");
    let pid: u32 = allowed.read_data("nopid").trim().parse().unwrap();
    assert!(pid > 1, "a host pid, not 1 of its own namespace: {pid}");
}

#[test]
fn a_file_name_cannot_forge_log_lines() {
    let mut agent = TestAgent::new("");
    agent.start();
    let forged = "x\n2026-01-01T00:00:00Z  INFO corral: forged \u{1b}[31mred.yaml";
    agent.write_job(forged, &job("forger", "exit 0", "comand: 3\n"));
    agent.wait_for("the file's problem in the log", secs(10), || {
        agent.log_text().contains("job file not applied")
    });
    let log = agent.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("forged")).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(!log.contains('\u{1b}'), "{log}");
    let escaped = "x\\n2026-01-01T00:00:00Z  INFO corral: forged \\u{1b}[31mred.yaml";
    assert!(lines[0].contains(&format!("{escaped}:3:1: comand: unknown field")), "{log}");
    assert!(lines[0].contains(&format!("file={}/{escaped}", agent.jobs.display())), "{log}");
}

#[test]
fn two_agents_side_by_side_each_run_their_own_jobs() {
    let mut a = TestAgent::new("");
    let mut b = TestAgent::new("log_format: json\n");
    a.start();
    b.start();
    a.write_job("x.yaml", &job("x", "sleep 0.5", ""));
    b.write_job("x.yaml", &job("x", "sleep 0.5", ""));
    a.wait_phase("x-1", "running", secs(20));
    b.wait_phase("x-1", "running", secs(20));
    assert!(a.cgroup("memory", "x-1").exists());
    assert!(b.cgroup("memory", "x-1").exists(), "each under its own cgroup parent");
    a.wait_phase("x-1", "succeeded", secs(20));
    b.wait_phase("x-1", "succeeded", secs(20));
    // JSON logs: one object per line.
    let log = b.log_text();
    assert!(!log.is_empty());
    for line in log.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value.get("fields").is_some(), "{line}");
    }
}

/// Two jobs without `user` and without a pid namespace: `x` and `y`, each
/// writing its uid, then trying to read the other's environment and to
/// signal it while both run. Returns what each found.
fn two_jobs_in_sight_of_each_other(agent: &TestAgent) -> [(String, String, String); 2] {
    let data = agent.data.display().to_string();
    for (me, other) in [("x", "y"), ("y", "x")] {
        let script = format!(
            "id -u >> {data}/{me}.uids; echo $$ > {data}/{me}.pid.tmp; mv {data}/{me}.pid.tmp {data}/{me}.pid; \
             while [ ! -s {data}/{other}.pid ]; do sleep 0.05; done; o=$(cat {data}/{other}.pid); \
             if cat /proc/$o/environ > /dev/null 2>&1; then echo read; else echo refused; fi > {data}/{me}.environ; \
             if kill -0 $o 2> /dev/null; then echo signalled; else echo refused; fi > {data}/{me}.kill; \
             while [ ! -s {data}/{other}.kill ]; do sleep 0.05; done"
        );
        agent.write_job(&format!("{me}.yaml"), &job(me, &script, "isolation:\n  namespaces: []\n"));
    }
    ["x", "y"].map(|me| {
        agent.wait_phase(&format!("{me}-1"), "succeeded", secs(30));
        (
            agent.read_data(&format!("{me}.uids")),
            agent.read_data(&format!("{me}.environ")),
            agent.read_data(&format!("{me}.kill")),
        )
    })
}

#[test]
fn jobs_without_user_have_uids_of_their_own_and_keep_them_across_a_crash() {
    let mut agent = TestAgent::new("");
    agent.start();
    let [(x_uids, x_environ, x_kill), (y_uids, y_environ, y_kill)] =
        two_jobs_in_sight_of_each_other(&agent);
    let x_uid: u32 = x_uids.trim().parse().unwrap();
    let y_uid: u32 = y_uids.trim().parse().unwrap();
    assert_ne!(x_uid, y_uid);
    for uid in [x_uid, y_uid] {
        assert!((61184..=65519).contains(&uid), "{uid} outside the default range");
    }
    assert_eq!((x_environ.as_str(), y_environ.as_str()), ("refused\n", "refused\n"));
    assert_eq!((x_kill.as_str(), y_kill.as_str()), ("refused\n", "refused\n"));
    let (status, _, body) = agent.http_get("/v1/jobs/x", None);
    assert_eq!(status, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((&view["user"], &view["dynamic_uid"]), (&"dynamic".into(), &x_uid.into()));

    // kill -9, then a new job z first and a new version of x: z gets a uid
    // neither x nor y holds, and x's run has x's uid again.
    agent.kill9();
    agent.start();
    let data = agent.data.display();
    agent.write_job("z.yaml", &job("z", &format!("id -u >> {data}/z.uids"), ""));
    agent.wait_phase("z-1", "succeeded", secs(30));
    let z_uid: u32 = agent.read_data("z.uids").trim().parse().unwrap();
    assert!(z_uid != x_uid && z_uid != y_uid, "z {z_uid}, x {x_uid}, y {y_uid}");
    agent.write_job(
        "x.yaml",
        &job("x", &format!("id -u >> {data}/x.uids"), "isolation:\n  namespaces: []\n"),
    );
    agent.wait_phase("x-2", "succeeded", secs(30));
    assert_eq!(agent.read_data("x.uids"), format!("{x_uid}\n{x_uid}\n"));
}

#[test]
fn jobs_sharing_the_default_user_without_pid_namespace_see_each_other() {
    // What dynamic users prevent: under one shared account, with the check
    // switched off, each job reads the other's environment and may signal it.
    let mut agent =
        TestAgent::new("default_user: nobody\nallow_shared_uid_without_pid_namespace: true\n");
    agent.start();
    let [(x_uids, x_environ, x_kill), (y_uids, ..)] = two_jobs_in_sight_of_each_other(&agent);
    assert_eq!((x_uids.as_str(), y_uids.as_str()), ("65534\n", "65534\n"));
    assert_eq!((x_environ.as_str(), x_kill.as_str()), ("read\n", "signalled\n"));
}
