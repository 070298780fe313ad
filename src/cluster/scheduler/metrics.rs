//! The cluster scheduler's metrics, on the agent's `/metrics`.
//!
//! Every agent that stands for election shows `corral_cluster_leader` (0 or
//! 1); only the leader shows the rest, so that summing over the cluster's
//! scrapes counts each node and run once. Counters keep counting across a
//! loss and regain of the leadership by the same agent (they are hidden,
//! not reset, meanwhile), as Prometheus counters must.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

/// The outcome of a binding the scheduler tried to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingOutcome {
    /// Written.
    Bound,
    /// The node handed the run back.
    HandedBack,
    /// A fenced write lost to a concurrent change (its guard failed).
    Conflict,
}

impl BindingOutcome {
    const ALL: [BindingOutcome; 3] =
        [BindingOutcome::Bound, BindingOutcome::HandedBack, BindingOutcome::Conflict];

    fn label(self) -> &'static str {
        match self {
            BindingOutcome::Bound => "bound",
            BindingOutcome::HandedBack => "handed_back",
            BindingOutcome::Conflict => "conflict",
        }
    }
}

/// The values, set by the scheduler and read at scrape time.
pub struct ClusterMetrics {
    leader: AtomicBool,
    ready_nodes: AtomicU64,
    /// Nodes without a record that have lost runs.
    lost_nodes: AtomicU64,
    /// Pending, bound, ended, lost.
    runs: [AtomicU64; 4],
    /// Lost runs bound anew (`on_node_loss: reschedule`).
    rescheduled: AtomicU64,
    bindings: [AtomicU64; 3],
    leadership_changes: AtomicU64,
    bad_records: AtomicU64,
    /// Run created or handed back → bound, seconds.
    scheduling: Histogram,
}

impl fmt::Debug for ClusterMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterMetrics").field("leader", &self.leader).finish_non_exhaustive()
    }
}

impl Default for ClusterMetrics {
    fn default() -> Self {
        ClusterMetrics {
            leader: AtomicBool::new(false),
            ready_nodes: AtomicU64::new(0),
            lost_nodes: AtomicU64::new(0),
            runs: Default::default(),
            rescheduled: AtomicU64::new(0),
            bindings: Default::default(),
            leadership_changes: AtomicU64::new(0),
            bad_records: AtomicU64::new(0),
            // 1 ms to about 4.4 min.
            scheduling: Histogram::new(exponential_buckets(0.001, 4.0, 10)),
        }
    }
}

const RUN_STATES: [&str; 4] = ["pending", "bound", "ended", "lost"];

impl ClusterMetrics {
    pub fn new() -> ClusterMetrics {
        ClusterMetrics::default()
    }

