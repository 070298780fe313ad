//! promtool, from the Debian `prometheus` package, on a full scrape and on
//! the example alert rules. On a machine without promtool the checks are
//! skipped with a note; under CI (`CI=true`) a missing promtool fails.

#[path = "common/metrics_fake.rs"]
mod metrics_fake;
#[path = "common/prometheus.rs"]
mod prometheus;

use std::process::Command;

use corral::metrics::Format;

#[test]
fn promtool_finds_nothing_wrong_with_a_scrape() {
    let Some(promtool) = prometheus::installed("promtool") else { return };
    let scrape = metrics_fake::full_metrics().render(Format::Prometheus).unwrap();
    let (passed, report) = prometheus::check_metrics(&promtool, &scrape);
    assert!(passed && report.trim().is_empty(), "promtool: {report}\n{scrape}");
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let Some(promtool) = prometheus::installed("promtool") else { return };
    let rules = prometheus::alert_rules_file();
    let out = Command::new(promtool).arg("check").arg("rules").arg(&rules).output().unwrap();
    let report =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool: {report}");
    assert!(report.contains("SUCCESS"), "{report}");
}
