//! Cluster faults, one scenario each: etcd members down, quorum lost and
//! back, the leader killed or cut off, a node cut off from the other nodes.
//! A real three-member TLS etcd on a bridge and three agents in network
//! namespaces of their own; the jobs write timestamps to a shared file, and
//! every scenario checks from them that no two copies of one cluster run
//! ever wrote in the same span of time (`cluster_harness::faults`).

mod agent_harness;
mod cluster_harness;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use agent_harness::secs;
use cluster_harness::faults::{outcome_and_node, FaultCluster, Rng, Stamps, NODES};
use corral::cluster::records::{ClusterRun, ClusterRunState};

const TTL: Duration = Duration::from_secs(3);

/// Every run of `jobs` ended as succeeded in its first attempt, and exactly
/// one node ran it once: nothing lost, nothing run twice.
fn assert_each_ran_once(c: &FaultCluster, runs: &BTreeMap<String, ClusterRun>, jobs: &[&str]) {
    for job in jobs {
        let of_job = c.runs_of(runs, job);
        assert_eq!(of_job.len(), 1, "one run of {job}: {of_job:#?}");
        let run = &of_job[0];
        let (outcome, node) = outcome_and_node(run);
        assert_eq!(outcome, "succeeded", "{run:#?}");
        assert_eq!(run.attempt, 1, "{job} bound once: {run:#?}");
        for name in NODES {
            let local = c.node(name).runs_of(job);
            let want = usize::from(name == node);
            assert_eq!(local.len(), want, "{job}: local runs on {name}: {local:?}, ran on {node}");
        }
    }
}

/// Whether any local run of `job` on node `name` is frozen now.
fn frozen_on(c: &FaultCluster, name: &str, job: &str) -> bool {
    let node = c.node(name);
    node.runs_of(job).iter().any(|run| node.frozen(run))
}

