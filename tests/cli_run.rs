//! `corral run` on the real kernel: exit codes, signals, cpusets, cgroups,
//! OOM, fork bombs, isolation, a status that outlives `corral run`, and
//! every example job.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use common::{cgroup_line, secs, wait_until, CorralRun, Sandbox};
use corral::container::{probe, wait_for_status, JobExit, ShimState};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A job in the busybox rootfs, as the unprivileged `app` user.
fn boxed(sandbox: &Sandbox, name: &str, script: &str, extra: &str) -> String {
    format!(
        "name: {name}\nuser: app\ncommand: [/bin/sh, -c, {script:?}]\nisolation:\n  rootfs: {}\n{extra}",
        sandbox.rootfs.display()
    )
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or_else(|| panic!("corral run died: {:?}", output.status))
}

/// The summary line corral printed last.
fn summary(output: &Output) -> String {
    let stderr = text(&output.stderr);
    stderr.lines().rfind(|l| l.contains(" wall, ")).unwrap_or_else(|| panic!("{stderr}")).to_owned()
}

fn assert_cleaned_up(corral: &CorralRun) {
    assert_eq!(corral.job_cgroups(), Vec::<PathBuf>::new(), "job cgroups left behind");
}

/// Reads the child's stdout up to a line equal to `want`.
fn read_until(child: &mut Child, want: &str) -> BufReader<std::process::ChildStdout> {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "no {want:?} before end of output");
        if line.trim_end() == want {
            return out;
        }
    }
}

#[test]
fn exit_codes_come_back_as_corral_s_own() {
    let sandbox = Sandbox::new();
    let corral = CorralRun::new();
    for exit in [0, 3, 42] {
        let file = corral.job_file("exit", &boxed(&sandbox, "exit", &format!("exit {exit}"), ""));
        let output = corral.run(&file);
        assert_eq!(code(&output), exit, "{}", text(&output.stderr));
        assert!(summary(&output).contains(&format!(": exit {exit} in ")), "{}", summary(&output));
    }
    assert_eq!(corral.run_dirs().len(), 3);
    assert_cleaned_up(&corral);
}

#[test]
fn a_job_killed_by_sigterm_exits_143() {
    let sandbox = Sandbox::new();
    let corral = CorralRun::new();
    let file = corral.job_file("term", &boxed(&sandbox, "term", "kill -TERM $$; sleep 5", ""));
    let output = corral.run(&file);
    assert_eq!(code(&output), 143);
    assert!(summary(&output).contains(": killed by SIGTERM in "), "{}", summary(&output));
    assert_cleaned_up(&corral);
}

#[test]
fn sigterm_and_sigint_to_corral_run_reach_the_job() {
    let sandbox = Sandbox::new();
    let corral = CorralRun::new();
    for (signal, expected, word) in
        [(Signal::SIGTERM, 143, "SIGTERM"), (Signal::SIGINT, 130, "SIGINT")]
    {
        let file = corral.job_file("fwd", &boxed(&sandbox, "fwd", "echo ready; exec sleep 30", ""));
        let mut child =
            corral.command(&file).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let _out = read_until(&mut child, "ready");
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let output = child.wait_with_output().unwrap();
        assert_eq!(code(&output), expected, "{}", text(&output.stderr));
        assert!(summary(&output).contains(&format!(": killed by {word} in ")));
    }
    assert_cleaned_up(&corral);
}

#[test]
fn an_exclusive_cpu_is_pinned_and_the_job_is_in_its_cgroups() {
    let sandbox = Sandbox::new();
    let corral = CorralRun::new();
    let file = corral.job_file(
        "pinned",
        &boxed(
            &sandbox,
            "pinned",
            "grep -E '^(Cpus|Mems)_allowed_list' /proc/self/status; cat /proc/self/cgroup",
            "resources: {cpus: 1, numa: single-node, memory: {hard: 32Mi}}\n",
        ),
    );
    let output = corral.run(&file);
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
            .trim()
            .to_owned()
    };
    let cpus = field("Cpus_allowed_list:");
    assert!(cpus.parse::<u32>().is_ok(), "one CPU, got {cpus:?}");
    assert_eq!(field("Mems_allowed_list:"), "0");
    // The CPU corral said it placed the job on.
    let stderr = text(&output.stderr);
    assert!(stderr.contains(&format!(" on cpus {cpus} (mems 0) ")), "{stderr}");

    // The run's directory is `runs/<run>/<placed-at>`.
    let run_dir = &corral.run_dirs()[0];
    let run = run_dir.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
    let leaf = format!("/{}/{run}", corral.parent);
    for controller in ["cpuset", "cpu", "memory", "pids"] {
        let line = cgroup_line(&stdout, controller);
        assert!(line.ends_with(&leaf), "{line}");
    }
    assert!(stdout.lines().any(|l| l == format!("0::{leaf}")), "{stdout}");
    assert_cleaned_up(&corral);
}

