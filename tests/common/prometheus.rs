//! Prometheus's own tools, from the Debian `prometheus` package, and the
//! example alert rules, for the tests that check corral's output with them.
//!
//! On a machine without the package a test that needs a tool is skipped
//! with a note; under CI (`CI=true`) a missing tool fails it.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `binary` on `PATH`, or `None` (with a note) where it is not installed.
pub fn installed(binary: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).map(|dir| dir.join(binary)).find(|p| p.is_file())
    });
    if found.is_none() {
        let reason =
            format!("{binary} not found: install the Debian package prometheus (.ci/run does)");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{reason}");
        eprintln!("skipped: {reason}");
    }
    found
}

/// `promtool check metrics` on a scrape: whether it passed, and everything
/// it printed (nothing, for a scrape without a problem).
pub fn check_metrics(promtool: &Path, scrape: &str) -> (bool, String) {
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
    (out.status.success(), report)
}

/// `dashboards/alerts.yaml`.
pub fn alert_rules_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/alerts.yaml")
}

/// One alerting rule of the example rules.
#[derive(Debug, serde::Deserialize)]
pub struct Rule {
    pub alert: String,
    pub expr: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Every rule of the example rules, group after group.
pub fn alert_rules() -> Vec<Rule> {
    #[derive(serde::Deserialize)]
    struct RuleFile {
        groups: Vec<RuleGroup>,
    }
    #[derive(serde::Deserialize)]
    struct RuleGroup {
        rules: Vec<Rule>,
    }
    let text = std::fs::read_to_string(alert_rules_file()).unwrap();
    let file: RuleFile = serde_saphyr::from_str(&text).unwrap();
    file.groups.into_iter().flat_map(|g| g.rules).collect()
}
