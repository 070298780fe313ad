//! Slurm as a peer: `slurmctld` and `slurmd` for this one node, with the
//! cgroup plugins, fed the same jobs.
//!
//! The bench starts its own `munged` (own key and socket), `slurmctld` and
//! `slurmd` in the foreground with a configuration under the scratch
//! directory (`benches/node/slurm/`), submits one job array of `/bin/true`
//! and waits for the job-completion log (`jobcomp/filetxt`, one line per
//! ended job) to hold every job. Daemons, state and Slurm's cgroups are
//! removed afterwards, also when something fails (`Daemons` on drop).
//!
//! Two configurations: Slurm as shipped (its scheduling defaults, one job
//! per core), and tuned the way Slurm's high-throughput guide suggests
//! (schedule on every event without batching delays, error-only logs) with
//! jobs sharing the cores as corral's jobs share its pool.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Throughput;
use crate::Bench;

const SLURM_CONF: &str = include_str!("../slurm/slurm.conf.in");
const CGROUP_CONF: &str = include_str!("../slurm/cgroup.conf");

/// The tuned configuration's additions, after Slurm's high-throughput guide.
const TUNING: &str = "\
# Tuned for throughput: schedule on every submission and completion rather
# than in batches, and log errors only.
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,default_queue_depth=1000,sched_max_job_start=0,partition_job_depth=0
SlurmctldDebug=error
SlurmdDebug=error";

/// As shipped, Slurm takes seconds per pair of `/bin/true` jobs on this
/// machine; 1,000 of them would take most of half an hour.
const AS_SHIPPED_MAX_JOBS: usize = 100;

/// Slurm's throughput as shipped and tuned.
#[derive(Debug)]
pub struct Variants {
    /// Slurm's defaults, one job per core, at most `AS_SHIPPED_MAX_JOBS`
    /// jobs (`Throughput::jobs` says how many).
    pub as_shipped: Result<Throughput, String>,
    /// Scheduling on every event, up to 8 jobs sharing a core.
    pub tuned: Result<Throughput, String>,
}

impl Variants {
    /// The higher of the two, or why neither could be measured.
    pub fn best(self) -> Result<Throughput, String> {
        match (self.as_shipped, self.tuned) {
            (Ok(a), Ok(t)) => Ok(if a.jobs_per_sec() > t.jobs_per_sec() { a } else { t }),
            (Ok(a), Err(_)) => Ok(a),
            (Err(_), Ok(t)) => Ok(t),
            (Err(a), Err(t)) => Err(format!("as shipped: {a}; tuned: {t}")),
        }
    }
}

/// `jobs` one-shot `/bin/true` jobs submitted at once; time until all have
/// ended. Runs both configurations (`throughput_variants`) and returns the
/// better one; the other is printed on stderr.
pub fn throughput(bench: &Bench, jobs: usize) -> Result<Throughput, String> {
    throughput_variants(bench, jobs).best()
}

/// Both configurations, each with daemons of its own.
pub fn throughput_variants(bench: &Bench, jobs: usize) -> Variants {
    // Three daemons and a job array take tens of seconds to set up and
    // drain; the smoke run under `cargo test` has no time for that.
    if !bench.full {
        let why = || Err("only with --bench (benches/node/run)".to_owned());
        return Variants { as_shipped: why(), tuned: why() };
    }
    let as_shipped = run(bench, "as-shipped", jobs.min(AS_SHIPPED_MAX_JOBS), false);
    report("as shipped", &as_shipped);
    let tuned = run(bench, "tuned", jobs, true);
    report("tuned", &tuned);
    Variants { as_shipped, tuned }
}

fn report(name: &str, result: &Result<Throughput, String>) {
    match result {
        Ok(t) => eprintln!(
            "slurm {name}: {} jobs in {:.1} s, {:.1} jobs/s",
            t.jobs,
            t.elapsed.as_secs_f64(),
            t.jobs_per_sec()
        ),
        Err(e) => eprintln!("slurm {name}: {e}"),
    }
}

