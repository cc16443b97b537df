//! `wait NAME... [--timeout 60s]`: returns once every service named is
//! ready; for scripts, readiness probes of containers, and tests.

use std::time::{Duration, Instant};

use supervisor_core::protocol::{ClientError, Command};
use supervisor_core::{ServiceState, ServiceStatus};

use super::reach::Reach;
use crate::exit::{self, CliError};

/// Where a service stands for `wait`.
enum Verdict {
    Ready,
    /// Not yet; it may get there by itself.
    NotYet,
    /// It will not get there by itself: why.
    Failed(String),
}

fn verdict(s: &ServiceStatus) -> Verdict {
    let why = || s.reason.clone().or_else(|| s.error.clone()).unwrap_or_else(|| s.state.to_string());
    match s.state {
        _ if s.ready => Verdict::Ready,
        ServiceState::Fatal | ServiceState::Exited => Verdict::Failed(format!("{}: {}", s.state, why())),
        ServiceState::Stopped if s.wanted == supervisor_core::Expected::Stopped => {
            Verdict::Failed(format!("stopped: {}", s.reason.clone().unwrap_or_else(|| "not wanted up".into())))
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
pub fn wait(reach: &Reach, names: &[String], timeout: Duration) -> Result<u8, CliError> {
    let deadline = Instant::now() + timeout;
    // Follow the changes first, then look: none falls between.
    let follow = Command::Events { names: names.to_vec(), since_start: false };
    let (mut events, _) = reach.open(follow, Duration::from_secs(10), exit::NOT_RUNNING, exit::FAILURE)?;
    loop {
        let command = Command::Status { names: names.to_vec() };
        let resp = reach.call(command, Duration::from_secs(10), exit::NOT_RUNNING, exit::FAILURE)?;
        let services = resp.status.map(|s| s.services).unwrap_or_default();
        let mut pending = Vec::new();
        for s in &services {
            match verdict(s) {
                Verdict::Ready => {}
                Verdict::Failed(why) => {
                    crate::out::say(&format!("{}: {why}", s.name));
                    return Ok(report(&services, false));
                }
                Verdict::NotYet => pending.push(s),
            }
        }
        if pending.is_empty() {
            crate::out::say(&format!("ready: {}", names.join(" ")));
            return Ok(report(&services, true));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let timed_out = left.is_zero()
            || match events.read_response(left) {
                Ok(_) => false,
                Err(ClientError::Timeout(_)) => true,
                Err(_) => return Err(CliError::Failed("the supervisor went away".into())),
            };
        if timed_out {
            for s in pending {
                let why = s.reason.clone().unwrap_or_else(|| s.state.to_string());
                crate::out::say(&format!(
                    "{}: not ready after {}: {} ({why})",
                    s.name,
                    humantime::format_duration(timeout),
                    s.state
                ));
            }
            return Ok(exit::FAILURE);
        }
    }
}

/// With `--json`: `{"ready": BOOL, "services": [{"name", "state", "ready",
/// "reason"}]}`. Returns the exit code.
fn report(services: &[ServiceStatus], ready: bool) -> u8 {
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
