//! Whether an agent runs a compiled job at all: the rules a valid job file
//! must also pass on a given agent (no root, no privileged group, no uid
//! shared across jobs without a pid namespace, no `user` inside the range of
//! dynamic uids), decided from the file alone.
//!
//! Pure. The agent applies these to every job file it reads and
//! `corral validate --config` applies the same ones, so the two agree. What
//! the file cannot tell (a name that resolves to uid 0 or to a privileged
//! gid in the job's `/etc/passwd` and `/etc/group`) is checked again by the
//! container when the job starts.

use std::collections::BTreeMap;
use std::fmt;

use super::error::{Diagnostic, FieldPath, SpecError};
use super::identity::{DefaultUser, GroupRef, UidRange, UserRef};
use super::load::Job;
use crate::vocab::Namespace;

/// The groups refused by default: each gives its members root or
/// root-equivalent access on a stock Debian-like system. `shadow` reads
/// password hashes, `disk` writes raw block devices, `sudo` runs anything
/// as root (given a password, which a batch job might find), `docker` starts
/// privileged containers, `adm` reads the system logs.
pub const DEFAULT_PRIVILEGED_GROUPS: &[&str] = &["shadow", "disk", "sudo", "docker", "adm"];

/// The admission rules of one agent configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionRules {
    /// Who jobs without a `user` run as.
    pub default_user: DefaultUser,
    /// The uids the agent hands out to jobs, which no job may ask for by
    /// number.
    pub dynamic_users: UidRange,
    /// Whether a job may run as uid 0, or with gid 0 or a privileged group.
    pub allow_root_jobs: bool,
    /// Groups treated like gid 0 (by name or number), refused unless root
    /// jobs are allowed.
    pub privileged_groups: Vec<GroupRef>,
    /// Whether a job that runs as `default_user` may go without a pid
    /// namespace, where every other such job can see and signal it.
    pub allow_shared_uid_without_pid_namespace: bool,
    /// This node's name and labels, in cluster mode: a job of its own
    /// directory whose node constraints leave it out is not run here.
    pub cluster_node: Option<(String, BTreeMap<String, String>)>,
}

impl Default for AdmissionRules {
    fn default() -> AdmissionRules {
        AdmissionRules {
            default_user: DefaultUser::Dynamic,
            dynamic_users: UidRange::DEFAULT,
            allow_root_jobs: false,
            privileged_groups: default_privileged_groups(),
            allow_shared_uid_without_pid_namespace: false,
            cluster_node: None,
        }
    }
}

pub fn default_privileged_groups() -> Vec<GroupRef> {
    DEFAULT_PRIVILEGED_GROUPS.iter().map(|&name| GroupRef::Name(name.to_owned())).collect()
}

impl GroupRef {
    /// The superuser's group, by name or by id.
    pub fn is_root(&self) -> bool {
        matches!(self, GroupRef::Id(0)) || matches!(self, GroupRef::Name(n) if n == "root")
    }
}

impl AdmissionRules {
    /// These rules for a job sent to the whole cluster (`corral apply`, a
    /// `publish_dir`): its node constraints say where the scheduler may
    /// bind it, not whether this node, which only submits it, would run it.
    pub fn for_cluster(self) -> AdmissionRules {
        AdmissionRules { cluster_node: None, ..self }
    }

    /// Whether `group` is gid 0 or one of the privileged groups, as written
    /// (a number is compared with numbers, a name with names; the container
    /// compares resolved gids).
    pub fn is_privileged(&self, group: &GroupRef) -> bool {
        group.is_root() || self.privileged_groups.contains(group)
    }

