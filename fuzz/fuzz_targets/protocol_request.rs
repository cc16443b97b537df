//! The control protocol's request parser: `protocol::parse_request` on any
//! bytes (a line as read from the control socket).
//!
//! Checked: no panic; a request that parses, written back with
//! `serde_json`, parses again to the same request; a refusal is a
//! `bad_request` response that serializes.
//!
//! The round trip is exact: the workspace turns on serde_json's
//! `float_roundtrip`, so a float `id` (an integer too large for `u64`/`i64`,
//! or one with a fraction or exponent) reads back to the very same `f64`
//! (README.md, "Findings", 2).

#![no_main]

use libfuzzer_sys::fuzz_target;
use supervisor_core::protocol::{parse_request, ErrorCode};

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ok(request) => {
            let line = serde_json::to_vec(&request).expect("a request serializes");
            let again = match parse_request(&line) {
                Ok(r) => r,
                Err(e) => panic!(
                    "a parsed request, written back, does not parse: {:?}\nwritten: {}",
                    e.error,
                    String::from_utf8_lossy(&line)
                ),
            };
            assert!(
                again == request,
                "round trip changed the request:\n  read:    {request:?}\n  written: {}\n  read again: {again:?}",
                String::from_utf8_lossy(&line)
            );
        }
        Err(response) => {
            assert!(!response.ok);
            let error = response.error.as_ref().expect("a refusal has an error");
            assert_eq!(error.code, ErrorCode::BadRequest);
            serde_json::to_vec(&*response).expect("a response serializes");
        }
    }
});
