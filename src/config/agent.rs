//! The agent configuration and its compiler.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;

use super::error::ConfigError;
use crate::scheduler::pressure::{MemoryAmount, Thresholds};
use crate::spec::check::{choice, Checker, Fields};
use crate::spec::error::{Diagnostic, Diagnostics, FieldPath};
use crate::spec::schedule::parse_timezone;
use crate::spec::tree::Node;
use crate::spec::{source, AdmissionRules, DefaultUser, GroupRef, Pos, SpecError, UidRange};
use crate::topology::CpuSet;
use crate::vocab::check_cgroup_label;
use crate::vocab::Bytes;
use crate::vocab::NameError;

/// How the agent writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}
choice!(LogFormat { "text" => Text, "json" => Json });

/// The name of the cgroup every job's cgroup is created under, in each hierarchy. Held to
/// the job-name rule: one path component, nothing to escape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CgroupParent(String);

impl CgroupParent {
    pub fn parse(name: &str) -> Result<CgroupParent, NameError> {
        // It is a cgroup directory in every hierarchy too: a name a cgroup cannot have
        // would otherwise pass here and fail at the first launch.
        check_cgroup_label(name)?;
        Ok(CgroupParent(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CgroupParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the agent's cgroup tree is rooted (`cgroup_root`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CgroupRoot {
    /// Below the cgroup delegated to the agent when there is one on a pure
    /// cgroup v2 host, else at the root of every hierarchy.
    #[default]
    Auto,
    /// Below this cgroup of the v2 hierarchy (`/system.slice/corral.service`),
    /// which must hold the agent.
    Delegated(String),
}

impl CgroupRoot {
    /// `auto`, or an absolute cgroup path without `.`, `..` or empty parts.
    pub fn parse(text: &str) -> Result<CgroupRoot, String> {
        if text == "auto" {
            return Ok(CgroupRoot::Auto);
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err("it must be `auto` or a cgroup path from the v2 root, \
                        such as /system.slice/corral.service"
                .to_owned());
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Err("the root of the hierarchy is not a delegated cgroup; \
                        use `auto` to run at the root"
                .to_owned());
        }
        if rest.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
            return Err("a cgroup path has no empty, `.` or `..` parts".to_owned());
        }
        Ok(CgroupRoot::Delegated(format!("/{rest}")))
    }
}

impl fmt::Display for CgroupRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CgroupRoot::Auto => f.write_str("auto"),
            CgroupRoot::Delegated(path) => f.write_str(path),
        }
    }
}

/// Where the agent looks for its configuration when not told otherwise.
pub const DEFAULT_PATH: &str = "/etc/corral/agent.yaml";

/// `sun_path` holds 108 bytes including the terminating NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// The agent's settings. Paths are absolute once loaded: relative ones in the file are
/// resolved against the directory the file is in.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// Where job files are read from.
    pub jobs_dir: PathBuf,
    /// Where run records, job state and logs are kept.
    pub state_dir: PathBuf,
    pub cgroup_parent: CgroupParent,
    /// CPUs never given to jobs, exclusive or shared (the agent and the system use them).
    pub reserved_cpus: CpuSet,
    /// Memory never promised to jobs.
    pub reserved_memory: Bytes,
    /// Where the Prometheus metrics endpoint listens.
    pub listen: SocketAddr,
    /// The control socket for the `corral` command line.
    pub socket: PathBuf,
    /// Besides root, the members of this group may use the control socket.
    pub socket_group: Option<GroupRef>,
    /// Who jobs without a `user` run as: a uid of their own from
    /// `dynamic_users` (the default), or one shared account.
    pub default_user: DefaultUser,
    /// The uids (and gids of the same numbers) handed out to jobs when
    /// `default_user` is `dynamic`.
    pub dynamic_users: UidRange,
    /// Whether a job may run as root (uid 0), by its own `user` or by `default_user`,
    /// or with gid 0 or one of `privileged_groups` as its group.
    pub allow_root_jobs: bool,
    /// Groups as good as root (by name, resolved when a job starts, or by
    /// gid): refused to jobs unless `allow_root_jobs`.
    pub privileged_groups: Vec<GroupRef>,
    /// Whether a job running as `default_user` may go without a pid namespace,
    /// where it and every other such job can read each other's environment and
    /// signal each other.
    pub allow_shared_uid_without_pid_namespace: bool,
    pub log_format: LogFormat,
    /// The time zone of schedules that do not name one.
    pub default_timezone: Tz,
    /// The most runs one recurring job starts at once to catch up on firings missed
    /// while the agent was down, whatever its `catch_up_max`.
    pub catch_up_limit: u32,
    /// Time between SIGTERM and SIGKILL for jobs that do not set `stop_grace`.
    pub stop_grace: Duration,
    /// The most output kept per run and per stream (stdout, stderr); older output is
    /// dropped first.
    pub log_max_bytes: Bytes,
    /// Besides that head, the last this many bytes of each stream are kept,
    /// after a marker line saying how much was dropped between them; 0 keeps
    /// the head only.
    pub log_tail_bytes: Bytes,
    /// A run is not preempted before it has run this long (since its start
    /// or its last resume), so that runs do not thrash between frozen and
    /// running.
    pub min_runtime_before_preemption: Duration,
    /// Stop every run when the agent stops, instead of leaving them running
    /// for the next agent to adopt.
    pub stop_jobs_on_exit: bool,
    /// How long a run that ended stays in the metrics scrape with its final
    /// counters. Zero: a run's series go as soon as it ends.
    pub finished_run_retention: Duration,
    /// How much of the agent the HTTP endpoint may hold: connections and
    /// how long each may take.
    pub http: HttpLimits,
    /// Where the cgroup tree is rooted: a delegated cgroup or the hierarchy
    /// roots.
    pub cgroup_root: CgroupRoot,
    /// Node-pressure protection (`pressure`): off when the key is absent.
    pub pressure: Option<Thresholds>,
    /// Cluster mode (`cluster`): off when the key is absent.
    pub cluster: Option<super::cluster::ClusterConfig>,
}

