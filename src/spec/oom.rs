//! What happens when a job reaches its hard memory limit.
//!
//! The agent learns of the OOM, freezes the job so that the kernel's OOM killer does not
//! pick off one of its processes at random, and then acts on the job as a whole: fail it,
//! kill and queue it again (with more memory, if asked), or raise its limit in place and
//! thaw it.

use std::fmt;

use super::check::{choice, Checker};
use super::error::{FieldPath, SpecError};
use super::tree::Node;
use crate::vocab::decimal::{self, DecimalError};
use crate::vocab::Bytes;

/// A multiplier with two decimals, stored in hundredths: `1.5` is 150.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Factor(u32);

impl Factor {
    pub const ONE: Factor = Factor(100);
    const MAX: u32 = 1000;

    pub fn hundredths(self) -> u32 {
        self.0
    }

    /// `bytes` times this factor, rounded down; `None` on overflow.
    pub fn apply(self, bytes: Bytes) -> Option<Bytes> {
        let scaled = u128::from(bytes.get()) * u128::from(self.0) / 100;
        u64::try_from(scaled).ok().map(Bytes)
    }

    pub fn parse(text: &str) -> Result<Factor, String> {
        let hundredths = decimal::parse(text, 2).map_err(|e| match e {
            DecimalError::NotANumber => "write a number such as 1.5",
            DecimalError::TooManyPlaces => "at most two decimal places",
            DecimalError::TooLarge => "it is too large",
        })?;
        match u32::try_from(hundredths) {
            Ok(h) if (Factor::ONE.0..=Factor::MAX).contains(&h) => Ok(Factor(h)),
            _ => Err("it must be between 1 and 10".into()),
        }
    }
}

impl fmt::Display for Factor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        decimal::write(f, self.0.into(), 2)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Action {
    Fail,
    Requeue,
    Grow,
}
choice!(Action { "fail" => Fail, "requeue" => Requeue, "grow" => Grow });

/// The OOM policy of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OomPolicy {
    /// Kill the job; the run fails (and `restart` decides what comes next).
    #[default]
    Fail,
    /// Kill the job and queue it again, its memory limits multiplied by `factor` each
    /// time, at most `max` times; after that the run fails.
    Requeue { factor: Factor, max: u32 },
    /// Raise the hard limit by `step` (and `high` by as much, if set) and thaw the job,
    /// until the limit reaches `to`; an OOM at `to` fails the run.
    Grow { to: Bytes, step: Bytes },
}

pub const DEFAULT_REQUEUE_MAX: u32 = 3;
const MAX_REQUEUE: u32 = 100;

const FIELDS: &[&str] = &["action", "grow_to", "grow_step", "requeue_factor", "requeue_max"];

