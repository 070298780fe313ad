//! Where a run is in its life, and what it carries from attempt to attempt.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use crate::vocab::Bytes;
use crate::vocab::RunId;

use super::event::ExitStatus;
use super::policy::{OomPolicy, Policy};
use crate::spec::RestartOn;
use crate::vocab::Timestamp;

/// A run's whole decision-relevant state. Serializable: the store keeps it
/// verbatim so that a restarted agent resumes every run exactly where it was.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunState {
    pub phase: Phase,
    /// When `phase` was entered.
    pub since: Timestamp,
    /// Which try this is, from 1. Restarts and OOM requeues start a new try;
    /// a preemption requeue does not (the job did nothing wrong).
    pub attempt: u32,
    /// Restarts used, against [`RestartPolicy::attempts`](super::RestartPolicy::attempts).
    pub restarts: u32,
    /// OOM requeues used, against the requeue policy's `max`.
    pub oom_requeues: u32,
    /// The hard memory limit of the next or current attempt. OOM handling
    /// raises it; nothing lowers it.
    pub memory_limit: Option<Bytes>,
    /// Running time of this attempt before the current stretch in
    /// [`Phase::Running`]: the part of the active deadline already spent.
    pub active: Duration,
    /// The kernel's OOM killer hit this attempt, so its end is an OOM ending
    /// whatever the exit status says.
    pub oom_killed: bool,
    /// Its job is gone and it finishes the attempt under way, nothing more
    /// (`on_removal: finish`): no restart, no OOM requeue
    /// ([`RunState::policy_in_force`]). Records written before this field
    /// existed read as `false`.
    #[serde(default)]
    pub finishing: bool,
    /// This attempt's `timeout_signal` has been sent (stored before it is
    /// sent, so a restarted agent never sends it twice). Records from
    /// before read as `false`.
    #[serde(default)]
    pub timeout_signal_sent: bool,
}

impl RunState {
    /// A new run, waiting for placement.
    pub fn new(memory_limit: Option<Bytes>, now: Timestamp) -> RunState {
        RunState {
            phase: Phase::Pending,
            since: now,
            attempt: 1,
            restarts: 0,
            oom_requeues: 0,
            memory_limit,
            active: Duration::ZERO,
            oom_killed: false,
            finishing: false,
            timeout_signal_sent: false,
        }
    }

    /// The rules that apply to the run now: the job's `policy`, narrowed to
    /// "this attempt only" while the run finishes after its job was removed.
    /// (Growing in place stays; an OOM ending of a finishing run starts no
    /// new attempt under any policy, which the transition's OOM ending
    /// checks itself.)
    pub fn policy_in_force<'p>(&self, policy: &'p Policy) -> Cow<'p, Policy> {
        if !self.finishing {
            return Cow::Borrowed(policy);
        }
        let mut narrowed = policy.clone();
        narrowed.restart.on = RestartOn::Never;
        if let OomPolicy::Requeue { .. } = narrowed.oom {
            narrowed.oom = OomPolicy::Fail;
        }
        Cow::Owned(narrowed)
    }

    pub fn is_terminal(&self) -> bool {
        self.phase.is_terminal()
    }

    /// Running time of the current attempt at `now`.
    pub fn active_at(&self, now: Timestamp) -> Duration {
        match self.phase {
            Phase::Running { since } => self.active.saturating_add(now.since(since)),
            _ => self.active,
        }
    }
}

