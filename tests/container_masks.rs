//! What a root job sees of the host's kernel through /proc and /sys,
//! checked on the real kernel, with the host's tree and with a busybox
//! rootfs: the masked kernel files read as empty, the read-only ones
//! refuse writes, and with a network namespace /sys lists only the job's
//! own interfaces.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use common::{launcher, stderr_of, stdout_of, Sandbox};
use corral::container::masks::{MASKED, READONLY};
use corral::container::{ContainerConfig, JobExit};
use corral::vocab::Namespace;

fn run_ok(cfg: &ContainerConfig) -> String {
    let status = launcher().launch(cfg).expect("launch").wait().expect("status");
    assert_eq!(status.exit, JobExit::Exited { code: 0 }, "stderr: {}", stderr_of(cfg));
    stdout_of(cfg)
}

/// A job on the host's tree (no rootfs) in the sandbox's namespaces:
/// pid, mount, uts, ipc and net; root, as a job of an agent that allows
/// root jobs.
fn host_job(sandbox: &Sandbox, name: &str, script: &str) -> ContainerConfig {
    let mut cfg = sandbox.config(name, script);
    cfg.rootfs = None;
    cfg
}

/// A script printing, for each path, `PATH SIZE`: the bytes a read gives
/// for a file, the entries for a directory, `absent` when missing.
fn probe_script(paths: &[&str]) -> String {
    paths
        .iter()
        .map(|p| {
            format!(
                "if [ -d {p} ]; then echo {p} $(ls -A {p} | wc -l); \
                 elif [ -e {p} ]; then echo {p} $(cat {p} 2>/dev/null | wc -c); \
                 else echo {p} absent; fi"
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn parse_probe(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(p, v)| (p.to_owned(), v.trim().to_owned()))
        .collect()
}

/// Every masked path the host has reads as empty in the job; one the host
/// lacks stays absent. At least one must exist here, or the check proves
/// nothing.
fn assert_masked(cfg: &ContainerConfig) {
    let seen = parse_probe(&run_ok(cfg));
    let mut checked = 0;
    for path in MASKED {
        let in_job = &seen[path];
        if !Path::new(path).exists() {
            assert_eq!(in_job, "absent", "{path}");
            continue;
        }
        assert_eq!(in_job, "0", "{path} is not masked in the job");
        checked += 1;
    }
    let host_has_content =
        ["/proc/timer_list", "/proc/keys", "/sys/firmware"].iter().any(|p| fs::metadata(p).is_ok());
    assert!(checked > 0 && host_has_content, "no masked path exists on this host: {seen:?}");
}

#[test]
fn a_job_without_rootfs_reads_masked_kernel_files_as_empty() {
    let sandbox = Sandbox::new();
    assert_masked(&host_job(&sandbox, "masked-host", &probe_script(&MASKED)));
}

#[test]
fn a_job_with_a_rootfs_reads_masked_kernel_files_as_empty() {
    let sandbox = Sandbox::new();
    assert_masked(&sandbox.config("masked-rootfs", &probe_script(&MASKED)));
}

/// Writes the job's own hostname through /proc/sys (harmless even if it
/// went through: the job has a uts namespace of its own) and lists the
/// read-only mounts; returns the write's error and the mount points.
fn readonly_probe(cfg: &mut ContainerConfig) -> (String, Vec<String>) {
    assert!(cfg.has(Namespace::Uts), "the write must stay in the job's uts namespace");
    let out = run_ok(cfg);
    let (write, mounts) = out.split_once("--\n").expect("marker");
    // mountinfo: field 5 is the mount point, field 6 its per-mount options.
    let readonly = mounts
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .filter(|f| f.len() > 5 && f[5].split(',').any(|o| o == "ro"))
        .map(|f| f[4].to_owned())
        .collect();
    (write.to_owned(), readonly)
}

const WRITE_AND_LIST: &str = "(echo box-9 > /proc/sys/kernel/hostname) 2>&1; hostname; \
     echo --; cat /proc/self/mountinfo";

fn assert_readonly(cfg: &mut ContainerConfig) {
    let (write, readonly) = readonly_probe(cfg);
    assert!(write.contains("Read-only file system"), "{write}");
    assert!(!write.contains("box-9"), "the hostname changed: {write}");
    for path in READONLY {
        if Path::new(path).exists() {
            assert!(readonly.iter().any(|m| m == path), "{path} not read-only: {readonly:?}");
        }
    }
}

#[test]
fn a_job_without_rootfs_cannot_write_proc_sys() {
    let sandbox = Sandbox::new();
    assert_readonly(&mut host_job(&sandbox, "ro-host", WRITE_AND_LIST));
}

#[test]
fn a_job_with_a_rootfs_cannot_write_proc_sys() {
    let sandbox = Sandbox::new();
    assert_readonly(&mut sandbox.config("ro-rootfs", WRITE_AND_LIST));
}

#[test]
fn a_job_without_rootfs_sees_only_its_own_interfaces_and_a_readonly_sys() {
    let sandbox = Sandbox::new();
    let host_interfaces = fs::read_dir("/sys/class/net").unwrap().count();
    assert!(host_interfaces > 1, "the host has only lo: the check would prove nothing");
    let cfg = host_job(
        &sandbox,
        "net-sys",
        "ls /sys/class/net; echo --; \
         f=/sys/kernel/mm/transparent_hugepage/khugepaged/defrag; \
         (echo $(cat $f) > $f) 2>&1; \
         echo --; ls /sys/fs/cgroup | wc -l",
    );
    let out = run_ok(&cfg);
    let parts: Vec<&str> = out.split("--\n").collect();
    assert_eq!(parts[0], "lo\n", "{out}");
    assert!(parts[1].contains("Read-only file system"), "{out}");
    // The host's cgroup tree is carried over into the fresh sysfs.
    let cgroup_entries: usize = parts[2].trim().parse().unwrap();
    assert_eq!(cgroup_entries, fs::read_dir("/sys/fs/cgroup").unwrap().count(), "{out}");
}

#[test]
fn a_job_with_only_a_mount_and_net_namespace_sees_only_lo() {
    let sandbox = Sandbox::new();
    let mut cfg = host_job(&sandbox, "net-only", "ls /sys/class/net");
    cfg.namespaces = [Namespace::Mount, Namespace::Net].into();
    assert_eq!(run_ok(&cfg), "lo\n");
}

#[test]
fn without_a_network_namespace_the_host_sysfs_stays() {
    let sandbox = Sandbox::new();
    let mut cfg = host_job(&sandbox, "host-net", "ls /sys/class/net | wc -l");
    cfg.namespaces = [Namespace::Pid, Namespace::Mount].into();
    let listed: usize = run_ok(&cfg).trim().parse().unwrap();
    assert_eq!(listed, fs::read_dir("/sys/class/net").unwrap().count());
}

#[test]
fn a_user_namespace_job_without_rootfs_gets_the_same_view() {
    let sandbox = Sandbox::new();
    let mut cfg = host_job(
        &sandbox,
        "userns-host",
        &format!("ls /sys/class/net; echo --; {}", probe_script(&MASKED)),
    );
    cfg.namespaces.insert(Namespace::User);
    cfg.user = Some(corral::container::IdSpec::Id(common::JOB_UID));
    let out = run_ok(&cfg);
    let (net, probes) = out.split_once("--\n").expect("marker");
    assert_eq!(net, "lo\n", "{out}");
    let seen = parse_probe(probes);
    for path in MASKED {
        let expected = if Path::new(path).exists() { "0" } else { "absent" };
        assert_eq!(seen[path], expected, "{path} in {out}");
    }
}
