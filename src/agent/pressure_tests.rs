//! Node-pressure protection through the supervisor, on the fake machine:
//! readings from a PSI file the test writes, on a paused clock.

use std::path::PathBuf;
use std::time::Duration;

use super::pressure::{Pressure, PressureSources};
use super::runtime::Probe;
use super::tests::{ask, job, Bench};
use crate::scheduler::pressure::Thresholds;

/// Every second; 2 high readings to act; low (≤ 10) for 5 s to release.
fn thresholds() -> Thresholds {
    Thresholds {
        check_every: Duration::from_secs(1),
        available_below: None,
        available_release: None,
        some_above: Some(20.0),
        some_release: Some(10.0),
        full_above: None,
        full_release: None,
        trigger_after: 2,
        release_after: Duration::from_secs(5),
        requeue_after: Duration::from_secs(30),
    }
}

/// Turns pressure protection on with `memory.pressure` read from a file in
/// the bench's directory; returns the file.
fn watch(b: &mut Bench) -> PathBuf {
    let psi = b.dir.path().join("memory.pressure");
    set(&psi, 0.0);
    let sources = PressureSources { psi: Some(psi.clone()), meminfo: b.dir.path().join("none") };
    let now = b.sup.clock.now();
    b.sup.set_pressure(Pressure::new(thresholds(), sources, now));
    psi
}

fn set(psi: &PathBuf, some: f64) {
    let text = format!("some avg10={some:.2} avg60=0.00 avg300=0.00 total=1\n");
    std::fs::write(psi, text).unwrap();
}

/// `n` readings, one a second.
async fn readings(b: &mut Bench, n: u32) {
    for _ in 0..n {
        tokio::time::advance(Duration::from_secs(1)).await;
        b.settle().await;
    }
}

#[tokio::test(start_paused = true)]
async fn pressure_freezes_the_lowest_preemptible_run_holds_new_runs_and_releases_when_quiet() {
    let mut b = Bench::new();
    let psi = watch(&mut b);
    b.files(&[
        ("keep.yaml", &job("keep", "priority: 1\n")),
        ("low.yaml", &job("low", "priority: 10\npreemption: suspend\n")),
        ("mid.yaml", &job("mid", "priority: 50\npreemption: requeue\n")),
    ])
    .await;
    for run in ["keep-1", "low-1", "mid-1"] {
        assert_eq!(b.phase(run), "running", "{run}");
    }
    set(&psi, 50.0);
    readings(&mut b, 2).await;
    assert_eq!(b.phase("low-1"), "suspended");
    assert_eq!(b.events("low-1"), ["pressure-frozen"]);
    assert_eq!(b.phase("mid-1"), "running", "one step at a time");
    assert_eq!(b.phase("keep-1"), "running", "never: untouched though the lowest");
    // New runs wait while the node is under pressure.
    b.files(&[("late.yaml", &job("late", "priority: 90\n"))]).await;
    assert_eq!(b.phase("late-1"), "pending");
    let ps = ask(&mut b, crate::api::Request::Ps).await;
    let crate::api::Response::Ps { runs } = ps else { panic!("{ps:?}") };
    let late = runs.iter().find(|r| r.run == "late-1").expect("late-1 listed");
    assert_eq!(late.waiting_for.as_deref(), Some("held: memory pressure"), "{runs:#?}");
    readings(&mut b, 2).await;
    assert_eq!(b.phase("mid-1"), "suspended", "the next one, after two more high readings");
    // In the band: nothing moves, however long.
    set(&psi, 15.0);
    readings(&mut b, 40).await;
    for run in ["low-1", "mid-1"] {
        assert_eq!(b.phase(run), "suspended", "{run}");
    }
    assert_eq!(b.phase("late-1"), "pending");
    // Low: one release per 5 s of low readings, the higher priority first.
    // (The first low reading starts the stretch.)
    set(&psi, 2.0);
    readings(&mut b, 5).await;
    assert_eq!(b.phase("mid-1"), "suspended");
    readings(&mut b, 1).await;
    assert_eq!(b.phase("mid-1"), "running");
    assert_eq!(b.events("mid-1"), ["pressure-frozen", "pressure-released", "resumed"]);
    assert_eq!(b.phase("low-1"), "suspended");
    assert_eq!(b.phase("late-1"), "pending");
    readings(&mut b, 5).await;
    assert_eq!(b.phase("low-1"), "running");
    assert_eq!(b.phase("late-1"), "pending", "held until a quiet stretch with nothing frozen");
    readings(&mut b, 5).await;
    assert_eq!(b.phase("late-1"), "running");
    assert!(b.events("keep-1").is_empty());
}

#[tokio::test(start_paused = true)]
async fn pressure_that_lasts_requeues_and_a_restart_keeps_the_frozen_run_frozen() {
    let mut b = Bench::new();
    let psi = watch(&mut b);
    b.files(&[
        ("a.yaml", &job("a", "priority: 10\npreemption: suspend\n")),
        ("b.yaml", &job("b", "priority: 20\npreemption: suspend\n")),
    ])
    .await;
    set(&psi, 50.0);
    readings(&mut b, 4).await;
    assert_eq!((b.phase("a-1"), b.phase("b-1")), ("suspended", "suspended"));

    // The agent restarts: both stay frozen, and held.
    for run in ["a-1", "b-1"] {
        let launch = b.launch(run);
        b.fake.set_probe(&launch.run_dir.clone(), Probe::Running { launch });
    }
    let mut b = b.restart();
    b.sup.recover().unwrap();
    let psi = watch(&mut b);
    set(&psi, 50.0);
    b.files(&[
        ("a.yaml", &job("a", "priority: 10\npreemption: suspend\n")),
        ("b.yaml", &job("b", "priority: 20\npreemption: suspend\n")),
    ])
    .await;
    readings(&mut b, 3).await;
    assert_eq!((b.phase("a-1"), b.phase("b-1")), ("suspended", "suspended"));
    // Frozen for 30 s and still high: the lowest priority is stopped and
    // queued again, with its attempt; it is not started while held.
    readings(&mut b, 30).await;
    assert_eq!(b.events("a-1"), ["pressure-frozen", "pressure-requeued"]);
    // (The fake's processes end at SIGTERM.)
    assert_eq!(b.phase("a-1"), "pending");
    assert_eq!(b.state("a-1").attempt, 1);
    readings(&mut b, 3).await;
    assert_eq!(b.phase("a-1"), "pending");
    assert_eq!(b.events("b-1"), ["pressure-frozen", "pressure-requeued"], "then the next");
}
