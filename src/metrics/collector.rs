//! The scrape-time collector: on each scrape, takes the agent's snapshot,
//! reads every live run's cgroup files once, and encodes the per-run, per-job
//! and per-node families. Nothing is polled between scrapes, so nothing goes
//! stale.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, LabelSetEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use tracing::debug;

use super::finished::{FinishedRun, FinishedRuns};
use super::source::{LiveRun, MetricsSource, NumaAllocation};
use super::WallClock;
use crate::cgroup::stats::DeviceIo;
use crate::cgroup::Pressure;
use crate::cgroup::Stats;
use crate::scheduler::Phase;

/// Phases a run that has not ended can be in: the values of `corral_runs`
/// (every phase name but the three ends, which come last).
const LIVE_PHASES: &[&str] = Phase::NAMES.split_at(Phase::NAMES.len() - 3).0;

pub(super) struct RunCollector {
    pub source: Arc<dyn MetricsSource>,
    pub finished: Arc<Mutex<FinishedRuns>>,
    pub clock: WallClock,
    pub max_io_devices: usize,
    /// Seconds the previous scrape took, as `f64` bits.
    pub last_scrape: Arc<AtomicU64>,
    /// Live runs whose statistics could not be read, over all scrapes.
    pub read_errors: AtomicU64,
}

impl fmt::Debug for RunCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunCollector").finish_non_exhaustive()
    }
}

/// The label naming a job. Not `job`: Prometheus gives every target a `job`
/// label of its own and would rename ours to `exported_job` on ingestion.
pub(super) const JOB_LABEL: &str = "job_name";

/// `job_name` and `run` labels.
type RunLabels<'a> = [(&'static str, &'a str); 2];

fn run_labels(run: &LiveRun) -> RunLabels<'_> {
    [(JOB_LABEL, run.job.as_str()), ("run", run.run.as_str())]
}

fn ended_labels(run: &FinishedRun) -> RunLabels<'_> {
    [(JOB_LABEL, run.job.as_str()), ("run", run.run.as_str())]
}

/// Writes one family: its descriptor, then every sample.
fn family<S, V, I>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    kind: MetricType,
    samples: I,
) -> fmt::Result
where
    S: EncodeLabelSet,
    V: Sample,
    I: IntoIterator<Item = (S, V)>,
{
    let mut metric = encoder.encode_descriptor(name, help, unit.as_ref(), kind)?;
    for (labels, value) in samples {
        value.write(&mut metric.encode_family(&labels)?, kind)?;
    }
    Ok(())
}

/// A sample value, written as the family's type asks.
trait Sample {
    fn write(&self, encoder: &mut MetricEncoder, kind: MetricType) -> fmt::Result;
}

impl Sample for u64 {
    fn write(&self, encoder: &mut MetricEncoder, kind: MetricType) -> fmt::Result {
        match kind {
            MetricType::Counter => encoder.encode_counter::<NoLabelSet, _, u64>(self, None),
            _ => encoder.encode_gauge(self),
        }
    }
}

impl Sample for f64 {
    fn write(&self, encoder: &mut MetricEncoder, kind: MetricType) -> fmt::Result {
        match kind {
            MetricType::Counter => encoder.encode_counter::<NoLabelSet, _, u64>(self, None),
            _ => encoder.encode_gauge(self),
        }
    }
}

/// Signed values are gauges only (exit codes).
impl Sample for i64 {
    fn write(&self, encoder: &mut MetricEncoder, _: MetricType) -> fmt::Result {
        encoder.encode_gauge(self)
    }
}