#[test]
fn the_overlap_checker_finds_copies_writing_at_once_and_passes_disjoint_ones() {
    // Attempt 1 on one node wrote 1000..1200, was frozen (wrote nothing)
    // and attempt 2 elsewhere wrote 1500..1600: disjoint, gap 300 ms.
    let disjoint = "r-1 1 aa 1000\nr-1 1 aa 1100\nr-1 1 aa 1200\n\
                    r-1 2 bb 1500\nr-1 2 bb 1600\nq-1 1 cc 1100\n";
    let stamps = Stamps::parse(disjoint).unwrap();
    assert!(stamps.overlaps().is_empty());
    assert_eq!(stamps.gaps()["r-1"], vec![300]);
    assert_eq!(stamps.runs["r-1"].len(), 2);
    // Another run writing at the same time is no overlap.
    assert_eq!(stamps.runs["q-1"][0].lines, 1);

    // A frozen copy thawed after its replacement started: its last line
    // comes after the replacement's first.
    let thawed = "r-1 1 aa 1000\nr-1 2 bb 1500\nr-1 2 bb 1600\nr-1 1 aa 1700\n";
    let overlaps = Stamps::parse(thawed).unwrap().overlaps();
    assert_eq!(overlaps.len(), 1, "{overlaps:?}");
    assert_eq!((overlaps[0].earlier.attempt, overlaps[0].later.attempt), (1, 2));
    assert!(overlaps[0].to_string().contains("200 ms"), "{}", overlaps[0]);

    // Two copies of one attempt (the same attempt on two nodes): told
    // apart by their tokens, and caught.
    let same = "r-1 1 aa 1000\nr-1 1 bb 1050\nr-1 1 aa 1100\n";
    assert_eq!(Stamps::parse(same).unwrap().overlaps().len(), 1);

    // One copy nested inside a longer one is caught too, not only
    // neighbours in start order.
    let nested = "r-1 1 aa 1000\nr-1 1 aa 5000\nr-1 2 bb 2000\nr-1 3 cc 3000\n";
    assert_eq!(Stamps::parse(nested).unwrap().overlaps().len(), 2);

    // The last line cut short by a kill is skipped; a bad line elsewhere
    // is an error naming it.
    assert!(Stamps::parse("r-1 1 aa 1000\nr-1 1 a").is_ok());
    let err = Stamps::parse("r-1 1 aa 1000\nnonsense\nr-1 1 aa 1100\n").unwrap_err();
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn the_seeded_random_sequence_replays_from_its_seed() {
    let draw = |seed| {
        let mut rng = Rng::new(seed);
        (0..32).map(|_| rng.below(1000)).collect::<Vec<_>>()
    };
    assert_eq!(draw(42), draw(42));
    assert_ne!(draw(42), draw(43));
    let mut rng = Rng::new(7);
    for _ in 0..1000 {
        let d = rng.millis(100, 200);
        assert!((100..=200).contains(&d.as_millis()), "{d:?}");
    }
}

#[test]
fn one_etcd_member_down_has_no_visible_effect() {
    let Some(mut c) = FaultCluster::start(TTL, "") else { return };
    c.write_stamp_job("before", 12, "");
    c.apply();
    c.wait_running("before", secs(60));

    // The first member in every endpoint list: the one a client tries first.
    c.etcd.kill_member(0);
    // Longer than a lease TTL, so every lease is renewed through the
    // members left at least once.
    std::thread::sleep(TTL * 2);
    assert_eq!(c.node_records().len(), 3, "every node kept its lease");
    for name in NODES {
        assert!(!frozen_on(&c, name, "before"), "a run frozen on {name} with quorum intact");
    }
    c.write_stamp_job("during", 3, "");
    c.write_job("quick", &agent_harness::job("quick", "true", ""));
    c.apply();
    let runs = c.wait_runs("the runs placed with one member down", secs(90), |runs| {
        ["before", "during", "quick"].iter().all(|job| {
            runs.values().any(|r| &r.job == job && matches!(r.state, ClusterRunState::Ended { .. }))
        })
    });
    assert_each_ran_once(&c, &runs, &["before", "during", "quick"]);
    assert!(c.etcd.member_running(1) && c.etcd.member_running(2));

    c.etcd.start_member(0);
    c.write_stamp_job("after", 2, "");
    c.apply();
    let runs = c.settle(secs(90));
    assert_each_ran_once(&c, &runs, &["before", "during", "quick", "after"]);
    eprintln!("{}", c.read_stamps().assert_no_overlap("one member down"));
    c.assert_clean();
}

#[test]
fn quorum_lost_and_back_keeps_bound_runs_and_places_nothing_meanwhile() {
    let Some(mut c) = FaultCluster::start(TTL, "") else { return };
    // Spread over the nodes, and long enough to outlast the outage.
    for (i, name) in NODES.iter().enumerate() {
        c.write_stamp_job(&format!("long-{i}"), 25, &format!("nodes: [{name}]\n"));
    }
    c.apply();
    for i in 0..3 {
        c.wait_running(&format!("long-{i}"), secs(60));
    }
    let local_before: usize = c.nodes.iter().map(|n| n.count_runs()).sum();

    c.etcd.kill_member(1);
    c.etcd.kill_member(2);
    let lost_at = Instant::now();
    // Well past the lease TTL. Each node now reaches one member of three:
    // it cannot tell a quorum loss from its own partition, so it fences
    // (freezes its cluster runs) and thaws them when it renews its lease
    // again, which a new etcd leader allows (it renews every lease when
    // promoted). Either way the runs must come through it, once each.
    std::thread::sleep(TTL * 3);
    for node in &c.nodes {
        let (status, _, body) = node.http_get("/readyz", None);
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("the cluster is unavailable"), "{body}");
    }
    // No quorum, so no binding could be written: no node started a run.
    let local_during: usize = c.nodes.iter().map(|n| n.count_runs()).sum();
    assert_eq!(local_during, local_before, "a run started while etcd had no quorum");

    c.etcd.start_member(1);
    c.etcd.start_member(2);
    eprintln!("quorum back after {:?}", lost_at.elapsed());
    // Placements resume.
    c.write_stamp_job("after", 2, "");
    c.apply_within(secs(60));
    let runs = c.settle(secs(120));
    assert_each_ran_once(&c, &runs, &["long-0", "long-1", "long-2", "after"]);
    let stamps = c.read_stamps();
    eprintln!("{}", stamps.assert_no_overlap("quorum lost and back"));
    // Every long run wrote most of its lines: it was not restarted.
    for i in 0..3 {
        let run = &c.runs_of(&runs, &format!("long-{i}"))[0].run;
        let copies = &stamps.runs[run];
        assert_eq!(copies.len(), 1, "{copies:?}");
    }
    c.assert_clean();
}

