//! CPU and NUMA node identifiers and the kernel's "cpulist" set syntax.
//!
//! The kernel writes sets of CPUs and nodes as comma-separated ranges
//! (`0-3,8-11`) in sysfs, in cgroup `cpuset.cpus`/`cpuset.mems` and in
//! `/proc/PID/status` (`Cpus_allowed_list`). One type parses and prints that
//! syntax for both CPUs and nodes so the two can never be mixed up.

use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

/// A logical CPU number as the kernel numbers it (`/sys/devices/system/cpu/cpuN`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct CpuId(pub u32);

/// A NUMA node number (`/sys/devices/system/node/nodeN`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct NodeId(pub u32);

impl fmt::Display for CpuId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cpu{}", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node{}", self.0)
    }
}

/// Conversion between an id newtype and the bare number the kernel prints.
pub trait ListId: Copy + Ord {
    fn from_raw(raw: u32) -> Self;
    fn raw(self) -> u32;
}

impl ListId for CpuId {
    fn from_raw(raw: u32) -> Self {
        CpuId(raw)
    }
    fn raw(self) -> u32 {
        self.0
    }
}

impl ListId for NodeId {
    fn from_raw(raw: u32) -> Self {
        NodeId(raw)
    }
    fn raw(self) -> u32 {
        self.0
    }
}

/// An ordered set of ids that reads and prints the kernel's cpulist syntax.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdList<T: ListId> {
    ids: BTreeSet<u32>,
    _kind: PhantomData<T>,
}

/// A set of CPUs (`cpuset.cpus`, `Cpus_allowed_list`).
pub type CpuSet = IdList<CpuId>;
/// A set of NUMA nodes (`cpuset.mems`, `Mems_allowed_list`).
pub type NodeSet = IdList<NodeId>;

/// Ids above this are refused when parsing: no kernel supports more CPUs
/// (`NR_CPUS` tops out at 8192), and the cap stops `0-4000000000` from
/// allocating a set with billions of entries.
pub const MAX_ID: u32 = 65_535;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListParseError {
    #[error("invalid cpulist {input:?}: {reason}")]
    Invalid { input: String, reason: String },
}

impl<T: ListId> IdList<T> {
    pub fn new() -> Self {
        IdList { ids: BTreeSet::new(), _kind: PhantomData }
    }

    pub fn insert(&mut self, id: T) -> bool {
        self.ids.insert(id.raw())
    }

    pub fn remove(&mut self, id: T) -> bool {
        self.ids.remove(&id.raw())
    }

    pub fn contains(&self, id: T) -> bool {
        self.ids.contains(&id.raw())
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = T> + '_ {
        self.ids.iter().map(|&raw| T::from_raw(raw))
    }

    pub fn union(&self, other: &Self) -> Self {
        self.ids.union(&other.ids).map(|&raw| T::from_raw(raw)).collect()
    }

    pub fn intersection(&self, other: &Self) -> Self {
        self.ids.intersection(&other.ids).map(|&raw| T::from_raw(raw)).collect()
    }

    pub fn difference(&self, other: &Self) -> Self {
        self.ids.difference(&other.ids).map(|&raw| T::from_raw(raw)).collect()
    }

    pub fn is_subset(&self, other: &Self) -> bool {
        self.ids.is_subset(&other.ids)
    }

    pub fn is_disjoint(&self, other: &Self) -> bool {
        self.ids.is_disjoint(&other.ids)
    }

