//! Device control through the agent on this host (v1 `devices` controller):
//! a job opens only the safe set and the devices its file lists, with the
//! access it lists; a listed path the host lacks refuses the run. The
//! device program the v2 tree uses is loaded and attached for real too, on
//! this host's unified hierarchy, which runs it beside the v1 controller.

mod agent_harness;
mod common;

use std::path::Path;

use agent_harness::{job, secs, TestAgent};

/// A script that records, one line each, whether `path` opens for reading
/// and for writing: `PATH r ok|denied`, `PATH w ok|denied`. Each open runs
/// in a subshell, so a failed redirection ends only that.
fn probe(paths: &[&str], out: &Path) -> String {
    let out = out.display();
    paths
        .iter()
        .map(|p| {
            format!(
                "if ( : < {p} ) 2>/dev/null; then echo \"{p} r ok\"; else echo \"{p} r denied\"; fi >> {out}; \
                 if ( : > {p} ) 2>/dev/null; then echo \"{p} w ok\"; else echo \"{p} w denied\"; fi >> {out}"
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn opens(path: &str, write: bool) -> bool {
    std::fs::OpenOptions::new().read(!write).write(write).open(path).is_ok()
}

#[test]
fn a_root_job_opens_only_the_safe_set_and_what_its_file_lists() {
    // The host itself opens both, so a denial below is the job's cgroup.
    for path in ["/dev/net/tun", "/dev/fuse"] {
        assert!(opens(path, false) && opens(path, true), "{path} must open on the host");
    }
    let mut agent = TestAgent::new("allow_root_jobs: true\n");
    agent.start();
    let devices = ["/dev/null", "/dev/net/tun", "/dev/fuse"];
    for (name, extra) in [
        ("plain", ""),
        ("fuse", "isolation: {devices: [{path: /dev/fuse, access: rw}]}\n"),
        ("readonly", "isolation: {devices: [{path: /dev/fuse, access: r}]}\n"),
    ] {
        let script = probe(&devices, &agent.data_file(name));
        agent.write_job(
            &format!("{name}.yaml"),
            &job(name, &script, &format!("user: root\n{extra}")),
        );
    }
    for name in ["plain", "fuse", "readonly"] {
        agent.wait_phase(&format!("{name}-1"), "succeeded", secs(30));
    }
    assert_eq!(
        agent.read_data("plain"),
        "/dev/null r ok\n/dev/null w ok\n/dev/net/tun r denied\n/dev/net/tun w denied\n\
         /dev/fuse r denied\n/dev/fuse w denied\n"
    );
    assert_eq!(
        agent.read_data("fuse"),
        "/dev/null r ok\n/dev/null w ok\n/dev/net/tun r denied\n/dev/net/tun w denied\n\
         /dev/fuse r ok\n/dev/fuse w ok\n"
    );
    assert_eq!(
        agent.read_data("readonly"),
        "/dev/null r ok\n/dev/null w ok\n/dev/net/tun r denied\n/dev/net/tun w denied\n\
         /dev/fuse r ok\n/dev/fuse w denied\n"
    );
}

#[test]
fn a_device_the_host_lacks_refuses_the_run_with_the_reason() {
    let mut agent = TestAgent::new("");
    agent.start();
    agent.write_job(
        "nodev.yaml",
        &job("nodev", "true", "isolation: {devices: [{path: /dev/corral-no-such-device}]}\n"),
    );
    agent.wait_phase("nodev-1", "failed", secs(30));
    let reasons: Vec<String> = agent.transitions("nodev-1").into_iter().map(|t| t.2).collect();
    let last = reasons.last().unwrap();
    assert!(
        last.contains("device /dev/corral-no-such-device: no such device on this host"),
        "{reasons:?}"
    );
    assert!(agent.job_cgroups().is_empty(), "nothing was created");
}

#[test]
fn a_rootfs_gets_its_listed_devices_made_in_its_dev() {
    let images =
        tempfile::Builder::new().prefix("rootfs-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let rootfs = common::busybox_rootfs(&images.path().join("rootfs"));
    let mut agent = TestAgent::new("allow_root_jobs: true\n");
    agent.start();
    let out = Path::new("/data/nodes");
    let script = format!(
        "for n in /dev/net/tun /dev/fuse /dev/vda; do if test -c $n; then echo \"$n made\"; \
         else echo \"$n absent\"; fi; done > {out}; {}",
        probe(&["/dev/net/tun", "/dev/fuse"], out),
        out = out.display()
    );
    let extra = format!(
        "user: root\nisolation:\n  rootfs: {}\n  mounts: [{{source: {}, target: /data, readonly: false}}]\n  \
         devices: [{{path: /dev/net/tun, access: rw}}, {{path: /dev/fuse, access: r}}]\n",
        rootfs.display(),
        agent.data.display()
    );
    agent.write_job("inroot.yaml", &job("inroot", &script, &extra));
    agent.wait_phase("inroot-1", "succeeded", secs(30));
    assert_eq!(
        agent.read_data("nodes"),
        "/dev/net/tun made\n/dev/fuse made\n/dev/vda absent\n\
         /dev/net/tun r ok\n/dev/net/tun w ok\n/dev/fuse r ok\n/dev/fuse w denied\n"
    );
}
