//! The host side of the systemd guest: find qemu, the kernel, the image and
//! the package; stage the per-run disk; boot; report every scenario like
//! libtest does.
//!
//! Under `CI=true` nothing is skipped: a missing qemu, kernel, image or
//! package is a failure, as are, everywhere, a guest that does not boot, a
//! timeout and a run that stops before its last scenario.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::vm::host::harness::{find_in_path, Missing, Options};
use crate::vm::host::qemu::Accel;
use crate::vm::protocol::{self, Outcome};

/// The guest-side scenarios, in the order they run: each is a function of
/// the same name in `guest/scenarios` and one result line here.
const SCENARIOS: &[&str] = &[
    "install_enable_and_doctor",
    "readme_install_steps",
    "job_runs_below_the_service_cgroup",
    "restart_adopts_a_running_job",
    "agent_killed_is_restarted_and_adopts",
    "oom_kill_is_reported",
    "oom_grow_freezes_and_grows_in_place",
    "stop_leaves_jobs_running_and_start_adopts",
    "remove_keeps_config_and_state",
    "upgrade_keeps_jobs_running",
];

/// The scenario script and what it stages beside the package.
const SCENARIO_SCRIPT: &str = include_str!("guest/scenarios");

/// Default limit for the whole boot, scenarios included, under TCG.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
/// The kernel command line: the console on the first serial port, a panic
/// ends qemu at once (`-no-reboot`), systemd prints its unit status so a
/// boot that hangs shows where.
const KERNEL_CMDLINE: &str = "console=ttyS0 panic=-1 quiet systemd.show_status=1";
const GUEST_MEMORY_MIB: u32 = 1024;
const GUEST_CPUS: u32 = 2;

fn test_name(scenario: &str) -> String {
    format!("systemd_guest::{scenario}")
}

/// `$CARGO_TARGET_DIR`, else `target` in the checkout.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

struct Environment {
    qemu: PathBuf,
    kernel: PathBuf,
    initrd: PathBuf,
    rootfs: PathBuf,
    package: PathBuf,
    mkfs: PathBuf,
    accel: Accel,
    timeout: Duration,
    work: PathBuf,
}

/// The newest `corral_*.deb` in the package build's output directory.
fn newest_package(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("corral_") && name.ends_with(".deb")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, path)| path)
}

impl Environment {
    fn find(options: &Options) -> Result<Environment, Missing> {
        let accel = options.accelerator()?;
        let timeout = match std::env::var("CORRAL_GUEST_TIMEOUT") {
            Ok(v) => Duration::from_secs(v.parse().map_err(|_| {
                Missing::Misconfigured(format!("CORRAL_GUEST_TIMEOUT={v}: not a number of seconds"))
            })?),
            Err(_) => BOOT_TIMEOUT,
        };
        let qemu = match std::env::var_os("CORRAL_VM_QEMU") {
            Some(q) => PathBuf::from(q),
            None => find_in_path("qemu-system-x86_64").ok_or_else(|| {
                Missing::Prerequisite(
                    "qemu-system-x86_64 is not installed \
                     (apt-get install --no-install-recommends qemu-system-x86)"
                        .into(),
                )
            })?,
        };
        let vm = target_dir().join("vm");
        let kernel = std::env::var_os("CORRAL_VM_KERNEL")
            .map(PathBuf::from)
            .unwrap_or_else(|| vm.join("vmlinuz"));
        let image_dir = vm.join("systemd");
        let (initrd, rootfs) = (image_dir.join("initrd.img"), image_dir.join("rootfs.img"));
        for (what, path, how) in [
            ("guest kernel", &kernel, "tests/vm/fetch-kernel"),
            ("guest initramfs", &initrd, "tests/systemd-guest/build-image"),
            ("guest image", &rootfs, "tests/systemd-guest/build-image"),
        ] {
            if !path.is_file() {
                return Err(Missing::Prerequisite(format!(
                    "no {what} at {} (run {how} once, as root)",
                    path.display()
                )));
            }
        }
        let package = match std::env::var_os("CORRAL_GUEST_DEB") {
            Some(p) => PathBuf::from(p),
            None => newest_package(&target_dir().join("debian")).ok_or_else(|| {
                Missing::Prerequisite(format!(
                    "no corral_*.deb in {} (run packaging/build-deb first)",
                    target_dir().join("debian").display()
                ))
            })?,
        };
        if !package.is_file() {
            return Err(Missing::Misconfigured(format!("no package at {}", package.display())));
        }
        let mkfs = ["mkfs.ext4", "/sbin/mkfs.ext4", "/usr/sbin/mkfs.ext4"]
            .iter()
            .find_map(|p| {
                let p = Path::new(p);
                if p.is_absolute() {
                    p.is_file().then(|| p.to_path_buf())
                } else {
                    find_in_path(&p.to_string_lossy())
                }
            })
            .ok_or_else(|| {
                Missing::Prerequisite("no mkfs.ext4 (apt-get install e2fsprogs)".into())
            })?;
        let work = image_dir.join("run");
        std::fs::create_dir_all(&work).map_err(|e| {
            Missing::Misconfigured(format!("cannot create {}: {e}", work.display()))
        })?;
        Ok(Environment { qemu, kernel, initrd, rootfs, package, mkfs, accel, timeout, work })
    }
}

