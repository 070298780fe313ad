//! A cluster on this one machine, for the cluster tests: a certificate
//! authority made with `openssl` at test time (no key is committed), an etcd
//! cluster of several members on loopback (Debian's etcd 3.4) with TLS and
//! client certificates for clients and peers alike, etcd's RBAC on corral's
//! key prefix, and real `corral agent` processes joined to it as nodes.
//!
//! A test binary declares both harnesses, this one using the other's
//! `TestAgent`:
//!
//! ```text
//! mod agent_harness;
//! mod cluster_harness;
//! ```
//!
//! With [`EtcdCluster::start_bridged`], agents can be given network
//! namespaces of their own ([`net`]), reaching etcd over a bridge.
//!
//! Everything lives in one directory under `CARGO_TARGET_TMPDIR` per
//! cluster, removed on drop after every member has been killed and reaped.
//! A failing test prints the tail of every member's log from the drop.

#![allow(dead_code)] // each test binary uses a different subset

pub mod faults;
pub mod net;

use std::collections::BTreeMap;
use std::fs;
use std::future::Future;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use corral::cluster::records::{ClusterRun, RunStatus};
use corral::config::{ClusterConfig, ClusterTls};

use crate::agent_harness::{secs, TestAgent};

/// How often [`EtcdCluster::start`] draws new ports when one was taken.
const START_ATTEMPTS: usize = 3;

/// The etcd user every administrative command runs as.
pub const ROOT: &str = "root";
/// The identity `corral apply` and `corral delete` run as.
pub const SUBMITTER: &str = "submitter";
/// An identity that may only read (dashboards, `corral ps --cluster`).
pub const READER: &str = "reader";
/// The node identities [`Pki::new`] issues and [`EtcdCluster::enable_rbac`]
/// makes agents; a node of another name needs [`Pki::issue_client`] (done
/// by [`EtcdCluster::agent`]) and, under RBAC, [`EtcdCluster::add_agent_user`].
pub const AGENT_NODES: &[&str] = &["node-a", "node-b", "node-c"];

/// The etcd roles, one per purpose (docs/cluster-security.md).
pub const AGENT_ROLE: &str = "corral-agent";
pub const SUBMITTER_ROLE: &str = "corral-submitter";
pub const READER_ROLE: &str = "corral-reader";

/// Whether etcd, etcdctl and openssl are here. Where one is missing: under
/// `CI` the test fails (`.ci/run` installs them); otherwise it prints why it
/// is skipped and the caller returns.
pub fn tools_present() -> bool {
    tools_here(&[("etcd", "--version"), ("etcdctl", "version"), ("openssl", "version")])
}

/// [`tools_present`], and `ip` (iproute2) for bridges and namespaces.
pub fn network_tools_present() -> bool {
    tools_present() && tools_here(&[("ip", "-V")])
}

fn tools_here(tools: &[(&'static str, &str)]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(tool, arg)| {
            !Command::new(tool)
                .arg(arg)
                .env("ETCDCTL_API", "3")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(tool, _)| *tool)
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} missing; .ci/run installs etcd-server, etcd-client, openssl (and iproute2)",
        missing.join(", ")
    );
    eprintln!(
        "skipped: {} not installed (apt-get install etcd-server etcd-client openssl iproute2)",
        missing.join(", ")
    );
    false
}

/// Runs `f` to completion on a runtime of its own, on a thread of its own,
/// so that synchronous tests (and async ones) can use the etcd client.
pub fn run_async<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// A certificate authority and the certificates it signed, in `dir`
/// (removed on drop): a server certificate for 127.0.0.1 and localhost,
/// which every etcd member presents to clients and to its peers, and client
/// certificates whose common name is the etcd user they act as.
pub struct Pki {
    dir: PathBuf,
}

/// The extensions of each kind of certificate. The server certificate is
/// also the members' peer certificate, and a member dialling a peer is
/// that peer's client, hence both key usages; etcd checks a peer's
/// certificate against the address it dials from, hence the IP in it.
const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = IP:127.0.0.1,DNS:localhost{more_addresses}
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
";

