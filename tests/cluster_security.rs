//! etcd's RBAC on corral's key prefix, one role per purpose, users named
//! by their client certificate's common name (docs/cluster-security.md):
//! agents write everything under the prefix, submitters only jobs/, readers
//! nothing; a certificate of the cluster's CA that names no user gets
//! nothing at all once auth is on.

mod agent_harness;
mod cluster_harness;

use std::process::Output;

use cluster_harness::{run_async, EtcdCluster, READER, ROOT, SUBMITTER};
use corral::cluster::etcd::connect;
use corral::config::ClusterConfig;
use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};

/// etcd's answer to a request the user's roles do not allow.
const DENIED: &str = "permission denied";

fn refused(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what} was allowed");
    assert!(stderr.contains(DENIED), "{what}: {stderr}");
}

fn allowed(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A cluster with RBAC on its prefix, and one key of each kind written by
/// root (runs/, bindings/, status/, nodes/) for the others to read.
fn cluster_with_rbac() -> Option<EtcdCluster> {
    let cluster = EtcdCluster::start(3, true)?;
    let p = cluster.prefix.clone();
    for key in ["runs/r-1", "bindings/node-a/r-1", "status/r-1", "nodes/node-a"] {
        cluster.etcdctl_ok(ROOT, &["put", &format!("{p}/{key}"), "{}"]);
    }
    cluster.enable_rbac(&p);
    Some(cluster)
}

/// A put of `key` through corral's client as `config` says: the error as
/// text, if any.
fn put(config: &ClusterConfig, key: String) -> Result<(), String> {
    let config = config.clone();
    run_async(async move {
        let mut client = connect(&config).await.map_err(|e| e.to_string())?;
        client.put(key, "{}", None).await.map(drop).map_err(|e| e.to_string())
    })
}

#[test]
fn a_submitter_writes_jobs_and_nothing_else() {
    let Some(cluster) = cluster_with_rbac() else { return };
    let p = &cluster.prefix;
    allowed(&cluster.etcdctl(SUBMITTER, &["put", &format!("{p}/jobs/x"), "{}"]), "put jobs/x");
    allowed(&cluster.etcdctl(SUBMITTER, &["del", &format!("{p}/jobs/x")]), "delete jobs/x");
    for key in ["runs/x", "bindings/node-a/x", "status/x", "nodes/x", "cron/x", "leader"] {
        refused(
            &cluster.etcdctl(SUBMITTER, &["put", &format!("{p}/{key}"), "{}"]),
            &format!("put {key}"),
        );
    }
    refused(&cluster.etcdctl(SUBMITTER, &["del", &format!("{p}/runs/r-1")]), "delete runs/r-1");
    refused(&cluster.etcdctl(SUBMITTER, &["put", "/elsewhere/x", "1"]), "put outside the prefix");
    // It reads the rest, for `corral ps --cluster`.
    let runs = cluster.etcdctl(SUBMITTER, &["get", "--prefix", "--keys-only", &format!("{p}/")]);
    allowed(&runs, "read the prefix");
    let keys = String::from_utf8_lossy(&runs.stdout);
    for key in ["runs/r-1", "bindings/node-a/r-1", "status/r-1", "nodes/node-a"] {
        assert!(keys.contains(&format!("{p}/{key}")), "{key} in\n{keys}");
    }

    // Through corral's client the same: `corral apply` writes its jobs in
    // one transaction, and a transaction that touches runs/ is refused whole.
    let config = cluster.client_config("submit", SUBMITTER);
    put(&config, format!("{p}/jobs/y")).unwrap();
    let error = put(&config, format!("{p}/runs/y")).unwrap_err();
    assert!(error.contains(DENIED), "{error}");
    let (jobs, runs) = (format!("{p}/jobs/z"), format!("{p}/runs/z"));
    let (one, two) = (format!("{p}/jobs/one"), format!("{p}/jobs/two"));
    let (applied, error) = run_async(async move {
        let mut client = connect(&config).await.unwrap();
        let apply = Txn::new().and_then([TxnOp::put(one, "{}", None), TxnOp::put(two, "{}", None)]);
        let applied = client.txn(apply).await.unwrap().succeeded();
        let txn = Txn::new().and_then([TxnOp::put(jobs, "{}", None), TxnOp::put(runs, "{}", None)]);
        (applied, client.txn(txn).await.unwrap_err().to_string())
    });
    assert!(applied);
    assert!(error.contains(DENIED), "{error}");
    let stored = cluster.get_prefix_raw(&format!("{p}/"));
    for key in ["jobs/y", "jobs/one", "jobs/two"] {
        assert!(stored.contains_key(&format!("{p}/{key}")), "{key} missing: {stored:?}");
    }
    for key in ["jobs/z", "runs/z", "runs/y"] {
        assert!(!stored.contains_key(&format!("{p}/{key}")), "{key} written: {stored:?}");
    }
}

#[test]
fn a_reader_reads_and_writes_nothing() {
    let Some(cluster) = cluster_with_rbac() else { return };
    let p = &cluster.prefix;
    let got = cluster.etcdctl(READER, &["get", "--prefix", "--keys-only", &format!("{p}/")]);
    allowed(&got, "read the prefix");
    assert_eq!(String::from_utf8_lossy(&got.stdout).lines().filter(|l| !l.is_empty()).count(), 4);
    for key in ["jobs/x", "runs/x", "status/x", "nodes/x", "leader"] {
        refused(
            &cluster.etcdctl(READER, &["put", &format!("{p}/{key}"), "{}"]),
            &format!("put {key}"),
        );
    }
    refused(&cluster.etcdctl(READER, &["del", &format!("{p}/runs/r-1")]), "delete runs/r-1");
    refused(&cluster.etcdctl(READER, &["get", "/elsewhere/x"]), "read outside the prefix");
    let error = put(&cluster.client_config("r", READER), format!("{p}/jobs/x")).unwrap_err();
    assert!(error.contains(DENIED), "{error}");
}

#[test]
fn an_agent_writes_its_node_record_under_a_lease_and_fenced_runs_and_bindings() {
    let Some(cluster) = cluster_with_rbac() else { return };
    let p = cluster.prefix.clone();
    let config = cluster.client_config("node-a", "node-a");
    let keys = p.clone();
    let outcome = run_async(async move {
        let p = keys;
        let mut client = connect(&config).await.map_err(|e| e.to_string())?;
        let err = |e: etcd_client::Error| e.to_string();
        // The node record, under the node's lease.
        let lease = client.lease_grant(3, None).await.map_err(err)?.id();
        let options = PutOptions::new().with_lease(lease);
        client.put(format!("{p}/nodes/node-a"), "{}", Some(options)).await.map_err(err)?;
        // Leadership taken on the key's absence, then a binding fenced by it.
        let leader = format!("{p}/leader");
        let take = Txn::new()
            .when([Compare::create_revision(leader.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                leader.as_str(),
                "{}",
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let taken = client.txn(take).await.map_err(err)?;
        assert!(taken.succeeded());
        let held = client.get(leader.as_str(), None).await.map_err(err)?.kvs()[0].create_revision();
        let bind = Txn::new()
            .when([Compare::create_revision(leader.as_str(), CompareOp::Equal, held)])
            .and_then([
                TxnOp::put(format!("{p}/runs/j-1"), "{}", None),
                TxnOp::put(format!("{p}/bindings/node-b/j-1"), "{}", None),
                TxnOp::put(format!("{p}/status/j-1"), "{}", None),
                TxnOp::put(format!("{p}/cron/j"), "{}", None),
            ]);
        let bound = client.txn(bind).await.map_err(err)?;
        let outside = client.put("/elsewhere/x", "1", None).await.err().map(err);
        // Revoking its lease takes its record and the leadership with it.
        client.lease_revoke(lease).await.map_err(err)?;
        let left = client
            .get(format!("{p}/nodes/"), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(err)?
            .count();
        Ok::<_, String>((bound.succeeded(), outside, left))
    });
    let (bound, outside, left) = outcome.unwrap();
    assert!(bound, "the fenced binding did not apply");
    let outside = outside.expect("an agent wrote outside the prefix");
    assert!(outside.contains(DENIED), "{outside}");
    assert_eq!(left, 0, "the node record outlived its lease");
    let stored = cluster.get_prefix_raw(&format!("{p}/"));
    for key in ["runs/j-1", "bindings/node-b/j-1", "status/j-1", "cron/j"] {
        assert!(stored.contains_key(&format!("{p}/{key}")), "{key} missing: {stored:?}");
    }
    assert!(!stored.contains_key(&format!("{p}/leader")), "leadership outlived the lease");
}

#[test]
fn a_certificate_that_names_no_user_gets_nothing_once_auth_is_on() {
    let Some(cluster) = EtcdCluster::start(3, true) else { return };
    let p = cluster.prefix.clone();
    let pki = cluster.pki.as_ref().unwrap();
    pki.issue_client("stranger");
    // Before auth: the CA's signature is all etcd asks for.
    allowed(
        &cluster.etcdctl("stranger", &["put", &format!("{p}/jobs/x"), "{}"]),
        "put before auth",
    );
    cluster.enable_rbac(&p);
    let got = cluster.etcdctl("stranger", &["get", &format!("{p}/jobs/x")]);
    assert!(!got.status.success(), "a certificate naming no user read the prefix");
    let stderr = String::from_utf8_lossy(&got.stderr);
    assert!(stderr.contains(DENIED) || stderr.contains("user name not found"), "{stderr}");
    refused(&cluster.etcdctl("stranger", &["put", &format!("{p}/jobs/y"), "{}"]), "put after auth");
    // A node added later is let in by its user, not by its certificate.
    cluster.add_agent_user("stranger");
    allowed(
        &cluster.etcdctl("stranger", &["put", &format!("{p}/runs/y"), "{}"]),
        "put as an agent",
    );
    // And shut out again by deleting the user, the CA untouched.
    cluster.etcdctl_ok(ROOT, &["user", "delete", "stranger"]);
    let got = cluster.etcdctl("stranger", &["get", &format!("{p}/runs/y")]);
    assert!(!got.status.success(), "a deleted user still read the prefix");
}
