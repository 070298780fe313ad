//! The agent: keeps the machine's runs equal to what the job files declare.
//!
//! ```text
//!  jobs dir ──inotify──▶ watcher task ──batches──┐
//!                                                 ▼
//!  shutdown ─────────────────────────────▶ main loop (select!) ◀── timers (next deadline)
//!                                                 │  ▲
//!                       reconcile → supervisor ───┘  │ observations (launched, exited,
//!                       (state machine, store,       │ OOM, frozen) tagged by attempt
//!                        queue, ledger, preemption)  │
//!                                 │ ops, per run, in order
//!                                 ▼
//!                              Runtime (cgroups + containers)
//! ```
//!
//! Which file owns which state, and the invariant it keeps:
//!
//! - [`supervisor`]: the coordinator. It owns the components below and is
//!   the one path into the run state machine: `handle()` feeds one event,
//!   has the result stored, then carries out its actions; `schedule()` runs
//!   the scheduling pass. No other file changes a run's phase: the others
//!   return what to feed it ([`orders`]: events, runs to add, steps to
//!   decide once the orders before them are carried out).
//! - [`recorder`]: the event feed. A transition is on record before any of
//!   its actions runs, and announced only once it is.
//! - [`runs`]: every run and each one-shot job's run under way (`RunTable`):
//!   the run under way of a job always names a run in the table.
//! - [`reconcile`]: file changes → the job set, each file's last good
//!   version, problems reported once. [`job_side`]: what a job added,
//!   changed or removed asks of its runs and its schedule, one step at a
//!   time, returned as orders.
//! - [`cron`]: the recurring jobs' states; each decision is committed to the
//!   store with its runs before they are queued or stopped.
//! - [`scheduling`]: the preemptions under way, the shared pool as last
//!   written to the runs' cpusets, the next rescan and the resume order;
//!   [`placing`]: what the pass is given, a run's cgroup settings and
//!   memory charge. The pass itself, the queue and the policy mapping are
//!   pure and live in [`crate::scheduler`].
//! - [`launching`]: the plan of the run being placed, built and checked
//!   before its placement is recorded and taken as it is by its launch;
//!   the epochs that name each launch in its reports.
//! - [`reports`]: what a report from a run's operation task means for it.
//! - [`recovery`]: taking over the runs of an earlier agent, decided from one
//!   survey of the store and the runtime: the ledger rebuilt, stray cgroups,
//!   each run adopted with the events that say what happened while no agent
//!   ran.
//! - [`control`]: the control socket's requests, answered from a read view;
//!   a change comes back as the event to feed. The runs frozen by hand (the
//!   held set) are the supervisor's, and only a freeze, thaw, kill or
//!   requeue changes them.
//! - [`telemetry`]: counts and the views the metrics and the API read.
//! - [`job`]: what a job spec means for its runs beyond the scheduler's
//!   [`RunMeta`](crate::scheduler::RunMeta): placement request, version
//!   record. [`uids`]: the jobs' dynamic uids; [`run_files`]: the files each
//!   run keeps under the runs directory.
//! - [`runtime`]: the machine as a trait; [`host`] implements it on cgroups
//!   and containers; [`ops`] carries out each run's operations in order.
//! - [`clock`], [`timers`]: time from `tokio::time`, so tests can pause it.
//! - [`store_fault`]: holding, not stopping, while the store cannot be
//!   written (a full state disk, a deleted database).
//! - [`pressure`]: node-pressure protection: the readings, and the runs
//!   released after it; the decisions are pure
//!   ([`crate::scheduler::pressure`]) and carried out by the supervisor.
//! - [`readiness`]: telling a service manager the agent is ready, and
//!   stopping (`$NOTIFY_SOCKET`).
//! - [`cluster`]: in cluster mode, the runs bound to this node: a binding
//!   becomes one local run (or a hand-back), a deleted binding stops it, and
//!   the node fences (freezes) its cluster runs while it cannot renew its
//!   lease. The etcd side (lease, record, bindings watch, statuses) is the
//!   node task's ([`crate::cluster::node`]); the elected scheduler and the
//!   `publish_dir` publisher run on tasks of their own, beside the loop.
//!
//! The main loop waits on these at once: shutdown, a batch of job file
//! changes, an observation from a run, a request from the control socket
//! ([`control`]), an event of the cluster node task (in cluster mode), and
//! the next timer (a run's, or a recurring job's next firing). After each,
//! the scheduling pass runs. Nothing in the loop blocks on the kernel: launches,
//! freezes and kills run on each run's operation task and report back.
//!
//! Nor does it read the jobs directory: a reload asked for on the control
//! socket is handed, with its reply, to the watcher task, which reads the
//! directory and sends the outcome back in line with its batches
//! ([`DirUpdate`]); the main loop applies it as it applies a batch, and
//! answers.
//!
//! The directory semantics, preemption, OOM handling and recovery are
//! described for operators in `docs/agent.md`.

