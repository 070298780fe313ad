//! The agent tells a service manager (`$NOTIFY_SOCKET`, systemd's
//! `Type=notify`) that it is ready only once its control socket and HTTP
//! endpoint answer, and that it is stopping when it is told to stop.

mod agent_harness;

use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::Duration;

use agent_harness::TestAgent;

/// The next datagram, waiting at most 30 s.
fn next_message(socket: &UnixDatagram) -> String {
    socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 4096];
    let len = socket.recv(&mut buf).expect("a message from the agent within 30 s");
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

#[test]
fn ready_is_sent_once_the_agent_answers_and_stopping_when_it_stops() {
    let mut agent = TestAgent::new("");
    let notify = agent.root.path().join("notify.sock");
    let manager = UnixDatagram::bind(&notify).unwrap();
    agent.start_with(|command| {
        command.env("NOTIFY_SOCKET", &notify);
    });

    let ready = next_message(&manager);
    assert!(ready.starts_with("READY=1\nSTATUS=running"), "{ready:?}\n{}", agent.log_text());
    // Ready means answering: no waiting for the socket or the port here.
    let control = agent.state.join("corral.sock");
    UnixStream::connect(&control)
        .unwrap_or_else(|e| panic!("control socket {} at READY=1: {e}", control.display()));
    let (status, _, _) = agent.http_get("/metrics", None);
    assert_eq!(status, 200);
    let ps = std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["ps", "--config"])
        .arg(&agent.config)
        .output()
        .unwrap();
    assert!(ps.status.success(), "{}", String::from_utf8_lossy(&ps.stderr));

    let status = agent.stop();
    assert!(status.success(), "{status}");
    let stopping = next_message(&manager);
    assert!(stopping.starts_with("STOPPING=1\nSTATUS=stopping"), "{stopping:?}");
}

#[test]
fn an_agent_without_a_notify_socket_and_one_with_a_bad_one_run_the_same() {
    let mut agent = TestAgent::new("");
    agent.start_with(|command| {
        command.env("NOTIFY_SOCKET", "relative/name");
    });
    let control = agent.state.join("corral.sock");
    agent.wait_for("the control socket", Duration::from_secs(30), || control.exists());
    assert!(agent.is_running());
    assert!(agent.stop().success());
    assert!(agent.log_text().contains("NOTIFY_SOCKET=relative/name"), "{}", agent.log_text());
}
