//! The agent configuration and its compiler.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;

use super::error::ConfigError;
use crate::cgroup::{CgroupError, CgroupName};
use crate::spec::check::{choice, Checker, Fields};
use crate::spec::error::{Diagnostic, Diagnostics, FieldPath};
use crate::spec::name::{check_label, NameError};
use crate::spec::schedule::parse_timezone;
use crate::spec::tree::Node;
use crate::spec::{source, Bytes, GroupRef, Pos, SpecError, UserRef};
use crate::topology::CpuSet;

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
        check_label(name)?;
        // It is a cgroup directory in every hierarchy too; a name the cgroup layer refuses
        // would otherwise pass here and fail at the first launch.
        if let Err(CgroupError::InvalidName { reason, .. }) = CgroupName::new(name) {
            return Err(NameError::Cgroup { reason });
        }
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
    /// Who jobs without a `user` run as.
    pub default_user: UserRef,
    /// Whether a job may run as root (uid 0), by its own `user` or by `default_user`.
    pub allow_root_jobs: bool,
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
            default_user: UserRef::Name("nobody".into()),
            allow_root_jobs: false,
            log_format: LogFormat::Text,
            default_timezone: Tz::UTC,
            catch_up_limit: 100,
            stop_grace: Duration::from_secs(30),
            log_max_bytes: Bytes(16 << 20),
            min_runtime_before_preemption: Duration::from_secs(10),
            stop_jobs_on_exit: false,
            finished_run_retention: Duration::from_secs(15 * 60),
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
    "allow_root_jobs",
    "log_format",
    "default_timezone",
    "catch_up_limit",
    "stop_grace",
    "log_max_bytes",
    "min_runtime_before_preemption",
    "stop_jobs_on_exit",
    "finished_run_retention",
];

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
        Some(n) => cx.parsed_text(n, &fields.field("default_user"), UserRef::parse),
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
        allow_root_jobs: allow_root_jobs?,
        log_format: log_format?,
        default_timezone: default_timezone?,
        catch_up_limit: catch_up_limit?,
        stop_grace: stop_grace?,
        log_max_bytes: log_max_bytes?,
        min_runtime_before_preemption: min_runtime_before_preemption?,
        stop_jobs_on_exit: stop_jobs_on_exit?,
        finished_run_retention: finished_run_retention?,
    })
}

/// A path field: absolute as written, or relative to `base`.
fn path(
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
        assert_eq!(config.default_user, UserRef::Name("nobody".into()));
        assert!(!config.allow_root_jobs);
        assert_eq!(config.default_timezone, Tz::UTC);
        assert_eq!(config.stop_grace, Duration::from_secs(30));
        assert_eq!(config.log_max_bytes, Bytes(16 << 20));
        assert!(config.reserved_cpus.is_empty());
        assert_eq!(config.finished_run_retention, Duration::from_secs(15 * 60));
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
        assert_eq!(config.default_user, UserRef::Id(1000));
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
}
