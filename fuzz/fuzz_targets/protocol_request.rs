//! The control protocol's request parser: `protocol::parse_request` on any
//! bytes (a line as read from the control socket).
//!
//! Checked: no panic; a request that parses, written back with
//! `serde_json`, parses again to the same request; a refusal is a
//! `bad_request` response that serializes.
//!
//! A float in `id` may come back one or two bits off (serde_json reads
//! floats without exact rounding, README.md, "Findings"): tolerated, unless
//! `SUPERVISOR_FUZZ_KNOWN=reproduce`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use supervisor_core::protocol::{parse_request, ErrorCode, Request, Value};

#[path = "known.rs"]
mod known;

/// Equal, except that floating-point numbers may differ in their last two
/// bits: serde_json, without its `float_roundtrip` feature, does not read
/// back every float it writes to the same value (README.md, "Findings").
fn same_but_floats(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (Some(x), Some(y)) = (x.as_f64(), y.as_f64()) else { return false };
            x == y || (x.signum() == y.signum() && x.to_bits().abs_diff(y.to_bits()) <= 2)
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_but_floats(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_but_floats(v, w)))
        }
        _ => a == b,
    }
}

fn same(a: &Request, b: &Request) -> bool {
    if known::reproduce() {
        return a == b;
    }
    a.command == b.command && same_but_floats(&a.id, &b.id)
}

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
                same(&again, &request),
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