fn seconds_from_ns(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn seconds_from_us(us: u64) -> f64 {
    us as f64 / 1e6
}

/// Device label values for a run's I/O: `major:minor` for up to `max`
/// devices (in device order), the rest summed as `other`, so that a job
/// touching many devices cannot multiply its series.
fn io_by_device(devices: &[DeviceIo], max: usize) -> Vec<(String, DeviceIo)> {
    let mut sorted: Vec<&DeviceIo> = devices.iter().collect();
    sorted.sort_by_key(|d| (d.major, d.minor));
    let mut out: Vec<(String, DeviceIo)> = Vec::new();
    let mut other: Option<DeviceIo> = None;
    for (i, d) in sorted.into_iter().enumerate() {
        if i < max {
            out.push((format!("{}:{}", d.major, d.minor), d.clone()));
        } else {
            let o = other.get_or_insert_with(DeviceIo::default);
            o.read_bytes += d.read_bytes;
            o.write_bytes += d.write_bytes;
            o.read_ops += d.read_ops;
            o.write_ops += d.write_ops;
        }
    }
    out.extend(other.map(|o| ("other".to_string(), o)));
    out
}

/// `(resource, kind, total stall in µs)`.
type PressureLine = (&'static str, &'static str, u64);

/// `(name, help, value)` of a per-run memory gauge.
type MemoryGauge = (&'static str, &'static str, fn(&Stats) -> Option<u64>);

/// `(name, help, unit, value)` of a per-NUMA-node gauge.
type NodeGauge = (&'static str, &'static str, Option<Unit>, fn(&NumaAllocation) -> u64);

/// Every pressure line present.
fn pressure_lines(stats: &Stats) -> Vec<PressureLine> {
    let Some(p) = &stats.pressure else { return Vec::new() };
    let mut out = Vec::new();
    let mut push = |resource: &'static str, pressure: &Option<Pressure>| {
        if let Some(pressure) = pressure {
            out.push((resource, "some", pressure.some.total_us));
            if let Some(full) = &pressure.full {
                out.push((resource, "full", full.total_us));
            }
        }
    };
    push("cpu", &p.cpu);
    push("memory", &p.memory);
    push("io", &p.io);
    out
}

