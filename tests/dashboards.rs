//! The Grafana dashboards and alert rules in `dashboards/` ask only for
//! metrics and labels corral exports: every `corral_*` name in every query,
//! every label in a selector, grouping or legend, checked against a full
//! scrape of a fake agent.

#[path = "common/metrics_fake.rs"]
mod metrics_fake;
#[path = "common/prometheus.rs"]
mod prometheus;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use corral::metrics::Format;
use serde_json::Value;

/// Labels Prometheus adds to every series of a target.
const TARGET_LABELS: &[&str] = &["instance", "job"];

/// Sample name → the label names seen on it.
struct Exported {
    metrics: BTreeMap<String, BTreeSet<String>>,
    labels: BTreeSet<String>,
}

impl Exported {
    fn from_fake() -> Exported {
        let scrape = metrics_fake::full_metrics().render(Format::Prometheus).unwrap();
        let mut metrics: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for line in scrape.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let name = line.split(['{', ' ']).next().unwrap().to_string();
            let labels = metrics.entry(name).or_default();
            if let (Some(start), Some(end)) = (line.find('{'), line.rfind('}')) {
                for pair in line[start + 1..end].split("\",") {
                    labels.insert(pair.split('=').next().unwrap().to_string());
                }
            }
        }
        let labels = metrics.values().flatten().cloned().collect();
        Exported { metrics, labels }
    }

    fn check_label(&self, metric: Option<&str>, label: &str, context: &str) -> Result<(), String> {
        if TARGET_LABELS.contains(&label) {
            // `job` is Prometheus's scrape job; corral's jobs are `job_name`.
            return if label == "job" && metric.is_some() {
                Err(format!("{context}: selects on job, which is the scrape job (use job_name)"))
            } else {
                Ok(())
            };
        }
        let known = match metric {
            Some(m) => self.metrics.get(m).is_some_and(|ls| ls.contains(label)),
            None => self.labels.contains(label),
        };
        if known {
            Ok(())
        } else {
            Err(format!(
                "{context}: label {label} is not exported{}",
                match metric {
                    Some(m) => format!(" on {m}"),
                    None => String::new(),
                }
            ))
        }
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Ident(String),
    Punct(char),
    /// `=`, `!=`, `=~`, `!~`.
    Matcher,
}

