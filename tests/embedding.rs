//! The embedding contract: an engine run by `run()` or by a host's own
//! `poll` loop, reached from other threads through handles, telling its
//! state changes to subscribers, and cleaning up when dropped.

use std::os::fd::{AsFd, AsRawFd};
use std::thread;
use std::time::{Duration, Instant};

use supervisor_core::{
    Command, Engine, Handle, HandleError, Service, ServiceState, Signal, StateChange, StatusSnapshot,
};

use crate::util::{alive, helper, wait_for};

const LIMIT: Duration = Duration::from_secs(15);

fn sleeper(name: &str) -> Service {
    let mut s = Service::new(name, Command::argv([helper(), "sleep".into()]));
    s.restart.min_uptime = Duration::from_millis(100);
    s
}

/// Asks through `handle` until `name` is in `state`; its pid.
fn wait_state(handle: &Handle, name: &str, state: ServiceState) -> Option<i32> {
    wait_for(&format!("{name} to be {state}"), LIMIT, || {
        let snap = handle.status().expect("status");
        let s = snap.services.into_iter().find(|s| s.name == name)?;
        (s.state == state).then_some(s.pid)
    })
}

fn transitions(events: &std::sync::mpsc::Receiver<StateChange>, name: &str) -> Vec<(ServiceState, ServiceState)> {
    events.try_iter().filter(|c| c.service == name).map(|c| (c.from, c.to)).collect()
}

#[test]
fn a_handle_stops_reads_and_shuts_down_while_run_drives_the_engine() {
    let mut engine = Engine::new("agent").unwrap();
    let events = engine.subscribe();
    engine.add_service(sleeper("web")).unwrap();
    let handle: Handle = engine.handle();
    let other = thread::spawn(move || -> Result<(i32, StatusSnapshot), HandleError> {
        let pid = wait_state(&handle, "web", ServiceState::Running).expect("a pid");
        handle.stop("web")?;
        let snap = handle.status()?;
        handle.shutdown()?;
        Ok((pid, snap))
    });
    engine.run().unwrap();
    let (pid, snap) = other.join().unwrap().unwrap();
    assert!(matches!(snap.services[0].state, ServiceState::Stopping | ServiceState::Stopped), "{snap:?}");
    assert!(!alive(pid), "run() returned with the service's process still alive");
    use ServiceState as S;
    let seen = transitions(&events, "web");
    assert_eq!(
        seen,
        [(S::Stopped, S::Starting), (S::Starting, S::Running), (S::Running, S::Stopping), (S::Stopping, S::Stopped)]
    );
}

#[test]
fn events_carry_the_pid_and_how_it_ended() {
    let mut engine = Engine::new("agent").unwrap();
    let events = engine.subscribe();
    let mut once = Service::new("once", Command::argv([helper(), "exit".into(), "3".into()]));
    once.restart.mode = supervisor_core::RestartMode::Never;
    engine.add_service(once).unwrap();
    let deadline = Instant::now() + LIMIT;
    while engine.state("once") != Some(ServiceState::Exited) {
        assert!(Instant::now() < deadline, "timed out");
        engine.turn(Some(Duration::from_millis(50))).unwrap();
    }
    let all: Vec<StateChange> = events.try_iter().collect();
    let started = all.iter().find(|c| c.to == ServiceState::Starting).expect("a start");
    let ended = all.last().expect("events");
    assert_eq!(ended.to, ServiceState::Exited);
    assert_eq!(ended.exit, Some(supervisor_core::ExitStatus::Code(3)));
    assert!(started.pid.is_some(), "a start carries the new process: {all:?}");
    assert_eq!(ended.pid, started.pid, "an exit carries the process that ended: {all:?}");
    assert_eq!(engine.status().supervisor.events_dropped, 0);
}

