//! How runs end and who records it: exit codes, signals, reaping, signal
//! forwarding, and a status that survives the death of its launcher.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{launcher, secs, stdout_of, wait_until, CorralRun, Sandbox};
use corral::container::{probe, wait_for_status, ExitSource, JobExit, ShimState};
use nix::sys::signal::Signal;

#[test]
fn exit_codes_come_back() {
    let sandbox = Sandbox::new();
    for code in [0, 3, 42] {
        let cfg = sandbox.config(&format!("exit{code}"), &format!("exit {code}"));
        let status = launcher().launch(&cfg).unwrap().wait().unwrap();
        assert_eq!(status.exit, JobExit::Exited { code });
        assert_eq!(status.exit_source, ExitSource::Init);
        assert_eq!((status.job.as_str(), status.run.as_str()), ("testjob", cfg.run.as_str()));
        assert!(status.finished_at >= status.started_at);
    }
}

#[test]
fn death_by_signal_is_reported_as_such() {
    let sandbox = Sandbox::new();
    for (signal, code) in [("KILL", 137), ("TERM", 143)] {
        let cfg = sandbox.config(&format!("sig{signal}"), &format!("kill -{signal} $$; sleep 5"));
        let status = launcher().launch(&cfg).unwrap().wait().unwrap();
        assert!(
            matches!(status.exit, JobExit::Signaled { signal: s, .. } if 128 + s == code),
            "{signal}: {:?}",
            status.exit
        );
        assert_eq!(status.exit.code(), code);
    }
}

#[test]
fn orphans_are_reaped_by_init() {
    let sandbox = Sandbox::new();
    // The subshell exits at once, orphaning its background sleep to PID 1,
    // which must reap it when it exits; then look for zombies.
    let cfg =
        sandbox.config("zombies", "(sleep 0.1 &); (sleep 0.1 &); sleep 0.6; cat /proc/[0-9]*/stat");
    let status = launcher().launch(&cfg).unwrap().wait().unwrap();
    assert!(status.exit.success());
    let out = stdout_of(&cfg);
    let states: Vec<&str> =
        out.lines().map(|l| l[l.rfind(')').unwrap() + 2..].split(' ').next().unwrap()).collect();
    assert!(!states.is_empty());
    assert!(!states.contains(&"Z"), "zombie in container:\n{out}");
}

#[test]
fn signals_to_init_are_forwarded_to_the_job() {
    let sandbox = Sandbox::new();
    let cfg = sandbox.config(
        "forward",
        "trap 'echo got-term; exit 5' TERM; echo ready; while true; do sleep 0.02; done",
    );
    let launched = launcher().launch(&cfg).unwrap();
    wait_until("the job to be ready", secs(20), || stdout_of(&cfg).contains("ready"));
    launched.signal(Signal::SIGTERM).unwrap();
    let status = launched.wait().unwrap();
    assert_eq!(status.exit, JobExit::Exited { code: 5 });
    assert!(stdout_of(&cfg).contains("got-term"));
}

#[test]
fn sigkill_to_init_ends_the_whole_container() {
    let sandbox = Sandbox::new();
    let cfg = sandbox.config("killinit", "echo ready; sleep 30");
    let launched = launcher().launch(&cfg).unwrap();
    wait_until("the job to be ready", secs(20), || stdout_of(&cfg).contains("ready"));
    launched.signal(Signal::SIGKILL).unwrap();
    let status = launched.wait().unwrap();
    assert_eq!(status.exit, JobExit::Signaled { signal: 9, core_dumped: false });
    assert_eq!(status.exit_source, ExitSource::InitDied);
}

/// A job file for `corral run`, the launcher the tests below kill or read
/// from: the sandbox's busybox rootfs, as the unprivileged `app` user.
fn job_file(
    corral: &CorralRun,
    sandbox: &Sandbox,
    name: &str,
    script: &str,
    extra: &str,
) -> PathBuf {
    corral.job_file(
        name,
        &format!(
            "name: {name}\nuser: app\ncommand: [/bin/sh, -c, {script:?}]\nisolation:\n  rootfs: {}\n{extra}",
            sandbox.rootfs.display()
        ),
    )
}