/// Slurm's programs: clients on PATH, daemons in /usr/sbin when root's
/// PATH does not name it.
fn program(name: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{name} not found (apt-get install slurm-wlm munge)"))
}

/// A TCP port nothing listens on now.
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("0.0.0.0:0").map_err(|e| format!("free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn output(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(bench: &Bench, name: &str, jobs: usize, tuned: bool) -> Result<Throughput, String> {
    let sbatch = bench.peers.slurm.path()?.to_owned();
    let (slurmctld, slurmd, munged) =
        (program("slurmctld")?, program("slurmd")?, program("munged")?);
    let sinfo = program("sinfo")?;
    let dir = bench.scratch.path().join(format!("slurm-{name}"));
    for sub in ["ctld", "slurmd"] {
        fs::create_dir_all(dir.join(sub)).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut daemons = Daemons { children: Vec::new(), cgroup_name: None, dir: dir.clone() };

    // munged refuses a key that others can read.
    let key = dir.join("munge.key");
    let mut bytes = [0u8; 1024];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    fs::write(&key, bytes).map_err(|e| format!("{}: {e}", key.display()))?;
    fs::set_permissions(&key, fs::Permissions::from_mode(0o400)).map_err(|e| e.to_string())?;
    let socket = dir.join("munge.socket");
    daemons.start(
        "munged",
        Command::new(&munged)
            .args(["--foreground", "--force"])
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--key-file={}", key.display()))
            .arg(format!("--pid-file={}", dir.join("munged.pid").display()))
            .arg(format!("--log-file={}", dir.join("munged.log").display()))
            .arg(format!("--seed-file={}", dir.join("munged.seed").display())),
    )?;
    wait_for(Duration::from_secs(10), "munged's socket", || Ok(socket.exists()))?;

    // `slurmd -C` prints this node's line for slurm.conf: name, CPUs,
    // sockets, cores, threads and memory as Slurm sees them.
    let node = output(Command::new(&slurmd).arg("-C"))?
        .lines()
        .next()
        .filter(|l| l.starts_with("NodeName="))
        .map(str::to_owned)
        .ok_or("slurmd -C printed no NodeName line")?;
    let host = node
        .split_whitespace()
        .next()
        .and_then(|f| f.strip_prefix("NodeName="))
        .unwrap_or_default()
        .to_owned();
    daemons.cgroup_name = Some(format!("slurm_{host}"));
    let conf = SLURM_CONF
        .replace("@HOST@", &host)
        .replace("@CTLD_PORT@", &free_port()?.to_string())
        .replace("@SLURMD_PORT@", &free_port()?.to_string())
        .replace("@DIR@", &dir.to_string_lossy())
        .replace("@MAX_ARRAY@", &(jobs + 1).to_string())
        .replace("@NODE@", &node)
        .replace("@PARTITION@", if tuned { "OverSubscribe=FORCE:8" } else { "" })
        .replace("@TUNING@", if tuned { TUNING } else { "" });
    let conf_path = dir.join("slurm.conf");
    fs::write(&conf_path, conf).map_err(|e| format!("{}: {e}", conf_path.display()))?;
    fs::write(dir.join("cgroup.conf"), CGROUP_CONF).map_err(|e| e.to_string())?;

    daemons.start(
        "slurmctld",
        Command::new(&slurmctld)
            .args(["-D", "-i", "-f"])
            .arg(&conf_path)
            .env("SLURM_CONF", &conf_path),
    )?;
    daemons.start(
        "slurmd",
        Command::new(&slurmd).args(["-D", "-f"]).arg(&conf_path).env("SLURM_CONF", &conf_path),
    )?;
    wait_for(Duration::from_secs(60), "the node to be idle in sinfo", || {
        daemons.check_alive()?;
        let state = Command::new(&sinfo)
            .args(["-h", "-o", "%T"])
            .env("SLURM_CONF", &conf_path)
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        Ok(state == "idle")
    })?;

    let jobcomp = dir.join("jobcomp.txt");
    let start = Instant::now();
    output(
        Command::new(&sbatch)
            .arg(format!("--array=1-{jobs}"))
            .args(["--output=/dev/null", "--wrap", "/bin/true"])
            .current_dir(&dir)
            .env("SLURM_CONF", &conf_path),
    )?;
    // Seconds per job as shipped, with room to spare; a stuck run fails
    // rather than hangs.
    let limit = Duration::from_secs(60 + 3 * jobs as u64);
    let mut ended = 0;
    wait_for(limit, &format!("{jobs} ended jobs in {}", jobcomp.display()), || {
        daemons.check_alive()?;
        ended = fs::read_to_string(&jobcomp).map_or(0, |t| t.lines().count());
        Ok(ended >= jobs)
    })?;
    let elapsed = start.elapsed();
    let log = fs::read_to_string(&jobcomp).map_err(|e| e.to_string())?;
    // The scratch directory goes with the daemons: the error carries the
    // first failed job's line.
    let mut failed = log.lines().filter(|l| !l.contains("JobState=COMPLETED"));
    if let Some(first) = failed.next() {
        let count = 1 + failed.count();
        return Err(format!("{count} of {ended} Slurm jobs did not complete, first: {first}"));
    }
    daemons.stop()?;
    Ok(Throughput { jobs, elapsed })
}

/// Polls `done` every 20 ms until it says yes, fails, or `limit` passes.
fn wait_for(
    limit: Duration,
    what: &str,
    mut done: impl FnMut() -> Result<bool, String>,
) -> Result<(), String> {
    let start = Instant::now();
    while !done()? {
        if start.elapsed() > limit {
            return Err(format!("no {what} after {} s", limit.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The bench's Slurm daemons: stopped in reverse order of start, Slurm's
/// cgroups and the scratch state removed, on success and on failure alike.
struct Daemons {
    children: Vec<(&'static str, Child)>,
    /// `slurm_<host>`, the directory Slurm makes in each v1 controller.
    cgroup_name: Option<String>,
    dir: PathBuf,
}

impl Daemons {
    fn start(&mut self, name: &'static str, cmd: &mut Command) -> Result<(), String> {
        let log =
            fs::File::create(self.dir.join(format!("{name}.out"))).map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{name}: {e}"))?;
        self.children.push((name, child));
        Ok(())
    }

    /// A daemon that exited on its own failed to start: say which, with the
    /// end of what it printed.
    fn check_alive(&mut self) -> Result<(), String> {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let out =
                    fs::read_to_string(self.dir.join(format!("{name}.out"))).unwrap_or_default();
                let tail: Vec<&str> = out.lines().rev().take(3).collect();
                return Err(format!("{name} exited ({status}): {}", tail.join(" / ")));
            }
        }
        Ok(())
    }

    /// SIGTERM to each daemon, newest first, SIGKILL if it is still there
    /// after 10 s; then Slurm's cgroups and the state directory go.
    fn stop(&mut self) -> Result<(), String> {
        let mut problems = Vec::new();
        while let Some((name, mut child)) = self.children.pop() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let start = Instant::now();
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if start.elapsed() < Duration::from_secs(10) => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        problems.push(format!("{name} ignored SIGTERM for 10 s"));
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        if let Some(name) = self.cgroup_name.take() {
            for controller in fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
                let root = controller.path().join(&name);
                if root.is_dir() {
                    if let Err(e) = remove_cgroup_tree(&root) {
                        problems.push(e);
                    }
                }
            }
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            problems.push(format!("{}: {e}", self.dir.display()));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        if self.children.is_empty() && self.cgroup_name.is_none() {
            return;
        }
        if let Err(e) = self.stop() {
            eprintln!("slurm cleanup: {e}");
        }
    }
}

/// Removes a cgroup directory and the ones under it, deepest first (a v1
/// cgroup goes with rmdir once it has no children and no tasks).
fn remove_cgroup_tree(dir: &Path) -> Result<(), String> {
    for entry in fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&entry.path())?;
        }
    }
    fs::remove_dir(dir).map_err(|e| format!("rmdir {}: {e}", dir.display()))
}