#[test]
fn a_memory_hog_is_oom_killed_and_reported_as_such() {
    let corral = CorralRun::new();
    // The hog is the job's own process: awk doubling a string, on the host's
    // tree (no rootfs), 32Mi allowed.
    let file = corral.job_file(
        "hog",
        "name: hog\ncommand: [awk, 'BEGIN { s = \"x\"; for (i = 0; i < 27; i++) s = s s; print length(s) }']\nresources: {memory: {hard: 32Mi}}\noom: {action: fail}\n",
    );
    let output = corral.run(&file);
    assert_eq!(code(&output), 137, "{}", text(&output.stderr));
    let line = summary(&output);
    assert!(line.contains(": OOM-killed (killed by the kernel OOM killer) in "), "{line}");
    assert!(!line.contains("SIGKILL"), "{line}");
    assert!(!line.ends_with(" 0 OOM events"), "{line}");
    assert!(line.contains("peak memory 32 MiB"), "{line}");
    assert_cleaned_up(&corral);
}

#[test]
fn grow_raises_the_limit_until_the_job_fits_and_kills_it_at_the_ceiling() {
    let corral = CorralRun::new();
    let doubling = |times: u32| {
        format!("[awk, 'BEGIN {{ s = \"x\"; for (i = 0; i < {times}; i++) s = s s; print length(s) }}']")
    };
    // ~100Mi needed, 64Mi given, 160Mi allowed in 48Mi steps: one step.
    let file = corral.job_file(
        "grows",
        &format!(
            "name: grows\ncommand: {}\nresources: {{memory: {{hard: 64Mi}}}}\noom: {{action: grow, grow_to: 160Mi, grow_step: 48Mi}}\n",
            doubling(26)
        ),
    );
    let output = corral.run(&file);
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "67108864\n");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("out of memory at 64 MiB; limit raised to 112 MiB"), "{stderr}");
    assert!(summary(&output).ends_with(", 1 OOM event"), "{stderr}");

    // ~200Mi needed, at most 96Mi allowed: grown once, then killed whole.
    let file = corral.job_file(
        "ceiling",
        &format!(
            "name: ceiling\ncommand: {}\nresources: {{memory: {{hard: 64Mi}}}}\noom: {{action: grow, grow_to: 96Mi, grow_step: 32Mi}}\n",
            doubling(27)
        ),
    );
    let output = corral.run(&file);
    assert_eq!(code(&output), 137, "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("limit raised to 96 MiB"), "{stderr}");
    assert!(stderr.contains("out of memory at 96 MiB, with no room to grow; killing it"));
    assert!(
        summary(&output)
            .contains("OOM-killed (stopped at its memory limit of 96 MiB, then killed as a whole)"),
        "{stderr}"
    );
    assert_cleaned_up(&corral);
}

