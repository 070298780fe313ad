//! v1 `devices`: an allow-list written as `devices.deny` `a` (nothing
//! allowed), then one `devices.allow` line per rule.
//!
//! A fresh cgroup inherits its parent's list, which at corral's parent is
//! "everything", so the deny must come first; the kernel checks the job's
//! list on every `open` and `mknod` of a device node.

use crate::cgroup::layout::Controller;
use crate::cgroup::plan::{Builder, Target};
use crate::cgroup::resources::Resources;

pub const ALLOW: &str = "devices.allow";
pub const DENY: &str = "devices.deny";
pub const LIST: &str = "devices.list";

pub(crate) fn plan(res: &Resources, b: &mut Builder<'_>) {
    let target = Target::V1(Controller::Devices);
    match &res.devices {
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
    fn an_update_without_rules_allows_everything_again() {
        let mut ctx = v1_ctx(PlanMode::Update);
        ctx.v1.insert(Controller::Devices);
        let p = plan(&ctx, &Resources::default()).unwrap();
        assert_eq!(writes_to(&p, "devices."), [(ALLOW, "a")]);
    }
}