#[test]
fn status_is_recorded_after_the_launcher_is_sigkilled() {
    let sandbox = Sandbox::new();
    let corral = CorralRun::new();
    let gate = sandbox.tmp.path().join("gate");
    std::fs::create_dir(&gate).unwrap();
    // The job blocks until the test opens the gate, i.e. until after its
    // launcher is dead.
    let file = job_file(
        &corral,
        &sandbox,
        "orphaned",
        "echo waiting; while [ ! -e /gate/open ]; do sleep 0.01; done; echo done; exit 7",
        &format!("  mounts: [{{source: {}, target: /gate}}]\n", gate.display()),
    );
    let mut agent =
        corral.command(&file).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_until("the job to run", secs(20), || {
        corral.run_dirs().pop().is_some_and(|dir| {
            std::fs::read_to_string(dir.join("stdout.log")).is_ok_and(|out| out == "waiting\n")
        })
    });
    let run_dir = corral.run_dirs().pop().unwrap();

    let ShimState::Running { shim, init } = probe(&run_dir).unwrap() else {
        panic!("run should be running")
    };
    // `corral run` started the small shim binary built beside it, not a
    // copy of itself; the container's init is a fork of that shim.
    let shim_exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_corral-shim")).unwrap();
    let exe_of = |pid: i32| std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe_of(shim.pid), shim_exe);
    assert_eq!(exe_of(init.expect("init on record").pid), shim_exe);
    agent.kill().unwrap(); // SIGKILL
    agent.wait().unwrap();

    // The shim was the launcher's child; it is still there, and so is the run.
    assert!(shim.is_alive(Path::new("/proc")));
    assert!(matches!(probe(&run_dir).unwrap(), ShimState::Running { .. }));
    std::fs::write(gate.join("open"), "").unwrap();

    // Not the shim's parent: waits on a pidfd, then reads status.json.
    let status = wait_for_status(&run_dir).unwrap();
    assert_eq!(status.exit, JobExit::Exited { code: 7 });
    assert_eq!(std::fs::read_to_string(run_dir.join("stdout.log")).unwrap(), "waiting\ndone\n");
    assert!(matches!(probe(&run_dir).unwrap(), ShimState::Finished(_)));
}

#[test]
fn shim_is_in_its_own_session() {
    let sandbox = Sandbox::new();
    let cfg = sandbox.config("session", "sleep 30");
    let launched = launcher().launch(&cfg).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", launched.shim().pid)).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    // Fields 5 (pgrp) and 6 (session) equal the shim's pid: it leads both.
    assert_eq!(fields[2], launched.shim().pid.to_string());
    assert_eq!(fields[3], launched.shim().pid.to_string());
    launched.signal(Signal::SIGKILL).unwrap();
    launched.wait().unwrap();
}

#[test]
fn a_lost_run_is_reported_as_lost() {
    let sandbox = Sandbox::new();
    let cfg = sandbox.config("lost", "sleep 30");
    let launched = launcher().launch(&cfg).unwrap();
    // Killing the shim kills init (parent-death signal), leaving no status.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(launched.shim().pid), Signal::SIGKILL)
        .unwrap();
    assert!(launched.wait().is_err());
    assert_eq!(probe(&cfg.run_dir).unwrap(), ShimState::Lost);
    assert!(matches!(
        wait_for_status(&cfg.run_dir),
        Err(corral::container::ContainerError::Lost { .. })
    ));
}

#[test]
fn output_streams_to_the_launcher_when_teeing() {
    let sandbox = Sandbox::new();
    let corral = CorralRun::new();
    let file = job_file(&corral, &sandbox, "tee", "echo to-out; echo to-err >&2", "");
    // corral run launches with tee_output: the job's streams reach its own.
    let output = corral.command(&file).args(["--quiet"]).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "to-out\n");
    assert_eq!(String::from_utf8_lossy(&output.stderr), "to-err\n");
    let run_dir = corral.run_dirs().pop().unwrap();
    assert_eq!(std::fs::read_to_string(run_dir.join("stdout.log")).unwrap(), "to-out\n");
    assert_eq!(std::fs::read_to_string(run_dir.join("stderr.log")).unwrap(), "to-err\n");
}