impl Pki {
    /// A new CA in `dir` (created), and certificates for the server,
    /// [`ROOT`], [`SUBMITTER`], [`READER`] and every one of [`AGENT_NODES`].
    pub fn new(dir: &Path) -> Pki {
        Pki::with_addresses(dir, &[])
    }

    /// [`Pki::new`], the server certificate valid for `addresses` too.
    pub fn with_addresses(dir: &Path, addresses: &[Ipv4Addr]) -> Pki {
        fs::create_dir_all(dir).unwrap();
        let pki = Pki { dir: dir.to_owned() };
        let more: String = addresses.iter().map(|a| format!(",IP:{a}")).collect();
        let config = OPENSSL_CONFIG.replace("{more_addresses}", &more);
        fs::write(pki.dir.join("openssl.cnf"), config).unwrap();
        pki.new_key("ca");
        // A random number in the CA's name: two CAs of one test (the
        // cluster's and a stranger's) are told apart in failure messages.
        let subject = format!("/CN=corral test CA {:016x}", rand_u64());
        pki.openssl(&[
            "req",
            "-new",
            "-x509",
            "-config",
            "openssl.cnf",
            "-extensions",
            "ca",
            "-key",
            "ca-key.pem",
            "-subj",
            &subject,
            "-days",
            "2",
            "-out",
            "ca.pem",
        ]);
        pki.sign("server", "server");
        for cn in [ROOT, SUBMITTER, READER].iter().chain(AGENT_NODES) {
            pki.issue_client(cn);
        }
        pki
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate: what clients trust etcd by, and etcd clients by.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server-key.pem")
    }

    /// The client certificate whose common name is `cn`.
    pub fn cert(&self, cn: &str) -> PathBuf {
        let path = self.dir.join(format!("client-{cn}.pem"));
        assert!(path.exists(), "no client certificate for {cn}: Pki::issue_client first");
        path
    }

    pub fn key(&self, cn: &str) -> PathBuf {
        self.dir.join(format!("client-{cn}-key.pem"))
    }

    pub fn has(&self, cn: &str) -> bool {
        self.dir.join(format!("client-{cn}.pem")).exists()
    }

    /// A client certificate and key with common name `cn`: once etcd's auth
    /// is on, the etcd user of that name.
    pub fn issue_client(&self, cn: &str) {
        self.sign(&format!("client-{cn}"), "client");
    }

    /// `ClusterTls` for a client acting as `cn`.
    pub fn tls(&self, cn: &str) -> ClusterTls {
        ClusterTls { ca: self.ca(), cert: self.cert(cn), key: self.key(cn) }
    }

