//! The runs bound to this node: `bindings/{node}/`, listed, then watched
//! from the listing's revision, so no binding written in between is missed.
//! A watch etcd cancels (its revision compacted away) or that ends is
//! replaced by a fresh listing: the main loop takes a listing as the whole
//! truth, and a binding it has taken already creates nothing again.
//!
//! Anything with write access to the prefix can write here, so a binding is
//! checked before it is passed on: it parses, it names the run its key
//! names, its attempt counts from 1 and its job name is one. A bad one is
//! reported and left alone.

use etcd_client::{Client, EventType, GetOptions, WatchOptions, WatchStream};
use tracing::{info, warn};

use super::NodeEvent;
use crate::cluster::records::{decode, BadRecord, Binding};
use crate::cluster::{ClusterError, Keys};
use crate::vocab::JobName;

pub(super) struct Bindings {
    stream: Option<WatchStream>,
}

impl Bindings {
    /// Lists this node's bindings and starts watching after them.
    pub async fn start(
        client: &mut Client,
        keys: &Keys,
        node: &str,
    ) -> Result<(Bindings, Vec<Binding>), ClusterError> {
        let (stream, listed) = list_and_watch(client, keys, node).await?;
        Ok((Bindings { stream: Some(stream) }, listed))
    }

    /// The next changes. Cancel safe: a watch left half-replaced is
    /// replaced by the next call.
    pub async fn next(
        &mut self,
        client: &mut Client,
        keys: &Keys,
        node: &str,
    ) -> Result<Vec<NodeEvent>, ClusterError> {
        if let Some(stream) = &mut self.stream {
            let answer = stream.message().await?;
            match answer {
                Some(answer) if !answer.canceled() && answer.compact_revision() == 0 => {
                    let under = keys.bindings_of(node);
                    return Ok(answer
                        .events()
                        .iter()
                        .filter_map(|event| {
                            let kv = event.kv()?;
                            let key = kv.key_str().ok()?;
                            let run = Keys::name_in(key, &under)?;
                            match event.event_type() {
                                EventType::Delete => {
                                    Some(NodeEvent::Unbound { run: run.to_owned() })
                                }
                                EventType::Put => {
                                    checked(key, run, kv.value()).map(NodeEvent::Bound)
                                }
                            }
                        })
                        .collect());
                }
                Some(answer) => info!(
                    node,
                    compacted_to = answer.compact_revision(),
                    "cluster: the watch of this node's bindings was cancelled ({}); listing again",
                    answer.cancel_reason()
                ),
                None => {
                    info!(node, "cluster: the watch of this node's bindings ended; listing again")
                }
            }
            self.stream = None;
        }
        let (stream, listed) = list_and_watch(client, keys, node).await?;
        self.stream = Some(stream);
        Ok(vec![NodeEvent::Listed(listed)])
    }
}

async fn list_and_watch(
    client: &mut Client,
    keys: &Keys,
    node: &str,
) -> Result<(WatchStream, Vec<Binding>), ClusterError> {
    let under = keys.bindings_of(node);
    let got = client.get(under.as_str(), Some(GetOptions::new().with_prefix())).await?;
    let revision = got.header().map_or(0, |h| h.revision());
    let listed = got
        .kvs()
        .iter()
        .filter_map(|kv| {
            let key = kv.key_str().ok()?;
            let run = Keys::name_in(key, &under)?;
            checked(key, run, kv.value())
        })
        .collect();
    let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
    let stream = client.watch(under.as_str(), Some(options)).await?;
    Ok((stream, listed))
}

/// The binding at `key` (for run `run`), if it holds together; a bad one is
/// reported.
fn checked(key: &str, run: &str, value: &[u8]) -> Option<Binding> {
    match check(key, run, value) {
        Ok(binding) => Some(binding),
        Err(bad) => {
            warn!("cluster: {bad}; this node does not act on it");
            None
        }
    }
}

pub fn check(key: &str, run: &str, value: &[u8]) -> Result<Binding, BadRecord> {
    let binding: Binding = decode(key, value)?;
    let bad = |reason: String| BadRecord { key: key.to_owned(), reason };
    if binding.run != run {
        return Err(bad(format!("it names run {}, its key run {run}", binding.run)));
    }
    if binding.attempt == 0 {
        return Err(bad("attempts count from 1".into()));
    }
    JobName::parse(&binding.job).map_err(|e| bad(format!("job name: {e}")))?;
    Ok(binding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::records::encode;
    use crate::vocab::Timestamp;

    fn binding(run: &str, attempt: u32, job: &str) -> Binding {
        Binding {
            run: run.into(),
            job: job.into(),
            attempt,
            job_revision: 3,
            file: "a.yaml".into(),
            source: "name: a\n".into(),
            memory_hard: None,
            scheduled_for: None,
            bound_by: "n0".into(),
            bound_at: Timestamp::EPOCH,
        }
    }

    #[test]
    fn a_binding_must_hold_together() {
        let key = "/c/bindings/n1/a-3";
        assert!(check(key, "a-3", &encode(&binding("a-3", 1, "a"))).is_ok());
        let wrong_run = check(key, "a-3", &encode(&binding("b-3", 1, "a"))).unwrap_err();
        assert!(wrong_run.reason.contains("its key run a-3"), "{wrong_run}");
        assert!(check(key, "a-3", &encode(&binding("a-3", 0, "a"))).is_err());
        assert!(check(key, "a-3", &encode(&binding("a-3", 1, "A b"))).is_err());
        let garbage = check(key, "a-3", b"{").unwrap_err();
        assert_eq!(garbage.key, key);
    }
}
