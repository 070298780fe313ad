//! Workloads the guest tests start inside job cgroups, as modes of this
//! binary so the initramfs needs nothing else.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// `vm_guest hog --mib N [--hold] [--report]`: allocates and touches N MiB
/// of anonymous memory, says so on stdout, then exits (or, with `--hold`,
/// keeps it until killed). `--report` adds the CPUs and memory nodes it may
/// use and where its anonymous pages are, from its own `/proc/self`.
pub fn hog_main(args: &[String]) -> ExitCode {
    let mut mib = None;
    let mut hold = false;
    let mut report = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--mib" => mib = it.next().and_then(|m| m.parse::<usize>().ok()),
            "--hold" => hold = true,
            "--report" => report = true,
            other => {
                eprintln!("hog: unknown argument {other}");
                return ExitCode::FAILURE;
            }
        }
    }
    let Some(mib) = mib else {
        eprintln!("usage: vm_guest hog --mib N [--hold] [--report]");
        return ExitCode::FAILURE;
    };
    let mut memory = vec![0u8; mib << 20];
    // Write every page: calloc'ed pages are not allocated until touched.
    for page in memory.chunks_mut(4096) {
        page[0] = 1;
    }
    std::hint::black_box(&memory);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "hog: allocated {mib} MiB");
    if report {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        for line in status.lines() {
            if line.starts_with("Cpus_allowed_list:") || line.starts_with("Mems_allowed_list:") {
                let _ = writeln!(out, "hog: {line}");
            }
        }
        let maps = std::fs::read_to_string("/proc/self/numa_maps").unwrap_or_default();
        let pages = super::util::anon_pages_per_node(&maps);
        let list: Vec<String> = pages.iter().map(|(n, p)| format!("N{n}={p}")).collect();
        let _ = writeln!(out, "hog: anon pages {}", list.join(" "));
    }
    let _ = out.flush();
    drop(out);
    if hold {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    ExitCode::SUCCESS
}