    fn new_key(&self, name: &str) {
        self.openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &format!("{name}-key.pem"),
        ]);
    }

    /// A key and a certificate `{name}.pem` signed by the CA, with the
    /// extensions of `kind`; for a client, the common name is what follows
    /// `client-`.
    fn sign(&self, name: &str, kind: &str) {
        let cn = name.strip_prefix("client-").unwrap_or(name);
        self.new_key(name);
        self.openssl(&[
            "req",
            "-new",
            "-config",
            "openssl.cnf",
            "-key",
            &format!("{name}-key.pem"),
            "-subj",
            &format!("/CN={cn}"),
            "-out",
            &format!("{name}.csr"),
        ]);
        // A random serial: certificates of one CA must not share one, and
        // a serial file would be one more thing to keep in step.
        let serial = format!("0x{:016x}", rand_u64());
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-set_serial",
            &serial,
            "-days",
            "2",
            "-extfile",
            "openssl.cnf",
            "-extensions",
            kind,
            "-out",
            &format!("{name}.pem"),
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl").args(args).current_dir(&self.dir).output().unwrap();
        assert!(
            out.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS for each instance.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish() >> 1 // positive as a signed serial
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// An etcd cluster on loopback, each member on ports that were free when
/// it was made. Killed, reaped and removed on drop.
pub struct EtcdCluster {
    /// Only with TLS.
    pub pki: Option<Pki>,
    /// A key prefix of this cluster's own, for corral's keys
    /// (`cluster.prefix`).
    pub prefix: String,
    /// Only from [`start_bridged`](Self::start_bridged).
    pub net: Option<net::Bridge>,
    token: String,
    members: Vec<Member>,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `members` members (`--initial-cluster-state new`, a token of
    /// the cluster's own) and waits until every one is healthy; with `tls`,
    /// clients and peers alike must present a certificate of the cluster's
    /// CA (`--client-cert-auth`, `--peer-client-cert-auth`). `None` (the
    /// reason printed) where the tools are missing outside CI.
    pub fn start(members: usize, tls: bool) -> Option<EtcdCluster> {
        EtcdCluster::start_on(members, tls, false)
    }

    /// [`start`](Self::start), the members listening on a new bridge's
    /// address too, for agents with network namespaces of their own
    /// ([`NodeOptions::netns`]).
    pub fn start_bridged(members: usize, tls: bool) -> Option<EtcdCluster> {
        EtcdCluster::start_on(members, tls, true)
    }

    fn start_on(members: usize, tls: bool, bridged: bool) -> Option<EtcdCluster> {
        assert!(members >= 1);
        let present = if bridged { network_tools_present() } else { tools_present() };
        if !present {
            return None;
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let token = format!("corral-test-{}-{n}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix("etcd-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let net = bridged.then(net::Bridge::new);
        let addresses: Vec<Ipv4Addr> = net.iter().map(|n| n.gateway).collect();
        let pki = tls.then(|| Pki::with_addresses(&dir.path().join("pki"), &addresses));
        let mut cluster = EtcdCluster {
            pki,
            net,
            prefix: format!("/corral-{token}"),
            token,
            members: Vec::new(),
            dir,
        };
        let all: Vec<usize> = (0..members).collect();
        // Ports are free when drawn, but another test may bind one before
        // etcd does: then the cluster starts again on new ones.
        for attempt in 1..=START_ATTEMPTS {
            cluster.members = cluster.new_members(members);
            for &i in &all {
                cluster.spawn(i);
            }
            let Err(died) = cluster.await_healthy(&all) else { return Some(cluster) };
            let log = cluster.member_log(died);
            if attempt == START_ATTEMPTS || !log.contains("address already in use") {
                panic!("etcd member m{died} exited while starting{}", cluster.logs());
            }
            eprintln!("etcd member m{died} found its port taken; starting the cluster again");
            cluster.kill_all();
            for member in &cluster.members {
                let _ = fs::remove_dir_all(&member.data);
                let _ = fs::remove_file(&member.log);
            }
        }
        unreachable!()
    }

    /// `count` members on ports free now, with data directories and logs
    /// in the cluster's directory.
    fn new_members(&self, count: usize) -> Vec<Member> {
        // Every port taken at once, so that no two members draw the same.
        let listeners: Vec<TcpListener> =
            (0..2 * count).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let ports: Vec<u16> = listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
        (0..count)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                data: self.dir.path().join(format!("m{i}.data")),
                log: self.dir.path().join(format!("m{i}.log")),
                child: None,
            })
            .collect()
    }

    fn kill_all(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn scheme(&self) -> &'static str {
        if self.pki.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Member `i`'s client URL.
    pub fn endpoint(&self, i: usize) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.members[i].client_port)
    }

    /// Every member's client URL, running or not: what agents are given.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Every member's client URL on the bridge: what agents in network
    /// namespaces of their own are given.
    pub fn bridge_endpoints(&self) -> Vec<String> {
        let net = self.net.as_ref().expect("a bridged cluster (start_bridged)");
        (0..self.members.len())
            .map(|i| format!("{}://{}:{}", self.scheme(), net.gateway, self.members[i].client_port))
            .collect()
    }

    /// The client URLs of the members running now.
    pub fn live_endpoints(&self) -> Vec<String> {
        (0..self.members.len())
            .filter(|&i| self.members[i].child.is_some())
            .map(|i| self.endpoint(i))
            .collect()
    }

    fn peer_url(&self, i: usize) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.members[i].peer_port)
    }

    fn spawn(&mut self, i: usize) {
        let initial_cluster = (0..self.members.len())
            .map(|j| format!("{}={}", self.members[j].name, self.peer_url(j)))
            .collect::<Vec<_>>()
            .join(",");
        let member = &self.members[i];
        let client = self.endpoint(i);
        let mut listen = vec![client.clone()];
        if self.net.is_some() {
            listen.push(self.bridge_endpoints()[i].clone());
        }
        let peer = self.peer_url(i);
        let mut command = Command::new("etcd");
        command
            .arg(format!("--name={}", member.name))
            .arg(format!("--data-dir={}", member.data.display()))
            .arg(format!("--listen-client-urls={}", listen.join(",")))
            .arg(format!("--advertise-client-urls={}", listen.join(",")))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={initial_cluster}"))
            // On a restart the data directory holds the membership and these
            // two are ignored.
            .arg("--initial-cluster-state=new")
            .arg(format!("--initial-cluster-token={}", self.token))
            // Elections slower than etcd's defaults (100 ms, 1 s): on a
            // 2-CPU machine busy with builds, a member that misses
            // heartbeats for a second would start needless elections.
            .arg("--heartbeat-interval=250")
            .arg("--election-timeout=2500")
            // `corral apply` writes a whole set of jobs in one transaction;
            // etcd's default cap of 128 operations would refuse a large one
            // (docs/cluster.md).
            .arg("--max-txn-ops=1024");
        if let Some(pki) = &self.pki {
            for (flag, path) in [
                ("--trusted-ca-file", pki.ca()),
                ("--cert-file", pki.server_cert()),
                ("--key-file", pki.server_key()),
                ("--peer-trusted-ca-file", pki.ca()),
                ("--peer-cert-file", pki.server_cert()),
                ("--peer-key-file", pki.server_key()),
            ] {
                command.arg(format!("{flag}={}", path.display()));
            }
            command.arg("--client-cert-auth").arg("--peer-client-cert-auth");
        }
        // Appended: a restarted member's log follows its first life's.
        let log = fs::OpenOptions::new().create(true).append(true).open(&member.log).unwrap();
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        // SAFETY: the closure runs in the forked child before exec and only
        // makes one prctl call, which is async-signal-safe and allocates
        // nothing. The kernel then kills the member if the thread that
        // started it dies without dropping the cluster (a test binary
        // killed by a timeout), so no etcd outlives its test.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        self.members[i].child = Some(command.spawn().expect("start etcd"));
    }

    /// Waits until each of `members` answers `endpoint health` (a quorum
    /// read through it), failing with their logs, also if one exits.
    pub fn wait_healthy(&mut self, members: &[usize]) {
        if let Err(died) = self.await_healthy(members) {
            panic!("etcd member m{died} exited{}", self.logs());
        }
    }

    /// [`wait_healthy`](Self::wait_healthy), or the first member that
    /// exited instead (reaped, no longer running).
    fn await_healthy(&mut self, members: &[usize]) -> Result<(), usize> {
        let timeout = secs(30);
        let deadline = Instant::now() + timeout;
        let mut waiting = members.to_vec();
        loop {
            for &i in &waiting {
                if let Some(child) = self.members[i].child.as_mut() {
                    if child.try_wait().unwrap().is_some() {
                        self.members[i].child = None;
                        return Err(i);
                    }
                }
            }
            waiting.retain(|&i| {
                !self
                    .etcdctl_at(&[i], ROOT, &["endpoint", "health", "--command-timeout=2s"])
                    .status
                    .success()
            });
            if waiting.is_empty() {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for etcd members {waiting:?} to be healthy{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// kill -9 of member `i`, reaped.
    pub fn kill_member(&mut self, i: usize) {
        let mut child = self.members[i].child.take().expect("member running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Starts member `i` again on its data directory and waits until it is
    /// healthy (it has rejoined: a health check is a quorum read).
    pub fn start_member(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member m{i} is running");
        self.spawn(i);
        self.wait_healthy(&[i]);
    }

    /// Whether member `i` is running (started and not killed).
    pub fn member_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// Member `i`'s log, all of it.
    pub fn member_log(&self, i: usize) -> String {
        fs::read_to_string(&self.members[i].log).unwrap_or_default()
    }

    /// The last lines of every member's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, member) in self.members.iter().enumerate() {
            let log = self.member_log(i);
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            out.push_str(&format!(
                "\n--- etcd {} ({}) ---\n{tail}\n",
                member.name,
                self.endpoint(i)
            ));
        }
        out
    }

    /// `etcdctl` (API v3) against every running member, as the client
    /// certificate of `identity` (ignored without TLS).
    pub fn etcdctl(&self, identity: &str, args: &[&str]) -> Output {
        let live: Vec<usize> =
            (0..self.members.len()).filter(|&i| self.members[i].child.is_some()).collect();
        self.etcdctl_at(&live, identity, args)
    }

    /// [`etcdctl`](Self::etcdctl) against the given members only.
    pub fn etcdctl_at(&self, members: &[usize], identity: &str, args: &[&str]) -> Output {
        let endpoints: Vec<String> = members.iter().map(|&i| self.endpoint(i)).collect();
        let mut command = Command::new("etcdctl");
        command.env("ETCDCTL_API", "3").arg(format!("--endpoints={}", endpoints.join(",")));
        if let Some(pki) = &self.pki {
            command
                .arg(format!("--cacert={}", pki.ca().display()))
                .arg(format!("--cert={}", pki.cert(identity).display()))
                .arg(format!("--key={}", pki.key(identity).display()));
        }
        command.args(args).stdin(Stdio::null()).output().unwrap()
    }

    /// [`etcdctl`](Self::etcdctl), which must succeed: its stdout.
    pub fn etcdctl_ok(&self, identity: &str, args: &[&str]) -> String {
        let out = self.etcdctl(identity, args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} as {identity}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A `ClusterConfig` for an in-process client acting as `identity`,
    /// naming itself `node`, keys under [`prefix`](Self::prefix).
    pub fn client_config(&self, node: &str, identity: &str) -> ClusterConfig {
        ClusterConfig {
            endpoints: self.endpoints(),
            node_name: node.to_owned(),
            labels: BTreeMap::new(),
            lease_ttl: Duration::from_secs(3),
            tls: self.pki.as_ref().map(|pki| pki.tls(identity)),
            prefix: self.prefix.clone(),
            scheduler: true,
            publish_dir: None,
            node_loss_grace: Duration::from_secs(10),
        }
    }

    /// Every key under `prefix` and its value, read as [`ROOT`] through
    /// corral's own client.
    pub fn get_prefix_raw(&self, prefix: &str) -> BTreeMap<String, Vec<u8>> {
        let mut config = self.client_config("test", ROOT);
        // Only the members running now: what the test reads must not
        // depend on how a client fares with a dead member in its list
        // (the agents are what the fault tests judge on that).
        config.endpoints = self.live_endpoints();
        let wanted = prefix.to_owned();
        let read = run_async(async move {
            let mut client =
                corral::cluster::etcd::connect(&config).await.map_err(|e| e.to_string())?;
            let options = etcd_client::GetOptions::new().with_prefix();
            let got = client.get(wanted, Some(options)).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(
                got.kvs()
                    .iter()
                    .map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.value().to_vec()))
                    .collect(),
            )
        });
        read.unwrap_or_else(|e| panic!("reading {prefix} from etcd: {e}{}", self.logs()))
    }

    /// [`get_prefix_raw`](Self::get_prefix_raw), every value parsed as JSON
    /// (as corral's records are); a value that is not JSON fails the test,
    /// naming its key.
    pub fn get_prefix_json(&self, prefix: &str) -> BTreeMap<String, serde_json::Value> {
        self.get_prefix_raw(prefix)
            .into_iter()
            .map(|(key, value)| {
                let json = serde_json::from_slice(&value).unwrap_or_else(|e| {
                    panic!("{key} holds no JSON ({e}): {}", String::from_utf8_lossy(&value))
                });
                (key, json)
            })
            .collect()
    }

    /// Every record under `prefix` decoded as a `T` with corral's own
    /// decoder, by key; a value that does not decode fails the test.
    pub fn records<T: for<'de> serde::Deserialize<'de>>(
        &self,
        prefix: &str,
    ) -> BTreeMap<String, T> {
        self.get_prefix_raw(prefix)
            .into_iter()
            .map(|(key, value)| {
                let record = corral::cluster::records::decode(&key, &value)
                    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&value)));
                (key, record)
            })
            .collect()
    }

    /// corral's key layout under this cluster's [`prefix`](Self::prefix).
    pub fn keys(&self) -> corral::cluster::Keys {
        corral::cluster::Keys::new(&self.prefix)
    }

    /// Puts `value` at `key` as [`ROOT`] through corral's own client: to
    /// plant a record that is not what its key says, say.
    pub fn put_raw(&self, key: &str, value: &[u8]) {
        let config = self.client_config("test", ROOT);
        let (key, value) = (key.to_owned(), value.to_vec());
        let written = run_async(async move {
            let mut client =
                corral::cluster::etcd::connect(&config).await.map_err(|e| e.to_string())?;
            client.put(key, value, None).await.map(drop).map_err(|e| e.to_string())
        });
        written.unwrap_or_else(|e| panic!("writing to etcd: {e}{}", self.logs()));
    }

    /// The cluster runs (`runs/`), by run id.
    pub fn cluster_runs(&self) -> BTreeMap<String, ClusterRun> {
        by_name(self.records(&self.keys().runs()))
    }

    /// The nodes' run statuses (`status/`), by run id.
    pub fn cluster_statuses(&self) -> BTreeMap<String, RunStatus> {
        by_name(self.records(&self.keys().statuses()))
    }

    /// Waits until `done` holds of the cluster runs, failing with them, the
    /// statuses and the members' logs.
    pub fn wait_runs(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&BTreeMap<String, ClusterRun>) -> bool,
    ) -> BTreeMap<String, ClusterRun> {
        let deadline = Instant::now() + timeout;
        loop {
            let runs = self.cluster_runs();
            if done(&runs) {
                return runs;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}:\n{runs:#?}\nstatuses: {:#?}\n{}",
                self.cluster_statuses(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the records under `prefix` (JSON, by key) satisfy
    /// `done`, failing with the last reading and the members' logs.
    pub fn wait_records(
        &self,
        what: &str,
        prefix: &str,
        timeout: Duration,
        mut done: impl FnMut(&BTreeMap<String, serde_json::Value>) -> bool,
    ) -> BTreeMap<String, serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let records = self.get_prefix_json(prefix);
            if done(&records) {
                return records;
            }
            if Instant::now() > deadline {
                let shown = serde_json::to_string_pretty(&records).unwrap();
                panic!(
                    "timed out after {timeout:?} waiting for {what}; under {prefix}:\n{shown}{}",
                    self.logs()
                );
            }
            // etcd answers a range read in a few milliseconds; polling
            // faster would only load the machine the agents share.
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Turns on etcd's authentication with one role per purpose on
    /// `prefix` (docs/cluster-security.md), the users named as the
    /// certificates' common names: [`ROOT`]; [`AGENT_ROLE`] (readwrite on
    /// `{prefix}/`) for each of [`AGENT_NODES`]; [`SUBMITTER_ROLE`]
    /// (readwrite on `{prefix}/jobs/`, read on `{prefix}/`) for
    /// [`SUBMITTER`]; [`READER_ROLE`] (read on `{prefix}/`) for [`READER`].
    /// From then on a certificate whose name is no user is refused
    /// everything.
    pub fn enable_rbac(&self, prefix: &str) {
        let all = format!("{prefix}/");
        let jobs = format!("{prefix}/jobs/");
        let commands: Vec<Vec<&str>> = vec![
            vec!["user", "add", ROOT, "--no-password"],
            vec!["user", "grant-role", ROOT, "root"],
            vec!["role", "add", AGENT_ROLE],
            vec!["role", "grant-permission", AGENT_ROLE, "--prefix=true", "readwrite", &all],
            vec!["role", "add", SUBMITTER_ROLE],
            vec!["role", "grant-permission", SUBMITTER_ROLE, "--prefix=true", "readwrite", &jobs],
            vec!["role", "grant-permission", SUBMITTER_ROLE, "--prefix=true", "read", &all],
            vec!["role", "add", READER_ROLE],
            vec!["role", "grant-permission", READER_ROLE, "--prefix=true", "read", &all],
            vec!["user", "add", SUBMITTER, "--no-password"],
            vec!["user", "grant-role", SUBMITTER, SUBMITTER_ROLE],
            vec!["user", "add", READER, "--no-password"],
            vec!["user", "grant-role", READER, READER_ROLE],
        ];
        for command in &commands {
            self.etcdctl_ok(ROOT, command);
        }
        for node in AGENT_NODES {
            self.add_agent_user(node);
        }
        self.etcdctl_ok(ROOT, &["auth", "enable"]);
    }

    /// An etcd user `node` with the agent role (before or after
    /// [`enable_rbac`](Self::enable_rbac)).
    pub fn add_agent_user(&self, node: &str) {
        self.etcdctl_ok(ROOT, &["user", "add", node, "--no-password"]);
        self.etcdctl_ok(ROOT, &["user", "grant-role", node, AGENT_ROLE]);
    }

    /// The agent configuration's `cluster:` section for node `node`, acting
    /// as `identity`'s certificate, keys under [`prefix`](Self::prefix).
    pub fn cluster_section(
        &self,
        node: &str,
        identity: &str,
        labels: &[(&str, &str)],
        lease_ttl: Duration,
    ) -> String {
        let options = NodeOptions { labels, lease_ttl, ..Default::default() };
        self.section(node, identity, &options, &self.endpoints())
    }

    /// The `cluster:` section of `options` (memory, netns and extra aside).
    fn section(
        &self,
        node: &str,
        identity: &str,
        options: &NodeOptions,
        endpoints: &[String],
    ) -> String {
        let NodeOptions { labels, lease_ttl, scheduler, publish_dir, .. } = *options;
        // JSON strings are YAML double-quoted scalars: paths and URLs
        // go in whatever they hold.
        let q = |s: &str| serde_json::to_string(s).unwrap();
        let endpoints: Vec<String> = endpoints.iter().map(|e| q(e)).collect();
        let labels: Vec<String> =
            labels.iter().map(|(k, v)| format!("{}: {}", q(k), q(v))).collect();
        let mut yaml = format!(
            "cluster:\n  endpoints: [{}]\n  node_name: {}\n  labels: {{{}}}\n  lease_ttl: {}s\n  \
             prefix: {}\n  scheduler: {scheduler}\n",
            endpoints.join(", "),
            q(node),
            labels.join(", "),
            lease_ttl.as_secs(),
            q(&self.prefix),
        );
        if let Some(dir) = publish_dir {
            yaml.push_str(&format!("  publish_dir: {}\n", q(&dir.to_string_lossy())));
        }
        if let Some(pki) = &self.pki {
            let tls = pki.tls(identity);
            yaml.push_str(&format!(
                "  tls:\n    ca: {}\n    cert: {}\n    key: {}\n",
                q(&tls.ca.to_string_lossy()),
                q(&tls.cert.to_string_lossy()),
                q(&tls.key.to_string_lossy()),
            ));
        }
        yaml
    }

    /// A `corral agent` joined to this cluster as node `node` (its client
    /// certificate's common name; issued here if [`Pki::new`] did not), not
    /// started yet: a [`TestAgent`] with its own state directory, socket,
    /// HTTP port and cgroup parent, and the configuration of `options`.
    pub fn agent(&self, node: &str, options: &NodeOptions) -> TestAgent {
        if let Some(pki) = &self.pki {
            if !pki.has(node) {
                pki.issue_client(node);
            }
        }
        let endpoints = if options.netns { self.bridge_endpoints() } else { self.endpoints() };
        let section = self.section(node, node, options, &endpoints);
        let reserved = host_memory().checked_sub(options.memory).unwrap_or_else(|| {
            panic!("node {node}: {} bytes asked, the machine has {}", options.memory, host_memory())
        });
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Nodes of a real cluster are different machines, whose dynamic
        // users cannot meet; here they share one kernel, so each agent takes
        // uids of its own, apart from every other test's (the default range
        // is below 65536) and from other test binaries' (by process id).
        let first = 1_000_000 + ((std::process::id() % 4096) * 64 + n % 64) * 1000;
        let extra = format!(
            "{section}reserved_memory: {reserved}\ndynamic_users: {{range: {first}-{}}}\n{}",
            first + 999,
            options.extra
        );
        let mut agent = TestAgent::new(&extra);
        if options.netns {
            let net = self.net.as_ref().expect("a bridged cluster (start_bridged)");
            // Its HTTP endpoint on its own address, where the test and the
            // other nodes reach it over the bridge.
            let address = net.add_node(&agent.parent);
            let listen = std::net::SocketAddr::from((address, agent.listen.port()));
            let config = fs::read_to_string(&agent.config).unwrap();
            let old = format!("listen: {}\n", agent.listen);
            assert!(config.contains(&old), "{config}");
            fs::write(&agent.config, config.replacen(&old, &format!("listen: {listen}\n"), 1))
                .unwrap();
            agent.listen = listen;
        }
        agent
    }

    /// [`agent`](Self::agent), started, with its control socket there.
    pub fn started_agent(&self, node: &str, options: &NodeOptions) -> TestAgent {
        let mut agent = self.agent(node, options);
        self.start_agent(&mut agent);
        agent
    }

    /// Starts (or restarts, after `kill9` or `stop`) an agent of this
    /// cluster, in its network namespace if it has one, and waits for its
    /// control socket. Use this rather than `TestAgent::start`, which
    /// would start it in the host's network.
    pub fn start_agent(&self, agent: &mut TestAgent) {
        match &self.net {
            Some(net) if net.has(&agent.parent) => {
                let key = agent.parent.clone();
                agent.start_with(|command| net.enter(&key, command))
            }
            _ => agent.start(),
        }
        let socket = agent.state.join("corral.sock");
        agent.wait_for("the control socket", secs(20), || socket.exists());
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        self.kill_all();
    }
}

/// How a cluster agent is configured beyond its name.
///
/// The agents of one test share this machine's CPUs: on 2 CPUs, disjoint
/// `reserved_cpus` shares would leave some agent without a CPU. What tells
/// them apart for placement is memory: each offers `memory` bytes (its
/// `reserved_memory` is the rest of the machine's), e.g. 2, 4 and 8 GiB.
pub struct NodeOptions<'a> {
    pub labels: &'a [(&'a str, &'a str)],
    /// Allocatable memory, bytes.
    pub memory: u64,
    pub lease_ttl: Duration,
    /// Whether the agent stands for election as the cluster scheduler.
    pub scheduler: bool,
    pub publish_dir: Option<&'a Path>,
    /// Further top-level agent configuration (YAML lines).
    pub extra: &'a str,
    /// A network namespace of its own, on the bridge of a cluster from
    /// [`EtcdCluster::start_bridged`]; its HTTP endpoint listens on its
    /// address there.
    pub netns: bool,
}

impl Default for NodeOptions<'_> {
    fn default() -> Self {
        NodeOptions {
            labels: &[],
            memory: 4 << 30,
            lease_ttl: Duration::from_secs(3),
            scheduler: true,
            publish_dir: None,
            extra: "",
            netns: false,
        }
    }
}

/// The machine's memory as the agent counts it, bytes: on a host with one
/// memory node (this one), the larger of that node's and /proc/meminfo's
/// MemTotal (topology/discover.rs says why they differ); with several, the
/// sum of theirs, and then every reservation falls on node 0.
pub fn host_memory() -> u64 {
    let kib = |text: &str, field: &str| -> u64 {
        text.lines()
            .find_map(|l| {
                let rest = &l[l.find(field)? + field.len()..];
                rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
            })
            .unwrap_or(0)
    };
    let system = kib(&fs::read_to_string("/proc/meminfo").unwrap(), "MemTotal:");
    let nodes: Vec<u64> = fs::read_dir("/sys/devices/system/node")
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| {
                    e.file_name().to_str().is_some_and(|n| {
                        n.strip_prefix("node").is_some_and(|d| d.parse::<u32>().is_ok())
                    })
                })
                .map(|e| {
                    kib(
                        &fs::read_to_string(e.path().join("meminfo")).unwrap_or_default(),
                        "MemTotal:",
                    )
                })
                .filter(|&m| m > 0)
                .collect()
        })
        .unwrap_or_default();
    let total = match nodes.as_slice() {
        [] => system,
        [one] => (*one).max(system),
        many => many.iter().sum(),
    };
    total * 1024
}

/// Records by the last part of their key (a run id, a node name).
pub fn by_name<T>(records: BTreeMap<String, T>) -> BTreeMap<String, T> {
    records.into_iter().map(|(k, v)| (k.rsplit('/').next().unwrap_or(&k).to_owned(), v)).collect()
}
