//! The HTTP endpoint of a real agent under a flood of idle connections from
//! this (unprivileged-looking) client: the agent's descriptors stay near
//! `http.max_connections`, idle connections are closed by the agent,
//! `/healthz` answers again within the header timeout, and the control
//! socket answers throughout; out of descriptors, the accept loop backs off.
//! Loopback only; every loop is bounded.

mod agent_harness;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::time::{Duration, Instant};

use agent_harness::{secs, TestAgent};

/// Descriptors the process holds now.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// Resident memory of the process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `GET /healthz` on a fresh connection: the status, or `None` when the
/// connection was refused, reset or not answered within a second.
fn healthz(addr: SocketAddr) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: corral\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    raw.split(' ').nth(1)?.parse().ok()
}

/// Polls `/healthz` until it answers 200; returns how long that took.
fn healthz_answers_within(addr: SocketAddr, within: Duration) -> Duration {
    let started = Instant::now();
    while healthz(addr) != Some(200) {
        assert!(started.elapsed() < within, "/healthz did not answer within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// The value of one counter sample in the agent's scrape.
fn counter(agent: &TestAgent, series: &str) -> u64 {
    let (status, _, text) = agent.http_get("/metrics", None);
    assert_eq!(status, 200);
    let line = text
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"));
    line[series.len()..].trim().parse().unwrap()
}

/// The most connections of a flood that took `took` to open that the agent
/// can have accepted: `cap` at once, and a slot frees only when a held
/// connection reaches its header timeout.
fn most_accepted(cap: usize, took: Duration, header_timeout: Duration) -> usize {
    cap * (took.as_millis() / header_timeout.as_millis() + 2) as usize
}

/// Opens `n` connections that send nothing, or (every other one) half a
/// request line.
fn flood(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
            if i % 2 == 1 {
                // The agent may have closed it already (past the cap).
                let _ = stream.write_all(b"GET /hea");
            }
            stream
        })
        .collect()
}

/// Waits until the agent has closed every one of `streams` (EOF or a
/// reset), each within `within` of the call.
fn all_closed_by_the_agent(streams: &mut [TcpStream], within: Duration) {
    let deadline = Instant::now() + within;
    for (i, stream) in streams.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        stream.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 256];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                // The 503 of a refused connection, then EOF.
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("connection {i} still open after {within:?}: {e}"),
            }
        }
    }
}

/// Descriptors the agent may hold beyond its idle count and its HTTP
/// connections: a file the store or a scrape opens for a moment.
const SLACK: usize = 4;

/// The agent waits for its endpoint, then returns its idle descriptor count.
fn serving(agent: &TestAgent) -> usize {
    healthz_answers_within(agent.listen, secs(20));
    let socket = agent.state.join("corral.sock");
    agent.wait_for("the control socket", secs(20), || socket.exists());
    open_fds(agent.pid())
}

#[test]
fn an_idle_flood_past_the_cap_is_closed_by_the_agent_and_healthz_answers_again() {
    const CAP: usize = 64;
    const FLOOD: usize = 500;
    let mut agent =
        TestAgent::new(&format!("http: {{max_connections: {CAP}, header_timeout: 200ms}}\n"));
    agent.start();
    let idle_fds = serving(&agent);

    let started = Instant::now();
    let mut streams = flood(agent.listen, FLOOD);
    // Before any has timed out (opening 500 takes some milliseconds), the
    // agent holds at most the cap and one being turned away.
    let during = open_fds(agent.pid());
    let opened_in = started.elapsed();
    assert!(
        during <= idle_fds + CAP + 1 + SLACK,
        "{during} descriptors, {idle_fds} idle, flood {FLOOD}"
    );

    all_closed_by_the_agent(&mut streams, secs(3));
    let answered = healthz_answers_within(agent.listen, secs(2));
    eprintln!(
        "{FLOOD} connections opened in {opened_in:?}; agent descriptors idle {idle_fds}, \
         during {during}; all closed by the agent after {:?}; /healthz answered {answered:?} later",
        started.elapsed() - answered
    );
    // Every connection of the flood was either refused at the cap or
    // accepted and closed at its header deadline, never left open.
    let refused =
        counter(&agent, "corral_http_connections_refused_total{reason=\"max_connections\"}");
    let timed_out = counter(&agent, "corral_http_connections_timed_out_total{phase=\"header\"}");
    assert_eq!(refused + timed_out, FLOOD as u64, "refused {refused}, timed out {timed_out}");
    let accepted = most_accepted(CAP, opened_in, Duration::from_millis(200));
    assert!(refused >= (FLOOD - accepted) as u64, "refused {refused}");
    assert!(timed_out >= CAP as u64, "timed out {timed_out}");
    drop(streams);
    agent.wait_for("the agent's descriptors back to idle", secs(5), || {
        open_fds(agent.pid()) <= idle_fds + 2
    });
    assert!(agent.stop().success());
}

/// Raises this process's soft descriptor limit to its hard one; returns it.
fn raise_own_nofile() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    limit.rlim_cur
}

