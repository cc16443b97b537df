//! The TOML configuration loader: `Config::parse` on any UTF-8 text.
//!
//! Checked: no panic; a configuration that loads holds only services the
//! engine accepts, with unique names and groups of real services; an
//! error report has errors with sound positions, and prints.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use supervisor_cli::config::Config;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("/fuzz/supervisor.toml");
    match Config::parse(path, text) {
        Ok(config) => common::check_config(&config),
        Err(errors) => common::check_errors(&errors, path, text),
    }
});
