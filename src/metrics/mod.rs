//! Prometheus metrics: per-run cgroup accounting collected at scrape time,
//! and the agent's own counters.
//!
//! # Shape
//!
//! - [`source`]: [`MetricsSource`], what the agent shows a scrape: live runs
//!   with a [`StatsHandle`] on their open cgroup files, jobs, queue, node
//!   allocations. The agent implements it (or publishes into a
//!   [`PublishedSnapshot`]).
//! - [`collector`](mod@collector): reads every live run's files once per
//!   scrape and encodes the per-run, per-job and per-node families. No
//!   background loop: a value is as fresh as the scrape.
//! - [`finished`]: runs that ended keep their final counters in the scrape
//!   for a while, so short jobs' OOM kills reach `rate()` and alerts.
//! - [`agent`]: counters and histograms of things that happen; [`events`]:
//!   one typed event per place they happen, logging and counting together.
//! - [`format`]: Prometheus text unless the scraper asks for OpenMetrics.
//!
//! # Naming
//!
//! Every name starts with `corral_`, is in base units (`_seconds`,
//! `_bytes`), and counters end in `_total`. Labels are bounded: `job` and
//! `run` (validated DNS labels), NUMA node ids, block devices (at most
//! [`MetricsConfig::max_io_devices`] per run, the rest summed as `other`),
//! and closed enums. No command lines, no free text, no per-CPU series.
//! The full list is in `docs/metrics.md`.

pub mod agent;
mod collector;
pub mod error;
pub mod events;
pub mod finished;
pub mod format;
pub mod source;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use agent::{
    AgentMetrics, CronOutcome, EndState, HttpDeadline, OomAction, OomReached, PlacementOutcome,
    PreemptKind, RefusedReason,
};
pub use error::MetricsError;
pub use events::Event;
pub use finished::{FinishedRun, FinishedRuns};
pub use format::Format;
pub use source::{
    ArrayCounts, JobInfo, LiveRun, MetricsSource, NumaAllocation, PublishedSnapshot, ReadStats,
    Snapshot, SpecFiles, StatsHandle,
};

use collector::RunCollector;

/// The wall clock finished runs expire by; injected so tests can move it.
pub type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// How long a run that ended stays in the scrape with its final
    /// counters. Longer than the usual `rate()` window and alert `for:`, so
    /// both see a short job's OOM kill. Zero: a run's series go with it.
    /// The agent config's `finished_run_retention`.
    pub finished_retention: Duration,
    /// At most this many ended runs are kept, the oldest dropped first.
    pub max_finished_runs: usize,
    /// Block devices named per run; more are summed as `device="other"`.
    pub max_io_devices: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            finished_retention: Duration::from_secs(15 * 60),
            max_finished_runs: 10_000,
            max_io_devices: 8,
        }
    }
}

/// The registry, the agent's counters, and the scrape-time collector.
#[derive(Debug)]
pub struct Metrics {
    config: MetricsConfig,
    registry: Registry,
    agent: AgentMetrics,
    finished: Arc<Mutex<FinishedRuns>>,
    last_scrape: Arc<AtomicU64>,
    /// Length of the previous scrape: the next one starts with room for it
    /// rather than growing a 2 MB string by doubling.
    last_len: AtomicUsize,
}

impl Metrics {
    pub fn new(config: &MetricsConfig, source: Arc<dyn MetricsSource>) -> Metrics {
        Metrics::with_clock(config, source, Arc::new(SystemTime::now))
    }

    pub fn with_clock(
        config: &MetricsConfig,
        source: Arc<dyn MetricsSource>,
        clock: WallClock,
    ) -> Metrics {
        let mut registry = Registry::with_prefix("corral");
        registry.register(
            "build",
            "The corral build: its version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let agent = AgentMetrics::register(&mut registry);
        let finished = Arc::new(Mutex::new(FinishedRuns::new(
            config.finished_retention,
            config.max_finished_runs,
        )));
        let last_scrape = Arc::new(AtomicU64::new(0f64.to_bits()));
        registry.register_collector(Box::new(RunCollector {
            source,
            finished: finished.clone(),
            clock,
            max_io_devices: config.max_io_devices,
            last_scrape: last_scrape.clone(),
            read_errors: AtomicU64::new(0),
        }));
        Metrics {
            config: config.clone(),
            registry,
            agent,
            finished,
            last_scrape,
            last_len: AtomicUsize::new(0),
        }
    }

    /// Adds the cluster scheduler's families (`corral_cluster_*`) to the
    /// scrape: an agent in a cluster that stands for election.
    pub fn register_cluster(&mut self, cluster: Arc<crate::cluster::scheduler::ClusterMetrics>) {
        self.registry.register_collector(Box::new(cluster));
    }

    /// What the metrics were made with: an agent that restarts asks the
    /// store for the runs that ended within `finished_retention`.
    pub fn config(&self) -> &MetricsConfig {
        &self.config
    }

    /// The agent's counters and histograms, for [`Event::emit`].
    pub fn agent(&self) -> &AgentMetrics {
        &self.agent
    }

    /// Keeps a run that ended in the scrape, with its final counters, for
    /// the configured retention.
    pub fn run_finished(&self, run: FinishedRun) {
        self.finished.lock().unwrap_or_else(PoisonError::into_inner).push(run);
    }

    /// One scrape: reads every live run's statistics and encodes everything.
    pub fn render(&self, format: Format) -> Result<String, MetricsError> {
        let start = Instant::now();
        let last_len = self.last_len.load(Ordering::Relaxed);
        let mut out = String::with_capacity((last_len + last_len / 8).max(64 * 1024));
        match format {
            Format::Prometheus => prometheus_text::encode(&mut out, &self.registry),
            Format::OpenMetrics => text::encode(&mut out, &self.registry),
        }
        .map_err(|_| MetricsError::Encode { format })?;
        self.last_scrape.store(start.elapsed().as_secs_f64().to_bits(), Ordering::Relaxed);
        self.last_len.store(out.len(), Ordering::Relaxed);
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
