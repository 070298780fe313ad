//! The cluster scheduler: one agent at a time, elected through etcd, turns
//! applied jobs into runs and binds each run to a node that fits.
//!
//! - [`election`]: campaigning for `{prefix}/leader`, keeping its lease,
//!   and [`election::fenced`], the one way the scheduler writes.
//! - [`decide`]: what to write, a pure function of what was read.
//! - [`fit`]: which node a run goes to (pure).
//! - [`cron`]: firings of recurring jobs, once for the cluster.
//! - [`metrics`]: what the leader exports.
//!
//! While leading, [`run`] lists the prefix once, then follows it with one
//! watch, keeping a [`View`] of it; after each burst of changes (and every
//! second, for cron) it decides and writes. A pass waits until the watch
//! has delivered the scheduler's own previous writes, so it never decides
//! from a view older than what it wrote. A write whose guard fails lost to
//! a concurrent change; the change's watch event brings the next pass.

pub mod cron;
pub mod decide;
pub mod election;
pub mod fit;
pub mod metrics;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono_tz::Tz;
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, KeyValue, TxnOp, WatchOptions,
};
use tracing::{info, warn};

pub use decide::View;
use decide::{Guard, Kind, Settings, Specs, Versioned, Write};
use election::{Fenced, Leadership};
pub use metrics::{BindingOutcome, ClusterMetrics};

use crate::cluster::records::{
    decode, Binding, ClusterRun, ClusterRunState, CronCursor, JobRecord, NodeRecord, RunStatus,
};
use crate::cluster::{ClusterError, Keys};
use crate::spec::JobSpec;
use crate::vocab::Timestamp;

/// How long a burst of watch events is gathered before a pass.
const COALESCE: Duration = Duration::from_millis(20);
/// Passes run at least this often: cron firings fall due without any
/// change under the prefix.
const TICK: Duration = Duration::from_secs(1);
/// After an etcd error, wait this long before trying again.
const RETRY: Duration = Duration::from_secs(1);
/// A waiting run's reason is rewritten at most this often.
const REASON_EVERY: Duration = Duration::from_secs(5);

/// What the scheduler runs with.
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    pub keys: Keys,
    /// This agent's node name: recorded as the leader and in `bound_by`.
    pub node: String,
    pub lease_ttl: Duration,
    pub default_timezone: Tz,
    /// Most runs one job's catch-up starts in one pass.
    pub catch_up_limit: u32,
    /// The agent's default stop grace. The scheduler does not use it yet:
    /// it stops a run by deleting its binding, and the node that runs it
    /// stops it with the job's `stop_grace` or its own default.
    pub default_grace: Duration,
    /// How long a lost node's runs wait for it before they are bound anew
    /// or ended (`cluster.node_loss_grace`).
    pub node_loss_grace: Duration,
}

