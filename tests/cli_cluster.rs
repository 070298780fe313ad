//! The cluster commands as a user runs them, against a real etcd member on
//! loopback (plaintext: the TLS cluster is the cluster harness's): `corral
//! apply`, `delete`, `nodes`, `ps --cluster`, `show` and `logs` of cluster
//! runs. The scheduler and node records are written here with etcdctl, as
//! those parts would write them, so that what the commands print can be
//! checked line by line.

mod agent_harness;
mod cluster_harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cluster_harness::EtcdCluster;
use std::time::{SystemTime, UNIX_EPOCH};

/// One plaintext etcd member on loopback (the cluster harness's), removed
/// on drop.
struct Etcd {
    member: EtcdCluster,
    endpoint: String,
}

impl Etcd {
    fn start() -> Option<Etcd> {
        let member = EtcdCluster::start(1, false)?;
        let endpoint = member.endpoint(0);
        Some(Etcd { member, endpoint })
    }

    fn ctl(&self, args: &[&str]) -> Output {
        self.member.etcdctl(cluster_harness::ROOT, args)
    }

    fn put(&self, key: &str, value: &str) {
        self.member.put_raw(key, value.as_bytes());
    }

    /// The keys under `prefix` with their mod revisions.
    fn keys(&self, prefix: &str) -> Vec<(String, i64)> {
        let out = self.ctl(&["get", prefix, "--prefix", "-w", "fields"]);
        let text = String::from_utf8(out.stdout).unwrap();
        let mut keys = Vec::new();
        let mut key = None;
        for line in text.lines() {
            if let Some(k) = line.strip_prefix("\"Key\" : ") {
                key = Some(k.trim_matches('"').to_owned());
            } else if let Some(rev) = line.strip_prefix("\"ModRevision\" : ") {
                keys.push((key.take().unwrap(), rev.parse().unwrap()));
            }
        }
        keys
    }
}

/// An agent configuration that joins `etcd` as `node` under `prefix`; its
/// socket is in `dir`, where no agent listens.
fn config(dir: &Path, etcd: &Etcd, node: &str, prefix: &str) -> PathBuf {
    let path = dir.join("agent.yaml");
    std::fs::write(
        &path,
        format!(
            "socket: {}\ncluster:\n  endpoints: [\"{}\"]\n  node_name: {node}\n  prefix: {prefix}\n",
            dir.join("no-agent.sock").display(),
            etcd.endpoint
        ),
    )
    .unwrap();
    path
}

fn corral(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("CORRAL_SOCKET")
        .output()
        .expect("run corral")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8(output.stdout.clone()).unwrap(),
        String::from_utf8(output.stderr.clone()).unwrap(),
    )
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn apply_and_delete_keep_the_clusters_job_set() {
    let Some(etcd) = Etcd::start() else { return };
    let work = tempfile::tempdir().unwrap();
    let cfg = config(work.path(), &etcd, "n1", "/cli-apply");
    let jobs = work.path().join("jobs");
    std::fs::create_dir(&jobs).unwrap();
    write(&jobs, "a.yaml", "name: a\ncommand: [/bin/true]\n");
    write(&jobs, "b.yaml", "name: b\ncommand: [/bin/true]\n");
    let jobs_arg = jobs.to_str().unwrap();

    let out = corral(&cfg, &["apply", jobs_arg]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(stdout, "added a\nadded b\n");
    let keys = etcd.keys("/cli-apply/jobs/");
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].1, keys[1].1, "one transaction: {keys:?}");

    let out = corral(&cfg, &["apply", jobs_arg]);
    assert_eq!(text(&out).0, "unchanged a\nunchanged b\n");
    assert!(text(&out).1.contains("nothing to write"), "{:?}", text(&out));
    assert_eq!(etcd.keys("/cli-apply/jobs/"), keys);

    // A bad file anywhere: every problem with its position, nothing written.
    write(&jobs, "a.yaml", "name: a\ncommand: [/bin/false]\n");
    let other = write(work.path(), "c.yaml", "name: c\ncommand: [/bin/true]\nafter: [a]\n");
    let out = corral(&cfg, &["apply", jobs_arg, other.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.starts_with(&format!("{}:3:", other.display())), "{stdout}");
    assert!(stdout.contains("after: refused: a cluster job cannot wait"), "{stdout}");
    assert!(stderr.contains("nothing was applied"), "{stderr}");
    assert_eq!(etcd.keys("/cli-apply/jobs/"), keys);

    // A changed file bumps its job only; a job of another file is left alone.
    let out = corral(&cfg, &["apply", jobs.join("a.yaml").to_str().unwrap()]);
    assert_eq!(text(&out).0, "changed a\nleft alone (in the cluster, not in these files): b\n");
    let after = etcd.keys("/cli-apply/jobs/");
    assert!(after[0].1 > keys[0].1 && after[1].1 == keys[1].1, "{after:?}");

    // --prune removes what the directory no longer defines; --dry-run writes nothing.
    std::fs::remove_file(jobs.join("b.yaml")).unwrap();
    let out = corral(&cfg, &["apply", "--prune", "--dry-run", jobs_arg]);
    assert_eq!(text(&out).0, "unchanged a\nremoved b\n");
    assert_eq!(etcd.keys("/cli-apply/jobs/").len(), 2);
    let out = corral(&cfg, &["apply", "--prune", jobs_arg]);
    assert_eq!(text(&out).0, "unchanged a\nremoved b\n");
    assert_eq!(etcd.keys("/cli-apply/jobs/").len(), 1);

    let out = corral(&cfg, &["delete", "a", "nope"]);
    let (stdout, stderr) = text(&out);
    assert_eq!((stdout.as_str(), out.status.code()), ("deleted a\n", Some(1)), "{stderr}");
    assert!(stderr.contains("no cluster job named \"nope\""), "{stderr}");
    assert!(etcd.keys("/cli-apply/jobs/").is_empty());
}

