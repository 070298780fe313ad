//! The cluster benchmark: `corral apply` of 500 one-shot jobs across three
//! nodes, timed until every run is bound, running and ended; the scheduler's
//! decisions per second; etcd's write load per run. Beside it, in the same
//! run, the same 500 jobs dropped into one agent's jobs directory without a
//! cluster. One table, the ratio cluster over one node.
//!
//! `cargo bench --bench cluster` runs it at full scale (release build). Under
//! `cargo test --all-targets` (no `--bench` argument) it runs once with a few
//! jobs as a smoke test: the figures then mean nothing, but every path runs.
//!
//! The setup is the cluster tests' (tests/cluster_harness): a three-member
//! etcd on loopback with TLS and client certificates, and three real agents
//! (node-a, node-b, node-c, 4 GiB each, all standing for election), sharing
//! this machine's CPUs with etcd and with each other.
//!
//! The job is `sleep 1` under a 16 MiB hard memory limit (see
//! [`RESOURCES`]), not `/bin/true`: a run that ends within
//! milliseconds may be reported to etcd already ended (the node's status
//! outbox sends the latest state, not every step), so "every run running"
//! would not be observable in the cluster; one second of sleep is a known
//! floor both sides pay alike, and it keeps many runs alive at once, as a
//! batch is.
//!
//! Where each figure comes from:
//! - bound and ended in the cluster: a watch on the run records (`runs/`),
//!   the moment each event arrives at the bench;
//! - running and ended on the nodes: each agent's own store (the time of
//!   each run's transition to `running` and of its end), for the cluster's
//!   three nodes and the lone agent alike, so the two sides are measured the
//!   same way;
//! - decisions per second: the leader's `corral_cluster_bindings_total`
//!   over the span from the first binding to the last;
//! - etcd write load: etcd's own counters on each member's `/metrics`
//!   before and after (puts, deletes and transactions as one member applied
//!   them, which every member does alike; client bytes received summed over
//!   the members), divided by the number of runs. They include what the
//!   agents write anyway meanwhile (lease renewals, node records).

#[path = "../../tests/agent_harness/mod.rs"]
mod agent_harness;
#[path = "../../tests/cluster_harness/mod.rs"]
mod cluster_harness;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use agent_harness::TestAgent;
use cluster_harness::{EtcdCluster, NodeOptions, ROOT};
use corral::cluster::records::{ClusterRun, ClusterRunState, LeaderRecord};

/// The job every run is.
const COMMAND: &str = "[/bin/sleep, \"1\"]";
/// Its resources. The scheduler binds a run to the node with the most free
/// memory, ties by name: jobs that ask for no memory would all go to
/// node-a. A hard limit (the demand the scheduler places by) spreads them
/// over the three nodes as real jobs with limits would be; the lone agent
/// runs the same files.
const RESOURCES: &str = "resources: {memory: {hard: 16Mi}}";

/// etcd's counters read before and after, as their names are.
const ETCD_APPLIED: &[&str] =
    &["etcd_mvcc_put_total", "etcd_mvcc_delete_total", "etcd_mvcc_txn_total"];
const ETCD_RECEIVED: &str = "etcd_network_client_grpc_received_bytes_total";

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let jobs = if full { 500 } else { 6 };
    let Some(cluster) = cluster_side(jobs) else { return };
    let single = single_side(jobs);
    print_table(jobs, &cluster, &single);
}

/// What the cluster's side measured.
struct ClusterFigures {
    /// The `corral apply` command, start to exit.
    apply: Duration,
    /// Apply started → the last run record seen bound.
    all_bound: Duration,
    /// From the first run seen bound to the last.
    binding_span: Duration,
    /// The leader's bindings (outcome bound) meanwhile.
    bindings: u64,
    nodes: Stores,
    /// Apply started → the last run record seen ended.
    all_ended_records: Duration,
    /// Runs per node, by name.
    spread: BTreeMap<String, usize>,
    /// Counter → increase over the run.
    etcd: BTreeMap<&'static str, f64>,
}

