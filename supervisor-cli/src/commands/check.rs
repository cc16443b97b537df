//! `check`: one pass over the external services from the command line, as
//! simplevisor's `check`: find out each one's state, repair what is not as
//! expected, and say what was found and done.

use std::time::{Duration, Instant};

use clap::Args;
use supervisor_core::{Engine, Health, Kind, ServiceStatus};

use crate::config::Config;
use crate::exit::{self, CliError};

/// Arguments of `check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The external services to check (all when none is named).
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// Only report: start or stop nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs the pass; exits 0 when every service is as expected afterwards,
/// 1 otherwise.
///
/// # Errors
///
/// [`CliError::UnknownService`] for a name that is not an external service.
pub fn check(config: &Config, args: &CheckArgs) -> Result<u8, CliError> {
    // Warnings and errors only, unless the configuration asks for debug
    // (which shows the commands' output).
    let level = if config.log_level >= log::LevelFilter::Debug { config.log_level } else { log::LevelFilter::Warn };
    crate::logger::init(level);
    let mut services = Vec::new();
    for name in &args.names {
        match config.services.iter().find(|s| &s.name == name) {
            Some(s) if s.kind.is_external() => services.push(s.clone()),
            Some(s) => {
                return Err(CliError::Usage(format!(
                    "{name} is not an external service (kind = \"{}\"); `check` runs the commands of external \
                     services",
                    s.kind.as_str()
                )))
            }
            None => {
                return Err(CliError::UnknownService {
                    message: format!("no service named {name:?} in {}", config.path.display()),
                    code: exit::USAGE,
                })
            }
        }
    }
    if args.names.is_empty() {
        services = config.services.iter().filter(|s| s.kind.is_external()).cloned().collect();
    }
    if services.is_empty() {
        crate::say!("no external services in {}", config.path.display());
        if crate::out::json() {
            crate::out::document(&serde_json::json!({ "ok": true, "exit_code": 0, "services": [] }));
        }
        return Ok(exit::OK);
    }
    // The longest a pass can take: four commands (status, stop, start,
    // status), each with its timeout.
    let longest = services
        .iter()
        .map(|s| match &s.kind {
            Kind::External(e) => e.timeout,
            _ => Duration::ZERO,
        })
        .max()
        .unwrap_or_default();
    let deadline = Instant::now() + longest * 4 + Duration::from_secs(10);
    let fail = |e: supervisor_core::EngineError| CliError::Failed(e.to_string());
    let mut engine = Engine::new(format!("{}-check", config.name)).map_err(fail)?;
    engine.check_once(args.dry_run);
    // Members of a group start in order.
    engine.set_groups(config.groups.clone());
    for mut svc in services {
        // From the command line, command output is only logged (at debug).
        if svc.transcript.is_some() {
            svc.transcript = Some(supervisor_core::TranscriptConfig::new("/dev/null"));
        }
        engine.add_service(svc).map_err(fail)?;
    }
    while !engine.check_pass_done() {
        if Instant::now() >= deadline {
            return Err(CliError::Failed("the check did not finish in time".into()));
        }
        engine.turn(Some(Duration::from_millis(200))).map_err(fail)?;
    }
    let status = engine.status();
    let mut all_ok = true;
    let mut found = Vec::new();
    for s in &status.services {
        let (line, ok) = describe(s, args.dry_run);
        all_ok &= ok;
        crate::say!("{line}");
        found.push(serde_json::json!({
            "name": s.name,
            "ok": ok,
            "check": s.extra.last_check,
            "error": s.error,
            "summary": line,
        }));
    }
    let code = if all_ok { exit::OK } else { exit::FAILURE };
    if crate::out::json() {
        let doc = serde_json::json!({ "ok": all_ok, "exit_code": code, "dry_run": args.dry_run, "services": found });
        crate::out::document(&doc);
    }
    Ok(code)
}

/// One line: what the pass found, did and left, and whether that is as
/// expected.
fn describe(s: &ServiceStatus, dry_run: bool) -> (String, bool) {
    let Some(pass) = &s.extra.last_check else {
        return (format!("{}: not checked", s.name), false);
    };
    let show = |h: Option<Health>| h.map_or_else(|| "unknown".to_string(), |h| h.to_string());
    let wanted = pass.wanted.unwrap_or(s.expected);
    let mut line = format!("{}: expected {wanted}, found {}", s.name, show(pass.found));
    if !pass.actions.is_empty() {
        line.push_str(&format!("; ran {}", pass.actions.join(", ")));
    }
    if pass.result != pass.found || !pass.actions.is_empty() {
        line.push_str(&format!("; now {}", show(pass.result)));
    }
    let ok = pass.ok;
    line.push_str(match (ok, dry_run) {
        (true, _) => " (ok)",
        (false, true) => " (NOT as expected; --dry-run: nothing done)",
        (false, false) => " (NOT as expected)",
    });
    if let (false, Some(e)) = (ok, &s.error) {
        line.push_str(&format!(": {e}"));
    }
    (line, ok)
}
