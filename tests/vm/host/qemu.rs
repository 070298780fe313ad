//! Booting one guest: qemu's command line for a topology, a timeout, and
//! what came out on the two serial ports.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::vm::topology::GuestTopology;

/// How the guest CPU is provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Software emulation: works everywhere, ~10–50× slower.
    Tcg,
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
}

impl Accel {
    pub fn parse(text: &str) -> Option<Accel> {
        match text {
            "tcg" => Some(Accel::Tcg),
            "kvm" => Some(Accel::Kvm),
            _ => None,
        }
    }

    pub fn args(self) -> [&'static str; 4] {
        match self {
            Accel::Tcg => ["-accel", "tcg,thread=multi", "-cpu", "max"],
            Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
        }
    }
}

#[derive(Debug)]
pub struct Boot<'a> {
    pub qemu: &'a Path,
    pub kernel: &'a Path,
    pub initramfs: &'a Path,
    pub topology: &'a GuestTopology,
    pub accel: Accel,
    pub timeout: Duration,
    /// Where the console and result port are written.
    pub console_log: PathBuf,
    pub results_log: PathBuf,
    /// A raw disk image, made sparse for each boot.
    pub disk: PathBuf,
}

#[derive(Debug)]
pub struct Booted {
    pub console: String,
    pub results: String,
    pub elapsed: Duration,
    /// Killed at the timeout.
    pub timed_out: bool,
    /// qemu's own exit status when it ended by itself; qemu exits 0 both on
    /// a guest power-off and on a guest reboot under `-no-reboot`.
    pub exit_code: Option<i32>,
}

/// The kernel command line. `cgroup_no_v1=all` leaves only cgroup v2;
/// `panic=-1` makes a panic reboot at once, which `-no-reboot` turns into
/// qemu exiting, so a panic never waits for the timeout.
pub const KERNEL_CMDLINE: &str = "console=ttyS0 quiet panic=-1 cgroup_no_v1=all";

/// The size of the guest's disk.
pub const DISK_BYTES: u64 = 64 << 20;

pub fn command(boot: &Boot) -> Command {
    let t = boot.topology;
    let mut cmd = Command::new(boot.qemu);
    cmd.args(boot.accel.args());
    cmd.args(["-machine", "q35", "-m", &format!("{}M", t.memory_mib())]);
    cmd.args([
        "-smp",
        &format!("{},sockets={},cores={},threads=1", t.cpu_count(), t.sockets, t.cores_per_socket),
    ]);
    for (id, node) in t.nodes.iter().enumerate() {
        cmd.args(["-object", &format!("memory-backend-ram,size={}M,id=m{id}", node.memory_mib)]);
        let cpus: Vec<String> = node.cpus.iter().map(|c| format!("cpus={c}")).collect();
        cmd.args(["-numa", &format!("node,nodeid={id},{},memdev=m{id}", cpus.join(","))]);
    }
    for &(a, b, d) in t.distances {
        cmd.args(["-numa", &format!("dist,src={a},dst={b},val={d}")]);
    }
    cmd.arg("-kernel").arg(boot.kernel);
    cmd.arg("-initrd").arg(boot.initramfs);
    cmd.args(["-append", KERNEL_CMDLINE]);
    cmd.args(["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"]);
    // The guest's one block device (/dev/vda), for the I/O and device tests.
    cmd.arg("-drive").arg(format!("file={},if=virtio,format=raw", boot.disk.display()));
    // ttyS0: the console; ttyS1: the guest suite's results.
    cmd.arg("-serial").arg(format!("file:{}", boot.console_log.display()));
    cmd.arg("-serial").arg(format!("file:{}", boot.results_log.display()));
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    cmd
}

pub fn run(boot: &Boot) -> std::io::Result<Booted> {
    let _ = std::fs::remove_file(&boot.console_log);
    let _ = std::fs::remove_file(&boot.results_log);
    // Fresh and sparse each boot: 64 MiB the guest may overwrite, taking
    // only what it writes on the host's disk.
    std::fs::File::create(&boot.disk)?.set_len(DISK_BYTES)?;
    let start = Instant::now();
    let qemu_log = boot.console_log.with_extension("qemu");
    let mut child = command(boot).stderr(std::fs::File::create(&qemu_log)?).spawn()?;
    let deadline = start + boot.timeout;
    let (timed_out, exit_code) = loop {
        if let Some(status) = child.try_wait()? {
            break (false, status.code());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break (true, None);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = start.elapsed();
    let read = |p: &Path| std::fs::read(p).map(|b| String::from_utf8_lossy(&b).into_owned());
    let mut console = read(&boot.console_log).unwrap_or_default();
    let qemu_output = read(&qemu_log).unwrap_or_default();
    if !qemu_output.trim().is_empty() {
        console.push_str("\n[qemu] ");
        console.push_str(qemu_output.trim());
        console.push('\n');
    }
    Ok(Booted {
        console,
        results: read(&boot.results_log).unwrap_or_default(),
        elapsed,
        timed_out,
        exit_code,
    })
}