#[test]
fn the_engine_runs_on_a_thread_of_its_own() {
    let mut engine = Engine::new("agent").unwrap();
    engine.add_service(sleeper("a")).unwrap();
    engine.add_service(sleeper("b")).unwrap();
    let handle = engine.handle();
    let runner = thread::spawn(move || engine.run());
    let pid = wait_state(&handle, "a", ServiceState::Running).unwrap();
    assert!(handle.signal("a", Signal::SIGSTOP).unwrap());
    assert!(handle.signal("a", Signal::SIGCONT).unwrap());
    handle.pause("b").unwrap();
    wait_state(&handle, "b", ServiceState::Paused);
    handle.resume("b").unwrap();
    handle.restart("a").unwrap();
    let again = wait_state(&handle, "a", ServiceState::Running).unwrap();
    assert_ne!(again, pid, "restart made a new process");
    assert_eq!(handle.stop("nope"), Err(HandleError::UnknownService("nope".into())));
    handle.shutdown().unwrap();
    runner.join().unwrap().unwrap();
    assert!(!alive(again));
    assert_eq!(handle.status(), Err(HandleError::EngineGone));
    assert_eq!(handle.start("a"), Err(HandleError::EngineGone));
}

#[test]
fn dropping_the_engine_kills_its_services_and_fails_waiting_handles() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Engine::new("agent").unwrap();
    // It ignores TERM: a shutdown waits for its stop timeout.
    let mut stubborn = Service::new(
        "stubborn",
        Command::argv([helper(), "ignore-term".into(), dir.path().join("pid").display().to_string()]),
    );
    stubborn.stop_timeout = Duration::from_mins(1);
    stubborn.restart.min_uptime = Duration::from_millis(100);
    engine.add_service(stubborn).unwrap();
    let handle = engine.handle();
    let waiter = {
        let handle = handle.clone();
        thread::spawn(move || handle.shutdown())
    };
    let deadline = Instant::now() + LIMIT;
    while engine.state("stubborn") != Some(ServiceState::Stopping) {
        assert!(Instant::now() < deadline, "timed out waiting for the shutdown to begin: {:?}", engine.status());
        engine.turn(Some(Duration::from_millis(50))).unwrap();
    }
    let pid = engine.status().services[0].pid.expect("still running");
    drop(engine);
    assert_eq!(waiter.join().unwrap(), Err(HandleError::EngineGone));
    assert!(!alive(pid), "the dropped engine's service is gone");
    assert_eq!(handle.stop("stubborn"), Err(HandleError::EngineGone));
    drop(dir);
}

#[test]
fn a_host_loop_drives_the_engine_with_its_descriptor_and_deadline() {
    let mut engine = Engine::new("hosted").unwrap();
    engine.add_service(sleeper("web")).unwrap();
    let events = engine.subscribe();
    let handle = engine.handle();
    let fd = engine.as_fd().as_raw_fd();
    let other = thread::spawn(move || -> Result<(), HandleError> {
        wait_state(&handle, "web", ServiceState::Running);
        handle.stop("web")?;
        wait_state(&handle, "web", ServiceState::Stopped);
        handle.start("web")?;
        wait_state(&handle, "web", ServiceState::Running);
        handle.shutdown()
    });
    // The host's own loop: poll(2) on the engine's descriptor until its
    // deadline, then a turn that never blocks. A descriptor that failed to
    // wake the host would leave it in a poll with no deadline: those are
    // capped and counted.
    const CAP: Duration = Duration::from_secs(20);
    let mut stuck = 0;
    let deadline = Instant::now() + Duration::from_mins(1);
    while !engine.is_finished() {
        assert!(Instant::now() < deadline, "the hosted engine did not finish");
        let wait = engine.next_deadline().map(|d| d.saturating_duration_since(Instant::now()));
        let mut pfd = [libc::pollfd { fd, events: libc::POLLIN, revents: 0 }];
        let ms = wait.unwrap_or(CAP).min(CAP).as_millis() as i32;
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(pfd.as_mut_ptr(), 1, ms) };
        if n == 0 && wait.is_none() {
            stuck += 1;
        }
        engine.turn(Some(Duration::ZERO)).unwrap();
    }
    other.join().unwrap().unwrap();
    assert_eq!(stuck, 0, "the descriptor did not wake the host");
    use ServiceState as S;
    let seen = transitions(&events, "web");
    assert_eq!(seen.iter().filter(|t| **t == (S::Starting, S::Running)).count(), 2, "{seen:?}");
    assert_eq!(seen.last(), Some(&(S::Stopping, S::Stopped)));
}

