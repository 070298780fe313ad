//! v1 `devices`: an allow-list written as `devices.deny` `a` (nothing
//! allowed), then one `devices.allow` line per rule.
//!
//! A fresh cgroup inherits its parent's list, which at corral's parent is
//! "everything", so the deny must come first; the kernel checks the job's
//! list on every `open` and `mknod` of a device node. Between the deny and
//! the last allow the job may open nothing, so an update that finds the
//! list already as wanted (`devices.list`, same lines in any order) leaves
//! it alone.

use crate::cgroup::layout::Controller;
use crate::cgroup::plan::{Builder, Target};
use crate::cgroup::resources::Resources;

pub const ALLOW: &str = "devices.allow";
pub const DENY: &str = "devices.deny";
pub const LIST: &str = "devices.list";

pub(crate) fn plan(res: &Resources, b: &mut Builder<'_>) {
    let target = Target::V1(Controller::Devices);
    match &res.devices {
        Some(rules) if b.updating() && already(b.ctx.current_device_list.as_deref(), rules) => {}
        Some(rules) => {
            b.write(target, DENY, "a");
            for rule in rules {
                b.write(target, ALLOW, rule);
            }
        }
        // Back to the kernel's default, every device allowed.
        None if b.updating() => b.write(target, ALLOW, "a"),
        None => {}
    }
}

/// Whether `list` (a `devices.list`) allows exactly `rules`.
fn already(list: Option<&str>, rules: &[crate::cgroup::devices::DeviceRule]) -> bool {
    let Some(list) = list else { return false };
    let have: std::collections::BTreeSet<&str> =
        list.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let want: Vec<String> = rules.iter().map(ToString::to_string).collect();
    have.len() == want.len() && want.iter().all(|w| have.contains(w.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::devices::{Access, DeviceRule, DeviceType, SAFE_DEVICES};
    use crate::cgroup::plan::tests::{v1_ctx, writes_to};
    use crate::cgroup::plan::{plan, PlanMode};

    #[test]
    fn deny_all_then_allow_each_rule() {
        let mut ctx = v1_ctx(PlanMode::Create);
        ctx.v1.insert(Controller::Devices);
        let mut rules = SAFE_DEVICES.to_vec();
        let read = Access { read: true, write: false, mknod: false };
        rules.push(DeviceRule::node(DeviceType::Char, 10, 229, read));
        let res = Resources { devices: Some(rules), ..Default::default() };
        let p = plan(&ctx, &res).unwrap();
        let writes = writes_to(&p, "devices.");
        assert_eq!(writes.len(), 1 + SAFE_DEVICES.len() + 1);
        assert_eq!(writes[0], (DENY, "a"));
        assert_eq!(writes[1], (ALLOW, "c 1:3 rwm"));
        assert_eq!(writes.last(), Some(&(ALLOW, "c 10:229 r")));
        assert!(p.device_program.is_none());

        let p = plan(&v1_ctx(PlanMode::Create), &res).unwrap();
        assert!(writes_to(&p, "devices.").is_empty());
        assert_eq!(p.skipped[0].setting, "device allow-list");
    }

    #[test]
    fn an_update_leaves_a_list_that_is_already_as_wanted() {
        let mut ctx = v1_ctx(PlanMode::Update);
        ctx.v1.insert(Controller::Devices);
        let res = Resources { devices: Some(SAFE_DEVICES.to_vec()), ..Default::default() };
        let list: String = SAFE_DEVICES.iter().rev().map(|r| format!("{r}\n")).collect();
        ctx.current_device_list = Some(list);
        assert!(writes_to(&plan(&ctx, &res).unwrap(), "devices.").is_empty());
        ctx.current_device_list = Some("a *:* rwm\n".into());
        assert_eq!(writes_to(&plan(&ctx, &res).unwrap(), "devices.").len(), 1 + SAFE_DEVICES.len());
    }

    #[test]
    fn an_update_without_rules_allows_everything_again() {
        let mut ctx = v1_ctx(PlanMode::Update);
        ctx.v1.insert(Controller::Devices);
        let p = plan(&ctx, &Resources::default()).unwrap();
        assert_eq!(writes_to(&p, "devices."), [(ALLOW, "a")]);
    }
}
