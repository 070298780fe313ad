//! Where a job's mounts land, checked on the real kernel: never on the
//! host's tree, not through a missing path nor through a symlink planted
//! in a rootfs (absolute, relative, `..` chains, intermediate components,
//! the rootfs's own /proc), and not through a symlink swapped in between
//! resolving a target and mounting onto it.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::{launcher, stderr_of, stdout_of, CorralRun, HostDir, Sandbox};
use corral::container::{ContainerConfig, ContainerError, JobExit, Mount, SetupError};

/// Mount points (field 5) of this process's mount table at or below `dir`.
fn host_mounts_under(dir: &Path) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(dir))
        .map(str::to_owned)
        .collect()
}

fn run_ok(cfg: &ContainerConfig) -> String {
    let status = launcher().launch(cfg).expect("launch").wait().expect("status");
    assert_eq!(status.exit, JobExit::Exited { code: 0 }, "stderr: {}", stderr_of(cfg));
    stdout_of(cfg)
}

fn setup_error(cfg: &ContainerConfig) -> SetupError {
    match launcher().launch(cfg) {
        Err(ContainerError::Setup(error)) => error,
        other => panic!("expected a setup error, got {other:?}"),
    }
}

/// A host-tree job (no rootfs) in the sandbox's usual namespaces.
fn host_job(sandbox: &Sandbox, name: &str, script: &str) -> ContainerConfig {
    let mut cfg = sandbox.config(name, script);
    cfg.rootfs = None;
    cfg
}

#[test]
fn without_rootfs_a_missing_tmpfs_target_is_refused_and_not_created() {
    let sandbox = Sandbox::new();
    let host = HostDir::new("corral-mt-absent");
    let target = host.absent("scratch/deep");
    let mut cfg = host_job(&sandbox, "absent-tmpfs", "true");
    cfg.mounts.push(Mount::tmpfs(target.clone(), Some(1 << 20), false));
    let error = setup_error(&cfg);
    assert_eq!(error, SetupError::MountTargetNotOnHost { target: target.clone() });
    let message = error.to_string();
    assert!(message.contains(&target.display().to_string()), "{message}");
    assert!(message.contains("does not exist"), "{message}");
    assert_eq!(host.entries(), Vec::<String>::new(), "a mount point was left on the host");
}

#[test]
fn without_rootfs_a_missing_bind_target_is_refused_and_not_created() {
    let sandbox = Sandbox::new();
    let host = HostDir::new("corral-mt-absent-bind");
    let source = HostDir::new("corral-mt-source");
    fs::write(source.0.join("file"), "x").unwrap();
    // A directory and a file source: neither may make its target.
    for (i, src) in [source.0.clone(), source.0.join("file")].into_iter().enumerate() {
        let target = host.absent(&format!("bind-{i}"));
        let mut cfg = host_job(&sandbox, &format!("absent-bind-{i}"), "true");
        cfg.mounts.push(Mount::bind(src, target.clone(), true));
        let error = setup_error(&cfg);
        assert_eq!(error, SetupError::MountTargetNotOnHost { target });
    }
    assert_eq!(host.entries(), Vec::<String>::new(), "a mount point was left on the host");
}

#[test]
fn without_rootfs_mounts_over_existing_paths_and_inside_its_own_tmpfs() {
    let sandbox = Sandbox::new();
    let host = HostDir::new("corral-mt-present");
    fs::create_dir(host.0.join("scratch")).unwrap();
    let source = HostDir::new("corral-mt-source");
    fs::write(source.0.join("data.txt"), "shared").unwrap();
    let scratch = host.0.join("scratch");
    let inner = scratch.join("in/data");
    let mut cfg = host_job(
        &sandbox,
        "present",
        &format!(
            "cat {inner}/data.txt; echo; grep -c ' {scratch} tmpfs ' /proc/self/mounts",
            inner = inner.display(),
            scratch = scratch.display()
        ),
    );
    // The second target is missing on the host but lies in the job's own
    // tmpfs, so it is made there.
    cfg.mounts.push(Mount::tmpfs(scratch.clone(), Some(1 << 20), false));
    cfg.mounts.push(Mount::bind(source.0.clone(), inner, true));
    assert_eq!(run_ok(&cfg), "shared\n1\n");
    assert_eq!(host.entries(), ["scratch"]);
    assert_eq!(fs::read_dir(&scratch).unwrap().count(), 0, "the tmpfs's contents leaked");
}

