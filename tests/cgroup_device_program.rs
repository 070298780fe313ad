//! The v2 device program on the real kernel: loaded through bpf(2) and
//! attached to a cgroup of this host's unified hierarchy, it decides which
//! device nodes a process in that cgroup opens; a second attach replaces
//! it. (This host's v1 `devices` controller allows everything at the root,
//! so what is denied here is the program's doing.)

use std::path::{Path, PathBuf};
use std::process::Command;

use corral::cgroup::v2::devices::attach;
use corral::cgroup::{DeviceAccess, DeviceRule, DeviceType, SAFE_DEVICES};

const UNIFIED: &str = "/sys/fs/cgroup/unified";

/// A cgroup of its own in the unified hierarchy, removed on drop.
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn new() -> TestCgroup {
        let dir = Path::new(UNIFIED).join(format!("corral-test-devprog-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        TestCgroup(dir)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("cgroup.kill"), "1");
        for _ in 0..100 {
            if std::fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// Joins `cgroup`, then says for each path whether it opens for reading
/// and for writing.
fn probe(cgroup: &Path, paths: &[&str]) -> String {
    let checks: Vec<String> = paths
        .iter()
        .map(|p| {
            format!(
                "if ( : < {p} ) 2>/dev/null; then echo \"{p} r ok\"; else echo \"{p} r denied\"; fi; \
                 if ( : > {p} ) 2>/dev/null; then echo \"{p} w ok\"; else echo \"{p} w denied\"; fi"
            )
        })
        .collect();
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec /bin/sh -c '{}'",
        cgroup.display(),
        checks.join("; ")
    );
    let out = Command::new("/bin/sh").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_program_allows_the_safe_set_and_listed_access_and_an_update_replaces_it() {
    if !Path::new(UNIFIED).join("cgroup.procs").exists() {
        assert!(std::env::var("CI").is_err(), "no unified hierarchy at {UNIFIED} under CI");
        println!("skipped: no cgroup2 hierarchy at {UNIFIED}");
        return;
    }
    let cgroup = TestCgroup::new();
    let read_only = DeviceAccess { read: true, write: false, mknod: false };
    let mut rules = SAFE_DEVICES.to_vec();
    rules.push(DeviceRule::node(DeviceType::Char, 10, 229, read_only));
    attach(&cgroup.0, &rules).unwrap();
    let paths = ["/dev/null", "/dev/net/tun", "/dev/fuse"];
    assert_eq!(
        probe(&cgroup.0, &paths),
        "/dev/null r ok\n/dev/null w ok\n/dev/net/tun r denied\n/dev/net/tun w denied\n\
         /dev/fuse r ok\n/dev/fuse w denied\n"
    );

    let everything =
        DeviceRule { kind: DeviceType::Char, major: None, minor: None, access: DeviceAccess::RWM };
    attach(&cgroup.0, &[everything]).unwrap();
    assert_eq!(
        probe(&cgroup.0, &paths),
        "/dev/null r ok\n/dev/null w ok\n/dev/net/tun r ok\n/dev/net/tun w ok\n\
         /dev/fuse r ok\n/dev/fuse w ok\n"
    );
}
