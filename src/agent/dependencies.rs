//! Blocked runs (`after:`): judged against the latest runs of the jobs they
//! come after, released or failed through their state machine.
//!
//! The rule is [`crate::scheduler::dependency::judge`]; this file gathers its
//! inputs (the store's newest run of each prerequisite, whether the job is in
//! force) and turns verdicts into orders. The run's own transition, stored
//! before anything acts on it, is what makes a release durable: a run
//! released before a `kill -9` is pending when the agent comes back, and one
//! still blocked is judged again.

use tracing::{debug, info};

use crate::scheduler::dependency::{judge, Latest, Verdict};
use crate::scheduler::{Event, Phase};
use crate::spec::{After, JobSpec};
use crate::store::RunStore;
use crate::vocab::{JobName, RunId};

use super::error::AgentError;
use super::orders::Order;
use super::reconcile::JobDirectory;
use super::runs::RunTable;

/// Every blocked run that comes after one of `jobs` (all blocked runs for `None`).
pub(super) fn blocked_on(runs: &RunTable, job: Option<&JobName>) -> Vec<RunId> {
    runs.iter()
        .filter(|(_, run)| matches!(run.state.phase, Phase::Blocked { .. }))
        .filter(|(_, run)| match (job, &run.spec) {
            (None, _) => true,
            (Some(job), Some(spec)) => spec.after.iter().any(|a| a.job == *job),
            // Re-adopted, its job not read yet: judged once it is.
            (Some(_), None) => false,
        })
        .map(|(id, _)| id.clone())
        .collect()
}

/// What becomes of blocked run `id` now.
pub(super) fn judge_run<S: RunStore>(
    runs: &RunTable,
    jobs: &JobDirectory,
    store: &S,
    id: &RunId,
) -> Result<Vec<Order>, AgentError> {
    let Some(run) = runs.get(id) else { return Ok(Vec::new()) };
    if !matches!(run.state.phase, Phase::Blocked { .. }) {
        return Ok(Vec::new());
    }
    // A run re-adopted after a restart knows its job once the directory is read.
    let Some(spec) = &run.spec else { return Ok(Vec::new()) };
    let mut prerequisites: Vec<(&After, Latest)> = Vec::with_capacity(spec.after.len());
    for after in &spec.after {
        prerequisites.push((after, latest(jobs, store, &after.job)?));
    }
    Ok(match judge(prerequisites) {
        Verdict::Release => {
            info!(parent: &run.span, "the jobs it comes after ended as asked: releasing it");
            vec![Order::Feed(id.clone(), Event::Released)]
        }
        Verdict::Fail(detail) => vec![Order::Feed(id.clone(), Event::DependencyFailed { detail })],
        Verdict::Wait(waiting) => {
            debug!(parent: &run.span, "still blocked: {}", waiting.join("; "));
            Vec::new()
        }
    })
}

/// Blocked runs that come after `job`, which is gone from the jobs
/// directory, while its latest run has not ended (or it has none): they
/// fail, as the run they wait for may never come. Those whose wait its
/// ended latest run settles are judged as usual.
pub(super) fn prerequisite_gone<S: RunStore>(
    runs: &RunTable,
    jobs: &JobDirectory,
    store: &S,
    job: &JobName,
) -> Result<Vec<Order>, AgentError> {
    let waiting = blocked_on(runs, Some(job));
    if waiting.is_empty() {
        return Ok(Vec::new());
    }
    if let Latest::Succeeded(_) | Latest::Unsuccessful(..) = latest(jobs, store, job)? {
        return Ok(Vec::new());
    }
    let detail = format!("job {job} was removed before its run ended as asked");
    Ok(waiting
        .into_iter()
        .map(|id| Order::Feed(id, Event::DependencyFailed { detail: detail.clone() }))
        .collect())
}

/// The verdict on pipeline step `spec` after run `ended` of `upstream`:
/// that run for `upstream`, the latest runs of its other prerequisites.
pub(super) fn judge_step<S: RunStore>(
    jobs: &JobDirectory,
    store: &S,
    spec: &JobSpec,
    upstream: &JobName,
    ended: Latest,
) -> Result<Verdict, AgentError> {
    let mut prerequisites: Vec<(&After, Latest)> = Vec::with_capacity(spec.after.len());
    for after in &spec.after {
        let latest =
            if after.job == *upstream { ended.clone() } else { latest(jobs, store, &after.job)? };
        prerequisites.push((after, latest));
    }
    Ok(judge(prerequisites))
}