pub mod arrays;
pub mod clock;
pub mod cluster;
pub mod control;
pub mod cron;
pub mod dependencies;
pub mod error;
pub mod host;
pub mod job;
pub mod job_side;
pub mod launching;
pub mod logging;
pub mod ops;
pub mod orders;
pub mod placing;
pub mod pressure;
pub mod readiness;
pub mod reconcile;
pub mod recorder;
pub mod recovery;
pub mod reports;
pub mod run_files;
pub mod runs;
pub mod runtime;
pub mod scheduling;
pub mod store_fault;
pub mod supervisor;
pub mod telemetry;
pub mod timers;
pub mod uids;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod pressure_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_arrays;
#[cfg(test)]
mod tests_cluster;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

pub use error::AgentError;
pub use supervisor::Supervisor;

use crate::api::{Answer, ControlError, Endpoints, FeedTap, Freshness, Request};
use crate::cluster::node::{NodeEvent, NodeLink, NodeSummary};
use crate::cluster::records::RunStatus;
use crate::config::AgentConfig;
use crate::launch::Host;
use crate::metrics::{Metrics, MetricsConfig, PublishedSnapshot};
use crate::store::{RunStore, SqliteStore, StateDirLock};
use crate::watch::{FileChange, JobDirWatcher, WatchError, WatchOptions};
use clock::Clock;
use host::HostRuntime;
use runtime::{Observation, Runtime};
use store_fault::StoreFault;
use telemetry::{AgentApi, Telemetry};

/// The agent settings the supervisor decides with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Run directories go under `<runs_dir>/<run>/`.
    pub runs_dir: PathBuf,
    /// SIGTERM-to-SIGKILL grace of jobs that set none.
    pub default_grace: Duration,
    /// A run is not preempted before it has run this long.
    pub min_runtime_before_preemption: Duration,
    /// Which jobs the agent runs at all; holds the `default_user` and the
    /// `dynamic_users` range.
    pub admission: crate::spec::AdmissionRules,
    /// Where the host's accounts and processes are read, to keep dynamic
    /// uids clear of them.
    pub host_ids: crate::dynamic_user::HostRoots,
}

