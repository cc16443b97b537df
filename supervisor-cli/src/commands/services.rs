//! `start`, `stop`, `restart`, `pause`, `resume` and `signal`.

use std::time::Duration;

use supervisor_core::protocol::{Command, Response, Selection};

use super::reach::Reach;
use crate::exit::{self, CliError};
use crate::{Targets, Waiting};

/// Which change of wanted state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Up.
    Start,
    /// Down.
    Stop,
    /// Down if up, then up.
    Restart,
}

fn selection(targets: &Targets) -> Result<Selection, CliError> {
    if targets.names.is_empty() && !targets.all {
        return Err(CliError::Usage("name the services, or use --all".into()));
    }
    Ok(if targets.all { Selection::every() } else { Selection::named(targets.names.iter().cloned()) })
}

/// The default wait without `--timeout`: the slowest stop plus start in
/// the configuration, plus 10 s; 10 minutes when the file is not read
/// (a stop: the supervisor answers once the processes are gone, which
/// their `stop_timeout` and `KILL` bound) or cannot be.
fn default_timeout(config: Option<&crate::config::Config>) -> Duration {
    config.map_or(Duration::from_secs(600), |c| c.longest_change() + Duration::from_secs(10))
}

/// With `--json`, the command's document: `ok`, `exit_code`, `command`,
/// and the answer for each service (`name`, `state`, `ok`, `message`).
fn document(resp: &Response, verb: &str, code: u8) {
    if crate::out::json() {
        let services = resp.services.clone().unwrap_or_default();
        let doc =
            serde_json::json!({ "ok": code == exit::OK, "exit_code": code, "command": verb, "services": services });
        crate::out::document(&doc);
    }
}

/// Prints per-service failures and turns the response into an exit code.
fn outcome(resp: &Response, verb: &str) -> u8 {
    let mut code = exit::OK;
    for s in resp.services.iter().flatten() {
        if !s.ok {
            eprintln!("supervisor: {}: {verb} failed: {}", s.name, s.message.as_deref().unwrap_or(s.state.as_str()));
            code = exit::FAILURE;
        }
    }
    code
}

/// `start`, `stop`, `restart`.
///
/// # Errors
///
/// Usage (no names), not running (7), unknown service (2).
pub fn change(reach: &Reach, change: Change, targets: &Targets, waiting: &Waiting) -> Result<u8, CliError> {
    let began = std::time::Instant::now();
    let sel = selection(targets)?;
    let wait = !waiting.no_wait;
    let command = match change {
        Change::Start => Command::Start { sel, wait },
        Change::Stop => Command::Stop { sel, wait },
        Change::Restart => Command::Restart { sel, wait },
    };
    // Starts read the file, for its start tests; a stop does not need it.
    let config = if change == Change::Stop { None } else { reach.config() };
    let timeout = waiting.timeout.unwrap_or_else(|| default_timeout(config.as_ref()));
    let resp = reach.call(command, timeout, exit::NOT_RUNNING, exit::USAGE)?;
    let verb = match change {
        Change::Start => "start",
        Change::Stop => "stop",
        Change::Restart => "restart",
    };
    let mut code = outcome(&resp, verb);
    if let (exit::OK, true, Some(config)) = (code, wait, &config) {
        // Then each service's `start_test`, until it passes.
        let names: Vec<String> =
            if targets.all { config.services.iter().map(|s| s.name.clone()).collect() } else { targets.names.clone() };
        code = super::zdaemon::run_start_tests(config, &names, began)?;
    }
    document(&resp, verb, code);
    Ok(code)
}

/// `pause` and `resume`.
///
/// # Errors
///
/// As [`change`].
pub fn pause_resume(reach: &Reach, pause: bool, targets: &Targets) -> Result<u8, CliError> {
    let sel = selection(targets)?;
    let command = if pause { Command::Pause { sel } } else { Command::Resume { sel } };
    let resp = reach.call(command, Duration::from_secs(10), exit::NOT_RUNNING, exit::USAGE)?;
    let verb = if pause { "pause" } else { "resume" };
    let code = outcome(&resp, verb);
    document(&resp, verb, code);
    Ok(code)
}

/// `signal SIG NAME...`: 0 when every service had a process to signal, 7
/// otherwise.
///
/// # Errors
///
/// As [`change`]; a bad signal name is a usage error.
pub fn signal(reach: &Reach, signal: &str, targets: &Targets) -> Result<u8, CliError> {
    let sel = selection(targets)?;
    supervisor_core::parse_signal(signal).map_err(CliError::Usage)?;
    let command = Command::Signal { signal: signal.to_string(), sel };
    let resp = reach.call(command, Duration::from_secs(10), exit::NOT_RUNNING, exit::USAGE)?;
    let mut code = exit::OK;
    for s in resp.services.iter().flatten() {
        if !s.ok {
            eprintln!("supervisor: {}: not signalled: {}", s.name, s.message.as_deref().unwrap_or("not running"));
            code = exit::NOT_RUNNING;
        }
    }
    document(&resp, "signal", code);
    Ok(code)
}
