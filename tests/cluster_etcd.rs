//! The cluster harness itself, on real etcd: three members on loopback with
//! TLS for clients and peers; corral's client reaches them with a node's
//! certificate; a client without one, or with one from another CA, is
//! refused; the cluster survives the loss of one member, which rejoins;
//! agents start as nodes with the configuration the harness writes.

mod agent_harness;
mod cluster_harness;

use std::time::Duration;

use agent_harness::secs;
use cluster_harness::{run_async, EtcdCluster, NodeOptions, Pki, ROOT};
use corral::cluster::etcd::connect;
use corral::config::ClusterConfig;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, TlsOptions, Txn, TxnOp,
};

/// One request through corral's client as `config` says: a put then a get
/// of `key`, or the first error, as text.
fn put_and_get(config: ClusterConfig, key: String, value: &'static str) -> Result<String, String> {
    run_async(async move {
        let mut client = connect(&config).await.map_err(|e| e.to_string())?;
        client.put(key.as_str(), value, None).await.map_err(|e| e.to_string())?;
        let got = client.get(key.as_str(), None).await.map_err(|e| e.to_string())?;
        Ok(got
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
            .unwrap_or_default())
    })
}

#[test]
fn three_members_form_one_cluster_over_tls() {
    let Some(cluster) = EtcdCluster::start(3, true) else { return };
    let members = cluster.etcdctl_ok(ROOT, &["member", "list"]);
    let lines: Vec<&str> = members.lines().collect();
    assert_eq!(lines.len(), 3, "{members}");
    for line in &lines {
        // id, status, name, peer URLs, client URLs, learner
        assert!(line.contains(", started, "), "{line}");
        assert!(line.contains("https://127.0.0.1:"), "{line}");
        assert!(!line.contains("http://"), "plaintext URL in {line}");
    }
    for endpoint in cluster.endpoints() {
        assert!(members.contains(&endpoint), "{endpoint} missing from\n{members}");
    }
    // Each member answers a quorum read on its own: all three are members
    // of one quorum, not three clusters of one.
    for i in 0..3 {
        let out = cluster.etcdctl_at(&[i], ROOT, &["endpoint", "health"]);
        assert!(out.status.success(), "m{i}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let status = cluster.etcdctl_ok(ROOT, &["endpoint", "status"]);
    let leaders = status.lines().filter(|l| l.contains(", true, ")).count();
    assert_eq!(leaders, 1, "one leader among\n{status}");
}

#[test]
fn a_node_certificate_reads_and_writes_under_the_prefix() {
    let Some(cluster) = EtcdCluster::start(3, true) else { return };
    let config = cluster.client_config("node-a", "node-a");
    let key = format!("{}/nodes/node-a", cluster.prefix);
    assert_eq!(
        put_and_get(config.clone(), key.clone(), "{\"name\":\"node-a\"}").unwrap(),
        "{\"name\":\"node-a\"}"
    );

    // A transaction conditioned on a key's absence, as corral's writes are:
    // the first takes, the second finds the key there.
    let leader = format!("{}/leader", cluster.prefix);
    let outcomes = run_async(async move {
        let mut client = connect(&config).await.unwrap();
        let mut outcomes = Vec::new();
        for value in ["first", "second"] {
            let txn = Txn::new()
                .when([Compare::create_revision(leader.as_str(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(leader.as_str(), value, None)]);
            outcomes.push(client.txn(txn).await.unwrap().succeeded());
        }
        outcomes
    });
    assert_eq!(outcomes, [true, false]);

    // What the node wrote, as another identity reads it.
    let read = cluster.get_prefix_raw(&format!("{}/", cluster.prefix));
    assert_eq!(read.len(), 2, "{read:?}");
    assert_eq!(read[&format!("{}/leader", cluster.prefix)], b"first");
    let json = cluster.get_prefix_json(&format!("{}/nodes/", cluster.prefix));
    assert_eq!(json[&key]["name"], "node-a");
}

/// A client of `cluster` trusting `ca`, presenting `identity` (cert, key)
/// if any: the error of its first request, or `None` if it was served.
fn first_request_error(
    cluster: &EtcdCluster,
    ca: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
) -> Option<String> {
    let endpoints = cluster.endpoints();
    let key = format!("{}/x", cluster.prefix);
    run_async(async move {
        let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(ca));
        if let Some((cert, key)) = identity {
            tls = tls.identity(etcd_client::Identity::from_pem(cert, key));
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(3))
            .with_tls(tls);
        let mut client = match Client::connect(&endpoints, Some(options)).await {
            Ok(client) => client,
            Err(e) => return Some(e.to_string()),
        };
        client.put(key, "1", None).await.err().map(|e| e.to_string())
    })
}

#[test]
fn a_client_without_a_certificate_is_refused() {
    let Some(cluster) = EtcdCluster::start(3, true) else { return };
    let pki = cluster.pki.as_ref().unwrap();
    let ca = std::fs::read(pki.ca()).unwrap();
    let error =
        first_request_error(&cluster, ca, None).expect("a client without a certificate was served");
    // The client sees the connection fail; the member says why.
    eprintln!("the client's error: {error}");
    agent_harness::wait_until("a member to log the refusal", secs(10), || {
        (0..3).any(|i| cluster.member_log(i).contains("client didn't provide a certificate"))
    });
    // etcdctl without a certificate is refused the same way, while with
    // one it is served.
    cluster.etcdctl_ok(ROOT, &["endpoint", "health"]);
    let anonymous = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", cluster.endpoint(0)))
        .arg(format!("--cacert={}", pki.ca().display()))
        .args(["--command-timeout=2s", "put", "k", "v"])
        .output()
        .unwrap();
    assert!(!anonymous.status.success(), "etcdctl without a certificate wrote");
    assert!(cluster.get_prefix_raw(&format!("{}/", cluster.prefix)).is_empty());
    assert!(cluster.get_prefix_raw("k").is_empty(), "the anonymous put landed");
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let Some(cluster) = EtcdCluster::start(3, true) else { return };
    let pki = cluster.pki.as_ref().unwrap();
    let stranger = Pki::new(&cluster.dir().join("stranger-ca"));
    let read = |path: std::path::PathBuf| std::fs::read(path).unwrap();

    // Same name as a real node, signed by a CA the cluster does not trust.
    let forged = (read(stranger.cert("node-a")), read(stranger.key("node-a")));
    let error = first_request_error(&cluster, read(pki.ca()), Some(forged))
        .expect("a certificate of another CA was served");
    eprintln!("the client's error: {error}");
    agent_harness::wait_until("a member to log the refusal", secs(10), || {
        (0..3).any(|i| {
            let log = cluster.member_log(i);
            log.contains("rejected connection") && log.contains("unknown authority")
        })
    });

    // The other way round: a client trusting only the other CA refuses the
    // members' certificate itself.
    let genuine = (read(pki.cert("node-a")), read(pki.key("node-a")));
    let error = first_request_error(&cluster, read(stranger.ca()), Some(genuine))
        .expect("a client served by a server its CA did not sign");
    assert!(
        error.to_lowercase().contains("certificate") || error.contains("UnknownIssuer"),
        "{error}"
    );
    assert!(cluster.get_prefix_raw(&format!("{}/", cluster.prefix)).is_empty());
}

#[test]
fn with_one_member_killed_the_other_two_serve_writes_and_it_rejoins() {
    let Some(mut cluster) = EtcdCluster::start(3, true) else { return };
    let key = format!("{}/jobs/while-m0-was-down", cluster.prefix);
    cluster.kill_member(0);
    assert!(!cluster.member_running(0));
    // If m0 led, the other two elect a leader first: up to two election
    // timeouts (etcd draws each from 1x to 2x of 2.5 s), longer than
    // etcdctl's 5 s for a request.
    cluster.wait_healthy(&[1, 2]);

    // etcd's own client given every endpoint, the dead one first, as an
    // agent's configuration lists them: it fails over to a live member.
    let out = cluster.etcdctl_at(&[0, 1, 2], ROOT, &["put", &key, "written"]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stderr), cluster.logs());
    // corral's client given the survivors. (Given the dead endpoint too,
    // etcd-client 0.21 sends some requests to it, which then fail with
    // "tcp connect error": it does not route around a dead member.)
    let mut config = cluster.client_config("node-b", "node-b");
    config.endpoints = cluster.live_endpoints();
    assert_eq!(config.endpoints, [cluster.endpoint(1), cluster.endpoint(2)]);
    let got = put_and_get(config, format!("{key}-corral"), "written");
    assert_eq!(got.as_deref(), Ok("written"), "{}", cluster.logs());
    // And through each survivor on its own.
    for i in [1, 2] {
        let out = cluster.etcdctl_at(&[i], ROOT, &["put", &format!("{key}-m{i}"), "v"]);
        assert!(
            out.status.success(),
            "m{i}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            cluster.logs()
        );
    }

    cluster.start_member(0);
    // A serializable read is answered from m0's own copy: it holds what the
    // others wrote while it was down.
    let mut local = String::new();
    agent_harness::wait_until("m0 to catch up", secs(20), || {
        let out = cluster.etcdctl_at(
            &[0],
            ROOT,
            &["get", "--consistency=s", "--prefix", "--keys-only", &key],
        );
        local = String::from_utf8_lossy(&out.stdout).into_owned();
        local.lines().filter(|l| !l.is_empty()).count() == 4
    });
    let members = cluster.etcdctl_ok(ROOT, &["member", "list"]);
    assert_eq!(members.lines().filter(|l| l.contains(", started, ")).count(), 3, "{members}");
}

#[test]
fn three_agents_join_as_nodes_of_different_memory() {
    let Some(cluster) = EtcdCluster::start(3, true) else { return };
    const GIB: u64 = 1 << 30;
    let nodes = [("node-a", 2 * GIB, "a"), ("node-b", 4 * GIB, "b"), ("node-c", 8 * GIB, "c")];
    let agents: Vec<_> = nodes
        .iter()
        .map(|&(name, memory, zone)| {
            let labels = [("zone", zone)];
            let options = NodeOptions { labels: &labels, memory, ..Default::default() };
            (name, memory, cluster.started_agent(name, &options))
        })
        .collect();
    for (name, memory, agent) in &agents {
        let config = std::fs::read_to_string(&agent.config).unwrap();
        assert!(config.contains(&format!("node_name: \"{name}\"")), "{config}");
        assert!(config.contains(&cluster.prefix), "{config}");
        // What the agent's own placement offers on its one NUMA node is
        // what the harness asked for: memory tells the nodes apart.
        let (status, _, body) = agent.http_get("/v1/node", None);
        assert_eq!(status, 200, "{body}");
        let node: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            node["numa_nodes"][0]["allocatable_memory_bytes"].as_u64(),
            Some(*memory),
            "{name}: {body}"
        );
        // Each runs jobs on its own, under its own cgroup parent.
        agent.run_marker("marker");
        assert!(agent.runs_of("marker").len() == 1);
    }
    let distinct = |f: &dyn Fn(&agent_harness::TestAgent) -> String| {
        let mut all: Vec<String> = agents.iter().map(|(_, _, a)| f(a)).collect();
        all.sort();
        all.dedup();
        all.len()
    };
    assert_eq!(distinct(&|a| a.parent.clone()), 3);
    assert_eq!(distinct(&|a| a.listen.to_string()), 3);
    assert_eq!(distinct(&|a| a.state.display().to_string()), 3);
}

#[test]
fn records_are_read_with_corrals_decoder_and_awaited() {
    use corral::cluster::records::{LeaderRecord, NodeRecord};
    use corral::vocab::Timestamp;
    let Some(cluster) = EtcdCluster::start(1, true) else { return };
    let keys = cluster.keys();
    let leader = LeaderRecord { node: "node-a".into(), since: Timestamp::now() };
    cluster.put_raw(&keys.leader(), &corral::cluster::records::encode(&leader));
    let read = cluster.records::<LeaderRecord>(&keys.all());
    assert_eq!(read.get(&keys.leader()), Some(&leader));
    // A record that is not what its key says fails the typed read, naming
    // the key, as corral's decoder reports it.
    cluster.put_raw(&keys.node("node-b"), b"{\"name\": 1}");
    let bad =
        std::panic::catch_unwind(|| cluster.records::<NodeRecord>(&keys.nodes())).unwrap_err();
    let message = bad.downcast_ref::<String>().unwrap();
    assert!(message.contains(&format!("bad record at {}", keys.node("node-b"))), "{message}");
    let seen = cluster.wait_records("the node record", &keys.nodes(), secs(5), |r| r.len() == 1);
    assert_eq!(seen[&keys.node("node-b")]["name"], 1);
}

#[test]
fn an_agent_in_a_network_namespace_reaches_etcd_over_the_bridge_until_cut_off() {
    use std::os::unix::fs::MetadataExt;
    let Some(cluster) = EtcdCluster::start_bridged(3, true) else { return };
    let net = cluster.net.as_ref().unwrap();
    let mut agent =
        cluster.started_agent("node-a", &NodeOptions { netns: true, ..Default::default() });
    let inode = |path: String| std::fs::metadata(path).unwrap().ino();
    let netns = net.netns(&agent.parent);
    let own = inode(format!("/run/netns/{netns}"));
    assert_eq!(inode(format!("/proc/{}/ns/net", agent.pid())), own, "the agent is in its netns");
    assert_ne!(inode("/proc/self/ns/net".into()), own);
    let config = std::fs::read_to_string(&agent.config).unwrap();
    for endpoint in cluster.bridge_endpoints() {
        assert!(config.contains(&endpoint), "{endpoint} in\n{config}");
    }
    // Its HTTP endpoint on its own address, reached from the host.
    assert_eq!(agent.listen.ip(), std::net::IpAddr::V4(net.address(&agent.parent)));
    assert_eq!(agent.http_get("/v1/node", None).0, 200);

    // From its namespace etcd answers on the bridge, and not on loopback,
    // which is the namespace's own.
    let pki = cluster.pki.as_ref().unwrap();
    let etcdctl = |endpoints: &[String], key: &str| {
        let args = [
            format!("--endpoints={}", endpoints.join(",")),
            format!("--cacert={}", pki.ca().display()),
            format!("--cert={}", pki.cert("node-a").display()),
            format!("--key={}", pki.key("node-a").display()),
            "--dial-timeout=1s".into(),
            "--command-timeout=2s".into(),
            "put".into(),
            format!("{}/{key}", cluster.prefix),
            "1".into(),
        ];
        // etcdctl 3.4 speaks the v3 API unless told otherwise.
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        net.exec(&agent.parent, "etcdctl", &args).status.success()
    };
    assert!(etcdctl(&cluster.bridge_endpoints(), "over-the-bridge"));
    assert!(!etcdctl(&cluster.endpoints(), "over-loopback"));
    net.cut_off(&agent.parent);
    assert!(!etcdctl(&cluster.bridge_endpoints(), "while-cut-off"));
    net.reconnect(&agent.parent);
    assert!(etcdctl(&cluster.bridge_endpoints(), "reconnected"));
    // The agent's own records (it joins over the bridge too) aside.
    let layout = cluster.keys();
    let keys: Vec<String> = cluster
        .get_prefix_raw(&layout.all())
        .into_keys()
        .filter(|k| !k.starts_with(&layout.nodes()) && *k != layout.leader())
        .collect();
    let p = &cluster.prefix;
    assert_eq!(keys, [format!("{p}/over-the-bridge"), format!("{p}/reconnected")]);
    assert!(cluster.get_prefix_raw(&layout.node("node-a")).len() == 1, "node-a joined");

    // Restarted after kill -9, it is back in its namespace.
    agent.kill9();
    cluster.start_agent(&mut agent);
    assert_eq!(inode(format!("/proc/{}/ns/net", agent.pid())), own);
}

/// Issue 18's dead-member problem, measured: with one member of three
/// killed, `requests` puts through etcd's client given every endpoint (the
/// dead one first) as corral connected before, and through corral's
/// [`connect`], which probes the members and connects to those that
/// answer. Returns (failures before, failures after, reconnects after).
fn puts_with_a_member_down(
    config: ClusterConfig,
    key: String,
    requests: usize,
) -> (usize, usize, usize) {
    run_async(async move {
        // As `connect` did before: every configured endpoint.
        let tls = config.tls.clone().unwrap();
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(3))
            .with_tls(
                TlsOptions::new()
                    .ca_certificate(Certificate::from_pem(std::fs::read(&tls.ca).unwrap()))
                    .identity(etcd_client::Identity::from_pem(
                        std::fs::read(&tls.cert).unwrap(),
                        std::fs::read(&tls.key).unwrap(),
                    )),
            );
        let mut plain = Client::connect(&config.endpoints, Some(options)).await.unwrap();
        let mut before = 0;
        for i in 0..requests {
            if plain.put(format!("{key}-before-{i}"), "v", None).await.is_err() {
                before += 1;
            }
        }
        let mut client = connect(&config).await.unwrap();
        let (mut after, mut reconnects) = (0, 0);
        for i in 0..requests {
            let k = format!("{key}-after-{i}");
            if client.put(k.as_str(), "v", None).await.is_ok() {
                continue;
            }
            // A failed request is a reason to connect again, as the node
            // task, the scheduler and the publisher do; the retry counts.
            reconnects += 1;
            client = connect(&config).await.unwrap();
            if client.put(k.as_str(), "v", None).await.is_err() {
                after += 1;
            }
        }
        (before, after, reconnects)
    })
}