#[test]
fn ten_thousand_idle_connections_leave_the_agent_bounded_and_its_control_socket_prompt() {
    const WANTED: usize = 10_000;
    // Room for the flood, the test's own descriptors and the harness's.
    let limit = raise_own_nofile() as usize;
    let flood_size = WANTED.min(limit.saturating_sub(200));
    assert!(
        flood_size >= 2_000,
        "this process may open only {limit} descriptors; raise the hard limit (ulimit -Hn) \
         to run the 10,000-connection flood"
    );
    if flood_size < WANTED {
        eprintln!("note: the flood is {flood_size} connections, as this process's limit allows");
    }
    let mut agent = TestAgent::new("http: {header_timeout: 2s}\n");
    agent.start();
    let idle_fds = serving(&agent);
    let idle_rss = rss_kib(agent.pid());
    let cap = 128; // the default max_connections

    let started = Instant::now();
    let mut streams = flood(agent.listen, flood_size);
    let opened_in = started.elapsed();
    let during_fds = open_fds(agent.pid());
    let during_rss = rss_kib(agent.pid());
    assert!(during_fds <= idle_fds + cap + 1 + SLACK, "{during_fds} descriptors, {idle_fds} idle");

    // The control socket is not behind the HTTP port's cap, and the agent
    // has descriptors to spare for it.
    let asked = Instant::now();
    let ps = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["ps", "--config"])
        .arg(&agent.config)
        .output()
        .unwrap();
    let ps_took = asked.elapsed();
    assert!(ps.status.success(), "{}", String::from_utf8_lossy(&ps.stderr));
    assert!(ps_took < secs(3), "corral ps took {ps_took:?} during the flood");

    // The held connections are closed at their 2 s header deadline, and
    // the endpoint serves again.
    let answered = healthz_answers_within(agent.listen, secs(5));
    all_closed_by_the_agent(&mut streams, secs(5));
    let after_rss = rss_kib(agent.pid());
    eprintln!(
        "{flood_size} connections opened in {opened_in:?}; agent descriptors idle {idle_fds}, \
         during {during_fds}; RSS idle {idle_rss} KiB, during {during_rss} KiB, after \
         {after_rss} KiB; corral ps {ps_took:?}; /healthz 200 after {answered:?}"
    );
    let refused =
        counter(&agent, "corral_http_connections_refused_total{reason=\"max_connections\"}");
    let accepted = most_accepted(cap, opened_in, secs(2));
    assert!(refused >= flood_size.saturating_sub(accepted) as u64, "refused {refused}");
    // The agent's memory did not grow with the flood: a cap of 128 idle
    // connections costs little (unbounded, 10,000 took some 200 MB).
    assert!(during_rss < idle_rss + 32 * 1024, "RSS {idle_rss} KiB → {during_rss} KiB");
    drop(streams);
    assert!(agent.stop().success());
}

#[test]
fn a_max_connections_beyond_the_descriptor_share_is_refused_at_start() {
    let agent = TestAgent::new("http: {max_connections: 300}\n");
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["agent", "--config"])
        .arg(&agent.config)
        .stdin(std::process::Stdio::null())
        .pre_exec_nofile(1024)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "http.max_connections is 300, but the open file limit of 1024 leaves room for 239 \
             HTTP connections"
        ),
        "{stderr}"
    );
    // Within the share, the same limit starts.
    let mut fits = TestAgent::new("http: {max_connections: 239}\n");
    fits.start_with(|command| {
        command.pre_exec_nofile(1024);
    });
    serving(&fits);
    assert!(fits.stop().success());
}

/// Starts a command with a soft and hard `RLIMIT_NOFILE` of `limit`.
trait NofileExt {
    fn pre_exec_nofile(&mut self, limit: u64) -> &mut Self;
}

impl NofileExt for Command {
    fn pre_exec_nofile(&mut self, limit: u64) -> &mut Self {
        let limit = libc::rlimit { rlim_cur: limit, rlim_max: limit };
        let hook = move || {
            // SAFETY: setrlimit is async-signal-safe, as code between fork
            // and exec must be, and reads only the closure's own copy.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        };
        // SAFETY: see the hook.
        unsafe { self.pre_exec(hook) }
    }
}

/// CPU time (user + system) the process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn out_of_descriptors_the_accept_loop_backs_off_and_recovers() {
    const LIMIT: u64 = 100;
    let mut agent = TestAgent::new("http: {max_connections: 8, header_timeout: 300ms}\n");
    agent.start_with(|command| {
        command.pre_exec_nofile(LIMIT);
    });
    serving(&agent);
    // Root's connections to the control socket are not capped: enough of
    // them use up the agent's descriptors, as runs could.
    let socket = agent.state.join("corral.sock");
    let hogs: Vec<_> =
        (0..LIMIT).map(|_| std::os::unix::net::UnixStream::connect(&socket).unwrap()).collect();
    agent.wait_for("the agent out of descriptors", secs(10), || {
        open_fds(agent.pid()) as u64 >= LIMIT
    });
    // Connections the agent cannot accept wait in the kernel's queue.
    let waiting: Vec<_> =
        (0..20).map(|_| TcpStream::connect_timeout(&agent.listen, secs(5)).unwrap()).collect();
    let before = cpu_ticks(agent.pid());
    std::thread::sleep(secs(2));
    let used = cpu_ticks(agent.pid()) - before;
    // A loop retrying accept at once would burn a whole CPU: 200 ticks.
    assert!(used < 40, "the agent used {used} ticks in 2 s while out of descriptors");
    let log = agent.log_text();
    assert!(log.contains("HTTP endpoint: cannot accept connections"), "{log}");

    drop(hogs);
    drop(waiting);
    healthz_answers_within(agent.listen, secs(5));
    let failed = counter(&agent, "corral_http_connections_refused_total{reason=\"accept_error\"}");
    // 50 ms doubling to 1 s: 4 or 5 tries in 2 s, not thousands.
    assert!((1..=10).contains(&failed), "{failed} failed accepts counted");
    assert!(agent.stop().success());
}
