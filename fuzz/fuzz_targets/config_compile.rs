//! The agent's configuration file: any bytes through the checks `config::load` makes
//! (size aside) and the compiler.
//!
//! Beyond not panicking: a refused file has at least one diagnostic naming it; an
//! accepted one holds only values the agent can use as they are: absolute paths under the
//! file's directory when relative, a socket path `sun_path` can hold, a cgroup parent
//! the cgroup layer accepts as a path, limits within their documented ranges.

#![no_main]

use std::path::Path;
use std::time::Duration;

use corral::cgroup::CgroupPath;
use corral::config::{compile_str, MAX_SOCKET_PATH};
use corral::spec::source::decode;
use corral::vocab::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let file = Path::new("/etc/corral/agent.yaml");
    let base = Path::new("/etc/corral");
    // `config::load` refuses NUL bytes and non-UTF-8 the same way before compiling.
    let Ok(text) = decode(bytes) else { return };
    let compiled = compile_str(file, text, base);
    match &compiled {
        Ok(config) => {
            for (what, path) in [
                ("jobs_dir", &config.jobs_dir),
                ("state_dir", &config.state_dir),
                ("socket", &config.socket),
            ] {
                assert!(path.is_absolute(), "{what} {path:?} is not absolute");
            }
            assert!(config.socket.as_os_str().len() <= MAX_SOCKET_PATH);
            let parent = config.cgroup_parent.as_str();
            if let Err(e) = CgroupPath::new(parent) {
                panic!("cgroup_parent {parent:?} compiled, but the cgroup layer refuses it: {e}");
            }
            assert!((1..=1000).contains(&config.catch_up_limit));
            assert!(config.log_max_bytes >= Bytes::KIB);
            assert!(config.finished_run_retention <= Duration::from_secs(24 * 60 * 60));
            assert_ne!(config.listen.port(), 0);
        }
        Err(diagnostics) => {
            assert!(!diagnostics.0.is_empty(), "refused without a reason");
            for d in &diagnostics.0 {
                assert_eq!(d.file, file);
                assert!(d.to_string().starts_with("/etc/corral/agent.yaml"));
            }
        }
    }
    assert_eq!(compile_str(file, text, base), compiled, "compiling twice differs");
});
