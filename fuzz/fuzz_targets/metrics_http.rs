//! The metrics endpoint's request reader: `front/metrics/http.rs`'s
//! `parse` on any bytes (what a client sent so far), and the response it
//! leads to.
//!
//! Checked: no panic; the reader never waits for more once it holds more
//! than `MAX_HEAD` bytes (a client cannot make the supervisor keep an
//! endless head); once a prefix of the input is answered, the whole input
//! is answered too (more bytes never take an answer back); a response is
//! one HTTP/1.1 status line, headers that end with an empty line, a
//! `Content-Length` that is the length of the body sent (or no body, for
//! `HEAD`), and `Connection: close`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use supervisor_core::fuzzing::{metrics_request, METRICS_MAX_HEAD};

const BODY: &str = "supervisor_events_total 1\n";

fn check_response(input: &[u8], r: &[u8]) {
    let text = String::from_utf8_lossy(r);
    assert!(text.starts_with("HTTP/1.1 "), "{input:?} -> {text:?}");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no end of head in {text:?}"));
    assert!(head.lines().any(|l| l == "Connection: close"), "{text:?}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {text:?}"));
    assert!(body.is_empty() || body.len() == length, "Content-Length {length} for a body of {}", body.len());
}

fuzz_target!(|data: &[u8]| {
    let whole = metrics_request(data, BODY);
    if whole.is_none() {
        assert!(data.len() <= METRICS_MAX_HEAD, "waits for more after {} bytes", data.len());
    }
    if let Some(r) = &whole {
        check_response(data, r);
    }
    for cut in [data.len() / 4, data.len() / 2, data.len() * 3 / 4] {
        if metrics_request(&data[..cut], BODY).is_some() {
            assert!(whole.is_some(), "answered after {cut} bytes, not after all {}", data.len());
        }
    }
});
