//! The VM suite: corral on a pure cgroup v2 kernel with several NUMA nodes.
//!
//! This test binary plays both sides. On the host (no arguments, or libtest
//! style filters) it boots guest kernels under qemu, one per topology, with
//! itself, corral and busybox in the initramfs, and turns what the guest
//! reports into one pass/fail line per guest test. Inside the guest, the
//! initramfs's `/init` runs it again as `vm_guest guest ...`, where it runs
//! the guest tests against the real kernel. See `tests/vm/README.md`.

#[path = "vm/mod.rs"]
mod vm;

fn main() -> std::process::ExitCode {
    vm::main()
}
