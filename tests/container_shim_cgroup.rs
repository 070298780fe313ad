//! A launcher given a cgroup for its shims (the `shims` cgroup of a
//! delegated tree) starts every shim there, before the shim runs, and never
//! in the launcher's own cgroup; a cgroup it cannot join stops the launch.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{launcher, unique, Sandbox};
use corral::cgroup::{detect, HostPaths};
use corral::container::{ContainerError, JobExit};

/// A cgroup of the v2 tree made for the test, removed on drop.
struct UnifiedCgroup(PathBuf);

impl Drop for UnifiedCgroup {
    fn drop(&mut self) {
        let _ = fs::write(self.0.join("cgroup.kill"), "1");
        for _ in 0..200 {
            if fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

fn unified_cgroup_of(pid: i32) -> String {
    let listing = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    listing.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or_default().to_owned()
}

#[test]
fn shims_start_in_the_cgroup_they_are_given() {
    let layout = detect(&HostPaths::default()).unwrap();
    let mount = layout.unified.expect("a cgroup2 mount (hybrid or v2 host)").mount_point;
    let name = unique("corral-test-shims");
    let cgroup = UnifiedCgroup(mount.join(&name));
    fs::create_dir(&cgroup.0).unwrap();
    let own_before = unified_cgroup_of(std::process::id() as i32);

    let sandbox = Sandbox::new();
    let cfg = sandbox.config("shim-cgroup", "sleep 1; echo ran");
    let launched = launcher().with_shim_cgroup(cgroup.0.join("cgroup.procs")).launch(&cfg).unwrap();
    let shim = launched.shim().pid;
    assert_eq!(unified_cgroup_of(shim), format!("/{name}"), "the shim in the given cgroup");
    assert_eq!(unified_cgroup_of(std::process::id() as i32), own_before, "the launcher stays");
    let status = launched.wait().unwrap();
    assert_eq!(status.exit, JobExit::Exited { code: 0 }, "{status:?}");
    assert_eq!(common::stdout_of(&cfg), "ran\n");
}

#[test]
fn a_shim_cgroup_that_cannot_be_joined_stops_the_launch() {
    let sandbox = Sandbox::new();
    let cfg = sandbox.config("no-shim-cgroup", "echo never");
    let missing = Path::new("/sys/fs/cgroup/unified").join(unique("absent")).join("cgroup.procs");
    let err = launcher().with_shim_cgroup(missing).launch(&cfg).unwrap_err();
    assert!(matches!(err, ContainerError::SpawnShim { .. }), "{err}");
    assert!(!cfg.run_dir.join("stdout.log").exists(), "nothing ran");
}