/// Runs the agent on this machine with `config` until `shutdown` completes.
///
/// Refuses to start when another agent holds the state directory, or when
/// the store cannot be opened (a damaged database is reported, never
/// touched).
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    // Before the launcher is made: it records the limit shims get back.
    let nofile = raise_nofile(&config);
    check_http_budget(&config)?;
    let _lock = StateDirLock::acquire(&config.state_dir)?;
    let db_path = config.state_dir.join(SqliteStore::FILE_NAME);
    let runs_dir = config.state_dir.join(crate::launch::plan::RUNS_DIR);
    let host = Host::discover(&config)?;
    // Before the database is opened, which would create an empty one that
    // the next start could not tell from a real history.
    if recovery::store_is_blank(&db_path) {
        // Cgroups with processes: an empty one left by a run that ended is
        // harmless (a started agent removes it).
        let live = host
            .cgroups()
            .jobs()
            .unwrap_or_default()
            .into_iter()
            .filter(|name| host.cgroups().job(name).pids().is_ok_and(|pids| !pids.is_empty()));
        let found = recovery::LostStoreEvidence {
            run_dirs: recovery::used_run_dirs(&runs_dir),
            live_cgroups: live.map(|name| name.as_str().to_owned()).collect(),
        };
        if !found.is_empty() {
            return Err(AgentError::LostStore { path: db_path, runs_dir, found });
        }
    } else {
        // A second start of the same configuration runs none of the
        // one-shot jobs the first finished: say why, and how to start over.
        info!(
            state_dir = %config.state_dir.display(),
            "going on from the state of earlier starts: one-shot jobs that ended are not run \
             again; to start afresh, stop the agent once no run is left and remove the state \
             directory"
        );
    }
    let store = SqliteStore::open(&db_path)?;
    let commit_counter = store.commit_counter();
    std::fs::create_dir_all(&runs_dir)
        .map_err(|source| AgentError::StateDir { path: runs_dir.clone(), source })?;
    // Bound before any run is touched: an agent that cannot serve its
    // endpoint (the port is taken) stops here, having changed nothing.
    let listener = crate::api::bind(config.listen).await?;
    let layout = host.cgroups().layout().kind;
    let topology = host.topology().clone();
    let ledger = host.ledger()?;
    info!(
        jobs_dir = %config.jobs_dir.display(),
        state_dir = %config.state_dir.display(),
        cgroup_parent = %config.cgroup_parent,
        cgroup_root = %host.cgroup_mode(),
        cpus = %ledger.allocatable(),
        "agent starting"
    );
    if config.default_user == crate::spec::DefaultUser::Dynamic {
        warn_accounts_in_range(&config, &crate::dynamic_user::HostRoots::default());
    }
    let settings = Settings {
        runs_dir,
        default_grace: config.stop_grace,
        min_runtime_before_preemption: config.min_runtime_before_preemption,
        admission: config.admission(),
        host_ids: crate::dynamic_user::HostRoots::default(),
    };
    let pressure_sources = config.pressure.as_ref().map(|_| {
        pressure::PressureSources::host(
            host.cgroups().parent_memory_pressure(),
            std::path::Path::new("/proc"),
        )
    });
    let runtime = Arc::new(HostRuntime::new(host));
    let (sink, observations) = mpsc::unbounded_channel();
    let mut supervisor =
        Supervisor::new(settings, topology, ledger, store, runtime, Clock::system(), sink);
    supervisor.set_cron_settings(cron::CronSettings {
        default_tz: config.default_timezone,
        node: crate::scheduler::cron::jitter::node_name(),
        catch_up_limit: config.catch_up_limit,
    });
    if let (Some(thresholds), Some(sources)) = (&config.pressure, pressure_sources) {
        info!(
            psi = %sources.psi.as_ref().map_or("none".into(), |p| p.display().to_string()),
            meminfo = %sources.meminfo.display(),
            check_every = %crate::spec::duration::format(thresholds.check_every),
            "node-pressure protection on"
        );
        if sources.psi.is_none() {
            warn!("no memory.pressure file: pressure protection goes by MemAvailable alone");
        }
        let now = supervisor.clock.now();
        supervisor.set_pressure(pressure::Pressure::new(thresholds.clone(), sources, now));
    }
    let snapshot = Arc::new(PublishedSnapshot::default());
    let metrics_config = MetricsConfig {
        finished_retention: config.finished_run_retention,
        ..MetricsConfig::default()
    };
    let mut metrics = Metrics::new(&metrics_config, snapshot.clone());
    // The cluster scheduler's metrics are on every scheduling agent's
    // scrape; only the leader's carry more than `corral_cluster_leader`.
    let scheduler_metrics = config
        .cluster
        .as_ref()
        .filter(|c| c.scheduler)
        .map(|_| Arc::new(crate::cluster::scheduler::ClusterMetrics::default()));
    if let Some(m) = &scheduler_metrics {
        metrics.register_cluster(m.clone());
    }
    let metrics = Arc::new(metrics);
    let mut telemetry = Telemetry::new(metrics.clone(), snapshot, Some(layout));
    let fresh = Arc::new(Freshness::new(commit_counter));
    telemetry.fresh = Some(fresh.clone());
    let views = telemetry.views.clone();
    // Before recovery: runs that ended while no agent ran are counted as
    // they are found (runs ended, OOM failures), like any other end.
    supervisor.set_telemetry(telemetry);
    // Taking over records what it finds before acting on it; with nothing
    // recordable it would act blind, so a store that cannot be written
    // stops the start (the runs keep going and their shims keep their exit
    // statuses for the next try).
    let recovered = supervisor.recover().map_err(|e| match e {
        AgentError::Store(source) if source.is_unwritable() => AgentError::CannotTakeOver(source),
        e => e,
    })?;
    if recovered.runs > 0 || recovered.stray_cgroups > 0 {
        info!(
            runs = recovered.runs,
            running = recovered.running,
            ended_while_down = recovered.ended_while_down,
            stray_cgroups = recovered.stray_cgroups,
            "took over the runs of the previous agent"
        );
    }
    if let Some(limit) = nofile {
        warn_if_nofile_short(&config, limit, recovered.runs);
    }
    // Before the first scrape can be served, so that no scrape after a
    // restart misses a run that ended within the retention.
    match supervisor.restore_finished() {
        Ok(0) => {}
        Ok(restored) => info!(
            restored,
            retention = %crate::spec::duration::format(config.finished_run_retention),
            "runs that ended within the retention are back in the scrape"
        ),
        // Only the scrape loses: the runs themselves were taken over above.
        Err(e) => warn!("runs that ended before this start are not in the scrape: {e}"),
    }
    supervisor.publish();
    // Run details come from the store; the API reads through a connection
    // of its own, so a request never waits for the main loop.
    let api_store = SqliteStore::open(&db_path)?;
    let api = Arc::new(AgentApi::new(views, api_store));
    let endpoints = Endpoints { api, metrics, fresh: Some(fresh) };
    let (stop_serving, serving_stopped) = tokio::sync::oneshot::channel::<()>();
    info!(listen = %config.listen, "serving /metrics and the read-only API");
    let server = tokio::spawn(crate::api::serve(listener, endpoints, config.http, async {
        let _ = serving_stopped.await;
    }));
    let files = watch_jobs(&config)?;
    let commands = listen(&config, supervisor.feed().tap())?;
    let on_exit = if config.stop_jobs_on_exit {
        // Long enough for the default grace and a kill.
        OnExit::StopJobs { wait: config.stop_grace + Duration::from_secs(15) }
    } else {
        OnExit::LeaveRunning
    };
    // Everything a client or a unit ordered after the agent needs is up:
    // the store, the runs taken over, the HTTP endpoint, the control socket.
    let readiness = readiness::Readiness::from_env();
    readiness.ready(&format!(
        "running; {} run(s) taken over, {} still running",
        recovered.runs, recovered.running
    ));
    let cluster = match &config.cluster {
        Some(c) => Some(join_cluster(&mut supervisor, c, &config, layout)?),
        None => None,
    };
    let shutdown = async {
        shutdown.await;
        readiness.stopping(match on_exit {
            OnExit::LeaveRunning => "stopping; the runs keep running",
            OnExit::StopJobs { .. } => "stopping every run",
        });
    };
    let publishing = crate::cluster::publish::Publishing::start(&config);
    let scheduling = match (&config.cluster, scheduler_metrics) {
        (Some(c), Some(m)) => {
            let settings = crate::cluster::scheduler::SchedulerSettings {
                keys: crate::cluster::Keys::new(&c.prefix),
                node: c.node_name.clone(),
                lease_ttl: c.lease_ttl,
                default_timezone: config.default_timezone,
                catch_up_limit: config.catch_up_limit,
                default_grace: config.stop_grace,
                node_loss_grace: c.node_loss_grace,
            };
            Some(crate::cluster::scheduler::Scheduling::start(c, settings, m))
        }
        _ => None,
    };
    let driven =
        drive_in_cluster(supervisor, files, observations, commands, cluster, shutdown, on_exit)
            .await;
    if let Some(publishing) = publishing {
        publishing.stop().await;
    }
    if let Some(scheduling) = scheduling {
        scheduling.stop().await;
    }
    let _ = stop_serving.send(());
    if let Err(e) = server.await {
        error!("the HTTP endpoint's task failed: {e}");
    }
    driven?;
    info!("agent stopped");
    Ok(())
}

