//! What may be asked of one service from outside the engine.

use std::fmt;

/// A request that changes one service: what the control socket's `start`,
/// `stop`, ... and daemontools' `svc` letters ask for, and what
/// [`Engine::command`](crate::Engine::command) and a
/// [`Handle`](crate::Handle) send.
///
/// Only these can be sent from outside: what happens to processes (spawned,
/// exited, timers) is the engine's own business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServiceRequest {
    /// Bring it up (and keep it up, restarting it as its policy says).
    Start,
    /// Bring it up if it is down, and do not restart it when it exits
    /// (daemontools' `svc -o`).
    Once,
    /// Bring it down: the stop signal, then `SIGKILL` after the stop
    /// timeout.
    Stop,
    /// Stop it if it runs, then start it.
    Restart,
    /// Suspend it with `SIGSTOP`.
    Pause,
    /// Continue it with `SIGCONT`.
    Resume,
}

impl ServiceRequest {
    /// The lowercase name, as the control protocol spells it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceRequest::Start => "start",
            ServiceRequest::Once => "once",
            ServiceRequest::Stop => "stop",
            ServiceRequest::Restart => "restart",
            ServiceRequest::Pause => "pause",
            ServiceRequest::Resume => "resume",
        }
    }
}

impl fmt::Display for ServiceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