/// How the latest run of `job` stands: the newest in the store, whatever
/// version of the job made it.
fn latest<S: RunStore>(
    jobs: &JobDirectory,
    store: &S,
    job: &JobName,
) -> Result<Latest, AgentError> {
    Ok(match store.runs_for_job(job, 1)?.into_iter().next() {
        Some(record) => Latest::of(record.id, &record.state.phase),
        None if jobs.get(job).is_some() => Latest::NoRun,
        None => Latest::NotLoaded,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::agent::runtime::Probe;
    use crate::agent::tests::{job, Bench};
    use crate::scheduler::ExitStatus;
    use crate::store::RunStore;
    use crate::vocab::Timestamp;

    #[tokio::test(start_paused = true)]
    async fn a_blocked_run_is_not_placed_until_released_and_then_starts_once() {
        let mut b = Bench::new();
        b.files(&[("a.yaml", &job("a", "")), ("b.yaml", &job("b", "after: [a]\n"))]).await;
        // Both CPUs are free, yet b waits for a.
        assert_eq!(b.fake.launched(), ["a-1"]);
        assert_eq!(b.phase("b-1"), "blocked");
        // Its job changes what it waits for: the run shows it and is judged by it.
        let ended = job("b", "after: [{job: a, when: ended}]\n");
        b.files(&[("b.yaml", &ended)]).await;
        let after = crate::scheduler::Phase::Blocked { after: "a ended".into() };
        assert_eq!(b.state("b-1").phase, after);
        b.fake.exit("a-1", 1);
        b.settle().await;
        assert_eq!(b.fake.launched(), ["a-1", "b-1"]);
        assert_eq!(b.phase("b-1"), "running");
        // The same files again: nothing more.
        b.files(&[("a.yaml", &job("a", "")), ("b.yaml", &ended)]).await;
        assert_eq!(b.fake.launched(), ["a-1", "b-1"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_mid_chain_judges_again_and_starts_nothing_twice() {
        let files = [
            ("a.yaml", job("a", "")),
            ("b.yaml", job("b", "after: [a]\n")),
            ("c.yaml", job("c", "after: [{job: b, when: ended}]\n")),
        ];
        let files: Vec<(&str, &str)> = files.iter().map(|(f, t)| (*f, t.as_str())).collect();
        let mut b = Bench::new();
        b.files(&files).await;
        b.fake.exit("a-1", 0);
        b.settle().await;
        assert_eq!(b.fake.launched(), ["a-1", "b-1"]);
        assert_eq!(b.phase("c-1"), "blocked");
        // The agent dies while b runs; b fails meanwhile.
        let launch = b.launch("b-1");
        let fake = Arc::clone(&b.fake);
        fake.set_probe(
            &launch.run_dir,
            Probe::Finished {
                launch: launch.clone(),
                status: ExitStatus::Code(1),
                at: Timestamp::EPOCH,
            },
        );
        fake.set_live(vec![(crate::vocab::RunId::new("b-1"), None)]);
        let mut b = b.restart();
        b.sup.recover().unwrap();
        // Re-adopted before its job is read: still blocked, not judged blind.
        assert_eq!(b.phase("c-1"), "blocked");
        b.files(&files).await;
        assert_eq!(b.phase("b-1"), "failed");
        assert_eq!(b.fake.launched(), ["c-1"], "c (after b ended) only, once");
    }

    /// Fires recurring job `job` by hand, a minute after the last time: a
    /// firing is one per job and time.
    async fn trigger(b: &mut Bench, job: &str) {
        tokio::time::advance(std::time::Duration::from_secs(60)).await;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = crate::api::Request::Trigger { job: job.into() };
        b.sup.command(crate::api::Command { request, reply }).unwrap();
        b.settle().await;
        assert!(answer.await.unwrap().is_ok(), "trigger {job}");
    }

    fn runs_of(b: &Bench, job: &str) -> Vec<String> {
        let job = crate::vocab::JobName::parse(job).unwrap();
        let mut ids: Vec<String> = b
            .sup
            .store()
            .runs_for_job(&job, 100)
            .unwrap()
            .into_iter()
            .map(|r| r.id.to_string())
            .collect();
        ids.reverse();
        ids
    }

    #[tokio::test(start_paused = true)]
    async fn a_pipeline_step_runs_after_each_upstream_run_and_not_while_it_is_gone() {
        let upstream = job("u", "schedule: '0 0 1 1 *'\n");
        let step = job("d", "after: [u]\n");
        let mut b = Bench::new();
        b.files(&[("u.yaml", &upstream), ("d.yaml", &step)]).await;
        assert!(runs_of(&b, "d").is_empty(), "no run when loaded");
        trigger(&mut b, "u").await;
        b.fake.exit("u-1", 0);
        b.settle().await;
        assert_eq!(runs_of(&b, "d"), ["d-1"]);
        b.fake.exit("d-1", 0);
        trigger(&mut b, "u").await;
        b.fake.exit("u-2", 4);
        b.settle().await;
        assert_eq!(runs_of(&b, "d"), ["d-1"], "a failed upstream run starts nothing");
        // Its upstream job gone, a changed step is no one-shot job run on
        // the upstream's last run.
        b.remove("u.yaml").await;
        b.files(&[("d.yaml", &job("d", "after: [u]\nenv: {V: '2'}\n"))]).await;
        assert_eq!(runs_of(&b, "d"), ["d-1"]);
        // Back: the next upstream run starts it again.
        b.files(&[("u.yaml", &upstream)]).await;
        trigger(&mut b, "u").await;
        b.fake.exit("u-3", 0);
        b.settle().await;
        assert_eq!(runs_of(&b, "d"), ["d-1", "d-2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dependency_failure_fails_the_run_without_restarts() {
        let mut b = Bench::new();
        b.files(&[
            ("a.yaml", &job("a", "")),
            ("b.yaml", &job("b", "after: [a]\nrestart: {on: failure, attempts: 3}\n")),
        ])
        .await;
        b.fake.exit("a-1", 2);
        b.settle().await;
        let state = b.state("b-1");
        assert_eq!(state.phase.to_string(), "failed");
        assert_eq!(
            state.phase,
            crate::scheduler::Phase::Failed {
                reason: crate::scheduler::FailReason::Dependency { detail: "a-1 failed".into() }
            }
        );
        assert_eq!((state.attempt, state.restarts), (1, 0));
        assert_eq!(b.fake.launched(), ["a-1"]);
    }
}
