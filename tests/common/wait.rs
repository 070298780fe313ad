//! How every test waits: a condition polled until it holds, or the test
//! failed after a timeout that names what it waited for. Tests assert an
//! absence only after a later event they waited for this way, never after a
//! fixed sleep: on a loaded machine a sleep proves nothing.

#![allow(dead_code)] // each test binary uses a different subset

use std::time::{Duration, Instant};

/// How often a condition is checked.
const POLL: Duration = Duration::from_millis(10);

/// `n` seconds, scaled up on a busy machine by `CORRAL_TEST_SLOWNESS`.
pub fn secs(n: u64) -> Duration {
    let factor =
        std::env::var("CORRAL_TEST_SLOWNESS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    Duration::from_secs(n * factor)
}

/// Polls `done` until it holds; after `timeout`, fails the test naming `what`.
pub fn wait_until(what: &str, timeout: Duration, done: impl FnMut() -> bool) {
    wait_until_or(what, timeout, done, String::new);
}

/// [`wait_until`], with `context()` (an agent's log, say) added to the
/// failure message: it is read only when the wait has failed.
pub fn wait_until_or(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
    context: impl FnOnce() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}{}", context());
        }
        std::thread::sleep(POLL);
    }
}
