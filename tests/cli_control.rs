//! The control socket and the commands that use it, against a real agent:
//! `corral ps`, `show`, `freeze`, `thaw`, `kill`, `requeue`, `trigger`, `logs`,
//! `events`, `reload`, with the kernel's view checked beside the agent's.

mod agent_harness;

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use agent_harness::{job, secs, TestAgent};

#[test]
fn ps_freeze_thaw_and_kill_act_on_the_kernel() {
    let agent = TestAgent::started("");
    agent.write_job("work.yaml", &job("work", "echo hello from work; sleep 60", ""));
    agent.wait_phase("work-1", "running", secs(20));

    let table = agent.corral_ok(&["ps"]);
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("JOB") && header.contains("MEMORY"), "{table}");
    assert!(header.contains("CPU%") && header.contains("NEXT"), "{table}");
    let line = table.lines().find(|l| l.contains("work-1")).expect("work-1 listed");
    assert!(line.starts_with("work ") && line.contains("running"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&agent.corral_ok(&["ps", "--json"])).unwrap();
    assert_eq!(json[0]["run"], "work-1");
    assert_eq!(json[0]["state"], "running");
    assert!(json[0]["cpu_percent"].as_f64().is_some_and(|p| p >= 0.0), "{json}");
    // The memory the run's cgroup counts, shown against its limit (none here).
    assert!(json[0]["memory_bytes"].as_u64().is_some_and(|b| b > 0), "{json}");
    assert!(line.contains(" / -"), "{table}");
    // Not a recurring job: no next firing.
    assert!(json[0]["next_fire"].is_null(), "{json}");

    agent.wait_for("the job's output", secs(20), || {
        agent.corral_ok(&["logs", "work-1"]).contains("hello from work")
    });

    agent.corral_ok(&["freeze", "work-1"]);
    agent.wait_for("work-1 frozen in the kernel", secs(20), || agent.frozen("work-1"));
    agent.wait_phase("work-1", "suspended", secs(20));
    let transitions = agent.transitions("work-1");
    assert!(
        transitions.iter().any(|(_, _, reason)| reason.contains("operator")),
        "{transitions:?}"
    );
    // Frozen by hand, it stays frozen: a scheduling pass over a machine
    // with room does not resume it.
    agent.run_marker("later");
    assert!(agent.frozen("work-1"));
    assert!(agent.corral_ok(&["ps"]).contains("suspended (by operator)"));

    agent.corral_ok(&["thaw", "work-1"]);
    agent.wait_for("work-1 thawed", secs(20), || !agent.frozen("work-1"));
    agent.wait_phase("work-1", "running", secs(20));
    let thaw_again = agent.corral(&["thaw", "work-1"]);
    assert!(!thaw_again.status.success(), "only a run frozen by hand can be thawed");

    agent.corral_ok(&["kill", "work-1"]);
    agent.wait_phase("work-1", "killed", secs(20));
    let shown = agent.corral_ok(&["show", "work-1"]);
    assert!(shown.contains("state:     killed"), "{shown}");
    assert!(shown.contains("exit:"), "{shown}");
    // No `user`: a uid of its own from the default range (which one depends
    // on the uids other tests' jobs have at the time).
    let line = shown.lines().find(|l| l.starts_with("uid:")).unwrap_or_else(|| panic!("{shown}"));
    let uid: u32 = line.split_whitespace().nth(1).and_then(|u| u.parse().ok()).unwrap();
    assert_eq!(line, format!("uid:       {uid} (dynamic, gid {uid})"));
    assert!((61184..=65519).contains(&uid), "{shown}");
    let events = agent.corral_ok(&["events"]);
    assert!(events.contains("work-1") && events.contains("-> killed"), "{events}");
}

