//! Loop tasks (atomservice): how often a command runs, and what the status
//! shows of its last run.

use std::time::Duration;

use serde::Serialize;

use crate::model::ExitStatus;

/// When and for how long a task runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskSpec {
    /// From the start of one run to the start of the next.
    pub interval: Duration,
    /// A run still going after this long is stopped and counts as failed.
    pub timeout: Option<Duration>,
    /// Each run starts after a further random delay in `[0, jitter)`, so
    /// that many tasks with one interval do not all run at once.
    pub jitter: Duration,
}

impl TaskSpec {
    /// A task run every `interval`, without timeout or jitter.
    #[must_use]
    pub fn every(interval: Duration) -> TaskSpec {
        TaskSpec { interval, timeout: None, jitter: Duration::ZERO }
    }
}

/// The last run of a task, as the status shows it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct LastRun {
    /// When it started (RFC 3339, UTC).
    pub started: String,
    /// How long it ran, in seconds (so far, while it runs).
    pub duration_s: f64,
    /// How it ended; `None` when it could not be started.
    pub exit: Option<ExitStatus>,
    /// It ran past its timeout.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    /// Why it could not be started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
