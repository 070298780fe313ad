//! What a job sees from inside a fully isolated container, checked on the
//! real kernel with a busybox rootfs.

mod common;

use common::{launcher, stdout_of, Sandbox, JOB_UID};
use corral::container::{BindMount, Capability, IdSpec, JobExit, Rlimit, RlimitResource};

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
    cfg.mounts.push(BindMount {
        source: host_dir.clone(),
        target: "/mnt/shared".into(),
        readonly: true,
    });
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
    cfg.namespaces.insert(corral::container::Namespace::User);
    cfg.user = Some(IdSpec::Name("app".into()));
    cfg.mounts.push(BindMount {
        source: shared.clone(),
        target: "/mnt/out".into(),
        readonly: false,
    });
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
