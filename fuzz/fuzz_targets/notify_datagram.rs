//! The sd_notify datagram parser: `os::notify::parse` on any bytes (the
//! payload of one datagram that a service sent to the notify socket).
//!
//! Checked: no panic; a status has at most `MAX_STATUS_CHARS` characters
//! and no control character; a `MAINPID` is more than 0; each message,
//! written back as its assignment (`Display`, `KEY=VALUE`), parses to itself
//! alone; all of them, written back one per line, parse to the same list;
//! there are no more messages than lines; an input with a NUL byte gives
//! none (systemd ignores such a datagram whole).
//!
//! The socket never hands `parse` more than 4096 bytes (`MAX_PAYLOAD`: a
//! larger datagram is dropped), so `-max_len=4096` covers all it meets.

#![no_main]

use libfuzzer_sys::fuzz_target;
use supervisor_core::fuzzing::{notify_parse, NotifyMessage, MAX_STATUS_CHARS};

fuzz_target!(|data: &[u8]| {
    let messages = notify_parse(data);
    if data.contains(&0) {
        assert!(messages.is_empty(), "a payload with a NUL gave {messages:?}");
    }
    let lines = data.iter().filter(|b| **b == b'\n').count() + 1;
    assert!(messages.len() <= lines, "{} messages from {lines} lines", messages.len());
    for m in &messages {
        match m {
            NotifyMessage::Status(s) => {
                assert!(s.chars().count() <= MAX_STATUS_CHARS, "a status of {} characters", s.chars().count());
                assert!(!s.chars().any(char::is_control), "a control character in {s:?}");
            }
            NotifyMessage::MainPid(pid) => assert!(*pid > 0, "MAINPID {pid}"),
            _ => {}
        }
        let line = m.to_string();
        let again = notify_parse(line.as_bytes());
        assert!(again == [m.clone()], "{m:?}, written as {line:?}, parses to {again:?}");
    }
    let written = messages.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    let again = notify_parse(written.as_bytes());
    assert!(again == messages, "{messages:?}, written as {written:?}, parses to {again:?}");
});
