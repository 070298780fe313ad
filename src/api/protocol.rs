//! The control protocol: one JSON request per line, answered by one JSON
//! response per line, on the same connection.

use serde::{Deserialize, Serialize};

use crate::vocab::JobName;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum Request {
    /// The runs not yet over.
    Ps,
    /// A run by id, or the latest runs of a job by name.
    Show { target: String },
    /// Freeze a running run until it is thawed by hand.
    Freeze { run: String },
    /// Let a run frozen by hand run again.
    Thaw { run: String },
    /// Stop a run gracefully and queue it again, keeping its attempt.
    Requeue { run: String },
    /// Stop a run for good (SIGTERM, its grace period, SIGKILL).
    Kill { run: String },
    /// Start a run of a recurring job now, as if it had fired.
    Trigger { job: String },
    /// Transitions and run events recorded after `since` (milliseconds
    /// since the epoch; all recent ones when absent). With `follow`, the
    /// answer is followed by one more `events` response per new entry as
    /// the agent records it, until the client hangs up or the agent stops.
    Events {
        since: Option<i64>,
        #[serde(default)]
        follow: bool,
    },
    /// Read the jobs directory again now, and say what came of it.
    Reload,
    /// Run a job that need not be in the jobs directory (`corral submit`):
    /// `source` is the job file's text, `overrides` its `KEY=VALUE`
    /// changes, `file` the name it was read from (for messages).
    Submit {
        file: String,
        source: String,
        #[serde(default)]
        overrides: Vec<String>,
    },
}

impl Request {
    /// Whether answering it may change a run or the job set (and so needs
    /// the store to record the change), rather than only read.
    pub fn changes_something(&self) -> bool {
        match self {
            Request::Ps | Request::Show { .. } | Request::Events { .. } => false,
            Request::Freeze { .. }
            | Request::Thaw { .. }
            | Request::Requeue { .. }
            | Request::Kill { .. }
            | Request::Trigger { .. }
            | Request::Reload
            | Request::Submit { .. } => true,
        }
    }

    /// Reads one request line as the control socket receives it.
    pub fn decode(line: &str) -> Result<Request, serde_json::Error> {
        serde_json::from_str(line)
    }
}

/// What the agent answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "kebab-case")]
pub enum Response {
    Ps {
        runs: Vec<RunRow>,
    },
    Show {
        runs: Vec<ShownRun>,
    },
    /// A change was accepted; `message` says what happens now.
    Done {
        message: String,
    },
    Events {
        events: Vec<EventLine>,
        /// The position in the agent's event feed this answer is current
        /// to: a follower skips entries of the feed up to it, which the
        /// answer already holds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        upto: Option<u64>,
    },
    /// The jobs directory was read again and the outcome applied.
    Reloaded(ReloadReport),
    /// Refused, or not understood.
    Error {
        message: String,
    },
}

/// A change the agent accepted, and what happens now; sent as a `done`
/// response whose message is its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Frozen by hand, until thawed by hand.
    Freezing { run: RunId },
    /// Thawed by hand and waiting to be placed again.
    ResumesWhenFree { run: RunId },
    /// Thawed by hand; already in another phase than suspended.
    ThawedIn { run: RunId, phase: &'static str },
    /// Thawed by hand after it was over.
    ThawedOver { run: RunId },
    /// Stopping gracefully, to be queued again.
    Requeuing { run: RunId },
    /// Stopping gracefully, for good.
    Stopping { run: RunId },
    /// A run of a recurring job started now.
    Started { run: RunId },
    /// A firing of a recurring job queued behind its runs under way.
    QueuedBehind,
    /// A submitted job's runs are queued: `runs` in index order; `array`:
    /// the indices and cap, for an array.
    Submitted { job: JobName, runs: Vec<RunId>, array: Option<String> },
    /// Every run of array (or submitted job) `job` under way is stopping.
    StoppingAll { job: JobName, runs: usize },
}