/// The per-run disk: the package, the scenario script and the plan, as an
/// ext4 image made without mounting anything.
fn stage_disk(env: &Environment, plan: &[&str]) -> std::io::Result<PathBuf> {
    let stage = env.work.join("stage");
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(&stage)?;
    std::fs::copy(&env.package, stage.join("corral.deb"))?;
    std::fs::write(stage.join("scenarios"), SCENARIO_SCRIPT)?;
    std::fs::write(stage.join("plan"), plan.join("\n") + "\n")?;
    let package_mib = std::fs::metadata(&env.package)?.len() >> 20;
    let image = env.work.join("stage.img");
    let _ = std::fs::remove_file(&image);
    let output = Command::new(&env.mkfs)
        .args(["-q", "-F", "-L", "corral-stage", "-d"])
        .arg(&stage)
        .arg(&image)
        .arg(format!("{}M", package_mib + 16))
        .stdin(Stdio::null())
        .output()?;
    std::fs::remove_dir_all(&stage)?;
    if !output.status.success() {
        return Err(std::io::Error::other(format!(
            "mkfs.ext4 -d failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(image)
}

struct Booted {
    console: String,
    results: String,
    elapsed: Duration,
    timed_out: bool,
    exit_code: Option<i32>,
}

fn boot(env: &Environment, stage: &Path) -> std::io::Result<Booted> {
    let console_log = env.work.join("guest.console");
    let results_log = env.work.join("guest.results");
    let qemu_log = env.work.join("guest.qemu");
    for log in [&console_log, &results_log] {
        let _ = std::fs::remove_file(log);
    }
    let mut cmd = Command::new(&env.qemu);
    cmd.args(env.accel.args());
    cmd.args(["-machine", "q35", "-m", &format!("{GUEST_MEMORY_MIB}M")]);
    cmd.args(["-smp", &GUEST_CPUS.to_string()]);
    cmd.arg("-kernel").arg(&env.kernel);
    cmd.arg("-initrd").arg(&env.initrd);
    cmd.args(["-append", KERNEL_CMDLINE]);
    // The image is shared by every run: the guest's writes go to a
    // throw-away overlay, so each run starts from the same machine.
    cmd.arg("-drive")
        .arg(format!("file={},format=raw,if=virtio,snapshot=on", env.rootfs.display()));
    cmd.arg("-drive").arg(format!("file={},format=raw,if=virtio,readonly=on", stage.display()));
    cmd.args(["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"]);
    // ttyS0: kernel and systemd; ttyS1: the scenarios' results.
    cmd.arg("-serial").arg(format!("file:{}", console_log.display()));
    cmd.arg("-serial").arg(format!("file:{}", results_log.display()));
    // qemu keeps the snapshot overlay in TMPDIR: next to the image, not in
    // a /tmp that may be a small tmpfs.
    cmd.env("TMPDIR", &env.work);
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    cmd.stderr(std::fs::File::create(&qemu_log)?);
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let (timed_out, exit_code) = loop {
        if let Some(status) = child.try_wait()? {
            break (false, status.code());
        }
        if start.elapsed() >= env.timeout {
            let _ = child.kill();
            let _ = child.wait();
            break (true, None);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let elapsed = start.elapsed();
    let read = |p: &Path| std::fs::read(p).map(|b| String::from_utf8_lossy(&b).into_owned());
    let mut console = read(&console_log).unwrap_or_default();
    let qemu_output = read(&qemu_log).unwrap_or_default();
    if !qemu_output.trim().is_empty() {
        console.push_str("\n[qemu] ");
        console.push_str(qemu_output.trim());
        console.push('\n');
    }
    Ok(Booted {
        console,
        results: read(&results_log).unwrap_or_default(),
        elapsed,
        timed_out,
        exit_code,
    })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut out = String::new();
    if start > 0 {
        out.push_str(&format!("[... {start} earlier lines ...]\n"));
    }
    for line in &all[start..] {
        out.push_str(line.trim_end_matches('\r'));
        out.push('\n');
    }
    out
}

fn summary(passed: usize, failed: usize, ignored: usize, filtered: usize, secs: f64) -> String {
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    format!(
        "\ntest result: {verdict}. {passed} passed; {failed} failed; {ignored} ignored; \
         0 measured; {filtered} filtered out; finished in {secs:.2}s\n"
    )
}

pub fn main(args: &[String]) -> ExitCode {
    let options = match Options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("systemd_guest: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A scenario named here but not defined in the script would only show
    // up as a guest failure after a boot of minutes: refuse it at once.
    let undefined: Vec<&&str> = SCENARIOS
        .iter()
        .filter(|s| !SCENARIO_SCRIPT.lines().any(|l| l == format!("{s}() {{")))
        .collect();
    if !undefined.is_empty() {
        eprintln!("systemd_guest: guest/scenarios defines no function for {undefined:?}");
        return ExitCode::FAILURE;
    }
    let plan: Vec<&str> =
        SCENARIOS.iter().copied().filter(|s| options.selects(&test_name(s))).collect();
    let filtered = SCENARIOS.len() - plan.len();
    if options.list {
        for scenario in &plan {
            println!("{}: test", test_name(scenario));
        }
        if !args.iter().any(|a| a == "terse" || a == "--format=terse") {
            println!("\n{} tests, 0 benchmarks", plan.len());
        }
        return ExitCode::SUCCESS;
    }
    let start = Instant::now();
    println!("\nrunning {} tests", plan.len());
    if plan.is_empty() {
        println!("{}", summary(0, 0, 0, filtered, 0.0));
        return ExitCode::SUCCESS;
    }
    let env = match Environment::find(&options) {
        Ok(env) => env,
        Err(Missing::Prerequisite(why)) if std::env::var("CI").as_deref() != Ok("true") => {
            println!("skipping the systemd guest ({} tests): {why}", plan.len());
            println!("{}", summary(0, 0, plan.len(), filtered, 0.0));
            return ExitCode::SUCCESS;
        }
        Err(Missing::Prerequisite(why) | Missing::Misconfigured(why)) => {
            println!("the systemd guest cannot run: {why}");
            println!("{}", summary(0, plan.len(), 0, filtered, 0.0));
            return ExitCode::FAILURE;
        }
    };
    let booted = stage_disk(&env, &plan).and_then(|stage| {
        println!(
            "systemd_guest: booting {} with {} under {:?}",
            env.rootfs.display(),
            env.package.display(),
            env.accel
        );
        let booted = boot(&env, &stage);
        // The package's copy is of no use once the guest is off.
        let _ = std::fs::remove_file(&stage);
        booted
    });
    let mut failed: Vec<(String, String)> = Vec::new();
    let mut passed = 0;
    match booted {
        Err(e) => {
            for scenario in &plan {
                println!("test {} ... FAILED", test_name(scenario));
                failed.push((test_name(scenario), format!("could not start the guest: {e}\n")));
            }
        }
        Ok(booted) => {
            let results = protocol::parse(&booted.results);
            let problem = if booted.timed_out {
                Some(format!("the guest was still running after {:?}", env.timeout))
            } else if booted.console.contains("Kernel panic") {
                Some("the guest kernel panicked".to_owned())
            } else if !results.done {
                Some(format!(
                    "the guest stopped before its scenarios finished (qemu exit {:?})",
                    booted.exit_code
                ))
            } else {
                None
            };
            let mut console_shown = false;
            for scenario in &plan {
                let name = test_name(scenario);
                let report = results.tests.get(*scenario);
                let (outcome, millis, output) = match report {
                    Some(r) => (r.outcome.clone(), r.millis, r.output.clone()),
                    None => (Outcome::NotRun, None, String::new()),
                };
                let time =
                    millis.map(|m| format!(" ({:.1} s)", m as f64 / 1000.0)).unwrap_or_default();
                if outcome == Outcome::Pass {
                    println!("test {name} ... ok{time}");
                    passed += 1;
                    continue;
                }
                println!("test {name} ... FAILED{time}");
                let mut why = output;
                match outcome {
                    Outcome::Unfinished => why.push_str("[the scenario never finished]\n"),
                    Outcome::NotRun => why.push_str("[the guest never ran this scenario]\n"),
                    _ => {}
                }
                if let Some(problem) = &problem {
                    if console_shown {
                        why.push_str(&format!("[{problem}; console shown above]\n"));
                    } else {
                        why.push_str(&format!(
                            "[{problem}; guest console:]\n{}",
                            tail(&booted.console, 150)
                        ));
                        console_shown = true;
                    }
                }
                failed.push((name, why));
            }
            let up = results
                .up_secs
                .map(|s| format!("scenario runner started {s:.1} s after boot, "))
                .unwrap_or_default();
            println!(
                "systemd_guest: {up}qemu ran {:.1} s{}",
                booted.elapsed.as_secs_f64(),
                problem.map(|p| format!("; {p}")).unwrap_or_default()
            );
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if failed.is_empty() {
        println!("{}", summary(passed, 0, 0, filtered, secs));
        return ExitCode::SUCCESS;
    }
    println!("\nfailures:\n");
    for (name, output) in &failed {
        println!("---- {name} ----\n{output}");
    }
    println!("failures:");
    for (name, _) in &failed {
        println!("    {name}");
    }
    println!("{}", summary(passed, failed.len(), 0, filtered, secs));
    println!("(guest logs: {})", env.work.display());
    ExitCode::FAILURE
}