/// Compiles `oom`. `hard` is the job's compiled `resources.memory.hard`: `None` if the
/// resources did not compile (the relations are then not checked), `Some(None)` if unset.
pub(super) fn compile(
    cx: &mut Checker,
    node: Option<&Node>,
    path: &FieldPath,
    hard: Option<Option<Bytes>>,
) -> Option<OomPolicy> {
    let Some(node) = node else { return Some(OomPolicy::Fail) };
    let fields = cx.map(node, path, FIELDS)?;
    let action = match fields.get("action") {
        None => Some(Action::Fail),
        Some(n) => cx.choice(n, &fields.field("action")),
    };
    let grow_to = fields.get("grow_to").and_then(|n| cx.bytes(n, &fields.field("grow_to")));
    let grow_step = fields.get("grow_step").and_then(|n| cx.bytes(n, &fields.field("grow_step")));
    let factor = fields.get("requeue_factor").and_then(|n| {
        let path = fields.field("requeue_factor");
        cx.decimal(n, &path, "a number such as 1.5", "factor", Factor::parse)
    });
    let requeue_max = fields
        .get("requeue_max")
        .and_then(|n| cx.int(n, &fields.field("requeue_max"), 1..=MAX_REQUEUE));

    let action = action?;
    // Fields of one action set alongside another action do nothing; say so.
    let belongs = [
        ("grow_to", Action::Grow),
        ("grow_step", Action::Grow),
        ("requeue_factor", Action::Requeue),
        ("requeue_max", Action::Requeue),
    ];
    let mut misplaced = false;
    for (field, owner) in belongs {
        if fields.has(field) && action != owner {
            misplaced = true;
            cx.report(
                fields.key_pos(field),
                &fields.field(field),
                SpecError::Requires { field, requirement: format!("`action: {owner}`") },
            );
        }
    }

    match action {
        Action::Fail => (!misplaced).then_some(OomPolicy::Fail),
        Action::Requeue => {
            let factor_ok = fields.get("requeue_factor").is_none() || factor.is_some();
            let max_ok = fields.get("requeue_max").is_none() || requeue_max.is_some();
            let factor = factor.unwrap_or(Factor::ONE);
            if factor != Factor::ONE && hard == Some(None) {
                cx.report(
                    fields.key_pos("requeue_factor"),
                    &fields.field("requeue_factor"),
                    SpecError::Requires {
                        field: "requeue_factor",
                        requirement: "`resources.memory.hard`, the limit it multiplies".into(),
                    },
                );
                return None;
            }
            (factor_ok && max_ok && !misplaced).then_some(OomPolicy::Requeue {
                factor,
                max: requeue_max.unwrap_or(DEFAULT_REQUEUE_MAX),
            })
        }
        Action::Grow => grow(cx, &fields, hard, grow_to, grow_step).filter(|_| !misplaced),
    }
}