impl std::fmt::Display for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Accepted::Freezing { run } => write!(
                f,
                "{run} is being frozen by operator; `corral thaw {run}` lets it run again"
            ),
            Accepted::ResumesWhenFree { run } => {
                write!(f, "{run} resumes as soon as CPUs and memory for it are free")
            }
            Accepted::ThawedIn { run, phase } => write!(f, "{run} is {phase}"),
            Accepted::ThawedOver { run } => write!(f, "{run} is over"),
            Accepted::Requeuing { run } => {
                write!(f, "{run} is being stopped and will be queued again")
            }
            Accepted::Stopping { run } => write!(f, "{run} is being stopped"),
            Accepted::Started { run } => write!(f, "started {run}"),
            Accepted::QueuedBehind => {
                f.write_str("queued behind the runs under way (concurrency: queue or replace)")
            }
            Accepted::Submitted { job, runs, array } => match (runs.as_slice(), array) {
                ([one], None) => write!(f, "submitted {job}: run {one}"),
                (runs, array) => write!(
                    f,
                    "submitted array {job} ({}): {} runs, {} to {}",
                    array.as_deref().unwrap_or(""),
                    runs.len(),
                    runs.first().map(RunId::as_str).unwrap_or(""),
                    runs.last().map(RunId::as_str).unwrap_or(""),
                ),
            },
            Accepted::StoppingAll { job, runs } => {
                write!(f, "{job}: {runs} runs are being stopped")
            }
        }
    }
}

/// Why a request was refused or not carried out; sent as an `error`
/// response whose message is its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    // What the request names does not exist.
    #[error("no run {run} under way")]
    NotLive { run: RunId },
    #[error("no run or job named {target:?}")]
    NoRunOrJob { target: String },
    #[error("{job:?}: {reason}")]
    InvalidJobName { job: String, reason: String },
    #[error("{job} is not a recurring job the agent runs")]
    NotScheduled { job: JobName },
    #[error("{job} is not a recurring job")]
    NotRecurring { job: JobName },

    // The run or job is not in a state that allows it.
    #[error("{run} is {phase}; only a {allowed} run can be {action}")]
    WrongPhase { run: RunId, phase: &'static str, allowed: &'static str, action: &'static str },
    /// The run state machine did not take the request where the run is now.
    #[error("{run} cannot be {action} now")]
    NotNow { run: RunId, action: &'static str },
    #[error("{run} was not frozen by an operator")]
    NotHeld { run: RunId },
    #[error("the job file of {job} has not been read yet")]
    JobNotRead { job: JobName },
    /// A firing asked for by hand that the job's concurrency policy skipped.
    #[error("not started: {reason}")]
    Skipped { reason: String },
    #[error("not started")]
    NotStarted,
    /// A submitted job that does not compile or is not admitted; every
    /// problem, one per line.
    #[error("not submitted:\n{problems}")]
    NotSubmitted { problems: String },
    /// A submitted job's name is in use.
    #[error("not submitted: {job} {why}")]
    NameTaken { job: JobName, why: &'static str },

    // The agent cannot do it now.
    #[error("the agent is shutting down")]
    ShuttingDown,
    /// The store takes no writes; `reason` is the store's.
    #[error("{holding}: {reason}")]
    Holding { holding: &'static str, reason: String },
    #[error("the jobs directory is no longer watched (see the agent's log); restart the agent")]
    NotWatched,
    #[error("{waiting} reloads are already waiting; try again once they are answered")]
    ReloadsWaiting { waiting: usize },
    /// The jobs directory could not be read; `cause` with its causes.
    #[error("{cause}; the jobs in force stay as they are")]
    ReloadFailed { cause: String },

    // The request itself.
    #[error("uid {uid} may not use the control socket")]
    NotPermitted { uid: u32 },
    #[error("not a request: {reason}")]
    NotARequest { reason: String },
    #[error("a request line is at most {max} bytes")]
    LineTooLong { max: u64 },
}

/// What a reload of the jobs directory found (`corral reload`). The job
/// names are those whose jobs this reload added, changed or removed; the
/// files not applied are all those that stand so now, also those this reload
/// did not change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// The jobs directory, as configured.
    pub jobs_dir: String,
    /// Job files whose current version is in force.
    pub files_applied: u64,
    /// Job files whose current version is not in force.
    pub files_not_applied: u64,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// In path order.
    pub not_applied: Vec<FileNotApplied>,
}

impl ReloadReport {
    /// Whether every job file's current version is in force.
    pub fn all_applied(&self) -> bool {
        self.files_not_applied == 0
    }
}

/// A job file whose current version is not in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileNotApplied {
    pub file: String,
    /// Every problem that stands against it: compile errors with line and
    /// field, the watcher's reason for refusing it, a clash with an earlier
    /// file.
    pub problems: Vec<String>,
    /// Jobs of its last good version that stay in force meanwhile.
    pub in_force: Vec<String>,
}

/// One line of `corral ps`, made by [`RunFacts::row`](super::run::RunFacts::row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    pub job: String,
    pub run: String,
    pub state: String,
    pub priority: Option<u16>,
    /// Exclusive CPUs as a list (`2-3`), `shared`, or empty when not placed.
    pub cpus: String,
    /// NUMA nodes its memory comes from, as a list.
    pub numa: String,
    pub memory_limit_bytes: Option<u64>,
    /// Memory the run uses now: its cgroup's usage, the figure the hard
    /// limit applies to; absent when it has no processes or its cgroup
    /// cannot be read.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// CPU used by the current attempt since it was launched, as a
    /// percentage of one CPU (`250.0` is two and a half CPUs); absent when
    /// the run has no processes or its cgroup cannot be read.
    pub cpu_percent: Option<f64>,
    /// The job's next firing (RFC 3339), for recurring jobs.
    pub next_fire: Option<String>,
    /// Seconds until `next_fire`.
    pub next_fire_in_seconds: Option<u64>,
    /// Since the run was created.
    pub age_seconds: u64,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// The array (its job's name) the run is an index of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_index: Option<u32>,
    /// Why a pending run is not placed yet, when the agent knows better than
    /// "no room" (`array limit 2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// The cluster run this local run runs, in cluster mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_run: Option<ClusterRunRef>,
}

