//! Nodes with networks of their own: a bridge on the host, and for each
//! node a network namespace joined to it by a veth pair, so that the nodes
//! of one machine reach etcd (listening on the bridge's address) and each
//! other as separate hosts would, and a node can be cut off by taking its
//! link down.
//!
//! ```text
//!   host: etcd members on 127.0.0.1 and on the bridge's .1
//!     │
//!   bridge 10.X.Y.1/24 ── veth ── netns of node-a: 10.X.Y.10
//!                      ├─ veth ── netns of node-b: 10.X.Y.11
//!                      └─ veth ── netns of node-c: 10.X.Y.12
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// The first host address given to a node; .1 is the bridge's.
const FIRST_HOST: u8 = 10;

/// A bridge and the namespaces joined to it, removed on drop.
pub struct Bridge {
    pub name: String,
    /// The bridge's own address: where the nodes reach the host.
    pub gateway: Ipv4Addr,
    /// Node namespaces, by key (the agent's cgroup parent).
    nodes: Mutex<BTreeMap<String, NodeNet>>,
}

/// One node's namespace and its link to the bridge.
pub struct NodeNet {
    pub netns: String,
    /// The host end of the veth pair: down = the node is cut off.
    pub host_veth: String,
    pub address: Ipv4Addr,
    /// `/run/netns/{netns}`, held open for entering the namespace.
    handle: File,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Short interface names (the kernel allows 15 bytes), unique per test
/// binary and per use.
fn ifname(kind: &str) -> String {
    format!("c{kind}{}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

impl Bridge {
    /// A new bridge on a /24 of 10.0.0.0/8 that no interface of the host
    /// uses yet.
    pub fn new() -> Bridge {
        let used = String::from_utf8_lossy(
            &Command::new("ip").args(["-4", "-o", "addr"]).output().expect("run ip").stdout,
        )
        .into_owned();
        let seed = super::rand_u64();
        let gateway = (0..256u64)
            .map(|i| {
                let n = (seed + i) % (64 * 256);
                Ipv4Addr::new(10, 128 + (n / 256) as u8, (n % 256) as u8, 1)
            })
            .find(|g| {
                let [a, b, c, _] = g.octets();
                !used.contains(&format!(" {a}.{b}.{c}."))
            })
            .expect("a free /24 in 10.128.0.0/10");
        let name = ifname("b");
        ip(&["link", "add", &name, "type", "bridge"]);
        let bridge = Bridge { name, gateway, nodes: Mutex::new(BTreeMap::new()) };
        ip(&["addr", "add", &format!("{gateway}/24"), "dev", &bridge.name]);
        ip(&["link", "set", &bridge.name, "up"]);
        bridge
    }

    /// A namespace for the node `key`, joined to the bridge: its address.
    pub fn add_node(&self, key: &str) -> Ipv4Addr {
        let mut nodes = self.nodes.lock().unwrap();
        assert!(!nodes.contains_key(key), "{key} has a network already");
        let [a, b, c, _] = self.gateway.octets();
        let address = Ipv4Addr::new(a, b, c, FIRST_HOST + nodes.len() as u8);
        let netns = format!("corral-{}-{}", std::process::id(), ifname("n"));
        let (host_veth, node_veth) = (ifname("h"), ifname("v"));
        ip(&["netns", "add", &netns]);
        ip(&["link", "add", &host_veth, "type", "veth", "peer", "name", &node_veth]);
        ip(&["link", "set", &node_veth, "netns", &netns]);
        ip(&["link", "set", &host_veth, "master", &self.name, "up"]);
        ip(&["-n", &netns, "addr", "add", &format!("{address}/24"), "dev", &node_veth]);
        ip(&["-n", &netns, "link", "set", &node_veth, "up"]);
        ip(&["-n", &netns, "link", "set", "lo", "up"]);
        let handle = File::open(format!("/run/netns/{netns}")).unwrap();
        nodes.insert(key.to_owned(), NodeNet { netns, host_veth, address, handle });
        address
    }

    pub fn has(&self, key: &str) -> bool {
        self.nodes.lock().unwrap().contains_key(key)
    }

    fn with<T>(&self, key: &str, f: impl FnOnce(&NodeNet) -> T) -> T {
        let nodes = self.nodes.lock().unwrap();
        f(nodes.get(key).unwrap_or_else(|| panic!("{key} has no network of its own")))
    }

    pub fn address(&self, key: &str) -> Ipv4Addr {
        self.with(key, |n| n.address)
    }

    pub fn netns(&self, key: &str) -> String {
        self.with(key, |n| n.netns.clone())
    }

    /// Makes `command` start in the node's namespace.
    pub fn enter(&self, key: &str, command: &mut Command) {
        let handle = self.with(key, |n| n.handle.try_clone().unwrap());
        // SAFETY: the closure runs in the forked child before exec and only
        // makes the setns system call on a descriptor opened before the
        // fork (it stays open until exec), which allocates nothing and is
        // async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                nix::sched::setns(handle.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)
            });
        }
    }

    /// Runs `program ARGS` in the node's namespace.
    pub fn exec(&self, key: &str, program: &str, args: &[&str]) -> Output {
        let mut command = Command::new(program);
        command.args(args);
        self.enter(key, &mut command);
        command.output().unwrap()
    }

    /// Takes the node's link down: nothing passes between it and the
    /// bridge (etcd, the other nodes) until [`reconnect`](Self::reconnect).
    pub fn cut_off(&self, key: &str) {
        ip(&["link", "set", &self.with(key, |n| n.host_veth.clone()), "down"]);
    }

    pub fn reconnect(&self, key: &str) {
        ip(&["link", "set", &self.with(key, |n| n.host_veth.clone()), "up"]);
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth pair in it; a process still
        // inside keeps the namespace alive, unreachable, until it exits.
        for node in self.nodes.lock().unwrap().values() {
            let _ = Command::new("ip").args(["netns", "del", &node.netns]).output();
        }
        let _ = Command::new("ip").args(["link", "del", &self.name]).output();
    }
}
