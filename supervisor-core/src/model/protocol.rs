//! The control protocol: one JSON object per line each way.
//!
//! A request names a command in `cmd` and may carry an `id` (any JSON
//! value), which its response repeats:
//!
//! ```text
//! {"id":1,"cmd":"status","names":["web"]}
//! {"id":1,"ok":true,"status":{"supervisor":{...},"services":[...]}}
//! {"id":2,"cmd":"stop","names":["web"],"wait":true}
//! {"id":2,"ok":true,"services":[{"name":"web","state":"stopped","ok":true}]}
//! {"id":3,"cmd":"frobnicate"}
//! {"id":3,"ok":false,"error":{"code":"bad_request","message":"..."}}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{ExitStatus, ServiceState, StatusSnapshot};

/// The longest request line the server accepts, in bytes.
pub const MAX_REQUEST: usize = 64 * 1024;

/// Which services a command applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Selection {
    /// Services by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Every service (instead of names).
    #[serde(default, skip_serializing_if = "is_false")]
    pub all: bool,
}

impl Selection {
    /// These services (or groups), by name.
    pub fn named<I, S>(names: I) -> Selection
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Selection { names: names.into_iter().map(Into::into).collect(), all: false }
    }

    /// Every service.
    #[must_use]
    pub fn every() -> Selection {
        Selection { names: Vec::new(), all: true }
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_false(b: &bool) -> bool {
    !*b
}

/// A command to the supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Command {
    /// Is anybody there? Answered with the supervisor's own status.
    Ping,
    /// The status of the named services (all when none are named).
    Status {
        /// Services to report on; empty means all.
        #[serde(default)]
        names: Vec<String>,
    },
    /// Want the services up.
    Start {
        /// The services.
        #[serde(flatten)]
        sel: Selection,
        /// Answer only once they run (or failed to).
        #[serde(default)]
        wait: bool,
    },
    /// Start the services if they are down, and do not restart them when
    /// they exit (daemontools' `svc -o`).
    Once {
        /// The services.
        #[serde(flatten)]
        sel: Selection,
    },
    /// Want the services down.
    Stop {
        /// The services.
        #[serde(flatten)]
        sel: Selection,
        /// Answer only once they are stopped.
        #[serde(default)]
        wait: bool,
    },
    /// Stop the services if they run, then start them.
    Restart {
        /// The services.
        #[serde(flatten)]
        sel: Selection,
        /// Answer only once they run again (or failed to).
        #[serde(default)]
        wait: bool,
    },
    /// Suspend the services (`SIGSTOP`).
    Pause {
        /// The services.
        #[serde(flatten)]
        sel: Selection,
    },
    /// Continue paused services (`SIGCONT`).
    Resume {
        /// The services.
        #[serde(flatten)]
        sel: Selection,
    },
    /// Send a signal to the services' processes.
    Signal {
        /// Name (`HUP`, `SIGHUP`) or number.
        signal: String,
        /// The services.
        #[serde(flatten)]
        sel: Selection,
    },
    /// Reopen the transcripts of the named services (all when none are
    /// named), after an outside tool renamed them.
    Reopen {
        /// Services; empty means all.
        #[serde(default)]
        names: Vec<String>,
    },
    /// Read the service definitions again and apply the difference (for a
    /// `scan`: look for new and removed service directories now). The
    /// host decides what that means; the answer carries a
    /// [`ReloadReport`] when the host makes one.
    Reload {
        /// Only compute the plan; change nothing.
        #[serde(default, skip_serializing_if = "is_false")]
        dry_run: bool,
    },
    /// Stop every service, then the supervisor. Answered once all are
    /// stopped, just before the supervisor exits.
    Shutdown,
    /// Follow state changes: answered at once (`ok`), then one line per
    /// change, each a response with the same id and an [`Event`], until the
    /// client closes the connection or the supervisor exits. Over the
    /// control socket only.
    Events {
        /// The services (or groups) to follow; empty means all.
        #[serde(default)]
        names: Vec<String>,
        /// First the changes since the supervisor started (at most the last
        /// [`EVENT_HISTORY`]).
        #[serde(default, skip_serializing_if = "is_false")]
        since_start: bool,
    },
    /// The metrics in Prometheus' text exposition format (see
    /// [`metrics::render`](crate::metrics::render)), answered in the
    /// response's `metrics`.
    Metrics,
}

/// How many past state changes the supervisor keeps for `events
/// --since-start`.
pub const EVENT_HISTORY: usize = 1024;