/// Which attempt of which cluster run a local run runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRunRef {
    pub run: String,
    pub attempt: u32,
}

/// A run in detail (`corral show`), made by [`RunFacts::shown`](super::run::RunFacts::shown).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShownRun {
    #[serde(flatten)]
    pub row: RunRow,
    pub attempt: u32,
    /// Where its logs and status file are, once launched.
    pub run_dir: Option<String>,
    pub pid: Option<u32>,
    /// The job's uid from the `dynamic_users` range, if it has one.
    #[serde(default)]
    pub dynamic_uid: Option<u32>,
    pub exit: Option<ExitLine>,
    pub transitions: Vec<TransitionLine>,
    pub events: Vec<EventLine>,
}

/// How the attempt `corral show` tells of ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitLine {
    /// `exit code N` or `signal N`.
    pub status: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub at: String,
    pub peak_memory_bytes: Option<u64>,
    pub oom_kills: u64,
    pub cpu_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionLine {
    /// RFC 3339.
    pub at: String,
    pub from: Option<String>,
    pub to: String,
    pub reason: String,
}

/// A transition or a run event (OOM, preemption, …), for `corral events`
/// and `corral show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLine {
    /// Milliseconds since the epoch, for ordering and `since`.
    pub at_ms: i64,
    /// RFC 3339.
    pub at: String,
    pub job: String,
    pub run: String,
    /// `transition`, or the event's kind (`oom`, `preempted`, …).
    pub kind: String,
    pub detail: String,
}

impl EventLine {
    /// A run's change of phase, as its history lists it.
    pub fn transition(
        at: Timestamp,
        job: &str,
        run: &str,
        from: Option<&str>,
        to: &str,
        reason: &str,
    ) -> EventLine {
        let from = from.unwrap_or("(new)");
        EventLine::new(at, job, run, "transition", format!("{from} -> {to}: {reason}"))
    }

    /// Something that happened to a run (`oom`, `preempted`, …).
    pub fn run_event(at: Timestamp, job: &str, run: &str, kind: &str, reason: &str) -> EventLine {
        EventLine::new(at, job, run, kind, reason.to_owned())
    }

