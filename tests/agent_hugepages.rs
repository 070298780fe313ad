//! `resources.hugepages` through a real agent on this hybrid host, where
//! the kernel binds the hugetlb controller to the v2 tree: the limit lands
//! in the run's v2 cgroup, and a size the host has no pages of refuses the
//! run with the reason, in `corral show` and the log; a size the
//! architecture does not have is an error in the file.

mod agent_harness;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use agent_harness::{job, secs, TestAgent};

const POOLS: &str = "/sys/kernel/mm/hugepages";

fn pool_file(kib: u64, file: &str) -> PathBuf {
    Path::new(POOLS).join(format!("hugepages-{kib}kB")).join(file)
}

fn read_count(path: &Path) -> u64 {
    fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

/// Lets the kernel take up to `pages` 2 MiB pages from free memory on
/// demand (nothing is reserved up front) for as long as it lives, if the
/// pool has none; puts the old setting back on drop. The tests of this
/// binary that need pages hold it one at a time, so one's drop cannot take
/// the pages from under another's launch.
struct Overcommit {
    file: PathBuf,
    before: Option<u64>,
    _one_at_a_time: MutexGuard<'static, ()>,
}

static POOL: Mutex<()> = Mutex::new(());

impl Overcommit {
    fn two_mib(pages: u64) -> Overcommit {
        let one_at_a_time = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let file = pool_file(2048, "nr_overcommit_hugepages");
        let before = read_count(&file);
        if read_count(&pool_file(2048, "nr_hugepages")) > 0 || before > 0 {
            return Overcommit { file, before: None, _one_at_a_time: one_at_a_time };
        }
        fs::write(&file, pages.to_string()).unwrap();
        Overcommit { file, before: Some(before), _one_at_a_time: one_at_a_time }
    }
}

impl Drop for Overcommit {
    fn drop(&mut self) {
        if let Some(before) = self.before {
            let _ = fs::write(&self.file, before.to_string());
        }
    }
}

/// Whether a `hugetlb.<size>.max` holds the kernel's "no limit": `max`
/// as written, or, never written, the largest count of whole pages.
fn unlimited(value: String) -> bool {
    let value = value.trim();
    value == "max" || value.parse::<u64>().is_ok_and(|n| n > 1 << 60)
}

fn started() -> TestAgent {
    let mut agent = TestAgent::new("allow_root_jobs: false\n");
    agent.start();
    let socket = agent.state.join("corral.sock");
    agent.wait_for("the control socket", secs(20), || socket.exists());
    agent
}

fn show(agent: &TestAgent, run: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["show", run, "--config"])
        .arg(&agent.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_huge_page_limit_lands_in_the_runs_v2_cgroup_on_this_hybrid_host() {
    assert!(
        fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
            .unwrap()
            .contains("hugetlb"),
        "this test is about hugetlb bound to the v2 tree of a hybrid host"
    );
    let _pages = Overcommit::two_mib(4);
    let agent = started();
    agent.write_job(
        "huge.yaml",
        &job("huge", "sleep 60", "resources:\n  hugepages: [{size: 2Mi, limit: 4Mi}]\n"),
    );
    agent.wait_phase("huge-1", "running", secs(30));
    let dir = agent.cgroup("unified", "huge-1");
    assert_eq!(fs::read_to_string(dir.join("hugetlb.2MB.max")).unwrap().trim(), "4194304");
    // Only the size asked for is limited: the other keeps the kernel's
    // "no limit", which it prints as `max` or (rounded down to whole pages)
    // as the largest count it has.
    let other = fs::read_to_string(dir.join("hugetlb.1GB.max")).unwrap();
    assert!(unlimited(other.clone()), "{other}");
    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert!(!procs.trim().is_empty(), "the job is in the v2 cgroup that holds the limit");
}

#[test]
fn a_size_without_pages_on_this_host_is_refused_with_the_reason() {
    let (pages, overcommit) = (
        read_count(&pool_file(1 << 20, "nr_hugepages")),
        read_count(&pool_file(1 << 20, "nr_overcommit_hugepages")),
    );
    assert_eq!(
        (pages, overcommit),
        (0, 0),
        "the test needs a host with no 1 GiB huge pages, as this one is"
    );
    let agent = started();
    agent.write_job(
        "gig.yaml",
        &job("gig", "echo ran", "resources:\n  hugepages: [{size: 1Gi, limit: 1Gi}]\n"),
    );
    agent.wait_phase("gig-1", "failed", secs(30));
    let reason = format!(
        "resources.hugepages: this host has no 1Gi huge pages to give: nr_hugepages and \
         nr_overcommit_hugepages are 0 in {POOLS}/hugepages-1048576kB"
    );
    let shown = show(&agent, "gig-1");
    assert!(shown.contains(&reason), "{shown}");
    assert!(shown.contains("not restarted, it would be refused again"), "{shown}");
    let log = agent.log_text();
    assert!(log.contains("not started") && log.contains(&reason), "{log}");
    // Never started: no cgroup was made for it.
    assert!(!agent.cgroup("unified", "gig-1").exists());
    assert_eq!(agent.exit("gig-1"), (None, None));
}

#[test]
fn corral_validate_names_the_valid_sizes_for_a_size_the_architecture_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("odd.yaml");
    fs::write(
        &file,
        "name: odd\ncommand: [/bin/true]\nresources:\n  hugepages:\n    - {size: 4Mi, limit: 8Mi}\n",
    )
    .unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_corral")).arg("validate").arg(&file).output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_ne!(out.status.code(), Some(0), "{text}");
    let sizes = corral::spec::hugepages::valid_sizes();
    let expected = format!(
        "{}:5:14: resources.hugepages[0].size: invalid huge page size \"4Mi\": this architecture \
         ({}) has huge pages of {sizes}",
        file.display(),
        std::env::consts::ARCH
    );
    assert!(text.contains(&expected), "{text}");
}

#[test]
fn a_changed_job_s_run_under_way_takes_its_new_huge_page_limits() {
    let _pages = Overcommit::two_mib(4);
    let agent = started();
    let file = |hugepages: &str| job("change", "sleep 60", &format!("resources:\n{hugepages}"));
    agent.write_job("change.yaml", &file("  hugepages: [{size: 2Mi, limit: 4Mi}]\n"));
    agent.wait_phase("change-1", "running", secs(30));
    let max = agent.cgroup("unified", "change-1").join("hugetlb.2MB.max");
    assert_eq!(fs::read_to_string(&max).unwrap().trim(), "4194304");

    agent.write_job("change.yaml", &file("  hugepages: [{size: 2Mi, limit: 8Mi}]\n"));
    agent.wait_for("the raised limit", secs(30), || {
        fs::read_to_string(&max).is_ok_and(|v| v.trim() == "8388608")
    });
    // Dropped from the list: no limit any more.
    agent.write_job("change.yaml", &file("  pids: 100\n"));
    agent.wait_for("the limit lifted", secs(30), || fs::read_to_string(&max).is_ok_and(unlimited));
    assert_eq!(agent.phase("change-1").as_deref(), Some("running"));
}
