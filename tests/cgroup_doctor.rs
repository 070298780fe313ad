//! `corral doctor` on this host and on fixture layouts rebuilt under a
//! temporary `--cgroup-root`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cgroup");

fn doctor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_corral")).arg("doctor").args(args).output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the mount points of a fixture mount table under a temporary root,
/// with the given files in each (`mount point relative path`, `file`, `content`).
struct FixtureHost {
    root: tempfile::TempDir,
    mountinfo: PathBuf,
    self_cgroup: PathBuf,
    osrelease: PathBuf,
}

impl FixtureHost {
    fn new(
        mountinfo: &str,
        self_cgroup: &str,
        release: &str,
        files: &[(&str, &str, &str)],
    ) -> Self {
        let root = tempfile::tempdir().unwrap();
        let fixture = Path::new(FIXTURES).join(mountinfo);
        for line in std::fs::read_to_string(&fixture).unwrap().lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let sep = fields.iter().position(|f| *f == "-").unwrap();
            if fields[sep + 1].starts_with("cgroup") {
                std::fs::create_dir_all(root.path().join(&fields[4][1..])).unwrap();
            }
        }
        for (dir, file, content) in files {
            let dir = root.path().join(dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(file), content).unwrap();
        }
        let self_path = root.path().join("self-cgroup");
        std::fs::write(&self_path, self_cgroup).unwrap();
        let osrelease = root.path().join("osrelease");
        std::fs::write(&osrelease, release).unwrap();
        FixtureHost { root, mountinfo: fixture, self_cgroup: self_path, osrelease }
    }

    fn run(&self, extra: &[&str]) -> Output {
        let mut args = vec![
            "--mountinfo",
            self.mountinfo.to_str().unwrap(),
            "--self-cgroup",
            self.self_cgroup.to_str().unwrap(),
            "--cgroup-root",
            self.root.path().to_str().unwrap(),
            "--osrelease",
            self.osrelease.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        doctor(&args)
    }
}

#[test]
fn this_hybrid_host_is_usable() {
    let out = doctor(&[]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("layout: hybrid"), "{text}");
    assert!(text.contains("kill            cgroup.kill"), "{text}");
    assert!(text.contains("name=systemd"), "{text}");

    let out = doctor(&["--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["layout"]["kind"], "hybrid");
    assert_eq!(json["mechanisms"]["freezer"], "v2");
    assert_eq!(json["mechanisms"]["swap_limits"], true);
}

#[test]
fn an_old_v1_host_with_comounts_is_usable_with_warnings() {
    let host = FixtureHost::new(
        "mountinfo-v1-comount",
        "4:cpu,cpuacct:/\n3:cpuset:/\n",
        "4.9.0-8-amd64\n",
        &[
            ("sys/fs/cgroup/cpuset", "cpuset.cpus", "0-7\n"),
            ("sys/fs/cgroup/cpuset", "cpuset.mems", "0\n"),
        ],
    );
    let out = host.run(&["--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{json:#}");
    assert_eq!(json["layout"]["kind"], "v1");
    assert_eq!(json["mechanisms"]["freezer"], "v1");
    assert_eq!(json["mechanisms"]["kill"], "freeze_and_signal");
    assert_eq!(json["mechanisms"]["swap_limits"], false);
    let messages: Vec<String> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(messages.iter().any(|m| m.contains("swap accounting is off")), "{messages:?}");
    assert!(messages.iter().any(|m| m.contains("last process exits")), "{messages:?}");

    let text = stdout(&host.run(&[]));
    assert!(text.contains("v1 cpu,cpuacct"), "{text}");
    assert!(text.contains("corral can run here"), "{text}");
}

#[test]
fn a_v2_host_without_cpuset_fails() {
    let host = FixtureHost::new(
        "mountinfo-v2",
        "0::/\n",
        "6.1.0\n",
        &[
            ("sys/fs/cgroup", "cgroup.controllers", "cpu io memory pids\n"),
            ("sys/fs/cgroup", "cgroup.subtree_control", "cpu memory\n"),
            (
                "sys/fs/cgroup",
                "memory.pressure",
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
            ),
        ],
    );
    let out = host.run(&[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("error: cpuset controller is neither mounted"), "{text}");
    assert!(text.contains("corral will write +io +pids"), "{text}");
    assert!(text.contains("corral cannot run here"), "{text}");
}

#[test]
fn a_bad_mount_table_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mountinfo");
    std::fs::write(&path, "22 1 0:21 / /proc rw - proc proc rw\n").unwrap();
    let out = doctor(&["--mountinfo", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no usable cgroup hierarchy"));
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: NUL-terminated strings and a slice that outlive the call.
    let rc = unsafe {
        libc::setxattr(path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0)
    };
    assert_eq!(rc, 0, "setxattr {name:?}: {}", std::io::Error::last_os_error());
}

#[test]
fn the_cgroup_root_mode_and_its_reason_are_reported() {
    let service = "sys/fs/cgroup/system.slice/corral.service";
    let v2_files = |dir: &'static str| {
        [
            (dir, "cgroup.controllers", "cpuset cpu io memory pids\n"),
            (dir, "cgroup.subtree_control", "cpuset cpu io memory pids\n"),
            (dir, "memory.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
        ]
    };
    let mut files = v2_files("sys/fs/cgroup").to_vec();
    files.extend(v2_files("sys/fs/cgroup/system.slice/corral.service"));
    files.push((service, "cgroup.freeze", "0\n"));
    files.push((service, "cgroup.kill", ""));
    let host = FixtureHost::new(
        "mountinfo-v2",
        "0::/system.slice/corral.service/agent\n",
        "6.12.0\n",
        &files,
    );
    let text = stdout(&host.run(&[]));
    assert!(text.contains("cgroup root: the root of every hierarchy"), "{text}");
    assert!(text.contains("is not delegated to it"), "{text}");

    set_xattr(&host.root.path().join(service), "trusted.delegate", b"1");
    let out = host.run(&[]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("cgroup root: delegated at /system.slice/corral.service"), "{text}");
    assert!(text.contains("because it carries trusted.delegate=1"), "{text}");
    let json: serde_json::Value = serde_json::from_slice(&host.run(&["--json"]).stdout).unwrap();
    assert_eq!(json["cgroup_root"]["mode"]["mode"], "delegated");
    assert_eq!(json["cgroup_root"]["mode"]["signal"], "trusted_xattr");

    // A configured cgroup that does not hold the agent is an error.
    let out = host.run(&["--agent-cgroup-root", "/system.slice/other.service"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("not in it or below it"), "{}", stdout(&out));

    // This hybrid host, from doctor's own cgroup.
    let text = stdout(&doctor(&[]));
    assert!(text.contains("because the host's layout is hybrid"), "{text}");
}
