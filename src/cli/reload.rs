//! `corral reload`: the agent reads its jobs directory again now, applies
//! what changed, and says what came of it.

use std::fmt::Write as _;
use std::process::ExitCode;

use super::client::SocketArgs;
use crate::api::protocol::ReloadReport;
use crate::api::{Request, Response};

/// Read the jobs directory again now (no quiet period), apply what changed,
/// and print the jobs added, changed and removed and every job file not
/// applied, with its problems. Exits 1 when some job file is not applied.
#[derive(Debug, clap::Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Some job file's current version is not in force: a deploy script that
/// just wrote one learns that it did not take.
const EXIT_NOT_APPLIED: u8 = 1;

pub fn run(args: ReloadArgs) -> anyhow::Result<ExitCode> {
    let Response::Reloaded(report) = args.socket.ask(&Request::Reload)? else {
        anyhow::bail!("the agent answered something else than a reload report");
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", summary(&report));
    }
    Ok(if report.all_applied() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_NOT_APPLIED) })
}

/// The report as people read it: the directory and its counts, the jobs this
/// reload changed, then each file not applied with its problems indented
/// below it.
fn summary(report: &ReloadReport) -> String {
    let mut text = String::new();
    let files = report.files_applied + report.files_not_applied;
    let _ = write!(text, "{}: ", report.jobs_dir);
    let _ = match (files, report.files_not_applied) {
        (0, _) => writeln!(text, "no job files"),
        (1, 0) => writeln!(text, "1 job file, applied"),
        (n, 0) => writeln!(text, "{n} job files, all applied"),
        (n, not) => writeln!(
            text,
            "{n} job file{}, {} applied, {not} not applied",
            if n == 1 { "" } else { "s" },
            report.files_applied
        ),
    };
    let changes =
        [("added", &report.added), ("changed", &report.changed), ("removed", &report.removed)];
    if changes.iter().all(|(_, jobs)| jobs.is_empty()) {
        text.push_str("no job added, changed or removed\n");
    }
    for (what, jobs) in changes.iter().filter(|(_, jobs)| !jobs.is_empty()) {
        let _ = writeln!(text, "{what}: {}", jobs.join(", "));
    }
    if !report.not_applied.is_empty() {
        text.push_str("not applied:\n");
    }
    for file in &report.not_applied {
        let _ = write!(text, "  {}", file.file);
        let _ = if file.in_force.is_empty() {
            writeln!(text)
        } else {
            writeln!(text, " (its last good version stays in force: {})", file.in_force.join(", "))
        };
        for problem in &file.problems {
            let _ = writeln!(text, "    {}", problem.replace('\n', "\n    "));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::protocol::FileNotApplied;

    fn report() -> ReloadReport {
        ReloadReport {
            jobs_dir: "/etc/corral/jobs".into(),
            files_applied: 3,
            files_not_applied: 0,
            added: Vec::new(),
            changed: Vec::new(),
            removed: Vec::new(),
            not_applied: Vec::new(),
        }
    }

    #[test]
    fn nothing_changed_and_everything_applied() {
        assert_eq!(
            summary(&report()),
            "/etc/corral/jobs: 3 job files, all applied\nno job added, changed or removed\n"
        );
        let one = ReloadReport { files_applied: 1, ..report() };
        assert!(summary(&one).starts_with("/etc/corral/jobs: 1 job file, applied\n"));
        let none = ReloadReport { files_applied: 0, ..report() };
        assert!(summary(&none).starts_with("/etc/corral/jobs: no job files\n"));
    }

    #[test]
    fn changes_and_files_not_applied_are_listed() {
        let report = ReloadReport {
            files_applied: 2,
            files_not_applied: 2,
            added: vec!["backup".into(), "etl".into()],
            removed: vec!["old".into()],
            not_applied: vec![
                FileNotApplied {
                    file: "/etc/corral/jobs/bad.yaml".into(),
                    problems: vec![
                        "/etc/corral/jobs/bad.yaml:2:10: command: expected a list".into(),
                        "/etc/corral/jobs/bad.yaml:3:1: nice: unknown field".into(),
                    ],
                    in_force: vec!["bad".into()],
                },
                FileNotApplied {
                    file: "/etc/corral/jobs/open.yaml".into(),
                    problems: vec!["refused: it is world-writable (mode 0666)".into()],
                    in_force: Vec::new(),
                },
            ],
            ..report()
        };
        assert_eq!(
            summary(&report),
            "/etc/corral/jobs: 4 job files, 2 applied, 2 not applied\n\
             added: backup, etl\n\
             removed: old\n\
             not applied:\n  \
             /etc/corral/jobs/bad.yaml (its last good version stays in force: bad)\n    \
             /etc/corral/jobs/bad.yaml:2:10: command: expected a list\n    \
             /etc/corral/jobs/bad.yaml:3:1: nice: unknown field\n  \
             /etc/corral/jobs/open.yaml\n    \
             refused: it is world-writable (mode 0666)\n"
        );
    }

    #[test]
    fn a_problem_over_several_lines_stays_under_its_file() {
        let report = ReloadReport {
            files_applied: 0,
            files_not_applied: 1,
            not_applied: vec![FileNotApplied {
                file: "/j/a.yaml".into(),
                problems: vec!["first line\nsecond line".into()],
                in_force: Vec::new(),
            }],
            ..report()
        };
        assert!(
            summary(&report).ends_with("  /j/a.yaml\n    first line\n    second line\n"),
            "{}",
            summary(&report)
        );
        assert!(summary(&report)
            .starts_with("/etc/corral/jobs: 1 job file, 0 applied, 1 not applied\n"));
    }
}