/// Bounds on the HTTP endpoint, so that whoever can reach the port cannot
/// hold the agent's descriptors or memory (see `docs/config.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections open at once; more are accepted and closed at once.
    pub max_connections: u32,
    /// From a connection's accept, or the first byte of a later request on
    /// it, until the request's head (request line and headers) is in.
    pub header_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// From a request's head to the last byte of its response: a client
    /// that sends its body or reads the answer slowly is cut off here.
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 128,
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            jobs_dir: PathBuf::from("/etc/corral/jobs"),
            state_dir: PathBuf::from("/var/lib/corral"),
            cgroup_parent: CgroupParent("corral".into()),
            reserved_cpus: CpuSet::new(),
            reserved_memory: Bytes(0),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9464),
            socket: PathBuf::from("/run/corral/corral.sock"),
            socket_group: None,
            default_user: DefaultUser::Dynamic,
            dynamic_users: UidRange::DEFAULT,
            allow_root_jobs: false,
            privileged_groups: crate::spec::admission::default_privileged_groups(),
            allow_shared_uid_without_pid_namespace: false,
            log_format: LogFormat::Text,
            default_timezone: Tz::UTC,
            catch_up_limit: 100,
            stop_grace: Duration::from_secs(30),
            log_max_bytes: Bytes(16 << 20),
            log_tail_bytes: Bytes::MIB,
            min_runtime_before_preemption: Duration::from_secs(10),
            stop_jobs_on_exit: false,
            finished_run_retention: Duration::from_secs(15 * 60),
            http: HttpLimits::default(),
            cgroup_root: CgroupRoot::Auto,
            pressure: None,
            cluster: None,
        }
    }
}

const FIELDS: &[&str] = &[
    "jobs_dir",
    "state_dir",
    "cgroup_parent",
    "reserved_cpus",
    "reserved_memory",
    "listen",
    "socket",
    "socket_group",
    "default_user",
    "dynamic_users",
    "allow_root_jobs",
    "privileged_groups",
    "allow_shared_uid_without_pid_namespace",
    "log_format",
    "default_timezone",
    "catch_up_limit",
    "stop_grace",
    "log_max_bytes",
    "log_tail_bytes",
    "min_runtime_before_preemption",
    "stop_jobs_on_exit",
    "finished_run_retention",
    "http",
    "cgroup_root",
    "pressure",
    "cluster",
];

const PRESSURE_FIELDS: &[&str] = &[
    "check_every",
    "memory_available_below",
    "memory_available_release",
    "memory_some_above",
    "memory_some_release",
    "memory_full_above",
    "memory_full_release",
    "trigger_after",
    "release_after",
    "requeue_after",
];
/// Readings further apart than this let a hog fill the node between two.
const MAX_PRESSURE_CHECK_EVERY: Duration = Duration::from_secs(60);

const HTTP_FIELDS: &[&str] =
    &["max_connections", "header_timeout", "idle_timeout", "request_timeout"];
/// A ceiling far above what a metrics port needs, below what the kernel's
/// listen backlog and the descriptor limits of ordinary hosts hold; the agent
/// also checks it against its own descriptor limit at start.
const MAX_HTTP_CONNECTIONS: u32 = 65_536;
/// Longer than any of these would let an idle peer hold a connection for
/// minutes, which is what the limits are there to prevent.
const MAX_HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const MAX_HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(10 * 60);

const MIN_LOG_BYTES: Bytes = Bytes::KIB;
/// As many as a job's `catch_up_max` may ask for.
const MAX_CATCH_UP_LIMIT: u32 = 1000;
/// Ended runs are kept in the scrape for alerts and `increase()` windows,
/// which are minutes long; past a day a run's history belongs to the store
/// (`corral show`), not to series that every scrape carries.
const MAX_FINISHED_RUN_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// Reads and compiles a configuration file; relative paths in it are taken relative to
/// the directory the file is in.
pub fn load(path: &Path) -> Result<AgentConfig, Diagnostics<ConfigError>> {
    let at_file = |pos, error: SpecError| {
        Diagnostics(vec![Diagnostic::new(path, pos, FieldPath::root(), ConfigError::from(error))])
    };
    let text =
        source::read_file(path, source::MAX_FILE_BYTES).map_err(|(pos, e)| at_file(pos, e))?;
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let base = std::path::absolute(parent)
        .map_err(|e| at_file(Pos::UNKNOWN, SpecError::Read { reason: e.to_string() }))?;
    compile_str(path, &text, &base)
}

/// Compiles the text of a configuration file; `base` is the directory relative paths are
/// resolved against. An empty file is all defaults.
pub fn compile_str(
    file: &Path,
    text: &str,
    base: &Path,
) -> Result<AgentConfig, Diagnostics<ConfigError>> {
    let mut cx: Checker<ConfigError> = Checker::new(file);
    let (documents, yaml_errors) = source::documents(text);
    for (pos, error) in yaml_errors {
        cx.report(pos, &FieldPath::root(), error);
    }
    for extra in documents.iter().skip(1) {
        cx.report(extra.pos, &FieldPath::root(), ConfigError::ExtraDocument);
    }
    let config = match documents.first() {
        Some(document) => compile(&mut cx, document, base),
        None => Some(AgentConfig::default()),
    };
    let diagnostics = cx.into_diagnostics();
    match config {
        Some(config) if diagnostics.is_empty() => Ok(config),
        _ => Err(Diagnostics(diagnostics)),
    }
}

