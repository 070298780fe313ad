//! Both halves of the VM suite and the protocol between them.
//!
//! - [`host`]: finds qemu and the guest kernel, builds the initramfs, boots
//!   each topology and reports.
//! - [`guest`]: the tests that run inside the guest, and the workloads they
//!   start (a memory hog, a busy loop) as modes of this same binary.
//! - [`protocol`]: the lines the guest writes on its result port.

use std::process::ExitCode;

pub mod guest;
pub mod host;
pub mod protocol;
pub mod topology;

pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("guest") => guest::suite_main(&args[1..]),
        Some("guest-test") => guest::test_main(&args[1..]),
        Some("hog") => guest::workload::hog_main(&args[1..]),
        _ => host::main(&args),
    }
}
