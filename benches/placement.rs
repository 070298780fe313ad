//! Cost of one placement decision against a ledger of 10,000 runs on the
//! 64-CPU fixture machine, printed beside two reference costs measured in
//! the same process: one pass over the 10,000 assignments, and a clone of
//! the ledger. Run with `cargo bench --bench placement`.
//!
//! The ledger is what a busy node could hold: 40 exclusive runs of 1 or 2
//! CPUs with 1 GiB accounted each (50 CPUs), and 9,960 shared-pool runs with
//! 4-24 MiB hard limits (small cron-style jobs), all placed through the
//! allocator itself. Cores 0 and 32 are reserved for the system.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use corral::placement::{
    place, victims, Candidate, Ledger, NumaPolicy, PlacementConfig, Rank, ReleaseMode, Request,
    RunId,
};
use corral::topology::{discover, Topology};
use corral::vocab::Bytes;

const RUNS: usize = 10_000;
const EXCLUSIVE_RUNS: usize = 40;
const SAMPLES: usize = 101;
/// Each sample repeats the operation until this much time has passed, so
/// the clock's own cost does not show.
const SAMPLE_TIME: Duration = Duration::from_millis(4);

fn main() {
    let root =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysfs/dual-socket-snc");
    let topo = discover(&root.join("sys"), &root.join("proc")).expect("fixture topology");
    let (ledger, candidates) = busy_ledger(&topo);
    let exclusive = ledger.assignments().filter(|a| !a.is_shared()).count();
    println!(
        "dual-socket-snc: {} CPUs, {} nodes; ledger of {} runs ({} exclusive holding {} CPUs, {} shared); shared pool {} CPUs",
        topo.cpus().len(),
        topo.nodes().len(),
        ledger.len(),
        exclusive,
        ledger.held_cpus().len(),
        ledger.len() - exclusive,
        ledger.shared_pool().len(),
    );

    let new_run = || RunId::new("new-run");
    let decisions: Vec<(&str, Operation)> = vec![
        (
            "place 4 exclusive CPUs, prefer, 2 GiB",
            Box::new(|| {
                let request = Request::exclusive(new_run(), 4)
                    .with_numa(NumaPolicy::Prefer)
                    .with_memory(Bytes::from_gib(2));
                black_box(place(&topo, &ledger, &request).unwrap());
            }),
        ),
        (
            "place 2 exclusive CPUs, single-node, 1 GiB",
            Box::new(|| {
                let request = Request::exclusive(new_run(), 2)
                    .with_numa(NumaPolicy::SingleNode)
                    .with_memory(Bytes::from_gib(1));
                black_box(place(&topo, &ledger, &request).unwrap());
            }),
        ),
        (
            "place shared pool, 16 MiB",
            Box::new(|| {
                let request = Request::shared(new_run()).with_memory(Bytes::from_mib(16));
                black_box(place(&topo, &ledger, &request).unwrap());
            }),
        ),
        (
            "refuse 20 CPUs, single-node (no fit)",
            Box::new(|| {
                let request = Request::exclusive(new_run(), 20).with_numa(NumaPolicy::SingleNode);
                black_box(place(&topo, &ledger, &request).unwrap_err());
            }),
        ),
        (
            "victims for 12 CPUs single-node, 10,000 candidates",
            Box::new(|| {
                let request = Request::exclusive(new_run(), 12).with_numa(NumaPolicy::SingleNode);
                black_box(victims(&topo, &ledger, &request, &candidates).unwrap());
            }),
        ),
        (
            "victims for 12 CPUs single-node, the 40 exclusive runs",
            Box::new(|| {
                let request = Request::exclusive(new_run(), 12).with_numa(NumaPolicy::SingleNode);
                black_box(
                    victims(&topo, &ledger, &request, &candidates[..EXCLUSIVE_RUNS]).unwrap(),
                );
            }),
        ),
        (
            "victims for a 100 GiB shared run, 10,000 candidates",
            Box::new(|| {
                let request = Request::shared(new_run()).with_memory(Bytes::from_gib(100));
                black_box(victims(&topo, &ledger, &request, &candidates).unwrap());
            }),
        ),
    ];

    // `cargo bench` passes --bench; `cargo test --all-targets` runs this
    // binary without it, and then each operation runs once as a smoke test.
    if !std::env::args().any(|arg| arg == "--bench") {
        for (_, operation) in &decisions {
            operation();
        }
        println!("smoke run: every operation ran once; `cargo bench --bench placement` measures");
        return;
    }

    let pass = median(|| {
        let total: u64 = ledger.assignments().map(|a| a.memory_total().get()).sum();
        black_box(total);
    });
    let clone = median(|| {
        black_box(ledger.clone());
    });

    println!();
    println!("{:<52} {:>11} {:>13} {:>13}", "operation", "median", "/ one pass", "/ clone");
    for (name, decision) in &decisions {
        let time = median(decision);
        println!(
            "{:<52} {:>11} {:>12.4}x {:>12.5}x",
            name,
            show(time),
            time.as_secs_f64() / pass.as_secs_f64(),
            time.as_secs_f64() / clone.as_secs_f64()
        );
    }
    println!("{:<52} {:>11}", "reference: one pass over the 10,000 assignments", show(pass));
    println!("{:<52} {:>11}", "reference: clone of the ledger", show(clone));

    let cpus = Request::exclusive(new_run(), 12).with_numa(NumaPolicy::SingleNode);
    let memory = Request::shared(new_run()).with_memory(Bytes::from_gib(100));
    println!(
        "\nvictims chosen: {} runs for the 12-CPU request, {} runs for the 100 GiB request",
        victims(&topo, &ledger, &cpus, &candidates).map_or(0, |v| v.len()),
        victims(&topo, &ledger, &memory, &candidates).map_or(0, |v| v.len()),
    );
}

