//! `corral schedule PATH...`: when recurring jobs will run.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::config;
use crate::scheduler::cron::dst::{self, Showing};
use crate::scheduler::cron::{firings_between, jitter};
use crate::spec::{self, duration, Job, Recurrence};
use crate::vocab::JobName;
use crate::watch;

/// Show the next times recurring jobs will run, in their time zone and in UTC.
///
/// Times are the schedule's, before the job's jitter delay, which is shown separately.
/// Runs that a daylight-saving change moves are marked. Job files with problems are
/// reported as `corral validate` reports them, and make the command exit with 1.
#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    /// Job files, or directories of job files.
    #[arg(required = true, value_name = "FILE_OR_DIR")]
    pub paths: Vec<PathBuf>,
    /// Only this job.
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
    /// How many runs to show for each job.
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub count: u32,
    /// Show runs after this instant (RFC 3339, e.g. 2026-03-28T12:00:00Z) instead of now.
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
    pub after: Option<DateTime<Utc>>,
    /// Time zone of schedules that set no `timezone`. Default: the agent configuration's
    /// `default_timezone` (see --config), or UTC.
    #[arg(long, value_name = "ZONE", value_parser = spec::schedule::parse_timezone)]
    pub timezone: Option<Tz>,
    /// Agent configuration file to take `default_timezone` from.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

pub fn run(args: ScheduleArgs) -> anyhow::Result<ExitCode> {
    let default_tz = match (args.timezone, &args.config) {
        (Some(tz), _) => tz,
        (None, Some(path)) => {
            config::load(path)
                .map_err(|diagnostics| anyhow::anyhow!("{diagnostics}"))
                .with_context(|| format!("cannot use the configuration {}", path.display()))?
                .default_timezone
        }
        (None, None) => Tz::UTC,
    };
    let wanted = match &args.job {
        None => None,
        Some(name) => {
            Some(JobName::parse(name).with_context(|| format!("invalid job name {name:?}"))?)
        }
    };

    let rules = watch::LoadRules {
        files: crate::watch::policy::Rules::checking_as(nix::unistd::geteuid()),
        admission: None,
    };
    let load = watch::load_paths(&args.paths, &rules);
    for diagnostic in load.diagnostics() {
        eprintln!("{diagnostic}");
    }
    let jobs: Vec<&Job> = match &wanted {
        Some(name) => match load.jobs.get(name) {
            Some(job) => vec![job],
            None if load.is_ok() => anyhow::bail!("no job named {name} in the files given"),
            None => anyhow::bail!("no job named {name} in the files without problems"),
        },
        None => load.jobs.iter().collect(),
    };
    if let (Some(name), Some(job)) = (&wanted, jobs.first()) {
        if job.spec.recurrence.is_none() {
            anyhow::bail!("job {name} has no schedule: it runs once, when it is loaded");
        }
    }

    let after = args.after.unwrap_or_else(Utc::now);
    let node = jitter::node_name();
    let mut out = String::new();
    let mut first = true;
    for job in jobs {
        let Some(recurrence) = &job.spec.recurrence else { continue };
        if !first {
            out.push('\n');
        }
        first = false;
        render(&mut out, job, recurrence, default_tz, &node, after, args.count);
    }
    print!("{out}");
    Ok(if load.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn render(
    out: &mut String,
    job: &Job,
    recurrence: &Recurrence,
    default_tz: Tz,
    node: &str,
    after: DateTime<Utc>,
    count: u32,
) {
    let tz = recurrence.timezone.unwrap_or(default_tz);
    let zone_note = if recurrence.timezone.is_some() { "" } else { ", the default zone" };
    let _ = writeln!(
        out,
        "{}: \"{}\" in {tz}{zone_note} ({})",
        job.spec.name,
        recurrence.schedule.as_str(),
        job.origin
    );
    if recurrence.suspend {
        let _ = writeln!(out, "  suspended: none of these runs will start");
    }
    if !recurrence.jitter.is_zero() {
        let delay = jitter::offset(node, &job.spec.name, recurrence.jitter);
        let _ = writeln!(
            out,
            "  each run starts {} after its time on this machine (jitter up to {})",
            duration::format(delay),
            duration::format(recurrence.jitter)
        );
    }
    let schedule = &recurrence.schedule;
    let mut any = false;
    for t in firings_between(schedule, tz, after, DateTime::<Utc>::MAX_UTC, count as usize) {
        any = true;
        let local = t.with_timezone(&tz);
        let _ = write!(
            out,
            "  {:<29} {}",
            local.format("%a %Y-%m-%d %H:%M:%S %Z").to_string(),
            t.format("%Y-%m-%dT%H:%M:%SZ")
        );
        let wall = local.naive_local();
        if !schedule.cron().is_time_matching(&wall).unwrap_or(true) {
            out.push_str("  (its time was skipped by the clock change; runs once right after)");
        } else if matches!(dst::fold_at(tz, t), Some((Showing::Second, _))) {
            out.push_str("  (the clock went back: this time again)");
        }
        out.push('\n');
    }
    if !any {
        let _ = writeln!(out, "  no more runs");
    }
}

fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .map_err(|e| format!("{e}; expected RFC 3339, e.g. 2026-03-28T12:00:00Z"))
}
