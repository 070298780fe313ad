//! The rootfs's /etc/passwd and /etc/group, which the shim reads as root on
//! the host side to resolve a job's user and group, are read inside the
//! rootfs on the real kernel: a symlink there (absolute, or a relative `..`
//! chain) is followed as the job would see it and never reaches the host's
//! files, and a FIFO or an oversized file is refused at once instead of
//! hanging or filling the shim.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{launcher, stderr_of, stdout_of, HostDir, Sandbox};
use corral::container::{ContainerConfig, ContainerError, IdSpec, JobExit, SetupError};

/// A user that exists only in the host-side file the rootfs links to.
const INTRUDER: &str = "intruder:x:4321:4321:intruder:/:/bin/sh\n";

/// The setup error of launching `cfg`, which must come back within
/// `within` (a blocking read in the shim would otherwise hang the test).
fn prompt_setup_error(cfg: &ContainerConfig, within: Duration) -> SetupError {
    let (tx, rx) = mpsc::channel();
    let cfg = cfg.clone();
    std::thread::spawn(move || {
        let _ = tx.send(launcher().launch(&cfg).map(drop));
    });
    match rx.recv_timeout(within) {
        Ok(Err(ContainerError::Setup(error))) => error,
        Ok(other) => panic!("expected a setup error, got {other:?}"),
        Err(_) => panic!("launch did not return within {within:?}"),
    }
}

fn setup_error(cfg: &ContainerConfig) -> SetupError {
    prompt_setup_error(cfg, Duration::from_secs(30))
}

fn user_job(sandbox: &Sandbox, name: &str, user: &str) -> ContainerConfig {
    let mut cfg = sandbox.config(name, "id -u");
    cfg.user = Some(IdSpec::Name(user.into()));
    cfg
}

/// `etc/passwd -> /var/tmp/X/passwd`: followed from the rootfs's root, so
/// the host's file is never read; the same path inside the rootfs is.
#[test]
fn an_absolute_passwd_symlink_is_followed_inside_the_rootfs() {
    let sandbox = Sandbox::new();
    let host = HostDir::new("corral-passwd-abs");
    let host_passwd = host.0.join("passwd");
    fs::write(&host_passwd, INTRUDER).unwrap();
    let passwd = sandbox.rootfs.join("etc/passwd");
    fs::remove_file(&passwd).unwrap();
    symlink(&host_passwd, &passwd).unwrap();

    let cfg = user_job(&sandbox, "abs", "intruder");
    assert_eq!(
        setup_error(&cfg),
        SetupError::UnknownUser { name: "intruder".into(), passwd: passwd.clone() }
    );

    // The link's target as the job sees it: a file of the rootfs.
    let inside = sandbox.rootfs.join(host_passwd.strip_prefix("/").unwrap());
    fs::create_dir_all(inside.parent().unwrap()).unwrap();
    fs::write(&inside, "inside:x:2345:2345:inside:/:/bin/sh\n").unwrap();
    let cfg = user_job(&sandbox, "abs-inside", "inside");
    let status = launcher().launch(&cfg).expect("launch").wait().expect("status");
    assert_eq!(status.exit, JobExit::Exited { code: 0 }, "stderr: {}", stderr_of(&cfg));
    assert_eq!(stdout_of(&cfg), "2345\n");
}

