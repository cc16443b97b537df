//! Loop tasks: a command run every `interval`, as atomservice runs its
//! tasks.
//!
//! [`TaskMachine`] is pure, like [`Machine`](crate::machine::Machine): it
//! takes the same [`Event`]s and returns the same [`Action`]s, and reads
//! no clock. Runs never overlap: the next run is due `interval` after the
//! start of the previous one, or at once when a run took longer than that.
//! A run that outlives its `timeout` is stopped like a service (stop signal
//! to its group, `SIGKILL` after `stop_timeout`) and counted as a failure.

use std::time::{Duration, Instant};

use super::{Action, Event};
use crate::model::{ExitStatus, Expected, Service, ServiceState, TaskSpec};
use nix::sys::signal::Signal;

/// How one run went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// When it started.
    pub started: Instant,
    /// How long it ran.
    pub duration: Duration,
    /// How it ended: `None` when it could not be started.
    pub exit: Option<ExitStatus>,
    /// It was stopped because it ran past its timeout.
    pub timed_out: bool,
    /// Why it could not be started.
    pub error: Option<String>,
}

impl RunRecord {
    /// Whether the run succeeded: started, exit code 0, within its timeout.
    pub fn success(&self) -> bool {
        !self.timed_out && self.exit.is_some_and(ExitStatus::success)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Disabled.
    Stopped,
    /// Waiting for the next run.
    Idle,
    /// A run goes on.
    Running,
    /// A run ended (or timed out, or is being stopped) and its process
    /// group is being stopped.
    Cleaning,
}

/// One task's schedule and history.
#[derive(Debug, Clone)]
pub struct TaskMachine {
    spec: TaskSpec,
    phase: Phase,
    want_up: bool,
    since: Instant,
    pid: Option<i32>,
    leader_alive: bool,
    run_started: Option<Instant>,
    next_run: Option<Instant>,
    timed_out: bool,
    killed: bool,
    last: Option<RunRecord>,
    runs: u64,
    failures: u64,
    rng: u64,
    exec_error: Option<String>,
}

impl TaskMachine {
    /// A stopped task; feed it [`Event::Start`] to begin when `expected`
    /// is running. `seed` drives the jitter (any value; the engine uses
    /// the name and the pid, tests a constant).
    pub fn new(spec: TaskSpec, expected: Expected, now: Instant, seed: u64) -> TaskMachine {
        TaskMachine {
            spec,
            phase: Phase::Stopped,
            want_up: expected == Expected::Running,
            since: now,
            pid: None,
            leader_alive: false,
            run_started: None,
            next_run: None,
            timed_out: false,
            killed: false,
            last: None,
            runs: 0,
            failures: 0,
            rng: seed | 1,
            exec_error: None,
        }
    }

    /// The state: `idle` between runs, `running` during one, `stopping`
    /// while a run's processes are being stopped, `stopped` when disabled.
    pub fn state(&self) -> ServiceState {
        match self.phase {
            Phase::Stopped => ServiceState::Stopped,
            Phase::Idle => ServiceState::Idle,
            Phase::Running => ServiceState::Running,
            Phase::Cleaning => ServiceState::Stopping,
        }
    }
    /// Whether it is enabled.
    pub fn want_up(&self) -> bool {
        self.want_up
    }
    /// The process of the current run.
    pub fn pid(&self) -> Option<i32> {
        self.pid
    }
    /// When the current run started.
    pub fn started_at(&self) -> Option<Instant> {
        self.run_started.filter(|_| self.phase == Phase::Running)
    }
    /// When the current state began.
    pub fn since(&self) -> Instant {
        self.since
    }
    /// When the next run is due (while idle).
    pub fn next_run(&self) -> Option<Instant> {
        self.next_run.filter(|_| self.phase == Phase::Idle)
    }
    /// The last finished run.
    pub fn last(&self) -> Option<&RunRecord> {
        self.last.as_ref()
    }
    /// Runs finished so far (failed ones included).
    pub fn runs(&self) -> u64 {
        self.runs
    }
    /// Runs that failed: not started, a non-zero exit, a signal, a timeout.
    pub fn failures(&self) -> u64 {
        self.failures
    }
    /// The error of the last run, if it could not be started.
    pub fn error(&self) -> Option<&str> {
        self.last.as_ref().and_then(|r| r.error.as_deref())
    }
    /// How the last run ended.
    pub fn last_exit(&self) -> Option<ExitStatus> {
        self.last.as_ref().and_then(|r| r.exit)
    }

