//! Per-process resource limits (`setrlimit(2)`), set as both soft and hard limit before the
//! job's command is executed.

use std::collections::BTreeMap;
use std::fmt;

use super::check::{choice, Checker, Choice};
use super::duration;
use super::error::{FieldPath, SpecError};
use super::tree::{Node, Value};
use crate::vocab::Bytes;

/// A limit `setrlimit(2)` knows, by the name job files use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rlimit {
    /// Open file descriptors.
    Nofile,
    /// Processes of the job's *user*, machine-wide (the kernel counts per user, not per
    /// job; `resources.pids` is the per-job limit).
    Nproc,
    /// Core dump size; `0` turns core dumps off.
    Core,
    Stack,
    Memlock,
    /// Largest file the job may write.
    Fsize,
    Data,
    /// Address space (virtual memory).
    As,
    /// CPU time, in whole seconds.
    Cpu,
}
choice!(Rlimit {
    "nofile" => Nofile,
    "nproc" => Nproc,
    "core" => Core,
    "stack" => Stack,
    "memlock" => Memlock,
    "fsize" => Fsize,
    "data" => Data,
    "as" => As,
    "cpu" => Cpu,
});

impl Rlimit {
    /// The `RLIMIT_*` resource number.
    pub fn resource(self) -> i32 {
        (match self {
            Rlimit::Nofile => libc::RLIMIT_NOFILE,
            Rlimit::Nproc => libc::RLIMIT_NPROC,
            Rlimit::Core => libc::RLIMIT_CORE,
            Rlimit::Stack => libc::RLIMIT_STACK,
            Rlimit::Memlock => libc::RLIMIT_MEMLOCK,
            Rlimit::Fsize => libc::RLIMIT_FSIZE,
            Rlimit::Data => libc::RLIMIT_DATA,
            Rlimit::As => libc::RLIMIT_AS,
            Rlimit::Cpu => libc::RLIMIT_CPU,
        }) as i32
    }

    fn unit(self) -> Unit {
        match self {
            Rlimit::Nofile | Rlimit::Nproc => Unit::Count,
            Rlimit::Cpu => Unit::Seconds,
            _ => Unit::Bytes,
        }
    }
}

enum Unit {
    Count,
    Bytes,
    Seconds,
}

/// A limit's value, in the resource's own unit (count, bytes or seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RlimitValue {
    Limited(u64),
    /// `RLIM_INFINITY`.
    Unlimited,
}

impl fmt::Display for RlimitValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RlimitValue::Limited(n) => write!(f, "{n}"),
            RlimitValue::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// The limits a job sets; the rest are inherited from the agent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Rlimits(pub BTreeMap<Rlimit, RlimitValue>);

impl Rlimits {
    pub fn get(&self, limit: Rlimit) -> Option<RlimitValue> {
        self.0.get(&limit).copied()
    }
}

const FIELDS: &[&str] =
    &["nofile", "nproc", "core", "stack", "memlock", "fsize", "data", "as", "cpu"];

/// The kernel's ceiling for `nofile` (`fs.nr_open` cannot be set higher).
const MAX_NOFILE: u64 = 1_073_741_816;

pub(super) fn compile(cx: &mut Checker, node: Option<&Node>, path: &FieldPath) -> Option<Rlimits> {
    let Some(node) = node else { return Some(Rlimits::default()) };
    let fields = cx.map(node, path, FIELDS)?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (word, limit) in Rlimit::ALL {
        let Some(node) = fields.get(word) else { continue };
        match value(cx, node, &fields.field(word), *limit) {
            Some(v) => {
                out.insert(*limit, v);
            }
            None => ok = false,
        }
    }
    ok.then_some(Rlimits(out))
}

fn value(cx: &mut Checker, node: &Node, path: &FieldPath, limit: Rlimit) -> Option<RlimitValue> {
    if matches!(&node.value, Value::Str(s) if s == "unlimited") {
        return Some(RlimitValue::Unlimited);
    }
    let n = match limit.unit() {
        Unit::Count => {
            let max = if limit == Rlimit::Nofile { MAX_NOFILE } else { u64::MAX - 1 };
            cx.int(node, path, 1..=max)?
        }
        Unit::Bytes => cx.bytes(node, path)?.get(),
        Unit::Seconds => {
            let d = cx.duration(node, path)?;
            if d.subsec_millis() != 0 || d.is_zero() {
                cx.report(
                    node.pos,
                    path,
                    SpecError::Invalid {
                        what: "CPU time limit",
                        value: duration::format(d),
                        reason: "it must be a whole number of seconds, at least 1s".into(),
                    },
                );
                return None;
            }
            d.as_secs()
        }
    };
    // RLIM_INFINITY is all ones; a number that large would silently mean "unlimited".
    if n == u64::MAX {
        cx.report(
            node.pos,
            path,
            SpecError::Invalid {
                what: "limit",
                value: Bytes(n).to_string(),
                reason: "write `unlimited` instead".into(),
            },
        );
        return None;
    }
    Some(RlimitValue::Limited(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testutil::{error, ok};

    #[test]
    fn limits_in_their_units() {
        let r = ok("rlimits: {nofile: 4096, nproc: 100, core: 0, stack: 8Mi, memlock: unlimited, cpu: 1h}\n").rlimits;
        assert_eq!(r.get(Rlimit::Nofile), Some(RlimitValue::Limited(4096)));
        assert_eq!(r.get(Rlimit::Nproc), Some(RlimitValue::Limited(100)));
        assert_eq!(r.get(Rlimit::Core), Some(RlimitValue::Limited(0)));
        assert_eq!(r.get(Rlimit::Stack), Some(RlimitValue::Limited(8 << 20)));
        assert_eq!(r.get(Rlimit::Memlock), Some(RlimitValue::Unlimited));
        assert_eq!(r.get(Rlimit::Cpu), Some(RlimitValue::Limited(3600)));
        assert_eq!(r.get(Rlimit::Fsize), None);
    }

    #[test]
    fn limit_mistakes() {
        assert_eq!(
            error("rlimits: {nofile: 0}\n"),
            "3 rlimits.nofile: 0 is out of range; allowed: 1 to 1073741816"
        );
        assert_eq!(
            error("rlimits: {nofile: many}\n"),
            "3 rlimits.nofile: expected an integer, found the string \"many\""
        );
        assert_eq!(error("rlimits: {files: 10}\n"), "3 rlimits.files: unknown field `files`");
        assert_eq!(
            error("rlimits: {cpu: 1500ms}\n"),
            "3 rlimits.cpu: invalid CPU time limit \"1s500ms\": it must be a whole number of seconds, at least 1s"
        );
        assert_eq!(
            error("rlimits: {fsize: 18446744073709551615}\n"),
            "3 rlimits.fsize: invalid limit \"18446744073709551615\": write `unlimited` instead"
        );
    }

    #[test]
    fn resource_numbers_match_libc() {
        assert_eq!(Rlimit::Nofile.resource(), libc::RLIMIT_NOFILE as i32);
        assert_eq!(Rlimit::Cpu.resource(), libc::RLIMIT_CPU as i32);
        let words: Vec<&str> = Rlimit::ALL.iter().map(|(w, _)| *w).collect();
        assert_eq!(words, FIELDS);
    }
}
