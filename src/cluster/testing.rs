//! A single plaintext etcd member for the cluster module's own tests, from
//! Debian's `etcd-server` (`.ci/run` installs it). The integration tests
//! start a three-member cluster with TLS (tests/cluster_harness).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::ClusterConfig;

/// A running etcd member on loopback, stopped and removed on drop.
pub struct TestEtcd {
    child: Child,
    dir: PathBuf,
    pub endpoint: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl TestEtcd {
    /// Starts a member and waits until it answers; `None` (with the reason
    /// printed) where etcd is not installed and CI is not set.
    pub fn start() -> Option<TestEtcd> {
        if Command::new("etcd").arg("--version").output().is_err() {
            assert!(
                std::env::var_os("CI").is_none(),
                "etcd is not installed; .ci/run installs etcd-server"
            );
            eprintln!("skipped: etcd is not installed (apt-get install etcd-server)");
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "corral-etcd-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .arg("--name=t")
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=t={peer_url}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("etcd.log")).unwrap())
            .spawn()
            .expect("start etcd");
        let etcd = TestEtcd { child, dir, endpoint };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let health = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &etcd.endpoint, "endpoint", "health"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if health.is_ok_and(|s| s.success()) {
                return Some(etcd);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("etcd did not become healthy; see {}", etcd.dir.join("etcd.log").display());
    }

    /// A cluster section for this member, as node `node`, keys under a
    /// prefix of the test's own.
    pub fn config(&self, node: &str, prefix: &str) -> ClusterConfig {
        ClusterConfig {
            endpoints: vec![self.endpoint.clone()],
            node_name: node.to_owned(),
            labels: Default::default(),
            lease_ttl: Duration::from_secs(2),
            tls: None,
            prefix: prefix.to_owned(),
            scheduler: true,
            publish_dir: None,
            node_loss_grace: Duration::from_secs(1),
        }
    }
}

impl TestEtcd {
    /// Stops the member (SIGSTOP): it answers nothing until
    /// [`resume`](Self::resume), as an unreachable etcd would.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, signal).unwrap();
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        // A paused member would not die of SIGKILL any later, but say it.
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_member_starts_and_takes_a_write() {
        let Some(etcd) = TestEtcd::start() else { return };
        let config = etcd.config("n1", "/t");
        let mut client = crate::cluster::etcd::connect(&config).await.unwrap();
        client.put("/t/x", "1", None).await.unwrap();
        let got = client.get("/t/x", None).await.unwrap();
        assert_eq!(got.kvs()[0].value(), b"1");
    }
}
