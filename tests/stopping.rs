//! Stopping: KILL after the timeout, no descendant left behind, graceful
//! shutdown of the whole supervisor.

use std::time::Duration;

use crate::util::{alive, read_pid, wait_for, Fixture};

const T: Duration = Duration::from_secs(15);

#[test]
fn a_service_that_ignores_term_is_killed_after_the_timeout() {
    let mut f = Fixture::new(
        r#"
[service.stubborn]
command = ["HELPER", "ignore-term", "DIR/ready"]
stop_timeout = "1s"
min_uptime = "100ms"
"#,
    );
    f.start();
    f.wait_state("stubborn", "running", T);
    wait_for("the helper to ignore TERM", T, || read_pid(&f.path("ready")));
    let pid = f.pid("stubborn");
    let (code, _, err) = f.cli_code(&["stop", "stubborn"]);
    assert_eq!(code, 0, "{err}");
    let s = f.service("stubborn");
    assert_eq!(s["state"], "stopped");
    assert_eq!(s["last_exit"]["signal"], "KILL");
    assert!(!alive(pid));
    assert!(f.log().contains("stop timed out"), "{}", f.log());
}

#[test]
fn stop_leaves_no_grandchild_in_or_out_of_the_group() {
    let mut f = Fixture::new(
        r#"
[service.forker]
command = ["HELPER", "fork-child", "DIR/child.pid"]
min_uptime = "100ms"

[service.escaper]
command = ["HELPER", "escape", "DIR/escaped.pid"]
min_uptime = "100ms"
"#,
    );
    f.start();
    f.wait_state("forker", "running", T);
    f.wait_state("escaper", "running", T);
    let child = wait_for("the forked child", T, || read_pid(&f.path("child.pid")));
    let escaped = wait_for("the escaped grandchild", T, || read_pid(&f.path("escaped.pid")));
    let leaders = [f.pid("forker"), f.pid("escaper")];
    assert!(alive(child) && alive(escaped));
    let (code, _, err) = f.cli_code(&["stop", "forker", "escaper"]);
    assert_eq!(code, 0, "{err}");
    for pid in [child, escaped, leaders[0], leaders[1]] {
        assert!(!alive(pid), "pid {pid} outlived its service's stop");
    }
    assert_eq!(f.service("escaper")["state"], "stopped");
}

#[test]
fn a_double_forked_escapee_gets_the_stop_signal_with_the_group() {
    // The daemon leaves by double fork and setsid: it is re-parented to the
    // supervisor (a subreaper) and no longer in the service's tree or group.
    let mut f = Fixture::new(
        r#"
[service.daemon]
command = ["HELPER", "double-escape", "DIR/daemon.pid"]
min_uptime = "100ms"
stop_timeout = "60s"
"#,
    );
    f.start();
    f.wait_state("daemon", "running", T);
    let daemon = wait_for("the escaped daemon", T, || read_pid(&f.path("daemon.pid")));
    assert!(alive(daemon));
    let (code, _, err) = f.cli_code(&["stop", "daemon"]);
    assert_eq!(code, 0, "{err}");
    assert!(!alive(daemon), "the escapee outlived its service's stop");
    // It was asked to stop (TERM), not killed at the end of the timeout.
    let term = std::fs::read_to_string(f.path("daemon.pid.term")).unwrap_or_default();
    assert_eq!(term.trim(), "TERM", "the escapee never got the stop signal; log:\n{}", f.log());
    assert!(!f.log().contains("stop timed out"), "{}", f.log());
}