    /// Every reason the agent would not run `job`, each at the field it is about.
    pub fn check(&self, job: &Job) -> Vec<Diagnostic> {
        let spec = &job.spec;
        let at = |field: &'static str, error: SpecError| {
            let path = field.split('.').fold(FieldPath::root(), |p, key| p.key(key));
            Diagnostic::new(&job.origin.file, job.origin.pos_of(field), path, error)
        };
        let mut problems = Vec::new();
        if !self.allow_root_jobs {
            match &spec.user {
                Some(user) if user.is_root() => {
                    problems.push(at("user", SpecError::RootUser { from_default: false }))
                }
                None if self.default_user.is_root() => {
                    problems.push(at("user", SpecError::RootUser { from_default: true }))
                }
                _ => {}
            }
            if let Some(group) = spec.group.as_ref().filter(|g| self.is_privileged(g)) {
                problems.push(at("group", SpecError::PrivilegedGroup { group: group.to_string() }));
            }
        }
        // A uid from the range belongs to whichever job the agent gave it;
        // asking for one by number would be asking for another job's files
        // and processes. (A name that resolves into the range is a host
        // account, whose number the agent never hands out.)
        if let Some(UserRef::Id(uid)) = &spec.user {
            if self.dynamic_users.contains(*uid) {
                problems.push(at(
                    "user",
                    SpecError::DynamicUid {
                        what: "uid",
                        id: *uid,
                        range: self.dynamic_users.to_string(),
                    },
                ));
            }
        }
        // The gid of the same number is that job's group too.
        if let Some(GroupRef::Id(gid)) = &spec.group {
            if self.dynamic_users.contains(*gid) {
                problems.push(at(
                    "group",
                    SpecError::DynamicUid {
                        what: "gid",
                        id: *gid,
                        range: self.dynamic_users.to_string(),
                    },
                ));
            }
        }
        // Jobs that set the same `user` share it too, but by their authors' choice;
        // a shared default user is shared by every job that does not choose. A
        // dynamic default shares nothing: each job name has its own uid.
        if let Some(shared) = self.default_user.account() {
            let shares_uid = spec.user.as_ref().is_none_or(|u| u == shared);
            if shares_uid
                && !spec.isolation.has(Namespace::Pid)
                && !self.allow_shared_uid_without_pid_namespace
            {
                problems.push(at(
                    "isolation.namespaces",
                    SpecError::SharedUidWithoutPid { user: shared.to_string() },
                ));
            }
        }
        // In a cluster, a job's node constraints say where it may run; a
        // node's own job that leaves the node out is not run there.
        if let Some((name, labels)) = &self.cluster_node {
            if let Some(reason) = spec.nodes.refusal(name, labels) {
                let field =
                    if spec.nodes.names.iter().any(|n| n == name) || spec.nodes.names.is_empty() {
                        "node_selector"
                    } else {
                        "nodes"
                    };
                problems.push(at(field, SpecError::Refused { reason }));
            }
        }
        problems
    }
}