/// One state change, as `events` streams it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event {
    /// The change's number, from 1 at the supervisor's start, without gaps:
    /// a gap in what a client got means it missed changes.
    pub seq: u64,
    /// The service.
    pub service: String,
    /// The state before.
    pub from: ServiceState,
    /// The state after.
    pub to: ServiceState,
    /// Its main process (see [`StateChange::pid`](crate::StateChange::pid)).
    #[serde(default)]
    pub pid: Option<i32>,
    /// How that process ended, when its end caused the change.
    #[serde(default)]
    pub exit: Option<ExitStatus>,
    /// When, in seconds since the Unix epoch.
    pub time: f64,
    /// The service is ready now (see [`StateChange::ready`](crate::StateChange::ready)).
    #[serde(default)]
    pub ready: bool,
    /// Why it was stopped or failed (see
    /// [`StateChange::reason`](crate::StateChange::reason)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A request: a command and the id its response will carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Request {
    /// Chosen by the client; repeated in the response.
    #[serde(default)]
    pub id: Value,
    /// What to do.
    #[serde(flatten)]
    pub command: Command,
}

/// Machine-readable error kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// Not JSON, or not a known command.
    BadRequest,
    /// Longer than [`MAX_REQUEST`].
    TooLarge,
    /// A named service does not exist.
    UnknownService,
    /// The peer's uid or group is not allowed.
    PermissionDenied,
    /// The supervisor is shutting down.
    ShuttingDown,
    /// Too many clients or requests in flight.
    Busy,
    /// The configuration file is invalid (`reload`); the errors are in the
    /// response's [`ReloadReport`].
    BadConfig,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ErrorBody {
    /// The kind.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
}

/// The outcome of a command for one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ServiceResult {
    /// The service.
    pub name: String,
    /// Its state when the answer was made.
    pub state: ServiceState,
    /// Whether the command reached its aim for this service.
    pub ok: bool,
    /// Why not, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A response to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Response {
    /// The request's id.
    #[serde(default)]
    pub id: Value,
    /// Whether the request as a whole succeeded.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    /// For `status` and `ping`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusSnapshot>,
    /// For commands on services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<ServiceResult>>,
    /// For `reload`: the plan, or the errors of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<ReloadReport>,
    /// For `events`: one state change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Event>,
    /// For `metrics`: the text exposition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
}

/// What a reload does to one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ReloadAction {
    /// New in the file: added (and started if expected running).
    Add,
    /// Gone from the file: stopped and removed.
    Remove,
    /// Its definition changed: stopped and started again with the new one.
    Restart,
    /// Not touched.
    Unchanged,
}

impl ReloadAction {
    /// The word used in plans: `add`, `remove`, `restart`, `unchanged`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadAction::Add => "add",
            ReloadAction::Remove => "remove",
            ReloadAction::Restart => "restart",
            ReloadAction::Unchanged => "unchanged",
        }
    }
}

/// One service in a [`ReloadReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReloadChange {
    /// The service.
    pub name: String,
    /// What happens to it.
    pub action: ReloadAction,
    /// For [`ReloadAction::Restart`]: the settings that differ.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
}

impl ReloadChange {
    /// What happens to service `name`.
    pub fn new(name: impl Into<String>, action: ReloadAction, changed: Vec<String>) -> ReloadChange {
        ReloadChange { name: name.into(), action, changed }
    }
}

/// The answer to `reload`: the plan (applied, or not for a dry run), or
/// the errors that made the file unusable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReloadReport {
    /// The configuration file that was read.
    pub path: String,
    /// Whether the plan was applied (false for a dry run and a bad file).
    pub applied: bool,
    /// Every service of the old and the new file, in the new file's order,
    /// removed ones last.
    #[serde(default)]
    pub services: Vec<ReloadChange>,
    /// Supervisor-level remarks (settings that need a restart of the
    /// supervisor, settings applied at once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The problems of an invalid file, one per line as `check-config`
    /// prints them; nothing was changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl Response {
    /// A failure.
    pub fn error(id: Value, code: ErrorCode, message: impl Into<String>) -> Response {
        Response { ok: false, error: Some(ErrorBody { code, message: message.into() }), ..Response::ok(id) }
    }

    /// A success with a status snapshot.
    #[must_use]
    pub fn with_status(id: Value, status: StatusSnapshot) -> Response {
        Response { status: Some(status), ..Response::ok(id) }
    }

    /// An answer about services: ok when every one is.
    #[must_use]
    pub fn with_services(id: Value, services: Vec<ServiceResult>) -> Response {
        let ok = services.iter().all(|s| s.ok);
        Response { ok, services: Some(services), ..Response::ok(id) }
    }

    /// A plain success (the first answer to `events`).
    #[must_use]
    pub fn ok(id: Value) -> Response {
        Response { id, ok: true, error: None, status: None, services: None, reload: None, event: None, metrics: None }
    }

    /// One line of an `events` stream.
    #[must_use]
    pub fn with_event(id: Value, event: Event) -> Response {
        Response { event: Some(event), ..Response::ok(id) }
    }

    /// The answer to `metrics`: the text exposition.
    #[must_use]
    pub fn with_metrics(id: Value, text: String) -> Response {
        Response { metrics: Some(text), ..Response::ok(id) }
    }

    /// The answer to `reload`: ok unless the file had errors.
    #[must_use]
    pub fn with_reload(id: Value, report: ReloadReport) -> Response {
        if report.errors.is_empty() {
            let mut r = Response::ok(id);
            r.reload = Some(report);
            return r;
        }
        let n = report.errors.len();
        let message = format!(
            "{}: {n} error{}; the running configuration is unchanged",
            report.path,
            if n == 1 { "" } else { "s" }
        );
        let mut r = Response::error(id, ErrorCode::BadConfig, message);
        r.reload = Some(report);
        r
    }

    /// The line to send, newline included.
    #[must_use]
    pub fn to_line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_else(|_| br#"{"ok":false}"#.to_vec());
        v.push(b'\n');
        v
    }
}

