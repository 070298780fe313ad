//! The host side: find qemu and the guest kernel, build an initramfs per
//! topology, boot, and report every guest test like libtest does.
//!
//! Nothing here is skipped under `CI=true`: a missing qemu or kernel, a boot
//! that fails, a kernel panic or a timeout is a failure, shown with the
//! guest's console.

pub mod harness;
mod initramfs;
mod qemu;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::vm::guest::{Scope, TESTS};
use crate::vm::protocol::{self, Outcome};
use crate::vm::topology::{self, GuestTopology};

use harness::{find_in_path, Missing, Options};
use qemu::Accel;

/// The guest's `/init`.
const INIT: &str = include_str!("../init");

/// Default limit for one boot, suite included.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// Default limit for one guest test.
const TEST_TIMEOUT_SECS: u64 = 120;

fn test_name(topology: &GuestTopology, test: &str) -> String {
    format!("vm::{}::{test}", topology.name)
}

/// Which guest tests run on which topology: everything on the first, the
/// topology-dependent ones on every other.
fn plan(options: &Options) -> Vec<(GuestTopology, Vec<&'static str>)> {
    let mut plan = Vec::new();
    for (i, topo) in topology::ALL.iter().enumerate() {
        let tests: Vec<&'static str> = TESTS
            .iter()
            .filter(|t| i == 0 || t.scope == Scope::EveryTopology)
            .map(|t| t.name)
            .filter(|name| options.selects(&test_name(topo, name)))
            .collect();
        if !tests.is_empty() {
            plan.push((*topo, tests));
        }
    }
    plan
}

/// What the suite needs from the host.
struct Environment {
    qemu: PathBuf,
    kernel: PathBuf,
    busybox: PathBuf,
    accel: Accel,
    work: PathBuf,
    boot_timeout: Duration,
    test_timeout_secs: u64,
}

/// `$CARGO_TARGET_DIR/vm`, else `target/vm` in the checkout: where
/// `tests/vm/fetch-kernel` puts the kernel and the suite its logs.
fn vm_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("vm")
}

fn env_secs(var: &str) -> Result<Option<u64>, String> {
    match std::env::var(var) {
        Ok(v) => v.parse().map(Some).map_err(|_| format!("{var}={v}: not a number of seconds")),
        Err(_) => Ok(None),
    }
}

impl Environment {
    fn find(options: &Options) -> Result<Environment, Missing> {
        let accel = options.accelerator()?;
        let boot_timeout = env_secs("CORRAL_VM_TIMEOUT")
            .map_err(Missing::Misconfigured)?
            .map_or(BOOT_TIMEOUT, Duration::from_secs);
        let test_timeout_secs = env_secs("CORRAL_VM_TEST_TIMEOUT")
            .map_err(Missing::Misconfigured)?
            .unwrap_or(TEST_TIMEOUT_SECS);

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
        let given_kernel = std::env::var_os("CORRAL_VM_KERNEL").map(PathBuf::from);
        let kernel = given_kernel.clone().unwrap_or_else(|| vm_dir().join("vmlinuz"));
        if !kernel.is_file() {
            return Err(Missing::Prerequisite(format!(
                "no guest kernel at {} (run tests/vm/fetch-kernel once)",
                kernel.display()
            )));
        }
        // The fetched kernel has the guest's disk driver as a module: without
        // the modules, the I/O and device tests would fail on a missing
        // /dev/vda rather than say what is missing.
        let load_order = vm_dir().join("modules/load-order");
        if given_kernel.is_none() && !load_order.is_file() {
            return Err(Missing::Prerequisite(format!(
                "no guest kernel modules at {} (run tests/vm/fetch-kernel once)",
                load_order.display()
            )));
        }
        let busybox = PathBuf::from("/bin/busybox");
        if !busybox.is_file() {
            return Err(Missing::Prerequisite(
                "no /bin/busybox (apt-get install busybox-static)".into(),
            ));
        }
        let work = vm_dir().join("run");
        std::fs::create_dir_all(&work).map_err(|e| {
            Missing::Misconfigured(format!("cannot create {}: {e}", work.display()))
        })?;
        Ok(Environment { qemu, kernel, busybox, accel, work, boot_timeout, test_timeout_secs })
    }
}

/// The parts of the initramfs every topology shares, prepared once.
struct Payload {
    corral: PathBuf,
    shim: PathBuf,
    guest: PathBuf,
}

