//! The job spec: the compiled, validated form of one YAML document in a job file.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::after::{self, After};
use super::array::{self, ArraySpec};
use super::check::{choice, optional, Checker};
use super::error::{FieldPath, SpecError};
use super::identity::{GroupRef, UserRef};
use super::isolation::{self, Isolation};
use super::nodes::{self, NodeConstraints};
use super::oom::{self, OomPolicy};
use super::paths::AbsPath;
use super::resources::{self, Resources};
use super::restart::{self, RestartPolicy};
use super::rlimits::{self, Rlimits};
use super::schedule::{self, Recurrence};
use super::signal::{self, JobSignal, TimeoutSignal};
use super::tree::{Node, Value};
use crate::vocab::JobName;

/// One job, as its file describes it. Two specs are equal exactly when running one instead
/// of the other would make no difference, which is what reloads compare.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub name: JobName,
    pub description: Option<String>,
    pub command: Command,
    pub env: BTreeMap<String, String>,
    /// `None`: the root of the job's filesystem view.
    pub workdir: Option<AbsPath>,
    /// `None`: the agent's `default_user`.
    pub user: Option<UserRef>,
    /// `None`: the user's primary group.
    pub group: Option<GroupRef>,
    /// `None`: the job runs once, when it is loaded.
    pub recurrence: Option<Recurrence>,
    pub priority: Priority,
    pub preemption: Preemption,
    /// `None`: the agent's `stop_grace`.
    pub stop_grace: Option<Duration>,
    pub on_removal: OnRemoval,
    pub resources: Resources,
    pub oom: OomPolicy,
    pub restart: RestartPolicy,
    /// A run still going after this long is stopped and counts as failed.
    pub timeout: Option<Duration>,
    /// `None`: SIGTERM. The first signal of every stop of a run.
    pub stop_signal: Option<JobSignal>,
    /// A warning sent ahead of `timeout` (which it requires).
    pub timeout_signal: Option<TimeoutSignal>,
    pub isolation: Isolation,
    pub rlimits: Rlimits,
    /// Jobs whose latest runs must have ended as asked before a run of this
    /// one starts; empty: none.
    pub after: Vec<After>,
    /// `Some`: one run per index instead of one run (see [`super::array`]).
    pub array: Option<ArraySpec>,
    /// Which cluster nodes may run it (see [`super::nodes`]).
    pub nodes: NodeConstraints,
    /// What the cluster scheduler does with a run whose node was lost;
    /// `None`: as [`JobSpec::on_node_loss`] says by the job's kind.
    pub on_node_loss: Option<OnNodeLoss>,
}

impl JobSpec {
    /// What happens to a cluster run of this job when its node is lost:
    /// as written, else `reschedule` for a one-shot job and `fail` for a
    /// recurring one (its next firing comes anyway).
    pub fn on_node_loss(&self) -> OnNodeLoss {
        self.on_node_loss.unwrap_or(if self.recurrence.is_some() {
            OnNodeLoss::Fail
        } else {
            OnNodeLoss::Reschedule
        })
    }
}

/// The program and its arguments, passed to `execve` as they are: no shell is involved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Command {
    /// An absolute path, or a bare name looked up in the job's `PATH`.
    pub program: String,
    pub args: Vec<String>,
}

impl Command {
    /// `argv`: the program followed by its arguments.
    pub fn argv(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.program.as_str()).chain(self.args.iter().map(String::as_str))
    }

    /// Whether the program is looked up in `PATH`.
    pub fn uses_path_lookup(&self) -> bool {
        !self.program.starts_with('/')
    }
}

/// How important a job is: 0 to 1000, higher first. Only a job of strictly higher
/// priority can preempt another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(u16);

impl Priority {
    pub const MIN: u16 = 0;
    pub const MAX: u16 = 1000;
    pub const DEFAULT: Priority = Priority(50);

