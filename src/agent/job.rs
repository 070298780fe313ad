//! What the agent derives from a job spec for its runs beyond the
//! scheduler's [`RunMeta`]: the placement [`Request`], and the version record
//! (fingerprint and meta) kept with each run in the store.
//!
//! Pure.

use crate::placement::Request;
use crate::scheduler::cron::jitter::Fnv1a;
pub use crate::scheduler::RunMeta;
use crate::scheduler::{Phase, StopReason};
use crate::spec::{History, JobSpec};
use crate::store::{JobVersion, Retention, RunRecord};
use crate::vocab::Bytes;
use crate::vocab::RunId;

/// What run `owner` of `spec` asks the allocator for: what `corral run`
/// asks for it, with `memory` (the run's current hard limit, which OOM
/// handling may have raised) charged instead of the spec's.
pub fn request(spec: &JobSpec, owner: &RunId, memory: Option<Bytes>) -> Request {
    Request { memory, ..crate::launch::request(spec, owner) }
}

/// A fingerprint equal for equal specs, and equal across upgrades of corral
/// for a file that did not change: "this version already ran" is read from
/// it, so a one-shot job whose fingerprint changed with the upgrade would run
/// again.
fn fingerprint(spec: &JobSpec) -> String {
    // FNV-1a over the spec's debug rendering, which lists every field, maps
    // and sets in key order, without the fields the model gained since
    // fingerprints were first stored while they keep their defaults.
    let mut hash = Fnv1a::new();
    hash.write(without_added_defaults(format!("{spec:?}")).as_bytes());
    format!("{:016x}", hash.finish())
}

/// Fields added to the job model after fingerprints were first stored, as
/// the debug rendering shows them at their defaults, each with the text
/// that follows it there (so that a string in the spec that happens to hold
/// the same words is left alone). A field added to `JobSpec` or a struct in
/// it goes here too: `fingerprints_of_unchanged_files_survive_upgrades`
/// fails until it does.
const ADDED_AT_DEFAULT: &[(&str, &str)] = &[
    // `on_node_loss`, the last field (cluster jobs); first here, so that
    // `nodes` below is then the last field again.
    (", on_node_loss: None", " }"),
    // `restart.on_exit_codes` and `restart.never_on_exit_codes`.
    (
        ", on_exit_codes: ExitCodes([0, 0, 0, 0]), never_on_exit_codes: ExitCodes([0, 0, 0, 0])",
        " }, timeout: ",
    ),
    // `stop_signal` and `timeout_signal`.
    (", stop_signal: None, timeout_signal: None", ", isolation: Isolation { "),
    // `nodes`, the last field (node constraints, for cluster jobs).
    (", nodes: NodeConstraints { names: [], selector: {}, spread: false }", " }"),
    // `after` and `array`, the last fields before it.
    (", after: [], array: None", " }"),
];

fn without_added_defaults(mut text: String) -> String {
    for (added, next) in ADDED_AT_DEFAULT {
        let whole = format!("{added}{next}");
        if let Some(at) = text.rfind(&whole) {
            text.replace_range(at..at + added.len(), "");
        }
    }
    text
}

/// The version record of `spec` as run with `meta`: its fingerprint, and the
/// meta a restarted agent manages the run with before the job files are read.
pub fn version(meta: &RunMeta, spec: &JobSpec) -> JobVersion {
    JobVersion {
        fingerprint: fingerprint(spec),
        meta: serde_json::to_string(meta).expect("run meta serializes"),
    }
}

/// The meta a version record was written with.
pub fn meta_of(version: &JobVersion) -> Option<RunMeta> {
    serde_json::from_str(&version.meta).ok()
}

/// Whether `latest`, the newest run of a job, is the run of `version`: a
/// version with its run is not started again. A run stopped because its file
/// was removed does not count: the file coming back asks for the job again.
pub fn has_run_of(latest: &RunRecord, version: &JobVersion) -> bool {
    let removed = matches!(
        &latest.state.phase,
        Phase::Killed { reason: StopReason::JobRemoved } | Phase::Stopping { .. }
    );
    !removed && latest.version.as_ref().is_some_and(|v| v.fingerprint == version.fingerprint)
}

