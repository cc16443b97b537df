//! `wait NAME... [--timeout 60s]`: returns once every service named is
//! ready (`wait --ready`: every service that should run); for scripts,
//! readiness probes of containers, and tests.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use supervisor_core::protocol::{ClientError, Command};
use supervisor_core::{Expected, ServiceState, ServiceStatus};

use super::reach::Reach;
use crate::exit::{self, CliError};

/// Where a service stands for `wait`.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Ready,
    /// Not yet; it may get there by itself.
    NotYet,
    /// It will not get there by itself: why.
    Failed(String),
}

/// Whether `s` gets ready by itself, given every service's status.
fn verdict(s: &ServiceStatus, all: &HashMap<&str, &ServiceStatus>, depth: usize) -> Verdict {
    let why = || s.reason.clone().or_else(|| s.error.clone()).unwrap_or_else(|| s.state.to_string());
    match s.state {
        _ if s.ready => Verdict::Ready,
        ServiceState::Fatal | ServiceState::Exited => Verdict::Failed(format!("{}: {}", s.state, why())),
        ServiceState::Stopped if s.wanted == Expected::Stopped => Verdict::Failed(format!("stopped: {}", why())),
        // Waiting for dependencies: as good as the worst of them.
        _ if depth < 64 => {
            for dep in s.waiting_for.iter().filter_map(|d| all.get(d.as_str())) {
                if let Verdict::Failed(w) = verdict(dep, all, depth + 1) {
                    return Verdict::Failed(format!("waits for {}, which will not be ready ({w})", dep.name));
                }
            }
            Verdict::NotYet
        }
        _ => Verdict::NotYet,
    }
}

/// `wait`: 0 once all are ready, 1 when one fails or the time is up
/// (saying which and why), 7 when no supervisor runs.
///
/// # Errors
///
/// Not running (7), an unknown service (1).
pub fn wait(reach: &Reach, names: &[String], all: bool, timeout: Duration) -> Result<u8, CliError> {
    let deadline = Instant::now() + timeout;
    let wanted;
    let names = if all {
        wanted = should_run(&everything(reach)?);
        &wanted[..]
    } else {
        names
    };
    // Follow the changes first, then look: none falls between.
    let follow = Command::Events { names: names.to_vec(), since_start: false };
    let (mut events, _) = reach.open(follow, Duration::from_secs(10), exit::NOT_RUNNING, exit::FAILURE)?;
    loop {
        let services = everything(reach)?;
        let all: HashMap<&str, &ServiceStatus> = services.iter().map(|s| (s.name.as_str(), s)).collect();
        let mut pending = Vec::new();
        let mut asked = Vec::new();
        for name in names {
            let s = all.get(name.as_str()).ok_or_else(|| CliError::Failed(format!("no service {name:?}")))?;
            asked.push(*s);
            match verdict(s, &all, 0) {
                Verdict::Ready => {}
                Verdict::Failed(why) => {
                    crate::out::say(&format!("{}: {why}\n", s.name));
                    return Ok(report(&asked, false));
                }
                Verdict::NotYet => pending.push(name),
            }
        }
        if pending.is_empty() {
            crate::out::say(&format!("ready: {}\n", names.join(" ")));
            return Ok(report(&asked, true));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let timed_out = left.is_zero()
            || match events.read_response(left) {
                Ok(_) => false,
                Err(ClientError::Timeout(_)) => true,
                Err(_) => return Err(CliError::Failed("the supervisor went away".into())),
            };
        if timed_out {
            // As they stand now, not as they stood before the wait.
            let services = everything(reach)?;
            let late: Vec<&ServiceStatus> = services.iter().filter(|s| pending.contains(&&s.name)).collect();
            let after = humantime::format_duration(timeout);
            for s in &late {
                let why = s.reason.clone().unwrap_or_else(|| s.state.to_string());
                crate::out::say(&format!("{}: not ready after {after}: {} ({why})\n", s.name, s.state));
            }
            let asked: Vec<&ServiceStatus> = services.iter().filter(|s| names.contains(&s.name)).collect();
            return Ok(report(&asked, false));
        }
    }
}

/// `wait --ready`: the services that should run (wanted running), but
/// loop tasks, which are never `running` between runs.
fn should_run(services: &[ServiceStatus]) -> Vec<String> {
    let task = |s: &ServiceStatus| s.extra.kind.as_deref() == Some("task");
    services.iter().filter(|s| s.wanted == Expected::Running && !task(s)).map(|s| s.name.clone()).collect()
}

/// The status of every service.
fn everything(reach: &Reach) -> Result<Vec<ServiceStatus>, CliError> {
    let command = Command::Status { names: Vec::new() };
    let resp = reach.call(command, Duration::from_secs(10), exit::NOT_RUNNING, exit::FAILURE)?;
    Ok(resp.status.map(|s| s.services).unwrap_or_default())
}

/// With `--json`: `{"ready": BOOL, "services": [{"name", "state", "ready",
/// "reason"}]}`. Returns the exit code.
fn report(services: &[&ServiceStatus], ready: bool) -> u8 {
    if crate::out::json() {
        let list: Vec<serde_json::Value> = services
            .iter()
            .map(|s| serde_json::json!({"name": s.name, "state": s.state, "ready": s.ready, "reason": s.reason}))
            .collect();
        crate::out::document(&serde_json::json!({"ready": ready, "services": list}));
    }
    if ready {
        exit::OK
    } else {
        exit::FAILURE
    }
}