/// `etc/passwd -> ../climb/var/tmp/X/passwd` with `climb -> ../../..…`:
/// on the host the chain reaches `/`, inside the rootfs `..` stops at its
/// root.
#[test]
fn a_relative_dotdot_chain_stays_inside_the_rootfs() {
    let sandbox = Sandbox::new();
    let host = HostDir::new("corral-passwd-rel");
    let host_passwd = host.0.join("passwd");
    fs::write(&host_passwd, INTRUDER).unwrap();
    let climb = "../".repeat(sandbox.rootfs.components().count() + 2);
    symlink(&climb, sandbox.rootfs.join("climb")).unwrap();
    let passwd = sandbox.rootfs.join("etc/passwd");
    fs::remove_file(&passwd).unwrap();
    let via = Path::new("../climb").join(host_passwd.strip_prefix("/").unwrap());
    symlink(&via, &passwd).unwrap();
    // On the host the chain does lead to the intruder's file.
    assert_eq!(fs::read_to_string(&passwd).unwrap(), INTRUDER);

    let cfg = user_job(&sandbox, "rel", "intruder");
    assert_eq!(
        setup_error(&cfg),
        SetupError::UnknownUser { name: "intruder".into(), passwd: passwd.clone() }
    );
    // Numeric ids need no entry: a bare or broken passwd does not stop them.
    let mut cfg = sandbox.config("rel-numeric", "id -u");
    cfg.user = Some(IdSpec::Id(4321));
    let status = launcher().launch(&cfg).expect("launch").wait().expect("status");
    assert_eq!(status.exit, JobExit::Exited { code: 0 }, "stderr: {}", stderr_of(&cfg));
    assert_eq!(stdout_of(&cfg), "4321\n");
}

/// A FIFO with no writer would block a plain open for ever.
#[test]
fn a_fifo_as_etc_group_fails_the_start_at_once() {
    let sandbox = Sandbox::new();
    let group = sandbox.rootfs.join("etc/group");
    fs::remove_file(&group).unwrap();
    nix::unistd::mkfifo(&group, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();

    let cfg = user_job(&sandbox, "fifo", "app");
    let started = Instant::now();
    let error = prompt_setup_error(&cfg, Duration::from_secs(10));
    let took = started.elapsed();
    assert_eq!(
        error,
        SetupError::AccountFileNotRegular { path: group.clone(), kind: "a FIFO".into() }
    );
    assert!(error.to_string().contains(&group.display().to_string()), "{error}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// A huge (sparse) passwd is refused by its size, not read into memory.
#[test]
fn an_oversized_passwd_is_refused_by_its_size() {
    let sandbox = Sandbox::new();
    let passwd = sandbox.rootfs.join("etc/passwd");
    fs::File::options().write(true).open(&passwd).unwrap().set_len(64 << 20).unwrap();

    let cfg = user_job(&sandbox, "huge", "app");
    let error = setup_error(&cfg);
    assert!(
        matches!(&error, SetupError::AccountFileTooLarge { path, .. } if *path == passwd),
        "{error:?}"
    );
    assert!(error.to_string().contains("larger than"), "{error}");
}

/// A rootfs account whose uid falls in the agent's dynamic range would
/// run as some other job's dynamic user: refused, with the range named; the
/// same uid given by number (the job's own dynamic uid) runs, with no
/// passwd entry and HOME=/.
#[test]
fn a_name_mapped_into_the_dynamic_range_is_refused_and_a_number_runs() {
    let sandbox = Sandbox::new();
    fs::write(
        sandbox.rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nlate:x:70001:100::/home/app:/bin/sh\n",
    )
    .unwrap();
    let mut cfg = user_job(&sandbox, "mapped", "late");
    cfg.refuse_ids_in = Some((70000, 70009));
    match setup_error(&cfg) {
        SetupError::DynamicIdRefused { what, name, id, first, last } => {
            assert_eq!((what.as_str(), name.as_str(), id), ("user", "late", 70001));
            assert_eq!((first, last), (70000, 70009));
        }
        other => panic!("{other:?}"),
    }

    let mut own = sandbox.config("own", "id -u; id -g; id -G; echo $HOME");
    own.user = Some(IdSpec::Id(70003));
    own.group = Some(IdSpec::Id(70003));
    own.refuse_ids_in = Some((70000, 70009));
    let status = launcher().launch(&own).expect("launch").wait().expect("status");
    assert_eq!(status.exit, JobExit::Exited { code: 0 }, "stderr: {}", stderr_of(&own));
    assert_eq!(stdout_of(&own), "70003\n70003\n70003\n/\n");
}