/// How many of a job's ended runs the store keeps, once a run of `spec` ends
/// (`recurring`: the run was started by the job's schedule); `None`: prune
/// nothing now.
pub fn retention(spec: Option<&JobSpec>, recurring: bool) -> Option<Retention> {
    match (spec.map(|s| s.recurrence.as_ref()), recurring) {
        // Exactly as the job says: a recurring job's runs are asked for by
        // its schedule, not by "has this version run".
        (Some(Some(r)), _) => {
            Some(Retention { successful: r.history.successful, failed: r.history.failed })
        }
        // A recurring job's history is known once its file is read again
        // after a restart; its next run's end prunes.
        (None, true) => None,
        // At least one: "this version already has its run" reads it. An
        // array keeps every index of its latest runs.
        _ => {
            let history = History::default();
            let least = spec
                .and_then(|s| s.array.as_ref())
                .map_or(1, |a| u32::try_from(a.count()).unwrap_or(u32::MAX));
            Some(Retention {
                successful: history.successful.max(least),
                failed: history.failed.max(least),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::placement::CpuDemand;
    use crate::spec;

    fn spec(text: &str) -> JobSpec {
        spec::compile_str(Path::new("t.yaml"), text).unwrap().remove(0).spec
    }

    /// The fingerprints corral 0.1.0 stored for these files before the job
    /// model gained `after`, `array`, the exit code rules and the signals.
    #[test]
    fn fingerprints_of_unchanged_files_survive_upgrades() {
        let minimal = spec("name: a\ncommand: [/bin/true]\n");
        let full = spec(
            "name: nightly\ncommand: [/bin/sh, -c, 'echo hi']\nenv: {A: '1'}\npriority: 70\n\
             preemption: suspend\ntimeout: 1h\nrestart: {on: failure, attempts: 2, backoff: 5s..1m}\n\
             resources: {cpus: 1, memory: {hard: 256Mi, soft: 128Mi}}\n\
             oom: {action: grow, grow_to: 1Gi}\n",
        );
        let stored = [(&minimal, "b3b13365f73b29b3"), (&full, "4ec813172363a594")];
        for (spec, was) in stored {
            assert_eq!(
                fingerprint(spec),
                was,
                "the fingerprint of an unchanged file moved: a field added to the job model \
                 must be listed in ADDED_AT_DEFAULT with its default rendering\n{spec:?}"
            );
        }
        // A new field set away from its default is a new version.
        let signalled = spec("name: a\ncommand: [/bin/true]\nstop_signal: SIGINT\n");
        let waiting = spec("name: a\ncommand: [/bin/true]\nafter: [b]\n");
        let codes =
            spec("name: a\ncommand: [/bin/true]\nrestart: {on: failure, on_exit_codes: [75]}\n");
        let fingerprints = [&minimal, &signalled, &waiting, &codes].map(fingerprint);
        let distinct: std::collections::BTreeSet<_> = fingerprints.iter().collect();
        assert_eq!(distinct.len(), 4, "{fingerprints:?}");
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
        let version = version(&meta, &s);
        assert_eq!(meta_of(&version), Some(meta.clone()));
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

    #[test]
    fn retention_is_the_jobs_own_for_recurring_runs_and_one_of_each_at_least_otherwise() {
        let recurring = spec(
            "name: a\ncommand: [/bin/true]\nschedule: \"0 * * * *\"\nhistory: {successful: 3, failed: 0}\n",
        );
        assert_eq!(retention(Some(&recurring), true), Some(Retention { successful: 3, failed: 0 }));
        // Its file not read since a restart: its next run's end prunes.
        assert_eq!(retention(None, true), None);
        let default = History::default();
        let keep = Some(Retention {
            successful: default.successful.max(1),
            failed: default.failed.max(1),
        });
        let one_shot = spec("name: a\ncommand: [/bin/true]\n");
        assert_eq!(retention(Some(&one_shot), false), keep);
        assert_eq!(retention(None, false), keep);
    }
}