#[test]
fn corral_run_reports_a_missing_host_target_by_name() {
    let corral = CorralRun::new();
    let host = HostDir::new("corral-mt-cli");
    let target = host.absent("missing/cache");
    let file = corral.job_file(
        "absent",
        &format!(
            "name: absent\ncommand: [/bin/true]\nisolation:\n  mounts: [{{kind: tmpfs, target: {}}}]\n",
            target.display()
        ),
    );
    let output = corral.run(&file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("mount target {} does not exist on the host", target.display())),
        "{stderr}"
    );
    assert_eq!(host.entries(), Vec::<String>::new(), "a mount point was left on the host");
}

/// A rootfs with a host directory to aim symlinks at.
struct Planted {
    sandbox: Sandbox,
    host: HostDir,
}

impl Planted {
    fn new() -> Self {
        Planted { sandbox: Sandbox::new(), host: HostDir::new("corral-mt-victim") }
    }

    fn link(&self, link: &str, points_to: impl AsRef<Path>) {
        let at = self.sandbox.rootfs.join(link.trim_start_matches('/'));
        fs::create_dir_all(at.parent().unwrap()).unwrap();
        if at.is_dir() && at.symlink_metadata().unwrap().is_dir() {
            fs::remove_dir(&at).unwrap();
        }
        symlink(points_to, at).unwrap();
    }

    /// A relative path from the rootfs's `dir` that climbs to the host's `/`
    /// and more (extra `..` at `/` stay there).
    fn climb(&self, dir: &str) -> String {
        let depth = self.sandbox.rootfs.join(dir.trim_start_matches('/')).components().count();
        "../".repeat(depth + 3)
    }

    /// The host directory, relative to the host's `/`.
    fn host_rel(&self) -> PathBuf {
        self.host.0.strip_prefix("/").unwrap().to_owned()
    }

    /// Fails the test if anything appeared in, or was mounted on, the host
    /// directory.
    fn assert_host_untouched(&self) {
        assert_eq!(self.host.entries(), Vec::<String>::new(), "created on the host");
        assert_eq!(host_mounts_under(&self.host.0), Vec::<String>::new(), "mounted on the host");
    }
}

/// The job writes into its mount at `at` and shows the mount table entry
/// of the tmpfs sized 1 MiB.
fn tmpfs_probe(at: &str) -> String {
    format!("echo inside > {at}/probe && cat {at}/probe && grep -c 'tmpfs .*size=1024k' /proc/self/mounts")
}

#[test]
fn absolute_symlink_in_rootfs_keeps_tmpfs_inside_it() {
    let p = Planted::new();
    p.link("/mnt", &p.host.0);
    let mut cfg = p.sandbox.config("abs-link", &tmpfs_probe("/mnt/scratch"));
    cfg.mounts.push(Mount::tmpfs("/mnt/scratch", Some(1 << 20), false));
    assert_eq!(run_ok(&cfg), "inside\n1\n");
    p.assert_host_untouched();
    // Resolved inside the rootfs: the host path, re-rooted.
    assert!(p.sandbox.rootfs.join(p.host_rel()).join("scratch").is_dir());
}

#[test]
fn symlink_to_host_etc_binds_onto_the_rootfs_etc() {
    let p = Planted::new();
    p.link("/escape", "/etc");
    let host_etc_mounts = host_mounts_under(Path::new("/etc"));
    let source = HostDir::new("corral-mt-source");
    fs::write(source.0.join("corral-marker"), "bound").unwrap();
    let mut cfg = p.sandbox.config("etc-link", "cat /etc/corral-marker; ls /etc | wc -l");
    cfg.mounts.push(Mount::bind(source.0.clone(), "/escape", true));
    assert_eq!(run_ok(&cfg), "bound1\n");
    assert!(!Path::new("/etc/corral-marker").exists());
    assert_eq!(host_mounts_under(Path::new("/etc")), host_etc_mounts);
    // The rootfs's own /etc is untouched under the mount.
    assert!(p.sandbox.rootfs.join("etc/passwd").is_file());
}