/// Raises the agent's descriptor limit for its runs' open statistics files
/// (see [`crate::container::nofile`]) and returns the limit now in force.
/// Not fatal: with the limit it was given the agent works, for fewer runs;
/// a run whose files cannot be opened is still run, only without
/// statistics.
fn raise_nofile(config: &AgentConfig) -> Option<crate::container::nofile::NofileLimit> {
    use crate::container::nofile;
    let http = nofile::http_needs(config.http.max_connections);
    match nofile::raise_to_hard() {
        Ok(raised) => {
            let what = if raised.inherited == raised.now {
                "open file limit (RLIMIT_NOFILE): the soft limit is the hard one already"
            } else {
                "open file limit (RLIMIT_NOFILE) raised to the hard limit; jobs get the inherited one"
            };
            info!(
                inherited_soft = raised.inherited.soft,
                soft = raised.now.soft,
                hard = raised.now.hard,
                live_runs = nofile::runs_within(raised.now.hard.saturating_sub(http)),
                "{what}"
            );
            Some(raised.now)
        }
        Err(e) => {
            warn!("{e}; going on with the limit the agent was started with");
            None
        }
    }
}

/// Warns when the hard descriptor limit cannot hold the runs this start
/// already has ahead of it: those taken over and a run per job file (see
/// [`crate::container::nofile::expected_load`]). A limit that merely falls
/// short of the agent's design scale is no news on a machine that runs a
/// few jobs.
fn warn_if_nofile_short(
    config: &AgentConfig,
    limit: crate::container::nofile::NofileLimit,
    taken_over: usize,
) {
    use crate::container::nofile;
    let http = nofile::http_needs(config.http.max_connections);
    // A directory that cannot be listed is reported by the watcher.
    let job_files = crate::watch::job_files(&config.jobs_dir).map_or(0, |files| files.len());
    let load = nofile::expected_load(taken_over, job_files);
    if let Some(short) = nofile::runs_short(limit.hard, http, load) {
        warn!(
            hard = limit.hard,
            taken_over,
            job_files,
            "the hard open file limit holds the statistics files of about {} live runs, \
             {short} fewer than the runs taken over and the job files ask for; raise it \
             (LimitNOFILE= in a systemd unit, ulimit -Hn) for more",
            nofile::runs_within(limit.hard.saturating_sub(http))
        );
    }
}

/// Refuses a `max_connections` that would let the HTTP port take more than
/// its share of the descriptor limit now in force: whatever the port is
/// sent, the agent keeps the rest for its store, sockets and runs.
fn check_http_budget(config: &AgentConfig) -> Result<(), AgentError> {
    use crate::container::nofile::{self, NofileLimit};
    let Ok(limit) = NofileLimit::current() else { return Ok(()) };
    let max_connections = config.http.max_connections;
    let allowed = nofile::http_share(limit.soft);
    if nofile::http_needs(max_connections) > allowed {
        return Err(AgentError::HttpBudget {
            max_connections,
            limit: limit.soft,
            allowed: allowed.saturating_sub(nofile::http_needs(0)),
        });
    }
    Ok(())
}

/// Starts the watcher of the jobs directory on a task of its own: a batch
/// read is never interrupted by the main loop's other work, and the main loop
/// never waits on the filesystem. The task also serves reloads.
fn watch_jobs(config: &AgentConfig) -> Result<JobFiles, AgentError> {
    let mut watcher = JobDirWatcher::new(&config.jobs_dir, WatchOptions::default())?;
    let dir = watcher.dir().to_path_buf();
    let (tx, updates) = mpsc::channel(16);
    let (reloads, mut asked) = mpsc::channel::<oneshot::Sender<Answer>>(RELOADS_WAITING);
    tokio::spawn(async move {
        loop {
            // Dropping a half-done `next_batch` for a reload loses nothing:
            // it is cancel safe, and the reload reads everything anyway.
            let update = tokio::select! {
                batch = watcher.next_batch() => DirUpdate::Batch(batch),
                Some(reply) = asked.recv() => {
                    DirUpdate::Reloaded { read: watcher.reload().await, reply }
                }
            };
            if tx.send(update).await.is_err() {
                break;
            }
        }
    });
    Ok(JobFiles { updates, reloads, dir })
}

