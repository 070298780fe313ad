//! What the package installs, checked from the checkout: the systemd unit
//! (`systemd-analyze verify`, and the settings runs depend on), the
//! installed configuration, the maintainer scripts, the man pages and
//! completions made from the command line, `corral --version`, and how the
//! command line finds the agent to talk to.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clap::CommandFactory as _;
use corral::container::nofile;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn corral(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_corral"));
    command.args(args).env_remove("CORRAL_CONFIG").env_remove("CORRAL_SOCKET");
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `tool` on PATH, or `None` with the reason printed; under CI a missing
/// tool fails the test instead of skipping it.
fn tool(tool: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.exists()));
    if found.is_none() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{tool} is missing under CI");
        eprintln!("skipped: {tool} is not installed");
    }
    found
}

/// The unit's `Key=value` lines, comments left out.
fn unit_settings() -> Vec<(String, String)> {
    let unit = std::fs::read_to_string(repo().join("packaging/corral.service")).unwrap();
    unit.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn setting(key: &str) -> String {
    let settings = unit_settings();
    let values: Vec<&String> = settings.iter().filter(|(k, _)| k == key).map(|(_, v)| v).collect();
    assert_eq!(values.len(), 1, "{key} set once in the unit: {values:?}");
    values[0].clone()
}

fn generated_docs() -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let made = corral(&["generate-docs", "--out"]).arg(out.path()).output().unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    // It lists what it wrote.
    assert!(text(&made.stdout).contains("man1/corral.1\n"), "{}", text(&made.stdout));
    out
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let Some(analyze) = tool("systemd-analyze") else { return };
    // verify checks that ExecStart's binary exists and that the
    // Documentation= man pages open: point both at this build.
    let docs = generated_docs();
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(repo().join("packaging/corral.service")).unwrap();
    let unit = unit.replace("/usr/bin/corral", env!("CARGO_BIN_EXE_corral"));
    let path = dir.path().join("corral.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&path)
        .env("MANPATH", docs.path())
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // verify exits 0 on settings it ignores: any line it prints is a fault,
    // except DelegateSubgroup= on a systemd older than 254, which ignores
    // it by design (see the unit).
    let old_systemd = systemd_version(&analyze).is_some_and(|v| v < 254);
    let faults: Vec<&str> = stderr
        .lines()
        .filter(|l| !(old_systemd && l.contains("Unknown key 'DelegateSubgroup'")))
        .collect();
    assert!(faults.is_empty(), "{stderr}");
}

/// The `NNN` of `systemd NNN (…)`.
fn systemd_version(analyze: &Path) -> Option<u32> {
    let out = Command::new(analyze).arg("--version").output().ok()?;
    text(&out.stdout).split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn the_unit_leaves_runs_running_and_delegates_the_cgroup() {
    assert_eq!(setting("Type"), "notify");
    assert_eq!(setting("NotifyAccess"), "main");
    assert_eq!(setting("Delegate"), "yes");
    assert_eq!(setting("DelegateSubgroup"), "agent");
    // The default, control-group, would kill every shim and job on stop.
    assert_eq!(setting("KillMode"), "process");
    assert_eq!(setting("Restart"), "on-failure");
    assert_eq!(setting("ExecStart"), "/usr/bin/corral agent --config /etc/corral/agent.yaml");
    assert_eq!(setting("ExecReload"), "/usr/bin/corral reload --config /etc/corral/agent.yaml");
    assert_eq!(setting("RuntimeDirectory"), "corral");
    assert_eq!(setting("StateDirectory"), "corral");
    // Jobs inherit the agent's mount namespace: nothing may give it one.
    for key in ["PrivateTmp", "ProtectSystem", "ProtectHome", "ProtectControlGroups"] {
        assert!(unit_settings().iter().all(|(k, _)| k != key), "{key} is set");
    }
}

#[test]
fn the_units_open_file_limit_holds_the_runs_the_agent_is_built_for() {
    let limit = setting("LimitNOFILE");
    let (soft, hard) = limit.split_once(':').expect("SOFT:HARD");
    let (soft, hard): (u64, u64) = (soft.parse().unwrap(), hard.parse().unwrap());
    // Jobs get the soft limit: the one select(2) can use.
    assert_eq!(soft, 1024);
    let http = nofile::http_needs(128);
    assert!(hard >= nofile::RECOMMENDED_HARD + http, "{hard}");
    assert!(nofile::runs_within(hard - http) >= nofile::EXPECTED_RUNS);
}

#[test]
fn the_stop_timeout_covers_the_agents_stop_grace() {
    let timeout = setting("TimeoutStopSec");
    let seconds: u64 = timeout.trim_end_matches('s').parse().unwrap();
    let config = corral::config::load(&repo().join("packaging/agent.yaml")).unwrap();
    // The agent waits for the grace and a kill (15 s) when it stops jobs.
    assert!(seconds > config.stop_grace.as_secs() + 15, "{timeout}");
}

#[test]
fn the_installed_configuration_uses_the_package_paths_and_the_default_socket() {
    let config = corral::config::load(&repo().join("packaging/agent.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.jobs_dir, Path::new("/etc/corral/jobs.d"));
    assert_eq!(config.state_dir, Path::new("/var/lib/corral"));
    assert_eq!(config.socket, Path::new("/run/corral/corral.sock"));
    assert!(config.listen.ip().is_loopback());
    // The socket every command tries when no configuration names another:
    // the installed agent's and the quick start's alike.
    let default = corral::config::AgentConfig::default().socket;
    assert_eq!(config.socket, default);
    let quick_start = corral::config::load(&repo().join("config/agent.yaml")).unwrap();
    assert_eq!(quick_start.socket, default);
}

/// The package puts the shim where an installed agent looks for it:
/// `/usr/bin/corral` finds it in `../libexec/corral/` from its directory.
#[test]
fn the_package_installs_the_shim_where_the_agent_looks_for_it() {
    use corral::container::launch::{find_shim, SHIM_PLACES};
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(r#"["target/release/corral", "usr/bin/", "755"]"#),
        "corral is not installed in /usr/bin"
    );
    assert!(
        manifest.contains(r#"["target/release/corral-shim", "usr/libexec/corral/", "755"]"#),
        "corral-shim is not installed in /usr/libexec/corral/"
    );
    // The same layout under a scratch root: the launcher's search, given the
    // installed corral's directory, finds the installed shim.
    let root = tempfile::tempdir().unwrap();
    let bin = root.path().join("usr/bin");
    let libexec = root.path().join("usr/libexec/corral");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&libexec).unwrap();
    std::fs::write(libexec.join("corral-shim"), "").unwrap();
    let found = find_shim(&bin).unwrap();
    assert_eq!(found, bin.join(SHIM_PLACES[1]));
    assert_eq!(found.canonicalize().unwrap(), libexec.join("corral-shim").canonicalize().unwrap());
}

#[test]
fn the_maintainer_scripts_are_valid_shell_with_the_snippets_placeholder() {
    for script in ["postinst", "postrm"] {
        let path = repo().join("packaging/debian").join(script);
        let body = std::fs::read_to_string(&path).unwrap();
        assert!(body.starts_with("#!/bin/sh\n"), "{script}");
        // The token is replaced by the systemd snippets wherever it is,
        // in a comment too: once, on a line of its own.
        assert_eq!(body.matches("#DEBHELPER#").count(), 1, "{script}");
        assert!(body.contains("\n#DEBHELPER#\n"), "{script}: the systemd snippets go there");
        let out = Command::new("sh").arg("-n").arg(&path).output().unwrap();
        assert!(out.status.success(), "{script}: {}", text(&out.stderr));
    }
    let postrm = std::fs::read_to_string(repo().join("packaging/debian/postrm")).unwrap();
    let purge = postrm.split("purge)").nth(1).expect("a purge case");
    assert!(purge.contains("rm -rf /var/lib/corral"), "{postrm}");
    assert_eq!(postrm.matches("/var/lib/corral").count(), 1, "only on purge: {postrm}");
}

#[test]
fn every_subcommand_gets_a_man_page_and_every_shell_its_completions() {
    let docs = generated_docs();
    let page = |name: &str| docs.path().join("man1").join(format!("{name}.1"));
    let main = std::fs::read_to_string(page("corral")).unwrap();
    assert!(main.contains(".TH corral 1"), "{main}");
    let cli = corral::cli::Cli::command();
    let mut visible = 0;
    for sub in cli.get_subcommands() {
        let name = sub.get_name();
        let path = page(&format!("corral-{name}"));
        if sub.is_hide_set() {
            assert!(!path.exists(), "{name} is hidden and gets no page");
            continue;
        }
        visible += 1;
        let body = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(body.contains(&format!(".TH corral-{name} 1")), "{body}");
        assert!(main.contains(name), "corral(1) lists {name}");
    }
    assert!(visible >= 16, "{visible} subcommands");
    let pages = std::fs::read_dir(docs.path().join("man1")).unwrap().count();
    assert_eq!(pages, visible + 1, "a page per visible subcommand and corral(1)");

    for file in ["corral.bash", "_corral", "corral.fish"] {
        let body = std::fs::read_to_string(docs.path().join("completions").join(file)).unwrap();
        // Fish names long options without their dashes (`-l launch`).
        for word in ["reload", "config", "launch"] {
            assert!(body.contains(word), "{file} completes {word}");
        }
        assert!(!body.contains("generate-docs"), "{file} offers a hidden command");
    }
}

#[test]
fn the_version_names_the_commit_it_was_built_from() {
    let out = corral(&["--version"]).output().unwrap();
    assert!(out.status.success());
    let version = text(&out.stdout);
    let prefix = format!("corral {} (commit ", env!("CARGO_PKG_VERSION"));
    let commit = version.trim_end().strip_prefix(&prefix).and_then(|r| r.strip_suffix(')'));
    let commit = commit.unwrap_or_else(|| panic!("{version}"));
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo())
        .output()
        .ok()
        .filter(|o| o.status.success());
    match head {
        // Whether the tree was dirty when built is not known here, only
        // that the marker, if any, follows the commit.
        Some(head) => {
            let head = text(&head.stdout).trim().to_owned();
            assert!(commit == head || commit == format!("{head}-dirty"), "{version} vs {head}");
        }
        None => assert_eq!(commit, "unknown"),
    }
    // Every subcommand reports the same.
    let sub = corral(&["ps", "--version"]).output().unwrap();
    assert!(text(&sub.stdout).contains(commit), "{}", text(&sub.stdout));
}

fn ps_with(env: &[(&str, &Path)]) -> Output {
    let mut command = corral(&["ps"]);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

#[test]
fn the_environment_names_the_agent_and_the_error_says_how() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nobody-here.sock");
    let out = ps_with(&[("CORRAL_SOCKET", &socket)]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("no agent is listening on {}", socket.display())), "{stderr}");
    assert!(stderr.contains("named by --socket or CORRAL_SOCKET"), "{stderr}");

    // A configuration named by CORRAL_CONFIG gives the socket, and the
    // error names that file and the ways to name another.
    let config = dir.path().join("agent.yaml");
    std::fs::write(&config, "socket: other.sock\n").unwrap();
    let stderr = text(&ps_with(&[("CORRAL_CONFIG", &config)]).stderr);
    let other = dir.path().join("other.sock");
    assert!(stderr.contains(&format!("no agent is listening on {}", other.display())), "{stderr}");
    assert!(stderr.contains(&format!("the one {} names", config.display())), "{stderr}");
    for way in ["--config FILE", "--socket PATH", "CORRAL_CONFIG=FILE", "CORRAL_SOCKET=PATH"] {
        assert!(stderr.contains(way), "{stderr}");
    }

    // The flag wins over the environment.
    let flag = dir.path().join("flag.sock");
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["ps", "--socket"])
        .arg(&flag)
        .env("CORRAL_SOCKET", &socket)
        .output()
        .unwrap();
    assert!(text(&out.stderr).contains(&flag.display().to_string()), "{}", text(&out.stderr));
}

#[test]
fn the_shared_weighted_example_leaves_nothing_in_the_hosts_tmp() {
    // It runs without a mount namespace, so its /tmp is the host's: its
    // marker is named after the run and removed by the attempt that succeeds.
    let out = corral(&["run"]).arg(repo().join("jobs/shared-weighted.yaml")).output().unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(": exit 3 in ") && stderr.contains("restart 1 of 2"), "{stderr}");
    let run = stderr
        .split_whitespace()
        .find(|w| w.starts_with("shared-weighted-"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let marker = PathBuf::from(format!("/tmp/shared-weighted.{run}.ran"));
    assert!(!marker.exists(), "{} left behind", marker.display());
}