/// The phases of a run.
///
/// ```text
/// Blocked ─Released→ Pending (or ─DependencyFailed→ Failed)
/// Pending ─Placed→ Placed ─Launched→ Running ⇄ Suspended
///                                     │  ↘ OomPaused → Running | Stopping
///                                     ↓
///        Stopping (TERM, grace, KILL) → Killed | Pending | (ending)
/// (ending) → Succeeded | Failed | BackoffWaiting → Pending
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "phase", rename_all = "kebab-case")]
pub enum Phase {
    /// Waiting for the jobs it comes after (`after:`) to end as asked; not
    /// in the queue yet.
    Blocked {
        /// What it waits for, as the job says it: `extract succeeded`.
        after: String,
    },
    /// Waiting in the queue for CPUs and memory.
    Pending,
    /// Placement held; the launch is under way.
    Placed,
    Running {
        /// Start of the current running stretch (launch, resume or grow).
        since: Timestamp,
    },
    /// Frozen to make room for a run, or by hand.
    Suspended {
        by: SuspendedBy,
        /// The kernel has reported the cgroup frozen.
        frozen: bool,
        /// An OOM notification arrived while frozen. Under cgroup v1 with the
        /// OOM killer disabled the task stays parked at the limit and the
        /// kernel does not notify again, so the OOM policy must run at resume.
        oom_pending: bool,
    },
    /// Frozen at the memory limit while the OOM policy decides.
    OomPaused {
        /// The kernel has reported the cgroup frozen.
        frozen: bool,
    },
    /// SIGTERM sent; every process is killed at `deadline` if still there.
    Stopping {
        intent: StopIntent,
        deadline: Timestamp,
        /// Every process has been sent SIGKILL.
        escalated: bool,
    },
    /// The attempt ended and the restart policy asked for another after a wait.
    BackoffWaiting {
        until: Timestamp,
        /// How the previous attempt failed; `None` after a success under
        /// `restart: always`.
        after: Option<FailReason>,
    },
    Succeeded,
    Failed {
        reason: FailReason,
    },
    Killed {
        reason: StopReason,
    },
}

impl Phase {
    pub fn is_terminal(&self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed { .. } | Phase::Killed { .. })
    }

    /// A stable lower-case name, used in logs, metrics labels and the store.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Blocked { .. } => "blocked",
            Phase::Pending => "pending",
            Phase::Placed => "placed",
            Phase::Running { .. } => "running",
            Phase::Suspended { .. } => "suspended",
            Phase::OomPaused { .. } => "oom-paused",
            Phase::Stopping { .. } => "stopping",
            Phase::BackoffWaiting { .. } => "backoff-waiting",
            Phase::Succeeded => "succeeded",
            Phase::Failed { .. } => "failed",
            Phase::Killed { .. } => "killed",
        }
    }

    /// Every phase name, for exhaustive checks (metrics, store constraints).
    pub const NAMES: [&'static str; 11] = [
        "blocked",
        "pending",
        "placed",
        "running",
        "suspended",
        "oom-paused",
        "stopping",
        "backoff-waiting",
        "succeeded",
        "failed",
        "killed",
    ];

    /// Processes of the run may exist in this phase.
    pub fn may_have_processes(&self) -> bool {
        matches!(
            self,
            Phase::Placed
                | Phase::Running { .. }
                | Phase::Suspended { .. }
                | Phase::OomPaused { .. }
                | Phase::Stopping { .. }
        )
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who a run is frozen for.
///
/// Stored as one string, as it was when only run ids were kept here: a run's
/// id, or `"operator"` for a freeze by hand. No run id is `"operator"` (run
/// ids end in `-<number>`), so the two never mix up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SuspendedBy {
    /// To make room for this run.
    Run(RunId),
    /// By hand (`corral freeze`); only a thaw by hand lets it run again.
    Operator,
    /// By the agent, because the node's memory ran short (see
    /// [`pressure`](super::pressure)); it resumes once the pressure is
    /// over and the watch releases it.
    Pressure,
    /// By the agent, because this node cannot renew its cluster lease: a
    /// cluster run is frozen before the lease can lapse, so that it never
    /// runs unfrozen beside an attempt bound elsewhere (see
    /// `cluster::node::fence`). Thawed once the lease is renewed.
    Fence,
}

impl SuspendedBy {
    /// How a freeze by hand is written, in the store and in reasons.
    pub const OPERATOR: &'static str = "operator";
    /// How a freeze for node pressure is written. No run id has this form
    /// either (it does not end in `-<number>`).
    pub const PRESSURE: &'static str = "memory-pressure";
    /// How a freeze by the node's self-fencing is written; no run id either.
    pub const FENCE: &'static str = "cluster-fence";

