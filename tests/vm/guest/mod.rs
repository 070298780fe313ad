//! The guest side: the suite runner (`vm_guest guest`), one process per test
//! (`vm_guest guest-test NAME`) so a panic or a hang ends only that test,
//! and the tests themselves.

mod agent;
mod cgroups;
mod contain;
mod iodev;
mod numa;
mod oom;
mod reaction;
mod run;
mod service;
mod util;
pub mod workload;

use std::io::{Read, Seek, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::vm::protocol::PREFIX;
use crate::vm::topology::{self, GuestTopology};

/// Which boots a test runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The first topology only: the test does not depend on the machine's shape.
    Once,
    /// Every topology.
    EveryTopology,
}

/// What a guest test gets.
pub struct Context {
    pub topology: GuestTopology,
}

pub struct GuestTest {
    pub name: &'static str,
    pub scope: Scope,
    pub run: fn(&Context),
}

/// Every guest test, in the order they run. The first two look at the tree
/// as the kernel booted it, before anything else creates cgroups.
pub const TESTS: &[GuestTest] = &[
    GuestTest {
        name: "doctor_reports_pure_v2",
        scope: Scope::Once,
        run: cgroups::doctor_reports_pure_v2,
    },
    GuestTest {
        name: "manager_enables_controllers_down_to_the_parent",
        scope: Scope::Once,
        run: cgroups::manager_enables_controllers_down_to_the_parent,
    },
    GuestTest {
        name: "freeze_and_thaw_confirmed_by_cgroup_events",
        scope: Scope::Once,
        run: cgroups::freeze_and_thaw_confirmed_by_cgroup_events,
    },
    GuestTest {
        name: "kill_takes_a_forking_job_down",
        scope: Scope::Once,
        run: cgroups::kill_takes_a_forking_job_down,
    },
    GuestTest {
        name: "oom_kill_reported_through_memory_events",
        scope: Scope::Once,
        run: cgroups::oom_kill_reported_through_memory_events,
    },
    GuestTest {
        name: "memory_high_then_freeze_grow_thaw_lets_the_job_finish",
        scope: Scope::Once,
        run: cgroups::memory_high_then_freeze_grow_thaw_lets_the_job_finish,
    },
    GuestTest {
        name: "psi_trigger_fires_while_memory_high_throttles",
        scope: Scope::Once,
        run: cgroups::psi_trigger_fires_while_memory_high_throttles,
    },
    GuestTest {
        name: "topology_is_seen_as_booted",
        scope: Scope::EveryTopology,
        run: numa::topology_is_seen_as_booted,
    },
    GuestTest {
        name: "single_node_jobs_get_a_node_each_with_their_memory_there",
        scope: Scope::EveryTopology,
        run: numa::single_node_jobs_get_a_node_each_with_their_memory_there,
    },
    GuestTest {
        name: "too_big_for_a_node_single_node_refused_prefer_spans_nearest",
        scope: Scope::EveryTopology,
        run: numa::too_big_for_a_node_single_node_refused_prefer_spans_nearest,
    },
    GuestTest {
        name: "corral_run_reports_an_oom_kill",
        scope: Scope::Once,
        run: run::corral_run_reports_an_oom_kill,
    },
    GuestTest {
        name: "corral_run_grows_a_killed_job_and_raises_memory_high",
        scope: Scope::Once,
        run: run::corral_run_grows_a_killed_job_and_raises_memory_high,
    },
    GuestTest {
        name: "corral_run_places_a_single_node_job_with_its_memory_there",
        scope: Scope::EveryTopology,
        run: run::corral_run_places_a_single_node_job_with_its_memory_there,
    },
    GuestTest {
        name: "corral_run_refuses_too_big_single_node_and_spreads_prefer_to_nearest",
        scope: Scope::EveryTopology,
        run: run::corral_run_refuses_too_big_single_node_and_spreads_prefer_to_nearest,
    },
    GuestTest {
        name: "agent_preempts_by_freezing_and_resumes_afterwards",
        scope: Scope::Once,
        run: agent::agent_preempts_by_freezing_and_resumes_afterwards,
    },
    GuestTest {
        name: "agent_killed_with_sigkill_leaves_jobs_running_for_the_next_agent",
        scope: Scope::Once,
        run: agent::agent_killed_with_sigkill_leaves_jobs_running_for_the_next_agent,
    },
    GuestTest {
        name: "agent_in_a_delegated_cgroup_keeps_to_it_and_adopts_after_kill9",
        scope: Scope::Once,
        run: service::agent_in_a_delegated_cgroup_keeps_to_it_and_adopts_after_kill9,
    },
    GuestTest {
        name: "devices_are_an_allow_list_enforced_by_a_device_program",
        scope: Scope::Once,
        run: iodev::devices_are_an_allow_list_enforced_by_a_device_program,
    },
    GuestTest {
        name: "io_max_holds_a_direct_writer_near_its_limit",
        scope: Scope::Once,
        run: iodev::io_max_holds_a_direct_writer_near_its_limit,
    },
    GuestTest {
        name: "agent_oom_grow_freezes_a_slow_allocator_and_grows_it_in_place",
        scope: Scope::Once,
        run: oom::agent_oom_grow_freezes_a_slow_allocator_and_grows_it_in_place,
    },
    GuestTest {
        name: "agent_oom_requeue_starts_a_bigger_second_attempt",
        scope: Scope::Once,
        run: oom::agent_oom_requeue_starts_a_bigger_second_attempt,
    },
    GuestTest {
        name: "agent_oom_fail_is_killed_at_the_limit",
        scope: Scope::Once,
        run: oom::agent_oom_fail_is_killed_at_the_limit,
    },
    GuestTest {
        name: "agent_oom_burst_is_never_grown_in_place_after_a_kill",
        scope: Scope::Once,
        run: oom::agent_oom_burst_is_never_grown_in_place_after_a_kill,
    },
    GuestTest {
        name: "agent_oom_reaction_is_measured",
        scope: Scope::Once,
        run: reaction::agent_oom_reaction_is_measured,
    },
    GuestTest {
        name: "huge_page_limits_land_in_the_v2_cgroup_or_the_run_is_refused",
        scope: Scope::Once,
        run: contain::huge_page_limits_land_in_the_v2_cgroup_or_the_run_is_refused,
    },
    GuestTest {
        name: "a_root_job_without_rootfs_sees_masked_and_readonly_kernel_files",
        scope: Scope::Once,
        run: contain::a_root_job_without_rootfs_sees_masked_and_readonly_kernel_files,
    },
];

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{PREFIX}{line}");
    let _ = out.flush();
}