/// Reloads that may wait for the watcher task before more are turned away.
const RELOADS_WAITING: usize = 8;

/// Listens on the control socket on a task of its own; requests come to the
/// main loop. The socket file goes when the agent stops.
fn listen(config: &AgentConfig, feed: FeedTap) -> Result<Commands, AgentError> {
    let socket = crate::api::ControlSocket::bind(&config.socket, config.socket_group.as_ref())?;
    info!(socket = %socket.path().display(), "control socket ready");
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move { socket.serve(tx, feed).await });
    Ok(rx)
}

/// Requests from the control socket.
pub type Commands = mpsc::Receiver<crate::api::Command>;

/// What the watcher task sends the main loop, in the order it read the
/// directory.
#[derive(Debug)]
pub enum DirUpdate {
    /// Changes the watcher saw by itself.
    Batch(Result<Vec<FileChange>, WatchError>),
    /// What a reload read, and where its answer goes.
    Reloaded { read: Result<Vec<FileChange>, WatchError>, reply: oneshot::Sender<Answer> },
}

/// The main loop's end of the watcher task.
#[derive(Debug)]
pub struct JobFiles {
    pub updates: mpsc::Receiver<DirUpdate>,
    /// Where reload requests go, each with its reply.
    pub reloads: mpsc::Sender<oneshot::Sender<Answer>>,
    /// The jobs directory, as the watcher reports paths under it.
    pub dir: PathBuf,
}

impl JobFiles {
    /// Hands a reload to the watcher task without waiting for it: when too
    /// many are waiting, or the task is gone, it is answered at once.
    fn ask_reload(&self, reply: oneshot::Sender<Answer>) {
        use mpsc::error::TrySendError;
        let (reply, refused) = match self.reloads.try_send(reply) {
            Ok(()) => return,
            Err(TrySendError::Full(reply)) => {
                (reply, ControlError::ReloadsWaiting { waiting: RELOADS_WAITING })
            }
            Err(TrySendError::Closed(reply)) => (reply, ControlError::NotWatched),
        };
        let _ = reply.send(Err(refused));
    }
}

/// What the agent does with its runs when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExit {
    /// Leave them running: they belong to the machine, not to the agent
    /// process; the next agent adopts them.
    LeaveRunning,
    /// Stop every run (SIGTERM, grace, kill) and wait for them, up to `wait`.
    StopJobs { wait: Duration },
}

/// Host accounts and groups numbered inside `dynamic_users` are never handed
/// out, but a range that holds them is likely a mistake: say so once.
fn warn_accounts_in_range(config: &AgentConfig, roots: &crate::dynamic_user::HostRoots) {
    let range = config.dynamic_users;
    match crate::dynamic_user::HostIds::read(roots) {
        Ok(ids) => {
            let found = ids.accounts_in(range);
            if !found.is_empty() {
                let list: Vec<String> =
                    found.iter().take(10).map(|(id, what)| format!("{what} ({id})")).collect();
                warn!(
                    "dynamic_users range {range} holds {} host account(s) or group(s): {}{}; \
                     their numbers are skipped. Move the range clear of /etc/passwd and /etc/group",
                    found.len(),
                    list.join(", "),
                    if found.len() > 10 { ", ..." } else { "" }
                );
            }
        }
        Err(e) => warn!("cannot check the dynamic_users range against host accounts: {e}"),
    }
}

/// While turns follow each other closely (a burst of reports), the
/// published state (the metrics snapshot and the API views) is brought up to
/// date at most this often, and this long after the last turn at the latest.
/// A publish copies every run and job, so one per turn would make a burst of
/// n reports cost O(n × runs); a turn after a quiet spell publishes at once.
const PUBLISH_EVERY: Duration = Duration::from_millis(20);

/// Resolves when an HTTP request waits for a publish (see [`Freshness`]);
/// never without telemetry.
async fn publish_asked(fresh: Option<&Freshness>) {
    match fresh {
        Some(fresh) => fresh.asked().await,
        None => std::future::pending().await,
    }
}

/// How often the store is checked, so that a full disk or a deleted
/// database shows in `/readyz` within this even when the agent has nothing
/// to record. The check writes only when the disk looks full.
const STORE_CHECK: Duration = Duration::from_secs(10);

/// Runs the agent until `shutdown` completes: job file batches and reloads
/// from `files`, run observations from `observations`, requests from
/// `commands`.
///
/// A store that cannot be written does not stop the loop: it holds (see
/// [`store_fault`]) until a write goes through again.
pub async fn drive<R: Runtime, S: RunStore>(
    supervisor: Supervisor<R, S>,
    files: JobFiles,
    observations: mpsc::UnboundedReceiver<Observation>,
    commands: Commands,
    shutdown: impl Future<Output = ()>,
    on_exit: OnExit,
) -> Result<Supervisor<R, S>, AgentError> {
    drive_in_cluster(supervisor, files, observations, commands, None, shutdown, on_exit).await
}