fn compile(cx: &mut Checker<ConfigError>, document: &Node, base: &Path) -> Option<AgentConfig> {
    let defaults = AgentConfig::default();
    let root = FieldPath::root();
    let fields = cx.map(document, &root, FIELDS)?;

    let jobs_dir = path(cx, &fields, "jobs_dir", base, defaults.jobs_dir);
    let state_dir = path(cx, &fields, "state_dir", base, defaults.state_dir);
    let cgroup_parent = match fields.get("cgroup_parent") {
        None => Some(defaults.cgroup_parent),
        Some(n) => cx.parsed(n, &fields.field("cgroup_parent"), |text| {
            CgroupParent::parse(text)
                .map_err(|reason| SpecError::Name { value: text.to_owned(), reason })
        }),
    };
    let reserved_cpus = match fields.get("reserved_cpus") {
        None => Some(defaults.reserved_cpus),
        Some(n) => {
            let text = cx.text(n, &fields.field("reserved_cpus"));
            text.and_then(|text| match CpuSet::parse(&text) {
                Ok(set) => Some(set),
                Err(crate::topology::cpuset::ListParseError::Invalid { reason, .. }) => {
                    cx.report(
                        n.pos,
                        &fields.field("reserved_cpus"),
                        ConfigError::CpuList { value: text, reason },
                    );
                    None
                }
            })
        }
    };
    let reserved_memory = match fields.get("reserved_memory") {
        None => Some(defaults.reserved_memory),
        Some(n) => cx.bytes(n, &fields.field("reserved_memory")),
    };
    let listen = match fields.get("listen") {
        None => Some(defaults.listen),
        Some(n) => cx.text(n, &fields.field("listen")).and_then(|text| match parse_listen(&text) {
            Ok(addr) => Some(addr),
            Err(reason) => {
                cx.report(
                    n.pos,
                    &fields.field("listen"),
                    ConfigError::Listen { value: text, reason },
                );
                None
            }
        }),
    };
    let socket = path(cx, &fields, "socket", base, defaults.socket).and_then(|socket| {
        let len = socket.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            cx.report(
                fields.key_pos("socket"),
                &fields.field("socket"),
                ConfigError::SocketPathTooLong { path: socket, len, max: MAX_SOCKET_PATH },
            );
            return None;
        }
        Some(socket)
    });
    let socket_group = match fields.get("socket_group") {
        None => Some(defaults.socket_group),
        Some(n) => cx.parsed_text(n, &fields.field("socket_group"), GroupRef::parse).map(Some),
    };
    let default_user = match fields.get("default_user") {
        None => Some(defaults.default_user),
        Some(n) => cx.parsed_text(n, &fields.field("default_user"), DefaultUser::parse),
    };
    let dynamic_users = match fields.get("dynamic_users") {
        None => Some(defaults.dynamic_users),
        Some(n) => {
            let path = fields.field("dynamic_users");
            cx.map(n, &path, &["range"]).and_then(|sub| match sub.get("range") {
                None => Some(defaults.dynamic_users),
                Some(range) => cx.parsed_text(range, &sub.field("range"), UidRange::parse),
            })
        }
    };
    let allow_root_jobs = match fields.get("allow_root_jobs") {
        None => Some(defaults.allow_root_jobs),
        Some(n) => cx.boolean(n, &fields.field("allow_root_jobs")),
    };
    if let (Some(user), Some(false)) = (&default_user, allow_root_jobs) {
        if user.is_root() {
            cx.report(
                fields.key_pos("default_user"),
                &fields.field("default_user"),
                ConfigError::RootDefaultUser { user: user.to_string() },
            );
        }
    }
    let privileged_groups = match fields.get("privileged_groups") {
        None => Some(defaults.privileged_groups),
        Some(n) => {
            let path = fields.field("privileged_groups");
            cx.seq(n, &path).and_then(|items| {
                let groups: Vec<Option<GroupRef>> = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| cx.parsed_text(item, &path.index(i), GroupRef::parse))
                    .collect();
                groups.into_iter().collect::<Option<Vec<_>>>()
            })
        }
    };
    let allow_shared_uid_without_pid_namespace =
        match fields.get("allow_shared_uid_without_pid_namespace") {
            None => Some(defaults.allow_shared_uid_without_pid_namespace),
            Some(n) => cx.boolean(n, &fields.field("allow_shared_uid_without_pid_namespace")),
        };
    let log_format = match fields.get("log_format") {
        None => Some(defaults.log_format),
        Some(n) => cx.choice(n, &fields.field("log_format")),
    };
    let default_timezone = match fields.get("default_timezone") {
        None => Some(defaults.default_timezone),
        Some(n) => cx.parsed(n, &fields.field("default_timezone"), parse_timezone),
    };
    let catch_up_limit = match fields.get("catch_up_limit") {
        None => Some(defaults.catch_up_limit),
        Some(n) => cx.int(n, &fields.field("catch_up_limit"), 1..=MAX_CATCH_UP_LIMIT),
    };
    let stop_grace = match fields.get("stop_grace") {
        None => Some(defaults.stop_grace),
        Some(n) => cx.duration(n, &fields.field("stop_grace")),
    };
    let log_max_bytes = match fields.get("log_max_bytes") {
        None => Some(defaults.log_max_bytes),
        Some(n) => cx.bytes(n, &fields.field("log_max_bytes")).and_then(|b| {
            if b < MIN_LOG_BYTES {
                cx.report(
                    n.pos,
                    &fields.field("log_max_bytes"),
                    SpecError::Invalid {
                        what: "log size",
                        value: b.to_string(),
                        reason: format!("it must be at least {MIN_LOG_BYTES}"),
                    },
                );
                return None;
            }
            Some(b)
        }),
    };
    let log_tail_bytes = match fields.get("log_tail_bytes") {
        None => Some(defaults.log_tail_bytes),
        Some(n) => cx.bytes(n, &fields.field("log_tail_bytes")).and_then(|b| {
            if b != Bytes(0) && b < MIN_LOG_BYTES {
                cx.report(
                    n.pos,
                    &fields.field("log_tail_bytes"),
                    SpecError::Invalid {
                        what: "log tail size",
                        value: b.to_string(),
                        reason: format!("it must be 0 (no tail) or at least {MIN_LOG_BYTES}"),
                    },
                );
                return None;
            }
            Some(b)
        }),
    };
    let min_runtime_before_preemption = match fields.get("min_runtime_before_preemption") {
        None => Some(defaults.min_runtime_before_preemption),
        Some(n) => cx.duration(n, &fields.field("min_runtime_before_preemption")),
    };
    let stop_jobs_on_exit = match fields.get("stop_jobs_on_exit") {
        None => Some(defaults.stop_jobs_on_exit),
        Some(n) => cx.boolean(n, &fields.field("stop_jobs_on_exit")),
    };
    let finished_run_retention = match fields.get("finished_run_retention") {
        None => Some(defaults.finished_run_retention),
        Some(n) => cx.duration(n, &fields.field("finished_run_retention")).and_then(|d| {
            if d > MAX_FINISHED_RUN_RETENTION {
                cx.report(
                    n.pos,
                    &fields.field("finished_run_retention"),
                    SpecError::Invalid {
                        what: "retention",
                        value: crate::spec::duration::format(d),
                        reason: format!(
                            "it must be at most {}; older runs are in the store (corral show)",
                            crate::spec::duration::format(MAX_FINISHED_RUN_RETENTION)
                        ),
                    },
                );
                return None;
            }
            Some(d)
        }),
    };

    let http = match fields.get("http") {
        None => Some(defaults.http),
        Some(n) => http_limits(cx, n, &fields.field("http")),
    };

    let cgroup_root = match fields.get("cgroup_root") {
        None => Some(defaults.cgroup_root),
        Some(n) => cx.parsed(n, &fields.field("cgroup_root"), |text| {
            CgroupRoot::parse(text).map_err(|reason| SpecError::Invalid {
                what: "cgroup root",
                value: text.to_owned(),
                reason,
            })
        }),
    };

    let pressure = match fields.get("pressure") {
        None => Some(defaults.pressure),
        Some(n) => pressure(cx, n, &fields.field("pressure")).map(Some),
    };

    let cluster = match fields.get("cluster") {
        None => Some(None),
        Some(n) => super::cluster::compile(cx, n, &fields.field("cluster"), base).map(Some),
    };

    Some(AgentConfig {
        jobs_dir: jobs_dir?,
        state_dir: state_dir?,
        cgroup_parent: cgroup_parent?,
        reserved_cpus: reserved_cpus?,
        reserved_memory: reserved_memory?,
        listen: listen?,
        socket: socket?,
        socket_group: socket_group?,
        default_user: default_user?,
        dynamic_users: dynamic_users?,
        allow_root_jobs: allow_root_jobs?,
        privileged_groups: privileged_groups?,
        allow_shared_uid_without_pid_namespace: allow_shared_uid_without_pid_namespace?,
        log_format: log_format?,
        default_timezone: default_timezone?,
        catch_up_limit: catch_up_limit?,
        stop_grace: stop_grace?,
        log_max_bytes: log_max_bytes?,
        log_tail_bytes: log_tail_bytes?,
        min_runtime_before_preemption: min_runtime_before_preemption?,
        stop_jobs_on_exit: stop_jobs_on_exit?,
        finished_run_retention: finished_run_retention?,
        http: http?,
        cgroup_root: cgroup_root?,
        pressure: pressure?,
        cluster: cluster?,
    })
}

