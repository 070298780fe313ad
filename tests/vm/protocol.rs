//! What the guest writes on its result port (the second serial port, kept
//! apart from the kernel's console so kernel messages cannot interleave with
//! it), one record per line:
//!
//! ```text
//! corral-vm up SECONDS              (guest uptime when the suite starts)
//! corral-vm begin NAME
//! ...the test's output...
//! corral-vm pass NAME MILLIS        (or: corral-vm fail NAME MILLIS)
//! corral-vm done
//! ```
//!
//! A test without its `pass`/`fail` line, or a run without `done`, did not
//! finish: the host reports it failed.

use std::collections::BTreeMap;

pub const PREFIX: &str = "corral-vm ";

/// How one guest test ended, as far as the host can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// Began but never reported an end (guest crashed, hung or was cut off).
    Unfinished,
    /// Planned but never began.
    NotRun,
}

#[derive(Debug, Clone)]
pub struct TestReport {
    pub outcome: Outcome,
    pub millis: Option<u64>,
    pub output: String,
}

/// Everything the result port said.
#[derive(Debug, Default)]
pub struct Results {
    pub tests: BTreeMap<String, TestReport>,
    /// The order tests began in.
    pub order: Vec<String>,
    pub done: bool,
    /// The guest's uptime when its suite started: the boot time.
    pub up_secs: Option<f64>,
}

pub fn parse(text: &str) -> Results {
    let mut results = Results::default();
    let mut current: Option<String> = None;
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        let Some(record) = line.strip_prefix(PREFIX) else {
            if let Some(name) = &current {
                let report = results.tests.get_mut(name).expect("current test is recorded");
                report.output.push_str(line);
                report.output.push('\n');
            }
            continue;
        };
        let mut words = record.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("begin"), Some(name), None) => {
                results.tests.insert(
                    name.to_owned(),
                    TestReport {
                        outcome: Outcome::Unfinished,
                        millis: None,
                        output: String::new(),
                    },
                );
                results.order.push(name.to_owned());
                current = Some(name.to_owned());
            }
            (Some(verdict @ ("pass" | "fail")), Some(name), millis) => {
                if let Some(report) = results.tests.get_mut(name) {
                    report.outcome = if verdict == "pass" { Outcome::Pass } else { Outcome::Fail };
                    report.millis = millis.and_then(|m| m.parse().ok());
                }
                current = None;
            }
            (Some("done"), None, None) => results.done = true,
            (Some("up"), Some(secs), None) => results.up_secs = secs.parse().ok(),
            _ => {}
        }
    }
    results
}