#[test]
fn leader_kill9_moves_leadership_and_binds_no_run_twice() {
    let Some(mut c) = FaultCluster::start(TTL, "") else { return };
    let first = c.wait_leader(None, secs(30));
    let others: Vec<&str> = NODES.iter().copied().filter(|n| *n != first).collect();
    let pinned = format!("nodes: [{}]\n", others.join(", "));
    c.write_stamp_job("running", 10, &pinned);
    c.apply();
    c.wait_running("running", secs(60));

    let i = c.index(&first);
    let killed_at = Instant::now();
    c.kill9(i);
    // Applied while nobody leads: the next leader places them.
    for n in 0..4 {
        c.write_stamp_job(&format!("queued-{n}"), 1, &pinned);
    }
    c.apply();
    let second = c.wait_leader(Some(&first), TTL * 5);
    let moved = killed_at.elapsed();
    c.wait_runs("the queued runs placed by the new leader", secs(60), |runs| {
        (0..4).all(|n| {
            runs.values().any(|r| {
                r.job == format!("queued-{n}")
                    && !matches!(r.state, ClusterRunState::Pending { .. })
            })
        })
    });
    eprintln!("leadership moved from {first} to {second} in {moved:?}");

    c.restart(i);
    let runs = c.settle(secs(90));
    let jobs = ["running", "queued-0", "queued-1", "queued-2", "queued-3"];
    assert_each_ran_once(&c, &runs, &jobs);
    eprintln!("{}", c.read_stamps().assert_no_overlap("leader kill -9"));
    c.assert_clean();
}

#[test]
fn a_node_cut_off_from_the_other_nodes_but_not_from_etcd_changes_nothing() {
    // Nodes never talk to each other to run jobs: a node's lease, its
    // bindings and its statuses all go through etcd, and the scheduler
    // decides from etcd alone. Only `corral logs` of a run on another node
    // goes node to node. So a node that reaches etcd but no other node
    // keeps its lease and runs what it is given.
    let Some(mut c) = FaultCluster::start(TTL, "") else { return };
    assert!(c.reaches(0, 1), "node-a reaches node-b before the cut");
    c.isolate_from_nodes(0);
    assert!(!c.reaches(0, 1) && !c.reaches(0, 2) && !c.reaches(1, 0));
    c.write_stamp_job("on-a", 6, "nodes: [node-a]\n");
    c.write_stamp_job("anywhere", 2, "");
    c.apply();
    c.wait_running("on-a", secs(60));
    // Past several lease TTLs.
    let deadline = Instant::now() + TTL * 3;
    while Instant::now() < deadline {
        assert!(c.node_records().contains("node-a"), "node-a lost its lease");
        assert!(!frozen_on(&c, "node-a", "on-a"), "node-a froze a run while etcd is reachable");
        std::thread::sleep(Duration::from_millis(300));
    }
    let runs = c.settle(secs(90));
    assert_each_ran_once(&c, &runs, &["on-a", "anywhere"]);
    assert_eq!(outcome_and_node(&c.runs_of(&runs, "on-a")[0]).1, "node-a");
    c.rejoin_nodes(0);
    assert!(c.reaches(0, 1));
    eprintln!("{}", c.read_stamps().assert_no_overlap("node cut off from nodes"));
    c.assert_clean();
}