    /// Parses the kernel's cpulist syntax: `""`, `"3"`, `"0-3,8-11"`.
    /// Surrounding whitespace (the trailing newline of a sysfs file) is ignored.
    pub fn parse(input: &str) -> Result<Self, ListParseError> {
        let invalid = |reason: String| ListParseError::Invalid { input: input.to_owned(), reason };
        let mut set = Self::new();
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Ok(set);
        }
        for part in trimmed.split(',') {
            let number = |s: &str| -> Result<u32, ListParseError> {
                let n: u32 = s.parse().map_err(|_| invalid(format!("{s:?} is not a number")))?;
                if n > MAX_ID {
                    return Err(invalid(format!("{n} is larger than {MAX_ID}")));
                }
                Ok(n)
            };
            match part.split_once('-') {
                Some((lo, hi)) => {
                    let (lo, hi) = (number(lo)?, number(hi)?);
                    if lo > hi {
                        return Err(invalid(format!("range {lo}-{hi} runs backwards")));
                    }
                    set.ids.extend(lo..=hi);
                }
                None => {
                    set.ids.insert(number(part)?);
                }
            }
        }
        Ok(set)
    }
}

impl<T: ListId> Default for IdList<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: ListId> FromIterator<T> for IdList<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        IdList { ids: iter.into_iter().map(ListId::raw).collect(), _kind: PhantomData }
    }
}

impl<T: ListId> Extend<T> for IdList<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        self.ids.extend(iter.into_iter().map(ListId::raw));
    }
}

impl<T: ListId> FromStr for IdList<T> {
    type Err = ListParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Prints the canonical cpulist form, collapsing runs: `0-3,8`.
impl<T: ListId> fmt::Display for IdList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut iter = self.ids.iter().copied().peekable();
        let mut first = true;
        while let Some(start) = iter.next() {
            let mut end = start;
            while iter.peek() == Some(&(end + 1)) {
                end = iter.next().expect("peeked");
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

impl<T: ListId> fmt::Debug for IdList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{self}}}")
    }
}

impl<T: ListId> serde::Serialize for IdList<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Reads the cpulist string form, so a set stored as JSON (a run record,
/// `corral topology --json`) parses with the same rules as a sysfs file.
impl<'de, T: ListId> serde::Deserialize<'de> for IdList<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_kernel_lists() {
        for (input, canonical) in [
            ("", ""),
            ("\n", ""),
            ("0", "0"),
            ("0-3\n", "0-3"),
            ("0-3,8-11", "0-3,8-11"),
            ("3,1,2", "1-3"),
            ("0,2,4-5", "0,2,4-5"),
            ("7-7", "7"),
        ] {
            let set = CpuSet::parse(input).unwrap();
            assert_eq!(set.to_string(), canonical, "input {input:?}");
            assert_eq!(CpuSet::parse(&set.to_string()).unwrap(), set);
        }
    }

    #[test]
    fn rejects_malformed_lists() {
        for input in ["a", "1-", "-1", "3-1", "1,,2", "1-2-3", "70000", "0-4000000000", " 1 , 2"] {
            assert!(CpuSet::parse(input).is_err(), "accepted {input:?}");
        }
    }

    #[test]
    fn set_operations() {
        let a: CpuSet = "0-3".parse().unwrap();
        let b: CpuSet = "2-5".parse().unwrap();
        assert_eq!(a.intersection(&b).to_string(), "2-3");
        assert_eq!(a.union(&b).to_string(), "0-5");
        assert_eq!(a.difference(&b).to_string(), "0-1");
        assert!(!a.is_disjoint(&b));
        assert!(CpuSet::parse("1").unwrap().is_subset(&a));
    }

    #[test]
    fn serde_uses_the_cpulist_string() {
        let set: CpuSet = "0-3,8".parse().unwrap();
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, r#""0-3,8""#);
        assert_eq!(serde_json::from_str::<CpuSet>(&json).unwrap(), set);
        assert!(serde_json::from_str::<CpuSet>(r#""3-1""#).is_err());
        assert_eq!(serde_json::to_string(&CpuId(7)).unwrap(), "7");
    }

    proptest::proptest! {
        #[test]
        fn display_parse_round_trip(ids in proptest::collection::btree_set(0u32..512, 0..64)) {
            let set: CpuSet = ids.iter().map(|&i| CpuId(i)).collect();
            proptest::prop_assert_eq!(CpuSet::parse(&set.to_string()).unwrap(), set);
        }
    }
}