/// What the agents' stores say, relative to the moment the jobs were
/// handed over.
struct Stores {
    all_running: Duration,
    all_ended: Duration,
}

fn cluster_side(jobs: usize) -> Option<ClusterFigures> {
    let etcd = EtcdCluster::start(3, true)?;
    let names = ["node-a", "node-b", "node-c"];
    let nodes: Vec<TestAgent> = names
        .iter()
        .map(|name| {
            let mut agent = etcd.agent(name, &NodeOptions::default());
            start_quiet(&mut agent);
            agent
        })
        .collect();
    let keys = etcd.keys();
    etcd.wait_records("three nodes", &keys.nodes(), secs(60), |n| n.len() == 3);
    etcd.wait_records("a leader", &keys.leader(), secs(60), |l| !l.is_empty());

    let files = nodes[0].data_file("cluster-jobs");
    fs::create_dir_all(&files).unwrap();
    for i in 0..jobs {
        let name = format!("c{i:04}");
        fs::write(files.join(format!("{name}.yaml")), job_text(&name)).unwrap();
    }

    let watch = RunWatch::start(&etcd, jobs);
    let leader = leader_of(&etcd, &nodes);
    let bindings_before = bindings_bound(leader);
    let etcd_before = etcd_counters(&etcd);

    let wall = now_ms();
    let started = Instant::now();
    let dir = files.to_string_lossy().into_owned();
    nodes[0].corral_ok(&["apply", &dir]);
    let apply = started.elapsed();
    let seen = watch.finish(secs(120 + jobs as u64));
    let etcd_after = etcd_counters(&etcd);
    let bindings = bindings_bound(leader_of(&etcd, &nodes)) - bindings_before;

    let stores: Vec<StoreTimes> =
        nodes.iter().map(|n| store_times(n, wall, None, secs(60))).collect();
    let total: usize = stores.iter().map(|s| s.runs).sum();
    assert_eq!(total, jobs, "every applied run ran on exactly one node");
    let spread = names.iter().zip(&stores).map(|(n, s)| (n.to_string(), s.runs)).collect();
    let nodes_figures = Stores {
        all_running: stores.iter().map(|s| s.all_running).max().unwrap(),
        all_ended: stores.iter().map(|s| s.all_ended).max().unwrap(),
    };
    let first_bound = seen.bound.iter().min().copied().unwrap();
    let last_bound = seen.bound.iter().max().copied().unwrap();
    let last_ended = seen.ended.iter().max().copied().unwrap();
    let etcd_delta =
        etcd_after.iter().map(|(k, v)| (*k, v - etcd_before.get(k).unwrap_or(&0.0))).collect();

    // The agents stop before etcd does.
    drop(nodes);
    drop(etcd);
    Some(ClusterFigures {
        apply,
        all_bound: last_bound - started,
        binding_span: last_bound - first_bound,
        bindings,
        nodes: nodes_figures,
        all_ended_records: last_ended - started,
        spread,
        etcd: etcd_delta,
    })
}

/// The same jobs dropped into one agent's jobs directory at once (staged
/// beside it and renamed in, so the watcher sees whole files), no cluster.
fn single_side(jobs: usize) -> Stores {
    let mut agent = TestAgent::new("");
    start_quiet(&mut agent);
    agent.wait_for("the agent to be ready", secs(30), || {
        std::net::TcpStream::connect(agent.listen).is_ok()
            && agent.http_get("/readyz", None).0 == 200
    });
    let staging = agent.root.path().join("staging");
    fs::create_dir(&staging).unwrap();
    for i in 0..jobs {
        let name = format!("c{i:04}");
        let file = staging.join(format!("{name}.yaml"));
        fs::write(&file, job_text(&name)).unwrap();
        fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    }
    let wall = now_ms();
    for i in 0..jobs {
        let file = format!("c{i:04}.yaml");
        fs::rename(staging.join(&file), agent.jobs.join(&file)).unwrap();
    }
    let times = store_times(&agent, wall, Some(jobs), secs(120 + jobs as u64));
    assert_eq!(times.runs, jobs, "one run per job file");
    Stores { all_running: times.all_running, all_ended: times.all_ended }
}

