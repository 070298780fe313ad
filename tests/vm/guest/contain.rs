//! Containment through `corral run` on the pure-v2 guest: huge page limits
//! in the job's v2 cgroup, refused where the kernel has no pages of the
//! size; and what a root job without a rootfs sees of the kernel (masked
//! files, read-only `/proc/sys`, a sysfs of its own network namespace).

use std::path::Path;

use corral::container::masks::MASKED;

use super::Context;

/// Where job files, the configuration and run directories go.
const STATE_DIR: &str = "/run/corral-contain";
const POOLS: &str = "/sys/kernel/mm/hugepages";

/// The output and exit code of `corral run` on a job file with `body`,
/// under a configuration that allows root jobs.
fn corral_run(name: &str, body: &str) -> (String, Option<i32>) {
    let dir = Path::new(STATE_DIR);
    std::fs::create_dir_all(dir.join("jobs")).unwrap();
    let config = dir.join("agent.yaml");
    std::fs::write(&config, "allow_root_jobs: true\n").unwrap();
    let file = dir.join("jobs").join(format!("{name}.yaml"));
    std::fs::write(&file, format!("name: {name}\n{body}")).unwrap();
    super::util::corral_run_file(&file, Some(&config), STATE_DIR)
}

fn shell(script: &str) -> String {
    format!("command: [/bin/sh, -c, '{script}']\n")
}

fn set_overcommit(kib: u64, pages: u64) {
    let file = Path::new(POOLS).join(format!("hugepages-{kib}kB/nr_overcommit_hugepages"));
    std::fs::write(&file, pages.to_string())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
}

pub fn huge_page_limits_land_in_the_v2_cgroup_or_the_run_is_refused(_: &Context) {
    let controllers = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap();
    assert!(controllers.contains("hugetlb"), "the guest kernel has no hugetlb: {controllers}");
    let script = "dir=/sys/fs/cgroup$(sed -n s/^0:://p /proc/self/cgroup); \
                  echo hugetlb $(cat $dir/hugetlb.2MB.max)";
    let body = |size: &str, limit: &str| {
        format!("{}resources:\n  hugepages: [{{size: {size}, limit: {limit}}}]\n", shell(script))
    };

    // No 2 MiB pages to give (the guest boots with none): refused.
    set_overcommit(2048, 0);
    let (output, code) = corral_run("huge-none", &body("2Mi", "4Mi"));
    assert_ne!(code, Some(0), "a run without pages started");
    assert!(!output.contains("hugetlb "), "the job ran");
    assert!(output.contains("this host has no 2Mi huge pages to give"), "no reason given");

    // Pages on demand: the limit is in the run's own v2 cgroup.
    set_overcommit(2048, 4);
    let (output, code) = corral_run("huge-2m", &body("2Mi", "4Mi"));
    set_overcommit(2048, 0);
    assert_eq!(code, Some(0), "corral run failed");
    assert!(output.lines().any(|l| l == "hugetlb 4194304"), "limit not in hugetlb.2MB.max");

    // 1 GiB pages: the guest has none (or no such pool at all).
    let (output, code) = corral_run("huge-1g", &body("1Gi", "1Gi"));
    assert_ne!(code, Some(0), "a run without 1 GiB pages started");
    assert!(output.contains("this host has no 1Gi huge pages"), "no reason given");
}

pub fn a_root_job_without_rootfs_sees_masked_and_readonly_kernel_files(_: &Context) {
    let probes: Vec<String> = MASKED
        .iter()
        .filter(|p| Path::new(p).exists())
        .map(|p| {
            format!(
                "if [ -d {p} ]; then echo masked {p} $(ls -A {p} | wc -l); \
                 else echo masked {p} $(cat {p} | wc -c); fi"
            )
        })
        .collect();
    assert!(!probes.is_empty(), "the guest kernel has none of the masked files");
    let script = format!(
        "{}; (echo box > /proc/sys/kernel/hostname) 2>&1; hostname; \
         echo net $(ls /sys/class/net)",
        probes.join("; ")
    );
    let body = format!("{}user: root\nisolation:\n  hostname: box-1\n", shell(&script));
    let (output, code) = corral_run("masked", &body);
    assert_eq!(code, Some(0), "corral run failed");
    let masked: Vec<&str> = output.lines().filter(|l| l.starts_with("masked ")).collect();
    assert_eq!(masked.len(), probes.len(), "not every probe ran");
    for line in masked {
        assert!(line.ends_with(" 0"), "not masked: {line}");
    }
    assert!(output.contains("Read-only file system"), "/proc/sys was writable");
    assert!(output.lines().any(|l| l == "box-1"), "the hostname changed through /proc/sys");
    assert!(output.lines().any(|l| l == "net lo"), "the job sees more than its own lo");
}
