//! The per-job rules the state machine applies: restarts, OOM handling,
//! preemption, timeout and stop grace.
//!
//! These are the scheduler's own inputs, compiled from a job spec by the
//! shell; the state machine never sees YAML.

use std::time::Duration;

use super::event::ExitStatus;
use super::state::FailReason;
use crate::spec::{ExitCodes, JobSignal, RestartOn, TimeoutSignal};
use crate::vocab::Bytes;
use crate::vocab::Factor;

/// Everything about a job that the run state machine decides with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    pub restart: RestartPolicy,
    pub oom: OomPolicy,
    pub preemption: PreemptionMode,
    /// Longest *running* time of one attempt. Time spent frozen (suspended
    /// for preemption, or paused at the memory limit) does not count: a job
    /// must not fail its deadline because the agent chose to freeze it.
    pub timeout: Option<Duration>,
    /// Between the stop signal and killing every process of the run.
    pub stop_grace: Duration,
    /// The first signal of every stop (kill, removal, requeue, timeout).
    /// Records written before this field existed read as SIGTERM, which
    /// every stop sent then.
    #[serde(default)]
    pub stop_signal: JobSignal,
    /// Sent once per attempt, `before` ahead of `timeout` in running time.
    #[serde(default)]
    pub timeout_signal: Option<TimeoutSignal>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            restart: RestartPolicy::default(),
            oom: OomPolicy::Fail,
            preemption: PreemptionMode::Never,
            timeout: None,
            stop_grace: Duration::from_secs(10),
            stop_signal: JobSignal::SIGTERM,
            timeout_signal: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RestartPolicy {
    pub on: RestartOn,
    /// Most restarts of one run (not counting the first attempt).
    pub attempts: u32,
    /// Wait before the first restart; doubles each time.
    pub backoff_min: Duration,
    /// Longest wait.
    pub backoff_max: Duration,
    /// If not empty, a failure restarts only if it is an exit with one of
    /// these codes. Records from before read as empty (no filter).
    #[serde(default)]
    pub on_exit_codes: ExitCodes,
    /// An exit with one of these codes never restarts.
    #[serde(default)]
    pub never_on_exit_codes: ExitCodes,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            on: RestartOn::Never,
            attempts: 0,
            backoff_min: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
            on_exit_codes: ExitCodes::default(),
            never_on_exit_codes: ExitCodes::default(),
        }
    }
}

/// Why an ending is not restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRestart {
    /// The policy does not restart this kind of ending at all (`on: never`;
    /// a success under anything but `on: always`): nothing to explain.
    NotWanted,
    /// `never_on_exit_codes` lists the code; it wins over every `on`.
    NeverOnExitCode(i32),
    /// `on_exit_codes` is set and does not list the code.
    NotInOnExitCodes(i32),
    /// `on_exit_codes` is set and the attempt did not end with an exit code
    /// (a signal, a timeout, out of memory, a failed launch, a lost process).
    NotAnExitCode,
    /// `on: oom` and the attempt did not end out of memory.
    OnlyOom,
}

impl std::fmt::Display for NoRestart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoRestart::NotWanted => f.write_str("the restart policy does not restart it"),
            NoRestart::NeverOnExitCode(code) => {
                write!(f, "exit code {code} is in never_on_exit_codes")
            }
            NoRestart::NotInOnExitCodes(code) => {
                write!(f, "exit code {code} is not in on_exit_codes")
            }
            NoRestart::NotAnExitCode => f.write_str(
                "it did not end with an exit code, and on_exit_codes restarts only those",
            ),
            NoRestart::OnlyOom => f.write_str("restart.on is oom and it did not run out of memory"),
        }
    }
}

