//! What commands print on standard output, and how much: `-q` keeps only
//! errors (and the data a command was asked for, such as `--json`), `-v`
//! adds detail on standard error. A reader that goes away (`supervisor
//! status | head -1`) is not a failure: output stops, and the command
//! ends with the code it would have had.

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// 0: `-q`; 1: normal; 2: `-v`.
static LEVEL: AtomicU8 = AtomicU8::new(1);
/// `--json`.
static JSON: AtomicBool = AtomicBool::new(false);
/// Standard output's reader went away.
static GONE: AtomicBool = AtomicBool::new(false);

/// Sets the level from `-q` and `-v`, and `--json`.
pub fn set_level(quiet: bool, verbose: bool, json: bool) {
    let level = match (quiet, verbose) {
        (true, _) => 0,
        (false, false) => 1,
        (false, true) => 2,
    };
    LEVEL.store(level, Ordering::Relaxed);
    JSON.store(json, Ordering::Relaxed);
}

/// Whether `--json` was given: the command prints one JSON document on
/// standard output (and its human text nowhere).
#[must_use]
pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Prints `doc` as the command's JSON document.
pub fn document(doc: &impl serde::Serialize) {
    match serde_json::to_string_pretty(doc) {
        Ok(text) => data(&format!("{text}\n")),
        Err(e) => eprintln!("supervisor: cannot write JSON: {e}"),
    }
}

/// Whether `-q` was given.
#[must_use]
pub fn quiet() -> bool {
    LEVEL.load(Ordering::Relaxed) == 0
}

/// Whether `-v` was given.
#[must_use]
pub fn verbose() -> bool {
    LEVEL.load(Ordering::Relaxed) == 2
}

/// Whether standard output's reader went away.
#[must_use]
pub fn stdout_gone() -> bool {
    GONE.load(Ordering::Relaxed)
}

/// Writes `text` on standard output; a broken pipe ends output quietly.
pub fn data(text: &str) {
    if stdout_gone() {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == ErrorKind::BrokenPipe {
            GONE.store(true, Ordering::Relaxed);
        }
    }
}

/// Writes `text` on standard output unless `-q` or `--json` was given.
pub fn say(text: &str) {
    if !quiet() && !json() {
        data(text);
    }
}

/// A warning on standard error, unless `-q` was given.
pub fn warn(message: &str) {
    if !quiet() {
        eprintln!("supervisor: warning: {message}");
    }
}

/// Detail on standard error, with `-v` only.
pub fn detail(message: &str) {
    if verbose() {
        eprintln!("supervisor: {message}");
    }
}

/// `println!` for what a command reports (silenced by `-q`).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::out::say(&format!("{}\n", format_args!($($arg)*))) };
}

/// `println!` for what a command was asked for (`--json`, `convert`,
/// `logtail`): printed also with `-q`.
#[macro_export]
macro_rules! data {
    ($($arg:tt)*) => { $crate::out::data(&format!("{}\n", format_args!($($arg)*))) };
}
