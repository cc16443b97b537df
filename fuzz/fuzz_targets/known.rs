//! The switch for the known problems (README.md, "Findings"): by default
//! each target steps around them, so that a run goes on past them; with
//! `SUPERVISOR_FUZZ_KNOWN=reproduce` it does not, and the inputs in
//! `regressions/` fail again (included with `#[path]`).

#![allow(dead_code)]

use std::sync::OnceLock;

/// Whether the known problems are to be reproduced rather than avoided.
pub fn reproduce() -> bool {
    static REPRODUCE: OnceLock<bool> = OnceLock::new();
    *REPRODUCE.get_or_init(|| std::env::var("SUPERVISOR_FUZZ_KNOWN").is_ok_and(|v| v == "reproduce"))
}

/// At most this many `$` where a value may be expanded into another one:
/// `%define`s (zdaemon) or any value (simplevisor) grow exponentially with
/// chained references ("billion laughs"); with 16 the largest value is
/// 324 times the input.
pub const MAX_DOLLARS: usize = 16;
