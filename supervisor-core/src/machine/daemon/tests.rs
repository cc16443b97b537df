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
    let jittered =
        |r: &Rig, secs| crate::machine::backoff::jittered(Duration::from_secs(secs), &r.svc.name, r.m.restarts());
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
    assert_eq!(a, vec![Action::Signal(Signal::SIGTERM), Action::Signal(Signal::SIGCONT), Action::ArmTimer(deadline)]);
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

/// A rig whose service is ready by `notify = "fd:3"`, with a 5 s timeout.
fn with_ready() -> Rig {
    let mut r = Rig::new();
    let mut ready = crate::model::ReadyPolicy::new(crate::model::ReadyCheck::Fd(3));
    ready.timeout = Duration::from_secs(5);
    r.svc.ready = Some(ready.into());
    r
}

#[test]
fn with_a_ready_check_it_is_running_only_once_ready() {
    let mut r = with_ready();
    assert_eq!(r.ev(Event::Start), vec![Action::CancelTimer, Action::Spawn]);
    assert_eq!(r.ev(Event::Spawned { pid: 10 }), vec![Action::ArmTimer(r.now + Duration::from_secs(5))]);
    // Staying up for min_uptime is not enough.
    r.at(2000);
    assert_eq!(r.m.state(), S::Starting);
    assert_eq!(r.ev(Event::Ready), vec![Action::CancelTimer]);
    assert_eq!(r.m.state(), S::Running);
    assert_eq!(r.m.since(), r.now);
    // A second word changes nothing.
    assert!(r.ev(Event::Ready).is_empty());
}

#[test]
fn not_ready_in_time_is_a_failed_start_with_backoff() {
    let mut r = with_ready();
    r.ev(Event::Start);
    r.ev(Event::Spawned { pid: 10 });
    r.at(5000);
    let a = r.ev(Event::Timer);
    assert_eq!(a[0], Action::Signal(Signal::SIGTERM));
    assert_eq!(r.m.state(), S::Stopping);
    assert_eq!(r.m.error(), Some("not ready after 5 s"));
    assert_eq!(r.m.backoff().failures(), 1);
    r.at(10);
    let a = r.ev(Event::Exited { status: ExitStatus::Signal(Signal::SIGTERM), leftovers: false });
    assert_eq!(r.m.state(), S::Backoff);
    assert!(matches!(a.as_slice(), [Action::ArmTimer(_)]), "{a:?}");
    assert_eq!(r.m.restarts(), 1);
    // The exit of a process stopped for it is not a second failure.
    assert_eq!(r.m.backoff().failures(), 1);
}

#[test]
fn ready_from_a_process_not_started_or_gone_is_ignored() {
    let mut r = with_ready();
    assert!(r.ev(Event::Ready).is_empty());
    assert_eq!(r.m.state(), S::Stopped);
    r.ev(Event::Start);
    // Spawn asked for, not done yet.
    assert!(r.ev(Event::Ready).is_empty());
    assert_eq!(r.m.state(), S::Starting);
}

#[test]
fn unhealthy_restarts_a_running_service_with_the_reason() {
    let mut r = Rig::new();
    r.up(10);
    assert!(r.at(1000).ev(Event::Timer).is_empty());
    let a = r.ev(Event::Unhealthy { reason: "health: 3 failures in a row".into() });
    assert_eq!(a[0], Action::Signal(Signal::SIGTERM));
    assert_eq!(r.m.error(), Some("health: 3 failures in a row"));
    r.at(10);
    let a = r.ev(Event::Exited { status: ExitStatus::Signal(Signal::SIGTERM), leftovers: false });
    assert_eq!(a, vec![Action::CancelTimer, Action::Spawn]);
    assert_eq!(r.m.restarts(), 1);
    // Not while starting: readiness decides there.
    r.ev(Event::Spawned { pid: 11 });
    assert!(r.ev(Event::Unhealthy { reason: "late".into() }).is_empty());
}
