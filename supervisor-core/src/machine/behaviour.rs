//! One pure state machine per service, of the kind the service is: a
//! [`Machine`] for daemons, a [`TaskMachine`] for loop tasks, an
//! [`ExternalMachine`] for services controlled by commands. They share the
//! [`Event`] and [`Action`] vocabulary, so that the engine drives them
//! alike.

use std::time::Instant;

use crate::machine::ExternalMachine;
use crate::machine::TaskMachine;
use crate::machine::{Action, Event, Machine};
use crate::model::{ExitStatus, ServiceState};
use crate::model::{Expected, Kind, Service};

/// The state machine of one service.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// A daemon.
    Daemon(Machine),
    /// A loop task.
    Task(Box<TaskMachine>),
    /// A service controlled by commands.
    External(Box<ExternalMachine>),
}

impl Behaviour {
    /// The machine for `svc`'s kind, wanting `expected`; `seed` drives a
    /// task's jitter.
    pub fn new(svc: &Service, expected: Expected, now: Instant, seed: u64) -> Behaviour {
        match &svc.kind {
            Kind::Daemon => Behaviour::Daemon(Machine::new(expected, now)),
            Kind::Task(spec) => Behaviour::Task(Box::new(TaskMachine::new((**spec).clone(), expected, now, seed))),
            Kind::External(_) => Behaviour::External(Box::new(ExternalMachine::new(expected, now))),
        }
    }

    /// Applies one event.
    pub fn handle(&mut self, svc: &Service, event: Event, now: Instant) -> Vec<Action> {
        match self {
            Behaviour::Daemon(m) => m.handle(svc, event, now),
            Behaviour::Task(m) => m.handle(svc, event, now),
            Behaviour::External(m) => m.handle(svc, event, now),
        }
    }

    /// The current state.
    pub fn state(&self) -> ServiceState {
        match self {
            Behaviour::Daemon(m) => m.state(),
            Behaviour::Task(m) => m.state(),
            Behaviour::External(m) => m.state(),
        }
    }

    /// Whether it is wanted up.
    pub fn want_up(&self) -> bool {
        match self {
            Behaviour::Daemon(m) => m.want_up(),
            Behaviour::Task(m) => m.want_up(),
            Behaviour::External(m) => m.want_up(),
        }
    }

    /// The process it has now (a task's run, an external's command).
    pub fn pid(&self) -> Option<i32> {
        match self {
            Behaviour::Daemon(m) => m.pid(),
            Behaviour::Task(m) => m.pid(),
            Behaviour::External(m) => m.pid(),
        }
    }

    /// When the main process started (daemons and task runs).
    pub fn started_at(&self) -> Option<Instant> {
        match self {
            Behaviour::Daemon(m) => m.started_at(),
            Behaviour::Task(m) => m.started_at(),
            Behaviour::External(_) => None,
        }
    }

    /// When the current state began.
    pub fn since(&self) -> Instant {
        match self {
            Behaviour::Daemon(m) => m.since(),
            Behaviour::Task(m) => m.since(),
            Behaviour::External(m) => m.since(),
        }
    }

    /// Restarts (daemons), runs (tasks) or repairs (external services).
    pub fn restarts(&self) -> u32 {
        match self {
            Behaviour::Daemon(m) => m.restarts(),
            Behaviour::Task(m) => m.runs().min(u64::from(u32::MAX)) as u32,
            Behaviour::External(m) => m.repairs().min(u64::from(u32::MAX)) as u32,
        }
    }

    /// How the last process ended.
    pub fn last_exit(&self) -> Option<ExitStatus> {
        match self {
            Behaviour::Daemon(m) => m.last_exit(),
            Behaviour::Task(m) => m.last_exit(),
            Behaviour::External(m) => m.last_exit(),
        }
    }

    /// The last error.
    pub fn error(&self) -> Option<&str> {
        match self {
            Behaviour::Daemon(m) => m.error(),
            Behaviour::Task(m) => m.error(),
            Behaviour::External(m) => m.error(),
        }
    }

    /// Whether nothing of it runs and it is at rest (a shutdown may end, a
    /// stop is complete).
    pub fn is_at_rest(&self) -> bool {
        match self {
            Behaviour::External(m) => m.is_down(),
            other => matches!(other.state(), ServiceState::Stopped | ServiceState::Exited | ServiceState::Fatal),
        }
    }

    /// Whether it is up or has given up (the next member of a group may
    /// start): not on its way anywhere.
    pub fn is_settled(&self) -> bool {
        match self {
            Behaviour::External(m) => !m.busy(),
            other => !matches!(
                other.state(),
                ServiceState::Starting | ServiceState::Stopping | ServiceState::Backoff | ServiceState::Checking
            ),
        }
    }

    /// The daemon machine, for daemons.
    pub fn daemon(&self) -> Option<&Machine> {
        match self {
            Behaviour::Daemon(m) => Some(m),
            _ => None,
        }
    }
}
