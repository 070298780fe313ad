//! Runs left to finish after their job was removed (`on_removal: finish`),
//! across an agent restart: the decision is part of the run's recorded
//! state, so a restarted agent neither forgets it nor keeps it once the
//! job's file is back.

use std::sync::Arc;

use super::super::runtime::Probe;
use super::super::tests::{job, Bench};
use crate::scheduler::{FailReason, Phase};
use crate::vocab::RunId;

/// An agent restart with `runs` living on through it (their shims outlive
/// the agent), then the jobs directory holding `files`.
async fn restart_keeping(b: Bench, runs: &[&str], files: &[(&str, &str)]) -> Bench {
    let fake = Arc::clone(&b.fake);
    let mut live = Vec::new();
    for run in runs {
        let launch = b.launch(run);
        fake.set_probe(&launch.run_dir, Probe::Running { launch: launch.clone() });
        live.push((RunId::new(*run), None));
    }
    fake.set_live(live);
    let mut b = b.restart();
    b.sup.recover().unwrap();
    b.files(files).await;
    b
}

fn finishing_job() -> String {
    job("b", "on_removal: finish\nrestart: {on: failure, attempts: 1, backoff: 1s}\n")
}

#[tokio::test(start_paused = true)]
async fn a_run_left_to_finish_stays_so_across_a_restart_and_is_not_started_again() {
    let mut b = Bench::new();
    b.files(&[("b.yaml", &finishing_job())]).await;
    b.remove("b.yaml").await;
    assert_eq!(b.phase("b-1"), "running");
    assert!(b.state("b-1").finishing);

    let mut b = restart_keeping(b, &["b-1"], &[]).await;
    assert!(b.state("b-1").finishing);
    b.fake.exit("b-1", 1);
    b.settle().await;
    // Its restart policy would start it again; finishing, it ends here.
    let exit_1 = FailReason::Exit { status: crate::scheduler::ExitStatus::Code(1) };
    assert_eq!(b.state("b-1").phase, Phase::Failed { reason: exit_1 });
}

#[tokio::test(start_paused = true)]
async fn a_run_left_to_finish_is_its_jobs_run_again_when_the_file_is_back_after_a_restart() {
    let spec = finishing_job();
    let mut b = Bench::new();
    b.files(&[("b.yaml", &spec)]).await;
    b.remove("b.yaml").await;
    assert!(b.state("b-1").finishing);

    // The same file as before the removal: nothing about the job changed but
    // that it is in force again.
    let mut b = restart_keeping(b, &["b-1"], &[("b.yaml", &spec)]).await;
    assert!(!b.state("b-1").finishing, "{:?}", b.state("b-1"));
    b.fake.exit("b-1", 1);
    b.settle().await;
    assert!(
        matches!(b.state("b-1").phase, Phase::BackoffWaiting { .. }),
        "{:?}",
        b.state("b-1").phase
    );
}