#[test]
fn relative_symlink_in_rootfs_keeps_bind_inside_it() {
    let p = Planted::new();
    p.link("/mnt", format!("{}{}", p.climb("/"), p.host_rel().display()));
    let source = HostDir::new("corral-mt-source");
    fs::write(source.0.join("data.txt"), "bound").unwrap();
    let mut cfg = p.sandbox.config("rel-link", "cat /mnt/in/data.txt");
    cfg.mounts.push(Mount::bind(source.0.clone(), "/mnt/in", true));
    assert_eq!(run_ok(&cfg), "bound");
    p.assert_host_untouched();
    assert!(p.sandbox.rootfs.join(p.host_rel()).join("in").is_dir());
}

#[test]
fn user_namespace_mount_points_are_prepared_inside_the_rootfs() {
    let p = Planted::new();
    p.link("/mnt", &p.host.0);
    let mut cfg = p.sandbox.config("userns-link", &tmpfs_probe("/mnt/scratch"));
    cfg.namespaces.insert(corral::vocab::Namespace::User);
    cfg.user = Some(corral::container::IdSpec::Name("app".into()));
    cfg.mounts.push(Mount::tmpfs("/mnt/scratch", Some(1 << 20), false));
    assert_eq!(run_ok(&cfg), "inside\n1\n");
    p.assert_host_untouched();
    assert!(p.sandbox.rootfs.join(p.host_rel()).join("scratch").is_dir());
}

#[test]
fn dotdot_chain_symlink_stays_at_the_rootfs_root() {
    let p = Planted::new();
    // /up -> ../../../..: at the rootfs's `/`, `..` is `/` again.
    p.link("/up", p.climb("/"));
    let target = Path::new("/up").join(p.host_rel()).join("scratch");
    let mut cfg = p.sandbox.config("dotdot", &tmpfs_probe(&target.display().to_string()));
    cfg.mounts.push(Mount::tmpfs(target, Some(1 << 20), false));
    assert_eq!(run_ok(&cfg), "inside\n1\n");
    p.assert_host_untouched();
}

#[test]
fn symlink_in_an_intermediate_component_stays_inside() {
    let p = Planted::new();
    // /opt/link -> ../../<climb>/host, and the target goes further below.
    p.link("/opt/link", format!("{}{}", p.climb("/opt"), p.host_rel().display()));
    let mut cfg = p.sandbox.config("mid-link", &tmpfs_probe("/opt/link/a/b"));
    cfg.mounts.push(Mount::tmpfs("/opt/link/a/b", Some(1 << 20), false));
    assert_eq!(run_ok(&cfg), "inside\n1\n");
    p.assert_host_untouched();
}

#[test]
fn rootfs_proc_symlink_to_a_host_dir_gets_proc_inside_the_rootfs() {
    let p = Planted::new();
    p.link("/proc", &p.host.0);
    let cfg =
        p.sandbox.config("proc-link", "cat /proc/self/comm; ls /proc/1/ >/dev/null && echo pid1");
    assert_eq!(run_ok(&cfg), "cat\npid1\n");
    p.assert_host_untouched();
}

#[test]
fn rootfs_proc_symlink_to_root_is_refused() {
    let p = Planted::new();
    let host_root_mounts = host_mounts_under(Path::new("/")).len();
    p.link("/proc", "/");
    let error = setup_error(&p.sandbox.config("proc-root", "true"));
    assert_eq!(error, SetupError::MountTargetIsRoot { target: "/proc".into() });
    assert!(error.to_string().contains("/proc"), "{error}");
    assert_eq!(host_mounts_under(Path::new("/")).len(), host_root_mounts);
}