    pub fn new(value: u16) -> Option<Priority> {
        (value <= Self::MAX).then_some(Priority(value))
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

impl Default for Priority {
    fn default() -> Self {
        Priority::DEFAULT
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What may be done to this job to make room for a higher-priority one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Preemption {
    /// Freeze it (cgroup freezer) and thaw it later. Frees CPUs, not memory.
    Suspend,
    /// Stop it and queue it to start again from the beginning.
    Requeue,
    /// Leave it alone. The default: only a job's owner knows whether it survives being
    /// frozen (leases, network peers, clocks) or restarted, so they have to opt in.
    #[default]
    Never,
}
choice!(Preemption { "suspend" => Suspend, "requeue" => Requeue, "never" => Never });

/// What happens to a running job when its file (or the job in it) goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OnRemoval {
    /// Stop it (SIGTERM, then SIGKILL after `stop_grace`).
    #[default]
    Stop,
    /// Let the current run finish; start no new ones.
    Finish,
}
choice!(OnRemoval { "stop" => Stop, "finish" => Finish });

/// What the cluster scheduler does with a run whose node left the cluster
/// (its lease expired) and did not come back within `node_loss_grace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnNodeLoss {
    /// Bind it to another node as its next attempt (the same run: a
    /// recurring job's firing is not fired again).
    Reschedule,
    /// End it with the outcome `lost`.
    Fail,
}
choice!(OnNodeLoss { "reschedule" => Reschedule, "fail" => Fail });

/// Every top-level field of a job.
pub const FIELDS: &[&str] = &[
    "name",
    "description",
    "command",
    "env",
    "workdir",
    "user",
    "group",
    "schedule",
    "timezone",
    "concurrency",
    "catch_up",
    "catch_up_max",
    "starting_deadline",
    "jitter",
    "suspend",
    "history",
    "priority",
    "preemption",
    "stop_grace",
    "on_removal",
    "resources",
    "oom",
    "restart",
    "timeout",
    "stop_signal",
    "timeout_signal",
    "isolation",
    "rlimits",
    "after",
    "array",
    "nodes",
    "node_selector",
    "spread",
    "on_node_loss",
];

/// Compiles one document. Every problem is reported to `cx`; the spec is returned only if
/// there were none.
pub fn compile(cx: &mut Checker, document: &Node) -> Option<JobSpec> {
    let before = cx.error_count();
    let root = FieldPath::root();
    let job = cx.map(document, &root, FIELDS)?;
    let field = |key: &str| root.key(key);

    let name = job.require(cx, "name").and_then(|n| {
        cx.parsed(n, &field("name"), |text| {
            JobName::parse(text)
                .map_err(|reason| SpecError::Name { value: text.to_owned(), reason })
        })
    });
    let description = optional(job.get("description"), |n| cx.string(n, &field("description")));
    let command = job.require(cx, "command").and_then(|n| command(cx, n, &field("command")));
    let env = match job.get("env") {
        None => Some(BTreeMap::new()),
        Some(n) => env(cx, n, &field("env")),
    };
    let workdir = optional(job.get("workdir"), |n| {
        cx.parsed(n, &field("workdir"), |t| AbsPath::parse(t, "working directory"))
    });
    let user = optional(job.get("user"), |n| cx.parsed_text(n, &field("user"), UserRef::parse));
    let group = optional(job.get("group"), |n| cx.parsed_text(n, &field("group"), GroupRef::parse));
    let recurrence = schedule::compile(cx, &job);
    let priority = match job.get("priority") {
        None => Some(Priority::DEFAULT),
        Some(n) => {
            cx.int(n, &field("priority"), Priority::MIN..=Priority::MAX).and_then(Priority::new)
        }
    };
    let preemption = match job.get("preemption") {
        None => Some(Preemption::Never),
        Some(n) => cx.choice(n, &field("preemption")),
    };
    let stop_grace = optional(job.get("stop_grace"), |n| cx.duration(n, &field("stop_grace")));
    let on_removal = match job.get("on_removal") {
        None => Some(OnRemoval::Stop),
        Some(n) => cx.choice(n, &field("on_removal")),
    };
    let (resources, hard) = resources::compile(cx, job.get("resources"), &field("resources"));
    let oom = oom::compile(cx, job.get("oom"), &field("oom"), hard);
    let restart = restart::compile(cx, job.get("restart"), &field("restart"));
    let timeout = optional(job.get("timeout"), |n| cx.positive_duration(n, &field("timeout")));
    let stop_signal = optional(job.get("stop_signal"), |n| {
        signal::compile_stop_signal(cx, n, &field("stop_signal"))
    });
    let timeout_signal = optional(job.get("timeout_signal"), |n| {
        signal::compile_timeout_signal(cx, n, &field("timeout_signal"), timeout)
    });
    let isolation = isolation::compile(cx, job.get("isolation"), &field("isolation"));
    let rlimits = rlimits::compile(cx, job.get("rlimits"), &field("rlimits"));
    let after = after::compile(cx, job.get("after"), &field("after"), name.as_ref());
    let array = array::compile(cx, job.get("array"), &field("array"));
    let nodes =
        nodes::compile(cx, job.get("nodes"), job.get("node_selector"), job.get("spread"), &root);
    let on_node_loss = optional(job.get("on_node_loss"), |n| cx.choice(n, &field("on_node_loss")));
    if job.has("array") && job.has("schedule") {
        cx.report(
            job.key_pos("array"),
            &field("array"),
            SpecError::MutuallyExclusive {
                first: "array",
                second: "schedule",
                why: "an array's runs start once, when it is loaded or submitted",
            },
        );
    }
    if job.has("array") && job.has("after") {
        cx.report(
            job.key_pos("array"),
            &field("array"),
            SpecError::MutuallyExclusive {
                first: "array",
                second: "after",
                why: "an array's runs are queued all at once and do not wait for other jobs",
            },
        );
    }

    if cx.error_count() > before {
        return None;
    }
    Some(JobSpec {
        name: name?,
        description: description?,
        command: command?,
        env: env?,
        workdir: workdir?,
        user: user?,
        group: group?,
        recurrence: recurrence?,
        priority: priority?,
        preemption: preemption?,
        stop_grace: stop_grace?,
        on_removal: on_removal?,
        resources: resources?,
        oom: oom?,
        restart: restart?,
        timeout: timeout?,
        stop_signal: stop_signal?,
        timeout_signal: timeout_signal?,
        isolation: isolation?,
        rlimits: rlimits?,
        after: after?,
        array: array?,
        nodes: nodes?,
        on_node_loss: on_node_loss?,
    })
}

fn command(cx: &mut Checker, node: &Node, path: &FieldPath) -> Option<Command> {
    let Value::Seq(items) = &node.value else {
        cx.report(
            node.pos,
            path,
            SpecError::wrong_type("a list such as [\"/bin/sh\", \"-c\", \"echo hi\"]", &node.value),
        );
        return None;
    };
    let Some((first, rest)) = items.split_first() else {
        cx.report(
            node.pos,
            path,
            SpecError::Invalid {
                what: "command",
                value: "[]".into(),
                reason: "it is empty; the first element is the program to run".into(),
            },
        );
        return None;
    };
    let program = cx.parsed(first, &path.index(0), |text| {
        let invalid = |reason: &str| SpecError::Invalid { what: "program", value: text.to_owned(), reason: reason.to_owned() };
        if text.is_empty() {
            Err(invalid("it is empty"))
        } else if text.contains('\0') {
            Err(invalid("it contains a NUL character"))
        } else if !text.starts_with('/') && text.contains('/') {
            Err(invalid(
                "a relative path depends on the working directory; use an absolute path or a bare name looked up in PATH",
            ))
        } else {
            Ok(text.to_owned())
        }
    });
    let mut args = Vec::with_capacity(rest.len());
    let mut ok = true;
    for (i, item) in rest.iter().enumerate() {
        let arg = cx.parsed_text(item, &path.index(i + 1), |text| {
            if text.contains('\0') {
                Err(SpecError::Invalid {
                    what: "argument",
                    value: text.to_owned(),
                    reason: "it contains a NUL character, which cannot be passed to a program"
                        .into(),
                })
            } else {
                Ok(text.to_owned())
            }
        });
        match arg {
            Some(arg) => args.push(arg),
            None => ok = false,
        }
    }
    ok.then_some(())?;
    Some(Command { program: program?, args })
}

/// Whether `name` can be an environment variable name that shells and `env` accept.
fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn env(cx: &mut Checker, node: &Node, path: &FieldPath) -> Option<BTreeMap<String, String>> {
    let entries = cx.free_map(node, path)?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for entry in entries {
        let var_path = path.key(&entry.key);
        if !valid_env_name(&entry.key) {
            ok = false;
            cx.report(
                entry.key_pos,
                &var_path,
                SpecError::Invalid {
                    what: "environment variable name",
                    value: entry.key.clone(),
                    reason: "use letters, digits and '_', not starting with a digit".into(),
                },
            );
            continue;
        }
        // `KEY:` with nothing after it is an empty value, which is what a shell
        // `KEY=` means too.
        let value = if entry.value.is_null() {
            Some(String::new())
        } else {
            cx.parsed_text(entry.value, &var_path, |text| {
                if text.contains('\0') {
                    Err(SpecError::Invalid {
                        what: "environment value",
                        value: text.to_owned(),
                        reason: "it contains a NUL character".into(),
                    })
                } else {
                    Ok(text.to_owned())
                }
            })
        };
        match value {
            Some(value) => {
                out.insert(entry.key, value);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testutil::{compile, error, ok};
    use crate::spec::CpuRequest;
    use crate::vocab::Namespace;

    fn named(name: &str) -> Result<JobSpec, Vec<String>> {
        compile(&format!("name: {name}\ncommand: [/bin/true]\n"))
    }

    #[test]
    fn a_minimal_job_gets_every_default() {
        let spec = compile("name: nightly-etl\ncommand: [/bin/true]\n").unwrap();
        assert_eq!(spec.name.as_str(), "nightly-etl");
        assert_eq!(spec.description, None);
        assert_eq!(spec.command, Command { program: "/bin/true".into(), args: vec![] });
        assert!(spec.env.is_empty());
        assert_eq!((spec.workdir, spec.user, spec.group), (None, None, None));
        assert_eq!(spec.recurrence, None);
        assert_eq!(spec.priority, Priority::DEFAULT);
        assert_eq!(spec.preemption, Preemption::Never);
        assert_eq!(spec.stop_grace, None);
        assert_eq!(spec.on_removal, OnRemoval::Stop);
        assert_eq!(spec.resources, Resources::default());
        assert_eq!(
            spec.resources.cpu,
            CpuRequest::Shared { weight: crate::vocab::CpuWeight::DEFAULT }
        );
        assert_eq!(spec.oom, OomPolicy::Fail);
        assert_eq!(spec.restart, RestartPolicy::default());
        assert_eq!(spec.timeout, None);
        assert_eq!(spec.isolation, Isolation::default());
        assert!(spec.isolation.has(Namespace::Net));
        assert_eq!(spec.rlimits, Rlimits::default());
    }

    #[test]
    fn name_is_required() {
        assert_eq!(
            compile("command: [/bin/true]\n").unwrap_err(),
            ["1 : required field `name` is missing"]
        );
        assert_eq!(
            compile("name:\ncommand: [/bin/true]\n").unwrap_err(),
            ["1 : required field `name` is missing"]
        );
    }

    #[test]
    fn each_bad_name_is_rejected_with_its_reason() {
        let cases = [
            (
                "'../x'",
                "it contains '/'; a name is used as a single directory and cgroup name, not a path",
            ),
            (
                "a/b",
                "it contains '/'; a name is used as a single directory and cgroup name, not a path",
            ),
            ("'.'", "it contains '.'; names may only use a-z, 0-9 and '-'"),
            ("''", "it is empty"),
            (
                "Nightly",
                "it contains the upper-case letter 'N' at position 1; names are lower case",
            ),
            (&"a".repeat(200), "it is 200 characters long; the limit is 63"),
            (
                "a_b",
                "character '_' at position 2 is not allowed; names may only use a-z, 0-9 and '-'",
            ),
            ("-a", "it must start and end with a letter or digit, not '-'"),
        ];
        for (name, reason) in cases {
            let errors = named(name).unwrap_err();
            assert_eq!(errors.len(), 1, "{name}: {errors:?}");
            assert!(errors[0].starts_with("1 name: invalid name "), "{name}: {errors:?}");
            assert!(errors[0].ends_with(reason), "{name}: {errors:?}");
        }
        assert_eq!(
            named("2024").unwrap_err(),
            ["1 name: expected a string, found the integer 2024"]
        );
        assert!(named("'2024'").is_ok());
    }

    #[test]
    fn command_is_a_non_empty_list_with_a_usable_program() {
        assert_eq!(compile("name: t\n").unwrap_err(), ["1 : required field `command` is missing"]);
        let e = compile("name: t\ncommand: []\n").unwrap_err();
        assert_eq!(e, ["2 command: invalid command \"[]\": it is empty; the first element is the program to run"]);
        let e = compile("name: t\ncommand: /bin/echo hi\n").unwrap_err();
        assert_eq!(
            e,
            ["2 command: expected a list such as [\"/bin/sh\", \"-c\", \"echo hi\"], found the string \"/bin/echo hi\""]
        );
        let e = compile("name: t\ncommand: [bin/run]\n").unwrap_err();
        assert!(
            e[0].starts_with("2 command[0]: invalid program \"bin/run\": a relative path"),
            "{e:?}"
        );
        let e = compile("name: t\ncommand: ['']\n").unwrap_err();
        assert_eq!(e, ["2 command[0]: invalid program \"\": it is empty"]);
        let e = compile("name: t\ncommand: [/bin/echo, \"a\\0b\"]\n").unwrap_err();
        assert!(e[0].starts_with("2 command[1]: invalid argument"), "{e:?}");
        let e = compile("name: t\ncommand: [sleep, 0.5]\n").unwrap_err();
        assert_eq!(e, ["2 command[1]: expected a string, found the number 0.5"]);
    }

    #[test]
    fn bare_program_names_and_numeric_arguments_are_fine() {
        let spec = compile("name: t\ncommand: [sleep, 10]\n").unwrap();
        assert_eq!(spec.command.argv().collect::<Vec<_>>(), ["sleep", "10"]);
        assert!(spec.command.uses_path_lookup());
        let spec = compile("name: t\ncommand:\n  - /bin/sh\n  - -c\n  - echo \"$X\"\n").unwrap();
        assert_eq!(spec.command.args, ["-c", "echo \"$X\""]);
    }

    #[test]
    fn env_names_are_checked_and_values_may_be_scalars() {
        let spec = ok("env: {TZ: UTC, DEBUG: 1, VERBOSE: true, EMPTY: , _X: ''}\n");
        let env: Vec<_> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(env, ["DEBUG=1", "EMPTY=", "TZ=UTC", "VERBOSE=true", "_X="]);
        assert_eq!(
            error("env:\n  1X: a\n"),
            "4 env.1X: invalid environment variable name \"1X\": use letters, digits and '_', not starting with a digit"
        );
        assert_eq!(error("env:\n  A-B: a\n").split(':').next(), Some("4 env.A-B"));
        assert_eq!(error("env:\n  A: [1]\n"), "4 env.A: expected a string, found a list");
        assert_eq!(
            error("env:\n  A: 1\n  A: 2\n"),
            "5 env.A: `A` is set twice; the first is on line 4"
        );
        assert_eq!(error("env: [A=1]\n"), "3 env: expected a mapping, found a list");
    }

    #[test]
    fn workdir_user_group() {
        let spec = ok("workdir: /srv/etl\nuser: etl\ngroup: 1000\n");
        assert_eq!(spec.workdir.unwrap().to_string(), "/srv/etl");
        assert_eq!(spec.user, Some(UserRef::Name("etl".into())));
        assert_eq!(spec.group, Some(GroupRef::Id(1000)));
        assert_eq!(ok("user: 0\n").user, Some(UserRef::Id(0)));
        assert_eq!(
            error("workdir: srv\n"),
            "3 workdir: invalid working directory \"srv\": it must be an absolute path, starting with /"
        );
        assert_eq!(
            error("user: 'a b'\n"),
            "3 user: invalid user \"a b\": character ' ' is not allowed in an account name"
        );
        assert!(error("group: -x\n").starts_with("3 group: invalid group"));
    }

    #[test]
    fn priority_preemption_and_stopping() {
        let spec = ok("priority: 1000\npreemption: suspend\nstop_grace: 1m\non_removal: finish\ntimeout: 2h\n");
        assert_eq!(spec.priority.get(), 1000);
        assert_eq!(spec.preemption, Preemption::Suspend);
        assert_eq!(spec.stop_grace, Some(Duration::from_secs(60)));
        assert_eq!(spec.on_removal, OnRemoval::Finish);
        assert_eq!(spec.timeout, Some(Duration::from_secs(7200)));
        assert_eq!(
            ok("priority: 0\npreemption: requeue\nstop_grace: 0s\n").preemption,
            Preemption::Requeue
        );
        assert_eq!(
            error("priority: 1001\n"),
            "3 priority: 1001 is out of range; allowed: 0 to 1000"
        );
        assert_eq!(error("priority: -1\n"), "3 priority: -1 is out of range; allowed: 0 to 1000");
        assert_eq!(
            error("preemption: freeze\n"),
            "3 preemption: \"freeze\" is not one of: suspend, requeue, never"
        );
        assert_eq!(
            error("on_removal: keep\n"),
            "3 on_removal: \"keep\" is not one of: stop, finish"
        );
        assert_eq!(
            error("timeout: 30\n"),
            "3 timeout: invalid duration \"30\": a number has no unit; add one of d, h, m, s, ms (for example 30s)"
        );
        assert_eq!(
            error("timeout: 0s\n"),
            "3 timeout: invalid duration \"0s\": it must be longer than zero"
        );
        assert!(error("stop_grace: soon\n").starts_with("3 stop_grace: invalid duration \"soon\""));
    }

    #[test]
    fn on_node_loss_defaults_by_the_jobs_kind() {
        assert_eq!(ok("").on_node_loss(), OnNodeLoss::Reschedule);
        assert_eq!(ok("schedule: '0 * * * *'\n").on_node_loss(), OnNodeLoss::Fail);
        assert_eq!(ok("on_node_loss: fail\n").on_node_loss(), OnNodeLoss::Fail);
        let recurring = ok("schedule: '0 * * * *'\non_node_loss: reschedule\n");
        assert_eq!(recurring.on_node_loss(), OnNodeLoss::Reschedule);
        assert_eq!(ok("").on_node_loss, None);
        assert_eq!(
            error("on_node_loss: retry\n"),
            "3 on_node_loss: \"retry\" is not one of: reschedule, fail"
        );
        assert_eq!(
            error("on_node_los: fail\n"),
            "3 on_node_los: unknown field `on_node_los`; did you mean `on_node_loss`?"
        );
    }

    #[test]
    fn unknown_fields_are_errors_with_suggestions() {
        assert_eq!(
            error("comand: [x]\n"),
            "3 comand: unknown field `comand`; did you mean `command`?"
        );
        assert_eq!(error("timezone_name: UTC\n"), "3 timezone_name: unknown field `timezone_name`");
        assert_eq!(
            error("resources: {cpu: 1}\n"),
            "3 resources.cpu: unknown field `cpu`; did you mean `cpus`?"
        );
    }

    #[test]
    fn a_document_must_be_a_mapping() {
        assert_eq!(compile("- name: t\n").unwrap_err(), ["1 : expected a mapping, found a list"]);
        assert_eq!(
            compile("just text\n").unwrap_err(),
            ["1 : expected a mapping, found the string \"just text\""]
        );
    }

    #[test]
    fn null_fields_count_as_absent() {
        let spec = ok("description: ~\ntimeout:\nresources:\n");
        assert_eq!((spec.description, spec.timeout), (None, None));
    }

    #[test]
    fn env_names() {
        for ok in ["A", "_", "PATH", "my_var2", "_X"] {
            assert!(valid_env_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A.B", "A B", "A=B", "É"] {
            assert!(!valid_env_name(bad), "{bad}");
        }
    }

    #[test]
    fn priority_range() {
        assert_eq!(Priority::new(0).map(Priority::get), Some(0));
        assert_eq!(Priority::new(1000).map(Priority::get), Some(1000));
        assert_eq!(Priority::new(1001), None);
        assert_eq!(Priority::default().get(), 50);
    }

    #[test]
    fn argv_is_program_then_arguments() {
        let c = Command { program: "/bin/sh".into(), args: vec!["-c".into(), "true".into()] };
        assert_eq!(c.argv().collect::<Vec<_>>(), ["/bin/sh", "-c", "true"]);
        assert!(!c.uses_path_lookup());
        assert!(Command { program: "sleep".into(), args: vec![] }.uses_path_lookup());
    }
}
