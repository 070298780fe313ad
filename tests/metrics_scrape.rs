//! The shape of a full scrape: every family documented and populated, names
//! and labels within the conventions, both exposition formats.

#[path = "common/metrics_fake.rs"]
mod metrics_fake;

use std::collections::{BTreeMap, BTreeSet};

use corral::metrics::Format;
use metrics_fake::{full_metrics, sample_names};

/// Every label name the module may use: `job_name`, `run` and closed sets.
/// Never `job` or `instance`, which Prometheus sets on every target.
const LABELS: &[&str] = &[
    "job_name",
    "run",
    "state",
    "mode",
    "action",
    "outcome",
    "status",
    "layout",
    "numa_node",
    "device",
    "direction",
    "resource",
    "kind",
    "le",
    "version",
    "priority",
    "preemption",
    "scheduled",
    "user",
    "reason",
    "phase",
    "reached",
    "array",
];

/// `# TYPE` lines: family name → type.
fn families(scrape: &str) -> BTreeMap<String, String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_string(), kind.to_string())
        })
        .collect()
}

fn label_names(line: &str) -> Vec<&str> {
    let Some(start) = line.find('{') else { return Vec::new() };
    let end = line.rfind('}').unwrap();
    line[start + 1..end]
        .split("\",")
        .filter(|p| !p.is_empty())
        .map(|p| p.split('=').next().unwrap())
        .collect()
}

#[test]
fn every_family_has_help_and_samples() {
    let scrape = full_metrics().render(Format::Prometheus).unwrap();
    let helps: BTreeSet<&str> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    let samples = sample_names(&scrape);
    let families = families(&scrape);
    assert!(families.len() > 40, "{}", families.len());
    for (name, kind) in &families {
        assert!(helps.contains(name.as_str()), "{name} has no HELP");
        let present = match kind.as_str() {
            "histogram" => samples.contains(&format!("{name}_count")),
            _ => samples.contains(name),
        };
        assert!(present, "{name} ({kind}) has no sample in\n{scrape}");
    }
}

#[test]
fn names_and_labels_follow_the_conventions() {
    let scrape = full_metrics().render(Format::Prometheus).unwrap();
    for (name, kind) in families(&scrape) {
        assert!(name.starts_with("corral_"), "{name}");
        assert!(
            name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{name}"
        );
        assert_eq!(name.ends_with("_total"), kind == "counter", "{name} is a {kind}");
        for word in name.split('_') {
            let scaled =
                ["ms", "us", "ns", "usec", "msec", "sec", "kb", "mb", "kib", "mib", "percent"];
            assert!(!scaled.contains(&word), "{name} is not in base units");
        }
    }
    for line in scrape.lines().filter(|l| !l.starts_with('#')) {
        for label in label_names(line) {
            assert!(LABELS.contains(&label), "unexpected label {label} in {line}");
        }
    }
}

#[test]
fn per_run_series_are_labelled_by_job_and_run() {
    let scrape = full_metrics().render(Format::Prometheus).unwrap();
    for line in scrape.lines().filter(|l| l.starts_with("corral_run_")) {
        assert_eq!(label_names(line)[..2], ["job_name", "run"], "{line}");
    }
    // The run that ended keeps its OOM kill in the counter live runs use.
    assert!(
        scrape.contains("corral_run_memory_oom_kills_total{job_name=\"etl\",run=\"etl-2\"} 1\n")
    );
    assert!(scrape.contains("corral_run_exit_code{job_name=\"etl\",run=\"etl-2\"} 137\n"));
    assert!(scrape.contains(
        "corral_run_pressure_stall_seconds_total{job_name=\"etl\",run=\"etl-3\",resource=\"memory\",kind=\"full\"} 0.5\n"
    ));
    assert!(scrape.contains(
        "corral_run_io_bytes_total{job_name=\"etl\",run=\"etl-3\",device=\"8:0\",direction=\"write\"} 8192\n"
    ));
    // A queued run has a state but no cgroup numbers.
    assert!(scrape
        .contains("corral_run_state{job_name=\"batch\",run=\"batch-2\",state=\"pending\"} 1\n"));
    assert!(!scrape.contains("corral_run_memory_usage_bytes{job_name=\"batch\",run=\"batch-2\"}"));
}

#[test]
fn openmetrics_carries_the_same_series() {
    let metrics = full_metrics();
    let text = metrics.render(Format::Prometheus).unwrap();
    let open = metrics.render(Format::OpenMetrics).unwrap();
    assert!(open.ends_with("# EOF\n"));
    assert_eq!(sample_names(&text), sample_names(&open));
    assert!(open.contains("# UNIT corral_run_cpu_usage_seconds seconds\n"));
    assert!(open.contains("# TYPE corral_job info\n"));
}
