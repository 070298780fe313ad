//! The cgroup layer on a pure v2 kernel: detection, parent setup, freezer,
//! kill, memory events.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corral::cgroup::{
    CgroupEvent, EventOptions, FreezerKind, FreezerState, KillKind, MemoryLimits, OomMode,
    PsiTrigger, Resources,
};

use super::util::{
    event_matching, flat_keyed, manager, read, runtime, self_exe, wait_line, wait_until, words,
    Job, CGROUP_ROOT, CONTROLLERS, CORRAL, MI, PARENT,
};
use super::Context;

const SECOND: Duration = Duration::from_secs(1);

fn no_psi() -> EventOptions {
    EventOptions { memory_pressure: None }
}

pub fn doctor_reports_pure_v2(_: &Context) {
    let human = Command::new(CORRAL).arg("doctor").output().expect("run corral doctor");
    print!("{}", String::from_utf8_lossy(&human.stdout));
    let out = Command::new(CORRAL).args(["doctor", "--json"]).output().expect("run corral doctor");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "corral doctor --json: {}", out.status);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("doctor JSON");
    let layout = &report["layout"];
    assert_eq!(layout["kind"], "v2", "layout: {layout:#}");
    assert_eq!(layout["v1"].as_array().map(Vec::len), Some(0), "no v1 hierarchy expected");
    assert_eq!(layout["unified"]["mount_point"], CGROUP_ROOT);
    let offered: Vec<&str> = layout["unified"]["controllers"]
        .as_array()
        .expect("unified controllers")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    for c in CONTROLLERS {
        assert!(offered.contains(&c), "controller {c} not listed in {offered:?}");
    }
    let mechanisms = &report["mechanisms"];
    assert_eq!(mechanisms["freezer"], "v2", "{mechanisms:#}");
    assert_eq!(mechanisms["kill"], "cgroup_kill", "{mechanisms:#}");
    assert_eq!(mechanisms["populated_events"], true, "{mechanisms:#}");
    assert_eq!(mechanisms["pressure"], true, "{mechanisms:#}");
    assert_eq!(mechanisms["pause_at_limit"], false, "v2 cannot pause at memory.max");
}

pub fn manager_enables_controllers_down_to_the_parent(_: &Context) {
    let root = Path::new(CGROUP_ROOT);
    assert_eq!(
        read(root.join("cgroup.subtree_control")),
        "",
        "the guest boots with no controller enabled below the root"
    );
    assert!(!root.join(PARENT).exists(), "nothing created the parent yet");

    let m = manager();
    for dir in [root.to_path_buf(), root.join(PARENT)] {
        let enabled = words(dir.join("cgroup.subtree_control"));
        println!("{}/cgroup.subtree_control: {}", dir.display(), enabled.join(" "));
        for c in CONTROLLERS {
            assert!(enabled.iter().any(|e| e == c), "{c} not enabled in {}", dir.display());
        }
    }
    let caps = *m.capabilities();
    println!("capabilities: {caps:?}");
    assert_eq!(caps.freezer, FreezerKind::V2);
    assert_eq!(caps.kill, KillKind::CgroupKill);
    assert!(caps.populated_events && caps.pressure);
    assert!(!caps.pause_at_limit);

    let job = Job::create(&m, "controllers", &Resources::default());
    let available = words(job.file("cgroup.controllers"));
    for c in CONTROLLERS {
        assert!(available.iter().any(|a| a == c), "{c} missing in the job's cgroup.controllers");
    }
    // Opening again (an agent restart) changes nothing and fails nothing.
    let again = manager();
    assert_eq!(again.jobs().unwrap().len(), 1);
}