#[test]
fn the_leader_cut_off_from_etcd_loses_leadership_and_placements_go_on() {
    let Some(c) = FaultCluster::start(TTL, "") else { return };
    let first = c.wait_leader(None, secs(30));
    let i = c.index(&first);
    let others: Vec<&str> = NODES.iter().copied().filter(|n| *n != first).collect();
    let pinned = format!("nodes: [{}]\n", others.join(", "));

    c.cut(i);
    let cut_at = Instant::now();
    let second = c.wait_leader(Some(&first), TTL * 5);
    eprintln!("leadership moved from {first} to {second} {:?} after the cut", cut_at.elapsed());
    c.write_stamp_job("during", 2, &pinned);
    c.apply();
    let runs = c.wait_runs("a run placed by the new leader", secs(60), |runs| {
        runs.values().any(|r| r.job == "during" && matches!(r.state, ClusterRunState::Ended { .. }))
    });
    let during = &c.runs_of(&runs, "during")[0];
    assert_ne!(outcome_and_node(during).1, first);

    c.reconnect(i);
    // The old leader comes back as a node, not as a second leader: the
    // leader key names one node, and it stays the new one while that one
    // holds its lease.
    c.wait_nodes(3, secs(60));
    assert_eq!(c.leader().as_deref(), Some(second.as_str()));
    c.write_stamp_job("after", 2, "");
    c.apply();
    let runs = c.settle(secs(90));
    assert_each_ran_once(&c, &runs, &["during", "after"]);
    eprintln!("{}", c.read_stamps().assert_no_overlap("leader cut off"));
    c.assert_clean();
}

/// The local run of `job` on `name` (its only one).
fn local_run(c: &FaultCluster, name: &str, job: &str) -> String {
    let runs = c.node(name).runs_of(job);
    assert_eq!(runs.len(), 1, "{job} on {name}: {runs:?}");
    runs[0].clone()
}

#[test]
fn a_node_cut_off_from_etcd_freezes_its_cluster_runs_and_its_copy_rebound_elsewhere_is_killed_frozen(
) {
    let Some(c) = FaultCluster::start(TTL, "") else { return };
    c.write_stamp_job("victim", 40, "");
    c.apply();
    let first = c.wait_running("victim", secs(60));
    let x = c.index(&first);
    let copy = local_run(&c, &first, "victim");
    // A local job on the same node: the fence is for cluster runs only.
    c.nodes[x].write_job("local.yaml", &agent_harness::job("local", "sleep 25", ""));
    c.nodes[x].wait_for("the local run", secs(30), || !c.nodes[x].runs_of("local").is_empty());
    let local = local_run(&c, &first, "local");
    c.nodes[x].wait_phase(&local, "running", secs(30));

    c.cut(x);
    let cut_at = Instant::now();
    c.nodes[x]
        .wait_for("the cluster run frozen by the fence", TTL * 3, || c.nodes[x].frozen(&copy));
    let fenced_after = cut_at.elapsed();
    // Before its lease could expire: the others still see its record.
    assert!(fenced_after < TTL, "fenced {fenced_after:?} after the cut, lease TTL {TTL:?}");
    assert!(!c.nodes[x].frozen(&local), "a local run frozen by the fence");
    let ps = c.nodes[x].corral_ok(&["ps"]);
    assert!(ps.contains("fenced: cluster unreachable"), "{ps}");
    eprintln!("{first} fenced its run {fenced_after:?} after the cut");

    // Lost, then after the grace bound elsewhere as attempt 2.
    let runs = c.wait_runs("victim rebound elsewhere", secs(90), |runs| {
        runs.values().any(|r| {
            r.job == "victim"
                && r.attempt == 2
                && matches!(&r.state, ClusterRunState::Bound { node, .. } if *node != first)
        })
    });
    let second = match &c.runs_of(&runs, "victim")[0].state {
        ClusterRunState::Bound { node, .. } => node.clone(),
        _ => unreachable!(),
    };
    eprintln!("victim rebound to {second} {:?} after the cut", cut_at.elapsed());
    c.wait_running("victim", secs(60));
    assert!(c.nodes[x].frozen(&copy), "the old copy thawed while cut off");

    // Back: the old copy finds its binding gone and is killed as it is.
    c.reconnect(x);
    c.nodes[x].wait_phase(&copy, "killed", secs(60));
    let transitions = c.nodes[x].transitions(&copy);
    let last = transitions.last().unwrap();
    assert!(last.2.contains("superseded"), "{transitions:?}");
    // Never thawed: from its fence to its end it was suspended only.
    let fenced = transitions.iter().rposition(|t| t.0 == "suspended").expect("suspended");
    assert!(
        transitions[fenced + 1..].iter().all(|t| t.0 != "running"),
        "thawed before being killed: {transitions:?}"
    );

    let runs = c.settle(secs(120));
    let victim = &c.runs_of(&runs, "victim")[0];
    assert_eq!(outcome_and_node(victim), ("succeeded".to_owned(), second.clone()), "{victim:#?}");
    assert_eq!(victim.attempt, 2);
    let stamps = c.read_stamps();
    eprintln!("{}", stamps.assert_no_overlap("node cut off from etcd"));
    let copies = &stamps.runs[&victim.run];
    assert_eq!(copies.iter().map(|c| c.attempt).collect::<Vec<_>>(), vec![1, 2], "{copies:?}");
    assert!(copies[0].lines < 400 && copies[1].lines == 400, "{copies:?}");
    c.nodes[x].wait_phase(&local, "succeeded", secs(60));
    c.assert_clean();
}

