//! What a job sees from inside a fully isolated container, checked on the
//! real kernel with a busybox rootfs.

mod common;

use common::{launcher, stdout_of, Sandbox, JOB_UID};
use corral::container::{IdSpec, JobExit, Mount, Rlimit, RlimitResource};
use corral::vocab::Capability;

fn run(cfg: &corral::container::ContainerConfig) -> String {
    let status = launcher().launch(cfg).expect("launch").wait().expect("status");
    assert_eq!(status.exit, JobExit::Exited { code: 0 }, "stderr: {}", common::stderr_of(cfg));
    stdout_of(cfg)
}

#[test]
fn sees_only_its_own_processes() {
    let sandbox = Sandbox::new();
    let out = run(&sandbox.config("ps", "ps -o pid,comm"));
    let pids: Vec<u32> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    // init (1), the shell (2) and ps, which the shell may exec in place.
    assert!(pids.len() <= 3 && pids.iter().all(|&p| p <= 3), "{out}");
    assert!(out.contains("ps"), "{out}");
    let init = out.lines().find(|l| l.split_whitespace().next() == Some("1")).unwrap();
    assert!(init.ends_with("corral-init"), "{out}");
}

#[test]
fn job_is_a_child_of_pid_1() {
    let sandbox = Sandbox::new();
    let out = run(&sandbox.config("ppid", "echo $$ $PPID"));
    assert_eq!(out.trim(), "2 1");
}

#[test]
fn has_its_own_hostname() {
    let sandbox = Sandbox::new();
    let mut cfg = sandbox.config("hostname", "hostname");
    cfg.hostname = Some("box-7".into());
    assert_eq!(run(&cfg).trim(), "box-7");
    let default = sandbox.config("hostname-default", "hostname");
    assert_eq!(run(&default).trim(), "testjob");
}

#[test]
fn network_namespace_has_only_loopback_and_it_is_up() {
    let sandbox = Sandbox::new();
    let out = run(&sandbox.config("net", "ls /sys/class/net; ip link show lo"));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("lo"), "{out}");
    assert!(lines.next().unwrap().contains("UP"), "{out}");
}

#[test]
fn runs_as_the_requested_user_without_capabilities() {
    let sandbox = Sandbox::new();
    let mut cfg = sandbox.config(
        "creds",
        "id -u; id -g; id -G; grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status; echo $HOME",
    );
    cfg.user = Some(IdSpec::Name("app".into()));
    let out = run(&cfg);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], JOB_UID.to_string());
    assert_eq!(lines[1], "1000");
    assert_eq!(lines[2], "1000", "supplementary groups must be cleared: {out}");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(out.contains(&format!("{cap}:\t0000000000000000")), "{cap} in {out}");
    }
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert_eq!(lines.last(), Some(&"/home/app"));
}

#[test]
fn root_job_keeps_only_listed_capabilities() {
    let sandbox = Sandbox::new();
    let mut cfg = sandbox.config("rootcaps", "grep -E '^Cap(Eff|Bnd):' /proc/self/status");
    cfg.capabilities = [Capability::NET_BIND_SERVICE].into();
    let out = run(&cfg);
    assert!(out.contains("CapEff:\t0000000000000400"), "{out}");
    assert!(out.contains("CapBnd:\t0000000000000400"), "{out}");
}

#[test]
fn cannot_see_host_files_and_sees_its_binds() {
    let sandbox = Sandbox::new();
    let host_dir = sandbox.tmp.path().join("shared");
    std::fs::create_dir(&host_dir).unwrap();
    std::fs::write(host_dir.join("data.txt"), "from the host").unwrap();
    let mut cfg = sandbox.config(
        "fs",
        "test -e /etc/hostname && echo host-etc-visible; \
         test -e /root/.cargo && echo host-root-visible; \
         cat /mnt/shared/data.txt; echo; \
         touch /mnt/shared/new 2>/dev/null && echo ro-bind-writable; \
         touch /tmp/x && echo tmp-writable; \
         ls /dev",
    );
    cfg.mounts.push(Mount::bind(host_dir.clone(), "/mnt/shared", true));
    let out = run(&cfg);
    assert!(!out.contains("visible"), "{out}");
    assert!(out.contains("from the host"), "{out}");
    assert!(!out.contains("ro-bind-writable"), "{out}");
    assert!(out.contains("tmp-writable"), "{out}");
    for dev in ["null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm"] {
        assert!(out.lines().any(|l| l == dev), "/dev/{dev} missing: {out}");
    }
    assert!(!host_dir.join("new").exists());
}

#[test]
fn readonly_rootfs_refuses_writes_but_tmp_works() {
    let sandbox = Sandbox::new();
    let mut cfg = sandbox.config(
        "ro",
        "touch /data/x 2>/dev/null && echo rootfs-writable; touch /tmp/x && echo tmp-ok; echo hi > /dev/null && echo null-ok",
    );
    cfg.readonly_rootfs = true;
    let out = run(&cfg);
    assert_eq!(out, "tmp-ok\nnull-ok\n");
}

#[test]
fn environment_is_exactly_the_configured_one() {
    let sandbox = Sandbox::new();
    let mut cfg = sandbox.config("env", "env | sort");
    cfg.env.insert("TZ".into(), "UTC".into());
    cfg.workdir = Some("/tmp".into());
    let out = run(&cfg);
    let mut vars: Vec<&str> =
        out.lines().filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=")).collect();
    vars.sort();
    assert_eq!(
        vars,
        [
            "CORRAL_JOB=testjob",
            "CORRAL_RUN=env",
            "HOME=/root",
            &format!("PATH={}", corral::container::config::DEFAULT_PATH),
            "TZ=UTC"
        ]
    );
    assert!(out.contains("PWD=/tmp"), "{out}");
}

