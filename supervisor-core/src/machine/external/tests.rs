use super::*;
use crate::model::{Command, Kind, RestartCommand};

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn control_svc() -> Service {
    let mut s = Service::new("httpd", Command::Argv(vec!["true".into()]));
    s.kind = Kind::External(Box::new(ExternalSpec::control(words("/sbin/service httpd"))));
    s
}

fn spec(s: &Service) -> &ExternalSpec {
    ExternalMachine::spec(s).unwrap()
}

#[test]
fn precedence_with_control() {
    let mut s = control_svc();
    let run = |w: &str| Step::Run(words(w));
    assert_eq!(spec(&s).step(Operation::Start), run("/sbin/service httpd start"));
    assert_eq!(spec(&s).step(Operation::Stop), run("/sbin/service httpd stop"));
    assert_eq!(spec(&s).step(Operation::Status), run("/sbin/service httpd status"));
    assert_eq!(spec(&s).step(Operation::Restart), run("/sbin/service httpd restart"));
    if let Kind::External(e) = &mut s.kind {
        e.start = Some(words("/usr/bin/custom-start"));
        e.stop = Some(words("/ignored/stop"));
        e.status = Some(words("/ignored/status"));
        e.restart = Some(RestartCommand::StopStart);
    }
    assert_eq!(spec(&s).step(Operation::Start), run("/usr/bin/custom-start"));
    assert_eq!(spec(&s).step(Operation::Stop), run("/sbin/service httpd stop"));
    assert_eq!(spec(&s).step(Operation::Status), run("/sbin/service httpd status"));
    assert_eq!(spec(&s).step(Operation::Restart), Step::StopThenStart);
    if let Kind::External(e) = &mut s.kind {
        e.restart = Some(RestartCommand::Run(words("/usr/bin/reload-it")));
    }
    assert_eq!(spec(&s).step(Operation::Restart), run("/usr/bin/reload-it"));
}

#[test]
fn precedence_without_control() {
    let mut e = ExternalSpec::start(words("/path/to/script --conf /path/to/conf --daemon"));
    assert_eq!(e.step(Operation::Start), Step::Run(words("/path/to/script --conf /path/to/conf --daemon")));
    assert_eq!(e.step(Operation::Stop), Step::KillPattern);
    assert_eq!(e.step(Operation::Status), Step::FindPattern);
    assert_eq!(e.step(Operation::Restart), Step::StopThenStart);
    let re = e.pattern_regex().unwrap();
    assert!(re.is_match("/path/to/script --conf /path/to/conf --daemon"));
    assert!(!re.is_match("/path/to/script --conf /path/to/other --daemon"));
    e.stop = Some(words("/bin/stop-it"));
    e.status = Some(words("/bin/status-of-it"));
    e.restart = Some(RestartCommand::Run(words("/bin/restart-it")));
    e.pattern = Some("script.*conf".into());
    assert_eq!(e.step(Operation::Stop), Step::Run(words("/bin/stop-it")));
    assert_eq!(e.step(Operation::Status), Step::Run(words("/bin/status-of-it")));
    assert_eq!(e.step(Operation::Restart), Step::Run(words("/bin/restart-it")));
    assert!(e.pattern_regex().unwrap().is_match("x /path/to/script --conf y"));
    e.pattern = Some("(".into());
    assert!(e.validate().unwrap_err().contains("invalid pattern"));
    assert!(ExternalSpec::start(Vec::new()).validate().is_err());
}

#[test]
fn a_pattern_that_matches_every_process_is_refused() {
    for pattern in ["", "x*", "^", "(a|)", ".*"] {
        let mut e = ExternalSpec::start(words("/bin/daemon"));
        e.pattern = Some(pattern.into());
        let err = e.validate().unwrap_err();
        assert!(err.contains("matches every process"), "{pattern:?}: {err}");
    }
    // Derived from a start command of empty words: "" or " ".
    assert!(ExternalSpec::start(vec![String::new()]).validate().unwrap_err().contains("every process"));
    let mut e = ExternalSpec::start(words("/bin/daemon"));
    e.pattern = Some("^/bin/daemon( |$)".into());
    assert_eq!(e.validate(), Ok(()));
}

fn exited(code: i32) -> Event {
    Event::Exited { status: ExitStatus::Code(code), leftovers: false }
}

/// Runs the command asked for and answers with `code`.
fn answer(m: &mut ExternalMachine, s: &Service, actions: &[Action], code: i32, now: Instant) -> Vec<Action> {
    let argv = actions.iter().find_map(|a| match a {
        Action::Run(v) => Some(v.clone()),
        _ => None,
    });
    assert!(argv.is_some(), "expected a command in {actions:?}");
    m.handle(s, Event::Spawned { pid: 100 }, now);
    m.handle(s, exited(code), now)
}

