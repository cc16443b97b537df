//! The simplevisor (`Config::General`) reader: `simplevisor::to_toml` on
//! any UTF-8 text, then `Config::parse` of the TOML it wrote.
//!
//! The file is taken to be in an empty directory (made once per process),
//! so relative `<<include>>`s find nothing and fail. Inputs with an
//! include whose target has a `/` or `\` are skipped: an absolute include
//! reads this machine's files (`<<include /dev/zero>>` never ends, see
//! README.md), which is not what this target is about (unless
//! `SUPERVISOR_FUZZ_KNOWN=reproduce`). Inputs that the
//! known exponential expansions would blow up are skipped too (more than
//! 4 `{` or 16 `,` in an include, more than 16 `$`; README.md,
//! "Findings").
//!
//! Checked: no panic; the TOML written is TOML (`Config::parse` may refuse
//! what it says, never with a TOML syntax error); a configuration that
//! loads holds only services the engine accepts; error reports print.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use supervisor_cli::config::{simplevisor, Config};

#[path = "common.rs"]
mod common;
#[path = "known.rs"]
mod known;

/// `<<include X>>` lines whose target could leave the empty directory.
fn includes_elsewhere(text: &str) -> bool {
    include_lines(text).any(|target| target.contains(['/', '\\']))
}

/// What follows `<<include` on each line that has one.
fn include_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split(['\n', '\r']).filter_map(|line| line.to_ascii_lowercase().find("<<include").map(|i| &line[i..]))
}

/// Inputs that the known exponential expansions (README.md, "Findings")
/// would make run for minutes or take gigabytes: `{a,b}` alternatives in
/// includes (2^n names), `$var` values expanded into each other.
fn may_explode(text: &str) -> bool {
    include_lines(text).any(|t| t.matches('{').count() > 4 || t.matches(',').count() > 16)
        || text.matches('$').count() > known::MAX_DOLLARS
}

fn config_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("supervisor-fuzz-simplevisor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("an empty directory");
        dir.join("simplevisor.conf")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if !known::reproduce() && (includes_elsewhere(text) || may_explode(text)) {
        return;
    }
    let path = config_path();
    let toml = match simplevisor::to_toml(path, text) {
        Ok(toml) => toml,
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an Err without errors");
            let _ = errors.to_string();
            return;
        }
    };
    match Config::parse(path, &toml) {
        Ok(config) => common::check_config(&config),
        Err(errors) => {
            for e in &errors.0 {
                assert!(!e.message.starts_with("invalid TOML"), "the converter wrote bad TOML: {e}\n{toml}");
            }
            common::check_errors(&errors, path, &toml);
        }
    }
});