/// The `pressure` mapping. With no trigger named, the three default
/// triggers apply; naming any trigger turns on only those named. A release
/// level left out is half a PSI trigger, twice a `MemAvailable` one.
fn pressure(cx: &mut Checker<ConfigError>, node: &Node, path: &FieldPath) -> Option<Thresholds> {
    let defaults = Thresholds::default();
    let fields = cx.map(node, path, PRESSURE_FIELDS)?;
    let check_every = match fields.get("check_every") {
        None => Some(defaults.check_every),
        Some(n) => cx.positive_duration(n, &fields.field("check_every")).and_then(|d| {
            if d > MAX_PRESSURE_CHECK_EVERY {
                let max = crate::spec::duration::format(MAX_PRESSURE_CHECK_EVERY);
                cx.report(
                    n.pos,
                    &fields.field("check_every"),
                    SpecError::Invalid {
                        what: "check interval",
                        value: crate::spec::duration::format(d),
                        reason: format!("it must be at most {max}"),
                    },
                );
                return None;
            }
            Some(d)
        }),
    };
    let mut amount = |key: &'static str| -> Option<Option<MemoryAmount>> {
        let Some(n) = fields.get(key) else { return Some(None) };
        cx.decimal(n, &fields.field(key), "a size or a percentage", "memory amount", |text| {
            match text.strip_suffix('%') {
                Some(p) => match p.trim().parse::<f64>() {
                    Ok(p) if (0.0..=100.0).contains(&p) => Ok(MemoryAmount::Percent(p)),
                    _ => Err("a percentage is a number from 0 to 100 followed by %".to_owned()),
                },
                None => Bytes::parse(text).map(MemoryAmount::Bytes).map_err(|e| e.to_string()),
            }
        })
        .map(Some)
    };
    let available_below = amount("memory_available_below");
    let available_release = amount("memory_available_release");
    let mut percent = |key: &'static str| -> Option<Option<f64>> {
        let Some(n) = fields.get(key) else { return Some(None) };
        cx.decimal(n, &fields.field(key), "a percentage", "stall percentage", |text| {
            match text.trim().trim_end_matches('%').parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
                _ => Err("it is the percent of time stalled, from 0 to 100".to_owned()),
            }
        })
        .map(Some)
    };
    let some_above = percent("memory_some_above");
    let some_release = percent("memory_some_release");
    let full_above = percent("memory_full_above");
    let full_release = percent("memory_full_release");
    let trigger_after = match fields.get("trigger_after") {
        None => Some(defaults.trigger_after),
        Some(n) => cx.int(n, &fields.field("trigger_after"), 1..=100),
    };
    let mut duration = |key: &'static str, default: Duration| match fields.get(key) {
        None => Some(default),
        Some(n) => cx.duration(n, &fields.field(key)),
    };
    let release_after = duration("release_after", defaults.release_after);
    let requeue_after = duration("requeue_after", defaults.requeue_after);

    let (available_below, available_release) = (available_below?, available_release?);
    let (some_above, some_release) = (some_above?, some_release?);
    let (full_above, full_release) = (full_above?, full_release?);
    let any_trigger = available_below.is_some() || some_above.is_some() || full_above.is_some();
    let (available_below, some_above, full_above) = if any_trigger {
        (available_below, some_above, full_above)
    } else {
        (defaults.available_below, defaults.some_above, defaults.full_above)
    };
    let mut checked = true;
    let mut order =
        |low: &'static str, high: &'static str, lower: Option<f64>, upper: Option<f64>| {
            if let (Some(l), Some(u)) = (lower, upper) {
                if l > u {
                    cx.report(
                        fields.key_pos(low),
                        &fields.field(low),
                        SpecError::NotInOrder {
                            lower: low,
                            lower_value: l.to_string(),
                            upper: high,
                            upper_value: u.to_string(),
                        },
                    );
                    checked = false;
                }
            }
        };
    order("memory_some_release", "memory_some_above", some_release, some_above);
    order("memory_full_release", "memory_full_above", full_release, full_above);
    let value = |m: Option<MemoryAmount>, percent: bool| match m {
        Some(MemoryAmount::Percent(p)) if percent => Some(p),
        Some(MemoryAmount::Bytes(b)) if !percent => Some(b.get() as f64),
        _ => None,
    };
    for percent in [false, true] {
        order(
            "memory_available_below",
            "memory_available_release",
            value(available_below, percent),
            value(available_release, percent),
        );
    }
    if !checked {
        return None;
    }
    Some(Thresholds {
        check_every: check_every?,
        available_below,
        available_release: available_release.or(available_below.map(MemoryAmount::doubled)),
        some_above,
        some_release: some_release.or(some_above.map(|t| t / 2.0)),
        full_above,
        full_release: full_release.or(full_above.map(|t| t / 2.0)),
        trigger_after: trigger_after?,
        release_after: release_after?,
        requeue_after: requeue_after?,
    })
}