impl Collector for RunCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let snapshot = self.source.snapshot();
        let now = (self.clock)();
        // A run the agent still lists is live; a stale finished entry for it
        // would duplicate its series.
        let live_ids: std::collections::HashSet<&str> =
            snapshot.runs.iter().map(|r| r.run.as_str()).collect();
        // Copied out so that the agent, adding a run that just ended, never
        // waits for this scrape's file reads.
        let ended: Vec<FinishedRun> = {
            let mut finished = self.finished.lock().unwrap_or_else(PoisonError::into_inner);
            finished.expire(now);
            finished.iter().filter(|f| !live_ids.contains(f.run.as_str())).cloned().collect()
        };

        // Each run's files are read exactly once per scrape, before any
        // family is written: families are grouped by name, runs are not.
        let mut errors = 0;
        let readings: Vec<(&LiveRun, Stats)> = snapshot
            .runs
            .iter()
            .filter_map(|run| {
                let handle = run.stats.as_ref()?;
                match handle.read() {
                    Ok(stats) => Some((run, stats)),
                    Err(e) => {
                        // Usually a run that ended since the snapshot: its
                        // cgroup is gone. Counted, not fatal to the scrape.
                        debug!(job = %run.job, run = %run.run, "statistics not read: {e}");
                        errors += 1;
                        None
                    }
                }
            })
            .collect();
        let read_errors = self.read_errors.fetch_add(errors, Ordering::Relaxed) + errors;

        let e = &mut encoder;
        let runs = &snapshot.runs;

        // Runs: what they are.
        family(
            e,
            "run_state",
            "The state a run is in (1); runs that ended keep their final state for the retention time.",
            None,
            MetricType::Gauge,
            runs.iter().map(|r| ((run_labels(r), [("state", r.phase.name())]), 1u64)).chain(
                ended.iter().map(|f| {
                    ((ended_labels(f), [("state", f.phase.name())]), 1)
                }),
            ),
        )?;
        family(
            e,
            "run_frozen",
            "Whether the kernel reports the run's cgroup frozen (1) or not (0).",
            None,
            MetricType::Gauge,
            // The kernel's word where it can be read: a job frozen by hand
            // through the cgroup's freezer file shows too.
            // `readings` follows `runs`' order, less the runs not read: one
            // walk pairs them (a search per run is quadratic in runs).
            {
                let mut read = readings.iter().peekable();
                runs.iter().map(move |r| {
                    let kernel = read
                        .next_if(|(read, _)| std::ptr::eq(*read, r))
                        .and_then(|(_, stats)| stats.frozen);
                    (run_labels(r), u64::from(kernel.unwrap_or(r.frozen)))
                })
            },
        )?;
        family(
            e,
            "run_exclusive_cpus",
            "CPUs held by the run alone; 0 for runs in the shared pool.",
            None,
            MetricType::Gauge,
            runs.iter().map(|r| (run_labels(r), u64::from(r.exclusive_cpus))),
        )?;
        let node_names: Vec<(&LiveRun, String)> = runs
            .iter()
            .flat_map(|r| r.numa_nodes.iter().map(move |n| (r, n.0.to_string())))
            .collect();
        family(
            e,
            "run_numa_node",
            "The NUMA nodes a run's memory may come from (1 per node).",
            None,
            MetricType::Gauge,
            node_names.iter().map(|(r, n)| ((run_labels(r), [("numa_node", n.as_str())]), 1u64)),
        )?;
        family(
            e,
            "run_memory_soft_limit",
            "The run's memory soft limit (v1 memory.soft_limit_in_bytes, v2 memory.low); absent when unset.",
            Some(Unit::Bytes),
            MetricType::Gauge,
            runs.iter().filter_map(|r| Some((run_labels(r), r.memory_soft_limit?.get()))),
        )?;
        family(
            e,
            "run_memory_hard_limit",
            "The run's memory hard limit (v1 memory.limit_in_bytes, v2 memory.max); absent when unset.",
            Some(Unit::Bytes),
            MetricType::Gauge,
            runs.iter().filter_map(|r| Some((run_labels(r), r.memory_hard_limit?.get()))),
        )?;

        // Runs: CPU.
        family(
            e,
            "run_cpu_usage",
            "CPU time the run's processes used; runs that ended keep their final value for the retention time.",
            Some(Unit::Seconds),
            MetricType::Counter,
            readings
                .iter()
                .filter_map(|(r, s)| Some((run_labels(r), seconds_from_ns(s.cpu.usage_ns?))))
                .chain(ended.iter().map(|f| {
                    (ended_labels(f), f.cpu_seconds)
                })),
        )?;
        family(
            e,
            "run_cpu_user",
            "CPU time the run's processes spent in user mode.",
            Some(Unit::Seconds),
            MetricType::Counter,
            readings
                .iter()
                .filter_map(|(r, s)| Some((run_labels(r), seconds_from_ns(s.cpu.user_ns?)))),
        )?;
        family(
            e,
            "run_cpu_system",
            "CPU time the run's processes spent in the kernel.",
            Some(Unit::Seconds),
            MetricType::Counter,
            readings
                .iter()
                .filter_map(|(r, s)| Some((run_labels(r), seconds_from_ns(s.cpu.system_ns?)))),
        )?;
        family(
            e,
            "run_cpu_periods",
            "CFS bandwidth periods that elapsed while the run was runnable (only with a CPU quota).",
            None,
            MetricType::Counter,
            readings.iter().filter_map(|(r, s)| Some((run_labels(r), s.cpu.periods?))),
        )?;
        family(
            e,
            "run_cpu_throttled_periods",
            "CFS bandwidth periods in which the run was throttled by its CPU quota.",
            None,
            MetricType::Counter,
            readings.iter().filter_map(|(r, s)| Some((run_labels(r), s.cpu.throttled_periods?))),
        )?;
        family(
            e,
            "run_cpu_throttled",
            "Time the run's processes were throttled by its CPU quota.",
            Some(Unit::Seconds),
            MetricType::Counter,
            readings
                .iter()
                .filter_map(|(r, s)| Some((run_labels(r), seconds_from_ns(s.cpu.throttled_ns?)))),
        )?;

        // Runs: memory.
        let memory_gauges: [MemoryGauge; 5] = [
            ("run_memory_usage", "Memory charged to the run's cgroup, page cache included.", |s| {
                s.memory.usage_bytes
            }),
            (
                "run_memory_working_set",
                "Memory usage minus inactive file cache: what the run needs to keep going.",
                |s| s.memory.working_set_bytes,
            ),
            ("run_memory_rss", "Anonymous memory of the run's processes.", |s| s.memory.anon_bytes),
            ("run_memory_cache", "Page cache charged to the run.", |s| s.memory.file_bytes),
            ("run_memory_swap", "Swap used by the run.", |s| s.memory.swap_bytes),
        ];
        for (name, help, get) in memory_gauges {
            family(
                e,
                name,
                help,
                Some(Unit::Bytes),
                MetricType::Gauge,
                readings.iter().filter_map(|(r, s)| Some((run_labels(r), get(s)?))),
            )?;
        }
        family(
            e,
            "run_memory_max_usage",
            "The run's peak memory usage (v1 memory.max_usage_in_bytes, v2 memory.peak); runs that ended keep it for the retention time.",
            Some(Unit::Bytes),
            MetricType::Gauge,
            readings
                .iter()
                .filter_map(|(r, s)| Some((run_labels(r), s.memory.max_usage_bytes?)))
                .chain(ended.iter().filter_map(|f| {
                    Some((ended_labels(f), f.peak_memory?.get()))
                })),
        )?;
        family(
            e,
            "run_memory_limit_hits",
            "Times the run's memory usage hit its limit (v1 memory.failcnt, v2 memory.events max).",
            None,
            MetricType::Counter,
            readings.iter().filter_map(|(r, s)| Some((run_labels(r), s.memory.limit_hits?))),
        )?;
        family(
            e,
            "run_memory_oom_events",
            "Times the run's cgroup was out of memory (v2 memory.events oom).",
            None,
            MetricType::Counter,
            readings.iter().filter_map(|(r, s)| Some((run_labels(r), s.memory.oom_events?))),
        )?;
        family(
            e,
            "run_memory_oom_kills",
            "Processes of the run killed by the kernel's OOM killer; runs that ended keep their final value for the retention time.",
            None,
            MetricType::Counter,
            readings
                .iter()
                .filter_map(|(r, s)| Some((run_labels(r), s.memory.oom_kills?)))
                .chain(ended.iter().map(|f| {
                    (ended_labels(f), f.oom_kills)
                })),
        )?;
        family(
            e,
            "run_memory_under_oom",
            "Whether the run is stopped at its memory limit with the OOM killer disabled (v1 under_oom).",
            None,
            MetricType::Gauge,
            readings
                .iter()
                .filter_map(|(r, s)| Some((run_labels(r), u64::from(s.memory.under_oom?)))),
        )?;

        // Runs: tasks, I/O, pressure.
        family(
            e,
            "run_tasks",
            "Tasks (processes and threads) in the run's cgroup (pids.current).",
            None,
            MetricType::Gauge,
            readings.iter().filter_map(|(r, s)| Some((run_labels(r), s.pids.current?))),
        )?;
        let io: Vec<(&LiveRun, Vec<(String, DeviceIo)>)> = readings
            .iter()
            .filter_map(|(r, s)| Some((*r, io_by_device(s.io.as_ref()?, self.max_io_devices))))
            .collect();
        let io_samples = |get: fn(&DeviceIo) -> (u64, u64)| {
            io.iter().flat_map(move |(r, devices)| {
                devices.iter().flat_map(move |(device, d)| {
                    let (read, write) = get(d);
                    [
                        (
                            (run_labels(r), [("device", device.as_str()), ("direction", "read")]),
                            read,
                        ),
                        (
                            (run_labels(r), [("device", device.as_str()), ("direction", "write")]),
                            write,
                        ),
                    ]
                })
            })
        };
        family(
            e,
            "run_io",
            "Bytes the run read from and wrote to block devices, by device (major:minor; beyond the first few, summed as other).",
            Some(Unit::Bytes),
            MetricType::Counter,
            io_samples(|d| (d.read_bytes, d.write_bytes)),
        )?;
        family(
            e,
            "run_io_operations",
            "Block I/O operations of the run, by device and direction.",
            None,
            MetricType::Counter,
            io_samples(|d| (d.read_ops, d.write_ops)),
        )?;
        let pressure: Vec<(&LiveRun, Vec<PressureLine>)> =
            readings.iter().map(|(r, s)| (*r, pressure_lines(s))).collect();
        family(
            e,
            "run_pressure_stall",
            "Time some (kind=some) or all (kind=full) of the run's tasks stalled waiting for a resource (PSI; v2 tree only).",
            Some(Unit::Seconds),
            MetricType::Counter,
            pressure.iter().flat_map(|(r, lines)| {
                lines.iter().map(move |(resource, kind, us)| {
                    ((run_labels(r), [("resource", *resource), ("kind", *kind)]), seconds_from_us(*us))
                })
            }),
        )?;

        // Runs that ended.
        family(
            e,
            "run_exit_code",
            "Exit code of a run that ended (128 + signal number when killed by a signal).",
            None,
            MetricType::Gauge,
            ended.iter().filter_map(|f| Some((ended_labels(f), f.exit_code()?))),
        )?;
        family(
            e,
            "run_end_timestamp",
            "When a run ended, in seconds since the Unix epoch.",
            Some(Unit::Seconds),
            MetricType::Gauge,
            ended.iter().map(|f| {
                let at = f.ended_at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                (ended_labels(f), at.as_secs_f64())
            }),
        )?;

        // Jobs.
        let mut job_metric = e.encode_descriptor(
            "job",
            "Descriptive labels of each job in force, for joins: priority, preemption mode, whether it has a cron schedule, user.",
            None,
            MetricType::Info,
        )?;
        for job in &snapshot.jobs {
            let priority = job.priority.to_string();
            let preemption = job.preemption.to_string();
            job_metric.encode_info(&[
                (JOB_LABEL, job.job.as_str()),
                ("priority", priority.as_str()),
                ("preemption", preemption.as_str()),
                ("scheduled", if job.scheduled { "yes" } else { "no" }),
                ("user", job.user.as_str()),
            ])?;
        }
        family(
            e,
            "job_next_fire_timestamp",
            "When a scheduled job fires next, in seconds since the Unix epoch.",
            Some(Unit::Seconds),
            MetricType::Gauge,
            snapshot.jobs.iter().filter_map(|j| {
                let at = j.next_fire?.duration_since(std::time::UNIX_EPOCH).ok()?;
                Some(([(JOB_LABEL, j.job.as_str())], at.as_secs_f64()))
            }),
        )?;

        // The node.
        let mut by_phase = [0u64; LIVE_PHASES.len()];
        for run in runs {
            if let Some(i) = LIVE_PHASES.iter().position(|p| *p == run.phase.name()) {
                by_phase[i] += 1;
            }
        }
        // An array's pending runs are counted per array, not listed.
        if let Some(i) = LIVE_PHASES.iter().position(|p| *p == "pending") {
            by_phase[i] += snapshot.arrays.iter().map(|a| a.count("pending")).sum::<u64>();
        }
        family(
            e,
            "array_runs",
            "Runs of each array that have not ended, by state; an array's series go when its last run ends.",
            None,
            MetricType::Gauge,
            snapshot.arrays.iter().flat_map(|a| {
                a.by_state.iter().map(move |(state, n)| {
                    ([("array", a.array.as_str()), ("state", *state)], *n)
                })
            }),
        )?;
        family(
            e,
            "runs",
            "Runs that have not ended, by state.",
            None,
            MetricType::Gauge,
            LIVE_PHASES.iter().zip(by_phase).map(|(p, n)| ([("state", *p)], n)),
        )?;
        family(
            e,
            "queue_length",
            "Runs waiting in the queue for CPUs or memory.",
            None,
            MetricType::Gauge,
            [(NoLabels, snapshot.queue_length)],
        )?;
        family(
            e,
            "queue_held_back",
            "Waiting runs that fit but are held back so as not to delay the reserved start of the head of the queue.",
            None,
            MetricType::Gauge,
            [(NoLabels, snapshot.held_back)],
        )?;
        family(
            e,
            "store_writable",
            "1 while the agent's state database takes writes; 0 while it does not (a full state disk, a deleted database): no new work is taken then.",
            None,
            MetricType::Gauge,
            [(NoLabels, u64::from(!snapshot.store_unwritable))],
        )?;
        family(
            e,
            "spec_files",
            "Job files in the jobs directory by status: valid, or invalid (not in force as it stands: it has a problem, or a job name an earlier file holds).",
            None,
            MetricType::Gauge,
            [
                ([("status", "valid")], snapshot.spec_files.valid),
                ([("status", "invalid")], snapshot.spec_files.invalid),
            ],
        )?;
        if let Some(layout) = snapshot.layout {
            let layout = layout.to_string();
            e.encode_descriptor(
                "cgroup_layout",
                "The host's cgroup layout: v1, v2 or hybrid.",
                None,
                MetricType::Info,
            )?
            .encode_info(&[("layout", layout.as_str())])?;
        }
        let nodes: Vec<(String, &NumaAllocation)> =
            snapshot.numa.iter().map(|n| (n.node.0.to_string(), n)).collect();
        let per_node: [NodeGauge; 4] = [
            (
                "allocatable_cpus",
                "CPUs of the NUMA node jobs may get: online, allowed, not reserved.",
                None,
                |n| n.allocatable_cpus.into(),
            ),
            ("allocated_cpus", "CPUs of the NUMA node held exclusively by runs.", None, |n| {
                n.allocated_cpus.into()
            }),
            (
                "allocatable_memory",
                "Memory of the NUMA node runs may be charged: the node's memory minus the reservation.",
                Some(Unit::Bytes),
                |n| n.allocatable_memory.get(),
            ),
            (
                "allocated_memory",
                "Memory accounted to runs placed on the NUMA node.",
                Some(Unit::Bytes),
                |n| n.allocated_memory.get(),
            ),
        ];
        for (name, help, unit, get) in per_node {
            family(
                e,
                name,
                help,
                unit,
                MetricType::Gauge,
                nodes.iter().map(|(id, n)| ([("numa_node", id.as_str())], get(n))),
            )?;
        }
        family(
            e,
            "scrape_duration",
            "Time the previous scrape of this endpoint took, from taking the snapshot to the last byte encoded.",
            Some(Unit::Seconds),
            MetricType::Gauge,
            [(NoLabels, f64::from_bits(self.last_scrape.load(Ordering::Relaxed)))],
        )?;
        family(
            e,
            "scrape_read_errors",
            "Live runs whose cgroup statistics could not be read during a scrape (usually a run that ended meanwhile).",
            None,
            MetricType::Counter,
            [(NoLabels, read_errors)],
        )?;
        Ok(())
    }
}