/// Stands for election and schedules while leading, until `shutdown`
/// resolves; then resigns, so another agent takes over at once.
pub async fn run(
    mut client: Client,
    settings: SchedulerSettings,
    metrics: Arc<ClusterMetrics>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let keys = &settings.keys;
    loop {
        let leadership = tokio::select! {
            () = &mut shutdown => return,
            won = election::campaign(&mut client, keys, &settings.node, settings.lease_ttl) => {
                match won {
                    Ok(leadership) => leadership,
                    Err(e) => {
                        warn!("cluster scheduler: campaigning: {e}");
                        tokio::select! {
                            () = &mut shutdown => return,
                            () = tokio::time::sleep(RETRY) => continue,
                        }
                    }
                }
            }
        };
        info!(node = %settings.node, "cluster scheduler: leading");
        metrics.set_leader(true);
        let mut leader = Leader::new(client.clone(), &settings, metrics.clone());
        let outcome = tokio::select! {
            () = &mut shutdown => None,
            () = leadership.lost() => Some(ClusterError::Deposed),
            e = leader.lead(&leadership) => Some(e),
        };
        metrics.set_leader(false);
        match outcome {
            None => {
                leadership.resign(&mut client, keys).await;
                info!("cluster scheduler: resigned");
                return;
            }
            Some(e) => {
                warn!("cluster scheduler: no longer leading: {e}");
                // Whatever is left of the lease goes, so the key does too.
                leadership.resign(&mut client, keys).await;
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    }
}

/// A job compiled, or why it does not compile.
type Compiled = Result<Arc<JobSpec>, String>;

/// The leading scheduler's state: the view and the compiled jobs.
struct Leader<'s> {
    client: Client,
    settings: &'s SchedulerSettings,
    metrics: Arc<ClusterMetrics>,
    view: View,
    /// By (job, record revision): jobs and the versions bindings carry.
    compiled: HashMap<(String, i64), Compiled>,
    /// The watch has delivered everything up to here.
    seen: i64,
    /// The last revision this scheduler wrote.
    written: i64,
    /// When each waiting run's reason was last written.
    reasons: HashMap<String, Instant>,
}

impl<'s> Leader<'s> {
    fn new(client: Client, settings: &'s SchedulerSettings, metrics: Arc<ClusterMetrics>) -> Self {
        Leader {
            client,
            settings,
            metrics,
            view: View::default(),
            compiled: HashMap::new(),
            seen: 0,
            written: 0,
            reasons: HashMap::new(),
        }
    }

    /// Leads until deposed or an etcd error it cannot ride out.
    async fn lead(&mut self, leadership: &Leadership) -> ClusterError {
        loop {
            match self.follow(leadership).await {
                Err(ClusterError::Deposed) => return ClusterError::Deposed,
                Err(e) => {
                    warn!("cluster scheduler: {e}; reading the cluster again");
                    tokio::time::sleep(RETRY).await;
                }
                Ok(()) => {}
            }
        }
    }

    /// Lists the prefix and follows it until the watch ends (`Ok`: compacted
    /// or closed, list again) or an error.
    ///
    /// Why a relist rather than a resume from the last revision seen: the
    /// view is the whole prefix, and a fresh listing is it at one revision,
    /// so nothing that happened in a gap (a watch cancelled because etcd
    /// compacted past it, a stream broken by a member's death) is missed,
    /// and nothing is applied twice (a put replaces, a delete of an absent
    /// key is nothing). What is decided from it is guarded by the records'
    /// revisions, so a decision made from the view before the gap cannot
    /// write over what changed in it.
    async fn follow(&mut self, leadership: &Leadership) -> Result<(), ClusterError> {
        let revision = self.list(leadership).await?;
        self.watch(leadership, revision + 1).await
    }

    /// Reads the whole prefix into a new view; the revision it was read at.
    async fn list(&mut self, leadership: &Leadership) -> Result<i64, ClusterError> {
        let keys = &self.settings.keys;
        let all = keys.all();
        let leader_key = keys.leader();
        let listing = self.client.get(all.clone(), Some(GetOptions::new().with_prefix())).await?;
        let revision = listing.header().map_or(0, |h| h.revision());
        self.view = View::default();
        let ours = listing.kvs().iter().any(|kv| {
            kv.key() == leader_key.as_bytes() && kv.create_revision() == leadership.revision
        });
        if !ours {
            return Err(ClusterError::Deposed);
        }
        for kv in listing.kvs() {
            self.put(kv);
        }
        self.seen = revision;
        Ok(revision)
    }

    /// Follows the prefix from revision `from`, deciding after each burst,
    /// until the watch ends (`Ok`) or an error.
    async fn watch(&mut self, leadership: &Leadership, from: i64) -> Result<(), ClusterError> {
        let all = self.settings.keys.all();
        let leader_key = self.settings.keys.leader();
        let options = WatchOptions::new().with_prefix().with_start_revision(from);
        let mut stream = self.client.watch(all, Some(options)).await?;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.seen >= self.written {
                self.pass(leadership).await?;
            }
            tokio::select! {
                _ = tick.tick() => {}
                message = stream.message() => {
                    let mut next = message?;
                    // Gather the rest of the burst before deciding.
                    loop {
                        let Some(response) = next else { return Ok(()) };
                        if response.canceled() {
                            // Compacted past `from` (a gap the watch cannot
                            // fill) or cancelled by the server: list again.
                            info!(
                                compact_revision = response.compact_revision(),
                                "cluster scheduler: watch cancelled ({}); reading the cluster again",
                                response.cancel_reason()
                            );
                            return Ok(());
                        }
                        for event in response.events() {
                            let Some(kv) = event.kv() else { continue };
                            // The leader key gone or taken by another: stop
                            // now rather than at the next write.
                            if kv.key() == leader_key.as_bytes()
                                && (event.event_type() == EventType::Delete
                                    || kv.create_revision() != leadership.revision)
                            {
                                return Err(ClusterError::Deposed);
                            }
                            match event.event_type() {
                                EventType::Put => self.put(kv),
                                EventType::Delete => self.delete(kv),
                            }
                            // By the events, not the header: the watch's
                            // first response carries the store's revision
                            // before the events up to it have come.
                            self.seen = self.seen.max(kv.mod_revision());
                        }
                        match tokio::time::timeout(COALESCE, stream.message()).await {
                            Ok(message) => next = message?,
                            Err(_) => break,
                        }
                    }
                }
            }
        }
    }

    /// Takes a key's value into the view; a value that does not parse, or
    /// names something other than its key does, is kept as a bad record.
    fn put(&mut self, kv: &KeyValue) {
        let keys = &self.settings.keys;
        let Ok(key) = kv.key_str() else { return };
        let key = key.to_owned();
        let view = &mut self.view;
        view.bad.remove(&key);
        let rev = kv.mod_revision();
        let bad = |reason: String| Some(reason);
        let problem = if let Some(name) = Keys::name_in(&key, &keys.jobs()) {
            match decode::<JobRecord>(&key, kv.value()) {
                Ok(job) if job.name == name => {
                    view.jobs.insert(name.to_owned(), Versioned { value: job, mod_revision: rev });
                    None
                }
                Ok(job) => bad(format!("the record names job {:?}", job.name)),
                Err(e) => bad(e.reason),
            }
        } else if let Some(name) = Keys::name_in(&key, &keys.runs()) {
            match decode::<ClusterRun>(&key, kv.value()) {
                Ok(run) if run.run == name => {
                    view.runs.insert(name.to_owned(), Versioned { value: run, mod_revision: rev });
                    None
                }
                Ok(run) => bad(format!("the record names run {:?}", run.run)),
                Err(e) => bad(e.reason),
            }
        } else if let Some(name) = Keys::name_in(&key, &keys.statuses()) {
            match decode::<RunStatus>(&key, kv.value()) {
                Ok(status) if status.run == name => {
                    view.statuses
                        .insert(name.to_owned(), Versioned { value: status, mod_revision: rev });
                    None
                }
                Ok(status) => bad(format!("the record names run {:?}", status.run)),
                Err(e) => bad(e.reason),
            }
        } else if let Some(name) = Keys::name_in(&key, &keys.nodes()) {
            match decode::<NodeRecord>(&key, kv.value()) {
                Ok(node) if node.name == name => {
                    view.nodes.insert(name.to_owned(), node);
                    None
                }
                Ok(node) => bad(format!("the record names node {:?}", node.name)),
                Err(e) => bad(e.reason),
            }
        } else if let Some(name) = Keys::name_in(&key, &keys.cron_cursors()) {
            match decode::<CronCursor>(&key, kv.value()) {
                Ok(cursor) if cursor.job == name => {
                    view.cursors
                        .insert(name.to_owned(), Versioned { value: cursor, mod_revision: rev });
                    None
                }
                Ok(cursor) => bad(format!("the record names job {:?}", cursor.job)),
                Err(e) => bad(e.reason),
            }
        } else if let Some((node, run)) = keys.binding_parts(&key) {
            match decode::<Binding>(&key, kv.value()) {
                Ok(binding) if binding.run == run => {
                    view.bindings.insert(
                        (node.to_owned(), run.to_owned()),
                        Versioned { value: binding, mod_revision: rev },
                    );
                    None
                }
                Ok(binding) => bad(format!("the record names run {:?}", binding.run)),
                Err(e) => bad(e.reason),
            }
        } else {
            None
        };
        if let Some(reason) = problem {
            warn!(key = %key, "cluster scheduler: bad record, not acted on: {reason}");
            self.view.bad.insert(key, reason);
        }
    }

    fn delete(&mut self, kv: &KeyValue) {
        let keys = &self.settings.keys;
        let Ok(key) = kv.key_str() else { return };
        let view = &mut self.view;
        view.bad.remove(key);
        if let Some(name) = Keys::name_in(key, &keys.jobs()) {
            view.jobs.remove(name);
        } else if let Some(name) = Keys::name_in(key, &keys.runs()) {
            view.runs.remove(name);
        } else if let Some(name) = Keys::name_in(key, &keys.statuses()) {
            view.statuses.remove(name);
        } else if let Some(name) = Keys::name_in(key, &keys.nodes()) {
            view.nodes.remove(name);
        } else if let Some(name) = Keys::name_in(key, &keys.cron_cursors()) {
            view.cursors.remove(name);
        } else if let Some((node, run)) = keys.binding_parts(key) {
            view.bindings.remove(&(node.to_owned(), run.to_owned()));
        }
    }

    /// Compiles what the view needs (jobs, and the versions bindings
    /// carry), each once; a job that does not compile is logged once.
    fn specs(&mut self) -> (Specs, usize) {
        let mut wanted: Vec<(String, i64, &str, &str)> = Vec::new();
        for (name, job) in &self.view.jobs {
            wanted.push((name.clone(), job.mod_revision, &job.value.file, &job.value.source));
        }
        for binding in self.view.bindings.values() {
            let b = &binding.value;
            wanted.push((b.job.clone(), b.job_revision, &b.file, &b.source));
        }
        let mut specs = Specs::new();
        let mut failing = 0;
        let mut keep = std::collections::HashSet::new();
        for (name, revision, file, source) in wanted {
            let entry = self.compiled.entry((name.clone(), revision)).or_insert_with(|| {
                let compiled = compile(&name, file, source);
                if let Err(problems) = &compiled {
                    warn!(
                        key = %self.settings.keys.job(&name),
                        revision,
                        "cluster scheduler: the job does not compile, not acted on:\n{problems}"
                    );
                }
                compiled
            });
            match entry {
                Ok(spec) => {
                    specs.insert((name.clone(), revision), spec.clone());
                }
                Err(_) => failing += 1,
            }
            keep.insert((name, revision));
        }
        self.compiled.retain(|k, _| keep.contains(k));
        (specs, failing)
    }

    /// One pass: decide, then write each decision fenced.
    async fn pass(&mut self, leadership: &Leadership) -> Result<(), ClusterError> {
        let (specs, failing) = self.specs();
        let mut by_state = [0; 4];
        let mut lost_nodes = BTreeSet::new();
        for run in self.view.runs.values() {
            let i = match &run.value.state {
                ClusterRunState::Pending { .. } => 0,
                ClusterRunState::Bound { .. } => 1,
                ClusterRunState::Ended { .. } => 2,
                ClusterRunState::Lost { node, .. } => {
                    lost_nodes.insert(node.clone());
                    3
                }
            };
            by_state[i] += 1;
        }
        // A node whose record came back is ready, whatever its runs say.
        lost_nodes.retain(|n| !self.view.nodes.contains_key(n));
        self.metrics.set_view(
            self.view.nodes.len(),
            lost_nodes.len(),
            by_state,
            self.view.bad.len() + failing,
        );
        self.reasons.retain(|_, at| at.elapsed() < REASON_EVERY);
        let quiet: BTreeSet<String> = self.reasons.keys().cloned().collect();
        let settings = Settings {
            keys: &self.settings.keys,
            node: &self.settings.node,
            default_timezone: self.settings.default_timezone,
            catch_up_limit: self.settings.catch_up_limit,
            now: Timestamp::now(),
            quiet: &quiet,
            node_loss_grace: self.settings.node_loss_grace,
        };
        let writes = decide::decide(&self.view, &specs, &settings);
        for write in writes {
            self.write(leadership, write).await?;
        }
        Ok(())
    }

    async fn write(&mut self, leadership: &Leadership, write: Write) -> Result<(), ClusterError> {
        let Write { kind, guards, puts, deletes } = write;
        let compares = guards
            .into_iter()
            .map(|g| match g {
                Guard::Absent(key) => Compare::create_revision(key, CompareOp::Equal, 0),
                Guard::Revision(key, rev) => Compare::mod_revision(key, CompareOp::Equal, rev),
            })
            .collect();
        let ops = puts
            .into_iter()
            .map(|(k, v)| TxnOp::put(k, v, None))
            .chain(deletes.into_iter().map(|k| TxnOp::delete(k, None)))
            .collect();
        let keys = &self.settings.keys;
        match election::fenced(&mut self.client, keys, leadership, compares, ops).await? {
            Fenced::Done { revision } => {
                self.written = self.written.max(revision);
                match &kind {
                    Kind::Bind { run, node, waited } => {
                        info!(run = %run, node = %node, "cluster run bound");
                        self.metrics.binding(BindingOutcome::Bound);
                        self.metrics.scheduled(*waited);
                    }
                    Kind::Lost { run, node } => {
                        warn!(run = %run, node = %node, "cluster run lost: its node left the cluster");
                    }
                    Kind::Recovered { run, node } => {
                        info!(run = %run, node = %node, "cluster run bound again: its node is back");
                    }
                    Kind::Rescheduled { run, node } => {
                        warn!(
                            run = %run,
                            node = %node,
                            "cluster run rescheduled: its node stayed lost past the grace"
                        );
                        self.metrics.rescheduled();
                    }
                    Kind::HandedBack { run, node } => {
                        info!(run = %run, node = %node, "cluster run handed back");
                        self.metrics.binding(BindingOutcome::HandedBack);
                    }
                    Kind::Pending { run, reason } => {
                        info!(run = %run, "cluster run waits: {reason}");
                        self.reasons.insert(run.clone(), Instant::now());
                    }
                    Kind::Cron { job, fired } if !fired.is_empty() => {
                        info!(job = %job, "cluster job fired: {}", fired.join(", "))
                    }
                    other => tracing::debug!("cluster scheduler wrote {other:?}"),
                }
            }
            Fenced::Conflict => {
                tracing::debug!("cluster scheduler: {kind:?} lost to a concurrent change");
                if matches!(kind, Kind::Bind { .. }) {
                    self.metrics.binding(BindingOutcome::Conflict);
                }
            }
        }
        Ok(())
    }
}