/// The `http` mapping; keys left out keep their defaults.
fn http_limits(cx: &mut Checker<ConfigError>, node: &Node, path: &FieldPath) -> Option<HttpLimits> {
    let defaults = HttpLimits::default();
    let fields = cx.map(node, path, HTTP_FIELDS)?;
    let max_connections = match fields.get("max_connections") {
        None => Some(defaults.max_connections),
        Some(n) => cx.int(n, &fields.field("max_connections"), 1..=MAX_HTTP_CONNECTIONS),
    };
    let mut timeout = |key: &'static str, default: Duration, max: Duration| {
        let Some(n) = fields.get(key) else { return Some(default) };
        let d = cx.positive_duration(n, &fields.field(key))?;
        if d > max {
            let max = crate::spec::duration::format(max);
            cx.report(
                n.pos,
                &fields.field(key),
                SpecError::Invalid {
                    what: "timeout",
                    value: crate::spec::duration::format(d),
                    reason: format!(
                        "it must be at most {max}: a longer one lets idle peers hold connections"
                    ),
                },
            );
            return None;
        }
        Some(d)
    };
    let header_timeout =
        timeout("header_timeout", defaults.header_timeout, MAX_HTTP_HEADER_TIMEOUT);
    let idle_timeout = timeout("idle_timeout", defaults.idle_timeout, MAX_HTTP_IDLE_TIMEOUT);
    let request_timeout =
        timeout("request_timeout", defaults.request_timeout, MAX_HTTP_REQUEST_TIMEOUT);
    Some(HttpLimits {
        max_connections: max_connections?,
        header_timeout: header_timeout?,
        idle_timeout: idle_timeout?,
        request_timeout: request_timeout?,
    })
}

impl AgentConfig {
    /// The rules deciding which compiled jobs this agent runs.
    pub fn admission(&self) -> AdmissionRules {
        AdmissionRules {
            default_user: self.default_user.clone(),
            dynamic_users: self.dynamic_users,
            allow_root_jobs: self.allow_root_jobs,
            privileged_groups: self.privileged_groups.clone(),
            allow_shared_uid_without_pid_namespace: self.allow_shared_uid_without_pid_namespace,
            cluster_node: self.cluster.as_ref().map(|c| (c.node_name.clone(), c.labels.clone())),
        }
    }
}

/// A path field: absolute as written, or relative to `base`.
pub(super) fn path(
    cx: &mut Checker<ConfigError>,
    fields: &Fields,
    key: &'static str,
    base: &Path,
    default: PathBuf,
) -> Option<PathBuf> {
    let Some(node) = fields.get(key) else { return Some(default) };
    let text = cx.string(node, &fields.field(key))?;
    if text.is_empty() || text.contains('\0') {
        let reason = if text.is_empty() { "it is empty" } else { "it contains a NUL character" };
        cx.report(
            node.pos,
            &fields.field(key),
            SpecError::Invalid { what: "path", value: text, reason: reason.into() },
        );
        return None;
    }
    Some(base.join(text))
}