fn ran(actions: &[Action]) -> Option<String> {
    actions.iter().find_map(|a| match a {
        Action::Run(v) => Some(v.join(" ")),
        _ => None,
    })
}

#[test]
fn a_stopped_service_expected_running_is_started_and_checked() {
    let t = Instant::now();
    let s = control_svc();
    let mut m = ExternalMachine::new(Expected::Running, t);
    let a = m.handle(&s, Event::Check, t);
    assert_eq!(ran(&a).unwrap(), "/sbin/service httpd status");
    assert_eq!(m.state(), ServiceState::Checking);
    let a = answer(&mut m, &s, &a, 3, t);
    assert_eq!(ran(&a).unwrap(), "/sbin/service httpd start");
    assert_eq!(m.state(), ServiceState::Starting);
    let a = answer(&mut m, &s, &a, 0, t);
    assert_eq!(ran(&a).unwrap(), "/sbin/service httpd status");
    let a = answer(&mut m, &s, &a, 0, t);
    assert_eq!(a, vec![Action::ArmTimer(t + Duration::from_secs(30))]);
    assert_eq!(m.state(), ServiceState::Running);
    let p = m.last_pass().unwrap();
    assert_eq!((p.found, p.result, p.ok), (Some(Health::Stopped), Some(Health::Running), true));
    assert_eq!(p.actions, ["start: exit 0"]);
    assert_eq!((m.passes(), m.repairs()), (1, 1));
}

#[test]
fn a_dirty_service_is_stopped_then_started() {
    let t = Instant::now();
    let s = control_svc();
    let mut m = ExternalMachine::new(Expected::Running, t);
    let a = m.handle(&s, Event::Check, t);
    let a = answer(&mut m, &s, &a, 1, t);
    assert_eq!(m.state(), ServiceState::Stopping);
    assert_eq!(ran(&a).unwrap(), "/sbin/service httpd stop");
    let a = answer(&mut m, &s, &a, 0, t);
    assert_eq!(ran(&a).unwrap(), "/sbin/service httpd start");
    let a = answer(&mut m, &s, &a, 0, t);
    let _ = answer(&mut m, &s, &a, 0, t);
    let p = m.last_pass().unwrap();
    assert_eq!(p.found, Some(Health::Dirty(1)));
    assert_eq!(p.actions, ["stop: exit 0", "start: exit 0"]);
    assert!(p.ok);
}

#[test]
fn expected_stopped_is_stopped_and_a_failed_repair_is_reported() {
    let t = Instant::now();
    let s = control_svc();
    let mut m = ExternalMachine::new(Expected::Stopped, t);
    let a = m.handle(&s, Event::Check, t);
    let a = answer(&mut m, &s, &a, 0, t);
    assert_eq!(ran(&a).unwrap(), "/sbin/service httpd stop");
    let a = answer(&mut m, &s, &a, 1, t);
    // Still running after the stop: asked again for a while...
    let a = answer(&mut m, &s, &a, 0, t);
    assert_eq!(a, vec![Action::ArmTimer(t + VERIFY_POLL)]);
    assert!(m.last_pass().is_none());
    let later = t + VERIFY_SETTLE;
    let a = m.handle(&s, Event::Timer, later);
    assert_eq!(ran(&a).unwrap(), "/sbin/service httpd status");
    // ...then the pass ends with what it says.
    let _ = answer(&mut m, &s, &a, 0, later);
    let p = m.last_pass().unwrap();
    assert_eq!((p.found, p.result, p.ok), (Some(Health::Running), Some(Health::Running), false));
    assert_eq!(p.actions, ["stop: exit 1"]);
    // Nothing runs any more (a shutdown may end), but it still runs.
    assert!(m.is_down());
    assert_eq!(m.state(), ServiceState::Running);
}

#[test]
fn a_start_that_returns_before_the_daemon_is_up_is_given_time() {
    let t = Instant::now();
    let s = control_svc();
    let mut m = ExternalMachine::new(Expected::Running, t);
    let a = m.handle(&s, Event::Check, t);
    let a = answer(&mut m, &s, &a, 3, t);
    let a = answer(&mut m, &s, &a, 0, t);
    // Not up yet right after the start: asked again, no second start.
    let a = answer(&mut m, &s, &a, 3, t);
    assert_eq!(a, vec![Action::ArmTimer(t + VERIFY_POLL)]);
    assert_eq!(m.state(), ServiceState::Starting);
    let t1 = t + VERIFY_POLL;
    let a = m.handle(&s, Event::Timer, t1);
    assert_eq!(ran(&a).unwrap(), "/sbin/service httpd status");
    let a = answer(&mut m, &s, &a, 0, t1);
    assert_eq!(a, vec![Action::ArmTimer(t1 + Duration::from_secs(30))]);
    let p = m.last_pass().unwrap();
    assert_eq!((p.found, p.result, p.ok), (Some(Health::Stopped), Some(Health::Running), true));
    assert_eq!(p.actions, ["start: exit 0"]);
}