#[test]
fn symlinked_sys_dev_and_tmp_stay_inside_the_rootfs() {
    let p = Planted::new();
    for dir in ["sys", "dev", "tmp"] {
        fs::create_dir(p.host.0.join(dir)).unwrap();
    }
    for dir in ["sys", "dev", "tmp"] {
        p.link(&format!("/{dir}"), p.host.0.join(dir));
    }
    let cfg = p.sandbox.config(
        "sys-dev-tmp-links",
        "ls /sys/class/net; echo hi > /dev/null && echo null-ok; touch /tmp/x && echo tmp-ok",
    );
    assert_eq!(run_ok(&cfg), "lo\nnull-ok\ntmp-ok\n");
    for dir in ["sys", "dev", "tmp"] {
        assert_eq!(fs::read_dir(p.host.0.join(dir)).unwrap().count(), 0, "host {dir} touched");
    }
    assert_eq!(host_mounts_under(&p.host.0), Vec::<String>::new());
}

#[test]
fn dangling_symlink_is_made_inside_and_a_loop_is_refused_with_the_target_named() {
    let p = Planted::new();
    // Inside the rootfs this points at /nowhere/else, made there.
    p.link("/mnt", p.host.0.join("nowhere"));
    p.link("/loop1", "loop2");
    p.link("/loop2", "/loop1/sub");
    let mut cfg = p.sandbox.config("dangling", &tmpfs_probe("/mnt/x"));
    cfg.mounts.push(Mount::tmpfs("/mnt/x", Some(1 << 20), false));
    assert_eq!(run_ok(&cfg), "inside\n1\n");
    assert!(p.sandbox.rootfs.join(p.host_rel()).join("nowhere/x").is_dir());

    let mut cfg = p.sandbox.config("loop", "true");
    cfg.mounts.push(Mount::tmpfs("/loop1/x", None, false));
    let error = setup_error(&cfg);
    assert!(
        matches!(&error, SetupError::Syscall { errno, .. } if *errno == libc::ELOOP),
        "{error:?}"
    );
    assert!(error.to_string().contains("/loop1/x"), "{error}");
    p.assert_host_untouched();
}

/// Mount points in the calling thread's mount table.
fn thread_mounts() -> Vec<PathBuf> {
    fs::read_to_string("/proc/thread-self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .collect()
}

#[test]
fn a_symlink_swapped_in_after_resolution_does_not_redirect_the_mount() {
    use corral::container::inroot::{Kind, Root};
    use corral::container::mounts::mount_fresh_at;
    use nix::mount::MsFlags;
    use std::os::fd::AsFd;

    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(&rootfs).unwrap();
    fs::create_dir(&outside).unwrap();
    // The swap happens between resolving and mounting, deterministically:
    // in a thread of its own with a private mount namespace (unsharing
    // CLONE_NEWNS affects the calling thread only), so nothing it mounts
    // is seen by the host or by other tests, and all of it goes with the
    // thread.
    let (rootfs_in, outside_in) = (rootfs.clone(), outside.clone());
    let mounts = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .unwrap();
        let root = Root::open(&rootfs_in).unwrap();
        let at = root.make(Path::new("/mnt"), Kind::Dir, true).unwrap();
        fs::rename(rootfs_in.join("mnt"), rootfs_in.join("mnt.resolved")).unwrap();
        symlink(&outside_in, rootfs_in.join("mnt")).unwrap();
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        mount_fresh_at("tmpfs", at.as_fd(), flags, Some("size=64k")).unwrap();
        // The same mount by path, as before: it follows the swapped link.
        nix::mount::mount(
            Some("tmpfs"),
            &rootfs_in.join("mnt"),
            Some("tmpfs"),
            flags,
            None::<&str>,
        )
        .unwrap();
        thread_mounts()
    })
    .join()
    .unwrap();
    let resolved = fs::canonicalize(&rootfs).unwrap().join("mnt.resolved");
    let outside = fs::canonicalize(&outside).unwrap();
    assert!(mounts.contains(&resolved), "no mount at {}: {mounts:?}", resolved.display());
    // Only the by-path mount reached the swapped-in target.
    assert_eq!(mounts.iter().filter(|m| **m == outside).count(), 1, "{mounts:?}");
    assert!(!thread_mounts().contains(&resolved), "the mount leaked out of the thread");
}
