//! `corral logs RUN [--launch N|all] [-f]`: a run's output, from its run
//! directories.
//!
//! A run gets a directory of its own each time it is launched
//! (`<state>/runs/<run>/<placed-at>/`): every restart attempt, and every
//! relaunch after a requeue. By default the latest is shown; `--launch`
//! picks an earlier one or all of them in order.
//!
//! Each stream is printed as the job wrote it, less what the log did not
//! keep: the head, a marker line saying how much was dropped, the tail
//! (see [`crate::container::logview`]). With `-f`, once the head is full,
//! the marker gives the count dropped so far and the tail is followed as it
//! rolls; a follower that falls more than `log_tail_bytes` behind says so
//! in a marker of its own and goes on from the oldest byte still kept.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use super::client::SocketArgs;
use crate::api::{Request, Response};
use crate::cluster::view::LogsAt;
use crate::container::logview::{LogCursor, LogView, Stream};
use crate::container::rundir::RunDir;
use crate::vocab::Timestamp;

/// Print a run's standard output and standard error.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The run id (`JOB-N`).
    pub run: String,
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Keep printing what the run writes until it is over, from each new
    /// launch (a restart) as it starts.
    #[arg(short, long)]
    pub follow: bool,
    /// Which launch of the run: `N` (1 is the first), `all` (each after a
    /// header line naming it), or `latest`.
    #[arg(long, value_name = "N|all|latest", default_value = "latest")]
    pub launch: LaunchChoice,
    /// RUN is a cluster run: print its logs when this node ran it, else say
    /// which node did. Without it, a run this node's agent does not know is
    /// looked up in the cluster when one is configured.
    #[arg(long)]
    pub cluster: bool,
}

/// The launches `corral logs` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchChoice {
    Latest,
    All,
    /// 1-based, in the order the launches happened.
    Nth(usize),
}

impl std::str::FromStr for LaunchChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<LaunchChoice, String> {
        match text {
            "latest" => Ok(LaunchChoice::Latest),
            "all" => Ok(LaunchChoice::All),
            n => match n.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(LaunchChoice::Nth(n)),
                _ => Err(format!("{text:?}: expected a launch number from 1, `all` or `latest`")),
            },
        }
    }
}

/// One launch of a run: its directory and when it was placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub dir: PathBuf,
    pub placed_at: Timestamp,
}

const POLL: Duration = Duration::from_millis(250);