/// Parses one request line; on failure, the error response to send (with
/// the id when the line was JSON with one).
///
/// # Errors
///
/// The `bad_request` response for a line that is not JSON or not a known
/// command.
pub fn parse_request(line: &[u8]) -> Result<Request, Box<Response>> {
    let bad = |id: Value, msg: String| Box::new(Response::error(id, ErrorCode::BadRequest, msg));
    let value: Value = serde_json::from_slice(line).map_err(|e| bad(Value::Null, format!("not valid JSON: {e}")))?;
    let id = value.get("id").cloned().unwrap_or(Value::Null);
    if !value.is_object() {
        return Err(bad(id, "a request must be a JSON object".into()));
    }
    serde_json::from_value(value).map_err(|e| bad(id, format!("bad request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_and_keeps_ids() {
        let r = parse_request(br#"{"id":"a","cmd":"stop","names":["x"],"wait":true}"#).unwrap();
        assert_eq!(r.id, Value::from("a"));
        assert_eq!(r.command, Command::Stop { sel: Selection { names: vec!["x".into()], all: false }, wait: true });
        let r = parse_request(br#"{"cmd":"signal","signal":"HUP","all":true}"#).unwrap();
        assert!(matches!(r.command, Command::Signal { ref signal, .. } if signal == "HUP"));
        let line = serde_json::to_vec(&r).unwrap();
        assert_eq!(parse_request(&line).unwrap(), r);
    }

    #[test]
    fn reload_requests_of_older_clients_still_parse() {
        let r = parse_request(br#"{"id":1,"cmd":"reload"}"#).unwrap();
        assert_eq!(r.command, Command::Reload { dry_run: false });
        assert_eq!(serde_json::to_string(&r.command).unwrap(), r#"{"cmd":"reload"}"#);
        let r = parse_request(br#"{"cmd":"reload","dry_run":true}"#).unwrap();
        assert_eq!(r.command, Command::Reload { dry_run: true });
        let report = ReloadReport { path: "x.toml".into(), errors: vec!["x.toml:1: bad".into()], ..Default::default() };
        let resp = Response::with_reload(Value::Null, report);
        assert!(!resp.ok);
        assert_eq!(resp.error.as_ref().map(|e| e.code), Some(ErrorCode::BadConfig));
        let back: Response = serde_json::from_slice(&resp.to_line()).unwrap();
        assert_eq!(back, resp);
    }

    #[test]
    fn malformed_requests_become_error_responses() {
        let e = parse_request(b"{nope").unwrap_err();
        assert_eq!(e.error.unwrap().code, ErrorCode::BadRequest);
        let e = parse_request(br#"{"id":7,"cmd":"frob"}"#).unwrap_err();
        assert_eq!(e.id, Value::from(7));
        assert!(!e.ok);
        let e = parse_request(b"[1,2]").unwrap_err();
        assert!(e.error.unwrap().message.contains("object"));
    }

    /// Found by the fuzz target `protocol_request`: a float id came back
    /// one bit off (`serde_json`'s float parser was not correctly rounded).
    #[test]
    fn a_float_id_round_trips() {
        let r = parse_request(br#"{"id":1884746704437090443709551615,"cmd":"stop"}"#).unwrap();
        let line = serde_json::to_vec(&r).unwrap();
        assert_eq!(parse_request(&line).unwrap(), r);
    }
}
