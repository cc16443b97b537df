//! The pure state machine of one service.
//!
//! [`Machine::handle`] takes an [`Event`] (a command, a process that was
//! spawned or exited, a timer that fired) and the current time, changes the
//! state and returns the [`Action`]s the engine must carry out. It performs
//! no I/O and reads no clock, so every transition is tested without
//! processes or sleeping.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{Action, Event};
use crate::machine::{Backoff, Decision};
use crate::model::{ExitStatus, Expected, Service, ServiceState};

/// What follows once a stop (or the clean-up after a death) is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Rest(ServiceState),
    Spawn,
    Backoff(Duration),
}

/// One service's state and history.
#[derive(Debug, Clone)]
pub struct Machine {
    state: ServiceState,
    want_up: bool,
    pid: Option<i32>,
    started_at: Option<Instant>,
    since: Instant,
    restarts: u32,
    last_exit: Option<ExitStatus>,
    error: Option<String>,
    /// Why the process before this one was stopped or failed, until this
    /// one is running.
    previous_error: Option<String>,
    backoff: Backoff,
    then: Then,
    killed: bool,
    leader_alive: bool,
    exec_failed: bool,
    once: bool,
}

/// Shorthand for the actions of one transition.
type Actions = Vec<Action>;

impl Machine {
    /// A machine in state `stopped`, wanting the given state. Feed it
    /// [`Event::Start`] to begin when `expected` is running.
    pub fn new(expected: Expected, now: Instant) -> Machine {
        Machine {
            state: ServiceState::Stopped,
            want_up: expected == Expected::Running,
            pid: None,
            started_at: None,
            since: now,
            restarts: 0,
            last_exit: None,
            error: None,
            previous_error: None,
            backoff: Backoff::default(),
            then: Then::Rest(ServiceState::Stopped),
            killed: false,
            leader_alive: false,
            exec_failed: false,
            once: false,
        }
    }

