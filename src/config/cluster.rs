//! The `cluster` section of the agent configuration: which etcd to join,
//! as which node, and how (docs/config.md, docs/cluster.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::agent::path;
use super::error::ConfigError;
use crate::spec::check::Checker;
use crate::spec::error::FieldPath;
use crate::spec::nodes::check_name;
use crate::spec::tree::Node;
use crate::spec::SpecError;

/// How this agent takes part in a cluster. Absent: it is a node agent on
/// its own, exactly as without cluster mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// etcd client URLs: `https://host:2379` with `tls`, `http://` without.
    pub endpoints: Vec<String>,
    /// This node's name in the cluster; default: the host name.
    pub node_name: String,
    /// Labels jobs select nodes by (`node_selector`).
    pub labels: BTreeMap<String, String>,
    /// The TTL of the lease the node's record lives under: a node that
    /// stops renewing it leaves the cluster view this long after.
    pub lease_ttl: Duration,
    /// Client certificate and the CA that signed etcd's; `None`: plaintext.
    pub tls: Option<ClusterTls>,
    /// Every key corral writes starts with this.
    pub prefix: String,
    /// Whether this agent stands for election as the cluster scheduler.
    pub scheduler: bool,
    /// A directory whose job files this agent applies to the cluster, with
    /// the jobs directory's rules (see [`crate::cluster::publish`]).
    pub publish_dir: Option<PathBuf>,
    /// How long the scheduler waits, after a node's record disappeared
    /// (its lease expired), before it acts on that node's runs: binds them
    /// elsewhere or ends them `lost` (`on_node_loss`). A node back within
    /// it keeps its runs.
    pub node_loss_grace: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// Below this, a pause of the agent (a slow disk, a busy host) loses the
/// node its lease; etcd's own minimum TTL is in this range too.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(2);
/// Above this, a lost node takes minutes to leave the view.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(300);
pub const DEFAULT_PREFIX: &str = "/corral";
pub const DEFAULT_NODE_LOSS_GRACE: Duration = Duration::from_secs(10);
/// A longer grace leaves a lost node's runs undone for more than an hour.
pub const MAX_NODE_LOSS_GRACE: Duration = Duration::from_secs(3600);

const FIELDS: &[&str] = &[
    "endpoints",
    "node_name",
    "labels",
    "lease_ttl",
    "tls",
    "prefix",
    "scheduler",
    "publish_dir",
    "node_loss_grace",
];
const TLS_FIELDS: &[&str] = &["ca", "cert", "key"];

