//! Service states, exit results and the status snapshot that serializes to
//! JSON.

use std::fmt;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use serde::{Deserialize, Serialize};

use crate::model::{parse_signal, signal_name, Expected};

/// Where a service is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ServiceState {
    /// Not running and not wanted.
    Stopped,
    /// Spawned, but not yet up for `min_uptime`.
    Starting,
    /// Up for at least `min_uptime`.
    Running,
    /// Died quickly; waiting before the next start.
    Backoff,
    /// Asked to stop (or cleaning up after a death); waiting until the
    /// process and all its descendants are gone.
    Stopping,
    /// Finished on purpose (an exit code in the list, or a policy that does
    /// not restart); not restarted.
    Exited,
    /// Gave up: too many quick failures, or the program cannot be started.
    Fatal,
    /// Stopped with `SIGSTOP`; continue with resume.
    Paused,
    /// A loop task between two runs.
    Idle,
    /// An external service whose state is not known yet.
    Checking,
    /// An external service whose `status` answered neither running (0) nor
    /// stopped (3); the next pass stops and starts it.
    Dirty,
}

impl ServiceState {
    /// Every state, in a fixed order.
    pub const ALL: [ServiceState; 11] = [
        ServiceState::Stopped,
        ServiceState::Starting,
        ServiceState::Running,
        ServiceState::Backoff,
        ServiceState::Stopping,
        ServiceState::Exited,
        ServiceState::Fatal,
        ServiceState::Paused,
        ServiceState::Idle,
        ServiceState::Checking,
        ServiceState::Dirty,
    ];

    /// The lowercase name used in JSON and tables.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Stopped => "stopped",
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Backoff => "backoff",
            ServiceState::Stopping => "stopping",
            ServiceState::Exited => "exited",
            ServiceState::Fatal => "fatal",
            ServiceState::Paused => "paused",
            ServiceState::Idle => "idle",
            ServiceState::Checking => "checking",
            ServiceState::Dirty => "dirty",
        }
    }
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a process ended: an exit code, or a signal. The two are never
/// confused (a shell's `128 + N` is a code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// `exit(N)`.
    Code(i32),
    /// Killed by this signal.
    Signal(Signal),
}

impl ExitStatus {
    /// Exit code 0.
    #[must_use]
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// The final status in a `waitpid` result, if it is one.
    pub(crate) fn from_wait(ws: WaitStatus) -> Option<ExitStatus> {
        match ws {
            WaitStatus::Exited(_, code) => Some(ExitStatus::Code(code)),
            WaitStatus::Signaled(_, sig, _) => Some(ExitStatus::Signal(sig)),
            _ => None,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exited with code {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by SIG{}", signal_name(*s)),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ExitRepr {
    Code(i32),
    Signal(String),
}

impl Serialize for ExitStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            ExitStatus::Code(c) => ExitRepr::Code(c),
            ExitStatus::Signal(sig) => ExitRepr::Signal(signal_name(sig).to_string()),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ExitStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match ExitRepr::deserialize(d)? {
            ExitRepr::Code(c) => Ok(ExitStatus::Code(c)),
            ExitRepr::Signal(name) => parse_signal(&name).map(ExitStatus::Signal).map_err(serde::de::Error::custom),
        }
    }
}

/// One service's status at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ServiceStatus {
    /// The service's name.
    pub name: String,
    /// Its state.
    pub state: ServiceState,
    /// The pid of its main process, if it has one.
    pub pid: Option<i32>,
    /// Seconds since its main process started, if it has one.
    pub uptime_s: Option<f64>,
    /// Seconds since it entered its current state.
    pub since_s: f64,
    /// Automatic restarts since the supervisor started.
    pub restarts: u32,
    /// The state it starts in, from its configuration.
    pub expected: Expected,
    /// Whether it is wanted up now (set by start and stop commands).
    pub wanted: Expected,
    /// How its last process ended.
    pub last_exit: Option<ExitStatus>,
    /// Why it could not be started, if it could not.
    pub error: Option<String>,
    /// Descendant processes tracked beside the main process.
    pub descendants: usize,
    /// The transcript file, when output is captured.
    #[serde(default)]
    pub transcript: Option<std::path::PathBuf>,
    /// Output bytes that could not be written to the transcript.
    #[serde(default)]
    pub dropped_bytes: u64,
    /// Bytes written to the transcript (with their timestamps and tags)
    /// since the supervisor started.
    #[serde(default)]
    pub transcript_bytes: u64,
    /// Why the transcript cannot be written now, if it cannot.
    #[serde(default)]
    pub transcript_error: Option<String>,
    /// Whether it is ready: `running` (with a ready check, once it said
    /// so or its probe passed).
    #[serde(default)]
    pub ready: bool,
    /// When it became ready (RFC 3339, UTC), while it is.
    #[serde(default)]
    pub ready_since: Option<String>,
    /// Its health check, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    /// The last try of its readiness or health probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe: Option<ProbeStatus>,
    /// The last `STATUS=` it sent over `sd_notify`.
    #[serde(default)]
    pub status_text: Option<String>,
    /// The services it waits for before it starts (its `requires` and
    /// `after` that are not ready yet).
    #[serde(default)]
    pub waiting_for: Vec<String>,
    /// Why it is in its state, when that is not `running`: what a
    /// `starting` service waits for, why it backs off or gave up, who
    /// stopped it.
    #[serde(default)]
    pub reason: Option<String>,
    /// Seconds until the next try of a service that backs off.
    #[serde(default)]
    pub next_try_in_s: Option<f64>,
    /// What only loop tasks and external services have.
    #[serde(flatten)]
    pub extra: KindStatus,
}

