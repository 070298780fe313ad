//! Pieces for the fault tests (`tests/cluster_faults.rs`,
//! `tests/cluster_chaos.rs`, `benches/cluster_faults/`): a job that writes
//! timestamps, the checker of "never two unfrozen copies of one cluster run
//! at once", a seeded random source, and a cluster of agents in network
//! namespaces of their own with the faults as methods (kill -9, link cuts,
//! etcd member kills) and a wait for it to settle.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use corral::cluster::records::{ClusterRun, ClusterRunState, LeaderRecord};

use super::{EtcdCluster, NodeOptions};
use crate::agent_harness::{job, secs, TestAgent};

pub const GIB: u64 = 1 << 30;

/// A script that appends `<run> <attempt> <copy> <wall ms>` every 100 ms,
/// `ticks` times, to `file`, then exits 0.
///
/// `<run>` and `<attempt>` are `CORRAL_CLUSTER_RUN` and
/// `CORRAL_CLUSTER_ATTEMPT` (`fallback` and `0` where the agent does not
/// set them). `<copy>` is a random token drawn when the process starts: it
/// tells apart two processes of one (run, attempt) — say a copy a node
/// still runs after the run was rebound elsewhere with the same attempt —
/// which the attempt alone could not. A copy adopted by a restarted agent
/// is the same process, so the same token.
///
/// `date +%s%3N` (coreutils) gives milliseconds; busybox's `date` does not
/// know `%N`, and the jobs here run on the host's binaries.
pub fn stamp_script(file: &Path, fallback: &str, ticks: u32) -> String {
    let file = file.display();
    format!(
        "t=$(od -An -N8 -tx8 /dev/urandom | tr -d \" \"); \
         r=${{CORRAL_CLUSTER_RUN:-{fallback}}}; a=${{CORRAL_CLUSTER_ATTEMPT:-0}}; i=0; \
         while [ $i -lt {ticks} ]; do echo \"$r $a $t $(date +%s%3N)\" >> {file} || exit 3; \
         sleep 0.1; i=$((i+1)); done"
    )
}

/// One process's lines: a copy of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub run: String,
    pub attempt: u32,
    pub token: String,
    /// Wall milliseconds of its first and last line.
    pub first: i64,
    pub last: i64,
    pub lines: usize,
}

/// What the stamps say: every run's copies, in the order they started.
#[derive(Debug, Default)]
pub struct Stamps {
    pub runs: BTreeMap<String, Vec<Copy>>,
}

/// Two copies of one run that wrote in the same span of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    pub run: String,
    pub earlier: Copy,
    pub later: Copy,
}

impl fmt::Display for Overlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b) = (&self.earlier, &self.later);
        write!(
            f,
            "run {}: attempt {} (copy {}) wrote {}..{} and attempt {} (copy {}) began at {}, \
             {} ms before the first one's last line",
            self.run,
            a.attempt,
            a.token,
            a.first,
            a.last,
            b.attempt,
            b.token,
            b.first,
            a.last - b.first
        )
    }
}

