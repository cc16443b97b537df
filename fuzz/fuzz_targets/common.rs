//! Checks shared by the configuration targets (included with `#[path]`).

#![allow(dead_code)]

use std::collections::HashSet;
use std::path::Path;

use supervisor_cli::config::{Config, ConfigErrors};

/// What holds for every configuration that loads: each service passes the
/// engine's own rules (`Service::validate`, which `Engine::add_service`
/// applies), the names are unique, and every group member is a service.
pub fn check_config(config: &Config) {
    let mut names = HashSet::new();
    for svc in &config.services {
        if let Err(e) = svc.validate() {
            panic!("a loaded configuration holds a service the engine refuses: {e}");
        }
        assert!(names.insert(svc.name.as_str()), "service {:?} appears twice", svc.name);
    }
    for g in &config.groups {
        for m in &g.services {
            assert!(names.contains(m.as_str()), "group {:?} names {:?}, which is not a service", g.name, m);
        }
    }
}

/// What holds for every error report: at least one error, each naming
/// `path`, with a line within `text` (the file reported on) and a
/// column of at least 1; and it prints.
pub fn check_errors(errors: &ConfigErrors, path: &Path, text: &str) {
    assert!(!errors.0.is_empty(), "an Err without errors");
    let lines = text.split('\n').count();
    for e in &errors.0 {
        if e.path == path {
            if let Some(line) = e.line {
                assert!(line >= 1 && line <= lines, "error at line {line} of a {lines}-line file: {e}");
            }
        }
        if let Some(column) = e.column {
            assert!(column >= 1, "error at column 0: {e}");
        }
    }
    let _ = errors.to_string();
}