impl RestartPolicy {
    /// Whether an attempt that ended with `failure` (`None`: it succeeded)
    /// is wanted again, attempts left aside. The rules, in order:
    ///
    /// 1. a success restarts only under `on: always`;
    /// 2. `on: never` restarts nothing;
    /// 3. an exit code in `never_on_exit_codes` never restarts;
    /// 4. `on: oom` restarts out-of-memory endings only;
    /// 5. with `on_exit_codes` set, only exits with a listed code restart;
    /// 6. otherwise (`failure`, `always`) every failure restarts.
    ///
    /// An out-of-memory ending reaches this only once the OOM policy (grow,
    /// requeue) has nothing left to try.
    pub fn decide(&self, failure: Option<&FailReason>) -> Result<(), NoRestart> {
        let Some(failure) = failure else {
            return if self.on == RestartOn::Always { Ok(()) } else { Err(NoRestart::NotWanted) };
        };
        if self.on == RestartOn::Never {
            return Err(NoRestart::NotWanted);
        }
        match failure {
            FailReason::Exit { status: ExitStatus::Code(code) } => {
                if self.never_on_exit_codes.contains(*code) {
                    Err(NoRestart::NeverOnExitCode(*code))
                } else if self.on == RestartOn::Oom {
                    Err(NoRestart::OnlyOom)
                } else if !self.on_exit_codes.is_empty() && !self.on_exit_codes.contains(*code) {
                    Err(NoRestart::NotInOnExitCodes(*code))
                } else {
                    Ok(())
                }
            }
            FailReason::Oom if self.on == RestartOn::Oom => Ok(()),
            _ if self.on == RestartOn::Oom => Err(NoRestart::OnlyOom),
            _ if !self.on_exit_codes.is_empty() => Err(NoRestart::NotAnExitCode),
            _ => Ok(()),
        }
    }
}

/// What to do when a run reaches its hard memory limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OomPolicy {
    /// The attempt fails; the restart policy decides what follows.
    #[default]
    Fail,
    /// Kill the run and queue it again with its limit multiplied by `factor`
    /// (never above `cap`), at most `max` times; then fail.
    Requeue { factor: Factor, cap: Option<Bytes>, max: u32 },
    /// Raise the limit by `step` (never above `ceiling`) and thaw the run in
    /// place. If the kernel already killed a process, the run is queued again
    /// with the grown limit instead. At the ceiling, fail.
    Grow { step: Bytes, ceiling: Bytes },
}

impl OomPolicy {
    /// The hard limit after one growth step from `limit`, if the policy
    /// grows and the step is a growth at all (not at the ceiling already).
    /// The one rule for growing: in place at the limit, and for the next
    /// attempt after an OOM kill.
    pub fn grown_limit(&self, limit: Option<Bytes>) -> Option<Bytes> {
        let OomPolicy::Grow { step, ceiling } = *self else { return None };
        let limit = limit?;
        let grown = Bytes(limit.get().saturating_add(step.get())).min(ceiling);
        (grown > limit).then_some(grown)
    }
}

/// What may be done to a run to make room for a higher-priority one.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum PreemptionMode {
    /// Freeze it and thaw it later; frees its CPUs, not its memory.
    Suspend,
    /// Stop it and queue it to start again from the beginning.
    Requeue,
    #[default]
    Never,
}