/// Compiles the job `name` from a record's file text.
pub fn compile(name: &str, file: &str, source: &str) -> Compiled {
    let jobs = crate::spec::compile_str(Path::new(file), source).map_err(|d| d.to_string())?;
    jobs.into_iter()
        .find(|job| job.spec.name.as_str() == name)
        .map(|job| Arc::new(job.spec))
        .ok_or_else(|| format!("{file} holds no job named {name}"))
}

#[cfg(test)]
mod tests;

/// The scheduler as the agent runs it: started when the agent's `cluster:`
/// section has `scheduler: true`, stopped (resigning) with the agent.
pub struct Scheduling {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Scheduling {
    /// Starts standing for election on a task of its own, with a connection
    /// of its own: an etcd that cannot be reached is tried again every
    /// [`RETRY`] and never stops the agent.
    pub fn start(
        cluster: &crate::config::ClusterConfig,
        settings: SchedulerSettings,
        metrics: Arc<ClusterMetrics>,
    ) -> Scheduling {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let cluster = cluster.clone();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            tokio::pin!(shutdown);
            let client = loop {
                match crate::cluster::etcd::connect(&cluster).await {
                    Ok(client) => break client,
                    Err(e) => warn!(
                        "cluster scheduler: cannot reach etcd, trying again in {}s: {e}",
                        RETRY.as_secs()
                    ),
                }
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(RETRY) => {}
                }
            };
            run(client, settings, metrics, shutdown).await;
        });
        Scheduling { stop, task }
    }

    /// Stops scheduling; a leader resigns, so another agent takes over at
    /// once.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::error!("the cluster scheduler's task failed: {e}");
        }
    }
}
