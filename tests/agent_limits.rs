//! The agent's open file limit: raised for itself at start, given back
//! unchanged to the jobs it runs, and a job's own `rlimits.nofile` kept.

mod agent_harness;

use std::os::unix::process::CommandExt;

use agent_harness::{job, secs, TestAgent};

/// `(soft, hard)` "Max open files" of a process, from `/proc/PID/limits`.
fn nofile_of(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let mut values = line["Max open files".len()..].split_whitespace();
    let mut next = || values.next().unwrap().parse().unwrap();
    (next(), next())
}

/// A job that writes its soft and hard open file limits to `file`.
fn limits_job(agent: &TestAgent, name: &str, file: &str, extra: &str) -> String {
    let out = agent.data_file(file).display().to_string();
    job(name, &format!("ulimit -S -n > {out}; ulimit -H -n >> {out}"), extra)
}

#[test]
fn the_agent_raises_its_open_file_limit_and_its_jobs_get_the_one_it_was_given() {
    let mut agent = TestAgent::new("");
    agent.start_with(|command| {
        let limit = libc::rlimit { rlim_cur: 1024, rlim_max: 4096 };
        let hook = move || {
            // SAFETY: setrlimit is async-signal-safe, as code between fork
            // and exec must be, and reads only the closure's own copy.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        };
        // SAFETY: see the hook.
        unsafe { command.pre_exec(hook) };
    });
    agent.write_job("plain.yaml", &limits_job(&agent, "plain", "plain.nofile", ""));
    agent.write_job(
        "own.yaml",
        &limits_job(&agent, "own", "own.nofile", "rlimits: {nofile: 2048}\n"),
    );
    agent.wait_phase("plain-1", "succeeded", secs(30));
    agent.wait_phase("own-1", "succeeded", secs(30));

    assert_eq!(nofile_of(agent.pid()), (4096, 4096), "the agent's own limit, raised");
    assert_eq!(agent.read_data("plain.nofile"), "1024\n4096\n", "what the agent was given");
    assert_eq!(agent.read_data("own.nofile"), "2048\n2048\n", "the job's own rlimits.nofile");
    let log = agent.log_text();
    // 4096 descriptors hold 195 runs after the 129 the HTTP endpoint may
    // hold at its default of 128 connections: far fewer than the thousand
    // runs an agent is built for, but ample for an empty jobs directory,
    // so nothing is worth a warning.
    assert!(log.contains("inherited_soft=1024 soft=4096 hard=4096 live_runs=195"), "{log}");
    assert!(!log.contains("the hard open file limit holds"), "{log}");
}

#[test]
fn the_agent_warns_when_its_limit_cannot_hold_its_job_files() {
    let mut agent = TestAgent::new("http: {max_connections: 8}\n");
    // Yearly schedules: the files count, though none of their runs starts.
    for n in 0..10 {
        agent.write_job(
            &format!("yearly-{n}.yaml"),
            &format!("name: yearly-{n}\ncommand: [/bin/true]\nschedule: \"0 0 1 1 *\"\n"),
        );
    }
    agent.start_with(|command| {
        // 256 descriptors hold 9 runs beside the agent's own 64 and the 9
        // of an HTTP endpoint of 8 connections: one short of 10 job files.
        let limit = libc::rlimit { rlim_cur: 256, rlim_max: 256 };
        let hook = move || {
            // SAFETY: as in the test above.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        };
        // SAFETY: see the hook.
        unsafe { command.pre_exec(hook) };
    });
    agent.wait_for("the start's warnings", secs(20), || agent.log_text().contains("serving"));
    let log = agent.log_text();
    assert!(
        log.contains(
            "the hard open file limit holds the statistics files of about 9 live runs, \
             1 fewer than the runs taken over and the job files ask for"
        ),
        "{log}"
    );
    assert!(log.contains("job_files=10"), "{log}");
}