impl Payload {
    fn prepare(env: &Environment) -> std::io::Result<Payload> {
        let bin = env.work.join("bin");
        std::fs::create_dir_all(&bin)?;
        let corral = initramfs::stripped(Path::new(env!("CARGO_BIN_EXE_corral")), &bin)?;
        let shim = initramfs::stripped(Path::new(env!("CARGO_BIN_EXE_corral-shim")), &bin)?;
        let guest = initramfs::stripped(&std::env::current_exe()?, &bin)?;
        Ok(Payload { corral, shim, guest })
    }

    fn contents(&self, env: &Environment, plan_line: &str) -> std::io::Result<initramfs::Contents> {
        let mut c = initramfs::Contents::new();
        for dir in ["dev", "proc", "sys", "tmp", "run", "root", "newroot", "usr/bin", "sbin"] {
            c.dir(dir);
        }
        c.char_device("dev/console", 5, 1);
        c.char_device("dev/null", 1, 3);
        c.binary("bin/busybox", &env.busybox, &env.busybox)?;
        c.binary("corral-vm/corral", &self.corral, Path::new(env!("CARGO_BIN_EXE_corral")))?;
        // The agent starts its runs' shims from beside itself.
        c.binary(
            "corral-vm/corral-shim",
            &self.shim,
            Path::new(env!("CARGO_BIN_EXE_corral-shim")),
        )?;
        c.binary("corral-vm/vm_guest", &self.guest, &std::env::current_exe()?)?;
        c.data("init", 0o755, INIT);
        c.data("corral-vm/plan", 0o644, plan_line);
        c.data(
            "etc/passwd",
            0o644,
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        );
        c.data("etc/group", 0o644, "root:x:0:\nnogroup:x:65534:\n");
        c.symlink("bin/sh", "busybox");
        // Modules /init loads, in the order fetch-kernel wrote (the disk's
        // virtio stack, tun and fuse); a kernel given without them gets none.
        let modules = vm_dir().join("modules");
        if let Ok(order) = std::fs::read_to_string(modules.join("load-order")) {
            for name in order.lines().filter(|l| !l.is_empty()) {
                c.copy(
                    &format!("corral-vm/modules/{name}.ko"),
                    0o644,
                    &modules.join(format!("{name}.ko")),
                );
            }
            c.copy("corral-vm/modules/load-order", 0o644, &modules.join("load-order"));
        }
        Ok(c)
    }
}

