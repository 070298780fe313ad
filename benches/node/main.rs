//! The node benchmark: what a node operator asks of corral, measured beside
//! its peers (crun, runc, conmon, Slurm) and the floor, in one run, printed
//! as one table (`table.rs`).
//!
//! `benches/node/run` is the command: it checks for (and installs, where it
//! can) the peers, then runs `cargo bench --bench node`. Arguments after
//! `--` name sections to run (`footprint launch command throughput scale
//! reaction`); none means all.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) every section
//! runs once at a small scale as a smoke test: the figures then mean
//! nothing, but each path is exercised.

#[path = "../../tests/agent_harness/mod.rs"]
mod agent_harness;
#[path = "../../tests/common/mod.rs"]
mod common;

mod command;
mod footprint;
mod launch;
mod peers;
mod reaction;
mod scale;
mod table;
mod throughput;

use std::path::PathBuf;

use table::Row;

/// What every section gets: the scale, the binaries, a scratch area and the
/// peers found on this machine.
pub struct Bench {
    /// `cargo bench` (full scale) rather than the `cargo test` smoke run.
    pub full: bool,
    /// The `corral` binary under test.
    pub corral: PathBuf,
    /// Scratch space outside /tmp (jobs get a private /tmp), removed at the
    /// end.
    pub scratch: tempfile::TempDir,
    /// A busybox root filesystem, shared by corral's and the peers' runs.
    pub rootfs: PathBuf,
    pub peers: peers::Peers,
}

impl Bench {
    /// `full` at full scale, `smoke` under `cargo test`.
    pub fn scale(&self, full: usize, smoke: usize) -> usize {
        if self.full {
            full
        } else {
            smoke
        }
    }
}

/// One section of the table: a name to select it by and what measures it.
struct Section {
    name: &'static str,
    measure: fn(&Bench) -> Vec<Row>,
}

const SECTIONS: &[Section] = &[
    Section { name: "footprint", measure: footprint::measure },
    Section { name: "launch", measure: launch::measure },
    Section { name: "command", measure: command::measure },
    Section { name: "throughput", measure: throughput::measure },
    Section { name: "scale", measure: scale::measure },
    Section { name: "reaction", measure: reaction::measure },
];

fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let kernel = read("/proc/sys/kernel/osrelease");
    let model = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    format!(
        "{cpus} CPUs ({model}), {:.1} GiB, Linux {}",
        mem_kib as f64 / (1024.0 * 1024.0),
        kernel.trim()
    )
}

fn main() {
    // The crun/runc timing child (see peers/oci.rs), before anything else.
    if let Some(code) = peers::oci::child_main() {
        std::process::exit(code);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let chosen: Vec<&str> =
        args.iter().filter(|a| !a.starts_with('-')).map(String::as_str).collect();
    if let Some(unknown) = chosen.iter().find(|c| !SECTIONS.iter().any(|s| s.name == **c)) {
        eprintln!(
            "unknown section {unknown:?}; sections: {}",
            SECTIONS.iter().map(|s| s.name).collect::<Vec<_>>().join(" ")
        );
        std::process::exit(2);
    }
    let scratch = tempfile::Builder::new()
        .prefix("node-bench-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("scratch directory");
    let rootfs = common::busybox_rootfs(&scratch.path().join("rootfs"));
    let bench = Bench {
        full,
        // CORRAL_NODE_BENCH_BINARY: another build of corral to measure (an
        // earlier one, for a before/after comparison in one sitting).
        corral: std::env::var_os("CORRAL_NODE_BENCH_BINARY")
            .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_corral")), PathBuf::from),
        rootfs,
        scratch,
        peers: peers::Peers::detect(),
    };
    println!("corral node benchmark, {}", chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"));
    println!("machine: {}", machine());
    println!("{}", bench.peers.summary());
    if !full {
        println!("smoke run (cargo test): small scale, figures not meaningful");
    }
    let mut rows = Vec::new();
    for section in SECTIONS.iter().filter(|s| chosen.is_empty() || chosen.contains(&s.name)) {
        eprintln!("== {}", section.name);
        rows.extend((section.measure)(&bench));
    }
    println!();
    print!("{}", table::render(&rows));
}
