//! What the agent derives from a job spec for its runs: the state machine's
//! [`Policy`], the placement [`Request`], the version fingerprint, and the
//! facts kept with each run in the store ([`RunMeta`]).
//!
//! Pure.

use std::time::Duration;

use crate::placement::Request;
use crate::scheduler::cron::jitter::Fnv1a;
use crate::scheduler::{OomPolicy, Policy, PreemptionMode, RestartPolicy};
use crate::spec::RestartOn;
use crate::spec::{self, JobSpec, OnRemoval, Preemption, Priority};
use crate::store::JobVersion;
use crate::vocab::Bytes;
use crate::vocab::Factor;
use crate::vocab::RunId;

/// The state machine's rules for runs of `spec`; `default_grace` where the
/// job sets no `stop_grace`.
pub fn policy(spec: &JobSpec, default_grace: Duration) -> Policy {
    let restart = RestartPolicy {
        on: match spec.restart.on {
            spec::RestartOn::Never => RestartOn::Never,
            spec::RestartOn::Failure => RestartOn::Failure,
            spec::RestartOn::Always => RestartOn::Always,
        },
        attempts: spec.restart.attempts,
        backoff_min: spec.restart.backoff.min,
        backoff_max: spec.restart.backoff.max,
    };
    let oom = match spec.oom {
        spec::OomPolicy::Fail => OomPolicy::Fail,
        spec::OomPolicy::Requeue { factor, max } => OomPolicy::Requeue {
            factor: Factor::from_hundredths(factor.hundredths()),
            cap: None,
            max,
        },
        spec::OomPolicy::Grow { to, step } => OomPolicy::Grow { step, ceiling: to },
    };
    Policy {
        restart,
        oom,
        preemption: preemption_mode(spec.preemption),
        timeout: spec.timeout,
        stop_grace: spec.stop_grace.unwrap_or(default_grace),
    }
}

pub fn preemption_mode(p: Preemption) -> PreemptionMode {
    match p {
        Preemption::Suspend => PreemptionMode::Suspend,
        Preemption::Requeue => PreemptionMode::Requeue,
        Preemption::Never => PreemptionMode::Never,
    }
}

/// What run `owner` of `spec` asks the allocator for: what `corral run`
/// asks for it, with `memory` (the run's current hard limit, which OOM
/// handling may have raised) charged instead of the spec's.
pub fn request(spec: &JobSpec, owner: &RunId, memory: Option<Bytes>) -> Request {
    Request { memory, ..crate::launch::request(spec, owner) }
}

/// A fingerprint equal for equal specs (within one build of corral, which is
/// all "this version already ran" needs across agent restarts: an upgrade that
/// changes the spec model may treat unchanged files as new versions once).
fn fingerprint(spec: &JobSpec) -> String {
    // FNV-1a over the spec's full debug rendering, which lists every field,
    // maps and sets in key order.
    let mut hash = Fnv1a::new();
    hash.write(format!("{spec:?}").as_bytes());
    format!("{:016x}", hash.finish())
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

    pub fn version(&self, spec: &JobSpec) -> JobVersion {
        JobVersion {
            fingerprint: fingerprint(spec),
            meta: serde_json::to_string(self).expect("run meta serializes"),
        }
    }

    pub fn from_version(version: &JobVersion) -> Option<RunMeta> {
        serde_json::from_str(&version.meta).ok()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::placement::{self, CpuDemand};

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
        assert_eq!(p.restart.on, RestartOn::Failure);
        assert_eq!(p.restart.attempts, 2);
        assert_eq!(p.restart.backoff_max, Duration::from_secs(4));
        assert_eq!(
            p.oom,
            OomPolicy::Grow { step: Bytes::from_mib(64), ceiling: Bytes::from_mib(256) }
        );
        let d = policy(&spec("name: a\ncommand: [/bin/true]\n"), Duration::from_secs(30));
        assert_eq!(d.stop_grace, Duration::from_secs(30));
        assert_eq!(d.preemption, PreemptionMode::Never);
    }

    #[test]
    fn fingerprints_follow_spec_equality() {
        let a = spec("name: a\ncommand: [/bin/true]\n");
        let a_again = spec("# comment\nname: a\ncommand: [\"/bin/true\"]\n");
        let b = spec("name: a\ncommand: [/bin/false]\n");
        assert_eq!(fingerprint(&a), fingerprint(&a_again));
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }

    #[test]
    fn meta_round_trips_through_the_store_label() {
        let s = spec("name: a\ncommand: [/bin/true]\npriority: 70\non_removal: finish\n");
        let meta = RunMeta::of(&s, Duration::from_secs(5));
        let version = meta.version(&s);
        assert_eq!(RunMeta::from_version(&version), Some(meta.clone()));
        assert!(meta.finish_on_removal);
        assert_eq!(meta.priority().get(), 70);
    }

    #[test]
    fn requests_carry_cpus_numa_and_memory() {
        let s = spec("name: a\ncommand: [/bin/true]\nresources: {cpus: 2, numa: single-node}\n");
        let r = request(&s, &RunId::new("a-1"), Some(Bytes::from_mib(5)));
        assert_eq!(r.cpus, CpuDemand::Exclusive(2));
        assert_eq!(r.numa, crate::vocab::NumaPolicy::SingleNode);
        assert_eq!(r.memory, Some(Bytes::from_mib(5)));
        let shared = request(&spec("name: a\ncommand: [/bin/true]\n"), &RunId::new("a-1"), None);
        assert_eq!(shared.cpus, CpuDemand::Shared);
        // The run's limit is charged, not the spec's.
        let grown = spec("name: a\ncommand: [/bin/true]\nresources: {memory: {hard: 64Mi}}\n");
        let r = request(&grown, &RunId::new("a-1"), Some(Bytes::from_mib(128)));
        assert_eq!(r.memory, Some(Bytes::from_mib(128)));
    }
}
