//! `events [NAME...] [--since-start]`: state changes as they happen, one
//! line each, until interrupted or until the supervisor goes away.

use std::time::{Duration, SystemTime};

use supervisor_core::protocol::{ClientError, Command, Event};
use supervisor_core::ExitStatus;

use super::reach::Reach;
use crate::exit::{self, CliError};

/// One change for people: `TIME SERVICE FROM -> TO (pid N, exit) #SEQ: REASON`.
#[must_use]
pub fn line(e: &Event) -> String {
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(e.time.max(0.0));
    let mut detail = Vec::new();
    if let Some(pid) = e.pid {
        detail.push(format!("pid {pid}"));
    }
    match e.exit {
        Some(ExitStatus::Code(c)) => detail.push(format!("exit code {c}")),
        Some(ExitStatus::Signal(s)) => detail.push(format!("killed by SIG{}", supervisor_core::signal_name(s))),
        None => {}
    }
    let detail = if detail.is_empty() { String::new() } else { format!(" ({})", detail.join(", ")) };
    let why = e.reason.as_deref().map_or(String::new(), |r| format!(": {r}"));
    format!("{} {} {} -> {}{detail} #{}{why}", humantime::format_rfc3339_millis(time), e.service, e.from, e.to, e.seq)
}

/// `events`: exits 0 when the supervisor goes away (or the reader of the
/// output does).
///
/// # Errors
///
/// Not running (7), an unknown service (2).
pub fn events(reach: &Reach, names: Vec<String>, since_start: bool) -> Result<u8, CliError> {
    let command = Command::Events { names, since_start };
    let (mut client, _) = reach.open(command, Duration::from_secs(10), exit::NOT_RUNNING, exit::USAGE)?;
    loop {
        match client.read_response(Duration::from_secs(3600)) {
            Ok(resp) => {
                let Some(event) = resp.event else { continue };
                if crate::out::json() {
                    let text = serde_json::to_string(&event).map_err(|e| CliError::Failed(e.to_string()))?;
                    crate::data!("{text}");
                } else {
                    crate::data!("{}", line(&event));
                }
                if crate::out::stdout_gone() {
                    return Ok(exit::OK);
                }
            }
            Err(ClientError::Timeout(_)) => {}
            Err(_) => return Ok(exit::OK),
        }
    }
}