    /// This agent became (true) or stopped being (false) the leader.
    pub fn set_leader(&self, leader: bool) {
        let was = self.leader.swap(leader, Ordering::Relaxed);
        if leader && !was {
            self.leadership_changes.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    /// The cluster as the latest pass saw it.
    pub fn set_view(
        &self,
        ready_nodes: usize,
        lost_nodes: usize,
        runs_by_state: [usize; 4],
        bad_records: usize,
    ) {
        self.ready_nodes.store(ready_nodes as u64, Ordering::Relaxed);
        self.lost_nodes.store(lost_nodes as u64, Ordering::Relaxed);
        for (gauge, n) in self.runs.iter().zip(runs_by_state) {
            gauge.store(n as u64, Ordering::Relaxed);
        }
        self.bad_records.store(bad_records as u64, Ordering::Relaxed);
    }

    pub fn binding(&self, outcome: BindingOutcome) {
        let i = BindingOutcome::ALL.iter().position(|o| *o == outcome).expect("listed");
        self.bindings[i].fetch_add(1, Ordering::Relaxed);
    }

    /// A lost run was set pending as its next attempt.
    pub fn rescheduled(&self) {
        self.rescheduled.fetch_add(1, Ordering::Relaxed);
    }

    pub fn rescheduled_total(&self) -> u64 {
        self.rescheduled.load(Ordering::Relaxed)
    }

    pub fn scheduled(&self, waited: std::time::Duration) {
        self.scheduling.observe(waited.as_secs_f64());
    }

    pub fn leadership_changes(&self) -> u64 {
        self.leadership_changes.load(Ordering::Relaxed)
    }

    pub fn bindings_total(&self, outcome: BindingOutcome) -> u64 {
        let i = BindingOutcome::ALL.iter().position(|o| *o == outcome).expect("listed");
        self.bindings[i].load(Ordering::Relaxed)
    }
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Gauge)?.encode_gauge(&value)
}

impl Collector for ClusterMetrics {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let leader = self.is_leader();
        gauge(
            &mut e,
            "cluster_leader",
            "Whether this agent is the active cluster scheduler (1) or not (0).",
            leader.into(),
        )?;
        if !leader {
            return Ok(());
        }
        let mut m = e.encode_descriptor(
            "cluster_nodes",
            "Nodes in the cluster by state; ready: its record is live under its lease; lost: its record is gone (lease expired) and runs bound to it are lost.",
            None,
            MetricType::Gauge,
        )?;
        m.encode_family(&[("state", "ready")])?
            .encode_gauge(&self.ready_nodes.load(Ordering::Relaxed))?;
        m.encode_family(&[("state", "lost")])?
            .encode_gauge(&self.lost_nodes.load(Ordering::Relaxed))?;
        let mut m = e.encode_descriptor(
            "cluster_runs",
            "Cluster runs by state, as the scheduler last saw them.",
            None,
            MetricType::Gauge,
        )?;
        for (state, value) in RUN_STATES.iter().zip(&self.runs) {
            m.encode_family(&[("state", *state)])?.encode_gauge(&value.load(Ordering::Relaxed))?;
        }
        let mut m = e.encode_descriptor(
            "cluster_bindings",
            "Bindings by outcome: bound, handed_back by the node, conflict (a fenced write lost to a concurrent change).",
            None,
            MetricType::Counter,
        )?;
        for (outcome, value) in BindingOutcome::ALL.iter().zip(&self.bindings) {
            m.encode_family(&[("outcome", outcome.label())])?
                .encode_counter::<NoLabelSet, _, u64>(&value.load(Ordering::Relaxed), None)?;
        }
        e.encode_descriptor(
            "cluster_runs_rescheduled",
            "Runs bound anew as their next attempt because their node stayed lost past the grace.",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, _, u64>(&self.rescheduled.load(Ordering::Relaxed), None)?;
        let m = e.encode_descriptor(
            "cluster_scheduling",
            "From a run being created or handed back to its binding.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        self.scheduling.encode(m)?;
        e.encode_descriptor(
            "cluster_leadership_changes",
            "Times this agent became the cluster scheduler.",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, _, u64>(
            &self.leadership_changes.load(Ordering::Relaxed),
            None,
        )?;
        gauge(
            &mut e,
            "cluster_bad_records",
            "Records under the prefix the scheduler does not act on: values that do not parse or do not match their key, and jobs that do not compile.",
            self.bad_records.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    use super::*;

    fn scrape(metrics: &Arc<ClusterMetrics>) -> String {
        let mut registry = Registry::with_prefix("corral");
        registry.register_collector(Box::new(metrics.clone()));
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn only_the_leader_shows_the_cluster_and_counters_survive_a_lost_leadership() {
        let metrics = Arc::new(ClusterMetrics::new());
        let text = scrape(&metrics);
        assert!(text.contains("corral_cluster_leader 0"), "{text}");
        assert!(!text.contains("corral_cluster_runs"), "{text}");

        metrics.set_leader(true);
        metrics.set_view(3, 1, [2, 1, 5, 4], 1);
        metrics.rescheduled();
        metrics.binding(BindingOutcome::Bound);
        metrics.binding(BindingOutcome::Conflict);
        metrics.scheduled(std::time::Duration::from_millis(20));
        let text = scrape(&metrics);
        for line in [
            "corral_cluster_leader 1",
            "corral_cluster_nodes{state=\"ready\"} 3",
            "corral_cluster_runs{state=\"pending\"} 2",
            "corral_cluster_runs{state=\"ended\"} 5",
            "corral_cluster_runs{state=\"lost\"} 4",
            "corral_cluster_nodes{state=\"lost\"} 1",
            "corral_cluster_runs_rescheduled_total 1",
            "corral_cluster_bindings_total{outcome=\"bound\"} 1",
            "corral_cluster_bindings_total{outcome=\"handed_back\"} 0",
            "corral_cluster_bindings_total{outcome=\"conflict\"} 1",
            "corral_cluster_scheduling_seconds_count 1",
            "corral_cluster_leadership_changes_total 1",
            "corral_cluster_bad_records 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        metrics.set_leader(false);
        metrics.set_leader(true);
        let text = scrape(&metrics);
        assert!(text.contains("corral_cluster_leadership_changes_total 2"), "{text}");
        assert!(text.contains("corral_cluster_bindings_total{outcome=\"bound\"} 1"), "{text}");
    }
}