/// [`drive`], as a node of a cluster when `cluster` is given: bindings from
/// the node task become local runs (or hand-backs), the cluster runs'
/// transitions go back as their statuses, and the node's summary is handed
/// over at publish time (see [`cluster`]).
pub async fn drive_in_cluster<R: Runtime, S: RunStore>(
    mut supervisor: Supervisor<R, S>,
    mut files: JobFiles,
    mut observations: mpsc::UnboundedReceiver<Observation>,
    mut commands: Commands,
    cluster: Option<NodeLink>,
    shutdown: impl Future<Output = ()>,
    on_exit: OnExit,
) -> Result<Supervisor<R, S>, AgentError> {
    tokio::pin!(shutdown);
    // The events come in on one arm; the rest is used after the turn.
    let (mut node_events, node_out) = match cluster {
        Some(link) => (Some(link.events), Some((link.statuses, link.summary))),
        None => (None, None),
    };
    // Every transition, to report the cluster runs' own.
    let mut feed = node_out.as_ref().map(|_| supervisor.feed().subscribe());
    let mut watching = true;
    let mut controlled = true;
    let mut fault: Option<StoreFault> = None;
    let mut store_check = tokio::time::interval(STORE_CHECK);
    store_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When the state was last published, and whether turns since changed it.
    let mut published_at: Option<tokio::time::Instant> = None;
    let mut unpublished = false;
    let fresh = supervisor.freshness();
    loop {
        // An HTTP request found the views behind the store.
        let mut asked = false;
        let publish_at = published_at.filter(|_| unpublished).map(|at| at + PUBLISH_EVERY);
        // While holding, only the next try of the store is due.
        let deadline = match &fault {
            Some(f) => Some(f.retry_at),
            None => supervisor.next_deadline(),
        };
        let holding = fault.is_some();
        // A turn that changed nothing (a read-only request, a store check
        // that found the store writable) needs no scheduling pass and no
        // new snapshot: both cost a walk of every run, which at a thousand
        // runs made `corral ps` slow and an idle agent busy every 10 s.
        let mut quiet = false;
        let turn = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(obs) = observations.recv() => deliver(&mut supervisor, &mut fault, obs),
            update = files.updates.recv(), if watching && !holding => match update {
                Some(DirUpdate::Batch(Ok(changes))) => supervisor.apply_files(changes).map(drop),
                Some(DirUpdate::Batch(Err(e))) => {
                    error!("job directory: {e}; the jobs in force stay as they are");
                    Ok(())
                }
                Some(DirUpdate::Reloaded { read, reply }) => {
                    supervisor.apply_reload(&files.dir, read).map(|answer| {
                        // The client may have gone; the reload stands either way.
                        let _ = reply.send(answer);
                    })
                }
                None => {
                    warn!("the job directory watcher stopped; no more changes will be seen");
                    watching = false;
                    Ok(())
                }
            },
            command = commands.recv(), if controlled => match command {
                Some(command) if fault.is_some() && command.request.changes_something() => {
                    let reason = fault.as_ref().map_or("", |f| &f.reason).to_owned();
                    let refused = ControlError::Holding { holding: HOLDING, reason };
                    let _ = command.reply.send(Err(refused));
                    Ok(())
                }
                Some(crate::api::Command { request: Request::Reload, reply }) if watching => {
                    files.ask_reload(reply);
                    Ok(())
                }
                Some(command) => {
                    // An answer reads the published state too (the runs'
                    // statistics handles), and what a client was told must
                    // not be older than what the HTTP views serve after it.
                    if unpublished {
                        supervisor.publish();
                        published_at = Some(tokio::time::Instant::now());
                        unpublished = false;
                    }
                    quiet = !command.request.changes_something();
                    supervisor.command(command)
                }
                None => {
                    controlled = false;
                    Ok(())
                }
            },
            event = node_event(node_events.as_mut()), if !holding && supervisor.jobs_read() => {
                let statuses = match event {
                    Some(NodeEvent::Bound(binding)) => supervisor.cluster_bound(&binding),
                    Some(NodeEvent::Listed(bindings)) => supervisor.cluster_listed(&bindings),
                    Some(NodeEvent::Unbound { run }) => {
                        supervisor.cluster_unbound(&run).map(|()| Vec::new())
                    }
                    Some(NodeEvent::Fenced { problem }) => {
                        supervisor.cluster_fenced(problem).map(|()| Vec::new())
                    }
                    Some(NodeEvent::Unfenced) => {
                        supervisor.cluster_unfenced();
                        Ok(Vec::new())
                    }
                    Some(NodeEvent::Unavailable { problem }) => {
                        supervisor.set_cluster_problem(problem);
                        Ok(Vec::new())
                    }
                    None => {
                        warn!("the cluster task stopped; no more bindings will be taken");
                        node_events = None;
                        Ok(Vec::new())
                    }
                };
                statuses.map(|statuses| send_statuses(node_out.as_ref(), statuses))
            }
            () = sleep_until(deadline) => match &mut fault {
                Some(_) => retry_store(&mut supervisor, &mut fault),
                None => supervisor.fire_timers(),
            },
            // The turn that follows publishes.
            () = sleep_until(publish_at), if publish_at.is_some() => Ok(()),
            () = publish_asked(fresh.as_deref()) => {
                asked = true;
                Ok(())
            }
            _ = store_check.tick(), if !holding => match supervisor.check_writable() {
                // Only a store that cannot be written matters here; anything
                // else (busy, say) is for the next real write to report.
                Err(AgentError::Store(e)) if !e.is_unwritable() => {
                    warn!("checking the state database: {e}");
                    Ok(())
                }
                checked => {
                    quiet = checked.is_ok();
                    checked
                }
            },
        };
        absorb(turn, &mut supervisor, &mut fault)?;
        // Take everything already reported before deciding again.
        while let Ok(obs) = observations.try_recv() {
            quiet = false;
            let delivered = deliver(&mut supervisor, &mut fault, obs);
            absorb(delivered, &mut supervisor, &mut fault)?;
        }
        if let Some(feed) = &mut feed {
            let reported = report_cluster_runs(&mut supervisor, feed, node_out.as_ref());
            absorb(reported, &mut supervisor, &mut fault)?;
        }
        if quiet && fault.is_none() && !asked {
            continue;
        }
        if fault.is_none() {
            let scheduled = supervisor.schedule();
            absorb(scheduled, &mut supervisor, &mut fault)?;
            // A cluster run launched or thawed while the node is fenced is
            // frozen in the same turn.
            let swept = supervisor.fence_sweep();
            absorb(swept, &mut supervisor, &mut fault)?;
        }
        let now = tokio::time::Instant::now();
        if asked || published_at.is_none_or(|at| now >= at + PUBLISH_EVERY) {
            supervisor.publish();
            published_at = Some(now);
            unpublished = false;
            if let Some((_, summary)) = &node_out {
                let latest = supervisor.node_summary();
                summary.send_if_modified(|s| {
                    let changed = *s != latest;
                    *s = latest;
                    changed
                });
            }
        } else {
            unpublished = true;
        }
    }
    if unpublished {
        supervisor.publish();
    }
    info!("shutting down: no new work is taken");
    supervisor.stop_firing();
    if let Some(fault) = &fault {
        // Nothing more can be recorded: whatever happens now is left for the
        // next agent, which reads it from the run directories.
        warn!(
            unrecorded_reports = fault.deferred(),
            "the state database still cannot be written; leaving every run running for the \
             next agent to take over (their shims keep their exit statuses)"
        );
        return Ok(supervisor);
    }
    match on_exit {
        OnExit::LeaveRunning => {
            // Starts under way are waited for, so that their runs are
            // recorded as running rather than found by the next agent.
            settle(&mut supervisor, &mut observations, Duration::from_secs(10), |s| {
                s.launches_under_way() == 0
            })
            .await?;
            info!(runs = supervisor.live_runs(), "leaving the runs running");
        }
        OnExit::StopJobs { wait } => {
            supervisor.stop_all("agent shutdown")?;
            settle(&mut supervisor, &mut observations, wait, |s| s.live_runs() == 0).await?;
            if supervisor.live_runs() > 0 {
                warn!(runs = supervisor.live_runs(), "runs still stopping when the agent exits");
            }
        }
    }
    Ok(supervisor)
}