fn grow(
    cx: &mut Checker,
    fields: &super::check::Fields,
    hard: Option<Option<Bytes>>,
    grow_to: Option<Bytes>,
    grow_step: Option<Bytes>,
) -> Option<OomPolicy> {
    let Some(to) = grow_to else {
        if !fields.has("grow_to") {
            cx.report(
                fields.key_pos("action"),
                fields.path(),
                SpecError::Missing { field: "grow_to" },
            );
        }
        return None;
    };
    let hard = match hard? {
        Some(hard) => hard,
        None => {
            cx.report(
                fields.key_pos("action"),
                &fields.field("action"),
                SpecError::Requires {
                    field: "action: grow",
                    requirement: "`resources.memory.hard`, the limit it raises".into(),
                },
            );
            return None;
        }
    };
    if to <= hard {
        cx.report(
            fields.key_pos("grow_to"),
            &fields.field("grow_to"),
            SpecError::Invalid {
                what: "grow_to",
                value: to.to_string(),
                reason: format!("it must be larger than resources.memory.hard ({hard})"),
            },
        );
        return None;
    }
    let step = match grow_step {
        Some(step) if step.get() == 0 => {
            cx.report(
                fields.key_pos("grow_step"),
                &fields.field("grow_step"),
                SpecError::Invalid {
                    what: "grow_step",
                    value: "0".into(),
                    reason: "it must be larger than zero".into(),
                },
            );
            return None;
        }
        Some(step) => step,
        None if fields.has("grow_step") => return None,
        // By default one step straight to `to`: the job asked for that much headroom.
        None => to.saturating_sub(hard),
    };
    Some(OomPolicy::Grow { to, step })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testutil::{error, errors, ok};

    const HARD_1G: &str = "resources: {memory: {hard: 1Gi}}\n";

    #[test]
    fn default_is_fail() {
        assert_eq!(ok("").oom, OomPolicy::Fail);
        assert_eq!(ok("oom: {action: fail}\n").oom, OomPolicy::Fail);
    }

    #[test]
    fn grow_needs_a_hard_limit_below_grow_to() {
        assert_eq!(
            ok(&format!("{HARD_1G}oom: {{action: grow, grow_to: 2Gi}}\n")).oom,
            OomPolicy::Grow { to: Bytes(2 << 30), step: Bytes::GIB }
        );
        assert_eq!(
            ok(&format!("{HARD_1G}oom: {{action: grow, grow_to: 2Gi, grow_step: 256Mi}}\n")).oom,
            OomPolicy::Grow { to: Bytes(2 << 30), step: Bytes(256 << 20) }
        );
        assert_eq!(
            error("oom: {action: grow, grow_to: 2Gi}\n"),
            "3 oom.action: `action: grow` requires `resources.memory.hard`, the limit it raises"
        );
        assert_eq!(
            error(&format!("{HARD_1G}oom: {{action: grow, grow_to: 1Gi}}\n")),
            "4 oom.grow_to: invalid grow_to \"1Gi\": it must be larger than resources.memory.hard (1Gi)"
        );
        assert_eq!(
            error(&format!("{HARD_1G}oom: {{action: grow}}\n")),
            "4 oom: required field `grow_to` is missing"
        );
        assert_eq!(
            error(&format!("{HARD_1G}oom: {{action: grow, grow_to: 2Gi, grow_step: 0}}\n")),
            "4 oom.grow_step: invalid grow_step \"0\": it must be larger than zero"
        );
    }

    #[test]
    fn requeue_with_and_without_growth() {
        assert_eq!(
            ok("oom: {action: requeue}\n").oom,
            OomPolicy::Requeue { factor: Factor::ONE, max: 3 }
        );
        assert_eq!(
            ok(&format!(
                "{HARD_1G}oom: {{action: requeue, requeue_factor: 1.5, requeue_max: 2}}\n"
            ))
            .oom,
            OomPolicy::Requeue { factor: Factor(150), max: 2 }
        );
        assert_eq!(
            error("oom: {action: requeue, requeue_factor: 2}\n"),
            "3 oom.requeue_factor: `requeue_factor` requires `resources.memory.hard`, the limit it multiplies"
        );
        assert_eq!(
            error("oom: {action: requeue, requeue_factor: 0.5}\n"),
            "3 oom.requeue_factor: invalid factor \"0.5\": it must be between 1 and 10"
        );
        assert_eq!(
            error("oom: {action: requeue, requeue_max: 0}\n"),
            "3 oom.requeue_max: 0 is out of range; allowed: 1 to 100"
        );
    }

    #[test]
    fn fields_of_another_action_are_errors() {
        assert_eq!(
            errors("oom:\n  action: fail\n  grow_to: 2Gi\n  requeue_max: 2\n"),
            [
                "5 oom.grow_to: `grow_to` requires `action: grow`",
                "6 oom.requeue_max: `requeue_max` requires `action: requeue`",
            ]
        );
        assert_eq!(
            error(&format!("{HARD_1G}oom: {{action: grow, grow_to: 2Gi, requeue_factor: 2}}\n")),
            "4 oom.requeue_factor: `requeue_factor` requires `action: requeue`"
        );
        assert_eq!(
            error("oom: {action: panic}\n"),
            "3 oom.action: \"panic\" is not one of: fail, requeue, grow"
        );
    }

    #[test]
    fn factors_parse_with_two_decimals() {
        assert_eq!(Factor::parse("1.5").map(Factor::hundredths), Ok(150));
        assert_eq!(Factor::parse("2").map(Factor::hundredths), Ok(200));
        assert_eq!(Factor::parse("1.25").map(Factor::hundredths), Ok(125));
        assert_eq!(Factor::parse("10").map(Factor::hundredths), Ok(1000));
        for bad in ["0.5", "0", "10.01", "1.234", "x", "", "1.", ".5", "-1", "99999999999"] {
            assert!(Factor::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Factor::parse("1.5").unwrap().to_string(), "1.5");
        assert_eq!(Factor::parse("1.05").unwrap().to_string(), "1.05");
        assert_eq!(Factor::ONE.to_string(), "1");
    }

    #[test]
    fn factor_multiplies_bytes() {
        let f = Factor::parse("1.5").unwrap();
        assert_eq!(f.apply(Bytes::GIB), Some(Bytes(3 << 29)));
        assert_eq!(Factor::parse("2").unwrap().apply(Bytes(u64::MAX)), None);
    }
}