impl std::fmt::Display for PreemptionMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PreemptionMode::Suspend => "suspend",
            PreemptionMode::Requeue => "requeue",
            PreemptionMode::Never => "never",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_table() {
        let policy = |on, on_codes: &[u8], never: &[u8]| RestartPolicy {
            on,
            attempts: 3,
            on_exit_codes: ExitCodes::of(on_codes.iter().copied()),
            never_on_exit_codes: ExitCodes::of(never.iter().copied()),
            ..RestartPolicy::default()
        };
        let code = |c| Some(FailReason::Exit { status: ExitStatus::Code(c) });
        let signal = Some(FailReason::Exit { status: ExitStatus::Signal(9) });
        let oom = Some(FailReason::Oom);
        let timeout = Some(FailReason::Timeout);
        let decide = |p: &RestartPolicy, f: &Option<FailReason>| p.decide(f.as_ref());
        use NoRestart as N;
        use RestartOn as On;

        let failure = policy(On::Failure, &[], &[2]);
        assert_eq!(decide(&failure, &None), Err(N::NotWanted));
        assert_eq!(decide(&failure, &code(1)), Ok(()));
        assert_eq!(decide(&failure, &code(2)), Err(N::NeverOnExitCode(2)));
        assert_eq!(decide(&failure, &signal), Ok(()));
        assert_eq!(decide(&failure, &oom), Ok(()));
        assert_eq!(decide(&failure, &timeout), Ok(()));

        let listed = policy(On::Failure, &[1, 75], &[]);
        assert_eq!(decide(&listed, &code(75)), Ok(()));
        assert_eq!(decide(&listed, &code(3)), Err(N::NotInOnExitCodes(3)));
        assert_eq!(decide(&listed, &signal), Err(N::NotAnExitCode));
        assert_eq!(decide(&listed, &oom), Err(N::NotAnExitCode));
        assert_eq!(decide(&listed, &timeout), Err(N::NotAnExitCode));

        let always = policy(On::Always, &[75], &[2]);
        assert_eq!(decide(&always, &None), Ok(()));
        assert_eq!(decide(&always, &code(2)), Err(N::NeverOnExitCode(2)));
        assert_eq!(decide(&always, &code(75)), Ok(()));
        assert_eq!(decide(&always, &code(1)), Err(N::NotInOnExitCodes(1)));

        let on_oom = policy(On::Oom, &[], &[]);
        assert_eq!(decide(&on_oom, &oom), Ok(()));
        assert_eq!(decide(&on_oom, &code(1)), Err(N::OnlyOom));
        assert_eq!(decide(&on_oom, &timeout), Err(N::OnlyOom));
        assert_eq!(decide(&on_oom, &None), Err(N::NotWanted));

        let never = policy(On::Never, &[], &[]);
        for f in [None, code(1), signal, oom, timeout] {
            assert_eq!(decide(&never, &f), Err(N::NotWanted));
        }
        assert_eq!(N::NeverOnExitCode(2).to_string(), "exit code 2 is in never_on_exit_codes");
    }

    #[test]
    fn policies_stored_before_the_new_fields_still_read() {
        let mut stored = serde_json::to_value(Policy::default()).unwrap();
        let object = stored.as_object_mut().unwrap();
        object.remove("stop_signal");
        object.remove("timeout_signal");
        let restart = object.get_mut("restart").unwrap().as_object_mut().unwrap();
        restart.remove("on_exit_codes");
        restart.remove("never_on_exit_codes");
        let read: Policy = serde_json::from_value(stored).unwrap();
        assert_eq!(read, Policy::default());
        assert_eq!(read.stop_signal, JobSignal::SIGTERM);
    }

    #[test]
    fn growth_is_one_step_up_to_the_ceiling() {
        let grow = OomPolicy::Grow { step: Bytes::from_mib(64), ceiling: Bytes::from_mib(160) };
        let mib = |n| Some(Bytes::from_mib(n));
        assert_eq!(grow.grown_limit(mib(64)), mib(128));
        assert_eq!(grow.grown_limit(mib(128)), mib(160), "capped at the ceiling");
        assert_eq!(grow.grown_limit(mib(160)), None, "at the ceiling: no growth");
        assert_eq!(grow.grown_limit(mib(200)), None, "above it: never lowered");
        assert_eq!(grow.grown_limit(None), None, "no limit: nothing to grow");
        assert_eq!(
            OomPolicy::Grow { step: Bytes(1), ceiling: Bytes(u64::MAX) }
                .grown_limit(Some(Bytes(u64::MAX))),
            None
        );
        assert_eq!(OomPolicy::Fail.grown_limit(mib(64)), None);
        let requeue =
            OomPolicy::Requeue { factor: Factor::from_hundredths(200), cap: None, max: 1 };
        assert_eq!(requeue.grown_limit(mib(64)), None);
    }
}