/// The answer to a request that would change something while the store
/// cannot be written.
pub const HOLDING: &str =
    "the state database cannot be written, so the agent takes no new work and changes nothing \
     until it can";

/// Hands `obs` to the supervisor, or keeps it while the store cannot be
/// written. A report whose recording failed is kept too, to be delivered
/// again: the store writes a report's records before the state change
/// they explain, so delivering it again finds the run where it was.
fn deliver<R: Runtime, S: RunStore>(
    supervisor: &mut Supervisor<R, S>,
    fault: &mut Option<StoreFault>,
    obs: Observation,
) -> Result<(), AgentError> {
    if let Some(fault) = fault {
        fault.defer(obs);
        return Ok(());
    }
    let kept = obs.clone();
    match supervisor.observe(obs) {
        Err(AgentError::Store(e)) if e.is_unwritable() => {
            let f = hold(supervisor, fault, &e);
            f.defer(kept);
            Ok(())
        }
        other => other,
    }
}

/// Holds on an unwritable store's error; passes every other result on.
fn absorb<R: Runtime, S: RunStore>(
    result: Result<(), AgentError>,
    supervisor: &mut Supervisor<R, S>,
    fault: &mut Option<StoreFault>,
) -> Result<(), AgentError> {
    match result {
        Err(AgentError::Store(e)) if e.is_unwritable() => {
            hold(supervisor, fault, &e);
            Ok(())
        }
        other => other,
    }
}

