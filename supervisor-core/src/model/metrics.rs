//! Prometheus metrics: the text exposition (format 0.0.4) of a status
//! snapshot ([`render`]), and where it is served ([`MetricsAddr`]).
//!
//! Every family's name begins with [`PREFIX`]: a bare `up` would collide
//! with the `up` series that Prometheus itself makes for every target.

use std::fmt::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use crate::model::{ExitStatus, ServiceState, ServiceStatus, StatusSnapshot, SupervisorStatus};

/// The `Content-Type` of the text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The prefix of every family's name.
pub const PREFIX: &str = "supervisor_";

/// Where the metrics are served: a TCP address, or a Unix stream socket.
///
/// Parsed ([`FromStr`]) from `HOST:PORT` with an IP address (`127.0.0.1:9100`,
/// `[::1]:9100`) or `localhost`, a bare port (`9100`) or `:9100` (both on
/// the loopback address `127.0.0.1`), or a path that holds a `/` (a Unix
/// socket).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetricsAddr {
    /// A TCP address and port.
    Tcp(SocketAddr),
    /// A Unix stream socket at this path.
    Unix(PathBuf),
}

/// Why a text is not a [`MetricsAddr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected an address such as \"127.0.0.1:9100\", a port such as \"9100\", or a socket path with a `/`")]
pub struct MetricsAddrError;

impl FromStr for MetricsAddr {
    type Err = MetricsAddrError;

    fn from_str(text: &str) -> Result<MetricsAddr, MetricsAddrError> {
        if text.contains('/') {
            return if text.contains('\0') { Err(MetricsAddrError) } else { Ok(MetricsAddr::Unix(text.into())) };
        }
        let loopback = |port: &str| -> Result<MetricsAddr, MetricsAddrError> {
            let all_digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
            let port: u16 =
                if all_digits { port.parse().map_err(|_| MetricsAddrError)? } else { Err(MetricsAddrError)? };
            Ok(MetricsAddr::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, port))))
        };
        if let Some(port) = text.strip_prefix(':').or_else(|| text.strip_prefix("localhost:")) {
            return loopback(port);
        }
        if !text.contains(':') {
            return loopback(text);
        }
        text.parse().map(MetricsAddr::Tcp).map_err(|_| MetricsAddrError)
    }
}

impl fmt::Display for MetricsAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsAddr::Tcp(a) => write!(f, "{a}"),
            MetricsAddr::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The kind of a family.
#[derive(Clone, Copy)]
enum Type {
    Counter,
    Gauge,
}

/// One family of the exposition: its name (without [`PREFIX`]), type,
/// help, and its samples for a service.
struct Family {
    name: &'static str,
    kind: Type,
    help: &'static str,
    samples: Samples,
}

/// How a family's samples come from a service's status.
enum Samples {
    /// One sample, or none.
    One(fn(&ServiceStatus) -> Option<Value>),
    /// One sample per state (label `state`): 1 for the state it is in.
    PerState,
}

fn one(name: &'static str, kind: Type, help: &'static str, value: fn(&ServiceStatus) -> Option<Value>) -> Family {
    Family { name, kind, help, samples: Samples::One(value) }
}

/// The families of each service, in the order they are written.
fn service_families() -> [Family; 9] {
    use Type::{Counter, Gauge};
    [
        one("service_up", Gauge, "Whether the service has a main process (1) or not (0).", |s| {
            Some(Value::Int(u64::from(s.pid.is_some())))
        }),
        one("service_ready", Gauge, "Whether the service is ready (running, and ready by its ready check).", |s| {
            Some(Value::Int(u64::from(s.ready)))
        }),
        one(
            "service_restarts_total",
            Counter,
            "Automatic restarts of the service since the supervisor started.",
            |s| Some(Value::Int(u64::from(s.restarts))),
        ),
        one(
            "service_last_exit_code",
            Gauge,
            "How the last process of the service ended: its exit code, or 128 + the signal that killed it.",
            |s| s.last_exit.map(|e| Value::Signed(exit_code(e))),
        ),
        Family {
            name: "service_state",
            kind: Gauge,
            help: "The state of the service: 1 for the state it is in, 0 for the others.",
            samples: Samples::PerState,
        },
        one(
            "service_uptime_seconds",
            Gauge,
            "Seconds since the main process of the service started (0 without one).",
            |s| Some(Value::Float(s.uptime_s.unwrap_or(0.0))),
        ),
        one("service_transcript_bytes_total", Counter, "Bytes written to the transcript of the service.", |s| {
            Some(Value::Int(s.transcript_bytes))
        }),
        one(
            "service_transcript_dropped_bytes_total",
            Counter,
            "Bytes of output of the service that could not be written to its transcript.",
            |s| Some(Value::Int(s.dropped_bytes)),
        ),
        one("service_health_failures_total", Counter, "Failed health checks of the service.", |s| {
            Some(Value::Int(s.health.as_ref().map_or(0, |h| h.failures_total)))
        }),
    ]
}

