//! The pure state machines: one per service, fed [`Event`]s, answering
//! with [`Action`]s; no clock, no I/O.

use std::time::Instant;

use nix::sys::signal::Signal;

use crate::model::{ExitStatus, ServiceRequest};

mod backoff;
mod behaviour;
mod daemon;
mod external;
mod task;
#[cfg(test)]
mod tests;

pub(crate) use backoff::{Backoff, Decision};
pub(crate) use behaviour::Behaviour;
pub(crate) use daemon::Machine;
pub(crate) use external::ExternalMachine;
pub(crate) use task::TaskMachine;

/// Something that happened to a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Command: bring it up.
    Start,
    /// Command: bring it up if it is down, and do not restart it when it
    /// exits (daemontools' `svc -o`).
    Once,
    /// Command: bring it down.
    Stop,
    /// Command: stop it if it runs, then start it.
    Restart,
    /// Command: suspend it with `SIGSTOP`.
    Pause,
    /// Command: continue it with `SIGCONT`.
    Resume,
    /// The engine forked the process asked for by [`Action::Spawn`].
    Spawned {
        /// The new main process.
        pid: i32,
    },
    /// [`Action::Spawn`] failed before or during `exec`.
    SpawnFailed {
        /// What went wrong, for the status.
        error: String,
        /// A passing condition (fork found no memory or pids): retry with
        /// backoff. Otherwise (missing program, bad user) give up at once.
        transient: bool,
    },
    /// The main process was reaped.
    Exited {
        /// How it ended.
        status: ExitStatus,
        /// Descendants of it are still alive.
        leftovers: bool,
    },
    /// The main process went to the background: `pid`, a descendant it
    /// left, is the main process from now on.
    Adopted {
        /// The new main process.
        pid: i32,
    },
    /// The main process is reaped and no descendant is left.
    AllGone,
    /// The service is ready: it said so, or its readiness probe passed
    /// (daemons with [`Service::ready`](crate::Service::ready)).
    Ready,
    /// It failed its health check or missed its watchdog: restart it.
    Unhealthy {
        /// Why, for the status.
        reason: String,
    },
    /// The deadline from the last [`Action::ArmTimer`] passed.
    Timer,
    /// Command: find out the state now and repair it (external services;
    /// ignored by the others).
    Check,
    /// The answer to [`Action::FindPattern`] or [`Action::KillPattern`]:
    /// how many processes match the service's pattern.
    Found {
        /// Matching processes (before the signal, for `KillPattern`).
        count: usize,
    },
}

/// Something the engine must do for a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Fork and exec the service; answer with [`Event::Spawned`] or
    /// [`Event::SpawnFailed`].
    Spawn,
    /// Send a signal to the main process, its process group and every
    /// tracked descendant.
    Signal(Signal),
    /// Wake the machine with [`Event::Timer`] at this instant (replaces any
    /// armed timer).
    ArmTimer(Instant),
    /// Forget the armed timer.
    CancelTimer,
    /// Fork and exec this command of the service (external services),
    /// with the service's environment, user and directory, its output
    /// logged; answer as for [`Action::Spawn`].
    Run(Vec<String>),
    /// Count the processes whose command line matches the service's
    /// pattern; answer with [`Event::Found`].
    FindPattern,
    /// Send this signal to the processes that match the service's pattern;
    /// answer with [`Event::Found`].
    KillPattern(Signal),
}

impl From<ServiceRequest> for Event {
    fn from(r: ServiceRequest) -> Event {
        match r {
            ServiceRequest::Start => Event::Start,
            ServiceRequest::Once => Event::Once,
            ServiceRequest::Stop => Event::Stop,
            ServiceRequest::Restart => Event::Restart,
            ServiceRequest::Pause => Event::Pause,
            ServiceRequest::Resume => Event::Resume,
        }
    }
}
