//! Commands on a running supervisor as a whole: `list`, `shutdown` and
//! `repair-socket`.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use supervisor_core::protocol::{Command, ControlClient};
use supervisor_core::{PidFile, PidState};

use super::reach::Reach;
use super::record::Record;
use crate::exit::{self, CliError};

fn failed(what: impl std::fmt::Display) -> CliError {
    CliError::Failed(what.to_string())
}

/// How long `shutdown` waits for the process to be gone once it answered,
/// or once it was sent `TERM` without a socket.
const EXIT_WAIT: Duration = Duration::from_secs(10);

/// `shutdown`: stops everything and returns only once the supervisor
/// process is gone (its services are gone before it). Without a socket,
/// a supervisor that holds its pidfile gets `TERM`, and the same wait.
///
/// # Errors
///
/// When it does not finish within the timeout.
pub fn shutdown(reach: &Reach, timeout: Option<Duration>) -> Result<u8, CliError> {
    let timeout = timeout
        .or_else(|| reach.config().map(|c| c.longest_stop() + Duration::from_secs(10)))
        .unwrap_or(Duration::from_secs(600));
    // Once it answered, the supervisor only has to exit; after a TERM it
    // still stops every service first.
    let (pid, wait) = match reach.connect(exit::OK) {
        Ok(client) => (through_socket(client, timeout)?, EXIT_WAIT),
        Err(CliError::SocketMissing { pid, socket, .. }) => {
            crate::out::warn(&format!("{socket} does not answer; sending TERM to the supervisor (pid {pid})"));
            kill(Pid::from_raw(pid), Signal::SIGTERM).map_err(|e| failed(format!("kill {pid}: {e}")))?;
            (Some(pid), timeout.max(EXIT_WAIT))
        }
        Err(_) => {
            crate::say!("supervisor {} is not running", reach.label);
            return Ok(exit::OK);
        }
    };
    // The answer comes once every service is stopped; the process itself
    // is gone a little later. Return only then, so that `shutdown && up`
    // never finds it still running.
    if let Some(pid) = pid {
        if !supervisor_core::process::wait_gone(pid, wait) {
            return Err(failed(format!("the supervisor (pid {pid}) was told to shut down but did not exit")));
        }
    }
    crate::say!("supervisor {} stopped", reach.label);
    Ok(exit::OK)
}

/// Asks for the shutdown; the supervisor's pid, once it closed the
/// connection.
fn through_socket(mut client: ControlClient, timeout: Duration) -> Result<Option<i32>, CliError> {
    let pid = client.call(Command::Ping, Duration::from_secs(5)).ok().and_then(|r| r.status).map(|s| s.supervisor.pid);
    let resp = client.call(Command::Shutdown, timeout).map_err(failed)?;
    if let Some(err) = resp.error {
        return Err(failed(err.message));
    }
    client.wait_closed(EXIT_WAIT).map_err(failed)?;
    Ok(pid)
}

/// `repair-socket`: sends `SIGUSR1` to the supervisor that holds the
/// pidfile, which binds its socket again where it is gone, and waits until
/// the socket answers.
///
/// # Errors
///
/// 7 when no supervisor holds the pidfile; 1 when the socket does not come
/// back within 5 s.
pub fn repair_socket(reach: &Reach) -> Result<u8, CliError> {
    let Some(pid) = reach.running_pid() else {
        return Err(CliError::NotRunning {
            name: reach.label.clone(),
            socket: reach.socket.display().to_string(),
            code: exit::NOT_RUNNING,
        });
    };
    if reach.answering_pid().is_some() {
        crate::say!("supervisor {} (pid {pid}) answers at {}: nothing to repair", reach.label, reach.socket.display());
        return Ok(exit::OK);
    }
    kill(Pid::from_raw(pid), Signal::SIGUSR1).map_err(|e| failed(format!("kill -USR1 {pid}: {e}")))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if reach.answering_pid().is_some() {
            crate::say!("supervisor {} (pid {pid}) answers at {} again", reach.label, reach.socket.display());
            return Ok(exit::OK);
        }
        if std::time::Instant::now() >= deadline {
            return Err(failed(format!(
                "supervisor {} (pid {pid}) did not make {} again; its log says why",
                reach.label,
                reach.socket.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One line of `list`.
#[derive(Debug, Serialize)]
struct Listed {
    name: String,
    pid: i32,
    socket: PathBuf,
    config: Option<PathBuf>,
    uptime_s: Option<f64>,
}

/// The instances that run for this user: every directory (or link) of the
/// default runtime root whose pidfile is held.
fn running() -> Vec<Listed> {
    let root = crate::config::default_runtime_dir_of("x");
    let Some(root) = root.parent() else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(root) else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let run_dir = entry.path().join("run");
        let Ok(PidState::Held(pid)) = PidFile::read(&run_dir.join("supervisor.pid")) else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        let record = Record::load(&run_dir).filter(|r| r.pid == pid);
        found.push(Listed {
            name: record.as_ref().map_or(name, |r| r.name.clone()),
            pid,
            socket: record.as_ref().map_or_else(|| run_dir.join("control.sock"), |r| r.socket.clone()),
            config: record.as_ref().and_then(|r| r.config.clone()),
            uptime_s: record.as_ref().map(|r| r.uptime().as_secs_f64()),
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// `list [--json]`: the instances running for this user.
///
/// # Errors
///
/// None so far; the signature is the commands' own.
pub fn list() -> Result<u8, CliError> {
    let found = running();
    if crate::out::json() {
        crate::out::document(&serde_json::json!({ "ok": true, "instances": found }));
        return Ok(exit::OK);
    }
    let mut rows = vec![["NAME", "PID", "UPTIME", "SOCKET", "CONFIG"].map(String::from)];
    for l in &found {
        rows.push([
            l.name.clone(),
            l.pid.to_string(),
            l.uptime_s.map_or("-".into(), |u| super::status::human_duration(Duration::from_secs_f64(u))),
            l.socket.display().to_string(),
            l.config.as_ref().map_or("-".into(), |p| p.display().to_string()),
        ]);
    }
    crate::out::say(&super::status::columns(&rows));
    Ok(exit::OK)
}
