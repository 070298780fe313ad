//! The container's init joins the given cgroups before the job runs; the
//! shim stays outside them.

mod common;

use common::{cgroup_line, launcher, stdout_of, wait_until, Sandbox, TestCgroups};
use corral::vocab::Namespace;

#[test]
fn job_is_in_the_cgroups_from_its_first_instruction_and_the_shim_is_not() {
    let sandbox = Sandbox::new();
    let cgroups = TestCgroups::create("corral-test-container");
    let mut cfg = sandbox.config("cg", "cat /proc/self/cgroup; echo ready; sleep 30");
    cfg.cgroup_procs = cgroups.procs_files();
    let launched = launcher().launch(&cfg).unwrap();
    wait_until("the job to be ready", || stdout_of(&cfg).contains("ready"));
    let inside = stdout_of(&cfg);
    for controller in common::V1_CONTROLLERS {
        let line = cgroup_line(&inside, controller);
        assert!(line.ends_with(&format!("/{}", cgroups.name)), "{line}");
    }

    let shim_cgroups =
        std::fs::read_to_string(format!("/proc/{}/cgroup", launched.shim().pid)).unwrap();
    assert!(!shim_cgroups.contains(&cgroups.name), "shim joined: {shim_cgroups}");
    let init_cgroups =
        std::fs::read_to_string(format!("/proc/{}/cgroup", launched.init().pid)).unwrap();
    assert!(init_cgroups.contains(&cgroups.name), "init outside: {init_cgroups}");
    // Init and the job (sh, possibly sleep) are all accounted.
    let pids = std::fs::read_to_string(cgroups.dirs[2].join("cgroup.procs")).unwrap();
    assert!(pids.lines().count() >= 2, "{pids}");

    launched.signal(nix::sys::signal::Signal::SIGKILL).unwrap();
    launched.wait().unwrap();
}

#[test]
fn cgroup_namespace_makes_the_job_cgroup_the_root() {
    let sandbox = Sandbox::new();
    let cgroups = TestCgroups::create("corral-test-cgns");
    let mut cfg = sandbox.config("cgns", "cat /proc/self/cgroup");
    cfg.cgroup_procs = cgroups.procs_files();
    cfg.namespaces.insert(Namespace::Cgroup);
    let status = launcher().launch(&cfg).unwrap().wait().unwrap();
    assert!(status.exit.success());
    let inside = stdout_of(&cfg);
    assert!(!inside.contains(&cgroups.name), "{inside}");
    let pids_line = cgroup_line(&inside, "pids");
    assert_eq!(pids_line.rsplit(':').next(), Some("/"));
}
