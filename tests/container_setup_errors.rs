//! Problems found before the job starts come back from `launch()` itself,
//! as errors that say what is wrong, and leave no job running.

mod common;

use std::path::PathBuf;

use common::{launcher, Sandbox};
use corral::container::{ContainerError, IdSpec, SetupError};

fn setup_error(cfg: &corral::container::ContainerConfig) -> SetupError {
    match launcher().launch(cfg) {
        Err(ContainerError::Setup(error)) => error,
        other => panic!("expected a setup error, got {other:?}"),
    }
}

#[test]
fn missing_rootfs() {
    let sandbox = Sandbox::new();
    let mut cfg = sandbox.config("norootfs", "true");
    cfg.rootfs = Some(sandbox.tmp.path().join("nowhere"));
    let error = setup_error(&cfg);
    assert_eq!(error, SetupError::RootfsMissing { path: sandbox.tmp.path().join("nowhere") });
    assert!(error.to_string().contains("does not exist"), "{error}");
}

#[test]
fn command_not_found_in_rootfs() {
    let sandbox = Sandbox::new();
    let mut cfg = sandbox.config("nocmd", "");
    cfg.command = vec!["python3".into(), "etl.py".into()];
    let error = setup_error(&cfg);
    assert!(
        matches!(&error, SetupError::CommandNotFound { command, place, .. }
            if command == "python3" && place.starts_with("rootfs")),
        "{error:?}"
    );
    cfg.command = vec!["/usr/bin/python3".into()];
    cfg.run = "nocmd-abs".into();
    cfg.run_dir = sandbox.run_dir("nocmd-abs");
    assert!(matches!(setup_error(&cfg), SetupError::CommandNotFound { .. }));
}

#[test]
fn command_not_found_on_host() {
    let sandbox = Sandbox::new();
    let mut cfg = sandbox.config("nohostcmd", "");
    cfg.rootfs = None;
    cfg.command = vec!["no-such-command-anywhere".into()];
    let error = setup_error(&cfg);
    assert!(
        matches!(&error, SetupError::CommandNotFound { place, .. } if place == "the host"),
        "{error:?}"
    );
}

#[test]
fn command_that_cannot_be_executed() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.rootfs.join("bin/broken"), "\x7fELF garbage").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        sandbox.rootfs.join("bin/broken"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let mut cfg = sandbox.config("noexec", "");
    cfg.command = vec!["broken".into()];
    let error = setup_error(&cfg);
    assert_eq!(error, SetupError::Exec { path: "/bin/broken".into(), errno: libc::ENOEXEC });
}

#[test]
fn missing_workdir() {
    let sandbox = Sandbox::new();
    let mut cfg = sandbox.config("nowd", "true");
    cfg.workdir = Some("/srv/etl".into());
    assert_eq!(setup_error(&cfg), SetupError::WorkdirMissing { path: "/srv/etl".into() });
}

#[test]
fn unknown_user_and_group_are_looked_up_in_the_rootfs() {
    let sandbox = Sandbox::new();
    let mut cfg = sandbox.config("nouser", "true");
    // Exists on the host, not in the rootfs.
    cfg.user = Some(IdSpec::Name("daemon".into()));
    assert_eq!(
        setup_error(&cfg),
        SetupError::UnknownUser {
            name: "daemon".into(),
            passwd: sandbox.rootfs.join("etc/passwd")
        }
    );
    let mut cfg = sandbox.config("nogroup", "true");
    cfg.group = Some(IdSpec::Name("wheel".into()));
    assert_eq!(
        setup_error(&cfg),
        SetupError::UnknownGroup { name: "wheel".into(), group: sandbox.rootfs.join("etc/group") }
    );
}

#[test]
fn missing_cgroup() {
    let sandbox = Sandbox::new();
    let mut cfg = sandbox.config("nocg", "true");
    let path = PathBuf::from("/sys/fs/cgroup/pids/corral-test-does-not-exist/cgroup.procs");
    cfg.cgroup_procs.push(path.clone());
    assert_eq!(setup_error(&cfg), SetupError::JoinCgroup { path, errno: libc::ENOENT });
}

#[test]
fn invalid_config_is_refused_before_anything_runs() {
    let sandbox = Sandbox::new();
    let mut cfg = sandbox.config("invalid", "true");
    cfg.command.clear();
    cfg.log_max_bytes = 0;
    match launcher().launch(&cfg) {
        Err(ContainerError::InvalidConfig { problems }) => assert_eq!(problems.len(), 2),
        other => panic!("{other:?}"),
    }
    assert!(!cfg.run_dir.exists());
}

#[test]
fn a_run_directory_is_used_once() {
    let sandbox = Sandbox::new();
    let cfg = sandbox.config("once", "true");
    launcher().launch(&cfg).unwrap().wait().unwrap();
    assert!(matches!(launcher().launch(&cfg), Err(ContainerError::RunDirInUse { .. })));
}

#[test]
fn uid_0_under_any_name_is_refused_when_root_is() {
    let sandbox = Sandbox::new();
    // A second name for uid 0, as some systems have.
    let passwd = sandbox.rootfs.join("etc/passwd");
    let mut text = std::fs::read_to_string(&passwd).unwrap();
    text.push_str("toor:x:0:0:root:/root:/bin/sh\n");
    std::fs::write(&passwd, text).unwrap();
    for (run, user) in [("toor", Some(IdSpec::Name("toor".into()))), ("unset", None)] {
        let mut cfg = sandbox.config(&format!("refuse-{run}"), "true");
        cfg.user = user;
        cfg.refuse_root = true;
        let error = setup_error(&cfg);
        assert!(matches!(&error, SetupError::RootRefused { .. }), "{error:?}");
        assert!(error.to_string().contains("uid 0"), "{error}");
    }
    let mut cfg = sandbox.config("refuse-app", "true");
    cfg.user = Some(IdSpec::Name("app".into()));
    cfg.refuse_root = true;
    let status = launcher().launch(&cfg).unwrap().wait().unwrap();
    assert!(status.exit.success());
}