    fn from_stored(text: &str) -> SuspendedBy {
        if text == Self::OPERATOR {
            SuspendedBy::Operator
        } else if text == Self::PRESSURE {
            SuspendedBy::Pressure
        } else if text == Self::FENCE {
            SuspendedBy::Fence
        } else {
            SuspendedBy::Run(RunId::new(text))
        }
    }

    fn as_stored(&self) -> &str {
        match self {
            SuspendedBy::Run(run) => run.as_str(),
            SuspendedBy::Operator => Self::OPERATOR,
            SuspendedBy::Pressure => Self::PRESSURE,
            SuspendedBy::Fence => Self::FENCE,
        }
    }
}

impl fmt::Display for SuspendedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_stored())
    }
}

impl serde::Serialize for SuspendedBy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_stored())
    }
}

impl<'de> serde::Deserialize<'de> for SuspendedBy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(SuspendedBy::from_stored(&text))
    }
}

/// Who a run is requeued for: the same two causes as a suspension, stored
/// the same way.
pub type RequeuedBy = SuspendedBy;

/// Why a run is being stopped, which decides where it goes once its
/// processes are gone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "intent", rename_all = "kebab-case")]
pub enum StopIntent {
    /// For good: ends in [`Phase::Killed`].
    Stop { reason: StopReason },
    /// The active deadline passed: the attempt fails with [`FailReason::Timeout`].
    Timeout,
    /// Preempted by requeue, or requeued by hand: back to
    /// [`Phase::Pending`], same attempt.
    Requeue { by: RequeuedBy },
    /// Out of memory: the OOM policy decides at exit (requeue or fail).
    Oom,
}

