//! When to restart a service, and how long to wait first.
//!
//! The backoff follows zdaemon: a run that lasted at least
//! [`RestartPolicy::min_uptime`] is restarted at once; a quicker death waits
//! one second more than the previous one (1 s, 2 s, ...); a failure whose
//! delay would pass [`RestartPolicy::backoff_limit`] makes the service
//! `fatal`, or, with [`RestartPolicy::forever`], keeps retrying at the
//! limit. A run longer than the limit resets the delay.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::ExitStatus;

/// Which exits lead to a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RestartMode {
    /// Restart after every exit not in the exit-code list (the default).
    #[default]
    Always,
    /// Restart after a non-zero exit code or a death by signal.
    OnFailure,
    /// Never restart.
    Never,
}

impl fmt::Display for RestartMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RestartMode::Always => "always",
            RestartMode::OnFailure => "on-failure",
            RestartMode::Never => "never",
        })
    }
}

/// When and how fast a service is restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestartPolicy {
    /// Which exits restart.
    pub mode: RestartMode,
    /// Exit codes that mean "finished on purpose": never restarted.
    pub exit_codes: Vec<i32>,
    /// A run at least this long counts as a success and restarts at once.
    pub min_uptime: Duration,
    /// The longest delay between quick failures; also the run length that
    /// resets the delay.
    pub backoff_limit: Duration,
    /// How much the delay grows with each quick failure.
    pub backoff_step: Duration,
    /// Keep retrying at the limit instead of giving up.
    pub forever: bool,
    /// Shorten each backoff delay by up to a quarter, by an amount that
    /// depends on the service's name and the round, so that services that
    /// fail together do not all restart in the same instant (on by
    /// default; service directories turn it off, to keep daemontools' "at
    /// most once a second").
    pub jitter: bool,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            mode: RestartMode::Always,
            exit_codes: Vec::new(),
            min_uptime: Duration::from_secs(1),
            backoff_limit: Duration::from_secs(10),
            backoff_step: Duration::from_secs(1),
            forever: false,
            jitter: true,
        }
    }
}

impl RestartPolicy {
    /// Whether this exit calls for a restart at all.
    #[must_use]
    pub fn wants_restart(&self, exit: ExitStatus) -> bool {
        if let ExitStatus::Code(c) = exit {
            if self.exit_codes.contains(&c) {
                return false;
            }
        }
        match self.mode {
            RestartMode::Always => true,
            RestartMode::OnFailure => !exit.success(),
            RestartMode::Never => false,
        }
    }
}
