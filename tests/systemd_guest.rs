//! The systemd guest: corral installed from its Debian package and run as a
//! service on a machine that boots systemd as PID 1 on pure cgroup v2.
//!
//! The host half (this binary, `harness = false`) stages the package and the
//! scenario script on a small second disk, boots the Debian image that
//! `tests/systemd-guest/build-image` made under qemu, and turns what the
//! guest's scenario runner reports on its second serial port into one
//! libtest-style line per scenario. See `tests/systemd-guest/README.md`.

// Shared with the VM suite: the result-port protocol, the command line and
// prerequisites, and qemu's accelerator choice (which lives beside the
// suite's topologies it does not use here).
#[allow(dead_code)]
mod vm {
    #[path = "protocol.rs"]
    pub mod protocol;
    #[path = "topology.rs"]
    pub mod topology;
    pub mod host {
        #[path = "harness.rs"]
        pub mod harness;
        #[path = "qemu.rs"]
        pub mod qemu;
    }
}

#[path = "systemd-guest/host.rs"]
mod host;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    host::main(&args)
}