/// One line saying which rules are applied, for `corral validate`.
impl fmt::Display for AdmissionRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let groups = self.privileged_groups.iter().map(ToString::to_string).collect::<Vec<_>>();
        if self.allow_root_jobs {
            f.write_str("root jobs and privileged groups allowed")?;
        } else {
            write!(
                f,
                "root jobs refused; gid 0 and privileged groups refused ({})",
                if groups.is_empty() { "none listed".to_owned() } else { groups.join(", ") }
            )?;
        }
        write!(f, "; default_user {}", self.default_user)?;
        if self.default_user == DefaultUser::Dynamic {
            write!(f, " (a uid of its own per job, from {})", self.dynamic_users)
        } else if self.allow_shared_uid_without_pid_namespace {
            f.write_str("; jobs without a pid namespace allowed as default_user")
        } else {
            f.write_str("; jobs without a pid namespace refused as default_user")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::compile_str;
    use std::path::Path;

    fn problems(rules: &AdmissionRules, text: &str) -> Vec<String> {
        let jobs = compile_str(Path::new("a.yaml"), text).unwrap();
        jobs.iter().flat_map(|j| rules.check(j)).map(|d| d.to_string()).collect()
    }

    const HEAD: &str = "name: a\ncommand: [/bin/true]\n";

    #[test]
    fn root_by_name_or_id_is_refused_at_the_user_field() {
        let rules = AdmissionRules::default();
        assert_eq!(
            problems(&rules, &format!("{HEAD}user: root\n")),
            ["a.yaml:3:7: user: it would run as root, which this agent does not allow \
              (allow_root_jobs is false)"]
        );
        assert_eq!(problems(&rules, &format!("{HEAD}user: '0'\n")).len(), 1);
        assert!(problems(&rules, &format!("{HEAD}user: etl\n")).is_empty());
        let root_default =
            AdmissionRules { default_user: DefaultUser::Account(UserRef::Id(0)), ..rules };
        assert!(problems(&root_default, HEAD)[0].contains("default_user"));
    }

    #[test]
    fn gid_zero_and_privileged_groups_are_refused_like_root() {
        let rules = AdmissionRules::default();
        for group in ["'0'", "root", "shadow", "disk", "sudo", "docker", "adm"] {
            let found = problems(&rules, &format!("{HEAD}group: {group}\n"));
            assert_eq!(found.len(), 1, "{group}: {found:?}");
            assert!(found[0].starts_with("a.yaml:3:8: group: group "), "{found:?}");
            assert!(found[0].contains("is privileged"), "{found:?}");
        }
        assert!(problems(&rules, &format!("{HEAD}group: staff\n")).is_empty());
        assert!(problems(&rules, &format!("{HEAD}group: '42'\n")).is_empty(), "left to the start");
        let by_number =
            AdmissionRules { privileged_groups: vec![GroupRef::Id(42)], ..rules.clone() };
        assert_eq!(problems(&by_number, &format!("{HEAD}group: '42'\n")).len(), 1);
        assert!(problems(&by_number, &format!("{HEAD}group: shadow\n")).is_empty());
        let allowed = AdmissionRules { allow_root_jobs: true, ..rules };
        assert!(problems(&allowed, &format!("{HEAD}user: root\ngroup: shadow\n")).is_empty());
    }

    #[test]
    fn no_pid_namespace_is_refused_for_jobs_sharing_the_default_user() {
        let rules = AdmissionRules {
            default_user: DefaultUser::Account(UserRef::Name("nobody".into())),
            ..AdmissionRules::default()
        };
        let shared = format!("{HEAD}isolation:\n  namespaces: [mount, net]\n");
        let found = problems(&rules, &shared);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("a.yaml:4:15: isolation.namespaces: without a pid namespace"),
            "{found:?}"
        );
        assert!(found[0].contains("\"nobody\""), "{found:?}");
        assert_eq!(problems(&rules, &format!("{HEAD}isolation: {{namespaces: []}}\n")).len(), 1);
        assert!(problems(&rules, &format!("{HEAD}user: etl\nisolation: {{namespaces: []}}\n"))
            .is_empty());
        assert_eq!(
            problems(&rules, &format!("{HEAD}user: nobody\nisolation: {{namespaces: []}}\n")).len(),
            1
        );
        assert!(problems(&rules, HEAD).is_empty(), "the default namespaces include pid");
        let allowed = AdmissionRules { allow_shared_uid_without_pid_namespace: true, ..rules };
        assert!(problems(&allowed, &shared).is_empty());
    }

    #[test]
    fn a_dynamic_default_user_shares_no_uid_so_no_pid_namespace_is_allowed() {
        let rules = AdmissionRules::default();
        assert_eq!(rules.default_user, DefaultUser::Dynamic);
        assert!(problems(&rules, &format!("{HEAD}isolation: {{namespaces: []}}\n")).is_empty());
        // A named account is still shared by whoever names it.
        assert!(problems(&rules, &format!("{HEAD}user: etl\nisolation: {{namespaces: []}}\n"))
            .is_empty());
    }

    #[test]
    fn a_user_inside_the_dynamic_range_is_refused() {
        let rules = AdmissionRules::default();
        let found = problems(&rules, &format!("{HEAD}user: '61200'\n"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("a.yaml:3:7: user: uid 61200 is in the agent's dynamic_users"));
        assert!(found[0].contains("61184-65519"), "{found:?}");
        assert!(problems(&rules, &format!("{HEAD}user: '61183'\n")).is_empty());
        let found = problems(&rules, &format!("{HEAD}group: '65519'\n"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("a.yaml:3:8: group: gid 65519 is in"), "{found:?}");
    }

    #[test]
    fn every_problem_of_a_job_is_reported() {
        let found =
            problems(&AdmissionRules::default(), &format!("{HEAD}user: root\ngroup: adm\n"));
        assert_eq!(found.len(), 2, "{found:?}");
    }

    #[test]
    fn the_rules_say_what_they_are() {
        let text = AdmissionRules::default().to_string();
        assert!(text.contains("root jobs refused"), "{text}");
        assert!(text.contains("shadow, disk, sudo, docker, adm"), "{text}");
        assert!(text.contains("default_user dynamic (a uid of its own per job, from 61184-65519)"));
        let shared = AdmissionRules {
            default_user: DefaultUser::Account(UserRef::Name("nobody".into())),
            ..AdmissionRules::default()
        };
        let text = shared.to_string();
        assert!(text.contains("default_user nobody; jobs without a pid namespace refused"));
    }

    #[test]
    fn in_a_cluster_a_job_that_leaves_this_node_out_is_refused_at_its_field() {
        let compile = |text: &str| {
            crate::spec::compile_str(std::path::Path::new("j.yaml"), text).unwrap().remove(0)
        };
        let labels: BTreeMap<String, String> = [("disk".to_owned(), "ssd".to_owned())].into();
        let rules = AdmissionRules {
            cluster_node: Some(("n1".into(), labels)),
            ..AdmissionRules::default()
        };
        let elsewhere = compile("name: a\ncommand: [/bin/true]\nnodes: [n2, n3]\n");
        let problems: Vec<String> = rules.check(&elsewhere).iter().map(|d| d.to_string()).collect();
        assert_eq!(
            problems,
            ["j.yaml:3:8: nodes: refused: node constraints: this node (n1, labels: disk=ssd) \
              is not in nodes [n2, n3]"]
        );
        let hdd = compile("name: a\ncommand: [/bin/true]\nnode_selector: {disk: hdd}\n");
        let problems: Vec<String> = rules.check(&hdd).iter().map(|d| d.to_string()).collect();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("node_selector: refused: node constraints"), "{problems:?}");
        assert!(problems[0].ends_with("lacks node_selector disk=hdd"), "{problems:?}");
        let here =
            compile("name: a\ncommand: [/bin/true]\nnodes: [n1]\nnode_selector: {disk: ssd}\n");
        assert!(rules.check(&here).is_empty());
        // Alone (no cluster), constraints are the cluster's business.
        assert!(AdmissionRules::default().check(&elsewhere).is_empty());
    }
}
