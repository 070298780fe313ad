//! Accounting read from a job's cgroup files: one [`Stats`] shape for every
//! layout, with `None` wherever a layout has no counterpart.
//!
//! Parsers are pure functions of file contents (in the controller files);
//! [`StatsReader`] keeps a job's files open and re-reads them from offset 0,
//! so a periodic scrape costs reads, not opens.
//!
//! | Field | v1 | v2 |
//! |---|---|---|
//! | `cpu.usage_ns` | `cpuacct.usage` | `cpu.stat` `usage_usec` × 1000 |
//! | `cpu.user_ns`, `system_ns` | `cpuacct.stat` (USER_HZ ticks) | `cpu.stat` `user_usec`, `system_usec` |
//! | `cpu.periods`, `throttled_periods`, `throttled_ns` | `cpu.stat` | `cpu.stat` (`throttled_usec`) |
//! | `memory.usage_bytes` | `memory.usage_in_bytes` | `memory.current` |
//! | `memory.working_set_bytes` | usage − `total_inactive_file`, ≥ 0 | usage − `inactive_file`, ≥ 0 |
//! | `memory.anon_bytes` (RSS) | `memory.stat` `total_rss` | `memory.stat` `anon` |
//! | `memory.file_bytes` (cache) | `memory.stat` `total_cache` | `memory.stat` `file` |
//! | `memory.swap_bytes` | `memory.stat` `total_swap` (with memsw) | `memory.swap.current` |
//! | `memory.max_usage_bytes` | `memory.max_usage_in_bytes` | `memory.peak` (kernel 5.19+) |
//! | `memory.limit_hits` | `memory.failcnt` + `memory.memsw.failcnt` | `memory.events` `max` |
//! | `memory.oom_events` | — | `memory.events` `oom` |
//! | `memory.oom_kills` | `memory.oom_control` `oom_kill` | `memory.events` `oom_kill` |
//! | `memory.under_oom` | `memory.oom_control` `under_oom` | — |
//! | `pids.current` | `pids.current` | `pids.current` |
//! | `io` | `blkio.throttle.io_service_bytes` / `io_serviced` | `io.stat` |
//! | `pressure` | — (v2 tree in a hybrid layout) | `cpu/memory/io.pressure` |
//!
//! In a hybrid layout the v2 tree's `cpu.stat` (present without controllers)
//! replaces `cpuacct`, and its pressure files are read. Two kernel quirks
//! show in v1 numbers: recent kernels count `blkio.throttle.*` only for
//! devices with a throttle rule, and on 6.18 `memory.failcnt` was seen to stay
//! at 0 while the limit was hit (`under_oom` and the events report it).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::CgroupError;
use super::fs::KnobFile;
use super::layout::Controller;
use super::v2::psi::{self, Pressure};
use super::{v1, v2};