/// The families of the supervisor itself, with their values.
fn supervisor_families(sup: &SupervisorStatus) -> [(Family, u64); 2] {
    let none = |_: &ServiceStatus| None;
    [
        (
            one("events_total", Type::Counter, "State changes of services since the supervisor started.", none),
            sup.events_emitted,
        ),
        (
            one("control_requests_total", Type::Counter, "Requests received on the control socket.", none),
            sup.control_requests,
        ),
    ]
}

/// Appends one sample of family `name` for service `service`.
fn sample(out: &mut String, name: &str, service: &str, state: Option<&str>, value: Value) {
    out.push_str(PREFIX);
    out.push_str(name);
    out.push_str("{service=\"");
    escape_label(out, service);
    if let Some(state) = state {
        out.push_str("\",state=\"");
        escape_label(out, state);
    }
    out.push_str("\"} ");
    value.write(out);
    out.push('\n');
}

/// A sample's value.
#[derive(Clone, Copy)]
enum Value {
    Int(u64),
    Signed(i64),
    Float(f64),
}

impl Value {
    fn write(self, out: &mut String) {
        let _ = match self {
            Value::Int(n) => write!(out, "{n}"),
            Value::Signed(n) => write!(out, "{n}"),
            Value::Float(x) if x.is_nan() => write!(out, "NaN"),
            Value::Float(x) if x.is_infinite() => write!(out, "{}Inf", if x > 0.0 { '+' } else { '-' }),
            Value::Float(x) => write!(out, "{x}"),
        };
    }
}

/// An exit as a shell reports it: the code, or 128 + the signal.
fn exit_code(exit: ExitStatus) -> i64 {
    match exit {
        ExitStatus::Code(c) => i64::from(c),
        ExitStatus::Signal(sig) => 128 + i64::from(sig as i32),
    }
}

/// Appends `value` escaped as a label value: `\`, `"` and newline.
fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The `# HELP` and `# TYPE` lines of a family.
fn header(out: &mut String, f: &Family) {
    // Help texts are ours: no `\` or newline to escape.
    let kind = match f.kind {
        Type::Counter => "counter",
        Type::Gauge => "gauge",
    };
    let _ = writeln!(out, "# HELP {PREFIX}{} {}\n# TYPE {PREFIX}{} {kind}", f.name, f.help, f.name);
}

/// The Prometheus text exposition (format 0.0.4, [`CONTENT_TYPE`]) of a
/// status snapshot: per service (label `service`) `up`, `ready`,
/// `restarts_total`, `last_exit_code` (absent for a service whose process
/// never ended), `state` (one sample per [`ServiceState::ALL`], label
/// `state`, 1 for the state it is in), `uptime_seconds`,
/// `transcript_bytes_total`, `transcript_dropped_bytes_total` and
/// `health_failures_total`; for the supervisor `events_total` and
/// `control_requests_total`. Every name begins with [`PREFIX`]
/// (`supervisor_service_up`, `supervisor_events_total`).
///
/// A pure function: the same snapshot gives the same text.
#[must_use]
pub fn render(snapshot: &StatusSnapshot) -> String {
    let mut out = String::with_capacity(2048 + snapshot.services.len() * 1536);
    for family in &service_families() {
        header(&mut out, family);
        for s in &snapshot.services {
            match family.samples {
                Samples::One(value) => {
                    if let Some(v) = value(s) {
                        sample(&mut out, family.name, &s.name, None, v);
                    }
                }
                Samples::PerState => {
                    for state in ServiceState::ALL {
                        let v = Value::Int(u64::from(s.state == state));
                        sample(&mut out, family.name, &s.name, Some(state.as_str()), v);
                    }
                }
            }
        }
    }
    for (family, value) in &supervisor_families(&snapshot.supervisor) {
        header(&mut out, family);
        let _ = writeln!(out, "{PREFIX}{} {value}", family.name);
    }
    out
}

#[cfg(test)]
mod tests;