/// `corral events -f` is pushed each entry as the agent records it, and ends
/// when the agent stops.
#[test]
fn events_follow_is_pushed_entries_as_they_happen_until_the_agent_stops() {
    let mut agent = TestAgent::started("");
    let mut follower = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["events", "--follow", "--json", "--config"])
        .arg(&agent.config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel::<serde_json::Value>();
    let stdout = follower.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
            if lines_tx.send(value).is_err() {
                return;
            }
        }
    });
    let mut seen: Vec<serde_json::Value> = Vec::new();
    let mut wait_for_line = |what: &str, matches: &dyn Fn(&serde_json::Value) -> bool| {
        let deadline = Instant::now() + secs(30);
        while !seen.iter().any(matches) {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(value) => seen.push(value),
                Err(_) => panic!("no event line for {what}; seen: {seen:#?}"),
            }
        }
    };

    agent.write_job("work.yaml", &job("work", "sleep 60", ""));
    wait_for_line("work-1 created", &|v| {
        v["run"] == "work-1" && v["detail"] == "(new) -> pending: created"
    });
    wait_for_line("work-1 running", &|v| {
        v["run"] == "work-1" && v["detail"].as_str().is_some_and(|d| d.contains("-> running"))
    });
    agent.corral_ok(&["freeze", "work-1"]);
    wait_for_line("the freeze", &|v| {
        v["run"] == "work-1" && v["detail"] == "running -> suspended: frozen by operator"
    });
    agent.corral_ok(&["kill", "work-1"]);
    wait_for_line("the kill", &|v| {
        v["run"] == "work-1" && v["detail"].as_str().is_some_and(|d| d.contains("-> killed"))
    });

    // A follower whose reader is gone (`corral events -f | head`) ends at its
    // next line, of SIGPIPE as other tools do, not with a panic.
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    drop(read_end);
    let headless = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["events", "--follow", "--config"])
        .arg(&agent.config)
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(headless.status.signal(), Some(libc::SIGPIPE), "{headless:?}");
    assert!(headless.stderr.is_empty(), "{}", String::from_utf8_lossy(&headless.stderr));

    agent.stop();
    let status = follower.wait().unwrap();
    reader.join().unwrap();
    let mut stderr = String::new();
    follower.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!status.success(), "a follower whose agent stopped says so");
    assert!(stderr.contains("the agent stopped"), "{stderr}");
}

#[test]
fn requeue_stops_a_run_and_queues_it_again_with_its_attempt() {
    let agent = TestAgent::started("");
    let starts = agent.data_file("starts").display().to_string();
    agent.write_job(
        "again.yaml",
        &job("again", &format!("echo started >> {starts}; exec sleep 60"), "stop_grace: 1s\n"),
    );
    agent.wait_phase("again-1", "running", secs(20));

    let said = agent.corral_ok(&["requeue", "again-1"]);
    assert!(said.contains("queued again"), "{said}");
    agent.wait_for("a second start", secs(20), || agent.read_data("starts").lines().count() == 2);
    agent.wait_phase("again-1", "running", secs(20));
    let transitions = agent.transitions("again-1");
    assert!(
        transitions.iter().any(|(to, _, reason)| to == "pending" && reason.contains("operator")),
        "{transitions:?}"
    );
    let shown: serde_json::Value =
        serde_json::from_str(&agent.corral_ok(&["show", "again-1", "--json"])).unwrap();
    assert_eq!(shown[0]["attempt"], 1, "the attempt is kept: {shown}");
    assert_eq!(agent.runs_of("again"), ["again-1"], "the same run, not a new one");
    // Not a preemption: nothing recorded as one.
    assert!(!agent.events("again-1").iter().any(|k| k == "preempted"));

    let none = agent.corral(&["requeue", "nope-1"]);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no run nope-1"));
}