/// The empty label set, for families of one series.
struct NoLabels;

impl EncodeLabelSet for NoLabels {
    fn encode(&self, _: &mut LabelSetEncoder) -> fmt::Result {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(major: u32, minor: u32, read_bytes: u64) -> DeviceIo {
        DeviceIo { major, minor, read_bytes, write_bytes: 1, read_ops: 2, write_ops: 3 }
    }

    #[test]
    fn devices_beyond_the_cap_are_summed_as_other() {
        let devices = [dev(8, 16, 10), dev(8, 0, 20), dev(253, 0, 30), dev(259, 1, 40)];
        let out = io_by_device(&devices, 2);
        let names: Vec<_> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["8:0", "8:16", "other"]);
        let other = &out[2].1;
        assert_eq!((other.read_bytes, other.write_bytes, other.read_ops), (70, 2, 4));
        assert_eq!(io_by_device(&devices, 4).len(), 4, "no other when all fit");
        assert!(io_by_device(&[], 4).is_empty());
    }

    #[test]
    fn live_phase_names_are_the_non_terminal_phases() {
        let terminal = ["succeeded", "failed", "killed"];
        let expected: Vec<_> =
            Phase::NAMES.iter().filter(|n| !terminal.contains(n)).copied().collect();
        assert_eq!(LIVE_PHASES.to_vec(), expected);
    }
}
