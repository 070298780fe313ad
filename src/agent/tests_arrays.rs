//! The supervisor with arrays and submitted jobs, on a fake machine: the
//! cap, the names a submission may take, and what a restart keeps.

use std::sync::Arc;

use super::runtime::Probe;
use super::tests::{job, Bench};
use crate::api::socket::response;
use crate::api::{Request, Response};
use crate::store::RunStore;
use crate::vocab::RunId;

/// Asks the supervisor what the control socket would, and returns the answer.
async fn ask(b: &mut Bench, request: Request) -> Response {
    let (reply, answer) = tokio::sync::oneshot::channel();
    b.sup.command(crate::api::Command { request, reply }).unwrap();
    b.settle().await;
    response(answer.await.unwrap())
}

fn submit(text: &str, overrides: &[&str]) -> Request {
    Request::Submit {
        file: "sub.yaml".into(),
        source: text.into(),
        overrides: overrides.iter().map(|o| o.to_string()).collect(),
    }
}

fn message(answer: Response) -> String {
    match answer {
        Response::Done { message } | Response::Error { message } => message,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn an_array_is_placed_within_its_cap_in_index_order() {
    let mut b = Bench::new();
    b.files(&[("s.yaml", &job("s", "array: '3,5,7-9%2'\n"))]).await;
    assert_eq!(b.fake.launched(), ["s-1", "s-2"]);
    assert_eq!(b.fake.env("s-1")["CORRAL_ARRAY_INDEX"], "3");
    assert_eq!(b.fake.env("s-2")["CORRAL_ARRAY_INDEX"], "5");
    assert_eq!(b.fake.env("s-2")["CORRAL_ARRAY_COUNT"], "5");
    assert_eq!(b.phase("s-3"), "pending");
    b.fake.exit("s-2", 0);
    b.settle().await;
    assert_eq!(b.fake.launched(), ["s-1", "s-2", "s-3"]);
    assert_eq!(b.fake.env("s-3")["CORRAL_ARRAY_INDEX"], "7");
    // The waiting ones say why.
    let ps = ask(&mut b, Request::Ps).await;
    let Response::Ps { runs } = ps else { panic!("{ps:?}") };
    let waiting: Vec<_> = runs.iter().filter(|r| r.waiting_for.is_some()).collect();
    assert_eq!(waiting.len(), 2, "{runs:#?}");
    assert_eq!(waiting[0].waiting_for.as_deref(), Some("array limit 2"));
    assert_eq!(waiting[0].array_index, Some(8));
}

#[tokio::test(start_paused = true)]
async fn a_submission_that_waits_for_other_jobs_is_refused() {
    let mut b = Bench::new();
    b.files(&[("d.yaml", &job("d", ""))]).await;
    let refused = message(ask(&mut b, submit(&job("sub", "after: [d]\n"), &[])).await);
    assert!(
        refused.contains("sub.yaml: after: a submitted job does not wait for other jobs"),
        "{refused}"
    );
    assert!(b.sup.store().runs_for_job(&"sub".parse().unwrap(), 5).unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_submission_takes_a_free_name_only() {
    let mut b = Bench::new();
    b.files(&[("d.yaml", &job("d", ""))]).await;
    let text = job("sub", "");
    let taken = message(ask(&mut b, submit(&text, &["name=d"])).await);
    assert!(taken.contains("d is a job of the jobs directory"), "{taken}");
    let first = message(ask(&mut b, submit(&text, &["array=0-1"])).await);
    assert_eq!(first, "submitted array sub (0,1): 2 runs, sub-1 to sub-2");
    let again = message(ask(&mut b, submit(&text, &[])).await);
    assert!(again.contains("sub has runs under way"), "{again}");
    let bad = message(ask(&mut b, submit(&text, &["priority=high"])).await);
    assert!(bad.starts_with("not submitted:\n--set priority=high: priority: expected"), "{bad}");
    let root = message(ask(&mut b, submit(&text, &["name=other", "user=root"])).await);
    assert!(root.contains("allow_root_jobs is false"), "{root}");
    assert!(b.sup.store().runs_for_job(&"other".parse().unwrap(), 5).unwrap().is_empty());
    // Once over, the name is free again; its runs are numbered on.
    b.fake.exit("sub-1", 0);
    b.fake.exit("sub-2", 0);
    b.settle().await;
    let third = message(ask(&mut b, submit(&text, &[])).await);
    assert_eq!(third, "submitted sub: run sub-3");
}

#[tokio::test(start_paused = true)]
async fn a_restart_runs_what_is_left_of_a_submitted_array_from_the_store() {
    let mut b = Bench::new();
    b.files(&[]).await;
    let text = job("sub", "");
    message(ask(&mut b, submit(&text, &["array=0-2%1", "env.X=y"])).await);
    assert_eq!(b.fake.launched(), ["sub-1"]);
    let launch = b.launch("sub-1");
    let fake = Arc::clone(&b.fake);
    fake.set_probe(&launch.run_dir, Probe::Running { launch: launch.clone() });
    fake.set_live(vec![(RunId::new("sub-1"), None)]);
    let mut b = b.restart();
    b.sup.recover().unwrap();
    // The directory does not have it; the store does.
    b.files(&[]).await;
    assert_eq!(b.phase("sub-1"), "running");
    assert_eq!(b.phase("sub-2"), "pending");
    assert!(b.fake.launched().is_empty(), "the cap holds across the restart");
    b.fake.exit("sub-1", 0);
    b.settle().await;
    assert_eq!(b.fake.launched(), ["sub-2"]);
    assert_eq!(b.fake.env("sub-2")["CORRAL_ARRAY_INDEX"], "1");
    assert_eq!(b.fake.env("sub-2")["X"], "y");
    // Killing the array by its name ends the rest; the pending one never starts.
    let killed = message(ask(&mut b, Request::Kill { run: "sub".into() }).await);
    assert_eq!(killed, "sub: 2 runs are being stopped");
    assert_eq!(b.phase("sub-3"), "killed");
    assert_eq!(b.fake.launched(), ["sub-2"]);
}