#[test]
fn without_a_cluster_section_the_commands_say_so() {
    let work = tempfile::tempdir().unwrap();
    let cfg = write(work.path(), "agent.yaml", "jobs_dir: /nonexistent\n");
    for args in [&["nodes"][..], &["ps", "--cluster"], &["delete", "x"]] {
        let out = corral(&cfg, args);
        let (_, stderr) = text(&out);
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        assert!(stderr.contains("has no `cluster:` section"), "{args:?}: {stderr}");
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn nodes_ps_show_and_logs_read_the_cluster() {
    let Some(etcd) = Etcd::start() else { return };
    let work = tempfile::tempdir().unwrap();
    let cfg = config(work.path(), &etcd, "n1", "/cli-view");
    let now = now_ms();
    let gib = 1u64 << 30;
    for (name, cpus, memory) in [("n1", 1, 4 * gib), ("n2", 2, 8 * gib)] {
        etcd.put(
            &format!("/cli-view/nodes/{name}"),
            &format!(
                r#"{{"name":"{name}","labels":{{"disk":"ssd"}},"cgroup_mode":"hybrid",
                "version":"0.1.0","api":null,
                "capacity":{{"cpus":{cpus},"memory":{memory},"numa":[{{"node":0,"cpus":{cpus},"memory":{memory}}}]}},
                "allocated":{{"exclusive_cpus":1,"memory":{gib},"numa":[{{"node":0,"cpus":1,"memory":{gib}}}],"runs":1,"pending":0}},
                "updated_at":{now}}}"#
            ),
        );
    }
    etcd.put("/cli-view/leader", &format!(r#"{{"node":"n2","since":{now}}}"#));
    let run = |name: &str, created: i64, state: &str| {
        format!(
            r#"{{"run":"{name}","job":"{}","job_revision":5,"scheduled_for":null,
            "created_at":{created},"attempt":1,"state":{state},"memory_hard":null,
            "handed_back_by":{{}},"removed":false}}"#,
            name.rsplit_once('-').unwrap().0
        )
    };
    etcd.put(
        "/cli-view/runs/a-5",
        &run("a-5", now - 2000, &format!(r#"{{"state":"bound","node":"n2","at":{now}}}"#)),
    );
    etcd.put(
        "/cli-view/runs/big-6",
        &run("big-6", now - 1000, r#"{"state":"pending","reason":"no node has 64Gi"}"#),
    );
    etcd.put("/cli-view/runs/junk-1", "{");
    etcd.put(
        "/cli-view/status/a-5",
        &format!(
            r#"{{"run":"a-5","node":"n2","attempt":1,"node_run":"a-3","phase":"running",
            "detail":null,"ended":null,"handed_back":null,
            "events":[{{"at":{now},"what":"running"}}],"updated_at":{now}}}"#
        ),
    );

    let out = corral(&cfg, &["nodes", "-v"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("NAME  LABELS    CGROUPS  CPUS  MEMORY"), "{stdout}");
    assert!(
        lines[1].starts_with("n1    disk=ssd  hybrid   1/1   1Gi/4Gi  1 (0 pending)  0.1.0"),
        "{stdout}"
    );
    assert!(lines[2].starts_with("n2    disk=ssd  hybrid   1/2   1Gi/8Gi"), "{stdout}");
    assert!(stdout.contains("n2 NUMA node 0: CPUs 1/2, memory 1Gi/8Gi\n"), "{stdout}");
    assert!(stdout.contains("scheduler: n2 (since "), "{stdout}");

    let out = corral(&cfg, &["ps", "--cluster"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split("  ").filter(|c| !c.is_empty()).map(str::trim).collect())
        .collect();
    assert_eq!(rows[0], ["RUN", "JOB", "STATE", "NODE", "NODE RUN", "ATTEMPT", "AGE"]);
    assert_eq!(rows[1][..6], ["a-5", "a", "running", "n2", "a-3", "1"]);
    assert_eq!(rows[2][..6], ["big-6", "big", "pending (no node has 64Gi)", "-", "-", "1"]);
    assert!(
        rows[3][0] == "/cli-view/runs/junk-1" && rows[3][2].starts_with("bad record: "),
        "{stdout}"
    );
    let out = corral(&cfg, &["ps", "--cluster", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["node_run"], "a-3");

    // No agent listens on this node's socket: show falls back to the cluster.
    let out = corral(&cfg, &["show", "a-5"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.starts_with("run:       a-5 (cluster job a, attempt 1)\n"), "{stdout}");
    assert!(stdout.contains("status:    running on n2 (a-3, attempt 1)"), "{stdout}");
    let out = corral(&cfg, &["show", "--cluster", "nothing-1"]);
    assert!(text(&out).1.contains("the cluster has no run or job named \"nothing-1\""));

    // The run is on n2 and this is n1: say where its logs are, plainly.
    let out = corral(&cfg, &["logs", "a-5"]);
    let (stdout, stderr) = text(&out);
    assert_eq!((out.status.code(), stdout.as_str()), (Some(1), ""), "{stderr}");
    assert!(
        stderr.contains("a-5 ran on node n2 as its run a-3; its logs are on that node: run `corral logs a-3` there"),
        "{stderr}"
    );
    let out = corral(&cfg, &["logs", "--cluster", "big-6"]);
    assert!(
        text(&out).1.contains("big-6 has no logs yet: no node has started it (pending"),
        "{:?}",
        text(&out)
    );
}

/// The agent side of `publish_dir`: a real agent publishes the directory's
/// files to the cluster, keeps a file's last good version through a bad
/// edit, and deletes a job whose file is removed.
#[test]
fn an_agent_publishes_its_publish_dir() {
    let Some(etcd) = Etcd::start() else { return };
    let extra = format!(
        "cluster:\n  endpoints: [\"{}\"]\n  node_name: pubnode\n  prefix: /agent-pub\n  \
         publish_dir: published\n",
        etcd.endpoint
    );
    let mut agent = agent_harness::TestAgent::new(&extra);
    let published = agent.jobs.parent().unwrap().join("published");
    std::fs::create_dir(&published).unwrap();
    agent.start();
    let jobs = || etcd.keys("/agent-pub/jobs/");
    let names = |keys: Vec<(String, i64)>| -> Vec<String> {
        keys.into_iter().map(|(k, _)| k.trim_start_matches("/agent-pub/jobs/").to_owned()).collect()
    };
    let secs = agent_harness::secs;

    write(&published, "a.yaml", "name: a\ncommand: [/bin/true]\n");
    agent.wait_for("a published", secs(30), || names(jobs()) == ["a"]);
    let source = etcd.ctl(&["get", "/agent-pub/jobs/a", "--print-value-only"]);
    let record: serde_json::Value = serde_json::from_slice(&source.stdout).unwrap();
    assert_eq!(record["source"], "name: a\ncommand: [/bin/true]\n");
    assert_eq!(record["origin"], format!("pubnode:{}", published.display()));
    let a_revision = jobs()[0].1;

    // A bad edit: a stays as it was; b, dropped after it, shows the batch was taken.
    write(&published, "a.yaml", "name: a\ncommand: [/bin/true]\nprioritee: 1\n");
    write(&published, "b.yaml", "name: b\ncommand: [/bin/true]\n");
    agent.wait_for("b published", secs(30), || names(jobs()) == ["a", "b"]);
    assert_eq!(jobs()[0].1, a_revision, "the last good version of a stays");
    assert!(agent.log_text().contains("prioritee"), "the problem is logged");

    std::fs::remove_file(published.join("a.yaml")).unwrap();
    agent.wait_for("a deleted", secs(30), || names(jobs()) == ["b"]);
    assert!(agent.stop().success());
}
