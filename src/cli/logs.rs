//! `corral logs RUN [-f]`: a run's output, from its run directory.

use std::io::{Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use super::client::SocketArgs;
use crate::api::{Request, Response};
use crate::container::rundir::RunDir;

/// Print a run's standard output and standard error.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The run id (`JOB-N`).
    pub run: String,
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Keep printing what the run writes until it is over.
    #[arg(short, long)]
    pub follow: bool,
}

const POLL: Duration = Duration::from_millis(250);

pub fn run(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let dir = RunDir::new(run_dir(&args)?);
    let mut out = Tail::new(dir.stdout_log());
    let mut err = Tail::new(dir.stderr_log());
    loop {
        out.copy_to(&mut std::io::stdout())?;
        err.copy_to(&mut std::io::stderr())?;
        if !args.follow || over(&args)? {
            // What was written between the last read and the end.
            out.copy_to(&mut std::io::stdout())?;
            err.copy_to(&mut std::io::stderr())?;
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(POLL);
    }
}

fn run_dir(args: &LogsArgs) -> anyhow::Result<PathBuf> {
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

/// A log file read from where the last read stopped.
struct Tail {
    path: PathBuf,
    offset: u64,
}

impl Tail {
    fn new(path: PathBuf) -> Tail {
        Tail { path, offset: 0 }
    }

    fn copy_to(&mut self, to: &mut impl std::io::Write) -> anyhow::Result<()> {
        let Some(mut file) = open(&self.path)? else { return Ok(()) };
        file.seek(SeekFrom::Start(self.offset))?;
        // Streamed: a run's log can be larger than this process should hold.
        self.offset += std::io::copy(&mut file, to)
            .with_context(|| format!("cannot copy {}", self.path.display()))?;
        to.flush()?;
        Ok(())
    }
}

fn open(path: &Path) -> anyhow::Result<Option<std::fs::File>> {
    match std::fs::File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot open {}", path.display())),
    }
}