#[test]
fn a_lost_node_s_run_is_rescheduled_on_another_node_as_its_next_attempt() {
    let Some(mut c) = FaultCluster::start(TTL, "") else { return };
    c.write_stamp_job("orphan", 15, "");
    c.apply();
    let first = c.wait_running("orphan", secs(60));
    let x = c.index(&first);
    let copy = local_run(&c, &first, "orphan");
    // Running is not yet writing: the first stamp comes a moment later.
    let orphan_run = c.runs().into_values().find(|r| r.job == "orphan").unwrap().run;
    c.wait_stamp(&orphan_run, 1, secs(30));

    // The machine is gone: agent and job processes alike.
    c.lose(x);
    let lost_at = Instant::now();
    c.wait_runs("orphan lost", TTL * 5, |runs| {
        runs.values().any(|r| r.job == "orphan" && matches!(r.state, ClusterRunState::Lost { .. }))
    });
    let detected = lost_at.elapsed();
    c.wait_runs("orphan rebound elsewhere", secs(90), |runs| {
        runs.values().any(|r| {
            r.job == "orphan"
                && r.attempt == 2
                && matches!(&r.state, ClusterRunState::Bound { node, .. } if *node != first)
        })
    });
    c.wait_running("orphan", secs(60));
    eprintln!(
        "{first} lost: detected {detected:?}, replacement running {:?} after",
        lost_at.elapsed()
    );

    // The machine comes back: its agent finds the run's binding gone and
    // does not start attempt 1 again.
    c.restart(x);
    c.wait_nodes(3, secs(90));
    let runs = c.settle(secs(120));
    let orphan = &c.runs_of(&runs, "orphan")[0];
    let (outcome, node) = outcome_and_node(orphan);
    assert_eq!(outcome, "succeeded", "{orphan:#?}");
    assert_ne!(node, first);
    assert_eq!(orphan.attempt, 2);
    assert_eq!(c.nodes[x].runs_of("orphan"), vec![copy.clone()], "attempt 1 started again");
    assert_ne!(c.nodes[x].phase(&copy).as_deref(), Some("running"));
    let stamps = c.read_stamps();
    eprintln!("{}", stamps.assert_no_overlap("node loss"));
    let attempts: Vec<u32> = stamps.runs[&orphan.run].iter().map(|c| c.attempt).collect();
    assert_eq!(attempts, vec![1, 2]);
    c.assert_clean();
}
