//! Where in a cluster a job may run: `nodes`, `node_selector` and `spread`.
//!
//! These matter only to jobs applied to a cluster (`corral apply`, see
//! [`crate::cluster`]): the cluster scheduler binds a run only to a node
//! whose name is in `nodes` (when given) and whose labels include every
//! `node_selector` pair. `spread: true` asks it to prefer, among the nodes
//! that fit, the one running the fewest runs of the same job. A node's own
//! jobs directory runs its jobs on that node; there a constraint the node
//! does not meet is reported as a problem of the file.

use std::collections::BTreeMap;
use std::fmt;

use super::check::Checker;
use super::error::{FieldPath, SpecError};
use super::tree::Node;

/// The longest node name or label key or value: a DNS label is 63 bytes,
/// and a node's default name is its host name.
pub const MAX_NAME_LEN: usize = 63;

/// A job's node constraints; the default constrains nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeConstraints {
    /// Empty: any node.
    pub names: Vec<String>,
    /// Labels a node must carry, each with this value.
    pub selector: BTreeMap<String, String>,
    /// Prefer the node with the fewest runs of this job.
    pub spread: bool,
}

impl NodeConstraints {
    /// Whether node `name` with `labels` meets the constraints.
    pub fn admits(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        (self.names.is_empty() || self.names.iter().any(|n| n == name))
            && self.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    /// Whether any constraint is set (spread is a preference, not one).
    pub fn constrains(&self) -> bool {
        !self.names.is_empty() || !self.selector.is_empty()
    }

    /// Why node `name` with `labels` does not meet the constraints, in
    /// words; `None` when it does.
    pub fn refusal(&self, name: &str, labels: &BTreeMap<String, String>) -> Option<String> {
        if self.admits(name, labels) {
            return None;
        }
        let mut why = Vec::new();
        if !self.names.is_empty() && !self.names.iter().any(|n| n == name) {
            why.push(format!("is not in nodes [{}]", self.names.join(", ")));
        }
        let unmet: Vec<String> = self
            .selector
            .iter()
            .filter(|(k, v)| labels.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !unmet.is_empty() {
            why.push(format!("lacks node_selector {}", unmet.join(", ")));
        }
        let shown = if labels.is_empty() {
            "no labels".to_owned()
        } else {
            labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
        };
        Some(format!("node constraints: this node ({name}, labels: {shown}) {}", why.join(" and ")))
    }
}

impl fmt::Display for NodeConstraints {
    /// `nodes a, b; labels disk=ssd` — for messages about why no node fits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.names.is_empty() {
            parts.push(format!("nodes {}", self.names.join(", ")));
        }
        if !self.selector.is_empty() {
            let labels: Vec<String> =
                self.selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
            parts.push(format!("labels {}", labels.join(", ")));
        }
        if parts.is_empty() {
            f.write_str("any node")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

/// Checks a node name or a label key or value: 1 to 63 bytes of ASCII
/// letters, digits, `.`, `_`, `-` (and `/` in a label key, as in
/// `example.com/disk`).
pub fn check_name(text: &str, what: &'static str, slash: bool) -> Result<(), SpecError> {
    let invalid = |reason: String| SpecError::Invalid { what, value: text.to_owned(), reason };
    if text.is_empty() || text.len() > MAX_NAME_LEN {
        return Err(invalid(format!("it must be 1 to {MAX_NAME_LEN} bytes long")));
    }
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') || (slash && c == '/');
    if let Some(bad) = text.chars().find(|c| !allowed(*c)) {
        let extra = if slash { ", `-` and `/`" } else { " and `-`" };
        return Err(invalid(format!(
            "it contains {bad:?}; only ASCII letters, digits, `.`, `_`{extra} are allowed"
        )));
    }
    Ok(())
}

/// Compiles a mapping of labels (a job's `node_selector`, a node's
/// `labels` in the agent configuration): every bad key and value reported.
pub fn labels<E: From<SpecError>>(
    cx: &mut Checker<E>,
    node: &Node,
    path: &FieldPath,
) -> Option<BTreeMap<String, String>> {
    let entries = cx.free_map(node, path)?;
    let mut labels = BTreeMap::new();
    let mut ok = true;
    for entry in entries {
        let key_path = path.key(&entry.key);
        if let Err(e) = check_name(&entry.key, "label name", true) {
            cx.report(entry.key_pos, &key_path, e);
            ok = false;
            continue;
        }
        let value = cx.parsed_text(entry.value, &key_path, |text| {
            check_name(text, "label value", false).map(|()| text.to_owned())
        });
        match value {
            Some(value) => {
                labels.insert(entry.key.clone(), value);
            }
            None => ok = false,
        }
    }
    ok.then_some(labels)
}

/// Compiles the three fields from the job's mapping entries.
pub(super) fn compile(
    cx: &mut Checker,
    nodes: Option<&Node>,
    selector: Option<&Node>,
    spread: Option<&Node>,
    root: &FieldPath,
) -> Option<NodeConstraints> {
    let names = match nodes {
        None => Some(Vec::new()),
        Some(node) => {
            let path = root.key("nodes");
            cx.seq(node, &path).and_then(|items| {
                let names: Vec<Option<String>> = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        cx.parsed_text(item, &path.index(i), |text| {
                            check_name(text, "node name", false).map(|()| text.to_owned())
                        })
                    })
                    .collect();
                names.into_iter().collect::<Option<Vec<_>>>()
            })
        }
    };
    let selector = match selector {
        None => Some(BTreeMap::new()),
        Some(node) => labels(cx, node, &root.key("node_selector")),
    };
    let spread = match spread {
        None => Some(false),
        Some(node) => cx.boolean(node, &root.key("spread")),
    };
    Some(NodeConstraints { names: names?, selector: selector?, spread: spread? })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn compiled(yaml: &str) -> Result<NodeConstraints, String> {
        crate::spec::compile_str(Path::new("t.yaml"), yaml)
            .map(|mut jobs| jobs.remove(0).spec.nodes)
            .map_err(|d| d.to_string())
    }

    #[test]
    fn absent_fields_constrain_nothing() {
        let c = compiled("name: a\ncommand: [/bin/true]\n").unwrap();
        assert_eq!(c, NodeConstraints::default());
        assert!(!c.constrains());
        assert!(c.admits("any", &BTreeMap::new()));
    }

    #[test]
    fn names_and_labels_must_all_match() {
        let c = compiled(
            "name: a\ncommand: [/bin/true]\nnodes: [n1, n2]\n\
             node_selector: {disk: ssd, example.com/rack: \"7\"}\nspread: true\n",
        )
        .unwrap();
        assert!(c.spread && c.constrains());
        let labels: BTreeMap<String, String> =
            [("disk", "ssd"), ("example.com/rack", "7"), ("zone", "a")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        assert!(c.admits("n1", &labels));
        assert!(!c.admits("n3", &labels), "not a named node");
        let mut hdd = labels.clone();
        hdd.insert("disk".into(), "hdd".into());
        assert!(!c.admits("n2", &hdd), "a label with another value");
        hdd.remove("disk");
        assert!(!c.admits("n2", &hdd), "a label missing");
        assert_eq!(c.to_string(), "nodes n1, n2; labels disk=ssd, example.com/rack=7");
    }

    #[test]
    fn bad_names_and_labels_are_reported_where_they_are() {
        let e = compiled(
            "name: a\ncommand: [/bin/true]\nnodes: [\"n 1\", ok]\n\
             node_selector: {\"bad key!\": x, disk: \"a/b\"}\nspread: maybe\n",
        )
        .unwrap_err();
        assert!(e.contains(":3:") && e.contains("nodes[0]") && e.contains("node name"), "{e}");
        assert!(e.contains("label name") && e.contains("label value"), "{e}");
        assert!(e.contains("spread"), "{e}");
    }
}