fn uptime() -> String {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

struct SuiteArgs {
    topology: GuestTopology,
    timeout: Duration,
    tests: Vec<String>,
}

fn parse_suite_args(args: &[String]) -> Result<SuiteArgs, String> {
    let mut topology = None;
    let mut timeout = Duration::from_secs(120);
    let mut tests = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--topology" => {
                let name = it.next().ok_or("--topology needs a name")?;
                topology = Some(topology::by_name(name).ok_or(format!("unknown topology {name}"))?);
            }
            "--timeout" => {
                let secs =
                    it.next().and_then(|s| s.parse().ok()).ok_or("--timeout needs seconds")?;
                timeout = Duration::from_secs(secs);
            }
            name => tests.push(name.to_owned()),
        }
    }
    Ok(SuiteArgs { topology: topology.ok_or("--topology missing")?, timeout, tests })
}

/// `vm_guest guest --topology NAME --timeout SECS TEST...`: runs each test
/// in its own process and reports on stdout (the result port).
pub fn suite_main(args: &[String]) -> ExitCode {
    say(&format!("up {}", uptime()));
    let args = match parse_suite_args(args) {
        Ok(a) => a,
        Err(e) => {
            println!("vm_guest guest: {e}");
            return ExitCode::FAILURE;
        }
    };
    let exe = std::env::current_exe().expect("own path");
    for name in &args.tests {
        say(&format!("begin {name}"));
        let start = Instant::now();
        let passed = run_one(&exe, name, &args);
        let millis = start.elapsed().as_millis();
        reset_cgroups();
        say(&format!("{} {name} {millis}", if passed { "pass" } else { "fail" }));
    }
    say("done");
    ExitCode::SUCCESS
}

/// Runs one test process with its output in a file, killing its process
/// group at the timeout; prints the output; true if it passed.
fn run_one(exe: &Path, name: &str, args: &SuiteArgs) -> bool {
    let mut log = tempfile::tempfile().expect("temporary file in /tmp");
    let child = Command::new(exe)
        .args(["guest-test", name, "--topology", args.topology.name])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup"))
        .stderr(log.try_clone().expect("dup"))
        .env("RUST_BACKTRACE", "0")
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            println!("cannot start the test: {e}");
            return false;
        }
    };
    let deadline = Instant::now() + args.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                break None;
            }
        }
    };
    let mut output = String::new();
    let _ = log.rewind();
    let _ = log.read_to_string(&mut output);
    print!("{output}");
    if !output.is_empty() && !output.ends_with('\n') {
        println!();
    }
    match status {
        Some(s) if s.success() => true,
        Some(s) => {
            println!("[test process ended with {s}]");
            false
        }
        None => {
            println!("[test killed after {:?}]", args.timeout);
            false
        }
    }
}

/// Thaws, kills and removes every cgroup a test left behind, with plain
/// file operations, so one broken test cannot take the following ones down
/// with it (a parent left frozen would stop every later job).
fn reset_cgroups() {
    fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(entry.path());
                collect(&entry.path(), out);
            }
        }
    }
    let mut dirs = Vec::new();
    collect(Path::new("/sys/fs/cgroup"), &mut dirs);
    for dir in &dirs {
        let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    }
    // Children before parents; a cgroup empties shortly after cgroup.kill.
    for dir in dirs.iter().rev() {
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Err(e) = std::fs::remove_dir(dir) {
            if Instant::now() > deadline {
                println!("[cannot remove {} after the test: {e}]", dir.display());
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// `vm_guest guest-test NAME --topology T`: one test; panics fail it.
pub fn test_main(args: &[String]) -> ExitCode {
    let (Some(name), Some("--topology"), Some(topo)) =
        (args.first(), args.get(1).map(String::as_str), args.get(2))
    else {
        eprintln!("usage: vm_guest guest-test NAME --topology TOPOLOGY");
        return ExitCode::FAILURE;
    };
    let Some(test) = TESTS.iter().find(|t| t.name == name) else {
        eprintln!("no guest test {name}");
        return ExitCode::FAILURE;
    };
    let Some(topology) = topology::by_name(topo) else {
        eprintln!("no topology {topo}");
        return ExitCode::FAILURE;
    };
    (test.run)(&Context { topology });
    ExitCode::SUCCESS
}
