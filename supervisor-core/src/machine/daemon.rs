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
    /// The backoff state.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    fn enter(&mut self, state: ServiceState, now: Instant) {
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
                self.error = None;
                vec![Action::ArmTimer(now + svc.restart.min_uptime)]
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

            (Event::Timer, S::Starting) => {
                self.enter(S::Running, now);
                self.error = None;
                Vec::new()
            }
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

    /// A backoff delay, jittered for this service and round
    /// ([`backoff::jittered`](super::backoff::jittered)).
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
mod tests {
    use super::*;
    use crate::model::Command;
    use crate::model::ServiceState as S;

    struct Rig {
        svc: Service,
        m: Machine,
        now: Instant,
    }

    impl Rig {
        fn new() -> Rig {
            let now = Instant::now();
            let svc = Service::new("t", Command::Argv(vec!["true".into()]));
            Rig { m: Machine::new(Expected::Running, now), svc, now }
        }
        fn at(&mut self, ms: u64) -> &mut Rig {
            self.now += Duration::from_millis(ms);
            self
        }
        fn ev(&mut self, e: Event) -> Actions {
            self.m.handle(&self.svc, e, self.now)
        }
        fn up(&mut self, pid: i32) {
            assert_eq!(self.ev(Event::Start), vec![Action::CancelTimer, Action::Spawn]);
            let a = self.ev(Event::Spawned { pid });
            assert_eq!(a, vec![Action::ArmTimer(self.now + Duration::from_secs(1))]);
            assert_eq!(self.m.state(), S::Starting);
        }
    }

    fn exited(code: i32) -> Event {
        Event::Exited { status: ExitStatus::Code(code), leftovers: false }
    }

    #[test]
    fn starting_becomes_running_after_min_uptime() {
        let mut r = Rig::new();
        r.up(10);
        r.at(1000);
        assert!(r.ev(Event::Timer).is_empty());
        assert_eq!(r.m.state(), S::Running);
        assert_eq!(r.m.pid(), Some(10));
    }

    #[test]
    fn long_run_restarts_at_once_and_counts() {
        let mut r = Rig::new();
        r.up(10);
        r.at(1000).ev(Event::Timer);
        r.at(5000);
        assert_eq!(r.ev(exited(1)), vec![Action::CancelTimer, Action::Spawn]);
        assert_eq!(r.m.state(), S::Starting);
        assert_eq!(r.m.restarts(), 1);
        assert_eq!(r.m.last_exit(), Some(ExitStatus::Code(1)));
    }

    #[test]
    fn quick_deaths_back_off_then_fatal() {
        let mut r = Rig::new();
        r.svc.restart.backoff_limit = Duration::from_secs(2);
        r.up(10);
        let a = r.at(10).ev(exited(1));
        // The delays are 1 s, then 2 s, each less its jitter (at most a quarter).
        let jittered = |r: &Rig, secs| crate::machine::jittered(Duration::from_secs(secs), &r.svc.name, r.m.restarts());
        assert_eq!(a, vec![Action::ArmTimer(r.now + jittered(&r, 1))]);
        assert_eq!(r.m.state(), S::Backoff);
        assert_eq!(r.at(1000).ev(Event::Timer), vec![Action::CancelTimer, Action::Spawn]);
        r.ev(Event::Spawned { pid: 11 });
        let a = r.at(10).ev(exited(1));
        assert_eq!(a, vec![Action::ArmTimer(r.now + jittered(&r, 2))]);
        r.at(2000).ev(Event::Timer);
        r.ev(Event::Spawned { pid: 12 });
        assert_eq!(r.at(10).ev(exited(1)), vec![Action::CancelTimer]);
        assert_eq!(r.m.state(), S::Fatal);
        // An explicit start forgets the failures.
        assert_eq!(r.ev(Event::Start), vec![Action::CancelTimer, Action::Spawn]);
        assert_eq!(r.m.backoff().failures(), 0);
    }

    #[test]
    fn exit_code_in_list_is_finished() {
        let mut r = Rig::new();
        r.svc.restart.exit_codes = vec![0];
        r.up(10);
        assert_eq!(r.at(10).ev(exited(0)), vec![Action::CancelTimer]);
        assert_eq!(r.m.state(), S::Exited);
    }

    #[test]
    fn stop_signals_then_kills_after_timeout() {
        let mut r = Rig::new();
        r.up(10);
        let a = r.ev(Event::Stop);
        let deadline = r.now + Duration::from_secs(10);
        assert_eq!(
            a,
            vec![Action::Signal(Signal::SIGTERM), Action::Signal(Signal::SIGCONT), Action::ArmTimer(deadline)]
        );
        assert_eq!(r.m.state(), S::Stopping);
        assert_eq!(r.at(10_000).ev(Event::Timer), vec![Action::Signal(Signal::SIGKILL)]);
        assert!(r.ev(Event::Timer).is_empty(), "KILL is sent once");
        let a = r.ev(Event::Exited { status: ExitStatus::Signal(Signal::SIGKILL), leftovers: false });
        assert_eq!(a, vec![Action::CancelTimer]);
        assert_eq!(r.m.state(), S::Stopped);
        assert!(!r.m.want_up());
        assert_eq!(r.m.restarts(), 0);
    }

    #[test]
    fn stopped_only_when_descendants_are_gone() {
        let mut r = Rig::new();
        r.up(10);
        r.ev(Event::Stop);
        let a = r.ev(Event::Exited { status: ExitStatus::Code(0), leftovers: true });
        assert!(a.is_empty());
        assert_eq!(r.m.state(), S::Stopping);
        assert_eq!(r.m.pid(), None);
        assert_eq!(r.ev(Event::AllGone), vec![Action::CancelTimer]);
        assert_eq!(r.m.state(), S::Stopped);
    }

