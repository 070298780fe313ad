//! Shorthands for the compiler's unit tests: compile a snippet, get the spec or the problems.

use std::path::Path;

use super::job::JobSpec;
use super::load::compile_str;

/// The smallest valid job; tests append the fields they exercise.
pub const BASE: &str = "name: t\ncommand: [/bin/true]\n";

/// Compiles a one-job file, or returns its problems as `LINE FIELD: message` lines.
pub fn compile(text: &str) -> Result<JobSpec, Vec<String>> {
    match compile_str(Path::new("t.yaml"), text) {
        Ok(mut jobs) => {
            assert_eq!(jobs.len(), 1, "expected exactly one job");
            Ok(jobs.remove(0).spec)
        }
        Err(diagnostics) => Err(diagnostics
            .into_iter()
            .map(|d| format!("{} {}: {}", d.pos.line, d.field, d.error))
            .collect()),
    }
}

/// `BASE` plus `extra`, which must compile.
pub fn ok(extra: &str) -> JobSpec {
    compile(&format!("{BASE}{extra}")).unwrap_or_else(|e| panic!("{extra}\n{e:#?}"))
}

/// `BASE` plus `extra`, which must not compile; its problems. Lines count from `BASE`'s
/// first line, so `extra`'s first line is line 3.
pub fn errors(extra: &str) -> Vec<String> {
    match compile(&format!("{BASE}{extra}")) {
        Ok(spec) => panic!("{extra}\ncompiled to {spec:#?}"),
        Err(errors) => errors,
    }
}

/// The single problem of `BASE` plus `extra`.
pub fn error(extra: &str) -> String {
    let mut all = errors(extra);
    assert_eq!(all.len(), 1, "{extra}\nexpected one problem, got {all:#?}");
    all.remove(0)
}