pub fn run(mut args: LogsArgs) -> anyhow::Result<ExitCode> {
    let latest = match (args.cluster, latest_run_dir(&args)) {
        (false, Ok(latest)) => latest,
        (forced, local) => {
            let cluster = if forced {
                Some(super::cluster::cluster_config(&args.socket.config)?)
            } else {
                super::cluster::configured(&args.socket.config)?
            };
            let at = match (&cluster, &local) {
                (Some(cluster), _) if forced => super::cluster::logs_at(cluster, &args.run)?,
                (Some(cluster), Err(_)) => super::cluster::logs_at(cluster, &args.run)
                    .unwrap_or_else(|e| {
                        eprintln!("corral: the cluster could not be asked either: {e:#}");
                        None
                    }),
                _ => None,
            };
            match (at, local) {
                (Some(LogsAt::Here { node_run }), _) => {
                    // This node ran it: its logs are the local run's.
                    args.run = node_run;
                    latest_run_dir(&args)?
                }
                (Some(elsewhere), _) => {
                    let text = super::cluster::logs_elsewhere_text(&args.run, &elsewhere);
                    eprintln!("corral: {}", text.unwrap_or_default());
                    return Ok(ExitCode::from(1));
                }
                (None, Err(local)) if !forced => return Err(local),
                (None, _) => anyhow::bail!("the cluster has no run {:?}", args.run),
            }
        }
    };
    let launches = launches_beside(&latest)?;
    let chosen = choose(&launches, args.launch).with_context(|| {
        let (run, count) = (&args.run, launches.len());
        format!("{run} was launched {count} time(s): --launch takes 1 to {count}, all or latest")
    })?;
    let headers = args.launch == LaunchChoice::All;
    let Some((last, earlier)) = chosen.split_last() else { return Ok(ExitCode::SUCCESS) };
    for launch in earlier {
        print_whole(launch, headers.then(|| header(launch, &launches)))?;
    }
    if headers {
        print_header(&header(last, &launches))?;
    }
    // Only the latest launch can still be written to, so only it is followed.
    let following = args.follow && last.dir == latest;
    let mut current = last.dir.clone();
    let mut out = Tail::new(&current, Stream::Stdout);
    let mut err = Tail::new(&current, Stream::Stderr);
    loop {
        out.copy_to(&mut std::io::stdout())?;
        err.copy_to(&mut std::io::stderr())?;
        if !following {
            return Ok(ExitCode::SUCCESS);
        }
        // Asked before the launch is looked up: a run that was restarted
        // and ended between two polls still has its last launch printed.
        let ended = over(&args)?;
        let now = latest_run_dir(&args)?;
        if now != current {
            // Restarted: finish the old launch's files, then go on with the new one.
            out.copy_to(&mut std::io::stdout())?;
            err.copy_to(&mut std::io::stderr())?;
            let launch =
                Launch { placed_at: placed_at(&now).unwrap_or_default(), dir: now.clone() };
            print_header(&header(&launch, &launches_beside(&now)?))?;
            out = Tail::new(&now, Stream::Stdout);
            err = Tail::new(&now, Stream::Stderr);
            current = now;
            continue;
        }
        if ended {
            // What was written between the last read and the end.
            out.copy_to(&mut std::io::stdout())?;
            err.copy_to(&mut std::io::stderr())?;
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(POLL);
    }
}

/// The launches `choice` names, oldest first; `None` when the number is
/// past the last.
pub fn choose(launches: &[Launch], choice: LaunchChoice) -> Option<Vec<Launch>> {
    match choice {
        LaunchChoice::Latest => Some(launches.last().into_iter().cloned().collect()),
        LaunchChoice::All => Some(launches.to_vec()),
        LaunchChoice::Nth(n) => launches.get(n - 1).map(|l| vec![l.clone()]),
    }
}

/// Every launch directory beside `latest` (its siblings named by their
/// placement time), oldest first. `latest` is always among them, even if
/// its name is not a time.
pub fn launches_beside(latest: &Path) -> anyhow::Result<Vec<Launch>> {
    let mut launches = Vec::new();
    if let Some(parent) = latest.parent() {
        let entries = match std::fs::read_dir(parent) {
            Ok(entries) => entries.collect::<Result<Vec<_>, _>>()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", parent.display())),
        };
        for entry in entries {
            let dir = entry.path();
            if let (Some(placed_at), true) = (placed_at(&dir), entry.file_type()?.is_dir()) {
                launches.push(Launch { dir, placed_at });
            }
        }
    }
    if !launches.iter().any(|l| l.dir == latest) {
        launches
            .push(Launch { dir: latest.to_owned(), placed_at: Timestamp::from_millis(i64::MAX) });
    }
    launches.sort_by_key(|l| l.placed_at);
    Ok(launches)
}

/// The placement time a launch directory is named by (milliseconds).
fn placed_at(dir: &Path) -> Option<Timestamp> {
    let name = dir.file_name()?.to_str()?;
    name.parse().ok().map(Timestamp::from_millis)
}

/// `==> launch 2 of 3, placed 2026-12-07T04:31:02.512Z: DIR <==`, the shape
/// of `tail`'s headers.
pub fn header(launch: &Launch, launches: &[Launch]) -> String {
    let n = launches.iter().position(|l| l.dir == launch.dir).map_or(0, |i| i + 1);
    format!(
        "==> launch {n} of {}, placed {}: {} <==",
        launches.len(),
        launch.placed_at,
        launch.dir.display()
    )
}

fn print_header(header: &str) -> anyhow::Result<()> {
    println!("{header}");
    std::io::stdout().flush()?;
    Ok(())
}

/// A launch that is over: its output, after its header on each stream
/// that has any (so that `2>/dev/null` keeps the headers of stdout).
fn print_whole(launch: &Launch, header: Option<String>) -> anyhow::Result<()> {
    let dir = RunDir::new(&launch.dir);
    if let Some(header) = &header {
        print_header(header)?;
    }
    Tail::new(&launch.dir, Stream::Stdout).copy_to(&mut std::io::stdout())?;
    let stderr = dir.stderr_log();
    let has_errors = std::fs::metadata(&stderr).is_ok_and(|m| m.len() > 0);
    if let (Some(header), true) = (&header, has_errors) {
        eprintln!("{header}");
    }
    Tail::new(&launch.dir, Stream::Stderr).copy_to(&mut std::io::stderr())?;
    Ok(())
}

/// The directory of the run's latest launch, as the agent has it.
fn latest_run_dir(args: &LogsArgs) -> anyhow::Result<PathBuf> {
    let Response::Show { runs } = args.socket.ask(&Request::Show { target: args.run.clone() })?
    else {
        anyhow::bail!("the agent answered something else than run details");
    };
    let run = runs.into_iter().find(|r| r.row.run == args.run);
    let run = run.with_context(|| format!("no run {}", args.run))?;
    let dir = run.run_dir.with_context(|| format!("{} has not been launched yet", args.run))?;
    Ok(PathBuf::from(dir))
}

fn over(args: &LogsArgs) -> anyhow::Result<bool> {
    let Response::Ps { runs } = args.socket.ask(&Request::Ps)? else { return Ok(true) };
    Ok(!runs.iter().any(|r| r.run == args.run))
}

/// One stream of a launch, read from where the last read stopped.
struct Tail {
    run: RunDir,
    stream: Stream,
    cursor: LogCursor,
}

impl Tail {
    fn new(dir: &Path, stream: Stream) -> Tail {
        Tail { run: RunDir::new(dir), stream, cursor: LogCursor::default() }
    }

    fn copy_to(&mut self, to: &mut impl std::io::Write) -> anyhow::Result<()> {
        let log = || self.stream.log(&self.run).display().to_string();
        let view = LogView::read(&self.run, self.stream)
            .with_context(|| format!("cannot read {}", log()))?;
        // Streamed: a run's log can be larger than this process should hold.
        self.cursor.copy(&view, to).with_context(|| format!("cannot copy {}", log()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with_launches(placed: &[i64]) -> (tempfile::TempDir, Vec<PathBuf>) {
        let root = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = placed
            .iter()
            .map(|ms| {
                let dir = root.path().join("runs/job-1").join(ms.to_string());
                std::fs::create_dir_all(&dir).unwrap();
                dir
            })
            .collect();
        (root, dirs)
    }

    #[test]
    fn launches_are_ordered_by_placement_time_not_by_name() {
        // 999 sorts after 1000 as text.
        let (_root, dirs) = run_with_launches(&[1000, 999, 20_000]);
        // A stray file and a directory not named by a time are not launches.
        let parent = dirs[0].parent().unwrap();
        std::fs::write(parent.join("12345"), "").unwrap();
        std::fs::create_dir(parent.join("notes")).unwrap();
        let launches = launches_beside(&dirs[2]).unwrap();
        let placed: Vec<i64> = launches.iter().map(|l| l.placed_at.as_millis()).collect();
        assert_eq!(placed, [999, 1000, 20_000]);
    }

    #[test]
    fn the_choice_picks_the_latest_one_or_all() {
        let (_root, dirs) = run_with_launches(&[1, 2, 3]);
        let launches = launches_beside(&dirs[2]).unwrap();
        let dirs_of = |c| choose(&launches, c).map(|v| v.into_iter().map(|l| l.dir).collect());
        assert_eq!(dirs_of(LaunchChoice::Latest), Some(vec![dirs[2].clone()]));
        assert_eq!(dirs_of(LaunchChoice::Nth(1)), Some(vec![dirs[0].clone()]));
        assert_eq!(dirs_of(LaunchChoice::All), Some(dirs.clone()));
        assert_eq!(dirs_of(LaunchChoice::Nth(4)), None);
    }

    #[test]
    fn the_latest_directory_counts_even_when_its_name_is_not_a_time() {
        let root = tempfile::tempdir().unwrap();
        let latest = root.path().join("run-dir");
        std::fs::create_dir(&latest).unwrap();
        let launches = launches_beside(&latest).unwrap();
        assert_eq!(launches.len(), 1);
        assert_eq!(launches[0].dir, latest);
    }

    #[test]
    fn the_header_numbers_the_launch_and_gives_its_time() {
        let (_root, dirs) = run_with_launches(&[1_796_617_700_190, 1_796_617_702_876]);
        let launches = launches_beside(&dirs[1]).unwrap();
        assert_eq!(
            header(&launches[0], &launches),
            format!(
                "==> launch 1 of 2, placed 2026-12-07T04:28:20.190Z: {} <==",
                dirs[0].display()
            )
        );
    }

    #[test]
    fn the_choice_parses_numbers_from_one_and_the_two_words() {
        assert_eq!("latest".parse(), Ok(LaunchChoice::Latest));
        assert_eq!("all".parse(), Ok(LaunchChoice::All));
        assert_eq!("2".parse(), Ok(LaunchChoice::Nth(2)));
        for bad in ["0", "-1", "first", ""] {
            assert!(bad.parse::<LaunchChoice>().is_err(), "{bad}");
        }
    }
}
