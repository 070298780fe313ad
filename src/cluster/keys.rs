//! Where corral keeps its cluster state in etcd: every key under one
//! prefix (`cluster.prefix`, `/corral` by default), so that etcd's RBAC can
//! grant each kind of client exactly its part (docs/cluster.md).
//!
//! ```text
//! {prefix}/nodes/{node}              NodeRecord, under the node's lease
//! {prefix}/jobs/{job}                JobRecord, written by `corral apply`
//! {prefix}/runs/{run}                ClusterRun, written by the scheduler (fenced)
//! {prefix}/bindings/{node}/{run}     Binding, written by the scheduler (fenced)
//! {prefix}/status/{run}              RunStatus, written by the node that runs it
//! {prefix}/cron/{job}                CronCursor, written by the scheduler (fenced)
//! {prefix}/leader                    LeaderRecord, under the leader's lease
//! ```
//!
//! Names in keys are job names, run ids and node names, none of which may
//! hold a `/` (see [`crate::vocab::JobName`] and
//! [`crate::spec::nodes::check_name`]), so a key names one thing.

/// The key layout under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// `prefix` without a trailing `/`.
    pub fn new(prefix: &str) -> Keys {
        Keys { prefix: prefix.trim_end_matches('/').to_owned() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Everything corral keeps: `{prefix}/`.
    pub fn all(&self) -> String {
        format!("{}/", self.prefix)
    }

    pub fn nodes(&self) -> String {
        format!("{}/nodes/", self.prefix)
    }

    pub fn node(&self, node: &str) -> String {
        format!("{}/nodes/{node}", self.prefix)
    }

    pub fn jobs(&self) -> String {
        format!("{}/jobs/", self.prefix)
    }

    pub fn job(&self, job: &str) -> String {
        format!("{}/jobs/{job}", self.prefix)
    }

    pub fn runs(&self) -> String {
        format!("{}/runs/", self.prefix)
    }

    pub fn run(&self, run: &str) -> String {
        format!("{}/runs/{run}", self.prefix)
    }

    pub fn bindings(&self) -> String {
        format!("{}/bindings/", self.prefix)
    }

    /// Every binding of one node: what the node watches.
    pub fn bindings_of(&self, node: &str) -> String {
        format!("{}/bindings/{node}/", self.prefix)
    }

    pub fn binding(&self, node: &str, run: &str) -> String {
        format!("{}/bindings/{node}/{run}", self.prefix)
    }

    pub fn statuses(&self) -> String {
        format!("{}/status/", self.prefix)
    }

    pub fn status(&self, run: &str) -> String {
        format!("{}/status/{run}", self.prefix)
    }

    pub fn cron_cursors(&self) -> String {
        format!("{}/cron/", self.prefix)
    }

    pub fn cron(&self, job: &str) -> String {
        format!("{}/cron/{job}", self.prefix)
    }

    pub fn leader(&self) -> String {
        format!("{}/leader", self.prefix)
    }

    /// The last part of `key` under `under` (a listing prefix above):
    /// `Some("b-1")` for `/corral/runs/b-1` under `/corral/runs/`.
    pub fn name_in<'k>(key: &'k str, under: &str) -> Option<&'k str> {
        key.strip_prefix(under).filter(|rest| !rest.is_empty())
    }

    /// The node and run a binding key names.
    pub fn binding_parts<'k>(&self, key: &'k str) -> Option<(&'k str, &'k str)> {
        let prefix = self.bindings();
        let rest = key.strip_prefix(prefix.as_str())?;
        let (node, run) = rest.split_once('/')?;
        (!node.is_empty() && !run.is_empty() && !run.contains('/')).then_some((node, run))
    }
}

/// The end of the key range of every key starting with `prefix`, for a
/// range read or delete (etcd's "prefix end": the prefix with its last byte
/// raised by one).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_under_the_prefix_and_parts_come_back() {
        let keys = Keys::new("/corral/");
        assert_eq!(keys.prefix(), "/corral");
        assert_eq!(keys.node("n1"), "/corral/nodes/n1");
        assert_eq!(keys.binding("n1", "b-3"), "/corral/bindings/n1/b-3");
        assert_eq!(keys.binding_parts("/corral/bindings/n1/b-3"), Some(("n1", "b-3")));
        assert_eq!(keys.binding_parts("/corral/bindings/n1/"), None);
        assert_eq!(keys.binding_parts("/corral/runs/b-3"), None);
        assert_eq!(Keys::name_in("/corral/runs/b-3", &keys.runs()), Some("b-3"));
        assert!(keys.bindings_of("n1").starts_with(&keys.bindings()));
    }

    #[test]
    fn prefix_end_is_just_past_every_key_with_the_prefix() {
        assert_eq!(prefix_end("/corral/"), b"/corral0".to_vec());
        assert!(b"/corral/zzz".as_slice() < prefix_end("/corral/").as_slice());
    }
}