#[test]
fn a_crash_that_leaves_an_escaped_grandchild_is_cleaned_up_before_the_restart() {
    let mut f = Fixture::new(
        r#"
[service.escaper]
command = ["HELPER", "escape", "DIR/escaped.pid"]
min_uptime = "100ms"
"#,
    );
    f.start();
    f.wait_state("escaper", "running", T);
    let escaped = wait_for("the escaped grandchild", T, || read_pid(&f.path("escaped.pid")));
    std::fs::remove_file(f.path("escaped.pid")).unwrap();
    let leader = f.pid("escaper");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(leader), nix::sys::signal::SIGKILL).unwrap();
    // The orphan is re-parented to the supervisor (a subreaper), stopped, and
    // only then is the service started again: never two copies at once.
    let second = wait_for("the next grandchild", T, || read_pid(&f.path("escaped.pid")));
    assert!(!alive(escaped), "the first grandchild was stopped");
    assert_ne!(second, escaped);
    f.wait_state("escaper", "running", T);
}

#[test]
fn shutdown_leaves_no_process_behind() {
    let mut f = Fixture::new(
        r#"
[service.a]
command = ["HELPER", "escape", "DIR/a.pid"]
min_uptime = "100ms"

[service.b]
command = ["HELPER", "ignore-term", "DIR/b.pid"]
stop_timeout = "500ms"
min_uptime = "100ms"

[service.c]
command = "HELPER sleep"
"#,
    );
    f.start();
    for s in ["a", "b", "c"] {
        f.wait_state(s, if s == "c" { "starting" } else { "running" }, T);
    }
    let mut pids = vec![
        wait_for("a's grandchild", T, || read_pid(&f.path("a.pid"))),
        wait_for("b ready", T, || read_pid(&f.path("b.pid"))),
    ];
    pids.extend(["a", "b", "c"].map(|s| f.pid(s)));
    let sup = f.supervisor.as_ref().unwrap().id() as i32;
    let (code, out, err) = f.cli_code(&["shutdown"]);
    assert_eq!(code, 0, "{out}{err}");
    // b needed KILL: the supervisor's exit code says so.
    assert_eq!(f.wait_exit(T), 1);
    for pid in pids {
        assert!(!alive(pid), "pid {pid} survived the shutdown");
    }
    assert!(!alive(sup));
    assert!(!f.socket().exists(), "socket removed");
    assert!(!f.path("rt/run/supervisor.pid").exists(), "pidfile removed");
    // And now nothing answers.
    assert_eq!(f.cli_code(&["status"]).0, 3);
    assert_eq!(f.cli_code(&["shutdown"]).0, 0, "shutting down a stopped supervisor is success");
}

#[test]
fn sigterm_to_the_supervisor_stops_everything_and_exits_0() {
    let mut f = Fixture::new(
        r#"
[service.a]
command = ["HELPER", "fork-child", "DIR/child.pid"]
min_uptime = "100ms"
"#,
    );
    f.start();
    f.wait_state("a", "running", T);
    let child = wait_for("the child", T, || read_pid(&f.path("child.pid")));
    let leader = f.pid("a");
    let sup = f.supervisor.as_ref().unwrap().id() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sup), nix::sys::signal::SIGTERM).unwrap();
    assert_eq!(f.wait_exit(T), 0);
    assert!(!alive(child) && !alive(leader));
    assert!(f.log().contains("all services stopped"), "{}", f.log());
}

#[test]
fn stray_signals_do_not_end_the_supervisor() {
    let mut f = Fixture::new(
        r#"
[service.a]
command = ["HELPER", "sleep"]
min_uptime = "100ms"
"#,
    );
    f.start();
    let pid = f.wait_state("a", "running", T)["pid"].clone();
    let sup = nix::unistd::Pid::from_raw(f.supervisor.as_ref().unwrap().id() as i32);
    for sig in [nix::sys::signal::SIGHUP, nix::sys::signal::SIGALRM, nix::sys::signal::SIGUSR2] {
        nix::sys::signal::kill(sup, sig).unwrap();
    }
    wait_for("the signals to be logged", T, || f.log().contains("SIGALRM has no meaning").then_some(()));
    assert!(f.supervisor.as_mut().unwrap().try_wait().unwrap().is_none(), "still running");
    assert_eq!(f.service("a")["pid"], pid, "the service was not touched");
}