#[test]
fn a_closed_terminal_does_not_disturb_the_job_or_its_log() {
    let sandbox = Sandbox::new();
    let corral = CorralRun::new();
    let file = job_file(
        &corral,
        &sandbox,
        "epipe",
        "sleep 0.2; i=0; while [ $i -lt 2000 ]; do echo line$i; i=$((i+1)); done",
        "",
    );
    let mut agent =
        corral.command(&file).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    drop(agent.stdout.take()); // the "terminal" goes away before the job prints
    assert!(agent.wait().unwrap().success());
    let run_dir = corral.run_dirs().pop().unwrap();
    let status = wait_for_status(&run_dir).unwrap();
    assert!(status.exit.success());
    let log = std::fs::read_to_string(run_dir.join("stdout.log")).unwrap();
    assert_eq!(log.lines().count(), 2000);
}

#[test]
fn signals_to_the_shim_reach_the_job_too() {
    let sandbox = Sandbox::new();
    let cfg = sandbox.config(
        "shimsig",
        "trap 'echo got-usr1; exit 6' USR1; echo ready; while true; do sleep 0.02; done",
    );
    let launched = launcher().launch(&cfg).unwrap();
    wait_until("the job to be ready", secs(20), || stdout_of(&cfg).contains("ready"));
    corral::container::signal_process(launched.shim(), Signal::SIGUSR1).unwrap();
    let status = launched.wait().unwrap();
    assert_eq!(status.exit, JobExit::Exited { code: 6 });
}

#[test]
fn a_stale_pid_file_is_not_trusted() {
    // A live pid with another start time: what a pid file looks like after
    // its process died and the pid went to someone else (here: this test).
    let me = corral::container::ProcessIdentity::of(Path::new("/proc"), std::process::id() as i32)
        .unwrap();
    let stale = corral::container::ProcessIdentity { start_time: me.start_time - 1, ..me };
    assert!(!stale.is_alive(Path::new("/proc")));
    // Were the guard missing, this would kill the test process.
    assert!(corral::container::signal_process(stale, Signal::SIGKILL).is_err());
}

#[test]
fn runs_without_any_namespace_too() {
    let sandbox = Sandbox::new();
    let mut cfg = sandbox.config("bare", "echo $$; exit 4");
    cfg.namespaces.clear();
    cfg.rootfs = None;
    let status = launcher().launch(&cfg).unwrap().wait().unwrap();
    assert_eq!(status.exit, JobExit::Exited { code: 4 });
    // A host pid: no pid namespace.
    let pid: i32 = stdout_of(&cfg).trim().parse().unwrap();
    assert!(pid > 2, "{pid}");
}

/// A launcher that dies between starting the shim and the shim writing
/// `shim.pid` leaves a run directory with a config and no shim on record. A
/// restarted agent gives it up (and starts the run again elsewhere); the
/// shim, reaching the directory only then, must not start the job as well.
#[test]
fn a_shim_that_reaches_a_given_up_run_directory_does_not_start_the_job() {
    let sandbox = Sandbox::new();
    let cfg = sandbox.config("late", "echo ran");
    let run = corral::container::rundir::RunDir::new(&cfg.run_dir);
    std::fs::create_dir_all(run.root()).unwrap();
    std::fs::write(run.config(), serde_json::to_vec(&cfg).unwrap()).unwrap();
    assert!(!corral::container::abandon(run.root()).unwrap(), "no shim on record");

    // The report pipe of a launcher that is gone.
    let (dead_end, report) = nix::unistd::pipe().unwrap();
    drop(dead_end);
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_corral-shim"))
        .arg(run.root())
        .stdin(Stdio::from(report))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(!run.init_pid().exists(), "no container was started");
    assert!(std::fs::read_to_string(run.stdout_log()).unwrap_or_default().is_empty());
    assert_eq!(probe(run.root()).unwrap(), ShimState::Lost);
    let note = std::fs::read_to_string(run.shim_log()).unwrap();
    assert!(note.contains("was given up by a restarted agent"), "{note}");
}

/// A shim already on record when the directory is given up is reported, and
/// the run it started goes on to record its end.
#[test]
fn giving_up_a_run_directory_whose_shim_is_on_record_leaves_the_run_alone() {
    let sandbox = Sandbox::new();
    let cfg = sandbox.config("early", "sleep 0.3; echo ran");
    let launched = launcher().launch(&cfg).unwrap();
    assert!(corral::container::abandon(&cfg.run_dir).unwrap(), "its shim is on record");
    let status = launched.wait().unwrap();
    assert_eq!(status.exit, JobExit::Exited { code: 0 });
    assert_eq!(stdout_of(&cfg), "ran\n");
}