#[test]
fn requeue_is_fatal_in_a_foreground_run() {
    let corral = CorralRun::new();
    let file = corral.job_file(
        "requeue",
        "name: requeue\ncommand: [awk, 'BEGIN { s = \"x\"; for (i = 0; i < 27; i++) s = s s }']\nresources: {memory: {hard: 32Mi}}\noom: {action: requeue, requeue_factor: 2}\n",
    );
    let output = corral.run(&file);
    assert_eq!(code(&output), 137, "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    // Paused at the limit (the host can), then stopped whole: no retry.
    assert!(stderr.contains("`oom: requeue` is not applied by a foreground run"), "{stderr}");
    assert!(summary(&output).contains("OOM-killed (stopped at its memory limit of 32 MiB"));
    assert_eq!(corral.run_dirs().len(), 1);
    assert_cleaned_up(&corral);
}

#[test]
fn a_fork_bomb_is_contained_and_its_cgroup_removed() {
    let sandbox = Sandbox::new();
    let corral = CorralRun::new();
    let file = corral.job_file(
        "bomb",
        &boxed(
            &sandbox,
            "bomb",
            // The shell forks its `sleep` before the bomb fills the cgroup,
            // and the bomb goes off in a subshell: a shell that cannot fork
            // exits, and the one that reports must not need to.
            "sleep 2 & s=$!; (bomb() { bomb | bomb & }; bomb); wait $s; echo survived; exit 0",
            "timeout: 30s\nresources: {pids: 64}\n",
        ),
    );
    let child =
        corral.command(&file).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut pids = None;
    wait_until("the job's pids cgroup", secs(20), || {
        pids = corral.job_cgroups().into_iter().find(|d| d.join("pids.max").exists());
        pids.is_some()
    });
    let current_file = pids.unwrap().join("pids.current");
    let current =
        || std::fs::read_to_string(&current_file).ok().map(|n| n.trim().parse::<u32>().unwrap());
    // The cgroup exists before the container is set up, which on a busy
    // machine can outlast any fixed sampling window: sample from when the
    // job runs (more than its init in the cgroup) while the bomb goes off.
    let mut peak = 0;
    wait_until("the job to run", secs(20), || {
        peak = peak.max(current().unwrap_or(0));
        peak > 1
    });
    for _ in 0..50 {
        let Some(now) = current() else { break };
        peak = peak.max(now);
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    assert!(peak > 1 && peak <= 64, "pids.current peaked at {peak}");
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("survived"));
    assert_cleaned_up(&corral);
}

#[test]
fn the_container_sees_only_its_own_processes_hostname_and_loopback() {
    let sandbox = Sandbox::new();
    let corral = CorralRun::new();
    let file = corral.job_file(
        "iso",
        &boxed(&sandbox, "iso", "ps -o pid | wc -l; hostname; ls /sys/class/net", ""),
    );
    let output = corral.run(&file);
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    // Header, init, the shell, ps (and wc): nothing of the host's.
    let rows: u32 = lines[0].trim().parse().unwrap();
    assert!(rows <= 5, "{stdout}");
    assert_eq!(lines[1], "iso", "the job name by default");
    assert_eq!(&lines[2..], ["lo"], "{stdout}");
    assert_cleaned_up(&corral);
}

#[test]
fn the_exit_status_is_recorded_when_corral_run_is_sigkilled() {
    let sandbox = Sandbox::new();
    let corral = CorralRun::new();
    let gate = sandbox.tmp.path().join("gate");
    std::fs::create_dir(&gate).unwrap();
    let file = corral.job_file(
        "orphan",
        &boxed(
            &sandbox,
            "orphan",
            "echo waiting; while [ ! -e /gate/open ]; do sleep 0.01; done; echo done; exit 7",
            &format!("  mounts: [{{source: {}, target: /gate}}]\n", gate.display()),
        ),
    );
    let mut child =
        corral.command(&file).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let _out = read_until(&mut child, "waiting");
    let run_dir = corral.run_dirs().pop().unwrap();
    let ShimState::Running { shim, .. } = probe(&run_dir).unwrap() else { panic!("not running") };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // corral run is gone; the run goes on, supervised by its shim.
    assert!(shim.is_alive(Path::new("/proc")));
    std::fs::write(gate.join("open"), "").unwrap();
    let status = wait_for_status(&run_dir).unwrap();
    assert_eq!(status.exit, JobExit::Exited { code: 7 });
    assert_eq!(std::fs::read_to_string(run_dir.join("stdout.log")).unwrap(), "waiting\ndone\n");
    // Nobody collected the cgroups: the CorralRun guard removes them.
}

#[test]
fn every_example_job_succeeds() {
    let corral = CorralRun::new();
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("jobs");
    let run = |name: &str| {
        let output = corral.run(&examples.join(format!("{name}.yaml")));
        (code(&output), output)
    };
    // shared-weighted fails on purpose when its marker in the host's /tmp
    // is missing, and succeeds when restarted; cleanup-hourly removes the
    // marker. Run in that order so both paths are taken.
    let (c, output) = run("cleanup-hourly");
    assert_eq!(c, 0, "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "cleaned\n");
    let (c, output) = run("shared-weighted");
    assert_eq!(c, 0, "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains(": exit 3 in ") && stderr.contains("restart 1 of 2 in 2s"), "{stderr}");
    let (c, _) = run("cleanup-hourly");
    assert_eq!(c, 0);

    // The others can run side by side.
    let others = std::thread::scope(|scope| {
        let handles: Vec<_> = [
            "background-preemptible",
            "hello-batch",
            "memory-grow",
            "pinned-compute",
            "report-cron",
            "heartbeat",
        ]
        .into_iter()
        .map(|name| (name, scope.spawn(move || run(name))))
        .collect();
        handles.into_iter().map(|(name, h)| (name, h.join().unwrap())).collect::<Vec<_>>()
    });
    for (name, (c, output)) in &others {
        assert_eq!(*c, 0, "{name}: {}", text(&output.stderr));
    }
    let out = |name: &str| text(&others.iter().find(|(n, _)| *n == name).unwrap().1 .1.stdout);
    let hello = out("hello-batch");
    // No `user`: a uid of its own from the dynamic_users range, with no
    // account name; corral run takes it from the top of the range.
    let uid: u32 = hello
        .strip_prefix("hello from hello-batch as ")
        .and_then(|rest| rest.lines().next())
        .and_then(|uid| uid.parse().ok())
        .unwrap_or_else(|| panic!("{hello}"));
    assert!((61184..=65519).contains(&uid), "{hello}");
    assert!(hello.contains("\npid in its own namespace: 2\n"), "{hello}");
    assert!(hello.ends_with("1000\n"), "{hello}");
    assert_eq!(out("memory-grow"), "67108864\n");
    assert_eq!(out("pinned-compute"), "counted to 3000000\n");
    assert_eq!(out("background-preemptible").lines().count(), 10);
    assert!(out("heartbeat").starts_with("firing none (not started by a schedule), started "));
    assert_cleaned_up(&corral);
}

#[test]
fn an_invalid_job_file_exits_2_with_every_problem() {
    let corral = CorralRun::new();
    let file = corral.job_file("bad", "name: Bad\ncommand: []\nresources: {cpus: 0}\n");
    let output = corral.run(&file);
    assert_eq!(code(&output), 2);
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().filter(|l| l.contains("bad.yaml:")).count(), 3, "{stderr}");
    assert!(stderr.contains("3 problems"), "{stderr}");
    assert!(corral.run_dirs().is_empty());
}

#[test]
fn a_file_with_several_jobs_needs_a_name() {
    let corral = CorralRun::new();
    let file = corral.job_file(
        "two",
        "name: one\ncommand: [/bin/true]\n---\nname: two\ncommand: [/bin/sh, -c, 'exit 5']\n",
    );
    let output = corral.run(&file);
    assert_eq!(code(&output), 2);
    assert!(text(&output.stderr).contains("several jobs (one, two); pick one with --name"));
    let output = corral.command(&file).args(["--name", "two", "--quiet"]).output().unwrap();
    assert_eq!(code(&output), 5);
    assert_eq!(text(&output.stderr), "", "--quiet prints nothing of corral's own");
    let output = corral.command(&file).args(["--name", "three"]).output().unwrap();
    assert_eq!(code(&output), 2);
    assert_cleaned_up(&corral);
}

#[test]
fn a_missing_command_is_127_and_leaves_no_cgroup() {
    let sandbox = Sandbox::new();
    let corral = CorralRun::new();
    let file = corral.job_file(
        "nocmd",
        &format!(
            "name: nocmd\nuser: app\ncommand: [nosuchcommand]\nisolation: {{rootfs: {}}}\n",
            sandbox.rootfs.display()
        ),
    );
    let output = corral.run(&file);
    assert_eq!(code(&output), 127);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("command \"nosuchcommand\" not found in rootfs"), "{stderr}");
    assert_eq!(stderr.matches("not found").count(), 1, "said once: {stderr}");
    assert_cleaned_up(&corral);
}

#[test]
fn root_jobs_need_the_agent_s_permission() {
    let sandbox = Sandbox::new();
    let corral = CorralRun::new();
    let file = corral.job_file(
        "rooted",
        &boxed(&sandbox, "rooted", "id -u", "").replace("user: app", "user: root"),
    );
    let output = corral.run(&file);
    assert_eq!(code(&output), 2);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:2:7: user: it would run as root", file.display())),
        "{stderr}"
    );
    assert!(stderr.contains("allow_root_jobs is false"), "{stderr}");
    assert!(corral.run_dirs().is_empty(), "nothing made for a refused job");

    let config = corral.job_file("agent", "allow_root_jobs: true\n");
    let output = corral.command(&file).arg("--config").arg(&config).output().unwrap();
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "0\n");
    assert_cleaned_up(&corral);
}