type Operation<'a> = Box<dyn Fn() + 'a>;

/// The ledger described in the module docs, and every run as a preemption
/// candidate (priority and mode varying).
fn busy_ledger(topo: &Topology) -> (Ledger, Vec<Candidate>) {
    let config = PlacementConfig { reserved_cpus: "0,32".parse().unwrap(), ..Default::default() };
    let mut ledger = Ledger::new(topo, config).unwrap();
    let mut random = XorShift(0x5eed_c0de);
    let mut candidates = Vec::with_capacity(RUNS);
    for i in 0..RUNS {
        let owner = RunId::new(format!("run-{i:05}"));
        let request = if i < EXCLUSIVE_RUNS {
            let cpus = [1, 1, 1, 2][i % 4];
            let numa = [NumaPolicy::SingleNode, NumaPolicy::Prefer, NumaPolicy::None][i % 3];
            Request::exclusive(owner.clone(), cpus).with_numa(numa).with_memory(Bytes::from_gib(1))
        } else {
            Request::shared(owner.clone()).with_memory(Bytes::from_mib(4 + random.next() % 21))
        };
        ledger.admit(topo, &request).unwrap_or_else(|e| panic!("building the ledger: {e}"));
        candidates.push(Candidate {
            owner,
            priority: Rank((random.next() % 100) as i32),
            mode: if random.next().is_multiple_of(2) {
                ReleaseMode::Suspend
            } else {
                ReleaseMode::Requeue
            },
        });
    }
    (ledger, candidates)
}

/// Median over [`SAMPLES`] samples of the time per call.
fn median(operation: impl Fn()) -> Duration {
    // Calibrate the batch size once.
    let mut batch = 1u32;
    loop {
        let start = Instant::now();
        for _ in 0..batch {
            operation();
        }
        if start.elapsed() >= SAMPLE_TIME || batch >= 1 << 20 {
            break;
        }
        batch *= 2;
    }
    let mut samples: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                operation();
            }
            start.elapsed() / batch
        })
        .collect();
    samples.sort();
    samples[SAMPLES / 2]
}

fn show(time: Duration) -> String {
    let nanos = time.as_nanos();
    if nanos >= 1_000_000 {
        format!("{:.2} ms", nanos as f64 / 1e6)
    } else if nanos >= 1_000 {
        format!("{:.2} µs", nanos as f64 / 1e3)
    } else {
        format!("{nanos} ns")
    }
}

/// Deterministic sizes without a dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
