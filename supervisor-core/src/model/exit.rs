//! How a supervisor ends: [`ExitWhen`], and the exit code a process's end
//! stands for.

use serde::{Deserialize, Serialize};

use crate::model::ExitStatus;

/// When the engine ends by itself (see
/// [`Engine::set_exit_when`](crate::Engine::set_exit_when)). Whatever the
/// policy, a [`critical`](crate::Service::critical) service that exits
/// ends it too, and so does a shutdown (a signal, a request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ExitWhen {
    /// Run until signalled or asked to shut down (the default): a
    /// service that finishes leaves the others running.
    #[default]
    Signalled,
    /// Once every service has finished (exited, gone fatal, or is
    /// stopped and not wanted): for job containers. The worst exit code
    /// wins.
    AllExited,
}

impl ExitWhen {
    /// The name in a configuration file: `signalled`, `all-exited`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ExitWhen::Signalled => "signalled",
            ExitWhen::AllExited => "all-exited",
        }
    }

    /// Reads a name that [`as_str`](ExitWhen::as_str) gives.
    #[must_use]
    pub fn parse(text: &str) -> Option<ExitWhen> {
        [ExitWhen::Signalled, ExitWhen::AllExited].into_iter().find(|w| w.as_str() == text)
    }
}

impl ExitStatus {
    /// The exit code a shell reports for it: the code's low 8 bits, or
    /// `128 + N` after signal N.
    #[must_use]
    pub fn shell_code(self) -> u8 {
        match self {
            ExitStatus::Code(c) => (c & 0xff) as u8,
            ExitStatus::Signal(s) => 128u8.saturating_add(s as u8),
        }
    }
}

#[cfg(test)]
mod tests {
    use nix::sys::signal::Signal;

    use super::*;

    #[test]
    fn shell_codes_are_what_a_shell_says() {
        assert_eq!(ExitStatus::Code(0).shell_code(), 0);
        assert_eq!(ExitStatus::Code(3).shell_code(), 3);
        assert_eq!(ExitStatus::Code(256 + 7).shell_code(), 7);
        assert_eq!(ExitStatus::Signal(Signal::SIGTERM).shell_code(), 143);
        assert_eq!(ExitStatus::Signal(Signal::SIGKILL).shell_code(), 137);
    }

    #[test]
    fn names_read_back() {
        for w in [ExitWhen::Signalled, ExitWhen::AllExited] {
            assert_eq!(ExitWhen::parse(w.as_str()), Some(w));
        }
        assert_eq!(ExitWhen::parse("all_exited"), None);
    }
}