#[test]
fn commands_during_a_pass_wait_for_it_and_dry_run_only_reports() {
    let t = Instant::now();
    let s = control_svc();
    let mut m = ExternalMachine::new(Expected::Running, t);
    let a = m.handle(&s, Event::Check, t);
    // A stop while the status runs: no second command at once.
    assert!(m.handle(&s, Event::Stop, t).is_empty());
    // The pass goes on towards what is wanted now: stopped.
    let a = answer(&mut m, &s, &a, 0, t);
    assert_eq!(ran(&a).unwrap(), "/sbin/service httpd stop");
    let a = answer(&mut m, &s, &a, 0, t);
    assert_eq!(ran(&a).unwrap(), "/sbin/service httpd status");
    // Then the pass the stop asked for: a status, nothing to do.
    let a = answer(&mut m, &s, &a, 3, t);
    assert_eq!(ran(&a).unwrap(), "/sbin/service httpd status");
    let a = answer(&mut m, &s, &a, 3, t);
    assert_eq!(a, vec![Action::ArmTimer(t + Duration::from_secs(30))]);
    assert!(m.is_down());
    assert_eq!(m.passes(), 2);

    let mut d = ExternalMachine::new(Expected::Running, t).dry_run().without_periodic_checks();
    let a = d.handle(&s, Event::Check, t);
    let a = answer(&mut d, &s, &a, 3, t);
    assert_eq!(a, vec![Action::CancelTimer]);
    let p = d.last_pass().unwrap();
    assert_eq!((p.found, p.ok, p.actions.len()), (Some(Health::Stopped), false, 0));
}

#[test]
fn hung_commands_are_killed() {
    let t = Instant::now();
    let s = control_svc();
    let mut m = ExternalMachine::new(Expected::Running, t);
    let a = m.handle(&s, Event::Check, t);
    assert!(a.contains(&Action::ArmTimer(t + Duration::from_secs(60))));
    m.handle(&s, Event::Spawned { pid: 7 }, t);
    let t60 = t + Duration::from_secs(60);
    assert_eq!(m.handle(&s, Event::Timer, t60), vec![Action::Signal(Signal::SIGKILL)]);
    let a = m.handle(&s, Event::Exited { status: ExitStatus::Signal(Signal::SIGKILL), leftovers: false }, t60);
    // Dirty (124): stop, start, status.
    assert_eq!(ran(&a).unwrap(), "/sbin/service httpd stop");
    assert_eq!(m.last_pass(), None);
    assert_eq!(m.error(), Some("status timed out"));
}

#[test]
fn pattern_status_and_stop() {
    let t = Instant::now();
    let mut s = Service::new("custom1", Command::Argv(vec!["true".into()]));
    s.kind = Kind::External(Box::new(ExternalSpec::start(words("/path/to/script --daemon"))));
    let mut m = ExternalMachine::new(Expected::Stopped, t);
    assert_eq!(m.handle(&s, Event::Check, t), vec![Action::CancelTimer, Action::FindPattern]);
    assert_eq!(m.handle(&s, Event::Found { count: 2 }, t), vec![Action::KillPattern(Signal::SIGTERM)]);
    assert_eq!(m.handle(&s, Event::Found { count: 2 }, t), vec![Action::ArmTimer(t + PATTERN_POLL)]);
    assert_eq!(m.handle(&s, Event::Timer, t), vec![Action::FindPattern]);
    let t60 = t + Duration::from_secs(60);
    let a = m.handle(&s, Event::Found { count: 1 }, t60);
    assert_eq!(a, vec![Action::KillPattern(Signal::SIGKILL), Action::ArmTimer(t60 + PATTERN_POLL)]);
    assert_eq!(m.handle(&s, Event::Timer, t60), vec![Action::FindPattern]);
    assert_eq!(m.handle(&s, Event::Found { count: 0 }, t60), vec![Action::FindPattern]);
    let a = m.handle(&s, Event::Found { count: 0 }, t60);
    assert_eq!(a, vec![Action::ArmTimer(t60 + Duration::from_secs(30))]);
    let p = m.last_pass().unwrap();
    assert_eq!((p.found, p.result, p.ok), (Some(Health::Running), Some(Health::Stopped), true));
    assert!(m.is_down());
}