/// Compiles the `cluster` mapping; relative paths are taken from `base`.
pub(super) fn compile(
    cx: &mut Checker<ConfigError>,
    node: &Node,
    at: &FieldPath,
    base: &Path,
) -> Option<ClusterConfig> {
    let fields = cx.map(node, at, FIELDS)?;
    let endpoints = fields.require(cx, "endpoints").and_then(|n| {
        let path = fields.field("endpoints");
        let items = cx.seq(n, &path)?;
        if items.is_empty() {
            cx.report(
                n.pos,
                &path,
                SpecError::Invalid {
                    what: "endpoint list",
                    value: "[]".into(),
                    reason: "name at least one etcd client URL".into(),
                },
            );
            return None;
        }
        let urls: Vec<Option<String>> = items
            .iter()
            .enumerate()
            .map(|(i, item)| cx.parsed(item, &path.index(i), endpoint))
            .collect();
        urls.into_iter().collect::<Option<Vec<_>>>()
    });
    let node_name = match fields.get("node_name") {
        None => Some(crate::scheduler::cron::jitter::node_name()),
        Some(n) => cx.parsed_text(n, &fields.field("node_name"), |text| {
            check_name(text, "node name", false).map(|()| text.to_owned())
        }),
    };
    let labels = match fields.get("labels") {
        None => Some(BTreeMap::new()),
        Some(n) => {
            let path = fields.field("labels");
            cx.free_map(n, &path).and_then(|entries| {
                let mut labels = BTreeMap::new();
                let mut ok = true;
                for entry in entries {
                    let key_path = path.key(&entry.key);
                    if let Err(e) = check_name(&entry.key, "label name", true) {
                        cx.report(entry.key_pos, &key_path, e);
                        ok = false;
                        continue;
                    }
                    match cx.parsed_text(entry.value, &key_path, |text| {
                        check_name(text, "label value", false).map(|()| text.to_owned())
                    }) {
                        Some(value) => {
                            labels.insert(entry.key.clone(), value);
                        }
                        None => ok = false,
                    }
                }
                ok.then_some(labels)
            })
        }
    };
    let lease_ttl = match fields.get("lease_ttl") {
        None => Some(DEFAULT_LEASE_TTL),
        Some(n) => cx.duration(n, &fields.field("lease_ttl")).and_then(|d| {
            if (MIN_LEASE_TTL..=MAX_LEASE_TTL).contains(&d) && d.subsec_nanos() == 0 {
                return Some(d);
            }
            cx.report(
                n.pos,
                &fields.field("lease_ttl"),
                SpecError::Invalid {
                    what: "lease TTL",
                    value: crate::spec::duration::format(d),
                    reason: format!(
                        "it must be whole seconds from {} to {}",
                        crate::spec::duration::format(MIN_LEASE_TTL),
                        crate::spec::duration::format(MAX_LEASE_TTL)
                    ),
                },
            );
            None
        }),
    };
    let tls = match fields.get("tls") {
        None => Some(None),
        Some(n) => {
            let path = fields.field("tls");
            cx.map(n, &path, TLS_FIELDS).and_then(|tls| {
                let mut file = |key: &'static str| match tls.get(key) {
                    None => {
                        tls.require(cx, key);
                        None
                    }
                    Some(_) => path_in(cx, &tls, key, base),
                };
                let (ca, cert, key) = (file("ca"), file("cert"), file("key"));
                Some(Some(ClusterTls { ca: ca?, cert: cert?, key: key? }))
            })
        }
    };
    let prefix = match fields.get("prefix") {
        None => Some(DEFAULT_PREFIX.to_owned()),
        Some(n) => cx.parsed(n, &fields.field("prefix"), |text| {
            let ok = text.starts_with('/')
                && text.len() > 1
                && !text.ends_with('/')
                && text[1..].split('/').all(|part| check_name(part, "prefix", false).is_ok());
            if ok {
                Ok(text.to_owned())
            } else {
                Err(SpecError::Invalid {
                    what: "key prefix",
                    value: text.to_owned(),
                    reason: "it is an absolute key path such as /corral or /corral/prod, \
                             without a trailing /"
                        .into(),
                })
            }
        }),
    };
    let scheduler = match fields.get("scheduler") {
        None => Some(true),
        Some(n) => cx.boolean(n, &fields.field("scheduler")),
    };
    let publish_dir = match fields.get("publish_dir") {
        None => Some(None),
        Some(_) => path_in(cx, &fields, "publish_dir", base).map(Some),
    };

    let node_loss_grace = match fields.get("node_loss_grace") {
        None => Some(DEFAULT_NODE_LOSS_GRACE),
        Some(n) => cx.duration(n, &fields.field("node_loss_grace")).and_then(|d| {
            if d <= MAX_NODE_LOSS_GRACE {
                return Some(d);
            }
            cx.report(
                n.pos,
                &fields.field("node_loss_grace"),
                SpecError::Invalid {
                    what: "node loss grace",
                    value: crate::spec::duration::format(d),
                    reason: format!(
                        "it must be at most {}",
                        crate::spec::duration::format(MAX_NODE_LOSS_GRACE)
                    ),
                },
            );
            None
        }),
    };

    let (endpoints, tls) = (endpoints?, tls?);
    let scheme = if tls.is_some() { "https://" } else { "http://" };
    if let Some(bad) = endpoints.iter().find(|url| !url.starts_with(scheme)) {
        let why = if tls.is_some() {
            "with `tls` set, every endpoint is an https:// URL"
        } else {
            "without `tls`, every endpoint is an http:// URL; set `tls` for https://"
        };
        cx.report(
            fields.key_pos("endpoints"),
            &fields.field("endpoints"),
            SpecError::Invalid { what: "endpoint", value: bad.clone(), reason: why.into() },
        );
        return None;
    }
    Some(ClusterConfig {
        endpoints,
        node_name: node_name?,
        labels: labels?,
        lease_ttl: lease_ttl?,
        tls,
        prefix: prefix?,
        scheduler: scheduler?,
        publish_dir: publish_dir?,
        node_loss_grace: node_loss_grace?,
    })
}