/// Splits a PromQL expression into the tokens that matter here: strings,
/// range and subquery brackets, numbers and Grafana variables are dropped.
fn tokens(expr: &str) -> Vec<Token> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '[' => {
                while i < chars.len() && chars[i] != ']' {
                    i += 1;
                }
                i += 1;
            }
            '$' => {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            '=' | '!' => {
                i += 1;
                if i < chars.len() && matches!(chars[i], '=' | '~') {
                    i += 1;
                }
                out.push(Token::Matcher);
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                out.push(Token::Ident(chars[start..i].iter().collect()));
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            '{' | '}' | '(' | ')' | ',' => {
                out.push(Token::Punct(c));
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// Every problem with one expression: unknown metric names, unknown labels
/// in selectors and in `by`/`without`/`on`/`ignoring`/`group_*` lists, and
/// in Grafana's `label_values(metric, label)`. Returns the metrics used.
fn check_expr(
    exported: &Exported,
    expr: &str,
    context: &str,
    problems: &mut Vec<String>,
) -> BTreeSet<String> {
    let tokens = tokens(expr);
    let mut used = BTreeSet::new();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Ident(name) if name.starts_with("corral_") => {
                if !exported.metrics.contains_key(name) {
                    problems.push(format!("{context}: {name} is not exported"));
                }
                used.insert(name.clone());
                if tokens.get(i + 1) == Some(&Token::Punct('{')) {
                    i += 2;
                    while i < tokens.len() && tokens[i] != Token::Punct('}') {
                        if let (Token::Ident(label), Some(Token::Matcher)) =
                            (&tokens[i], tokens.get(i + 1))
                        {
                            if let Err(p) = exported.check_label(Some(name), label, context) {
                                problems.push(p);
                            }
                        }
                        i += 1;
                    }
                }
            }
            Token::Ident(word)
                if ["by", "without", "on", "ignoring", "group_left", "group_right"]
                    .contains(&word.as_str())
                    && tokens.get(i + 1) == Some(&Token::Punct('(')) =>
            {
                i += 2;
                while i < tokens.len() && tokens[i] != Token::Punct(')') {
                    if let Token::Ident(label) = &tokens[i] {
                        if let Err(p) = exported.check_label(None, label, context) {
                            problems.push(p);
                        }
                    }
                    i += 1;
                }
            }
            Token::Ident(word) if word == "label_values" => {
                // label_values(metric{…}, label): the last identifier before ")".
                let close = tokens[i..].iter().position(|t| *t == Token::Punct(')')).unwrap() + i;
                let metric = tokens[i..close].iter().find_map(|t| match t {
                    Token::Ident(n) if n.starts_with("corral_") => Some(n.as_str()),
                    _ => None,
                });
                if let Some(Token::Ident(label)) = tokens.get(close - 1) {
                    if let Err(p) = exported.check_label(metric, label, context) {
                        problems.push(p);
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    used
}

/// Labels named in a legend (`{{run}} {{state}}`) or annotation
/// (`{{ $labels.run }}`).
fn template_labels(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start..].find("}}") else { break };
        let inner = rest[start + 2..start + end].trim();
        let name = inner.strip_prefix("$labels.").unwrap_or(inner);
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push(name.to_string());
        } else if let Some(label) = inner.strip_prefix("$labels.") {
            out.push(label.split_whitespace().next().unwrap_or_default().to_string());
        }
        rest = &rest[start + end + 2..];
    }
    out
}

fn dashboards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards")
}

fn dashboard_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dashboards_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        out.push(panel);
        if let Some(inner) = panel["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

#[test]
fn every_dashboard_is_there() {
    let names: Vec<_> = dashboard_files()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["cluster-overview.json", "job-detail.json", "node-overview.json"]);
}

/// The query variables a dashboard must have beside `$datasource`: the
/// node dashboards pick jobs and runs; the cluster's has no per-run panel
/// and picks the agents whose scrapes make up the cluster.
fn query_variables(file: &Path) -> &'static [&'static str] {
    if file.ends_with("cluster-overview.json") {
        &["instance"]
    } else {
        &["job", "run"]
    }
}

#[test]
fn dashboards_have_the_current_shape() {
    for file in dashboard_files() {
        let name = file.display().to_string();
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert!(d["schemaVersion"].as_u64().unwrap() >= 39, "{name}: schemaVersion");
        assert!(d["uid"].as_str().unwrap().starts_with("corral-"), "{name}: uid");
        let vars = d["templating"]["list"].as_array().unwrap();
        let var = |n: &str| {
            vars.iter().find(|v| v["name"] == n).unwrap_or_else(|| panic!("{name}: no ${n}"))
        };
        assert_eq!(var("datasource")["type"], "datasource");
        assert_eq!(var("datasource")["query"], "prometheus");
        for v in query_variables(&file) {
            assert_eq!(var(v)["type"], "query", "{name}: ${v}");
            assert_eq!(var(v)["datasource"]["uid"], "${datasource}", "{name}: ${v}");
        }
        let mut ids = BTreeSet::new();
        for panel in panels(&d) {
            let title = panel["title"].as_str().unwrap();
            assert!(ids.insert(panel["id"].as_u64().unwrap()), "{name}: duplicate id at {title}");
            let pos = &panel["gridPos"];
            assert!(
                pos["x"].as_u64().unwrap() + pos["w"].as_u64().unwrap() <= 24,
                "{name}: {title}"
            );
            if panel["type"] == "row" {
                continue;
            }
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{name}: {title}");
            assert!(!panel["description"].as_str().unwrap_or("").is_empty(), "{name}: {title}");
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name}: {title} has no query");
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{name}: {title}");
            }
        }
    }
}