#[test]
fn add_service_refuses_bad_descriptions_and_keeps_what_runs() {
    let mut engine = Engine::new("agent").unwrap();
    engine.add_service(sleeper("web")).unwrap();
    let field_of = |engine: &mut Engine, svc: Service| match engine.add_service(svc) {
        Err(supervisor_core::EngineError::Invalid(e)) => (e.service, e.field),
        other => panic!("expected an invalid-service error, got {other:?}"),
    };
    let empty = Service::new("empty", Command::Argv(Vec::new()));
    assert_eq!(field_of(&mut engine, empty), ("empty".to_string(), "command"));
    let mut nobody = sleeper("nobody");
    nobody.user = Some("no-such-user-here".into());
    assert_eq!(field_of(&mut engine, nobody), ("nobody".to_string(), "user"));
    let mut group = sleeper("grp");
    group.group = Some("no-such-group-here".into());
    assert_eq!(field_of(&mut engine, group), ("grp".to_string(), "group"));
    let mut hot = sleeper("hot");
    hot.kind = supervisor_core::Kind::Task(Box::new(supervisor_core::TaskSpec::every(Duration::ZERO)));
    assert_eq!(field_of(&mut engine, hot), ("hot".to_string(), "kind.task.interval"));
    let mut piped = sleeper("piped");
    piped.stdout = supervisor_core::Output::Pipe("nowhere".into());
    assert_eq!(field_of(&mut engine, piped), ("piped".to_string(), "stdout"));
    assert_eq!(field_of(&mut engine, sleeper("")), (String::new(), "name"));
    assert!(
        matches!(engine.add_service(sleeper("web")), Err(supervisor_core::EngineError::Duplicate(n)) if n == "web")
    );
    // None of it cost the service that runs, or added anything.
    let deadline = Instant::now() + LIMIT;
    while engine.state("web") != Some(ServiceState::Running) {
        assert!(Instant::now() < deadline, "web did not come up");
        engine.turn(Some(Duration::from_millis(50))).unwrap();
    }
    assert_eq!(engine.status().services.len(), 1);
}

#[test]
fn a_shutdown_asked_after_the_end_is_answered_at_once() {
    let mut engine = Engine::new("agent").unwrap();
    engine.add_service(sleeper("web")).unwrap();
    engine.shutdown();
    let deadline = Instant::now() + LIMIT;
    while !engine.is_finished() {
        assert!(Instant::now() < deadline, "timed out");
        engine.turn(Some(Duration::from_millis(50))).unwrap();
    }
    let handle = engine.handle();
    let late = thread::spawn(move || handle.shutdown());
    while !late.is_finished() {
        assert!(Instant::now() < deadline, "a late shutdown was never answered");
        engine.turn(Some(Duration::from_millis(50))).unwrap();
    }
    assert_eq!(late.join().unwrap(), Ok(()));
}

#[test]
fn a_thread_with_only_a_handle_subscribes() {
    let mut engine = Engine::new("agent").unwrap();
    engine.add_service(sleeper("web")).unwrap();
    let handle = engine.handle();
    let runner = thread::spawn(move || engine.run());
    let events = handle.subscribe().unwrap();
    // Once status answers, the subscription (sent first) has been taken.
    wait_state(&handle, "web", ServiceState::Running);
    handle.stop("web").unwrap();
    let stopped = wait_for("web's stop event", LIMIT, || {
        events.try_iter().find(|c| c.service == "web" && c.to == ServiceState::Stopped)
    });
    assert_eq!(stopped.from, ServiceState::Stopping);
    handle.shutdown().unwrap();
    runner.join().unwrap().unwrap();
    assert!(handle.subscribe().is_err(), "no subscription to a dropped engine");
}