/// Splits `key value` lines, skipping lines whose value is not a number.
pub fn flat_keyed(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines().filter_map(|line| {
        let mut fields = line.split_whitespace();
        let key = fields.next()?;
        let value = fields.next()?.parse().ok()?;
        Some((key, value))
    })
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CpuStats {
    pub usage_ns: Option<u64>,
    pub user_ns: Option<u64>,
    pub system_ns: Option<u64>,
    /// CFS bandwidth periods that elapsed with the job runnable.
    pub periods: Option<u64>,
    pub throttled_periods: Option<u64>,
    pub throttled_ns: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MemoryStats {
    pub usage_bytes: Option<u64>,
    /// Usage minus inactive file cache: what the job needs to keep running.
    pub working_set_bytes: Option<u64>,
    /// Anonymous memory (RSS).
    pub anon_bytes: Option<u64>,
    /// File cache.
    pub file_bytes: Option<u64>,
    pub swap_bytes: Option<u64>,
    pub max_usage_bytes: Option<u64>,
    /// Times usage hit the hard limit.
    pub limit_hits: Option<u64>,
    pub oom_events: Option<u64>,
    pub oom_kills: Option<u64>,
    /// v1: stopped at the limit with the OOM killer disabled.
    pub under_oom: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PidsStats {
    pub current: Option<u64>,
}

/// Block I/O of one device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeviceIo {
    pub major: u32,
    pub minor: u32,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub read_ops: u64,
    pub write_ops: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PressureStats {
    pub cpu: Option<Pressure>,
    pub memory: Option<Pressure>,
    pub io: Option<Pressure>,
}

/// One reading of a job's accounting.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub pids: PidsStats,
    /// `None` when the job has no I/O accounting.
    pub io: Option<Vec<DeviceIo>>,
    /// `None` when no v2 tree is used.
    pub pressure: Option<PressureStats>,
    /// The kernel reports the cgroup frozen, whoever froze it (the agent, or
    /// someone writing `cgroup.freeze` or `freezer.state` by hand); `None`
    /// when the job has no freezer files.
    pub frozen: Option<bool>,
}

impl Stats {
    fn finish(&mut self, inactive_file: Option<u64>) {
        let m = &mut self.memory;
        m.working_set_bytes =
            m.usage_bytes.map(|usage| usage.saturating_sub(inactive_file.unwrap_or(0)));
    }
}

/// Which file a kept-open handle is, i.e. which parser it feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    V1CpuacctUsage,
    V1CpuacctStat,
    V1CpuStat,
    V1MemoryUsage,
    V1MemoryMaxUsage,
    V1MemoryFailcnt,
    V1MemswFailcnt,
    V1MemoryStat,
    V1OomControl,
    V1BlkioBytes,
    V1BlkioOps,
    V2CpuStat,
    V2MemoryCurrent,
    V2MemoryPeak,
    V2MemoryStat,
    V2MemoryEvents,
    V2SwapCurrent,
    V2IoStat,
    PidsCurrent,
    Pressure(PressureKind),
    V1FreezerState,
    V2CgroupEvents,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PressureKind {
    Cpu,
    Memory,
    Io,
}

/// Where a job's statistics come from.
#[derive(Debug, Clone, Default)]
pub(crate) struct StatsSources<'a> {
    /// The job's dir in the v1 hierarchy of each controller it has.
    pub v1: Vec<(Controller, &'a Path)>,
    /// The job's dir in the v2 tree and the controllers enabled for it.
    pub unified: Option<(&'a Path, &'a [Controller])>,
}

/// Reads a job's statistics through files opened once.
#[derive(Debug)]
pub struct StatsReader {
    files: Vec<(Source, KnobFile)>,
    clk_tck: u64,
    has_io: bool,
    has_pressure: bool,
}

thread_local! {
    /// What a read is parsed from, and the `blkio` bytes kept until the
    /// ops file is read: one pair per thread rather than per reader, so a
    /// thousand live runs do not each hold buffers the size of their
    /// largest file between scrapes.
    static SCRATCH: std::cell::RefCell<(String, String)> = const {
        std::cell::RefCell::new((String::new(), String::new()))
    };
}

impl StatsReader {
    pub(crate) fn open(sources: &StatsSources<'_>, clk_tck: u64) -> Result<Self, CgroupError> {
        let mut wanted: Vec<(Source, PathBuf, bool)> = Vec::new();
        let v1_dir = |c: Controller| sources.v1.iter().find(|(x, _)| *x == c).map(|(_, d)| *d);
        let v2 = |c: Controller| match sources.unified {
            Some((dir, enabled)) if enabled.contains(&c) => Some(dir),
            _ => None,
        };
        // A source is required (missing file = error) when its controller is
        // there; optional files depend on kernel version or configuration.
        if let Some(dir) = v1_dir(Controller::Cpuacct) {
            wanted.push((Source::V1CpuacctUsage, dir.join(v1::cpuacct::USAGE), true));
            wanted.push((Source::V1CpuacctStat, dir.join(v1::cpuacct::STAT), true));
        } else if let Some((dir, _)) = sources.unified {
            // cpu.stat's usage lines exist in every v2 cgroup.
            wanted.push((Source::V2CpuStat, dir.join(v2::cpu::STAT), true));
        }
        if let Some(dir) = v1_dir(Controller::Cpu) {
            wanted.push((Source::V1CpuStat, dir.join(v1::cpu::STAT), true));
        }
        if let Some(dir) = v1_dir(Controller::Memory) {
            wanted.push((Source::V1MemoryUsage, dir.join(v1::memory::USAGE), true));
            wanted.push((Source::V1MemoryMaxUsage, dir.join(v1::memory::MAX_USAGE), true));
            wanted.push((Source::V1MemoryFailcnt, dir.join(v1::memory::FAILCNT), true));
            wanted.push((Source::V1MemswFailcnt, dir.join(v1::memory::MEMSW_FAILCNT), false));
            wanted.push((Source::V1MemoryStat, dir.join(v1::memory::STAT), true));
            wanted.push((Source::V1OomControl, dir.join(v1::memory::OOM_CONTROL), true));
        } else if let Some(dir) = v2(Controller::Memory) {
            wanted.push((Source::V2MemoryCurrent, dir.join(v2::memory::CURRENT), true));
            wanted.push((Source::V2MemoryPeak, dir.join(v2::memory::PEAK), false));
            wanted.push((Source::V2MemoryStat, dir.join(v2::memory::STAT), true));
            wanted.push((Source::V2MemoryEvents, dir.join(v2::memory::EVENTS), true));
            wanted.push((Source::V2SwapCurrent, dir.join(v2::memory::SWAP_CURRENT), false));
        }
        if let Some(dir) = v1_dir(Controller::Pids).or_else(|| v2(Controller::Pids)) {
            wanted.push((Source::PidsCurrent, dir.join(v2::pids::CURRENT), true));
        }
        if let Some(dir) = v1_dir(Controller::Blkio) {
            wanted.push((Source::V1BlkioBytes, dir.join(v1::blkio::SERVICE_BYTES), true));
            wanted.push((Source::V1BlkioOps, dir.join(v1::blkio::SERVICED), true));
        } else if let Some(dir) = v2(Controller::Io) {
            wanted.push((Source::V2IoStat, dir.join(v2::io::STAT), true));
        }
        if let Some((dir, _)) = sources.unified {
            for (kind, file) in [
                (PressureKind::Cpu, psi::CPU),
                (PressureKind::Memory, psi::MEMORY),
                (PressureKind::Io, psi::IO),
            ] {
                wanted.push((Source::Pressure(kind), dir.join(file), false));
            }
            // Every non-root v2 cgroup has it; `frozen` since 5.2.
            wanted.push((Source::V2CgroupEvents, dir.join(v2::events::EVENTS), false));
        }
        if let Some(dir) = v1_dir(Controller::Freezer) {
            wanted.push((Source::V1FreezerState, dir.join(v1::freezer::STATE), false));
        }

        let mut files = Vec::with_capacity(wanted.len());
        for (source, path, required) in wanted {
            let file =
                if required { Some(KnobFile::open(path)?) } else { KnobFile::open_optional(path)? };
            if let Some(file) = file {
                files.push((source, file));
            }
        }
        let has_io =
            files.iter().any(|(s, _)| matches!(s, Source::V1BlkioBytes | Source::V2IoStat));
        let has_pressure = files.iter().any(|(s, _)| matches!(s, Source::Pressure(_)));
        Ok(StatsReader { files, clk_tck, has_io, has_pressure })
    }

    /// The files this reader holds open.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(_, f)| f.path())
    }

    pub fn read(&mut self) -> Result<Stats, CgroupError> {
        self.read_sources(|_| true)
    }

    /// Reads only the files behind CPU usage (`cpu.usage_ns`) and memory in
    /// use (`memory.usage_bytes`): what `corral ps` shows of every live run,
    /// at one or two reads a run instead of every file's. Other fields are
    /// `None`, or what those files also carry.
    pub fn read_usage(&mut self) -> Result<Stats, CgroupError> {
        let mut stats = self.read_sources(|source| {
            matches!(
                source,
                Source::V1CpuacctUsage
                    | Source::V2CpuStat
                    | Source::V1MemoryUsage
                    | Source::V2MemoryCurrent
            )
        })?;
        // Not read: the working set needs memory.stat.
        stats.memory.working_set_bytes = None;
        stats.io = None;
        stats.pressure = None;
        Ok(stats)
    }

    fn read_sources(&mut self, wanted: impl Fn(Source) -> bool) -> Result<Stats, CgroupError> {
        SCRATCH.with(|scratch| {
            let (buf, blkio_bytes) = &mut *scratch.borrow_mut();
            self.read_with(&wanted, buf, blkio_bytes)
        })
    }

    fn read_with(
        &self,
        wanted: &impl Fn(Source) -> bool,
        buf: &mut String,
        blkio_bytes: &mut String,
    ) -> Result<Stats, CgroupError> {
        let mut stats = Stats {
            io: self.has_io.then(Vec::new),
            pressure: self.has_pressure.then(PressureStats::default),
            ..Default::default()
        };
        let mut inactive_file = None;
        for (source, file) in self.files.iter().filter(|(s, _)| wanted(*s)) {
            file.read_into(buf)?;
            let text = buf.as_str();
            let number = || text.trim().parse::<u64>().ok();
            match source {
                Source::V1CpuacctUsage => v1::cpuacct::parse_usage(text, &mut stats.cpu),
                Source::V1CpuacctStat => {
                    v1::cpuacct::parse_stat(text, self.clk_tck, &mut stats.cpu)
                }
                Source::V1CpuStat => v1::cpu::parse_stat(text, &mut stats.cpu),
                Source::V2CpuStat => v2::cpu::parse_stat(text, &mut stats.cpu),
                Source::V1MemoryUsage | Source::V2MemoryCurrent => {
                    stats.memory.usage_bytes = number()
                }
                Source::V1MemoryMaxUsage | Source::V2MemoryPeak => {
                    stats.memory.max_usage_bytes = number()
                }
                // A failed charge counts against memsw or memory, not both.
                Source::V1MemoryFailcnt | Source::V1MemswFailcnt => {
                    if let Some(n) = number() {
                        stats.memory.limit_hits =
                            Some(stats.memory.limit_hits.unwrap_or(0).saturating_add(n));
                    }
                }
                Source::V1MemoryStat => {
                    inactive_file = v1::memory::parse_stat(text, &mut stats.memory)
                }
                Source::V2MemoryStat => {
                    inactive_file = v2::memory::parse_stat(text, &mut stats.memory)
                }
                Source::V1OomControl => {
                    let oom = v1::memory::parse_oom_control(text);
                    stats.memory.oom_kills = oom.oom_kill;
                    stats.memory.under_oom = Some(oom.under_oom);
                }
                Source::V2MemoryEvents => {
                    let events = v2::memory::parse_events(text);
                    stats.memory.limit_hits = Some(events.max);
                    stats.memory.oom_events = Some(events.oom);
                    stats.memory.oom_kills = Some(events.oom_kill);
                }
                Source::V2SwapCurrent => stats.memory.swap_bytes = number(),
                Source::PidsCurrent => stats.pids.current = number(),
                Source::V1BlkioBytes => {
                    blkio_bytes.clear();
                    blkio_bytes.push_str(text);
                }
                Source::V1BlkioOps => stats.io = Some(v1::blkio::parse_throttle(blkio_bytes, text)),
                Source::V2IoStat => stats.io = Some(v2::io::parse_stat(text)),
                // A job is frozen if either freezer of a hybrid host holds it.
                Source::V1FreezerState => {
                    let frozen = v1::freezer::parse_state(text)
                        == Some(crate::cgroup::freezer::FreezerState::Frozen);
                    stats.frozen = Some(stats.frozen.unwrap_or(false) || frozen);
                }
                Source::V2CgroupEvents => {
                    let frozen = v2::events::parse_events(text).frozen;
                    stats.frozen = Some(stats.frozen.unwrap_or(false) || frozen);
                }
                Source::Pressure(kind) => {
                    let pressure = stats.pressure.get_or_insert_with(Default::default);
                    let parsed = psi::parse(text);
                    match kind {
                        PressureKind::Cpu => pressure.cpu = parsed,
                        PressureKind::Memory => pressure.memory = parsed,
                        PressureKind::Io => pressure.io = parsed,
                    }
                }
            }
        }
        stats.finish(inactive_file);
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "tests/fixtures/cgroup/v1";
    const V2: &str = "tests/fixtures/cgroup/v2";

    fn fixture_dir(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
    }

    #[test]
    fn flat_keyed_skips_junk() {
        let pairs: Vec<_> = flat_keyed("a 1\nb x\n\nc 3 extra\nd\n").collect();
        assert_eq!(pairs, vec![("a", 1), ("c", 3)]);
    }

    #[test]
    fn v1_stats_from_real_files() {
        let dir = fixture_dir(V1);
        let sources = StatsSources {
            v1: vec![
                (Controller::Cpu, &dir),
                (Controller::Cpuacct, &dir),
                (Controller::Memory, &dir),
                (Controller::Pids, &dir),
                (Controller::Blkio, &dir),
            ],
            unified: None,
        };
        let mut reader = StatsReader::open(&sources, 100).unwrap();
        assert_eq!(reader.paths().count(), 11);
        let stats = reader.read().unwrap();
        assert_eq!(stats.cpu.usage_ns, Some(187_324_370));
        assert_eq!(stats.cpu.user_ns, Some(140_000_000));
        assert_eq!(stats.cpu.throttled_periods, Some(2));
        assert_eq!(stats.memory.usage_bytes, Some(42_340_352));
        // 42_340_352 - 41_951_232 inactive file
        assert_eq!(stats.memory.working_set_bytes, Some(389_120));
        assert_eq!(stats.memory.max_usage_bytes, Some(42_885_120));
        assert_eq!(stats.memory.limit_hits, Some(0));
        assert_eq!(stats.memory.oom_kills, Some(0));
        assert_eq!(stats.memory.oom_events, None);
        assert_eq!(stats.memory.under_oom, Some(false));
        assert_eq!(stats.pids.current, Some(0));
        assert_eq!(stats.io.as_ref().unwrap().len(), 1);
        assert_eq!(stats.pressure, None);
        // Reading again re-reads from offset 0.
        assert_eq!(reader.read().unwrap(), stats);
    }

    #[test]
    fn a_usage_read_reads_cpu_usage_and_memory_in_use_only() {
        let dir = fixture_dir(V1);
        let sources = StatsSources {
            v1: vec![
                (Controller::Cpuacct, &dir),
                (Controller::Memory, &dir),
                (Controller::Pids, &dir),
            ],
            unified: None,
        };
        let mut reader = StatsReader::open(&sources, 100).unwrap();
        let usage = reader.read_usage().unwrap();
        assert_eq!(usage.cpu.usage_ns, Some(187_324_370));
        assert_eq!(usage.memory.usage_bytes, Some(42_340_352));
        // Fields from the files not read stay unknown.
        assert_eq!(usage.cpu.user_ns, None);
        assert_eq!(usage.memory.working_set_bytes, None);
        assert_eq!(usage.memory.max_usage_bytes, None);
        assert_eq!(usage.pids.current, None);
        // A full read still reads everything.
        assert_eq!(reader.read().unwrap().pids.current, Some(0));
    }

    #[test]
    fn v2_stats_from_documented_formats() {
        let src = fixture_dir(V2);
        let dir = tempfile::tempdir().unwrap();
        for f in ["cpu.stat", "memory.stat", "memory.events", "io.stat", "memory.pressure"] {
            std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
        }
        std::fs::write(dir.path().join("memory.current"), "60000000\n").unwrap();
        std::fs::write(dir.path().join("memory.peak"), "70000000\n").unwrap();
        std::fs::write(dir.path().join("pids.current"), "3\n").unwrap();
        let enabled = [Controller::Cpu, Controller::Memory, Controller::Pids, Controller::Io];
        let sources = StatsSources { v1: vec![], unified: Some((dir.path(), &enabled)) };
        let stats = StatsReader::open(&sources, 100).unwrap().read().unwrap();
        assert_eq!(stats.cpu.usage_ns, Some(2_518_716_000));
        assert_eq!(stats.memory.usage_bytes, Some(60_000_000));
        assert_eq!(stats.memory.working_set_bytes, Some(60_000_000 - 36_864_000));
        assert_eq!(stats.memory.anon_bytes, Some(10_047_488));
        assert_eq!(stats.memory.max_usage_bytes, Some(70_000_000));
        assert_eq!(stats.memory.swap_bytes, None);
        assert_eq!(stats.memory.limit_hits, Some(3));
        assert_eq!(stats.memory.oom_events, Some(1));
        assert_eq!(stats.memory.oom_kills, Some(1));
        assert_eq!(stats.memory.under_oom, None);
        assert_eq!(stats.pids.current, Some(3));
        assert_eq!(stats.io.as_ref().unwrap()[1].read_ops, 8950);
        let pressure = stats.pressure.unwrap();
        assert_eq!(pressure.memory.unwrap().some.total_us, 58_761_459);
        assert_eq!(pressure.cpu, None);
    }

    /// The two v1 fail counters are added up: huge ones must not overflow.
    #[test]
    fn v1_fail_counts_add_up_without_overflow() {
        let src = fixture_dir(V1);
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(&src).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
        std::fs::write(dir.path().join(v1::memory::FAILCNT), format!("{}\n", u64::MAX)).unwrap();
        std::fs::write(dir.path().join(v1::memory::MEMSW_FAILCNT), "1\n").unwrap();
        let sources = StatsSources { v1: vec![(Controller::Memory, dir.path())], unified: None };
        let stats = StatsReader::open(&sources, 100).unwrap().read().unwrap();
        assert_eq!(stats.memory.limit_hits, Some(u64::MAX));
    }

    #[test]
    fn working_set_never_goes_negative() {
        let mut stats = Stats::default();
        stats.memory.usage_bytes = Some(10);
        stats.finish(Some(20));
        assert_eq!(stats.memory.working_set_bytes, Some(0));
    }

    #[test]
    fn a_missing_required_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let sources = StatsSources { v1: vec![(Controller::Pids, dir.path())], unified: None };
        let err = StatsReader::open(&sources, 100).unwrap_err();
        assert!(err.to_string().contains("pids.current"), "{err}");
    }
}