/// The gid of `name` in the host's group database.
fn host_gid(name: &str) -> u32 {
    let groups = std::fs::read_to_string("/etc/group").unwrap();
    groups
        .lines()
        .find_map(|l| {
            let fields: Vec<&str> = l.split(':').collect();
            (fields[0] == name).then(|| fields[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no group {name} on this host"))
}

#[test]
fn privileged_groups_need_the_agent_s_permission() {
    let corral = CorralRun::new();
    let shadow = host_gid("shadow");
    // On the host's filesystem, as the default user, where `shadow` would
    // read /etc/shadow.
    let host_job = |name: &str, group: &str| {
        corral.job_file(name, &format!("name: {name}\ncommand: [id, -G]\ngroup: {group}\n"))
    };
    let by_name = host_job("byname", "shadow");
    let gid0 = host_job("gidzero", "'0'");
    for (file, group) in [(&by_name, "shadow"), (&gid0, "0")] {
        let output = corral.run(file);
        assert_eq!(code(&output), 2, "{}", text(&output.stderr));
        let stderr = text(&output.stderr);
        let said = format!("{}:3:8: group: group {group:?} is privileged", file.display());
        assert!(stderr.contains(&said), "{stderr}");
    }
    // A number is only known to be `shadow` once resolved: the shim refuses it.
    let by_number = host_job("bynumber", &format!("'{shadow}'"));
    let output = corral.run(&by_number);
    assert_eq!(code(&output), 125, "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("gid {shadow}, which is the privileged group \"shadow\"")),
        "{stderr}"
    );
    assert!(corral.run_dirs().len() <= 1, "at most the refused run's directory");

    let config = corral.job_file("agent", "allow_root_jobs: true\n");
    for (file, gid) in [(&by_name, shadow), (&gid0, 0), (&by_number, shadow)] {
        let output = corral.command(file).arg("--config").arg(&config).output().unwrap();
        assert_eq!(code(&output), 0, "{}", text(&output.stderr));
        // That one group and no other: supplementary groups are cleared, so
        // none of root's (or the user's) can come along.
        assert_eq!(text(&output.stdout), format!("{gid}\n"));
    }
    assert_cleaned_up(&corral);
}

#[test]
fn a_job_past_its_timeout_is_stopped() {
    let sandbox = Sandbox::new();
    let corral = CorralRun::new();
    // Ignores SIGTERM, so the grace period ends with everything killed.
    let file = corral.job_file(
        "slow",
        &boxed(&sandbox, "slow", "trap '' TERM; sleep 30", "timeout: 500ms\nstop_grace: 500ms\n"),
    );
    let output = corral.run(&file);
    assert_eq!(code(&output), 137, "{}", text(&output.stderr));
    assert!(summary(&output).contains(": timed out after 500ms, then killed by SIGKILL in "));
    assert_cleaned_up(&corral);
}

#[test]
fn a_failed_run_is_restarted_as_its_policy_says() {
    let sandbox = Sandbox::new();
    let corral = CorralRun::new();
    let marks = sandbox.tmp.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    std::os::unix::fs::chown(&marks, Some(common::JOB_UID), Some(common::JOB_GID)).unwrap();
    let file = corral.job_file(
        "flaky",
        &boxed(
            &sandbox,
            "flaky",
            "test -e /marks/two && exit 0; test -e /marks/one && touch /marks/two; touch /marks/one; exit 9",
            &format!(
                "  mounts: [{{source: {}, target: /marks, readonly: false}}]\nrestart: {{on: failure, attempts: 3, backoff: 50ms..1s}}\n",
                marks.display()
            ),
        ),
    );
    let output = corral.run(&file);
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("restart 1 of 3 in 50ms") && stderr.contains("restart 2 of 3 in 100ms"),
        "{stderr}"
    );
    assert_eq!(corral.run_dirs().len(), 3);
    assert_cleaned_up(&corral);
}

#[test]
fn the_timeout_signal_and_the_stop_signal_reach_a_foreground_job() {
    let sandbox = Sandbox::new();
    let corral = CorralRun::new();
    // `wait` returns on a trapped signal, so the traps run at once; the
    // INT trap ends the job, which SIGTERM (untrapped) would have killed.
    let script = "trap 'echo checkpoint' USR1; trap 'echo interrupted; exit 3' INT; \
                  echo ready; sleep 60 & while :; do wait; done";
    let file = corral.job_file(
        "ckpt",
        &boxed(
            &sandbox,
            "ckpt",
            script,
            "timeout: 2s\ntimeout_signal: {signal: USR1, before: 1s}\nstop_signal: SIGINT\n",
        ),
    );
    let output = corral.run(&file);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(stdout, "ready\ncheckpoint\ninterrupted\n", "{stderr}");
    assert_eq!(code(&output), 3, "{stderr}");
    assert!(stderr.contains(": SIGUSR1 sent, 1s ahead of its timeout"), "{stderr}");
    assert!(stderr.contains(": timed out after 2s; SIGINT, then everything is killed"), "{stderr}");
    assert_cleaned_up(&corral);
}
