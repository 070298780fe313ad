//! The cgroup statistics and event parsers: every one of them on any text, and the
//! statistics reader over a scratch cgroup directory holding any file contents.
//!
//! Input: `version NUL file NUL file ...`: `version` is `v1` or `v2` and the clock tick
//! rate (`v1 100`); the files are the reader's, in the order of `V1_FILES` or
//! `V2_FILES` (missing ones empty). Every part also goes through every parser.
//!
//! Invariants: no panic on any content; the reader fails only on content that is not
//! UTF-8; the working set never exceeds usage; what `memory.oom_control`,
//! `cgroup.events`, `memory.events`, `io.stat` and flat keyed files parse to, written
//! back the way the kernel writes them, parses to the same again.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use corral::cgroup::stats::{flat_keyed, CpuStats, MemoryStats};
use corral::cgroup::v1::memory::parse_oom_control;
use corral::cgroup::v2::events::parse_events;
use corral::cgroup::v2::memory::MemoryEventCounts;
use corral::cgroup::{fs, v1, v2, CgroupError};
use corral::fuzzing::stats_reader;
use libfuzzer_sys::fuzz_target;

/// Every file the statistics reader opens, v1 then v2.
const V1_FILES: [&str; 12] = [
    "cpuacct.usage",
    "cpuacct.stat",
    "cpu.stat",
    "memory.usage_in_bytes",
    "memory.max_usage_in_bytes",
    "memory.failcnt",
    "memory.memsw.failcnt",
    "memory.stat",
    "memory.oom_control",
    "pids.current",
    "blkio.throttle.io_service_bytes",
    "blkio.throttle.io_serviced",
];
const V2_FILES: [&str; 11] = [
    "cpu.stat",
    "memory.current",
    "memory.peak",
    "memory.stat",
    "memory.events",
    "memory.swap.current",
    "pids.current",
    "io.stat",
    "cpu.pressure",
    "memory.pressure",
    "io.pressure",
];

/// One scratch cgroup directory per process, for either version.
fn scratch() -> &'static (PathBuf, PathBuf) {
    static DIRS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    DIRS.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("corral-fuzz-stats-{}", std::process::id()));
        let dirs = (base.join("v1"), base.join("v2"));
        std::fs::create_dir_all(&dirs.0).unwrap();
        std::fs::create_dir_all(&dirs.1).unwrap();
        dirs
    })
}

fn parse_everything(text: &str) {
    let mut cpu = CpuStats::default();
    let mut memory = MemoryStats::default();
    v1::cpuacct::parse_usage(text, &mut cpu);
    v1::cpuacct::parse_stat(text, 100, &mut cpu);
    v1::cpuacct::parse_stat(text, 0, &mut cpu);
    v1::cpu::parse_stat(text, &mut cpu);
    v2::cpu::parse_stat(text, &mut cpu);
    v1::memory::parse_stat(text, &mut memory);
    v2::memory::parse_stat(text, &mut memory);
    parse_oom_control(text);
    v2::memory::parse_events(text);
    parse_events(text);
    v1::freezer::parse_state(text);
    v1::blkio::parse_throttle(text, text);
    v2::io::parse_stat(text);
    v2::psi::parse(text);
    v2::parse_controllers(text);
    let _ = fs::parse_pids(Path::new("cgroup.procs"), text);
    for (key, _) in flat_keyed(text) {
        assert!(!key.is_empty() && !key.contains(char::is_whitespace));
    }
}

fn read_stats(v1: bool, clk_tck: u64, contents: &[&[u8]]) {
    let (v1_dir, v2_dir) = scratch();
    let (dir, names): (&Path, &[&str]) = if v1 { (v1_dir, &V1_FILES) } else { (v2_dir, &V2_FILES) };
    for (i, name) in names.iter().enumerate() {
        std::fs::write(dir.join(name), contents.get(i).copied().unwrap_or_default()).unwrap();
    }
    let mut reader = stats_reader(dir, v1, clk_tck).expect("every file is there");
    match reader.read() {
        Ok(stats) => {
            if let (Some(usage), Some(working_set)) =
                (stats.memory.usage_bytes, stats.memory.working_set_bytes)
            {
                assert!(working_set <= usage);
            }
        }
        Err(CgroupError::Parse { reason, .. }) if reason == "not UTF-8" => {
            let files = &contents[..contents.len().min(names.len())];
            assert!(files.iter().any(|c| std::str::from_utf8(c).is_err()));
        }
        Err(e) => panic!("reading statistics: {e}"),
    }
}

fn bit(b: bool) -> u8 {
    u8::from(b)
}

fn round_trips(text: &str) {
    let oom = parse_oom_control(text);
    let mut written = format!(
        "oom_kill_disable {}\nunder_oom {}\n",
        bit(oom.oom_kill_disable),
        bit(oom.under_oom)
    );
    if let Some(kills) = oom.oom_kill {
        written.push_str(&format!("oom_kill {kills}\n"));
    }
    assert_eq!(parse_oom_control(&written), oom, "{written:?}");

    let events = parse_events(text);
    let written = format!("populated {}\nfrozen {}\n", bit(events.populated), bit(events.frozen));
    assert_eq!(parse_events(&written), events);

    let counts = v2::memory::parse_events(text);
    let MemoryEventCounts { low, high, max, oom, oom_kill, oom_group_kill } = counts;
    let written = format!(
        "low {low}\nhigh {high}\nmax {max}\noom {oom}\noom_kill {oom_kill}\noom_group_kill {oom_group_kill}\n"
    );
    assert_eq!(v2::memory::parse_events(&written), counts);

    let pairs: Vec<(&str, u64)> = flat_keyed(text).collect();
    let written: String = pairs.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
    assert_eq!(flat_keyed(&written).collect::<Vec<_>>(), pairs, "{written:?}");

    let devices = v2::io::parse_stat(text);
    let written: String = devices
        .iter()
        .map(|d| {
            format!(
                "{}:{} rbytes={} wbytes={} rios={} wios={} dbytes=0 dios=0\n",
                d.major, d.minor, d.read_bytes, d.write_bytes, d.read_ops, d.write_ops
            )
        })
        .collect();
    assert_eq!(v2::io::parse_stat(&written), devices, "{written:?}");
}

fuzz_target!(|bytes: &[u8]| {
    let mut parts: Vec<&[u8]> = bytes.split(|&b| b == 0).collect();
    let head = std::str::from_utf8(parts.remove(0)).unwrap_or_default();
    let mut words = head.split_whitespace();
    let v1 = words.next() != Some("v2");
    let clk_tck = words.next().and_then(|w| w.parse().ok()).unwrap_or(100);
    for part in &parts {
        if let Ok(text) = std::str::from_utf8(part) {
            parse_everything(text);
            round_trips(text);
        }
    }
    read_stats(v1, clk_tck, &parts);
});