#[test]
fn trigger_starts_a_run_of_a_recurring_job_now() {
    let agent = TestAgent::started("");
    let marker = agent.data_file("nightly.out").display().to_string();
    agent.write_job(
        "nightly.yaml",
        &job("nightly", &format!("echo triggered; echo ran > {marker}"), "schedule: '0 0 1 1 *'\n"),
    );
    // The job file is read before the trigger names it.
    agent.wait_for("the job known", secs(20), || {
        agent.corral(&["trigger", "nightly"]).status.success()
    });
    agent.wait_phase("nightly-1", "succeeded", secs(20));
    assert_eq!(agent.read_data("nightly.out"), "ran\n");
    assert_eq!(agent.corral_ok(&["logs", "nightly-1"]), "triggered\n");
    let shown: serde_json::Value =
        serde_json::from_str(&agent.corral_ok(&["show", "nightly", "--json"])).unwrap();
    assert_eq!(shown[0]["run"], "nightly-1");
    assert_eq!(shown[0]["exit"]["exit_code"], 0);

    let one_shot = agent.corral(&["trigger", "missing"]);
    assert!(!one_shot.status.success());
    assert!(String::from_utf8_lossy(&one_shot.stderr).contains("not a recurring job"));
}

/// `corral ps` as uid 65534 with the given group options (`setpriv`).
fn ps_as_nobody(socket: &std::path::Path, groups: &[&str]) -> Output {
    Command::new("setpriv")
        .arg("--reuid=65534")
        .args(groups)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_corral"))
        .args(["ps", "--socket"])
        .arg(socket)
        .output()
        .unwrap()
}

#[test]
fn members_of_the_socket_group_may_drive_the_agent_and_others_may_not() {
    let agent = TestAgent::started("socket_group: nogroup\n");
    let socket = agent.state.join("corral.sock");
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), 65534);

    // By its primary group, or by a supplementary one.
    for groups in [&["--regid=65534", "--clear-groups"][..], &["--regid=4321", "--groups=65534"]] {
        let out = ps_as_nobody(&socket, groups);
        assert!(out.status.success(), "{groups:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("JOB"));
    }
    let outsider = ps_as_nobody(&socket, &["--regid=4321", "--clear-groups"]);
    assert!(!outsider.status.success());
    let stderr = String::from_utf8_lossy(&outsider.stderr);
    assert!(stderr.contains("permission denied"), "{stderr}");
}

#[test]
fn the_socket_is_root_only_and_a_stopped_agent_is_reported() {
    let mut agent = TestAgent::started("");
    let socket = agent.state.join("corral.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // Another user cannot connect (the file mode keeps it out).
    let as_nobody = ps_as_nobody(&socket, &["--regid=65534", "--clear-groups"]);
    assert!(!as_nobody.status.success());
    let stderr = String::from_utf8_lossy(&as_nobody.stderr);
    assert!(stderr.contains("permission denied"), "{stderr}");

    agent.stop();
    assert!(!socket.exists(), "the agent removes its socket when it stops");
    let out = agent.corral(&["ps"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "no agent is listening on {}: is `corral agent` running?",
            socket.display()
        )),
        "{stderr}"
    );
}

