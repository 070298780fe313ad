//! The control socket's request decoder, on any line a client can send.
//!
//! Invariants: no panic; a request that decodes encodes to one line (the protocol is
//! one JSON value per line) that decodes to the same request. The client's decoder
//! of the agent's answers gets the same line, and must not panic either.

#![no_main]

use corral::api::protocol::Response;
use corral::api::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    // The socket reads lines of UTF-8; anything else ends the connection unread.
    let Ok(line) = std::str::from_utf8(bytes) else { return };
    if let Ok(request) = Request::decode(line) {
        let encoded = serde_json::to_string(&request).expect("requests serialize");
        assert!(!encoded.contains('\n'), "{encoded:?} is more than one line");
        assert_eq!(Request::decode(&encoded).expect("re-decodes"), request, "{encoded}");
    }
    let _ = serde_json::from_str::<Response>(line);
});