#[test]
fn rlimits_apply() {
    let sandbox = Sandbox::new();
    let mut cfg = sandbox.config("rlimit", "ulimit -n; ulimit -Hn");
    cfg.rlimits.push(Rlimit { resource: RlimitResource::Nofile, soft: 64, hard: 128 });
    assert_eq!(run(&cfg), "64\n128\n");
}

#[test]
fn without_rootfs_the_host_tree_is_visible_with_private_proc_and_tmp() {
    let sandbox = Sandbox::new();
    // Not under /tmp, which the container replaces.
    let marker = std::path::Path::new(env!("CARGO_BIN_EXE_corral"));
    let mut cfg = sandbox.config(
        "hostfs",
        &format!(
            "test -e {} && echo host-visible; ls /tmp | wc -l; /bin/busybox ps -o pid | wc -l",
            marker.display()
        ),
    );
    cfg.rootfs = None;
    let out = run(&cfg);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "host-visible");
    assert_eq!(lines[1].trim(), "0", "fresh /tmp is empty: {out}");
    // Header, init, the shell, ps and wc: no host processes.
    assert!(lines[2].trim().parse::<u32>().unwrap() <= 5, "{out}");
}

#[test]
fn user_namespace_maps_the_job_user_to_root_inside() {
    let sandbox = Sandbox::new();
    let shared = sandbox.tmp.path().join("userns-shared");
    std::fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(JOB_UID), Some(1000)).unwrap();
    let mut cfg = sandbox.config(
        "userns",
        "id -u; cat /proc/self/uid_map; grep CapEff /proc/self/status; ps -o pid | wc -l; touch /mnt/out/made",
    );
    cfg.namespaces.insert(corral::vocab::Namespace::User);
    cfg.user = Some(IdSpec::Name("app".into()));
    cfg.mounts.push(Mount::bind(shared.clone(), "/mnt/out", false));
    let out = run(&cfg);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "{out}");
    let map: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(map, ["0", "1000", "1"]);
    assert_eq!(lines[2], "CapEff:\t0000000000000000");
    assert!(lines[3].trim().parse::<u32>().unwrap() <= 5, "{out}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(shared.join("made")).unwrap().uid(), JOB_UID);
}

#[test]
fn relative_command_is_found_from_the_workdir() {
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.rootfs.join("srv/app")).unwrap();
    std::fs::write(sandbox.rootfs.join("srv/app/run.sh"), "#!/bin/sh\necho ran from $PWD\n")
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        sandbox.rootfs.join("srv/app/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let mut cfg = sandbox.config("relative", "");
    cfg.command = vec!["./run.sh".into()];
    cfg.workdir = Some("/srv/app".into());
    assert_eq!(run(&cfg), "ran from /srv/app\n");
}

#[test]
fn tmpfs_mounts_are_sized_and_can_be_read_only() {
    let sandbox = Sandbox::new();
    let mut cfg = sandbox.config(
        "tmpfs",
        "grep ' /scratch ' /proc/self/mounts; \
         dd if=/dev/zero of=/scratch/big bs=1024 count=2048 2>/dev/null || echo scratch-full; \
         touch /empty/x 2>/dev/null || echo empty-read-only",
    );
    cfg.mounts.push(Mount::tmpfs("/scratch", Some(1 << 20), false));
    cfg.mounts.push(Mount::tmpfs("/empty", None, true));
    let out = run(&cfg);
    let line = out.lines().next().unwrap();
    assert!(line.starts_with("tmpfs /scratch tmpfs rw,"), "{out}");
    // mode=1777 is the tmpfs default, which the kernel does not list.
    assert!(line.contains("size=1024k"), "{out}");
    assert!(out.contains("scratch-full\n"), "{out}");
    assert!(out.ends_with("empty-read-only\n"), "{out}");
}

#[test]
fn data_and_address_space_rlimits_apply() {
    let sandbox = Sandbox::new();
    let mut cfg = sandbox.config(
        "rlimit-mem",
        "ulimit -d; ulimit -v; dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null || echo refused",
    );
    cfg.rlimits.push(Rlimit { resource: RlimitResource::Data, soft: 16 << 20, hard: 16 << 20 });
    cfg.rlimits.push(Rlimit { resource: RlimitResource::As, soft: 32 << 20, hard: 32 << 20 });
    // ulimit prints KiB; a 64 MiB buffer does not fit in 32 MiB of address space.
    assert_eq!(run(&cfg), "16384\n32768\nrefused\n");
}

#[test]
fn readonly_host_root_is_read_only_all_the_way_down() {
    let sandbox = Sandbox::new();
    // Two host mounts: the filesystem the sandbox is on, and /dev/shm (a
    // tmpfs of its own), checked from a container without a rootfs.
    let on_root = sandbox.tmp.path().join("probe");
    let on_shm =
        std::path::PathBuf::from(format!("/dev/shm/corral-ro-probe-{}", std::process::id()));
    let mut cfg = sandbox.config(
        "ro-host",
        &format!(
            "touch {} 2>/dev/null && echo root-writable; touch {} 2>/dev/null && echo shm-writable; \
             touch /tmp/x && echo tmp-ok; touch /mnt/x && echo scratch-ok",
            on_root.display(),
            on_shm.display()
        ),
    );
    cfg.rootfs = None;
    cfg.readonly_rootfs = true;
    // An existing directory: the host's root is read-only by the time
    // mount points would be made.
    cfg.mounts.push(Mount::tmpfs("/mnt", Some(1 << 20), false));
    let out = run(&cfg);
    let leaked = on_shm.exists();
    let _ = std::fs::remove_file(&on_shm);
    assert_eq!(out, "tmp-ok\nscratch-ok\n");
    assert!(!on_root.exists() && !leaked);
}