#[test]
fn the_http_api_does_not_quote_a_root_only_job_file_but_reload_does() {
    let agent = TestAgent::started("");
    agent.write_job("vault.yaml", &job("vault", "exit 0", ""));
    agent.wait_phase("vault-1", "succeeded", secs(20));
    let secret = "hunter2-TOPSECRET-9f1c";
    let path = agent.jobs.join("vault.yaml");
    agent.write_job("vault.yaml", &job("vault", "exit 0", &format!("workdir: {secret}\n")));
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let file = path.display().to_string();
    agent.wait_for("the problem in the log", secs(10), || {
        agent.log_text().contains(&format!("{file}:3:10: workdir: invalid"))
    });

    // The views follow the log within the 20 ms between publishes.
    let mut body = String::new();
    agent.wait_for("the problem in /v1/jobs/vault", secs(10), || {
        let status;
        (status, _, body) = agent.http_get("/v1/jobs/vault", None);
        status == 200 && body.contains("invalid")
    });
    assert!(!body.contains("TOPSECRET"), "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["file_status"], "invalid");
    assert_eq!(json["problems"][0], format!("{file}:3:10: workdir: invalid working directory"));
    let (_, _, list) = agent.http_get("/v1/jobs", None);
    assert!(!list.contains("TOPSECRET") && list.contains("invalid working directory"), "{list}");

    // Root asks over the control socket, and is told all of it.
    let out = agent.corral(&["reload"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("{file}:3:10: workdir: invalid working directory \"{secret}\"")),
        "{said}"
    );
}

#[test]
fn reload_reads_the_directory_now_and_exits_1_while_a_file_is_not_applied() {
    let mut agent = TestAgent::started("");
    // Held open for writing, a file never settles, so the watcher never
    // reads it by itself: only the reload can have found it.
    let held_path = agent.jobs.join("held.yaml");
    let mut held = fs::File::create(&held_path).unwrap();
    fs::set_permissions(&held_path, fs::Permissions::from_mode(0o644)).unwrap();
    held.write_all(job("held", "exit 0", "").as_bytes()).unwrap();
    let said = agent.corral_ok(&["reload"]);
    assert_eq!(
        said,
        format!("{}: 1 job file, applied\nadded: held\n", agent.jobs.display()),
        "{}",
        agent.log_text()
    );
    agent.wait_phase("held-1", "succeeded", secs(20));
    drop(held);

    // A file that does not compile and one the watcher refuses to read:
    // whether or not the watcher got to them first, the reload lists both.
    agent.write_job("bad.yaml", "name: bad\ncommand: 3\n");
    agent.write_job("open.yaml", &job("open", "exit 0", ""));
    let open_path = agent.jobs.join("open.yaml");
    fs::set_permissions(&open_path, fs::Permissions::from_mode(0o666)).unwrap();
    let out = agent.corral(&["reload"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains(": 3 job files, 1 applied, 2 not applied\n"), "{said}");
    let bad = agent.jobs.join("bad.yaml").display().to_string();
    assert!(said.contains(&format!("not applied:\n  {bad}\n    {bad}:2:")), "{said}");
    assert!(
        said.contains(&format!(
            "  {}\n    refused: it is world-writable (mode 0666)\n",
            open_path.display()
        )),
        "{said}"
    );

    // The same, for scripts. Nothing changed since the last reload, yet
    // both files are still listed: the answer is the directory's state.
    let out = agent.corral(&["reload", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["jobs_dir"], agent.jobs.display().to_string());
    assert_eq!(
        (json["files_applied"].as_u64(), json["files_not_applied"].as_u64()),
        (Some(1), Some(2))
    );
    for list in ["added", "changed", "removed"] {
        assert_eq!(json[list], serde_json::json!([]), "{list}: {json}");
    }
    let not_applied = json["not_applied"].as_array().unwrap();
    assert_eq!(not_applied.len(), 2, "{json}");
    assert_eq!(not_applied[0]["file"], bad);
    assert!(not_applied[0]["problems"][0].as_str().unwrap().contains("command"), "{json}");
    assert_eq!(not_applied[0]["in_force"], serde_json::json!([]));
    assert_eq!(not_applied[1]["problems"][0], "refused: it is world-writable (mode 0666)");

    // Both fixed: every file applied, exit 0.
    agent.write_job("bad.yaml", &job("bad", "exit 0", ""));
    fs::set_permissions(&open_path, fs::Permissions::from_mode(0o644)).unwrap();
    let said = agent.corral_ok(&["reload"]);
    assert!(said.contains(": 3 job files, all applied\n"), "{said}");
    assert!(!said.contains("not applied"), "{said}");

    // No agent: the error every control command gives, with status 2.
    agent.stop();
    let out = agent.corral(&["reload"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no agent is listening"));
}
