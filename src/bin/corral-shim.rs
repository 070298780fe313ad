//! `corral-shim RUN_DIR [--nofile SOFT:HARD]`: the per-run supervisor and,
//! forked from it, the container's init (see `corral::container`). Started
//! by the launcher, never by hand.
//!
//! A binary of its own rather than a subcommand of `corral`, because one
//! stays resident for every run: it links only the container code it runs
//! (no async runtime, HTTP server, store, command-line parser or logging),
//! so what each run keeps in memory is that code's share of the page cache
//! plus the few pages the shim and its init write to. The command line is
//! parsed by hand for the same reason; only the launcher writes it.

use std::path::PathBuf;
use std::process::ExitCode;

use corral::container::launch::SHIM_NOFILE_FLAG;
use corral::container::nofile::NofileLimit;

const USAGE: &str = "usage: corral-shim RUN_DIR [--nofile SOFT:HARD] \
                     (started by the corral agent, not by hand)";

fn parse(
    mut args: impl Iterator<Item = std::ffi::OsString>,
) -> Result<(PathBuf, Option<NofileLimit>), String> {
    let run_dir = args.next().map(PathBuf::from).ok_or("no run directory given")?;
    let mut nofile = None;
    while let Some(arg) = args.next() {
        if arg != SHIM_NOFILE_FLAG {
            return Err(format!("unexpected argument {arg:?}"));
        }
        let value = args.next().ok_or(format!("{SHIM_NOFILE_FLAG} needs a value"))?;
        let value = value.to_str().ok_or(format!("{SHIM_NOFILE_FLAG} {value:?} is not text"))?;
        nofile = Some(value.parse().map_err(|e| format!("{SHIM_NOFILE_FLAG} {value}: {e}"))?);
    }
    Ok((run_dir, nofile))
}

fn main() -> ExitCode {
    match parse(std::env::args_os().skip(1)) {
        Ok((run_dir, nofile)) => ExitCode::from(corral::container::shim::main(&run_dir, nofile)),
        Err(problem) => {
            eprintln!("corral-shim: {problem}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
