//! Workloads the guest tests start inside job cgroups, as modes of this
//! binary so the initramfs needs nothing else.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// `vm_guest hog --mib N [--hold] [--report] [--every-ms MS | --populate]`:
/// allocates and touches N MiB of anonymous memory, says so on stdout, then
/// exits (or, with `--hold`, keeps it until killed). `--report` adds the
/// CPUs and memory nodes it may use and where its anonymous pages are, from
/// its own `/proc/self`. `--every-ms MS` allocates one MiB at a time, MS
/// milliseconds apart, and says so after each (a slow allocator);
/// `--populate` takes all N MiB in one `mmap(MAP_POPULATE)`, charged inside
/// one system call that nothing in user space can interrupt (a burst).
pub fn hog_main(args: &[String]) -> ExitCode {
    let mut mib = None;
    let mut hold = false;
    let mut report = false;
    let mut every = None;
    let mut populate = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--mib" => mib = it.next().and_then(|m| m.parse::<usize>().ok()),
            "--hold" => hold = true,
            "--report" => report = true,
            "--every-ms" => {
                every = it.next().and_then(|m| m.parse::<u64>().ok()).map(Duration::from_millis)
            }
            "--populate" => populate = true,
            other => {
                eprintln!("hog: unknown argument {other}");
                return ExitCode::FAILURE;
            }
        }
    }
    let Some(mib) = mib else {
        eprintln!("usage: vm_guest hog --mib N [--hold] [--report] [--every-ms MS | --populate]");
        return ExitCode::FAILURE;
    };
    let mut out = std::io::stdout().lock();
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    if populate {
        // SAFETY: a fresh private anonymous mapping, not aliased; it is
        // never unmapped, as the memory is held until the process ends.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mib << 20,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if at == libc::MAP_FAILED {
            eprintln!("hog: mmap: {}", std::io::Error::last_os_error());
            return ExitCode::FAILURE;
        }
    } else if let Some(every) = every {
        for n in 1..=mib {
            chunks.push(touched(1 << 20));
            let _ = writeln!(out, "hog: at {n} MiB");
            let _ = out.flush();
            std::thread::sleep(every);
        }
    } else {
        chunks.push(touched(mib << 20));
    }
    std::hint::black_box(&chunks);
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

/// `bytes` of memory, every page written: calloc'ed pages are not allocated
/// until touched.
fn touched(bytes: usize) -> Vec<u8> {
    let mut memory = vec![0u8; bytes];
    for page in memory.chunks_mut(4096) {
        page[0] = 1;
    }
    memory
}