    fn new(at: Timestamp, job: &str, run: &str, kind: &str, detail: String) -> EventLine {
        EventLine {
            at_ms: at.as_millis(),
            at: at.to_string(),
            job: job.to_owned(),
            run: run.to_owned(),
            kind: kind.to_owned(),
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_object_each() {
        let text = serde_json::to_string(&Request::Freeze { run: "etl-3".into() }).unwrap();
        assert_eq!(text, r#"{"request":"freeze","run":"etl-3"}"#);
        let back: Request = serde_json::from_str(r#"{"request":"ps"}"#).unwrap();
        assert_eq!(back, Request::Ps);
        let events: Request = serde_json::from_str(r#"{"request":"events","since":5}"#).unwrap();
        assert_eq!(events, Request::Events { since: Some(5), follow: false });
    }

    #[test]
    fn responses_round_trip() {
        let done = Response::Done { message: "ok".into() };
        let text = serde_json::to_string(&done).unwrap();
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), done);
    }

    /// The texts are what `corral` prints: they are the command line's
    /// output, whatever the types behind them.
    #[test]
    fn refusals_and_acceptances_read_as_the_command_line_prints_them() {
        let run = || RunId::new("etl-3");
        let job = || JobName::parse("etl").unwrap();
        let cases: Vec<(String, &str)> = vec![
            (ControlError::NotLive { run: run() }.to_string(), "no run etl-3 under way"),
            (
                ControlError::NoRunOrJob { target: "x".into() }.to_string(),
                "no run or job named \"x\"",
            ),
            (
                ControlError::WrongPhase {
                    run: run(),
                    phase: "pending",
                    allowed: "running or suspended",
                    action: "requeued",
                }
                .to_string(),
                "etl-3 is pending; only a running or suspended run can be requeued",
            ),
            (
                ControlError::NotNow { run: run(), action: "stopped" }.to_string(),
                "etl-3 cannot be stopped now",
            ),
            (
                ControlError::NotHeld { run: run() }.to_string(),
                "etl-3 was not frozen by an operator",
            ),
            (
                ControlError::NotScheduled { job: job() }.to_string(),
                "etl is not a recurring job the agent runs",
            ),
            (ControlError::NotRecurring { job: job() }.to_string(), "etl is not a recurring job"),
            (
                ControlError::JobNotRead { job: job() }.to_string(),
                "the job file of etl has not been read yet",
            ),
            (ControlError::NotStarted.to_string(), "not started"),
            (ControlError::ShuttingDown.to_string(), "the agent is shutting down"),
            (
                ControlError::ReloadsWaiting { waiting: 8 }.to_string(),
                "8 reloads are already waiting; try again once they are answered",
            ),
            (
                ControlError::NotPermitted { uid: 1000 }.to_string(),
                "uid 1000 may not use the control socket",
            ),
            (
                Accepted::Freezing { run: run() }.to_string(),
                "etl-3 is being frozen by operator; `corral thaw etl-3` lets it run again",
            ),
            (
                Accepted::ResumesWhenFree { run: run() }.to_string(),
                "etl-3 resumes as soon as CPUs and memory for it are free",
            ),
            (Accepted::ThawedIn { run: run(), phase: "stopping" }.to_string(), "etl-3 is stopping"),
            (Accepted::ThawedOver { run: run() }.to_string(), "etl-3 is over"),
            (
                Accepted::Requeuing { run: run() }.to_string(),
                "etl-3 is being stopped and will be queued again",
            ),
            (Accepted::Stopping { run: run() }.to_string(), "etl-3 is being stopped"),
            (Accepted::Started { run: run() }.to_string(), "started etl-3"),
            (
                Accepted::Submitted { job: job(), runs: vec![run()], array: None }.to_string(),
                "submitted etl: run etl-3",
            ),
            (
                Accepted::Submitted {
                    job: job(),
                    runs: vec![RunId::new("etl-3"), RunId::new("etl-4")],
                    array: Some("0-1%1".into()),
                }
                .to_string(),
                "submitted array etl (0-1%1): 2 runs, etl-3 to etl-4",
            ),
            (
                Accepted::StoppingAll { job: job(), runs: 4 }.to_string(),
                "etl: 4 runs are being stopped",
            ),
            (
                ControlError::NameTaken { job: job(), why: "is a job of the jobs directory" }
                    .to_string(),
                "not submitted: etl is a job of the jobs directory",
            ),
            (
                ControlError::NotSubmitted { problems: "a\nb".into() }.to_string(),
                "not submitted:\na\nb",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(text, expected);
        }
    }

    #[test]
    fn a_submission_is_one_line_and_old_clients_need_not_send_overrides() {
        let request = Request::Submit {
            file: "s.yaml".into(),
            source: "name: s\ncommand: [x]\n".into(),
            overrides: vec!["priority=80".into()],
        };
        let text = serde_json::to_string(&request).unwrap();
        assert!(!text.contains('\n'), "{text}");
        assert_eq!(Request::decode(&text).unwrap(), request);
        assert!(request.changes_something());
        let bare = Request::decode(r#"{"request":"submit","file":"f","source":"s"}"#).unwrap();
        assert_eq!(
            bare,
            Request::Submit { file: "f".into(), source: "s".into(), overrides: vec![] }
        );
    }

    #[test]
    fn a_reload_is_asked_and_answered_flat() {
        let text = serde_json::to_string(&Request::Reload).unwrap();
        assert_eq!(text, r#"{"request":"reload"}"#);
        let reloaded = Response::Reloaded(ReloadReport {
            jobs_dir: "/jobs".into(),
            files_applied: 1,
            files_not_applied: 1,
            added: vec!["a".into()],
            changed: Vec::new(),
            removed: Vec::new(),
            not_applied: vec![FileNotApplied {
                file: "/jobs/b.yaml".into(),
                problems: vec!["refused: it is world-writable (mode 0666)".into()],
                in_force: Vec::new(),
            }],
        });
        let text = serde_json::to_string(&reloaded).unwrap();
        assert!(text.starts_with(r#"{"response":"reloaded","jobs_dir":"/jobs","#), "{text}");
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), reloaded);
    }
}
