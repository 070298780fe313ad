//! The open-descriptor limit: the agent raises its own, and starts its
//! children with the one it was given.
//!
//! Each live run keeps descriptors open in the agent for as long as it
//! runs: its cgroup statistics files, read at every scrape without an
//! `open` (12 on v1, about 15 on a hybrid host), and what watches it (a
//! pidfd on its shim, the OOM eventfd with `memory.oom_control` on v1, an
//! inotify instance with the files it watches). Hundreds of runs need
//! thousands of descriptors, past the usual soft `RLIMIT_NOFILE` of 1024.
//! The hard limit is the ceiling the administrator chose, and any process
//! may raise its soft limit up to it, so the agent does at start
//! ([`raise_to_hard`]).
//!
//! Soft limits are inherited across `fork` and `execve`, so without care
//! every job would start with the agent's raised limit. A job should get
//! what it would have got from whoever started the agent: programs that
//! size tables by the limit, or close every descriptor up to it, slow
//! down with a huge one, and `select(2)` cannot take descriptors past
//! 1023. The launcher therefore tells each shim the limit the agent was
//! started with ([`inherited`]), and the shim sets it before anything else;
//! the container's init and the job inherit it
//! from there, and a job that sets `rlimits.nofile` gets its own value
//! instead, set in the job process (`exec.rs`). Setting it in the shim
//! rather than between `fork` and `execve` keeps the launch on
//! `posix_spawn`, which does not copy the agent's page tables.
//!
//! The limit the agent was started with is recorded once per process,
//! beside the limit itself: both describe the process, not any one part
//! of the agent, and the launcher is several layers below `agent::run`.

use std::sync::OnceLock;

use nix::errno::Errno;
use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// A soft and a hard `RLIMIT_NOFILE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    pub soft: u64,
    pub hard: u64,
}

impl NofileLimit {
    /// This process's limit now.
    pub fn current() -> Result<NofileLimit, NofileError> {
        let (soft, hard) =
            getrlimit(Resource::RLIMIT_NOFILE).map_err(|errno| NofileError::Read { errno })?;
        Ok(NofileLimit { soft, hard })
    }

    /// The limit with its soft value raised to the hard one, or `None` when
    /// it is there already.
    pub fn raised(self) -> Option<NofileLimit> {
        (self.soft < self.hard).then_some(NofileLimit { soft: self.hard, hard: self.hard })
    }
}

/// `SOFT:HARD`, as the shim's `--nofile` takes it.
impl std::fmt::Display for NofileLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.soft, self.hard)
    }
}

impl std::str::FromStr for NofileLimit {
    type Err = String;

    fn from_str(text: &str) -> Result<NofileLimit, String> {
        let bad = || format!("{text:?}: expected SOFT:HARD, two numbers with SOFT <= HARD");
        let (soft, hard) = text.split_once(':').ok_or_else(bad)?;
        let (soft, hard) = (soft.parse().map_err(|_| bad())?, hard.parse().map_err(|_| bad())?);
        if soft > hard {
            return Err(bad());
        }
        Ok(NofileLimit { soft, hard })
    }
}

/// Why the limit could not be read or raised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NofileError {
    #[error("cannot read RLIMIT_NOFILE: {errno}")]
    Read { errno: Errno },
    #[error("cannot raise the soft RLIMIT_NOFILE from {} to {}: {errno}", .from.soft, .to.soft)]
    Raise { from: NofileLimit, to: NofileLimit, errno: Errno },
}

/// Descriptors one live run holds in the agent: its statistics files and
/// its watches (see the module documentation). 19 were counted in
/// `/proc/PID/fd` per `sleep` job on the hybrid test machine; rounded up.
pub const PER_RUN: u64 = 20;

/// Descriptors the agent holds whatever it runs: the store and its WAL, the
/// listening and control sockets, the jobs directory's inotify, the async
/// runtime's epoll and wakers, standard streams. 20 were counted in an idle
/// agent; the rest is room for connections to the control socket (root's
/// only). Connections to the HTTP endpoint are counted apart
/// ([`http_needs`]).
pub const BASE: u64 = 64;

/// Descriptors the HTTP endpoint holds at most with `max_connections`: one
/// per connection, and one more for a connection being turned away at the
/// cap (accepted and closed at once). Its listener is in [`BASE`].
pub fn http_needs(max_connections: u32) -> u64 {
    u64::from(max_connections) + 1
}

/// The most descriptors the HTTP endpoint may hold under a limit of
/// `limit`: a quarter of what is not [`BASE`]. The other three quarters are
/// for runs, so that no flood of connections, however large, takes the
/// descriptors a run's statistics files or the store need.
pub fn http_share(limit: u64) -> u64 {
    limit.saturating_sub(BASE) / 4
}

/// How many live runs one agent is built and measured for: the scale of the
/// scrape benchmark and of the "1000 runs on 2 CPUs" reliability target.
pub const EXPECTED_RUNS: u64 = 1000;

/// Below this hard limit the agent warns at start: it could not hold the
/// descriptors of [`EXPECTED_RUNS`] live runs.
pub const RECOMMENDED_HARD: u64 = BASE + PER_RUN * EXPECTED_RUNS;

/// About how many live runs a limit of `limit` descriptors holds.
pub fn runs_within(limit: u64) -> u64 {
    limit.saturating_sub(BASE) / PER_RUN
}

