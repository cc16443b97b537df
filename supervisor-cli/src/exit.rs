//! Exit codes, after the LSB conventions for init scripts, and the errors
//! that map onto them.
//!
//! | code | `status` | other commands |
//! | --- | --- | --- |
//! | 0 | all named services running | success |
//! | 1 | a service that should run is dead (backoff, fatal) | failure |
//! | 2 | | bad arguments (usage, unknown service) |
//! | 3 | stopped or finished on purpose, or no supervisor | |
//! | 4 | unknown service | |
//! | 6 | bad configuration | bad configuration |
//! | 7 | | the supervisor, or a service to signal, is not running |

use crate::config::ConfigErrors;

/// Success.
pub const OK: u8 = 0;
/// Generic failure; for `status`, a service that should run is dead.
pub const FAILURE: u8 = 1;
/// Bad arguments.
pub const USAGE: u8 = 2;
/// `status`: stopped, or no supervisor running.
pub const STATUS_STOPPED: u8 = 3;
/// `status`: unknown service.
pub const STATUS_UNKNOWN: u8 = 4;
/// Bad configuration.
pub const BAD_CONFIG: u8 = 6;
/// Not running.
pub const NOT_RUNNING: u8 = 7;

/// Everything that can end a command early.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line is wrong.
    #[error("{0}")]
    Usage(String),
    /// The configuration is invalid.
    #[error("{0}")]
    Config(ConfigErrors),
    /// No supervisor answers for this configuration.
    #[error("no supervisor is running for instance {name:?} (nothing answers at {socket})")]
    NotRunning {
        /// The instance.
        name: String,
        /// Its socket path.
        socket: String,
        /// The exit code that "not running" means for this command.
        code: u8,
    },
    /// The supervisor holds its pidfile, but its socket does not answer.
    #[error(
        "supervisor {name} is running as pid {pid}, but its control socket {socket} is missing or does not answer: \
         it may still be starting; if this lasts, `supervisor repair-socket` (or `kill -USR1 {pid}`) makes it again"
    )]
    SocketMissing {
        /// The instance.
        name: String,
        /// The supervisor's pid.
        pid: i32,
        /// The socket path.
        socket: String,
    },
    /// A named service does not exist.
    #[error("{message}")]
    UnknownService {
        /// The server's message.
        message: String,
        /// The exit code that means for this command.
        code: u8,
    },
    /// The command failed.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// The process exit code for this error.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => USAGE,
            CliError::Config(_) => BAD_CONFIG,
            CliError::NotRunning { code, .. } => *code,
            CliError::SocketMissing { .. } => FAILURE,
            CliError::UnknownService { code, .. } => *code,
            CliError::Failed(_) => FAILURE,
        }
    }

    /// The error's kind, in JSON documents.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            CliError::Usage(_) => "usage",
            CliError::Config(_) => "bad_config",
            CliError::NotRunning { .. } => "not_running",
            CliError::SocketMissing { .. } => "socket_missing",
            CliError::UnknownService { .. } => "unknown_service",
            CliError::Failed(_) => "failed",
        }
    }

    /// The JSON document of the error that `--json` prints on standard
    /// output: `ok` (false), `exit_code`, and `error` with its `kind`,
    /// `message`, and what else it knows (`errors`, `pid`, `socket`).
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        let message = match self {
            CliError::Config(errors) => match errors.0.first() {
                Some(first) => format!("{} has {} error(s)", first.path.display(), errors.0.len()),
                None => "bad configuration".to_owned(),
            },
            other => other.to_string(),
        };
        let mut doc = error_document(self.exit_code(), self.kind(), &message);
        let error = &mut doc["error"];
        match self {
            CliError::Config(errors) => error["errors"] = serde_json::json!(errors.0),
            CliError::NotRunning { name, socket, .. } => {
                error["instance"] = name.as_str().into();
                error["socket"] = socket.as_str().into();
            }
            CliError::SocketMissing { name, pid, socket } => {
                error["instance"] = name.as_str().into();
                error["pid"] = (*pid).into();
                error["socket"] = socket.as_str().into();
            }
            _ => {}
        }
        doc
    }

    /// Prints the error on standard error.
    pub fn report(&self) {
        match self {
            CliError::Config(errors) => {
                for e in &errors.0 {
                    eprintln!("error: {e}");
                }
            }
            other => eprintln!("supervisor: {other}"),
        }
    }
}

/// `{"ok": false, "exit_code": CODE, "error": {"kind": KIND, "message": MESSAGE}}`.
#[must_use]
pub fn error_document(code: u8, kind: &str, message: &str) -> serde_json::Value {
    serde_json::json!({ "ok": false, "exit_code": code, "error": { "kind": kind, "message": message } })
}