    fn enter(&mut self, phase: Phase, now: Instant) {
        if self.phase != phase {
            self.phase = phase;
            self.since = now;
        }
    }

    /// A random delay in `[0, jitter)` (xorshift; not for cryptography).
    fn jitter(&mut self) -> Duration {
        let j = self.spec.jitter.as_nanos() as u64;
        if j == 0 {
            return Duration::ZERO;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        Duration::from_nanos(self.rng % j)
    }

    /// Waits for the next run: `interval` after the start of the last one,
    /// at once if that has passed, plus jitter.
    fn schedule(&mut self, now: Instant) -> Vec<Action> {
        if !self.want_up {
            self.enter(Phase::Stopped, now);
            return vec![Action::CancelTimer];
        }
        let due = self.run_started.map_or(now, |s| (s + self.spec.interval).max(now));
        let at = due + self.jitter();
        self.next_run = Some(at);
        self.enter(Phase::Idle, now);
        vec![Action::ArmTimer(at)]
    }

    fn spawn(&mut self, now: Instant) -> Vec<Action> {
        self.enter(Phase::Running, now);
        self.next_run = None;
        self.run_started = Some(now);
        self.pid = None;
        self.timed_out = false;
        self.killed = false;
        self.exec_error = None;
        vec![Action::CancelTimer, Action::Spawn]
    }

    fn record(&mut self, exit: Option<ExitStatus>, error: Option<String>, now: Instant) {
        let started = self.run_started.unwrap_or(now);
        let rec = RunRecord {
            started,
            duration: now.saturating_duration_since(started),
            exit,
            timed_out: self.timed_out,
            error,
        };
        self.runs += 1;
        if !rec.success() {
            self.failures += 1;
        }
        self.last = Some(rec);
    }

    fn stop_group(&mut self, svc: &Service, now: Instant) -> Vec<Action> {
        self.enter(Phase::Cleaning, now);
        self.killed = false;
        let mut actions = vec![Action::Signal(svc.stop_signal)];
        if svc.stop_signal != Signal::SIGKILL && svc.stop_signal != Signal::SIGCONT {
            actions.push(Action::Signal(Signal::SIGCONT));
        }
        actions.push(Action::ArmTimer(now + svc.stop_timeout));
        actions
    }

    /// Applies one event and returns what the engine must do.
    pub fn handle(&mut self, svc: &Service, event: Event, now: Instant) -> Vec<Action> {
        match (event, self.phase) {
            (Event::Start | Event::Once, Phase::Stopped) => {
                self.want_up = true;
                // The first run is not held back by the last one's start.
                self.run_started = None;
                self.schedule(now)
            }
            (Event::Start | Event::Once, _) => {
                self.want_up = true;
                Vec::new()
            }
            (Event::Restart, Phase::Idle | Phase::Stopped) => {
                // Run now.
                self.want_up = true;
                self.spawn(now)
            }
            (Event::Restart, _) => {
                self.want_up = true;
                Vec::new()
            }
            (Event::Stop, Phase::Idle) => {
                self.want_up = false;
                self.next_run = None;
                self.enter(Phase::Stopped, now);
                vec![Action::CancelTimer]
            }
            (Event::Stop, Phase::Running) => {
                self.want_up = false;
                if self.pid.is_none() {
                    self.enter(Phase::Stopped, now);
                    return vec![Action::CancelTimer];
                }
                self.stop_group(svc, now)
            }
            (Event::Stop, _) => {
                self.want_up = false;
                Vec::new()
            }
            (Event::Pause | Event::Resume, _) => Vec::new(),
            (Event::Spawned { pid }, Phase::Running) => {
                self.pid = Some(pid);
                self.leader_alive = true;
                match self.spec.timeout {
                    Some(t) => vec![Action::ArmTimer(now + t)],
                    None => Vec::new(),
                }
            }
            (Event::SpawnFailed { error, .. }, Phase::Running) => {
                if self.pid.is_some() {
                    // The child exists and will exit 127: recorded then,
                    // with this reason.
                    self.exec_error = Some(error);
                    return Vec::new();
                }
                self.record(None, Some(error), now);
                self.schedule(now)
            }
            (Event::Spawned { .. } | Event::SpawnFailed { .. }, _) => Vec::new(),
            (Event::Exited { status, leftovers }, Phase::Running | Phase::Cleaning) => {
                self.leader_alive = false;
                self.pid = None;
                // An exec failure was noted by SpawnFailed: keep its reason.
                let error = self.exec_error.take();
                let exit = if error.is_some() { None } else { Some(status) };
                self.record(exit, error, now);
                if leftovers {
                    if self.phase == Phase::Cleaning {
                        return Vec::new();
                    }
                    return self.stop_group(svc, now);
                }
                self.schedule(now)
            }
            (Event::Exited { .. } | Event::Adopted { .. }, _) => Vec::new(),
            (Event::AllGone, Phase::Cleaning) if !self.leader_alive => self.schedule(now),
            (Event::AllGone, _) => Vec::new(),
            // Tasks have no readiness or health checks.
            (Event::Ready | Event::Unhealthy { .. }, _) => Vec::new(),
            (Event::Timer, Phase::Idle) => self.spawn(now),
            (Event::Timer, Phase::Running)
                if self.pid.is_some() && self.spec.timeout.zip(self.run_started).is_some_and(|(t, s)| now >= s + t) =>
            {
                self.timed_out = true;
                log::warn!("{}: run timed out; stopping it", svc.name);
                self.stop_group(svc, now)
            }
            (Event::Timer, Phase::Cleaning) if !self.killed => {
                self.killed = true;
                vec![Action::Signal(Signal::SIGKILL)]
            }
            (Event::Timer, _) => Vec::new(),
            (Event::Found { .. } | Event::Check, _) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Command;

    fn svc() -> Service {
        Service::new("t", Command::Argv(vec!["true".into()]))
    }

    fn spec(interval: u64) -> TaskSpec {
        TaskSpec::every(Duration::from_secs(interval))
    }

    /// Enables the task and starts its first run, as pid 5.
    fn run(m: &mut TaskMachine, s: &Service, t0: Instant) {
        m.handle(s, Event::Start, t0);
        m.handle(s, Event::Timer, t0);
        m.handle(s, Event::Spawned { pid: 5 }, t0);
    }

    #[test]
    fn runs_at_once_then_every_interval_from_the_start() {
        let t0 = Instant::now();
        let s = svc();
        let mut m = TaskMachine::new(spec(10), Expected::Running, t0, 1);
        assert_eq!(m.handle(&s, Event::Start, t0), vec![Action::ArmTimer(t0)]);
        assert_eq!(m.state(), ServiceState::Idle);
        assert_eq!(m.handle(&s, Event::Timer, t0), vec![Action::CancelTimer, Action::Spawn]);
        assert_eq!(m.state(), ServiceState::Running);
        assert!(m.handle(&s, Event::Spawned { pid: 5 }, t0).is_empty());
        let t3 = t0 + Duration::from_secs(3);
        let a = m.handle(&s, Event::Exited { status: ExitStatus::Code(0), leftovers: false }, t3);
        assert_eq!(a, vec![Action::ArmTimer(t0 + Duration::from_secs(10))]);
        assert_eq!(m.state(), ServiceState::Idle);
        let last = m.last().unwrap();
        assert_eq!(
            (last.duration, last.exit, m.runs(), m.failures()),
            (Duration::from_secs(3), Some(ExitStatus::Code(0)), 1, 0)
        );
    }

    #[test]
    fn a_long_run_delays_the_next_never_overlaps() {
        let t0 = Instant::now();
        let s = svc();
        let mut m = TaskMachine::new(spec(10), Expected::Running, t0, 1);
        run(&mut m, &s, t0);
        // A timer while running (no timeout set) does nothing: no second run.
        assert!(m.handle(&s, Event::Timer, t0 + Duration::from_secs(10)).is_empty());
        let t25 = t0 + Duration::from_secs(25);
        let a = m.handle(&s, Event::Exited { status: ExitStatus::Code(1), leftovers: false }, t25);
        assert_eq!(a, vec![Action::ArmTimer(t25)]);
        assert_eq!(m.failures(), 1);
    }

    #[test]
    fn timeout_stops_the_run_and_counts_a_failure() {
        let t0 = Instant::now();
        let s = svc();
        let mut m =
            TaskMachine::new(TaskSpec { timeout: Some(Duration::from_secs(2)), ..spec(10) }, Expected::Running, t0, 1);
        m.handle(&s, Event::Start, t0);
        m.handle(&s, Event::Timer, t0);
        assert_eq!(m.handle(&s, Event::Spawned { pid: 5 }, t0), vec![Action::ArmTimer(t0 + Duration::from_secs(2))]);
        let t2 = t0 + Duration::from_secs(2);
        let a = m.handle(&s, Event::Timer, t2);
        assert_eq!(a[0], Action::Signal(Signal::SIGTERM));
        assert_eq!(m.state(), ServiceState::Stopping);
        let a = m.handle(&s, Event::Timer, t2 + s.stop_timeout);
        assert_eq!(a, vec![Action::Signal(Signal::SIGKILL)]);
        let t13 = t2 + s.stop_timeout;
        let a = m.handle(&s, Event::Exited { status: ExitStatus::Signal(Signal::SIGKILL), leftovers: false }, t13);
        assert_eq!(a, vec![Action::ArmTimer(t13)]);
        assert!(m.last().unwrap().timed_out);
        assert_eq!(m.failures(), 1);
    }

    #[test]
    fn leftovers_are_stopped_before_the_next_run() {
        let t0 = Instant::now();
        let s = svc();
        let mut m = TaskMachine::new(spec(10), Expected::Running, t0, 1);
        run(&mut m, &s, t0);
        let a = m.handle(&s, Event::Exited { status: ExitStatus::Code(0), leftovers: true }, t0);
        assert_eq!(a[0], Action::Signal(Signal::SIGTERM));
        assert_eq!(m.state(), ServiceState::Stopping);
        assert_eq!(m.handle(&s, Event::AllGone, t0), vec![Action::ArmTimer(t0 + Duration::from_secs(10))]);
    }

    #[test]
    fn stop_disables_and_start_runs_again_at_once() {
        let t0 = Instant::now();
        let s = svc();
        let mut m = TaskMachine::new(spec(10), Expected::Running, t0, 1);
        m.handle(&s, Event::Start, t0);
        assert_eq!(m.handle(&s, Event::Stop, t0), vec![Action::CancelTimer]);
        assert_eq!(m.state(), ServiceState::Stopped);
        assert!(!m.want_up());
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(m.handle(&s, Event::Start, t1), vec![Action::ArmTimer(t1)]);
        // Stop during a run: the run is stopped, then the task rests.
        m.handle(&s, Event::Timer, t1);
        m.handle(&s, Event::Spawned { pid: 9 }, t1);
        assert_eq!(m.handle(&s, Event::Stop, t1)[0], Action::Signal(Signal::SIGTERM));
        let a = m.handle(&s, Event::Exited { status: ExitStatus::Signal(Signal::SIGTERM), leftovers: false }, t1);
        assert_eq!(a, vec![Action::CancelTimer]);
        assert_eq!(m.state(), ServiceState::Stopped);
    }

    #[test]
    fn spawn_failures_are_recorded_and_retried_next_interval() {
        let t0 = Instant::now();
        let s = svc();
        let mut m = TaskMachine::new(spec(10), Expected::Running, t0, 1);
        m.handle(&s, Event::Start, t0);
        m.handle(&s, Event::Timer, t0);
        let a = m.handle(&s, Event::SpawnFailed { error: "no such file".into(), transient: false }, t0);
        assert_eq!(a, vec![Action::ArmTimer(t0 + Duration::from_secs(10))]);
        assert_eq!(m.error(), Some("no such file"));
        assert_eq!(m.failures(), 1);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let t0 = Instant::now();
        let s = svc();
        let j = Duration::from_secs(4);
        let mut m = TaskMachine::new(TaskSpec { jitter: j, ..spec(10) }, Expected::Running, t0, 42);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            m.handle(&s, Event::Stop, t0);
            match m.handle(&s, Event::Start, t0).as_slice() {
                [Action::ArmTimer(at)] => {
                    assert!(*at >= t0 && *at < t0 + j);
                    seen.insert(*at);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(seen.len() > 10, "jitter varies");
    }
}
