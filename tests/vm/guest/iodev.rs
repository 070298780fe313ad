//! I/O and device control on pure v2, through `corral run`: `io.max` holds
//! an `O_DIRECT` writer on the guest's virtio disk near its limit, the
//! weight lands in `io.weight`, and the
//! device program attached to each run's cgroup lets a root job open only
//! the safe set and what its file lists, with the access listed.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::Context;

const STATE_DIR: &str = "/run/corral-iodev";
const DISK: &str = "/dev/vda";

/// `corral run` of a root job `name` running `script`, plus `extra` lines;
/// its output and exit code.
fn run_root(name: &str, script: &str, extra: &str) -> (String, Option<i32>) {
    let dir = Path::new(STATE_DIR);
    std::fs::create_dir_all(dir.join("jobs")).unwrap();
    let config = dir.join("agent.yaml");
    std::fs::write(&config, "allow_root_jobs: true\n").unwrap();
    let file = dir.join("jobs").join(format!("{name}.yaml"));
    let script = script.replace('\'', "''");
    std::fs::write(
        &file,
        format!("name: {name}\nuser: root\ncommand: [/bin/sh, -c, '{script}']\n{extra}"),
    )
    .unwrap();
    super::util::corral_run_file(&file, Some(&config), STATE_DIR)
}

/// Lines `PATH r ok|denied` and `PATH w ok|denied` for each path.
fn probe(paths: &[&str]) -> String {
    paths
        .iter()
        .map(|p| {
            format!(
                "if ( : < {p} ) 2>/dev/null; then echo \"{p} r ok\"; else echo \"{p} r denied\"; fi; \
                 if ( : > {p} ) 2>/dev/null; then echo \"{p} w ok\"; else echo \"{p} w denied\"; fi"
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn probed(output: &str) -> Vec<&str> {
    output.lines().filter(|l| l.ends_with(" ok") || l.ends_with(" denied")).collect()
}

pub fn devices_are_an_allow_list_enforced_by_a_device_program(_: &Context) {
    for path in [DISK, "/dev/net/tun", "/dev/fuse"] {
        let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(meta.file_type().is_block_device() || meta.file_type().is_char_device());
        assert!(std::fs::OpenOptions::new().read(true).write(true).open(path).is_ok(), "{path}");
    }
    let paths = ["/dev/null", DISK, "/dev/net/tun", "/dev/fuse"];
    let (plain, code) = run_root("plain", &probe(&paths), "");
    assert_eq!(code, Some(0));
    assert_eq!(
        probed(&plain),
        [
            "/dev/null r ok",
            "/dev/null w ok",
            "/dev/vda r denied",
            "/dev/vda w denied",
            "/dev/net/tun r denied",
            "/dev/net/tun w denied",
            "/dev/fuse r denied",
            "/dev/fuse w denied",
        ]
    );
    let (fuse, code) =
        run_root("fuse", &probe(&paths), "isolation: {devices: [{path: /dev/fuse, access: rw}]}\n");
    assert_eq!(code, Some(0));
    assert_eq!(probed(&fuse)[6..], ["/dev/fuse r ok", "/dev/fuse w ok"]);
    assert_eq!(probed(&fuse)[4..6], ["/dev/net/tun r denied", "/dev/net/tun w denied"]);
    let (read_only, code) = run_root(
        "readonly",
        &probe(&paths),
        "isolation: {devices: [{path: /dev/fuse, access: r}]}\n",
    );
    assert_eq!(code, Some(0));
    assert_eq!(probed(&read_only)[6..], ["/dev/fuse r ok", "/dev/fuse w denied"]);
}

pub fn io_max_holds_a_direct_writer_near_its_limit(_: &Context) {
    const WRITTEN: u64 = 4 << 20;
    let rdev = std::fs::metadata(DISK).unwrap().rdev();
    let disk = format!("{}:{}", libc::major(rdev), libc::minor(rdev));
    // The job writes straight to the disk, so it needs the disk in its
    // device list too; it reports its own cgroup's io.stat line for it.
    let script = format!(
        "read t0 rest < /proc/uptime; \
         dd if=/dev/zero of={DISK} bs=64k count={blocks} oflag=direct 2>/dev/null || exit 1; \
         read t1 rest < /proc/uptime; echo \"took $t0 $t1\"; \
         cg=$(sed -n \"s/^0:://p\" /proc/self/cgroup); \
         echo \"io.max $(cat /sys/fs/cgroup$cg/io.max)\"; \
         echo \"io.weight $(cat /sys/fs/cgroup$cg/io.weight)\"; \
         echo \"io.stat $(grep \"^{disk} \" /sys/fs/cgroup$cg/io.stat)\"",
        blocks = WRITTEN / (64 << 10),
    );
    let extra = format!(
        "resources: {{io: {{weight: 300, limits: [{{device: {DISK}, write_bps: 1Mi}}]}}}}\n\
         isolation: {{devices: [{{path: {DISK}, access: rw}}]}}\n"
    );
    let (out, code) = run_root("direct", &script, &extra);
    assert_eq!(code, Some(0));
    let field = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in the output"))
            .trim()
            .to_owned()
    };
    assert!(field("io.max ").starts_with(&format!("{disk} rbps=max wbps=1048576 ")), "{out}");
    // The guest kernel has iocost, so every v2 cgroup with `io` has io.weight.
    assert_eq!(field("io.weight "), "default 300", "{out}");
    let took: Vec<f64> = field("took ").split_whitespace().map(|t| t.parse().unwrap()).collect();
    let rate = WRITTEN as f64 / (1 << 20) as f64 / (took[1] - took[0]);
    println!("{} MiB written with O_DIRECT at {rate:.2} MiB/s under write_bps: 1Mi", WRITTEN >> 20);
    assert!((0.25..3.0).contains(&rate), "{rate:.2} MiB/s under a 1 MiB/s limit");
    let wbytes: u64 = field("io.stat ")
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("wbytes="))
        .unwrap()
        .parse()
        .unwrap();
    assert!((WRITTEN..=WRITTEN + (1 << 20)).contains(&wbytes), "io.stat wbytes={wbytes}");
}
