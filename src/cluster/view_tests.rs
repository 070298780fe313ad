use super::*;
use crate::cluster::records::{encode, Allocation, Capacity, NumaCapacity, StatusEvent};

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn run(name: &str, created: i64, attempt: u32, state: ClusterRunState) -> ClusterRun {
    ClusterRun {
        run: name.into(),
        job: name.rsplit_once('-').unwrap().0.into(),
        job_revision: 5,
        scheduled_for: None,
        created_at: ts(created),
        attempt,
        state,
        memory_hard: None,
        handed_back_by: BTreeMap::new(),
        removed: false,
        handed_back_at: BTreeMap::new(),
        pending_since: None,
    }
}

fn status(run: &str, node: &str, attempt: u32, phase: &str) -> RunStatus {
    RunStatus {
        run: run.into(),
        node: node.into(),
        attempt,
        node_run: Some(format!("{}-1", run.rsplit_once('-').unwrap().0)),
        phase: phase.into(),
        detail: None,
        ended: None,
        handed_back: None,
        events: vec![StatusEvent { at: ts(3), what: phase.into() }],
        updated_at: ts(3),
    }
}

fn node(name: &str) -> NodeRecord {
    NodeRecord {
        name: name.into(),
        labels: [("disk".to_owned(), "ssd".to_owned())].into(),
        cgroup_mode: "hybrid".into(),
        version: "0.1.0".into(),
        api: Some("127.0.0.1:9100".into()),
        capacity: Capacity {
            cpus: 2,
            memory: 4 << 30,
            numa: vec![NumaCapacity { node: 0, cpus: 2, memory: 4 << 30 }],
        },
        allocated: Allocation {
            exclusive_cpus: 1,
            memory: 1 << 30,
            numa: vec![NumaCapacity { node: 0, cpus: 1, memory: 1 << 30 }],
            runs: 2,
            pending: 1,
        },
        updated_at: ts(1),
    }
}

fn view() -> ClusterView {
    let keys = Keys::new("/c");
    let mut view = ClusterView::default();
    let bound = ClusterRunState::Bound { node: "n1".into(), at: ts(2) };
    let put = |view: &mut ClusterView, key: String, value: Vec<u8>| view.take(&keys, &key, &value);
    put(
        &mut view,
        keys.run("late-9"),
        encode(&run(
            "late-9",
            30,
            1,
            ClusterRunState::Pending { reason: Some("no node has 64Gi of memory".into()) },
        )),
    );
    put(&mut view, keys.run("a-3"), encode(&run("a-3", 10, 2, bound.clone())));
    put(&mut view, keys.status("a-3"), encode(&status("a-3", "n1", 2, "running")));
    // A stale status of an earlier attempt does not speak for the run.
    put(
        &mut view,
        keys.run("b-4"),
        encode(&run("b-4", 20, 2, ClusterRunState::Bound { node: "n2".into(), at: ts(2) })),
    );
    put(&mut view, keys.status("b-4"), encode(&status("b-4", "n1", 1, "handed-back")));
    put(
        &mut view,
        keys.run("c-1"),
        encode(&run(
            "c-1",
            5,
            1,
            ClusterRunState::Ended {
                outcome: "succeeded".into(),
                at: ts(9),
                node: Some("n2".into()),
            },
        )),
    );
    put(&mut view, keys.run("junk-1"), b"{not json".to_vec());
    put(&mut view, keys.run("liar-1"), encode(&run("other-1", 1, 1, bound)));
    put(&mut view, keys.node("n1"), encode(&node("n1")));
    put(&mut view, keys.node("n2"), encode(&node("n2")));
    put(&mut view, keys.leader(), encode(&LeaderRecord { node: "n2".into(), since: ts(1) }));
    put(&mut view, "/c/something/else".into(), b"?".to_vec());
    view
}

#[test]
fn ps_rows_show_each_run_newest_last_and_bad_records_as_such() {
    let rows = run_rows(&view());
    let line = |r: &RunRow| {
        format!(
            "{} {} [{}] {} {} {}",
            r.run,
            r.job,
            r.state,
            r.node.as_deref().unwrap_or("-"),
            r.node_run.as_deref().unwrap_or("-"),
            r.attempt.map_or("-".into(), |a| a.to_string())
        )
    };
    let lines: Vec<String> = rows.iter().map(line).collect();
    assert_eq!(
        lines,
        [
            "c-1 c [ended: succeeded] n2 - 1",
            "a-3 a [running] n1 a-1 2",
            "b-4 b [bound] n2 - 2",
            "late-9 late [pending (no node has 64Gi of memory)] - - 1",
            "/c/runs/junk-1 - [bad record: key must be a string at line 1 column 2] - - -",
            "/c/runs/liar-1 - [bad record: it is about \"other-1\", not \"liar-1\"] - - -",
        ]
    );
}

#[test]
fn node_rows_mark_the_scheduler_and_carry_numa_detail() {
    let rows = node_rows(&view());
    assert_eq!(
        rows.iter().map(|r| (r.name.as_str(), r.scheduler)).collect::<Vec<_>>(),
        [("n1", false), ("n2", true)]
    );
    let n1 = &rows[0];
    assert_eq!(share(n1.cpus_allocated.into(), n1.cpus_allocatable.into(), false), "1/2");
    assert_eq!(share(n1.memory_allocated, n1.memory_allocatable, true), "1Gi/4Gi");
    assert_eq!(labels_text(&n1.labels), "disk=ssd");
    assert_eq!(n1.numa[0].cpus_allocated, 1);
}

#[test]
fn logs_are_here_elsewhere_or_not_yet() {
    let view = view();
    let a = &view.runs["a-3"];
    assert_eq!(logs_at(&view, a, "n1"), LogsAt::Here { node_run: "a-1".into() });
    assert_eq!(
        logs_at(&view, a, "n2"),
        LogsAt::Elsewhere { node: "n1".into(), node_run: "a-1".into() }
    );
    assert_eq!(
        logs_at(&view, &view.runs["late-9"], "n1"),
        LogsAt::NotStarted { state: "pending (no node has 64Gi of memory)".into() }
    );
}

#[test]
fn a_lost_run_shows_its_node_and_since_when() {
    let keys = Keys::new("/c");
    let mut view = ClusterView::default();
    let lost = ClusterRunState::Lost { node: "n3".into(), since: ts(7_000) };
    view.take(&keys, &keys.run("d-2"), &encode(&run("d-2", 1, 1, lost)));
    let rows = run_rows(&view);
    assert_eq!(rows.len(), 1);
    assert!(rows[0].state.starts_with("lost (node gone since "), "{}", rows[0].state);
    assert!(rows[0].state.contains(&ts(7_000).to_string()), "{}", rows[0].state);
    assert_eq!(rows[0].node.as_deref(), Some("n3"));
}