/// An `IP:port` address (`[IPv6]:port` for IPv6). Names are not resolved: the address the
/// metrics endpoint binds to should not depend on DNS.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text.parse().map_err(|_| {
        "write an IP address and port, like 127.0.0.1:9464 or [::1]:9464 (host names are not resolved)".to_owned()
    })?;
    if addr.port() == 0 {
        return Err("port 0 would pick a random port, which Prometheus cannot be pointed at".into());
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::UserRef;

    fn compile(text: &str) -> Result<AgentConfig, Vec<String>> {
        compile_str(Path::new("agent.yaml"), text, Path::new("/etc/corral")).map_err(|d| {
            d.into_iter().map(|d| format!("{} {}: {}", d.pos.line, d.field, d.error)).collect()
        })
    }

    fn error(text: &str) -> String {
        let mut all = compile(text).unwrap_err();
        assert_eq!(all.len(), 1, "{all:#?}");
        all.remove(0)
    }

    #[test]
    fn an_empty_file_is_all_defaults() {
        let config = compile("# nothing set\n").unwrap();
        assert_eq!(config, AgentConfig::default());
        assert_eq!(config.jobs_dir, Path::new("/etc/corral/jobs"));
        assert_eq!(config.listen.to_string(), "127.0.0.1:9464");
        assert!(config.listen.ip().is_loopback());
        assert_eq!(config.cgroup_parent.as_str(), "corral");
        assert_eq!(config.default_user, DefaultUser::Dynamic);
        assert_eq!(config.dynamic_users.to_string(), "61184-65519");
        assert!(!config.allow_root_jobs);
        assert_eq!(config.default_timezone, Tz::UTC);
        assert_eq!(config.stop_grace, Duration::from_secs(30));
        assert_eq!(config.log_max_bytes, Bytes(16 << 20));
        assert!(config.reserved_cpus.is_empty());
        assert_eq!(config.finished_run_retention, Duration::from_secs(15 * 60));
        let groups: Vec<String> = config.privileged_groups.iter().map(|g| g.to_string()).collect();
        assert_eq!(groups, ["shadow", "disk", "sudo", "docker", "adm"]);
        assert!(!config.allow_shared_uid_without_pid_namespace);
    }

    #[test]
    fn privileged_groups_by_name_or_id() {
        let config = compile(
            "privileged_groups: [shadow, 42, wheel]\nallow_shared_uid_without_pid_namespace: true\n",
        )
        .unwrap();
        assert_eq!(
            config.privileged_groups,
            [GroupRef::Name("shadow".into()), GroupRef::Id(42), GroupRef::Name("wheel".into())]
        );
        assert!(config.allow_shared_uid_without_pid_namespace);
        assert!(config.admission().allow_shared_uid_without_pid_namespace);
        assert!(compile("privileged_groups: []\n").unwrap().privileged_groups.is_empty());
        assert!(error("privileged_groups: [ok, 'a b']\n").starts_with("1 privileged_groups[1]:"));
        assert!(error("privileged_groups: shadow\n").contains("expected a list"));
    }

    #[test]
    fn every_field_set() {
        let config = compile(
            "jobs_dir: /srv/jobs\nstate_dir: /srv/state\ncgroup_parent: corral-b\nreserved_cpus: 0,2-3\n\
             reserved_memory: 1Gi\nlisten: '[::1]:9500'\nsocket: /run/b.sock\ndefault_user: 1000\n\
             allow_root_jobs: true\nlog_format: json\ndefault_timezone: Europe/Berlin\nstop_grace: 1m\n\
             log_max_bytes: 1Mi\nmin_runtime_before_preemption: 2s\nstop_jobs_on_exit: true\n\
             catch_up_limit: 7\nsocket_group: corral-ops\nfinished_run_retention: 1h\n",
        )
        .unwrap();
        assert_eq!(config.jobs_dir, Path::new("/srv/jobs"));
        assert_eq!(config.state_dir, Path::new("/srv/state"));
        assert_eq!(config.cgroup_parent.as_str(), "corral-b");
        assert_eq!(config.reserved_cpus.to_string(), "0,2-3");
        assert_eq!(config.reserved_memory, Bytes::GIB);
        assert_eq!(config.listen.to_string(), "[::1]:9500");
        assert_eq!(config.socket, Path::new("/run/b.sock"));
        assert_eq!(config.default_user, DefaultUser::Account(UserRef::Id(1000)));
        assert!(config.allow_root_jobs);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.default_timezone, chrono_tz::Europe::Berlin);
        assert_eq!(config.stop_grace, Duration::from_secs(60));
        assert_eq!(config.log_max_bytes, Bytes::MIB);
        assert_eq!(config.min_runtime_before_preemption, Duration::from_secs(2));
        assert!(config.stop_jobs_on_exit);
        assert_eq!(config.catch_up_limit, 7);
        assert_eq!(config.socket_group, Some(GroupRef::Name("corral-ops".into())));
        assert_eq!(compile("socket_group: 0\n").unwrap().socket_group, Some(GroupRef::Id(0)));
        assert_eq!(compile("").unwrap().socket_group, None);
        assert!(error("socket_group: '-x'\n").starts_with("1 socket_group:"));
        assert_eq!(config.finished_run_retention, Duration::from_secs(3600));
        assert!(error("catch_up_limit: 0\n").starts_with("1 catch_up_limit:"));
        assert_eq!(compile("reserved_cpus: 0\n").unwrap().reserved_cpus.to_string(), "0");
    }

    /// Found checking the `config_compile` fuzz target's invariant: `tasks` is a valid
    /// label but not a cgroup name (every v1 cgroup holds a file of that name), so the
    /// agent accepted it and failed at its first launch.
    #[test]
    fn pressure_is_off_unless_asked_for_and_all_defaults_when_empty() {
        assert_eq!(compile("").unwrap().pressure, None);
        assert_eq!(compile("pressure: {}\n").unwrap().pressure, Some(Thresholds::default()));
    }

    #[test]
    fn pressure_takes_only_the_triggers_named_with_release_levels_derived() {
        let p = compile(
            "pressure:\n  memory_available_below: 512Mi\n  memory_some_above: 20\n  \
             check_every: 1s\n  trigger_after: 2\n  release_after: 10s\n  requeue_after: 1m\n",
        )
        .unwrap()
        .pressure
        .unwrap();
        assert_eq!(p.available_below, Some(MemoryAmount::Bytes(Bytes::from_mib(512))));
        assert_eq!(p.available_release, Some(MemoryAmount::Bytes(Bytes::from_gib(1))));
        assert_eq!((p.some_above, p.some_release), (Some(20.0), Some(10.0)));
        assert_eq!((p.full_above, p.full_release), (None, None), "not named: off");
        assert_eq!(p.check_every, Duration::from_secs(1));
        assert_eq!(p.trigger_after, 2);
        assert_eq!(p.release_after, Duration::from_secs(10));
        assert_eq!(p.requeue_after, Duration::from_secs(60));
        let p = compile("pressure: {memory_available_below: 5%, memory_full_above: 2.5, memory_full_release: 1}\n")
            .unwrap()
            .pressure
            .unwrap();
        assert_eq!(p.available_below, Some(MemoryAmount::Percent(5.0)));
        assert_eq!(p.available_release, Some(MemoryAmount::Percent(10.0)));
        assert_eq!((p.full_above, p.full_release), (Some(2.5), Some(1.0)));
        assert_eq!(p.some_above, None);
    }

    #[test]
    fn pressure_problems_are_all_reported_with_their_field() {
        let all = compile(
            "pressure:\n  memory_some_above: 120\n  memory_available_below: 5 percent\n  \
             check_every: 5m\n  trigger_after: 0\n  memory_some_relase: 1\n",
        )
        .unwrap_err();
        let joined = all.join("\n");
        assert_eq!(all.len(), 5, "{joined}");
        assert!(
            joined.contains("2 pressure.memory_some_above: invalid stall percentage"),
            "{joined}"
        );
        assert!(
            joined.contains("3 pressure.memory_available_below: invalid memory amount"),
            "{joined}"
        );
        assert!(joined.contains("4 pressure.check_every: invalid check interval"), "{joined}");
        assert!(joined.contains("5 pressure.trigger_after"), "{joined}");
        assert!(joined.contains("memory_some_relase"), "{joined}");
        assert_eq!(
            error("pressure: {memory_some_above: 10, memory_some_release: 20}\n"),
            "1 pressure.memory_some_release: `memory_some_release` (20) must not be larger than \
             `memory_some_above` (10)"
        );
        assert!(error("pressure: {memory_available_below: 2Gi, memory_available_release: 1Gi}\n")
            .contains("`memory_available_below` (2147483648) must not be larger than `memory_available_release`"));
    }

    #[test]
    fn cgroup_parent_must_be_a_cgroup_name() {
        assert_eq!(
            error("cgroup_parent: tasks\n"),
            "1 cgroup_parent: invalid name \"tasks\": a cgroup cannot have this name: \
             collides with a cgroup v1 file name"
        );
        assert!(CgroupParent::parse("tasks").is_err());
        assert_eq!(compile("cgroup_parent: tasks-b\n").unwrap().cgroup_parent.as_str(), "tasks-b");
    }

    #[test]
    fn relative_paths_are_relative_to_the_config_directory() {
        let config =
            compile("jobs_dir: ../jobs\nstate_dir: state\nsocket: ./corral.sock\n").unwrap();
        assert_eq!(config.jobs_dir, Path::new("/etc/corral/../jobs"));
        assert_eq!(config.state_dir, Path::new("/etc/corral/state"));
        assert_eq!(config.socket, Path::new("/etc/corral/./corral.sock"));
    }

    #[test]
    fn mistakes_are_all_reported() {
        let all = compile(
            "cgroup_parent: Corral/x\nreserved_cpus: 3-1\nlisten: localhost:9464\ndefault_user: root\n\
             log_format: xml\ndefault_timezone: Moon/Base\nstop_grace: 30\nlog_max_bytes: 10\njob_dir: /x\n",
        )
        .unwrap_err();
        assert_eq!(all.len(), 9, "{all:#?}");
        assert!(
            all[0].starts_with("1 cgroup_parent: invalid name \"Corral/x\": it contains '/'"),
            "{all:#?}"
        );
        assert_eq!(all[1], "2 reserved_cpus: invalid CPU list \"3-1\": range 3-1 runs backwards");
        assert!(all[2].starts_with(
            "3 listen: invalid listen address \"localhost:9464\": write an IP address"
        ));
        assert_eq!(
            all[3],
            "4 default_user: default_user \"root\" is root, but allow_root_jobs is false"
        );
        assert_eq!(all[4], "5 log_format: \"xml\" is not one of: text, json");
        assert!(all[5].starts_with("6 default_timezone: unknown time zone \"Moon/Base\""));
        assert!(all[6].starts_with("7 stop_grace: invalid duration \"30\""));
        assert_eq!(all[7], "8 log_max_bytes: invalid log size \"10\": it must be at least 1Ki");
        assert_eq!(all[8], "9 job_dir: unknown field `job_dir`; did you mean `jobs_dir`?");
    }

    #[test]
    fn log_tail_bytes_is_zero_or_at_least_a_kibibyte() {
        assert_eq!(compile("").unwrap().log_tail_bytes, Bytes::MIB);
        assert_eq!(compile("log_tail_bytes: 0\n").unwrap().log_tail_bytes, Bytes(0));
        assert_eq!(compile("log_tail_bytes: 64Ki\n").unwrap().log_tail_bytes, Bytes(64 << 10));
        assert_eq!(
            error("stop_grace: 1s\nlog_tail_bytes: 100\n"),
            "2 log_tail_bytes: invalid log tail size \"100\": it must be 0 (no tail) or at least 1Ki"
        );
    }

    #[test]
    fn finished_run_retention_is_zero_to_a_day() {
        assert_eq!(
            compile("finished_run_retention: 0s\n").unwrap().finished_run_retention,
            Duration::ZERO
        );
        assert_eq!(
            compile("finished_run_retention: 24h\n").unwrap().finished_run_retention,
            MAX_FINISHED_RUN_RETENTION
        );
        assert_eq!(
            error("finished_run_retention: 24h1s\n"),
            "1 finished_run_retention: invalid retention \"1d1s\": it must be at most 1d; \
             older runs are in the store (corral show)"
        );
        assert!(error("finished_run_retention: 15\n")
            .starts_with("1 finished_run_retention: invalid duration"));
    }

    #[test]
    fn default_user_dynamic_or_an_account_and_the_range() {
        let shared = compile("default_user: nobody\n").unwrap();
        assert_eq!(shared.default_user, DefaultUser::Account(UserRef::Name("nobody".into())));
        assert_eq!(compile("default_user: dynamic\n").unwrap().default_user, DefaultUser::Dynamic);
        let ranged = compile("dynamic_users: {range: 70000-70009}\n").unwrap();
        assert_eq!((ranged.dynamic_users.first(), ranged.dynamic_users.len()), (70000, 10));
        assert_eq!(ranged.admission().dynamic_users, ranged.dynamic_users);
        assert_eq!(compile("dynamic_users: {}\n").unwrap().dynamic_users, UidRange::DEFAULT);
        assert!(error("dynamic_users: {range: 60000-65534}\n").starts_with(
            "1 dynamic_users.range: invalid uid range \"60000-65534\": it contains 65534"
        ));
        assert!(error("dynamic_users: {range: 0-9}\n").contains("uid 0 is root"));
        assert!(error("dynamic_users: {ranges: 1-9}\n").contains("did you mean `range`?"));
    }

    #[test]
    fn http_limits_default_and_each_key_alone() {
        assert_eq!(compile("").unwrap().http, HttpLimits::default());
        let set = compile(
            "http:\n  max_connections: 16\n  header_timeout: 200ms\n  idle_timeout: 1m\n  \
             request_timeout: 10s\n",
        )
        .unwrap()
        .http;
        assert_eq!(
            set,
            HttpLimits {
                max_connections: 16,
                header_timeout: Duration::from_millis(200),
                idle_timeout: Duration::from_secs(60),
                request_timeout: Duration::from_secs(10),
            }
        );
        let one = compile("http: {idle_timeout: 5s}\n").unwrap().http;
        assert_eq!(
            one,
            HttpLimits { idle_timeout: Duration::from_secs(5), ..HttpLimits::default() }
        );
    }

    #[test]
    fn http_limit_mistakes_are_all_reported_with_their_key() {
        let all = compile(
            "http:\n  max_connections: 0\n  header_timeout: 0s\n  idle_timeout: 11m\n  \
             request_timeout: 30\n  max_conections: 4\n",
        )
        .unwrap_err();
        assert_eq!(all.len(), 5, "{all:#?}");
        assert!(all[0].starts_with("2 http.max_connections: "), "{all:#?}");
        assert!(all[0].contains("65536"), "{all:#?}");
        assert_eq!(
            all[1],
            "3 http.header_timeout: invalid duration \"0s\": it must be longer than zero"
        );
        assert_eq!(
            all[2],
            "4 http.idle_timeout: invalid timeout \"11m\": it must be at most 10m: \
             a longer one lets idle peers hold connections"
        );
        assert!(all[3].starts_with("5 http.request_timeout: invalid duration \"30\""), "{all:#?}");
        assert_eq!(
            all[4],
            "6 http.max_conections: unknown field `max_conections`; did you mean `max_connections`?"
        );
        assert!(error("http: 5\n").starts_with("1 http: "));
    }

    #[test]
    fn root_by_id_is_root_too_and_allowed_when_said_so() {
        assert!(error("default_user: 0\n").contains("is root, but allow_root_jobs is false"));
        assert!(compile("default_user: root\nallow_root_jobs: true\n").is_ok());
    }

    #[test]
    fn listen_port_zero_and_garbage() {
        assert!(error("listen: 127.0.0.1:0\n").contains("port 0"));
        assert!(error("listen: 9464\n").contains("write an IP address and port"));
        assert!(
            compile("listen: 0.0.0.0:9464\n").is_ok(),
            "a non-loopback address is allowed when written out"
        );
    }

    #[test]
    fn socket_paths_must_fit_sun_path() {
        let long = format!("socket: /{}\n", "s".repeat(MAX_SOCKET_PATH));
        assert!(error(&long).contains("a Unix socket path is at most 107 bytes"));
        let relative = format!("socket: {}\n", "s".repeat(MAX_SOCKET_PATH - "/etc/corral/".len()));
        assert!(compile(&relative).is_ok());
    }

    #[test]
    fn one_document_only() {
        assert_eq!(
            compile("log_format: json\n---\nlog_format: text\n").unwrap_err(),
            ["3 : the configuration is one YAML document; found another one here"]
        );
    }

    #[test]
    fn load_resolves_against_the_files_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.yaml");
        std::fs::write(&file, "jobs_dir: jobs\n").unwrap();
        let config = load(&file).unwrap();
        assert_eq!(config.jobs_dir, dir.path().join("jobs"));
        let missing = load(&dir.path().join("nope.yaml")).unwrap_err();
        assert!(missing.to_string().contains("cannot read"), "{missing}");
    }

    #[test]
    fn cgroup_root_is_auto_or_an_absolute_cgroup_path() {
        assert_eq!(compile("").unwrap().cgroup_root, CgroupRoot::Auto);
        assert_eq!(compile("cgroup_root: auto\n").unwrap().cgroup_root, CgroupRoot::Auto);
        assert_eq!(
            compile("cgroup_root: /system.slice/corral.service/\n").unwrap().cgroup_root,
            CgroupRoot::Delegated("/system.slice/corral.service".into())
        );
        let relative = error("cgroup_root: system.slice/corral.service\n");
        assert!(relative.contains("1 cgroup_root") && relative.contains("`auto`"), "{relative}");
        assert!(error("cgroup_root: /\n").contains("not a delegated cgroup"));
        for bad in ["/a//b", "/a/../b", "/a/./b"] {
            let e = error(&format!("cgroup_root: {bad}\n"));
            assert!(e.contains("no empty, `.` or `..` parts"), "{bad}: {e}");
        }
    }
}