/// How a service's health check stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HealthStatus {
    /// `pending` (not checked since it became ready, or not ready),
    /// `healthy` (the last check passed) or `unhealthy` (it failed).
    pub state: String,
    /// Checks failed in a row.
    pub failures: u32,
    /// Checks failed since the supervisor started.
    #[serde(default)]
    pub failures_total: u64,
    /// The last check's output line.
    pub last_output: Option<String>,
}

/// How the last try of a probe went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProbeStatus {
    /// It passed.
    pub passed: bool,
    /// Its output's last line, or what happened.
    pub output: String,
    /// When it ended (RFC 3339, UTC).
    pub at: String,
}

/// The part of a [`ServiceStatus`] that only loop tasks and external
/// services have (absent from the JSON for daemons).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KindStatus {
    /// `"task"` or `"external"`; absent for daemons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A task's last finished run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<crate::model::LastRun>,
    /// A task's finished runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<u64>,
    /// A task's failed runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<u64>,
    /// Seconds until a task's next run or an external service's next
    /// check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_in_s: Option<f64>,
    /// What an external service's last check found and did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<crate::model::PassReport>,
    /// An external service's complete checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<u64>,
}

/// The supervisor's own part of a status snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SupervisorStatus {
    /// The instance name.
    pub name: String,
    /// The supervisor's pid.
    pub pid: i32,
    /// Seconds since the engine started.
    pub uptime_s: f64,
    /// State-change events that a slow subscriber did not get (see
    /// [`Engine::subscribe`](crate::Engine::subscribe)).
    #[serde(default)]
    pub events_dropped: u64,
    /// State changes of services since the engine started (the `seq` of
    /// the last [`StateChange`](crate::StateChange)).
    #[serde(default)]
    pub events_emitted: u64,
    /// Requests received on the control socket.
    #[serde(default)]
    pub control_requests: u64,
}

/// A status snapshot of a whole engine, as `status --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StatusSnapshot {
    /// The supervisor itself.
    pub supervisor: SupervisorStatus,
    /// The services, in configuration order.
    pub services: Vec<ServiceStatus>,
}

/// A duration for people, in seconds: `0.2 s`, `3 s`, `1.5 s`, `90 s`.
pub(crate) fn human_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 10.0 || (s - s.round()).abs() < 0.05 {
        format!("{} s", s.round() as u64)
    } else {
        format!("{s:.1} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_json_keeps_code_and_signal_apart() {
        let code = serde_json::to_string(&ExitStatus::Code(143)).unwrap();
        let sig = serde_json::to_string(&ExitStatus::Signal(Signal::SIGTERM)).unwrap();
        assert_eq!(code, r#"{"code":143}"#);
        assert_eq!(sig, r#"{"signal":"TERM"}"#);
        let back: ExitStatus = serde_json::from_str(&sig).unwrap();
        assert_eq!(back, ExitStatus::Signal(Signal::SIGTERM));
        assert_eq!(ExitStatus::Signal(Signal::SIGKILL).to_string(), "killed by SIGKILL");
    }
}