pub fn freeze_and_thaw_confirmed_by_cgroup_events(_: &Context) {
    let m = manager();
    let job = Job::create(&m, "freeze", &Resources::default());
    let mut child = job.spawn(&["sh", "-c", "while :; do :; done"], Stdio::null());
    runtime().block_on(async {
        let mut events =
            job.cgroup.events(&corral::cgroup::Notifier::new(), &no_psi()).expect("event stream");
        wait_until("the busy loop to use CPU", 10 * SECOND, || job.cpu_usage_us() > 20_000);

        let start = Instant::now();
        job.cgroup.freeze(10 * SECOND).await.expect("freeze");
        println!("frozen after {:?}", start.elapsed());
        assert_eq!(read(job.file("cgroup.freeze")), "1", "the job's own cgroup.freeze");
        assert_eq!(flat_keyed(job.file("cgroup.events"))["frozen"], 1, "cgroup.events");
        assert_eq!(job.cgroup.freezer_state().unwrap(), FreezerState::Frozen);
        event_matching(&mut events, 5 * SECOND, "Frozen(true)", |e| {
            *e == CgroupEvent::Frozen(true)
        })
        .await;
        let before = job.cpu_usage_us();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = job.cpu_usage_us();
        println!("cpu usage while frozen: {before} -> {after} us");
        assert!(after - before < 1_000, "a frozen job used {} us of CPU", after - before);

        job.cgroup.thaw(10 * SECOND).await.expect("thaw");
        assert_eq!(read(job.file("cgroup.freeze")), "0", "the job's own cgroup.freeze");
        assert_eq!(flat_keyed(job.file("cgroup.events"))["frozen"], 0, "cgroup.events");
        assert_eq!(job.cgroup.freezer_state().unwrap(), FreezerState::Thawed);
        event_matching(&mut events, 5 * SECOND, "Frozen(false)", |e| {
            *e == CgroupEvent::Frozen(false)
        })
        .await;
        let before = job.cpu_usage_us();
        wait_until("the thawed job to use CPU again", 10 * SECOND, || {
            job.cpu_usage_us() > before + 20_000
        });
    });
    let _ = child.kill();
    let _ = child.wait();
}

pub fn kill_takes_a_forking_job_down(_: &Context) {
    let m = manager();
    let resources = Resources { pids_max: Some(200), ..Resources::default() };
    let job = Job::create(&m, "forker", &resources);
    // Double forks leave orphans no parent tracks; the loop keeps forking
    // while the kill is under way.
    let script = r#"
        i=0
        while [ $i -lt 15 ]; do
            (sleep 1000 &)
            sh -c 'sleep 1000 & exec sleep 1000' &
            i=$((i + 1))
        done
        while :; do sleep 1000 & sleep 0.01; done
    "#;
    let mut child = job.spawn(&["sh", "-c", script], Stdio::null());
    wait_until("the job to fork 40 processes", 20 * SECOND, || job.pids().len() >= 40);
    let pids = job.pids();
    println!("{} processes before the kill", pids.len());
    runtime().block_on(async {
        let mut events =
            job.cgroup.events(&corral::cgroup::Notifier::new(), &no_psi()).expect("event stream");
        let start = Instant::now();
        job.cgroup.kill(10 * SECOND).await.expect("kill");
        println!("empty after {:?}", start.elapsed());
        assert!(job.pids().is_empty(), "left: {:?}", job.pids());
        assert_eq!(flat_keyed(job.file("cgroup.events"))["populated"], 0);
        event_matching(&mut events, 5 * SECOND, "Emptied", |e| *e == CgroupEvent::Emptied).await;
    });
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "the job's shell ended with {status}");
    for pid in pids {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = state.rsplit_once(") ").map(|(_, rest)| &rest[..1]).unwrap_or("gone");
        assert!(matches!(state, "Z" | "X" | "gone"), "pid {pid} survived in state {state}");
    }
    job.cgroup.remove().expect("an emptied cgroup can be removed");
}