/// Starts holding (or holds on) because of `e`.
fn hold<'f, R: Runtime, S: RunStore>(
    supervisor: &mut Supervisor<R, S>,
    fault: &'f mut Option<StoreFault>,
    e: &crate::store::StoreError,
) -> &'f mut StoreFault {
    let now = tokio::time::Instant::now();
    let reason = e.to_string();
    match fault {
        Some(f) => {
            f.failed_again(reason.clone(), now);
            warn!(
                next_try_in = ?f.retry_at - now,
                unrecorded_reports = f.deferred(),
                "still holding: {}",
                f.reason
            );
        }
        None => {
            error!(
                "{reason}. Holding: no new work is taken, running jobs are left alone and what \
                 happens to them is recorded once the database takes writes again; \
                 trying again in {:?}",
                store_fault::FIRST_RETRY
            );
            *fault = Some(StoreFault::new(reason.clone(), now));
        }
    }
    supervisor.set_store_problem(Some(reason));
    fault.as_mut().expect("set above")
}

/// Tries the store again: on success, delivers the reports kept meanwhile,
/// in order, looks again at the jobs whose runs may not have been created,
/// and stops holding.
fn retry_store<R: Runtime, S: RunStore>(
    supervisor: &mut Supervisor<R, S>,
    fault: &mut Option<StoreFault>,
) -> Result<(), AgentError> {
    supervisor.check_writable()?;
    let mut delivered = 0;
    while let Some(obs) = fault.as_mut().and_then(StoreFault::next_deferred) {
        let kept = obs.clone();
        match supervisor.observe(obs) {
            Ok(()) => delivered += 1,
            Err(AgentError::Store(e)) if e.is_unwritable() => {
                hold(supervisor, fault, &e).undo_next(kept);
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    supervisor.revisit_jobs()?;
    if let Some(f) = fault.take() {
        info!(
            held_for = ?f.since.elapsed(),
            tries = f.tries + 1,
            reports_recorded = delivered,
            "the state database takes writes again; taking new work"
        );
    }
    supervisor.set_store_problem(None);
    Ok(())
}

/// Processes observations and timers until `done` or `wait` has passed.
async fn settle<R: Runtime, S: RunStore>(
    supervisor: &mut Supervisor<R, S>,
    observations: &mut mpsc::UnboundedReceiver<Observation>,
    wait: Duration,
    done: impl Fn(&Supervisor<R, S>) -> bool,
) -> Result<(), AgentError> {
    let give_up = tokio::time::Instant::now() + wait;
    while !done(supervisor) {
        let deadline = supervisor.next_deadline();
        tokio::select! {
            () = tokio::time::sleep_until(give_up) => break,
            Some(obs) = observations.recv() => supervisor.observe(obs)?,
            () = sleep_until(deadline) => supervisor.fire_timers()?,
        }
    }
    Ok(())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Joins the cluster of `c`: the live cluster runs taken over are known as
/// such and their statuses written again; the node task starts, and
/// connects (and reconnects) on its own, so an unreachable etcd never stops
/// the agent or its local jobs.
fn join_cluster<R: Runtime, S: RunStore>(
    supervisor: &mut Supervisor<R, S>,
    c: &crate::config::ClusterConfig,
    config: &AgentConfig,
    layout: crate::cgroup::LayoutKind,
) -> Result<NodeLink, AgentError> {
    let node = cluster::ClusterNode::new(c.node_name.clone(), c.labels.clone());
    let statuses = supervisor.join_cluster(node)?;
    let facts = crate::cluster::node::NodeFacts {
        name: c.node_name.clone(),
        labels: c.labels.clone(),
        cgroup_mode: layout.to_string(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        api: Some(config.listen.to_string()),
    };
    info!(
        node = %c.node_name,
        endpoints = %c.endpoints.join(","),
        cluster_runs = statuses.len(),
        "joining the cluster"
    );
    let link = crate::cluster::node::spawn(c.clone(), facts, supervisor.node_summary());
    for status in statuses {
        let _ = link.statuses.send(status);
    }
    Ok(link)
}

/// The next event of the node task; never without one.
async fn node_event(events: Option<&mut mpsc::Receiver<NodeEvent>>) -> Option<NodeEvent> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// What the main loop hands the node task.
type NodeOut = (mpsc::UnboundedSender<RunStatus>, tokio::sync::watch::Sender<NodeSummary>);

/// Queues `statuses` for the node task; a task gone has said so already.
fn send_statuses(out: Option<&NodeOut>, statuses: Vec<RunStatus>) {
    let Some((tx, _)) = out else { return };
    for status in statuses {
        let _ = tx.send(status);
    }
}

/// Reports the cluster runs among the runs the feed announced since the
/// last turn. A feed that fell behind has every live cluster run reported.
fn report_cluster_runs<R: Runtime, S: RunStore>(
    supervisor: &mut Supervisor<R, S>,
    feed: &mut tokio::sync::broadcast::Receiver<crate::api::feed::Announced>,
    out: Option<&NodeOut>,
) -> Result<(), AgentError> {
    use tokio::sync::broadcast::error::TryRecvError;
    let mut runs = Vec::new();
    loop {
        match feed.try_recv() {
            Ok(announced) => runs.push(crate::vocab::RunId::new(announced.line.run)),
            Err(TryRecvError::Lagged(_)) => runs.extend(supervisor.cluster_runs()),
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
    }
    if runs.is_empty() {
        return Ok(());
    }
    let statuses = supervisor.cluster_statuses(runs)?;
    send_statuses(out, statuses);
    Ok(())
}