    #[test]
    fn death_with_leftovers_cleans_up_before_restart() {
        let mut r = Rig::new();
        r.up(10);
        r.at(1000).ev(Event::Timer);
        r.at(2000);
        let a = r.ev(Event::Exited { status: ExitStatus::Code(1), leftovers: true });
        assert_eq!(a[0], Action::Signal(Signal::SIGTERM));
        assert_eq!(r.m.state(), S::Stopping);
        assert_eq!(r.ev(Event::AllGone), vec![Action::CancelTimer, Action::Spawn]);
        assert_eq!(r.m.state(), S::Starting);
    }

    #[test]
    fn restart_stops_then_spawns() {
        let mut r = Rig::new();
        r.up(10);
        r.ev(Event::Restart);
        assert_eq!(r.m.state(), S::Stopping);
        let a = r.ev(Event::Exited { status: ExitStatus::Signal(Signal::SIGTERM), leftovers: false });
        assert_eq!(a, vec![Action::CancelTimer, Action::Spawn]);
        // A start while stopping also leads to a spawn.
        r.ev(Event::Spawned { pid: 11 });
        r.ev(Event::Stop);
        r.ev(Event::Start);
        assert_eq!(r.ev(exited(0)), vec![Action::CancelTimer, Action::Spawn]);
    }

    #[test]
    fn stop_in_backoff_cancels_the_timer() {
        let mut r = Rig::new();
        r.up(10);
        r.at(10).ev(exited(1));
        assert_eq!(r.ev(Event::Stop), vec![Action::CancelTimer]);
        assert_eq!(r.m.state(), S::Stopped);
        assert!(r.ev(Event::Timer).is_empty());
        assert_eq!(r.m.state(), S::Stopped);
    }

    #[test]
    fn exec_failure_is_fatal_with_its_error() {
        let mut r = Rig::new();
        r.up(10);
        r.ev(Event::SpawnFailed { error: "exec nope: No such file".into(), transient: false });
        assert_eq!(r.m.state(), S::Starting);
        r.at(1).ev(exited(127));
        assert_eq!(r.m.state(), S::Fatal);
        assert_eq!(r.m.error(), Some("exec nope: No such file"));
        // Without a child at all, failure is immediate.
        let mut r = Rig::new();
        r.ev(Event::Start);
        r.ev(Event::SpawnFailed { error: "no user x".into(), transient: false });
        assert_eq!(r.m.state(), S::Fatal);
        // A transient fork failure backs off.
        let mut r = Rig::new();
        r.ev(Event::Start);
        r.ev(Event::SpawnFailed { error: "fork: EAGAIN".into(), transient: true });
        assert_eq!(r.m.state(), S::Backoff);
    }

    #[test]
    fn once_runs_it_and_does_not_restart() {
        let mut r = Rig::new();
        assert_eq!(r.ev(Event::Once), vec![Action::CancelTimer, Action::Spawn]);
        r.ev(Event::Spawned { pid: 10 });
        r.at(5000);
        assert_eq!(r.ev(exited(0)), vec![Action::CancelTimer]);
        assert_eq!(r.m.state(), S::Stopped);
        assert!(!r.m.want_up());
        // Once on a running service: it runs on, but is not restarted.
        r.ev(Event::Start);
        r.ev(Event::Spawned { pid: 11 });
        assert!(r.ev(Event::Once).is_empty());
        assert_eq!(r.at(5000).ev(exited(1)), vec![Action::CancelTimer]);
        assert_eq!(r.m.state(), S::Stopped);
        // A start clears it.
        r.ev(Event::Once);
        r.ev(Event::Spawned { pid: 12 });
        r.ev(Event::Start);
        assert_eq!(r.at(5000).ev(exited(1)), vec![Action::CancelTimer, Action::Spawn]);
    }

    #[test]
    fn an_adopted_process_becomes_the_main_one() {
        let mut r = Rig::new();
        r.up(10);
        assert!(r.ev(Event::Adopted { pid: 20 }).is_empty());
        assert_eq!((r.m.state(), r.m.pid()), (S::Starting, Some(20)));
        r.ev(Event::Stop);
        let a = r.ev(Event::Exited { status: ExitStatus::Signal(Signal::SIGTERM), leftovers: false });
        assert_eq!(a, vec![Action::CancelTimer]);
        assert_eq!(r.m.state(), S::Stopped);
    }

    #[test]
    fn stop_while_the_spawn_is_held_back() {
        let mut r = Rig::new();
        r.ev(Event::Start);
        assert_eq!(r.ev(Event::Stop), vec![Action::CancelTimer]);
        assert_eq!(r.m.state(), S::Stopped);
    }

    #[test]
    fn pause_and_resume() {
        let mut r = Rig::new();
        r.up(10);
        assert_eq!(r.ev(Event::Pause), vec![Action::CancelTimer, Action::Signal(Signal::SIGSTOP)]);
        assert_eq!(r.m.state(), S::Paused);
        assert_eq!(r.ev(Event::Resume), vec![Action::Signal(Signal::SIGCONT)]);
        assert_eq!(r.m.state(), S::Running);
    }

    #[test]
    fn expected_stopped_waits_for_start() {
        let now = Instant::now();
        let m = Machine::new(Expected::Stopped, now);
        assert!(!m.want_up());
        assert_eq!(m.state(), S::Stopped);
    }
}