impl Stamps {
    /// Parses the lines of [`stamp_script`]. A line cut short by a kill
    /// (the last one of a copy, written while it died) is skipped; any
    /// other line that does not parse is an error, naming it.
    pub fn parse(text: &str) -> Result<Stamps, String> {
        let mut copies: BTreeMap<(String, String), Copy> = BTreeMap::new();
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let parsed = match fields.as_slice() {
                [run, attempt, token, ms] => attempt
                    .parse::<u32>()
                    .ok()
                    .zip(ms.parse::<i64>().ok())
                    .map(|(a, ms)| (run.to_string(), a, token.to_string(), ms)),
                _ => None,
            };
            let Some((run, attempt, token, ms)) = parsed else {
                if n + 1 == lines.len() && !text.ends_with('\n') {
                    continue;
                }
                return Err(format!("line {}: not `<run> <attempt> <copy> <ms>`: {line:?}", n + 1));
            };
            let copy = copies.entry((run.clone(), token.clone())).or_insert(Copy {
                run,
                attempt,
                token,
                first: ms,
                last: ms,
                lines: 0,
            });
            if copy.attempt != attempt {
                return Err(format!(
                    "line {}: copy {} changed attempt: {line:?}",
                    n + 1,
                    copy.token
                ));
            }
            copy.first = copy.first.min(ms);
            copy.last = copy.last.max(ms);
            copy.lines += 1;
        }
        let mut stamps = Stamps::default();
        for copy in copies.into_values() {
            stamps.runs.entry(copy.run.clone()).or_default().push(copy);
        }
        for copies in stamps.runs.values_mut() {
            copies.sort_by_key(|c| (c.first, c.last));
        }
        Ok(stamps)
    }

    /// Reads and parses the file (missing: no stamps yet).
    pub fn read(file: &Path) -> Result<Stamps, String> {
        Stamps::parse(&fs::read_to_string(file).unwrap_or_default())
    }

    /// Every pair of copies of one run whose [first, last] spans meet. A
    /// frozen copy writes nothing, and a superseded one is killed without
    /// being thawed, so under the guarantee the spans are disjoint.
    pub fn overlaps(&self) -> Vec<Overlap> {
        let mut found = Vec::new();
        for (run, copies) in &self.runs {
            // Sorted by start: a copy overlaps a later one iff the latest
            // end so far reaches the later one's start.
            let mut reach: Option<&Copy> = None;
            for copy in copies {
                if let Some(before) = reach {
                    if before.last >= copy.first {
                        found.push(Overlap {
                            run: run.clone(),
                            earlier: before.clone(),
                            later: copy.clone(),
                        });
                    }
                }
                if reach.is_none_or(|r| copy.last > r.last) {
                    reach = Some(copy);
                }
            }
        }
        found
    }

    /// The gaps between one run's consecutive copies, ms: how long it was
    /// not running at all between one copy's last line and the next's first.
    pub fn gaps(&self) -> BTreeMap<String, Vec<i64>> {
        self.runs
            .iter()
            .filter(|(_, c)| c.len() > 1)
            .map(|(run, c)| (run.clone(), c.windows(2).map(|w| w[1].first - w[0].last).collect()))
            .collect()
    }

    /// Fails the test naming every overlap; the report otherwise.
    pub fn assert_no_overlap(&self, context: &str) -> String {
        let overlaps = self.overlaps();
        assert!(
            overlaps.is_empty(),
            "{context}: two unfrozen copies of one run at once:\n{}\n{self:#?}",
            overlaps.iter().map(|o| o.to_string()).collect::<Vec<_>>().join("\n")
        );
        self.report()
    }

    /// One line per run: its copies (attempt, lines) and the gaps.
    pub fn report(&self) -> String {
        let gaps = self.gaps();
        self.runs
            .iter()
            .map(|(run, copies)| {
                let shown: Vec<String> = copies
                    .iter()
                    .map(|c| format!("attempt {} ({} lines)", c.attempt, c.lines))
                    .collect();
                let gap = gaps.get(run).map(|g| format!(", gaps {g:?} ms")).unwrap_or_default();
                format!("{run}: {}{gap}\n", shown.join(", "))
            })
            .collect()
    }
}

/// SplitMix64: a small generator whose whole state is its seed, so a run
/// is replayed from the printed seed.
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// The seed in `var` (decimal or 0x hex) or else one from the clock,
    /// printed either way so that a failing run can be replayed.
    pub fn from_env(var: &str) -> (Rng, u64) {
        let seed = match std::env::var(var) {
            Ok(text) => {
                let text = text.trim();
                let parsed = match text.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => text.parse(),
                };
                parsed.unwrap_or_else(|e| panic!("{var}={text:?}: not a seed ({e})"))
            }
            Err(_) => SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64,
        };
        eprintln!("seed {seed} (replay with {var}={seed})");
        (Rng::new(seed), seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is nothing at these sizes.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// Node names of a [`FaultCluster`].
pub const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];

/// A three-member TLS etcd on a bridge and three agents of 4 GiB each, in
/// network namespaces of their own, every one standing for election.
pub struct FaultCluster {
    // Dropped first: the agents stop (and their cgroups go) before etcd.
    pub nodes: Vec<TestAgent>,
    pub etcd: EtcdCluster,
    /// Where applied job files are written (outside /tmp).
    pub files: PathBuf,
    /// The file the stamp jobs write to (a host directory every node's
    /// jobs can reach).
    pub stamps: PathBuf,
    pub lease_ttl: Duration,
    /// Nodes whose blackhole routes to the other nodes are in place.
    isolated: BTreeSet<usize>,
    /// Dropped last: one fault cluster at a time in a test binary.
    _alone: std::sync::MutexGuard<'static, ()>,
}