/// Found by the fuzz target `svc_control`: when a process's exit and its
/// timer's deadline fall in one turn (a host that turns late), the `Timer`
/// queued for the old deadline must not reach the machine after the exit
/// re-armed or cancelled it. The host's late turn is the scenario itself.
#[test]
fn an_exit_and_a_due_timer_in_one_turn_do_not_confuse_the_machine() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Engine::new("late").unwrap();
    // Exits after 0.1 s; the host notices at 0.5 s, past its min_uptime
    // (0.2 s), so it is restarted at once, and its min_uptime timer is due
    // in the same turn: the restarted service must be `starting` with its
    // new process, not `running` with none.
    let mut quick = Service::new("quick", Command::Shell("sleep 0.1; exit 1".into()));
    quick.restart.min_uptime = Duration::from_millis(200);
    engine.add_service(quick).unwrap();
    // Exits at once, leaving a descendant that ignores TERM: a clean-up with
    // a stop timeout of 10 s, not a KILL at once.
    let left = dir.path().join("left.pid");
    // The shell exits once the descendant ignores TERM (it writes its pid
    // file after that).
    let line = format!(
        "{h} ignore-term {f} & while [ ! -s {f} ]; do :; done; sleep 0.1; exit 0",
        h = helper(),
        f = left.display()
    );
    let mut leaver = Service::new("leaver", Command::Shell(line));
    leaver.restart.min_uptime = Duration::from_millis(200);
    leaver.stop_timeout = Duration::from_mins(1);
    engine.add_service(leaver).unwrap();
    engine.turn(Some(Duration::ZERO)).unwrap();
    let descendant = wait_for("the descendant", LIMIT, || crate::util::read_pid(&left));
    std::thread::sleep(Duration::from_millis(500));
    engine.turn(Some(Duration::ZERO)).unwrap();
    let quick = engine.status().services.into_iter().find(|s| s.name == "quick").unwrap();
    assert_eq!((quick.state, quick.pid.is_some()), (ServiceState::Starting, true), "{quick:?}");
    assert_eq!(engine.state("leaver"), Some(ServiceState::Stopping));
    assert!(alive(descendant), "the descendant was killed at once, with no stop timeout");
    drop(engine);
    wait_for("the dropped engine's descendant to die", LIMIT, || (!alive(descendant)).then_some(()));
}

#[test]
fn a_critical_service_ends_run_and_gives_the_exit_code() {
    let mut engine = Engine::new("critical").expect("engine");
    engine.add_service(sleeper("other")).expect("other");
    let mut main = Service::new("main", Command::argv(["sh", "-c", "exit 4"]));
    main.critical = true;
    engine.add_service(main).expect("main");
    engine.run().expect("run ends by itself");
    assert_eq!(engine.exit_code(), 4);
    assert!(engine.status().services.iter().all(|s| s.pid.is_none()), "everything stopped");
}

#[test]
fn all_exited_ends_run_with_the_worst_code() {
    let mut engine = Engine::new("jobs").expect("engine");
    engine.set_exit_when(supervisor_core::ExitWhen::AllExited);
    for (name, code) in [("a", 0), ("b", 6), ("c", 2)] {
        let mut s = Service::new(name, Command::argv(["sh".to_string(), "-c".into(), format!("exit {code}")]));
        s.restart.mode = supervisor_core::RestartMode::Never;
        engine.add_service(s).expect("add");
    }
    engine.run().expect("run ends by itself");
    assert_eq!(engine.exit_code(), 6);
}

#[test]
fn a_clean_shutdown_is_0_and_one_that_needed_kill_is_1() {
    for (deaf, code) in [(false, 0), (true, 1)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let up = dir.path().join("up");
        let trap = if deaf { "trap '' TERM" } else { "trap 'exit 0' TERM" };
        let script = format!("{trap}; touch {}; while :; do sleep 0.05; done", up.display());
        let mut engine = Engine::new("stop").expect("engine");
        let mut s = Service::new("s", Command::argv(["sh".to_string(), "-c".into(), script]));
        s.stop_timeout = Duration::from_millis(200);
        engine.add_service(s).expect("add");
        // Once the trap is set.
        wait_for("the service to start", LIMIT, || {
            engine.turn(Some(Duration::from_millis(10))).expect("turn");
            up.exists().then_some(())
        });
        engine.shutdown();
        engine.run().expect("run");
        assert_eq!(engine.exit_code(), code, "deaf: {deaf}");
    }
}