#[test]
fn with_one_member_down_every_request_succeeds_and_the_probe_names_it() {
    let Some(mut cluster) = EtcdCluster::start(3, true) else { return };
    let key = format!("{}/jobs/dead-member", cluster.prefix);
    cluster.kill_member(0);
    cluster.wait_healthy(&[1, 2]);
    let config = cluster.client_config("node-b", "node-b");
    assert_eq!(config.endpoints[0], cluster.endpoint(0), "the dead member first");

    let health = run_async({
        let config = config.clone();
        async move { corral::cluster::etcd::probe(&config).await.unwrap() }
    });
    assert!(!health[0].answered(), "{health:?}");
    assert!(health[1].answered() && health[2].answered(), "{health:?}");
    use corral::cluster::node::fence::{quorum_lost, unavailable};
    assert!(!quorum_lost(3, &health), "two members with a leader: {health:?}");
    assert_eq!(unavailable(3, &health), None);

    const N: usize = 100;
    let (before, after, reconnects) = puts_with_a_member_down(config.clone(), key, N);
    println!(
        "one member of three down, {N} puts: {before} failed through a client of every \
         endpoint; {after} failed through corral's connect ({reconnects} reconnects)"
    );
    assert_eq!(after, 0, "every request succeeds after at most one reconnect");

    // Two members down: the one left answers without a leader, the other
    // two refuse connections: no leader can exist.
    cluster.kill_member(1);
    std::thread::sleep(secs(6));
    let health = run_async(async move { corral::cluster::etcd::probe(&config).await.unwrap() });
    assert_eq!(health.iter().filter(|h| h.answered()).count(), 1, "{health:?}");
    assert!(quorum_lost(3, &health), "two refuse, one knows no leader: {health:?}");
    let why = unavailable(3, &health).unwrap();
    assert!(why.starts_with("no quorum: 1 of 3"), "{why}");
    cluster.start_member(0);
    cluster.start_member(1);
}