fn job_text(name: &str) -> String {
    format!("name: {name}\ncommand: {COMMAND}\n{RESOURCES}\n")
}

fn secs(n: u64) -> Duration {
    agent_harness::secs(n)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Starts an agent as a node would run it (`RUST_LOG=info`: the harness's
/// default, debug, logs several lines per run and costs time of its own)
/// and waits for its control socket.
fn start_quiet(agent: &mut TestAgent) {
    agent.start_with(|c| {
        c.env("RUST_LOG", "info");
    });
    let socket = agent.state.join("corral.sock");
    agent.wait_for("the control socket", secs(20), || socket.exists());
}

/// One agent's runs as its store recorded them.
struct StoreTimes {
    runs: usize,
    /// `since_ms` → the last run's first transition to running.
    all_running: Duration,
    /// `since_ms` → the last run's end.
    all_ended: Duration,
}

/// Waits until the agent's store holds no run that has not ended (and, with
/// `expect`, that many runs in all), then reads when each started running
/// and ended. A node of the cluster is read after the cluster recorded
/// every run ended, which it does from the nodes' reports: it holds its
/// share by then, maybe none in a smoke run.
fn store_times(
    agent: &TestAgent,
    since_ms: i64,
    expect: Option<usize>,
    timeout: Duration,
) -> StoreTimes {
    let mut db = None;
    agent.wait_for("the store", secs(10), || {
        db = agent.db();
        db.is_some()
    });
    let db = db.unwrap();
    let count = |sql: &str| -> Option<usize> {
        db.query_row(sql, [], |r| r.get::<_, i64>(0)).ok().map(|n| n as usize)
    };
    let deadline = Instant::now() + timeout;
    loop {
        let live = count("SELECT COUNT(*) FROM runs WHERE terminal = 0");
        let all = count("SELECT COUNT(*) FROM runs");
        if live == Some(0) && expect.is_none_or(|n| all == Some(n)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "runs still live on {}: {live:?} of {all:?}\n{}",
            agent.parent,
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (runs, succeeded, last_ended): (i64, i64, Option<i64>) = db
        .query_row(
            "SELECT COUNT(*), COALESCE(SUM(phase = 'succeeded'), 0), MAX(finished_at) FROM runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(runs, succeeded, "every sleep 1 succeeds\n{}", agent.log_text());
    let last_running: Option<i64> = db
        .query_row(
            "SELECT MAX(first) FROM (SELECT MIN(at) AS first FROM transitions \
             WHERE to_phase = 'running' GROUP BY run_id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let ms =
        |at: Option<i64>| Duration::from_millis(at.map_or(0, |at| (at - since_ms).max(0)) as u64);
    StoreTimes { runs: runs as usize, all_running: ms(last_running), all_ended: ms(last_ended) }
}

/// When each run record was first seen bound and seen ended, by a watch on
/// `runs/` from a thread of its own (no polling: the reads would add to
/// etcd's load being measured).
struct RunWatch {
    done: mpsc::Receiver<Result<Seen, String>>,
}

struct Seen {
    bound: Vec<Instant>,
    ended: Vec<Instant>,
}

impl RunWatch {
    /// Returns once the watch is established.
    fn start(etcd: &EtcdCluster, runs: usize) -> RunWatch {
        let config = etcd.client_config("bench", ROOT);
        let prefix = etcd.keys().runs();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let seen = runtime.block_on(watch_runs(config, prefix, runs, ready_tx));
            let _ = done_tx.send(seen);
        });
        ready_rx.recv().expect("the watch thread started").expect("watching run records");
        RunWatch { done }
    }

    fn finish(self, timeout: Duration) -> Seen {
        match self.done.recv_timeout(timeout) {
            Ok(Ok(seen)) => seen,
            Ok(Err(e)) => panic!("watching run records: {e}"),
            Err(e) => panic!("not every run ended within {timeout:?} ({e})"),
        }
    }
}

async fn watch_runs(
    config: corral::config::ClusterConfig,
    prefix: String,
    runs: usize,
    ready: mpsc::Sender<Result<(), String>>,
) -> Result<Seen, String> {
    let setup = async {
        let mut client =
            corral::cluster::etcd::connect(&config).await.map_err(|e| e.to_string())?;
        let options = etcd_client::WatchOptions::new().with_prefix();
        client.watch(prefix.as_str(), Some(options)).await.map_err(|e| e.to_string())
    };
    let mut stream = match setup.await {
        Ok(stream) => {
            ready.send(Ok(())).unwrap();
            stream
        }
        Err(e) => {
            ready.send(Err(e.clone())).unwrap();
            return Err(e);
        }
    };
    let mut bound: BTreeMap<String, Instant> = BTreeMap::new();
    let mut ended: BTreeMap<String, Instant> = BTreeMap::new();
    while ended.len() < runs {
        let answer = stream.message().await.map_err(|e| e.to_string())?;
        let answer = answer.ok_or("the watch ended")?;
        if answer.canceled() {
            return Err(format!("the watch was cancelled: {}", answer.cancel_reason()));
        }
        let now = Instant::now();
        for event in answer.events() {
            let Some(kv) = event.kv() else { continue };
            if event.event_type() != etcd_client::EventType::Put {
                continue;
            }
            let key = kv.key_str().map_err(|e| e.to_string())?;
            let run: ClusterRun =
                corral::cluster::records::decode(key, kv.value()).map_err(|e| e.to_string())?;
            match run.state {
                ClusterRunState::Pending { .. } => {}
                ClusterRunState::Bound { .. } => {
                    bound.entry(run.run).or_insert(now);
                }
                ClusterRunState::Ended { ref outcome, .. } => {
                    if outcome != "succeeded" {
                        return Err(format!("{} ended {outcome}", run.run));
                    }
                    // A run ended before its bound record was seen (both
                    // in one answer) was bound no later than that.
                    bound.entry(run.run.clone()).or_insert(now);
                    ended.entry(run.run).or_insert(now);
                }
                // States other parts of the cluster may add (a lost node's
                // run, say) are neither bound here nor ended.
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
    }
    Ok(Seen { bound: bound.into_values().collect(), ended: ended.into_values().collect() })
}

/// The agent whose node the leader record names.
fn leader_of<'a>(etcd: &EtcdCluster, nodes: &'a [TestAgent]) -> &'a TestAgent {
    let records = etcd.records::<LeaderRecord>(&etcd.keys().leader());
    let leader = records.into_values().next().expect("a leader record").node;
    let i = ["node-a", "node-b", "node-c"].iter().position(|n| *n == leader).unwrap();
    &nodes[i]
}

/// `corral_cluster_bindings_total{outcome="bound"}` on the agent's /metrics.
fn bindings_bound(agent: &TestAgent) -> u64 {
    let (status, _, body) = agent.http_get("/metrics", None);
    assert_eq!(status, 200, "/metrics: {body}");
    body.lines()
        .find_map(|l| l.strip_prefix("corral_cluster_bindings_total{outcome=\"bound\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("the leader shows no bindings counter:\n{body}"))
}

/// etcd's counters: [`ETCD_APPLIED`] from member 0 (every member applies
/// every write), [`ETCD_RECEIVED`] summed over the members.
fn etcd_counters(etcd: &EtcdCluster) -> BTreeMap<&'static str, f64> {
    let mut out = BTreeMap::new();
    for member in 0..etcd.len() {
        let text = etcd_metrics(etcd, member);
        let value = |name: &str| -> f64 {
            // Summed over label sets (the received bytes are by gRPC type).
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter(|l| l.split(['{', ' ']).next() == Some(name))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        if member == 0 {
            for name in ETCD_APPLIED {
                out.insert(*name, value(name));
            }
        }
        *out.entry(ETCD_RECEIVED).or_insert(0.0) += value(ETCD_RECEIVED);
    }
    out
}

/// Member `i`'s /metrics, on its client URL, fetched with `openssl
/// s_client` (TLS with the root identity's client certificate, as etcd asks
/// of every client); openssl is already what the cluster tests need.
fn etcd_metrics(etcd: &EtcdCluster, i: usize) -> String {
    let pki = etcd.pki.as_ref().expect("the bench's etcd uses TLS");
    let endpoint = etcd.endpoint(i);
    let address = endpoint.trim_start_matches("https://");
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-connect", address])
        .arg("-CAfile")
        .arg(pki.ca())
        .arg("-cert")
        .arg(pki.cert(ROOT))
        .arg("-key")
        .arg(pki.key(ROOT))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl");
    // HTTP/1.0: etcd closes the connection after the answer, which ends
    // s_client (-quiet waits for that rather than for the end of stdin).
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    match text.split_once("\r\n\r\n") {
        Some((head, body))
            if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") =>
        {
            body.to_owned()
        }
        _ => panic!(
            "{endpoint}/metrics: {}\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn print_table(jobs: usize, cluster: &ClusterFigures, single: &Stores) {
    let s = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    let ratio = |a: Duration, b: Duration| format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64());
    let mut rows: Vec<[String; 4]> = vec![
        [
            format!("corral apply of {jobs} files (the command, start to exit)"),
            s(cluster.apply),
            String::new(),
            String::new(),
        ],
        [
            "handed over → every run bound (run records, watched)".into(),
            s(cluster.all_bound),
            String::new(),
            String::new(),
        ],
        [
            "handed over → every run running (agents' stores)".into(),
            s(cluster.nodes.all_running),
            s(single.all_running),
            ratio(cluster.nodes.all_running, single.all_running),
        ],
        [
            "handed over → every run ended (agents' stores)".into(),
            s(cluster.nodes.all_ended),
            s(single.all_ended),
            ratio(cluster.nodes.all_ended, single.all_ended),
        ],
        [
            "handed over → every run record ended (the cluster's view)".into(),
            s(cluster.all_ended_records),
            String::new(),
            String::new(),
        ],
        [
            format!(
                "scheduling decisions/s ({} bindings, first to last in {})",
                cluster.bindings,
                s(cluster.binding_span)
            ),
            format!("{:.0}/s", cluster.bindings as f64 / cluster.binding_span.as_secs_f64()),
            String::new(),
            String::new(),
        ],
    ];
    for (name, value) in &cluster.etcd {
        let per_run = value / jobs as f64;
        let (what, shown) = if *name == ETCD_RECEIVED {
            ("etcd client bytes received per run (all members)", format!("{per_run:.0} B"))
        } else {
            ("etcd writes per run", format!("{per_run:.2}"))
        };
        rows.push([format!("{what}: {name}"), shown, String::new(), String::new()]);
    }
    let spread: Vec<String> = cluster.spread.iter().map(|(n, r)| format!("{n} {r}")).collect();
    rows.push(["runs per node".into(), spread.join(", "), String::new(), String::new()]);

    let header = [
        format!("{jobs} × `sleep 1` (16Mi hard limit)"),
        "3-node cluster".to_owned(),
        "one node".to_owned(),
        "ratio".to_owned(),
    ];
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 4]| {
        let padded: Vec<String> =
            cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("| {} |", padded.join(" | "));
    };
    println!();
    line(&header);
    line(&widths.map(|w| "-".repeat(w)));
    for row in &rows {
        line(row);
    }
    println!(
        "\n{} CPUs; etcd 3 members (TLS) and 3 agents on this machine; the one-node side is \
         one agent, no cluster section.",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
}