/// The live runs an agent should have descriptors for when it starts: the
/// runs it took over, and one for each job file in its jobs directory
/// (every file declares at least one job, and each job may have a run at
/// once). A machine with a handful of jobs needs nothing like
/// [`EXPECTED_RUNS`], and is not warned about a limit it will never reach.
pub fn expected_load(taken_over: usize, job_files: usize) -> u64 {
    u64::try_from(taken_over.saturating_add(job_files)).unwrap_or(u64::MAX)
}

/// How many of `load` live runs a hard limit of `hard` leaves without
/// descriptors, with `http` held back for the HTTP endpoint ([`http_needs`]);
/// `None` when they all fit.
pub fn runs_short(hard: u64, http: u64, load: u64) -> Option<u64> {
    let held = runs_within(hard.saturating_sub(http));
    (held < load).then(|| load - held)
}

/// What [`raise_to_hard`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    /// The limit the process was started with, which its children get.
    pub inherited: NofileLimit,
    /// The limit in force now.
    pub now: NofileLimit,
}

static INHERITED: OnceLock<NofileLimit> = OnceLock::new();

/// Raises this process's soft limit to its hard limit and records the limit
/// it was started with, for [`inherited`]. Once per process: a later call
/// changes nothing and reports what the first did, so the recorded limit is
/// always the one from before any raise.
///
/// On an error the limit is unchanged and nothing is recorded: children get
/// the agent's limit, which is then the one it was started with.
pub fn raise_to_hard() -> Result<Raised, NofileError> {
    if let Some(inherited) = INHERITED.get() {
        return Ok(Raised { inherited: *inherited, now: NofileLimit::current()? });
    }
    let inherited = NofileLimit::current()?;
    let now = match inherited.raised() {
        Some(to) => {
            setrlimit(Resource::RLIMIT_NOFILE, to.soft, to.hard)
                .map_err(|errno| NofileError::Raise { from: inherited, to, errno })?;
            to
        }
        None => inherited,
    };
    // Another thread racing this one recorded the same limit (the raise
    // above is idempotent), so losing the race is harmless.
    let inherited = *INHERITED.get_or_init(|| inherited);
    Ok(Raised { inherited, now })
}

/// The limit children of this process should get back: `Some` only once
/// [`raise_to_hard`] has raised it. Processes that never raise (`corral
/// run`, the shim, tests) start their children unchanged.
pub fn inherited() -> Option<NofileLimit> {
    let inherited = *INHERITED.get()?;
    (inherited.raised().is_some()).then_some(inherited)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_soft_limit_below_the_hard_one_is_raised() {
        let low = NofileLimit { soft: 1024, hard: 524_288 };
        assert_eq!(low.raised(), Some(NofileLimit { soft: 524_288, hard: 524_288 }));
        assert_eq!(NofileLimit { soft: 4096, hard: 4096 }.raised(), None);
    }

    #[test]
    fn the_warning_threshold_holds_the_expected_runs() {
        assert_eq!(runs_within(RECOMMENDED_HARD), EXPECTED_RUNS);
        assert!(runs_within(RECOMMENDED_HARD - 1) < EXPECTED_RUNS);
        // The common defaults: systemd's hard limit is ample, the
        // traditional 4096 is not.
        assert!(runs_within(524_288) > EXPECTED_RUNS);
        assert_eq!(runs_within(4096), 201);
        assert_eq!(runs_within(10), 0);
    }

    #[test]
    fn only_a_limit_below_what_the_load_needs_is_short() {
        let http = http_needs(128);
        // 20,000 (the test machine's hard limit) holds 990 runs beside the
        // default HTTP share: ample for a few job files, short for 1,000.
        assert_eq!(runs_within(20_000 - http), 990);
        assert_eq!(runs_short(20_000, http, expected_load(0, 8)), None);
        assert_eq!(runs_short(20_000, http, expected_load(0, 990)), None);
        assert_eq!(runs_short(20_000, http, expected_load(500, 500)), Some(10));
        // The smallest common hard limit, and a limit below the agent's own.
        assert_eq!(runs_within(1024 - http), 41);
        assert_eq!(runs_short(1024, http, expected_load(1, 40)), None);
        assert_eq!(runs_short(1024, http, expected_load(0, 50)), Some(9));
        assert_eq!(runs_short(10, http, 1), Some(1));
        assert_eq!(runs_short(10, http, 0), None);
    }

    #[test]
    fn the_http_endpoint_gets_a_quarter_of_the_limit_beyond_the_base() {
        // The default of 128 connections fits a hard limit of 1024, the
        // smallest common one, with three quarters left for runs.
        assert_eq!(http_share(1024), 240);
        assert!(http_needs(128) <= http_share(1024));
        assert!(http_needs(240) > http_share(1024));
        assert_eq!(http_share(20_000), 4984);
        assert_eq!(http_share(BASE), 0);
        assert_eq!(http_share(0), 0);
    }

    #[test]
    fn the_shim_option_round_trips_and_refuses_nonsense() {
        let limit = NofileLimit { soft: 1024, hard: 4096 };
        assert_eq!(limit.to_string(), "1024:4096");
        assert_eq!("1024:4096".parse(), Ok(limit));
        for bad in ["1024", "4096:1024", "a:b", ":", "1024:4096:1"] {
            assert!(bad.parse::<NofileLimit>().is_err(), "{bad}");
        }
    }
}
