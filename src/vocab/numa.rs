//! Where a run's CPUs and memory may come from, in NUMA terms: the word job files use
//! and the allocator places by.

use std::fmt;

/// Where a run's CPUs and memory may come from.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum NumaPolicy {
    /// CPUs anywhere (still as few nodes as possible); memory from every
    /// allowed node.
    #[default]
    None,
    /// One node if one has room; otherwise the fewest, nearest nodes. Memory
    /// comes from the nodes of the CPUs (and the nearest memory nodes if those
    /// lack memory).
    Prefer,
    /// CPUs and memory on one node, or no placement: wait rather than spread.
    SingleNode,
}

impl NumaPolicy {
    /// The word for it in job files, the API and messages.
    pub const fn word(self) -> &'static str {
        match self {
            NumaPolicy::None => "none",
            NumaPolicy::Prefer => "prefer",
            NumaPolicy::SingleNode => "single-node",
        }
    }
}

impl fmt::Display for NumaPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_as_its_word() {
        for numa in [NumaPolicy::None, NumaPolicy::Prefer, NumaPolicy::SingleNode] {
            let json = serde_json::to_string(&numa).unwrap();
            assert_eq!(json, format!("\"{}\"", numa.word()));
            assert_eq!(serde_json::from_str::<NumaPolicy>(&json).unwrap(), numa);
            assert_eq!(numa.to_string(), numa.word());
        }
    }
}
