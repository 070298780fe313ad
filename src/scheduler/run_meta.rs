//! What the scheduler derives from a job spec for its runs: the state
//! machine's [`Policy`], and the facts a run is managed with ([`RunMeta`]),
//! which the store keeps with the run so that a restarted agent has them
//! before it reads the job files again.
//!
//! Pure.

use std::time::Duration;

use crate::spec::{self, JobSpec, OnRemoval, Preemption, Priority};

use super::policy::{OomPolicy, Policy, PreemptionMode, RestartPolicy};

/// The state machine's rules for runs of `spec`; `default_grace` where the
/// job sets no `stop_grace`.
pub fn policy(spec: &JobSpec, default_grace: Duration) -> Policy {
    let restart = RestartPolicy {
        on: spec.restart.on,
        attempts: spec.restart.attempts,
        backoff_min: spec.restart.backoff.min,
        backoff_max: spec.restart.backoff.max,
        on_exit_codes: spec.restart.on_exit_codes,
        never_on_exit_codes: spec.restart.never_on_exit_codes,
    };
    let oom = match spec.oom {
        spec::OomPolicy::Fail => OomPolicy::Fail,
        spec::OomPolicy::Requeue { factor, max } => OomPolicy::Requeue { factor, cap: None, max },
        spec::OomPolicy::Grow { to, step } => OomPolicy::Grow { step, ceiling: to },
    };
    Policy {
        restart,
        oom,
        preemption: preemption_mode(spec.preemption),
        timeout: spec.timeout,
        stop_grace: spec.stop_grace.unwrap_or(default_grace),
        stop_signal: spec.stop_signal.unwrap_or_default(),
        timeout_signal: spec.timeout_signal,
    }
}

pub fn preemption_mode(p: Preemption) -> PreemptionMode {
    match p {
        Preemption::Suspend => PreemptionMode::Suspend,
        Preemption::Requeue => PreemptionMode::Requeue,
        Preemption::Never => PreemptionMode::Never,
    }
}

/// What a run needs to be managed before the job files are read again after
/// a restart, or after its job file is gone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunMeta {
    pub priority: u16,
    /// Let the run finish when its job is removed.
    pub finish_on_removal: bool,
    pub policy: Policy,
}

impl RunMeta {
    pub fn of(spec: &JobSpec, default_grace: Duration) -> RunMeta {
        RunMeta {
            priority: spec.priority.get(),
            finish_on_removal: spec.on_removal == OnRemoval::Finish,
            policy: policy(spec, default_grace),
        }
    }

    pub fn priority(&self) -> Priority {
        Priority::new(self.priority).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::vocab::Bytes;

    fn spec(text: &str) -> JobSpec {
        spec::compile_str(Path::new("t.yaml"), text).unwrap().remove(0).spec
    }

    #[test]
    fn policy_maps_every_part() {
        let s = spec(
            "name: a\ncommand: [/bin/true]\npreemption: suspend\ntimeout: 1m\nstop_grace: 3s\n\
             restart: {on: failure, attempts: 2, backoff: 1s..4s}\n\
             resources: {memory: {hard: 64Mi}}\noom: {action: grow, grow_to: 256Mi, grow_step: 64Mi}\n",
        );
        let p = policy(&s, Duration::from_secs(30));
        assert_eq!(p.preemption, PreemptionMode::Suspend);
        assert_eq!(p.timeout, Some(Duration::from_secs(60)));
        assert_eq!(p.stop_grace, Duration::from_secs(3));
        assert_eq!(p.restart.on, spec::RestartOn::Failure);
        assert_eq!(p.restart.attempts, 2);
        assert_eq!(p.restart.backoff_max, Duration::from_secs(4));
        assert_eq!(
            p.oom,
            OomPolicy::Grow { step: Bytes::from_mib(64), ceiling: Bytes::from_mib(256) }
        );
        let d = policy(&spec("name: a\ncommand: [/bin/true]\n"), Duration::from_secs(30));
        assert_eq!(d.stop_grace, Duration::from_secs(30));
        assert_eq!(d.preemption, PreemptionMode::Never);
        assert_eq!(d.stop_signal, spec::JobSignal::SIGTERM);
        assert_eq!(d.timeout_signal, None);
    }

    #[test]
    fn policy_maps_retries_and_signals() {
        let s = spec(
            "name: a\ncommand: [/bin/true]\ntimeout: 1m\nstop_signal: INT\n\
             timeout_signal: {signal: SIGUSR1, before: 10s}\n\
             restart: {on: failure, on_exit_codes: [75], never_on_exit_codes: [2]}\n",
        );
        let p = policy(&s, Duration::from_secs(30));
        assert_eq!(p.stop_signal.number(), libc::SIGINT);
        let t = p.timeout_signal.unwrap();
        assert_eq!((t.signal.number(), t.before), (libc::SIGUSR1, Duration::from_secs(10)));
        assert_eq!(p.restart.on_exit_codes, spec::restart::ExitCodes::of([75]));
        assert_eq!(p.restart.never_on_exit_codes, spec::restart::ExitCodes::of([2]));
    }

    #[test]
    fn meta_carries_priority_removal_and_policy() {
        let s = spec("name: a\ncommand: [/bin/true]\npriority: 70\non_removal: finish\n");
        let meta = RunMeta::of(&s, Duration::from_secs(5));
        assert!(meta.finish_on_removal);
        assert_eq!(meta.priority().get(), 70);
        assert_eq!(meta.policy, policy(&s, Duration::from_secs(5)));
        let plain = RunMeta::of(&spec("name: a\ncommand: [/bin/true]\n"), Duration::from_secs(5));
        assert!(!plain.finish_on_removal);
    }
}