#[test]
fn dashboard_queries_use_exported_metrics_and_labels() {
    let exported = Exported::from_fake();
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for file in dashboard_files() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        for v in d["templating"]["list"].as_array().unwrap() {
            if let Some(q) = v["query"]["query"].as_str() {
                let context = format!("{name} variable {}", v["name"]);
                used.extend(check_expr(&exported, q, &context, &mut problems));
            }
        }
        for panel in panels(&d) {
            for t in panel["targets"].as_array().into_iter().flatten() {
                let context = format!("{name} panel {:?}", panel["title"].as_str().unwrap());
                let expr = t["expr"].as_str().unwrap();
                let metrics = check_expr(&exported, expr, &context, &mut problems);
                if metrics.is_empty() {
                    problems.push(format!("{context}: {expr} uses no corral metric"));
                }
                used.extend(metrics);
                for label in template_labels(t["legendFormat"].as_str().unwrap_or("")) {
                    if let Err(p) = exported.check_label(None, &label, &context) {
                        problems.push(p);
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The dashboards between them show nearly everything exported.
    let unused: Vec<_> = exported
        .metrics
        .keys()
        .filter(|m| !used.contains(*m) && !m.ends_with("_count") && !m.ends_with("_sum"))
        .collect();
    assert!(unused.is_empty(), "on no dashboard: {unused:?}");
}

#[test]
fn the_cluster_dashboard_shows_every_cluster_family_and_nothing_else() {
    let exported = Exported::from_fake();
    let file = dashboards_dir().join("cluster-overview.json");
    let d: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for panel in panels(&d) {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let context = format!("panel {:?}", panel["title"].as_str().unwrap());
            used.extend(check_expr(
                &exported,
                t["expr"].as_str().unwrap(),
                &context,
                &mut problems,
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let cluster: BTreeSet<&String> = exported
        .metrics
        .keys()
        .filter(|m| m.starts_with("corral_cluster_"))
        .filter(|m| !m.ends_with("_count") && !m.ends_with("_sum"))
        .collect();
    assert!(cluster.len() >= 7, "the fake exports the cluster families: {cluster:?}");
    let shown: BTreeSet<&String> = used.iter().collect();
    assert_eq!(shown, cluster, "the cluster dashboard's metrics");
}

#[test]
fn alert_rules_use_exported_metrics_and_labels() {
    let exported = Exported::from_fake();
    let alerts = prometheus::alert_rules();
    let names: BTreeSet<&str> = alerts.iter().map(|r| r.alert.as_str()).collect();
    for wanted in [
        "CorralRunOomKilled",
        "CorralRunStuckSuspended",
        "CorralCronFiringsMissed",
        "CorralInvalidJobFiles",
    ] {
        assert!(names.contains(wanted), "no {wanted}");
    }
    let mut problems = Vec::new();
    for rule in &alerts {
        let context = format!("alert {}", rule.alert);
        if check_expr(&exported, &rule.expr, &context, &mut problems).is_empty() {
            problems.push(format!("{context}: uses no corral metric"));
        }
        assert!(rule.labels.contains_key("severity"), "{context}: no severity");
        assert!(rule.annotations.contains_key("summary"), "{context}: no summary");
        for text in rule.annotations.values() {
            for label in template_labels(text) {
                if let Err(p) = exported.check_label(None, &label, &context) {
                    problems.push(p);
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_catches_mistakes() {
    let exported = Exported::from_fake();
    let mut problems = Vec::new();
    check_expr(&exported, "rate(corral_run_cpu_seconds_total[5m])", "a", &mut problems);
    check_expr(&exported, "corral_runs{job=\"x\"}", "b", &mut problems);
    check_expr(&exported, "sum by (job_id) (corral_runs)", "c", &mut problems);
    check_expr(&exported, "label_values(corral_runs, run)", "d", &mut problems);
    check_expr(
        &exported,
        "corral_run_state{job_name=~\"$job\", run=~\"$run\", state=\"x,y\"} > 0",
        "fine",
        &mut problems,
    );
    let contexts: Vec<_> = problems.iter().map(|p| p.split(':').next().unwrap()).collect();
    assert_eq!(contexts, ["a", "b", "c", "d"], "{problems:#?}");
    assert_eq!(
        template_labels("{{run}} {{ $labels.job_name }} {{ $value | humanize }}"),
        ["run", "job_name"]
    );
}