/// Why a run was stopped for good.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "stop", rename_all = "kebab-case")]
pub enum StopReason {
    /// Its job file, or the job in it, is gone.
    JobRemoved,
    /// The job changed in a way that needs a fresh run.
    JobChanged,
    /// A newer run of a `concurrency: replace` job took its place.
    Replaced { by: RunId },
    /// Someone asked (CLI, API).
    Requested { by: String },
    /// Its memory notifications could not be set up, so a memory limit
    /// would go unhandled (never grown, never reported).
    Unwatched { detail: String },
    /// A cluster run this node had frozen while it could not reach the
    /// cluster was bound elsewhere meanwhile: this copy is killed without
    /// running again.
    Superseded { cluster_run: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lists_every_phase_once() {
        let by = RunId::new("x-1");
        let all = [
            Phase::Blocked { after: "extract succeeded".into() },
            Phase::Pending,
            Phase::Placed,
            Phase::Running { since: Timestamp::EPOCH },
            Phase::Suspended { by: SuspendedBy::Run(by), frozen: false, oom_pending: false },
            Phase::OomPaused { frozen: false },
            Phase::Stopping {
                intent: StopIntent::Timeout,
                deadline: Timestamp::EPOCH,
                escalated: false,
            },
            Phase::BackoffWaiting { until: Timestamp::EPOCH, after: None },
            Phase::Succeeded,
            Phase::Failed { reason: FailReason::Timeout },
            Phase::Killed { reason: StopReason::JobRemoved },
        ];
        let names: Vec<_> = all.iter().map(Phase::name).collect();
        assert_eq!(names, Phase::NAMES);
        let terminal: Vec<_> = all.iter().filter(|p| p.is_terminal()).map(Phase::name).collect();
        assert_eq!(terminal, ["succeeded", "failed", "killed"]);
    }

    #[test]
    fn suspended_by_reads_and_writes_the_stored_strings() {
        let by_run = Phase::Suspended {
            by: SuspendedBy::Run(RunId::new("urgent-3")),
            frozen: true,
            oom_pending: false,
        };
        let text = serde_json::to_string(&by_run).unwrap();
        // As written before there was a type for it: the run id itself.
        assert_eq!(
            text,
            r#"{"phase":"suspended","by":"urgent-3","frozen":true,"oom_pending":false}"#
        );
        assert_eq!(serde_json::from_str::<Phase>(&text).unwrap(), by_run);

        let by_hand =
            Phase::Suspended { by: SuspendedBy::Operator, frozen: false, oom_pending: true };
        let text = serde_json::to_string(&by_hand).unwrap();
        assert_eq!(
            text,
            r#"{"phase":"suspended","by":"operator","frozen":false,"oom_pending":true}"#
        );
        // A freeze by hand as older agents stored it: a run id "operator".
        let older = r#"{"phase":"suspended","by":"operator","frozen":false,"oom_pending":true}"#;
        assert_eq!(serde_json::from_str::<Phase>(older).unwrap(), by_hand);
        assert_eq!(SuspendedBy::Operator.to_string(), "operator");
        assert_eq!(SuspendedBy::Run(RunId::new("urgent-3")).to_string(), "urgent-3");

        let by_pressure =
            Phase::Suspended { by: SuspendedBy::Pressure, frozen: true, oom_pending: false };
        let text = serde_json::to_string(&by_pressure).unwrap();
        assert_eq!(
            text,
            r#"{"phase":"suspended","by":"memory-pressure","frozen":true,"oom_pending":false}"#
        );
        assert_eq!(serde_json::from_str::<Phase>(&text).unwrap(), by_pressure);
    }

    #[test]
    fn states_stored_before_finishing_existed_still_read() {
        let now = Timestamp::from_millis(5);
        let mut stored = serde_json::to_value(RunState::new(None, now)).unwrap();
        stored.as_object_mut().unwrap().remove("finishing");
        stored.as_object_mut().unwrap().remove("timeout_signal_sent");
        let read: RunState = serde_json::from_value(stored).unwrap();
        assert_eq!(read, RunState::new(None, now));
        assert!(!read.finishing);
    }

    #[test]
    fn a_finishing_run_has_no_restart_and_no_oom_requeue() {
        let policy = Policy {
            restart: crate::scheduler::RestartPolicy {
                on: RestartOn::Always,
                attempts: 3,
                ..Default::default()
            },
            oom: OomPolicy::Requeue { factor: crate::vocab::Factor::ONE, cap: None, max: 2 },
            ..Policy::default()
        };
        let mut state = RunState::new(None, Timestamp::EPOCH);
        assert_eq!(*state.policy_in_force(&policy), policy);
        state.finishing = true;
        let narrowed = state.policy_in_force(&policy);
        assert_eq!(narrowed.restart.on, RestartOn::Never);
        assert_eq!(narrowed.oom, OomPolicy::Fail);
        let grow =
            Policy { oom: OomPolicy::Grow { step: Bytes(1), ceiling: Bytes(2) }, ..policy.clone() };
        assert_eq!(state.policy_in_force(&grow).oom, grow.oom, "growing in place stays");
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::JobRemoved => f.write_str("job removed"),
            StopReason::JobChanged => f.write_str("job changed"),
            StopReason::Replaced { by } => write!(f, "replaced by {by}"),
            StopReason::Requested { by } => write!(f, "stop requested by {by}"),
            StopReason::Unwatched { detail } => {
                write!(f, "its memory notifications could not be set up: {detail}")
            }
            StopReason::Superseded { cluster_run } => {
                write!(f, "superseded: run {cluster_run} rebound elsewhere")
            }
        }
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "failure", rename_all = "kebab-case")]
pub enum FailReason {
    /// Non-zero exit code or death by signal.
    Exit {
        status: ExitStatus,
    },
    Timeout,
    /// Out of memory and the OOM policy had nothing left to try.
    Oom,
    LaunchFailed {
        detail: String,
    },
    /// The process vanished without a recorded exit status.
    Lost {
        detail: String,
    },
    /// A job it comes after can no longer end as asked (`after:`): its run
    /// ended the other way, or the job was removed. The run never started.
    Dependency {
        detail: String,
    },
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::Exit { status } => write!(f, "{status}"),
            FailReason::Timeout => f.write_str("active deadline exceeded"),
            FailReason::Oom => f.write_str("out of memory"),
            FailReason::LaunchFailed { detail } => write!(f, "launch failed: {detail}"),
            FailReason::Lost { detail } => write!(f, "process lost: {detail}"),
            FailReason::Dependency { detail } => write!(f, "dependency failed: {detail}"),
        }
    }
}

/// How a run ended for good, for the store and metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    Succeeded,
    Failed { reason: FailReason },
    Killed { reason: StopReason },
}
