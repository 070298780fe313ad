//! Fake cgroupfs trees for tests: every knob file a kernel would show is
//! pre-created, so writes (which never create files) to anything else fail.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::layout::{detect, HostPaths, Layout};

const V1_FILES: &[(&str, &[(&str, &str)])] = &[
    (
        "cpu",
        &[
            ("cpu.shares", "1024\n"),
            ("cpu.cfs_period_us", "100000\n"),
            ("cpu.cfs_quota_us", "-1\n"),
            ("cpu.stat", "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n"),
        ],
    ),
    ("cpuacct", &[("cpuacct.usage", "0\n"), ("cpuacct.stat", "user 0\nsystem 0\n")]),
    ("cpuset", &[("cpuset.cpus", "\n"), ("cpuset.mems", "\n")]),
    (
        "memory",
        &[
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.soft_limit_in_bytes", "9223372036854771712\n"),
            ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
            ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"),
            ("memory.usage_in_bytes", "0\n"),
            ("memory.max_usage_in_bytes", "0\n"),
            ("memory.failcnt", "0\n"),
            ("memory.memsw.failcnt", "0\n"),
            ("memory.stat", "total_rss 0\ntotal_cache 0\ntotal_inactive_file 0\n"),
            ("cgroup.event_control", ""),
        ],
    ),
    ("pids", &[("pids.max", "max\n"), ("pids.current", "0\n")]),
    ("freezer", &[("freezer.state", "THAWED\n")]),
    (
        "blkio",
        &[
            ("blkio.throttle.io_service_bytes", "Total 0\n"),
            ("blkio.throttle.io_serviced", "Total 0\n"),
            ("blkio.throttle.read_bps_device", ""),
            ("blkio.throttle.write_bps_device", ""),
            ("blkio.throttle.read_iops_device", ""),
            ("blkio.throttle.write_iops_device", ""),
        ],
    ),
    ("devices", &[("devices.allow", ""), ("devices.deny", ""), ("devices.list", "a *:* rwm\n")]),
];

const V2_FILES: &[(&str, &str)] = &[
    ("cgroup.controllers", "cpuset cpu io memory pids\n"),
    ("cgroup.subtree_control", "\n"),
    ("cgroup.events", "populated 0\nfrozen 0\n"),
    ("cgroup.freeze", "0\n"),
    ("cgroup.kill", ""),
    ("cpu.weight", "100\n"),
    ("cpu.max", "max 100000\n"),
    ("cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"),
    ("cpuset.cpus", "\n"),
    ("cpuset.mems", "\n"),
    ("cpuset.cpus.effective", "0-3\n"),
    ("cpuset.mems.effective", "0\n"),
    ("memory.max", "max\n"),
    ("memory.low", "0\n"),
    ("memory.high", "max\n"),
    ("memory.swap.max", "max\n"),
    ("memory.oom.group", "0\n"),
    ("memory.current", "0\n"),
    ("memory.peak", "0\n"),
    ("memory.stat", "anon 0\nfile 0\ninactive_file 0\n"),
    ("memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"),
    ("memory.swap.current", "0\n"),
    ("pids.max", "max\n"),
    ("pids.current", "0\n"),
    ("io.stat", ""),
    ("cpu.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
    ("memory.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
    ("io.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
];

/// The files of a controller-less v2 cgroup (hybrid layouts).
const UNIFIED_FILES: &[&str] = &[
    "cgroup.controllers",
    "cgroup.subtree_control",
    "cgroup.events",
    "cgroup.freeze",
    "cgroup.kill",
    "cpu.stat",
    "cpu.pressure",
    "memory.pressure",
    "io.pressure",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeKind {
    V1,
    V2,
    Hybrid,
}

pub struct FakeFs {
    pub dir: TempDir,
    pub kind: FakeKind,
}

fn write(path: PathBuf, content: &str) {
    std::fs::write(path, content).unwrap();
}

impl FakeFs {
    pub fn new(kind: FakeKind) -> Self {
        let fs = FakeFs { dir: tempfile::tempdir().unwrap(), kind };
        let mut mountinfo = String::new();
        let mut self_cgroup = String::new();
        if kind != FakeKind::V2 {
            for (i, (controller, _)) in V1_FILES.iter().enumerate() {
                let mount = fs.v1_root(controller);
                std::fs::create_dir_all(&mount).unwrap();
                mountinfo.push_str(&format!(
                    "{} 1 0:{} / {} rw - cgroup cgroup rw,{controller}\n",
                    30 + i,
                    30 + i,
                    mount.display()
                ));
                self_cgroup.push_str(&format!("{}:{controller}:/\n", i + 1));
            }
            write(fs.v1_root("cpuset").join("cpuset.cpus"), "0-3\n");
            write(fs.v1_root("cpuset").join("cpuset.mems"), "0\n");
            // The root memory cgroup shows memsw when swap accounting is on.
            write(
                fs.v1_root("memory").join("memory.memsw.limit_in_bytes"),
                "9223372036854771712\n",
            );
        }
        if kind != FakeKind::V1 {
            let root = fs.unified_root();
            std::fs::create_dir_all(&root).unwrap();
            mountinfo
                .push_str(&format!("60 1 0:60 / {} rw - cgroup2 cgroup2 rw\n", root.display()));
            self_cgroup.push_str("0::/\n");
            let controllers =
                if kind == FakeKind::V2 { "cpuset cpu io memory pids\n" } else { "hugetlb\n" };
            write(root.join("cgroup.controllers"), controllers);
            write(root.join("cgroup.subtree_control"), "\n");
            write(root.join("cgroup.procs"), "1\n");
        }
        write(fs.dir.path().join("mountinfo"), &mountinfo);
        write(fs.dir.path().join("self-cgroup"), &self_cgroup);
        fs
    }

    pub fn host_paths(&self) -> HostPaths {
        HostPaths {
            mountinfo: self.dir.path().join("mountinfo"),
            self_cgroup: self.dir.path().join("self-cgroup"),
            cgroup_root: None,
        }
    }

    pub fn layout(&self) -> Layout {
        detect(&self.host_paths()).unwrap()
    }

    pub fn v1_root(&self, controller: &str) -> PathBuf {
        self.dir.path().join("v1").join(controller)
    }

    pub fn unified_root(&self) -> PathBuf {
        self.dir.path().join("unified")
    }

    /// Pre-creates the cgroup `rel` (e.g. `corral/job-1`) in every tree, with
    /// the files the kernel would show there.
    pub fn add_cgroup(&self, rel: &str) {
        if self.kind != FakeKind::V2 {
            for (controller, files) in V1_FILES {
                let dir = self.v1_root(controller).join(rel);
                std::fs::create_dir_all(&dir).unwrap();
                write(dir.join("cgroup.procs"), "");
                for (file, content) in *files {
                    write(dir.join(file), content);
                }
            }
        }
        if self.kind != FakeKind::V1 {
            let dir = self.unified_root().join(rel);
            std::fs::create_dir_all(&dir).unwrap();
            write(dir.join("cgroup.procs"), "");
            for (file, content) in V2_FILES {
                if self.kind == FakeKind::V2 || UNIFIED_FILES.contains(file) {
                    write(dir.join(file), content);
                }
            }
            if self.kind == FakeKind::Hybrid {
                write(dir.join("cgroup.controllers"), "hugetlb\n");
            }
        }
    }

    pub fn read(&self, path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }
}
