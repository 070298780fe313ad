//! promtool, from the Debian `prometheus` package, on a full scrape and on
//! the example alert rules. On a machine without promtool the checks are
//! skipped with a note; under CI (`CI=true`) a missing promtool fails.

#[path = "common/metrics_fake.rs"]
mod metrics_fake;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use corral::metrics::Format;

fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).map(|dir| dir.join("promtool")).find(|p| p.is_file())
    });
    if found.is_none() {
        let reason = "promtool not found: install the Debian package prometheus (.ci/run does)";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{reason}");
        eprintln!("skipped: {reason}");
    }
    found
}

#[test]
fn promtool_finds_nothing_wrong_with_a_scrape() {
    let Some(promtool) = promtool() else { return };
    let scrape = metrics_fake::full_metrics().render(Format::Prometheus).unwrap();
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(scrape.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool: {report}\n{scrape}");
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let Some(promtool) = promtool() else { return };
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/alerts.yaml");
    let out = Command::new(promtool).arg("check").arg("rules").arg(&rules).output().unwrap();
    let report =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool: {report}");
    assert!(report.contains("SUCCESS"), "{report}");
}
