//! The engine embedded in a program (library mode): it must not touch the
//! host's other children, and must still leave no descendant behind.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use supervisor_core::{Command, Engine, RestartMode, Service, ServiceState};

use crate::util::{alive, helper, read_pid};

fn turn_until(engine: &mut Engine, what: &str, mut done: impl FnMut(&Engine) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done(engine) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        engine.turn(Some(Duration::from_millis(50))).expect("turn");
    }
}

fn quick(name: &str, argv: &[&str]) -> Service {
    let mut s = Service::new(name, Command::Argv(argv.iter().map(std::string::ToString::to_string).collect()));
    s.restart.min_uptime = Duration::from_millis(100);
    s
}

#[test]
fn library_mode_never_reaps_the_hosts_own_children() {
    let mut host_child = std::process::Command::new(helper()).arg("sleep").spawn().unwrap();
    let mut engine = Engine::new("lib").unwrap();
    let mut once = quick("once", &[&helper(), "exit", "0"]);
    once.restart.mode = RestartMode::Never;
    engine.add_service(once).unwrap();
    host_child.kill().unwrap();
    // SIGCHLD for the host's child reaches the engine too; it must leave it.
    turn_until(&mut engine, "the service to exit", |e| e.state("once") == Some(ServiceState::Exited));
    for _ in 0..5 {
        engine.turn(Some(Duration::from_millis(10))).unwrap();
    }
    let status = host_child.wait().expect("the host can still reap its own child");
    assert_eq!(status.signal(), Some(9));
}

#[test]
fn library_mode_stops_a_grandchild_that_left_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("escaped.pid");
    let mut engine = Engine::new("lib").unwrap();
    engine.add_service(quick("escaper", &[&helper(), "escape", file.to_str().unwrap()])).unwrap();
    turn_until(&mut engine, "running", |e| e.state("escaper") == Some(ServiceState::Running));
    let mut grandchild = None;
    turn_until(&mut engine, "the grandchild", |_| {
        grandchild = read_pid(&file);
        grandchild.is_some()
    });
    let grandchild = grandchild.unwrap();
    assert!(alive(grandchild));
    engine.command("escaper", supervisor_core::ServiceRequest::Stop).unwrap();
    turn_until(&mut engine, "stopped", |e| e.state("escaper") == Some(ServiceState::Stopped));
    assert!(!alive(grandchild), "the escaped grandchild went with its service");
}

#[test]
fn exec_failure_shows_in_the_status() {
    let mut engine = Engine::new("lib").unwrap();
    engine.add_service(quick("ghost", &["/nonexistent/ghost"])).unwrap();
    turn_until(&mut engine, "fatal", |e| e.state("ghost") == Some(ServiceState::Fatal));
    let st = engine.status();
    let err = st.services[0].error.as_deref().unwrap();
    assert!(err.starts_with("exec /nonexistent/ghost: No such file"), "{err}");
    assert_eq!(st.services[0].last_exit, Some(supervisor_core::ExitStatus::Code(127)));
}

#[test]
fn a_service_being_replaced_never_drops_out_of_status() {
    use std::os::fd::{AsFd, AsRawFd};
    let mut engine = Engine::new("lib").unwrap();
    engine.add_service(quick("web", &[&helper(), "sleep"])).unwrap();
    turn_until(&mut engine, "running", |e| e.state("web") == Some(ServiceState::Running));
    let old = engine.status().services.iter().find(|s| s.name == "web").and_then(|s| s.pid).unwrap();
    // A status request waits for the engine's next turn...
    let handle = engine.handle();
    let asker = std::thread::spawn(move || handle.status());
    let fd = engine.as_fd().as_raw_fd();
    crate::util::wait_for("the request to wake the engine", Duration::from_secs(15), || {
        let mut pfd = [libc::pollfd { fd, events: libc::POLLIN, revents: 0 }];
        // SAFETY: one valid pollfd for the duration of the call.
        (unsafe { libc::poll(pfd.as_mut_ptr(), 1, 0) } == 1).then_some(())
    });
    // ...while a new definition replaces web, whose old process ends
    // before that turn: the turn reaps it and answers.
    let mut new = quick("web", &[&helper(), "sleep"]);
    new.stop_timeout = Duration::from_secs(9);
    assert!(engine.replace_service(new).unwrap());
    crate::util::wait_for("the old process to end", Duration::from_secs(15), || (!alive(old)).then_some(()));
    engine.turn(Some(Duration::ZERO)).unwrap();
    let snap = asker.join().unwrap().unwrap();
    let web = snap.services.iter().find(|s| s.name == "web");
    assert!(web.is_some_and(|w| w.pid != Some(old)), "web is missing or old: {web:?}");
}