    /// The current state.
    pub fn state(&self) -> ServiceState {
        self.state
    }
    /// Whether it is wanted up.
    pub fn want_up(&self) -> bool {
        self.want_up
    }
    /// The main process, while it lives.
    pub fn pid(&self) -> Option<i32> {
        self.pid
    }
    /// When the main process was spawned.
    pub fn started_at(&self) -> Option<Instant> {
        self.started_at
    }
    /// When the current state began.
    pub fn since(&self) -> Instant {
        self.since
    }
    /// Automatic restarts so far.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }
    /// How the last process ended.
    pub fn last_exit(&self) -> Option<ExitStatus> {
        self.last_exit
    }
    /// The last start error.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
    /// Why the process before the current one ended, while the current
    /// one is not running yet (a failed health check, not ready in time).
    pub fn previous_error(&self) -> Option<&str> {
        self.previous_error.as_deref()
    }
    /// The backoff state.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    fn enter(&mut self, state: ServiceState, now: Instant) {
        if state == ServiceState::Running {
            self.previous_error = None;
        }
        if self.state != state {
            self.state = state;
            self.since = now;
        }
    }

    /// Applies one event and returns what the engine must do.
    pub fn handle(&mut self, svc: &Service, event: Event, now: Instant) -> Actions {
        use ServiceState as S;
        if matches!(event, Event::Start | Event::Stop | Event::Restart) {
            self.once = false;
        }
        match (event, self.state) {
            (Event::Once, S::Starting | S::Running | S::Paused) => {
                self.once = true;
                Vec::new()
            }
            (Event::Once, _) => {
                let actions = self.handle(svc, Event::Start, now);
                self.once = true;
                actions
            }
            // (Idle, Checking and Dirty belong to other kinds of services.)
            (Event::Start, S::Stopped | S::Exited | S::Fatal | S::Backoff | S::Idle | S::Checking | S::Dirty) => {
                self.want_up = true;
                self.backoff.reset();
                self.error = None;
                self.spawn(now)
            }
            (Event::Start, S::Stopping) => {
                self.want_up = true;
                self.backoff.reset();
                self.then = Then::Spawn;
                Vec::new()
            }
            (Event::Start, S::Paused) => self.handle(svc, Event::Resume, now),
            (Event::Start, S::Starting | S::Running) => {
                self.want_up = true;
                Vec::new()
            }

            (Event::Stop, S::Starting) if self.pid.is_none() => {
                // The spawn was held back (a finish script still runs).
                self.want_up = false;
                self.enter(S::Stopped, now);
                vec![Action::CancelTimer]
            }
            (Event::Stop, S::Starting | S::Running | S::Paused) => {
                self.want_up = false;
                self.begin_stop(svc, Then::Rest(S::Stopped), now)
            }
            (Event::Stop, S::Stopping) => {
                self.want_up = false;
                Vec::new()
            }
            (Event::Stop, S::Backoff) => {
                self.want_up = false;
                self.enter(S::Stopped, now);
                vec![Action::CancelTimer]
            }
            (Event::Stop, S::Stopped | S::Exited | S::Fatal | S::Idle | S::Checking | S::Dirty) => {
                self.want_up = false;
                self.enter(S::Stopped, now);
                Vec::new()
            }

            (Event::Restart, S::Starting | S::Running | S::Paused) => {
                self.want_up = true;
                self.backoff.reset();
                self.begin_stop(svc, Then::Spawn, now)
            }
            (Event::Restart, S::Stopping) => {
                self.want_up = true;
                self.then = Then::Spawn;
                Vec::new()
            }
            (Event::Restart, _) => self.handle(svc, Event::Start, now),

            (Event::Pause, S::Starting | S::Running) => {
                self.enter(S::Paused, now);
                vec![Action::CancelTimer, Action::Signal(Signal::SIGSTOP)]
            }
            (Event::Pause, _) => Vec::new(),
            (Event::Resume, S::Paused) => {
                self.enter(S::Running, now);
                vec![Action::Signal(Signal::SIGCONT)]
            }
            (Event::Resume, _) => Vec::new(),

            (Event::Spawned { pid }, S::Starting) => {
                self.pid = Some(pid);
                self.started_at = Some(now);
                self.leader_alive = true;
                self.exec_failed = false;
                // The start went through; an exec failure follows at once.
                self.previous_error = self.error.take().or(self.previous_error.take());
                // Running once ready, or once it stayed up for min_uptime.
                let wait = svc.ready.as_ref().map_or(svc.restart.min_uptime, |r| r.timeout);
                vec![Action::ArmTimer(now + wait)]
            }
            (Event::SpawnFailed { error, transient }, S::Starting) => {
                self.error = Some(error);
                if self.pid.is_some() {
                    // The child exists and will exit 127; decide then.
                    self.exec_failed = !transient;
                    return Vec::new();
                }
                if transient {
                    let decision = self.backoff.on_exit(&svc.restart, ExitStatus::Code(127), Duration::ZERO);
                    self.after_death(svc, decision, now)
                } else {
                    self.enter(S::Fatal, now);
                    vec![Action::CancelTimer]
                }
            }
            (Event::Spawned { .. } | Event::SpawnFailed { .. }, _) => Vec::new(),

            (Event::Exited { status, leftovers }, S::Starting | S::Running | S::Paused) => {
                self.last_exit = Some(status);
                self.leader_alive = false;
                self.pid = None;
                let ran_for = self.started_at.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                let decision = if self.exec_failed {
                    Decision::GiveUp
                } else {
                    self.backoff.on_exit(&svc.restart, status, ran_for)
                };
                if std::mem::take(&mut self.once) {
                    // Once: not restarted, whatever the exit.
                    self.want_up = false;
                }
                if !self.want_up {
                    if leftovers {
                        return self.begin_stop(svc, Then::Rest(S::Stopped), now);
                    }
                    return self.finish_stop(svc, now);
                }
                if leftovers {
                    let then = match decision {
                        Decision::RestartNow => Then::Spawn,
                        Decision::RestartAfter(d) => Then::Backoff(d),
                        Decision::Finished => Then::Rest(S::Exited),
                        Decision::GiveUp => Then::Rest(S::Fatal),
                    };
                    if matches!(then, Then::Spawn | Then::Backoff(_)) {
                        self.restarts += 1;
                    }
                    return self.begin_stop(svc, then, now);
                }
                self.after_death(svc, decision, now)
            }
            (Event::Exited { status, leftovers }, S::Stopping) => {
                self.last_exit = Some(status);
                self.leader_alive = false;
                self.pid = None;
                if leftovers {
                    Vec::new()
                } else {
                    self.finish_stop(svc, now)
                }
            }
            (Event::Exited { .. }, _) => Vec::new(),

            (Event::Adopted { pid }, S::Starting | S::Running | S::Paused | S::Stopping) => {
                self.pid = Some(pid);
                self.leader_alive = true;
                Vec::new()
            }
            (Event::Adopted { .. }, _) => Vec::new(),

            (Event::AllGone, S::Stopping) if !self.leader_alive => self.finish_stop(svc, now),
            (Event::AllGone, _) => Vec::new(),

            (Event::Timer, S::Starting) if svc.ready.is_some() && self.pid.is_some() => {
                let timeout = svc.ready.as_ref().map_or(Duration::ZERO, |r| r.timeout);
                self.error = Some(format!("not ready after {}", crate::model::human_secs(timeout)));
                let decision = self.backoff.on_quick_failure(&svc.restart);
                self.stop_for_restart(svc, decision, now)
            }
            (Event::Timer, S::Starting) if svc.ready.is_none() => {
                self.enter(S::Running, now);
                self.error = None;
                Vec::new()
            }
            (Event::Ready, S::Starting) if svc.ready.is_some() && self.pid.is_some() => {
                self.enter(S::Running, now);
                self.error = None;
                vec![Action::CancelTimer]
            }
            (Event::Ready, _) => Vec::new(),
            (Event::Unhealthy { reason }, S::Running) => {
                self.error = Some(reason);
                // Backed off as an exit would be, so that a check that
                // keeps failing soon after each start does not loop.
                let ran_for = self.started_at.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                let decision = self.backoff.on_restart(&svc.restart, ran_for);
                self.stop_for_restart(svc, decision, now)
            }
            (Event::Unhealthy { .. }, _) => Vec::new(),
            (Event::Timer, S::Backoff) => self.spawn(now),
            (Event::Timer, S::Stopping) if !self.killed => {
                self.killed = true;
                vec![Action::Signal(Signal::SIGKILL)]
            }
            (Event::Timer, _) => Vec::new(),
            (Event::Check | Event::Found { .. }, _) => Vec::new(),
        }
    }

    fn spawn(&mut self, now: Instant) -> Actions {
        self.enter(ServiceState::Starting, now);
        self.since = now;
        self.pid = None;
        self.started_at = None;
        vec![Action::CancelTimer, Action::Spawn]
    }

    /// Stops the live process for a restart the supervisor decided (not
    /// ready in time, unhealthy): what follows is the backoff's
    /// `decision`, counted as a restart unless it gives up.
    fn stop_for_restart(&mut self, svc: &Service, decision: Decision, now: Instant) -> Actions {
        let then = match decision {
            Decision::GiveUp => Then::Rest(ServiceState::Fatal),
            Decision::RestartAfter(d) => Then::Backoff(d),
            Decision::RestartNow | Decision::Finished => Then::Spawn,
        };
        if matches!(then, Then::Spawn | Then::Backoff(_)) {
            self.restarts += 1;
        }
        self.begin_stop(svc, then, now)
    }

    fn begin_stop(&mut self, svc: &Service, then: Then, now: Instant) -> Actions {
        self.then = then;
        self.killed = false;
        self.enter(ServiceState::Stopping, now);
        let mut actions = vec![Action::Signal(svc.stop_signal)];
        if svc.stop_signal != Signal::SIGCONT && svc.stop_signal != Signal::SIGKILL {
            // A paused (or externally stopped) process must run to act on it.
            actions.push(Action::Signal(Signal::SIGCONT));
        }
        actions.push(Action::ArmTimer(now + svc.stop_timeout));
        actions
    }

    fn finish_stop(&mut self, svc: &Service, now: Instant) -> Actions {
        self.leader_alive = false;
        self.pid = None;
        let then = std::mem::replace(&mut self.then, Then::Rest(ServiceState::Stopped));
        if !self.want_up {
            self.enter(ServiceState::Stopped, now);
            return vec![Action::CancelTimer];
        }
        match then {
            Then::Spawn => self.spawn(now),
            Then::Backoff(d) => {
                self.enter(ServiceState::Backoff, now);
                vec![Action::ArmTimer(now + self.jittered(svc, d))]
            }
            Then::Rest(s) => {
                self.enter(s, now);
                vec![Action::CancelTimer]
            }
        }
    }

    /// The delay of the current backoff, as the timer was armed with it.
    pub fn backoff_delay(&self, svc: &Service) -> Duration {
        self.jittered(svc, self.backoff.delay())
    }

    /// A backoff delay, jittered for this service and round
    /// ([`backoff::jittered`](super::backoff::jittered)) unless its policy
    /// says not to.
    fn jittered(&self, svc: &Service, d: Duration) -> Duration {
        if svc.restart.jitter {
            super::backoff::jittered(d, &svc.name, self.restarts)
        } else {
            d
        }
    }

    fn after_death(&mut self, svc: &Service, decision: Decision, now: Instant) -> Actions {
        match decision {
            Decision::RestartNow => {
                self.restarts += 1;
                self.spawn(now)
            }
            Decision::RestartAfter(d) => {
                self.restarts += 1;
                self.enter(ServiceState::Backoff, now);
                vec![Action::ArmTimer(now + self.jittered(svc, d))]
            }
            Decision::Finished => {
                self.enter(ServiceState::Exited, now);
                vec![Action::CancelTimer]
            }
            Decision::GiveUp => {
                self.enter(ServiceState::Fatal, now);
                vec![Action::CancelTimer]
            }
        }
    }
}

#[cfg(test)]
mod tests;