fn path_in(
    cx: &mut Checker<ConfigError>,
    fields: &crate::spec::check::Fields,
    key: &'static str,
    base: &Path,
) -> Option<PathBuf> {
    path(cx, fields, key, base, PathBuf::new())
}

/// `http://host:port` or `https://host:port`, nothing after the port.
fn endpoint(text: &str) -> Result<String, SpecError> {
    let invalid = |reason: &str| SpecError::Invalid {
        what: "etcd endpoint",
        value: text.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or_else(|| invalid("it starts with http:// or https://"))?;
    let (host, port) =
        rest.rsplit_once(':').ok_or_else(|| invalid("it ends with a port, as in :2379"))?;
    if host.is_empty() || host.contains('/') || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(invalid("write it as scheme://host:port, as in https://10.0.0.1:2379"));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::compile_str;

    fn compile(text: &str) -> Result<Option<ClusterConfig>, String> {
        compile_str(Path::new("agent.yaml"), text, Path::new("/etc/corral"))
            .map(|c| c.cluster)
            .map_err(|d| d.to_string())
    }

    #[test]
    fn absent_means_no_cluster_and_defaults_fill_the_rest() {
        assert_eq!(compile("").unwrap(), None);
        let c = compile("cluster: {endpoints: [\"http://127.0.0.1:2379\"]}\n").unwrap().unwrap();
        assert_eq!(c.lease_ttl, DEFAULT_LEASE_TTL);
        assert_eq!(c.prefix, "/corral");
        assert_eq!(c.node_loss_grace, DEFAULT_NODE_LOSS_GRACE);
        assert!(c.scheduler && c.tls.is_none() && c.labels.is_empty());
        assert_eq!(c.node_name, crate::scheduler::cron::jitter::node_name());
    }

    #[test]
    fn tls_paths_resolve_against_the_files_directory() {
        let c = compile(
            "cluster:\n  endpoints: [\"https://10.0.0.1:2379\"]\n  node_name: n1\n  \
             labels: {disk: ssd}\n  lease_ttl: 5s\n  \
             tls: {ca: pki/ca.pem, cert: /pki/n1.pem, key: pki/n1-key.pem}\n  \
             publish_dir: cluster-jobs\n  node_loss_grace: 0s\n",
        )
        .unwrap()
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.ca, Path::new("/etc/corral/pki/ca.pem"));
        assert_eq!(tls.cert, Path::new("/pki/n1.pem"));
        assert_eq!(c.publish_dir.unwrap(), Path::new("/etc/corral/cluster-jobs"));
        assert_eq!(c.lease_ttl, Duration::from_secs(5));
        assert_eq!(c.node_loss_grace, Duration::ZERO);
        assert_eq!(c.labels.get("disk").map(String::as_str), Some("ssd"));
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let e = compile(
            "cluster:\n  endpoints: [\"etcd:2379\"]\n  node_name: \"a b\"\n  lease_ttl: 1s\n  \
             tls: {ca: ca.pem}\n  prefix: corral/\n  node_loss_grace: 2h\n",
        )
        .unwrap_err();
        for want in [
            "cluster.endpoints[0]",
            "cluster.node_name",
            "cluster.lease_ttl",
            "cluster.tls",
            "cluster.prefix",
            "cluster.node_loss_grace",
        ] {
            assert!(e.contains(want), "{want} in {e}");
        }
        let e =
            compile("cluster: {endpoints: [\"http://a:2379\"], tls: {ca: a, cert: b, key: c}}\n")
                .unwrap_err();
        assert!(e.contains("https://"), "{e}");
    }
}