/// Held by each fault cluster while it lives. Three etcd members and three
/// agents per cluster are a machine's worth of work on a small test host:
/// several at once starve each other's elections and lease renewals, and a
/// fault test must see the faults it makes, not ones the load makes.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl FaultCluster {
    /// `extra`: further agent configuration (YAML lines) for every node.
    pub fn start(lease_ttl: Duration, extra: &str) -> Option<FaultCluster> {
        // A test that failed while holding it poisoned it; the next may go.
        let alone = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let etcd = EtcdCluster::start_bridged(3, true)?;
        let nodes: Vec<TestAgent> = NODES
            .iter()
            .map(|name| {
                let options = NodeOptions { lease_ttl, netns: true, extra, ..Default::default() };
                etcd.started_agent(name, &options)
            })
            .collect();
        let files = nodes[0].data_file("cluster-jobs");
        fs::create_dir_all(&files).unwrap();
        let stamps = shared_file(&nodes[0], "stamps");
        let cluster = FaultCluster {
            nodes,
            etcd,
            files,
            stamps,
            lease_ttl,
            isolated: BTreeSet::new(),
            _alone: alone,
        };
        cluster.wait_nodes(3, secs(60));
        Some(cluster)
    }

    pub fn index(&self, name: &str) -> usize {
        NODES.iter().position(|n| *n == name).unwrap_or_else(|| panic!("no node {name}"))
    }

    pub fn node(&self, name: &str) -> &TestAgent {
        &self.nodes[self.index(name)]
    }

    /// Writes the job file `{name}.yaml`.
    pub fn write_job(&self, name: &str, text: &str) {
        fs::write(self.files.join(format!("{name}.yaml")), text).unwrap();
    }

    pub fn remove_job(&self, name: &str) {
        let _ = fs::remove_file(self.files.join(format!("{name}.yaml")));
    }

    /// A one-shot job writing stamps for about `secs` seconds, with
    /// `extra` YAML lines.
    pub fn write_stamp_job(&self, name: &str, secs: u32, extra: &str) {
        let script = stamp_script(&self.stamps, name, secs * 10);
        self.write_job(name, &job(name, &script, extra));
    }

    /// The job names of the files written.
    pub fn applied(&self) -> BTreeSet<String> {
        fs::read_dir(&self.files)
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".yaml").map(str::to_owned))
            .collect()
    }

    /// `corral apply --prune` of the files through a node that is not cut
    /// off (any: the command runs on the host), retried while etcd has no
    /// quorum for at most `timeout`.
    pub fn apply_within(&self, timeout: Duration) -> String {
        let dir = self.files.to_string_lossy().into_owned();
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.nodes[0].corral(&["apply", "--prune", &dir]);
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "corral apply: {}\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.etcd.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// One `corral apply --prune`: its stdout, or why it failed.
    pub fn try_apply(&self) -> Result<String, String> {
        let dir = self.files.to_string_lossy().into_owned();
        let out = self.nodes[0].corral(&["apply", "--prune", &dir]);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
        }
    }

    /// [`apply_within`](Self::apply_within) without a retry: with etcd
    /// healthy (or one member down) it must succeed at once.
    pub fn apply(&self) -> String {
        self.apply_within(Duration::ZERO)
    }

    pub fn runs(&self) -> BTreeMap<String, ClusterRun> {
        self.etcd.cluster_runs()
    }

    /// Waits until `done` holds of the cluster runs, failing with them.
    pub fn wait_runs(
        &self,
        what: &str,
        timeout: Duration,
        done: impl FnMut(&BTreeMap<String, ClusterRun>) -> bool,
    ) -> BTreeMap<String, ClusterRun> {
        self.etcd.wait_runs(what, timeout, done)
    }

    /// The runs of `job`.
    pub fn runs_of(&self, runs: &BTreeMap<String, ClusterRun>, job: &str) -> Vec<ClusterRun> {
        runs.values().filter(|r| r.job == job).cloned().collect()
    }

    /// Waits until `job`'s one run is bound and its node reports it
    /// running: that node's name.
    pub fn wait_running(&self, job: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let runs = self.runs();
            if let Some(run) = runs.values().find(|r| r.job == job) {
                if let ClusterRunState::Bound { node, .. } = &run.state {
                    let key = self.etcd.keys().status(&run.run);
                    let statuses = self.etcd.get_prefix_json(&key);
                    if statuses.get(&key).is_some_and(|s| s["phase"] == "running") {
                        return node.clone();
                    }
                }
            }
            assert!(Instant::now() < deadline, "{job} not running after {timeout:?}: {runs:#?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every run ended (none pending, bound or lost), and every job file
    /// has a run: what a healed cluster comes to.
    pub fn settle(&self, timeout: Duration) -> BTreeMap<String, ClusterRun> {
        let applied = self.applied();
        self.wait_runs("the cluster to settle (every run ended)", timeout, |runs| {
            runs.values().all(|r| matches!(r.state, ClusterRunState::Ended { .. }))
                && applied.iter().all(|job| runs.values().any(|r| &r.job == job))
        })
    }

    pub fn leader(&self) -> Option<String> {
        let key = self.etcd.keys().leader();
        self.etcd.records::<LeaderRecord>(&key).into_values().next().map(|l| l.node)
    }

    /// Waits for a leader other than `not`.
    pub fn wait_leader(&self, not: Option<&str>, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            match self.leader() {
                Some(leader) if Some(leader.as_str()) != not => return leader,
                _ => {}
            }
            assert!(Instant::now() < deadline, "no leader other than {not:?} after {timeout:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The names of the node records there now.
    pub fn node_records(&self) -> BTreeSet<String> {
        self.etcd
            .get_prefix_json(&self.etcd.keys().nodes())
            .values()
            .filter_map(|n| n["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// Waits until `count` nodes have a record, failing with the agents'
    /// logs (why one did not join) and the members'.
    pub fn wait_nodes(&self, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let there = self.etcd.get_prefix_raw(&self.etcd.keys().nodes()).len();
            if there == count {
                return;
            }
            if Instant::now() > deadline {
                let agents: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|a| {
                        let log = a.log_text();
                        let lines: Vec<&str> = log.lines().collect();
                        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                        format!("--- agent {} ---\n{tail}", a.parent)
                    })
                    .collect();
                panic!(
                    "timed out after {timeout:?} waiting for {count} node records, {there} there\n{}\n{}",
                    agents.join("\n"),
                    self.etcd.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until a copy of `run`'s attempt `attempt` has written a stamp.
    pub fn wait_stamp(&self, run: &str, attempt: u32, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self
            .read_stamps()
            .runs
            .get(run)
            .is_some_and(|copies| copies.iter().any(|c| c.attempt == attempt))
        {
            assert!(
                Instant::now() < deadline,
                "no stamp of {run} attempt {attempt} in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// kill -9 of node `i`'s agent; its runs go on (a restarted agent
    /// adopts them).
    pub fn kill9(&mut self, i: usize) {
        self.nodes[i].kill9();
    }

    /// The node is lost as a machine is: the agent and every process of
    /// its runs killed with SIGKILL (cgroup.kill of each run's v2 cgroup).
    pub fn lose(&mut self, i: usize) {
        self.nodes[i].kill9();
        let unified = Path::new("/sys/fs/cgroup/unified").join(&self.nodes[i].parent);
        if let Ok(entries) = fs::read_dir(&unified) {
            for e in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
                let _ = fs::write(e.path().join("cgroup.kill"), "1");
            }
        }
    }

    pub fn restart(&mut self, i: usize) {
        let FaultCluster { nodes, etcd, .. } = self;
        etcd.start_agent(&mut nodes[i]);
    }

    fn net(&self) -> &super::net::Bridge {
        self.etcd.net.as_ref().expect("a bridged cluster")
    }

    /// Takes node `i`'s link down: it reaches neither etcd nor the others.
    pub fn cut(&self, i: usize) {
        self.net().cut_off(&self.nodes[i].parent);
    }

    pub fn reconnect(&self, i: usize) {
        self.net().reconnect(&self.nodes[i].parent);
    }

    /// Node `i` can no longer reach the other nodes (nor they it: replies
    /// are dropped), but still reaches etcd on the bridge's address.
    pub fn isolate_from_nodes(&mut self, i: usize) {
        self.routes(i, "add");
        self.isolated.insert(i);
    }

    pub fn rejoin_nodes(&mut self, i: usize) {
        self.routes(i, "del");
        self.isolated.remove(&i);
    }

    fn routes(&self, i: usize, verb: &str) {
        let net = self.net();
        let key = &self.nodes[i].parent;
        for (j, other) in self.nodes.iter().enumerate().filter(|(j, _)| *j != i) {
            let _ = j;
            let address = format!("{}/32", net.address(&other.parent));
            let out = net.exec(key, "ip", &["route", verb, "blackhole", &address]);
            assert!(
                out.status.success(),
                "ip route {verb} blackhole {address}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Whether node `i` reaches node `j`'s HTTP endpoint (a TCP connect
    /// from inside `i`'s namespace).
    pub fn reaches(&self, i: usize, j: usize) -> bool {
        let net = self.net();
        let target = self.nodes[j].listen;
        let script = format!("exec 3<>/dev/tcp/{}/{}", target.ip(), target.port());
        // bash's /dev/tcp, bounded by timeout(1): a blackhole route fails
        // at once, a cut link would hang.
        let out = net.exec(&self.nodes[i].parent, "timeout", &["2", "bash", "-c", &script]);
        out.status.success()
    }

    /// Stamps written so far.
    pub fn read_stamps(&self) -> Stamps {
        Stamps::read(&self.stamps).unwrap_or_else(|e| panic!("{}: {e}", self.stamps.display()))
    }

    /// Whether the stamp file grows within `within`: some copy is writing.
    pub fn stamps_growing(&self, within: Duration) -> bool {
        let size = || fs::metadata(&self.stamps).map(|m| m.len()).unwrap_or(0);
        let before = size();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            if size() > before {
                return true;
            }
        }
        false
    }

    /// What must hold once the cluster has settled: no bindings left, no
    /// job cgroup left on any node (every run's cgroup is removed when it
    /// ends), no job process left, and the jobs in etcd are the files
    /// applied.
    pub fn assert_clean(&self) {
        let bindings = self.etcd.get_prefix_raw(&self.etcd.keys().bindings());
        assert!(bindings.is_empty(), "bindings left: {:?}", bindings.keys().collect::<Vec<_>>());
        for (i, node) in self.nodes.iter().enumerate() {
            node.wait_for(&format!("{}'s job cgroups to go", NODES[i]), secs(30), || {
                node.job_cgroups().is_empty()
            });
        }
        let jobs: BTreeSet<String> =
            super::by_name(self.etcd.get_prefix_raw(&self.etcd.keys().jobs()))
                .into_keys()
                .collect();
        assert_eq!(jobs, self.applied(), "the cluster's jobs are the applied files");
    }
}

impl Drop for FaultCluster {
    fn drop(&mut self) {
        // Links up again and routes gone, so that a failed test leaves no
        // node unreachable while it is torn down.
        if let Some(net) = self.etcd.net.as_ref() {
            for node in &self.nodes {
                if net.has(&node.parent) {
                    net.reconnect(&node.parent);
                }
            }
        }
    }
}

/// An empty file in `agent`'s data directory that the jobs of every node
/// may append to: each agent runs its jobs as dynamic users of its own, so
/// a file created by the first writer would refuse the others.
pub fn shared_file(agent: &TestAgent, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = agent.data_file(name);
    fs::write(&path, "").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
    path
}

/// The outcome of an ended run and the node it ended on.
pub fn outcome_and_node(run: &ClusterRun) -> (String, String) {
    match &run.state {
        ClusterRunState::Ended { outcome, node, .. } => {
            (outcome.clone(), node.clone().unwrap_or_default())
        }
        other => panic!("{} has not ended: {other:?}", run.run),
    }
}

/// A timeline of what a test did, printed at the end (and on failure).
#[derive(Default)]
pub struct Timeline {
    start: Option<Instant>,
    entries: Vec<(Duration, String)>,
}

impl Timeline {
    pub fn note(&mut self, what: impl Into<String>) {
        let start = *self.start.get_or_insert_with(Instant::now);
        let what = what.into();
        let at = start.elapsed();
        eprintln!("[{:>7.2}s] {what}", at.as_secs_f64());
        self.entries.push((at, what));
    }

    pub fn render(&self) -> String {
        self.entries
            .iter()
            .map(|(at, what)| format!("[{:>7.2}s] {what}\n", at.as_secs_f64()))
            .collect()
    }
}