pub fn oom_kill_reported_through_memory_events(_: &Context) {
    let m = manager();
    let resources = Resources {
        memory: MemoryLimits { hard_bytes: Some(32 * MI), ..MemoryLimits::default() },
        oom: OomMode::Kill,
        ..Resources::default()
    };
    let job = Job::create(&m, "oom", &resources);
    assert_eq!(read(job.file("memory.max")), (32 * MI).to_string());
    assert_eq!(read(job.file("memory.oom.group")), "1");
    let exe = self_exe();
    runtime().block_on(async {
        let mut events =
            job.cgroup.events(&corral::cgroup::Notifier::new(), &no_psi()).expect("event stream");
        let mut child = job.spawn(&[&exe, "hog", "--mib", "96"], Stdio::null());
        let start = Instant::now();
        let event = event_matching(
            &mut events,
            30 * SECOND,
            "OomKill",
            |e| matches!(e, CgroupEvent::OomKill { count } if *count >= 1),
        )
        .await;
        println!("{event:?} after {:?}", start.elapsed());
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "the hog ended with {status}");
    });
    let counts = flat_keyed(job.file("memory.events"));
    println!("memory.events: {counts:?}");
    assert!(counts["oom_kill"] >= 1 && counts["max"] >= 1);
    let stats = job.cgroup.stats().expect("stats");
    assert!(stats.memory.oom_kills.unwrap_or(0) >= 1, "stats: {:?}", stats.memory);
}

pub fn memory_high_then_freeze_grow_thaw_lets_the_job_finish(_: &Context) {
    let m = manager();
    let limits = MemoryLimits { high_bytes: Some(32 * MI), ..MemoryLimits::default() };
    let job = Job::create(&m, "grow", &Resources { memory: limits, ..Resources::default() });
    let exe = self_exe();
    runtime().block_on(async {
        let options = EventOptions { memory_pressure: Some(PsiTrigger::DEFAULT_MEMORY) };
        let mut events =
            job.cgroup.events(&corral::cgroup::Notifier::new(), &options).expect("event stream");
        println!("event sources: {:?}", events.sources());
        let mut child = job.spawn(&[&exe, "hog", "--mib", "64"], Stdio::piped());
        let stdout = child.stdout.take().unwrap();
        event_matching(&mut events, 30 * SECOND, "MemoryHigh", |e| {
            matches!(e, CgroupEvent::MemoryHigh { .. })
        })
        .await;
        // What an OOM policy does: stop the job, give it room, let it go on.
        job.cgroup.freeze(30 * SECOND).await.expect("freeze over memory.high");
        let grown = MemoryLimits { high_bytes: Some(256 * MI), ..MemoryLimits::default() };
        job.cgroup.update(&Resources { memory: grown, ..Resources::default() }).expect("grow");
        assert_eq!(read(job.file("memory.high")), (256 * MI).to_string());
        job.cgroup.thaw(10 * SECOND).await.expect("thaw");
        wait_line(stdout, "allocated 64 MiB", 60 * SECOND);
        let status = child.wait().unwrap();
        assert!(status.success(), "the grown job ended with {status}");
    });
    let counts = flat_keyed(job.file("memory.events"));
    println!("memory.events: {counts:?}");
    assert!(counts["high"] >= 1);
    assert_eq!(counts["oom_kill"], 0);
}

pub fn psi_trigger_fires_while_memory_high_throttles(_: &Context) {
    let m = manager();
    let limits = MemoryLimits { high_bytes: Some(16 * MI), ..MemoryLimits::default() };
    let job = Job::create(&m, "pressure", &Resources { memory: limits, ..Resources::default() });
    let exe = self_exe();
    runtime().block_on(async {
        let options = EventOptions { memory_pressure: Some(PsiTrigger::DEFAULT_MEMORY) };
        let mut events =
            job.cgroup.events(&corral::cgroup::Notifier::new(), &options).expect("event stream");
        assert_eq!(events.sources().memory_pressure, Some(PsiTrigger::DEFAULT_MEMORY));
        let mut child = job.spawn(&[&exe, "hog", "--mib", "64"], Stdio::null());
        let start = Instant::now();
        event_matching(&mut events, 30 * SECOND, "MemoryPressure", |e| {
            *e == CgroupEvent::MemoryPressure
        })
        .await;
        println!("pressure reported after {:?}", start.elapsed());
        println!("memory.pressure: {}", read(job.file("memory.pressure")).replace('\n', " | "));
        let _ = child.kill();
        let _ = child.wait();
    });
}
