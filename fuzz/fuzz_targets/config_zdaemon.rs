//! The zdaemon (`ZConfig`) reader: `zdaemon::load` and `zdaemon::to_toml`
//! (what `supervisor convert` writes) on any UTF-8 text.
//!
//! Checked: no panic; both agree on whether the file is good; the TOML
//! that `to_toml` writes loads as TOML to the same services, groups and
//! supervisor settings that `load` gives; loaded configurations hold only
//! services the engine accepts; error reports have sound positions (in
//! the zdaemon file) and print. Every input is read, `%define`s that
//! expand into each other included: the reader refuses a value that
//! expands to more than 64 KiB (README.md, "Findings", 3).

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use supervisor_cli::config::{zdaemon, Config};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("/fuzz/zdaemon.conf");
    let loaded = zdaemon::load(path, text);
    let converted = zdaemon::to_toml(path, text);
    match (&loaded, &converted) {
        (Ok(config), Ok(toml)) => {
            common::check_config(config);
            let again = match Config::parse(path, toml) {
                Ok(c) => c,
                Err(e) => panic!("to_toml wrote TOML that does not load: {e}\n{toml}"),
            };
            assert_eq!(again.services, config.services, "convert changed the services:\n{toml}");
            assert_eq!(again.groups, config.groups, "convert changed the groups:\n{toml}");
            assert_eq!(again.name, config.name);
            assert_eq!(again.runtime_dir, config.runtime_dir);
            assert_eq!(again.socket, config.socket);
            assert_eq!(again.daemon, config.daemon);
            assert_eq!(again.event_log, config.event_log);
            assert_eq!(again.extras, config.extras);
        }
        (Err(a), Err(b)) => {
            common::check_errors(a, path, text);
            common::check_errors(b, path, text);
        }
        (Ok(_), Err(e)) => panic!("load accepts what to_toml refuses: {e}"),
        (Err(e), Ok(_)) => panic!("to_toml accepts what load refuses: {e}"),
    }
});