struct Tally {
    passed: usize,
    failed: Vec<(String, String)>,
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

fn run_topology(
    env: &Environment,
    payload: &Payload,
    topo: &GuestTopology,
    tests: &[&'static str],
    tally: &mut Tally,
) {
    let plan_line =
        format!("--topology {} --timeout {} {}", topo.name, env.test_timeout_secs, tests.join(" "));
    let archive = env.work.join(format!("{}.cpio", topo.name));
    let prepared = payload.contents(env, &plan_line).and_then(|c| c.write(&archive));
    let booted = prepared.and_then(|size| {
        println!(
            "{}: booting {} CPUs in {} NUMA nodes, {} MiB, {:?}, initramfs {} MiB",
            test_name(topo, "*"),
            topo.cpu_count(),
            topo.nodes.len(),
            topo.memory_mib(),
            env.accel,
            size >> 20
        );
        qemu::run(&qemu::Boot {
            qemu: &env.qemu,
            kernel: &env.kernel,
            initramfs: &archive,
            topology: topo,
            accel: env.accel,
            timeout: env.boot_timeout,
            console_log: env.work.join(format!("{}.console", topo.name)),
            results_log: env.work.join(format!("{}.results", topo.name)),
            disk: env.work.join(format!("{}.disk", topo.name)),
        })
    });
    let booted = match booted {
        Ok(b) => b,
        Err(e) => {
            let why = format!("could not start the guest: {e}\n");
            for test in tests {
                println!("test {} ... FAILED", test_name(topo, test));
                tally.failed.push((test_name(topo, test), why.clone()));
            }
            return;
        }
    };
    let results = protocol::parse(&booted.results);
    let panicked = booted.console.contains("Kernel panic");
    let mut boot_problem = None;
    if booted.timed_out {
        boot_problem = Some(format!("the guest was still running after {:?}", env.boot_timeout));
    } else if panicked {
        boot_problem = Some("the guest kernel panicked".to_owned());
    } else if !results.done {
        boot_problem = Some(format!(
            "the guest stopped before its suite finished (qemu exit {:?})",
            booted.exit_code
        ));
    }
    let console = if booted.console.trim().is_empty() {
        "(empty: the kernel printed nothing at its quiet log level)\n".to_owned()
    } else {
        tail(&booted.console, 200)
    };
    let mut console_shown_in: Option<String> = None;
    for test in tests {
        let name = test_name(topo, test);
        let report = results.tests.get(*test);
        let (outcome, millis, output) = match report {
            Some(r) => (r.outcome.clone(), r.millis, r.output.clone()),
            None => (Outcome::NotRun, None, String::new()),
        };
        let time = millis.map(|m| format!(" ({:.1} s)", m as f64 / 1000.0)).unwrap_or_default();
        if outcome == Outcome::Pass {
            println!("test {name} ... ok{time}");
            tally.passed += 1;
            continue;
        }
        println!("test {name} ... FAILED{time}");
        let mut why = output;
        match outcome {
            Outcome::Unfinished => why.push_str("[the test never finished]\n"),
            Outcome::NotRun => why.push_str("[the guest never ran this test]\n"),
            _ => {}
        }
        if let Some(problem) = &boot_problem {
            match &console_shown_in {
                None => {
                    why.push_str(&format!("[{problem}; guest console:]\n{console}"));
                    console_shown_in = Some(name.clone());
                }
                Some(first) => why.push_str(&format!("[{problem}; console under {first}]\n")),
            }
        }
        tally.failed.push((name, why));
    }
    let boot = results.up_secs.map(|s| format!("guest up after {s:.1} s, ")).unwrap_or_default();
    println!(
        "{}: {boot}qemu ran {:.1} s{}",
        test_name(topo, "*"),
        booted.elapsed.as_secs_f64(),
        boot_problem.map(|p| format!("; {p}")).unwrap_or_default()
    );
}

pub fn main(args: &[String]) -> ExitCode {
    let options = match Options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("vm_guest: {e}");
            return ExitCode::FAILURE;
        }
    };
    let total: usize = plan(&Options::default()).iter().map(|(_, t)| t.len()).sum();
    let plan = plan(&options);
    let count: usize = plan.iter().map(|(_, t)| t.len()).sum();
    let filtered = total - count;
    if options.list {
        for (topo, tests) in &plan {
            for test in tests {
                println!("{}: test", test_name(topo, test));
            }
        }
        if !args.iter().any(|a| a == "terse" || a == "--format=terse") {
            println!("\n{count} tests, 0 benchmarks");
        }
        return ExitCode::SUCCESS;
    }
    let start = Instant::now();
    println!("\nrunning {count} tests");
    if count == 0 {
        println!("\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; {filtered} filtered out; finished in 0.00s\n");
        return ExitCode::SUCCESS;
    }
    let env = match Environment::find(&options) {
        Ok(env) => env,
        Err(Missing::Prerequisite(why)) if std::env::var("CI").as_deref() != Ok("true") => {
            println!("skipping the VM suite ({count} tests): {why}");
            println!("\ntest result: ok. 0 passed; 0 failed; {count} ignored; 0 measured; {filtered} filtered out; finished in 0.00s\n");
            return ExitCode::SUCCESS;
        }
        Err(Missing::Prerequisite(why) | Missing::Misconfigured(why)) => {
            println!("the VM suite cannot run: {why}");
            println!("\ntest result: FAILED. 0 passed; {count} failed; 0 ignored; 0 measured; {filtered} filtered out; finished in 0.00s\n");
            return ExitCode::FAILURE;
        }
    };
    let mut tally = Tally { passed: 0, failed: Vec::new() };
    match Payload::prepare(&env) {
        Ok(payload) => {
            for (topo, tests) in &plan {
                run_topology(&env, &payload, topo, tests, &mut tally);
            }
        }
        Err(e) => {
            for (topo, tests) in &plan {
                for test in tests {
                    tally.failed.push((
                        test_name(topo, test),
                        format!("cannot prepare the guest binaries: {e}\n"),
                    ));
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if tally.failed.is_empty() {
        println!("\ntest result: ok. {} passed; 0 failed; 0 ignored; 0 measured; {filtered} filtered out; finished in {secs:.2}s\n", tally.passed);
        return ExitCode::SUCCESS;
    }
    println!("\nfailures:\n");
    for (name, output) in &tally.failed {
        println!("---- {name} ----\n{output}");
    }
    println!("failures:");
    for (name, _) in &tally.failed {
        println!("    {name}");
    }
    println!(
        "\ntest result: FAILED. {} passed; {} failed; 0 ignored; 0 measured; {filtered} filtered out; finished in {secs:.2}s\n",
        tally.passed,
        tally.failed.len()
    );
    println!("(guest logs: {})", env.work.display());
    ExitCode::FAILURE
}
