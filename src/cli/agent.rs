//! `corral agent`: run the node agent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{self, AgentConfig, CgroupParent, LogFormat};

/// Run the agent: keep this machine's runs equal to what the job files
/// declare. Flags override the configuration file.
///
/// SIGTERM or SIGINT stops the agent: it takes no new work, leaves the
/// running jobs running (a restarted agent adopts them) unless
/// `--stop-jobs-on-exit` or `stop_jobs_on_exit` is set, and exits.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The agent configuration file; the commands that drive the agent read
    /// `CORRAL_CONFIG` too, so one exported variable serves both.
    #[arg(long, value_name = "FILE", env = "CORRAL_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Directory of job files.
    #[arg(long, value_name = "DIR")]
    pub jobs_dir: Option<PathBuf>,
    /// Directory for run records, run directories and the lock.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Name of the cgroup every job's cgroup goes under.
    #[arg(long, value_name = "NAME")]
    pub cgroup_parent: Option<String>,
    /// Address of the metrics and API endpoint.
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<SocketAddr>,
    /// Path of the control socket.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Stop every job when the agent stops.
    #[arg(long)]
    pub stop_jobs_on_exit: bool,
}

/// Threads for blocking work (launches, job file reads, scrapes).
const MAX_BLOCKING_THREADS: usize = 32;

pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args)?;
    init_logging(config.log_format);
    // One malloc arena for every thread: glibc's default (one per thread,
    // up to eight per CPU) leaves each launch thread's arena holding freed
    // memory, which at a thousand live runs was a quarter of the agent's
    // RSS. The agent allocates little at once, so one arena's lock costs
    // nothing measurable.
    // SAFETY: mallopt only sets an allocator parameter; no allocation is
    // under way on another thread yet (the runtime is not started).
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Launches block on a thread each for a few milliseconds: a burst of
        // a thousand job files had tokio start hundreds of threads (the
        // default cap is 512) on a 2-CPU node, each with its stack, all
        // exiting ten seconds later. A few dozen keep every CPU busy.
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate()).context("cannot catch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot catch SIGINT")?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        };
        crate::agent::run(config, shutdown).await.context("agent failed")
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The configuration file with the flags applied over it.
fn load(args: &AgentArgs) -> anyhow::Result<AgentConfig> {
    let mut config = super::load_config(&args.config)?;
    if let Some(dir) = &args.jobs_dir {
        config.jobs_dir = std::path::absolute(dir)?;
    }
    if let Some(dir) = &args.state_dir {
        config.state_dir = std::path::absolute(dir)?;
    }
    if let Some(parent) = &args.cgroup_parent {
        config.cgroup_parent = CgroupParent::parse(parent)
            .map_err(|e| anyhow::anyhow!("--cgroup-parent {parent:?}: {e}"))?;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(socket) = &args.socket {
        config.socket = std::path::absolute(socket)?;
    }
    if args.stop_jobs_on_exit {
        config.stop_jobs_on_exit = true;
    }
    Ok(config)
}

/// Logs go to stderr, one line per event, with control characters in any
/// field escaped (see [`crate::agent::logging`]); `RUST_LOG` adjusts the
/// level (default `info`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            builder.with_ansi(false).fmt_fields(crate::agent::logging::EscapedFields).init()
        }
        LogFormat::Json => builder.json().init(),
    }
}
