//! Start, status, crash and restart, backoff, exit codes, signals.

use std::fs;
use std::time::Duration;

use crate::util::{alive, proc_state, read_pid, wait_for, Fixture};

const T: Duration = Duration::from_secs(15);

#[test]
fn start_status_table_and_json() {
    let mut f = Fixture::new(
        r#"
[service.sleeper]
command = ["HELPER", "sleep", "DIR/sleeper.pid"]
min_uptime = "200ms"
"#,
    );
    f.start();
    let s = f.wait_state("sleeper", "running", T);
    let pid = s["pid"].as_i64().expect("pid") as i32;
    assert!(alive(pid));
    assert_eq!(read_pid(&f.path("sleeper.pid")), Some(pid), "the pid in the status is the program's own");
    assert_eq!(s["restarts"], 0);
    assert_eq!(s["expected"], "running");
    assert!(s["last_exit"].is_null());
    assert!(s["uptime_s"].as_f64().unwrap() >= 0.0);

    let st = f.status();
    assert_eq!(st["supervisor"]["name"], "t");
    assert!(st["supervisor"]["pid"].as_i64().unwrap() > 0);
    assert!(st["supervisor"]["uptime_s"].is_number());

    let (code, out, _) = f.cli_code(&["status"]);
    assert_eq!(code, 0);
    let header = out.lines().next().unwrap();
    for col in ["NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT"] {
        assert!(header.contains(col), "{header}");
    }
    let row = out.lines().find(|l| l.starts_with("sleeper")).expect("row");
    assert!(row.contains("running") && row.contains(&pid.to_string()), "{row}");
    let (code, _, _) = f.cli_code(&["status", "sleeper"]);
    assert_eq!(code, 0);
}

#[test]
fn crash_restarts_with_a_new_pid() {
    let mut f = Fixture::new(
        r#"
[service.crashy]
command = ["HELPER", "sleep"]
min_uptime = "100ms"
"#,
    );
    f.start();
    let s = f.wait_state("crashy", "running", T);
    let pid = s["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    let s = wait_for("a new pid", T, || {
        let s = f.service("crashy");
        (s["state"] == "running" && s["pid"].as_i64() != Some(i64::from(pid))).then_some(s)
    });
    assert_eq!(s["restarts"], 1);
    assert_eq!(s["last_exit"]["signal"], "KILL");
    assert!(!alive(pid));
    assert!(f.log().contains("killed by SIGKILL"), "event logged: {}", f.log());
}

#[test]
fn quick_failures_back_off_then_turn_fatal() {
    let mut f = Fixture::new(
        r#"
[service.failing]
command = ["HELPER", "exit", "1"]
backoff_limit = "2s"
"#,
    );
    f.start();
    let s = f.wait_state("failing", "backoff", T);
    assert_eq!(s["last_exit"]["code"], 1);
    let (code, _, _) = f.cli_code(&["status", "failing"]);
    assert_eq!(code, 1, "status of a service in backoff is 1");
    // 1 s, then 2 s, then the next delay (3 s) would pass the limit: fatal.
    let s = f.wait_state("failing", "fatal", T);
    assert_eq!(s["restarts"], 2);
    assert!(s["pid"].is_null());
    let (code, out, _) = f.cli_code(&["status"]);
    assert_eq!(code, 1, "{out}");
    assert!(f.log().contains("fatal"), "{}", f.log());
}

#[test]
fn exit_codes_in_the_list_are_not_restarted() {
    let mut f = Fixture::new(
        r#"
[service.done]
command = ["HELPER", "exit", "3"]
exit_codes = [0, 3]

[service.never]
command = ["HELPER", "exit", "0"]
restart = "never"
"#,
    );
    f.start();
    let s = f.wait_state("done", "exited", T);
    assert_eq!(s["last_exit"]["code"], 3);
    assert_eq!(s["restarts"], 0);
    f.wait_state("never", "exited", T);
    let (code, _, _) = f.cli_code(&["status", "done"]);
    assert_eq!(code, 3, "finished on purpose is LSB 3");
    // Still exited a moment later: nothing restarted it.
    assert_eq!(f.service("done")["restarts"], 0);
}

#[test]
fn signal_reaches_the_service_by_name_and_number() {
    let mut f = Fixture::new(
        r#"
[service.listener]
command = ["HELPER", "signals", "DIR/signals"]
min_uptime = "100ms"

[service.idle]
command = ["HELPER", "sleep"]
expected = "stopped"
"#,
    );
    f.start();
    f.wait_state("listener", "running", T);
    wait_for("the helper to be ready", T, || fs::metadata(f.path("signals.ready")).ok());
    let (code, _, err) = f.cli_code(&["signal", "HUP", "listener"]);
    assert_eq!(code, 0, "{err}");
    wait_for("HUP to arrive", T, || fs::read_to_string(f.path("signals")).ok().filter(|s| s.contains("HUP")));
    assert_eq!(f.cli_code(&["signal", "SIGUSR1", "listener"]).0, 0);
    assert_eq!(f.cli_code(&["signal", "12", "listener"]).0, 0);
    let got = wait_for("USR1 and USR2", T, || {
        fs::read_to_string(f.path("signals")).ok().filter(|s| s.contains("USR1") && s.contains("USR2"))
    });
    assert!(got.lines().all(|l| ["HUP", "USR1", "USR2"].contains(&l)), "{got}");
    // A stopped service has nothing to signal: 7.
    assert_eq!(f.cli_code(&["signal", "HUP", "idle"]).0, 7);
    // A bad signal name is a usage error.
    assert_eq!(f.cli_code(&["signal", "NOPE", "listener"]).0, 2);
    assert_eq!(f.service("listener")["state"], "running", "signals did not disturb it");
}

#[test]
fn start_stop_restart_and_wanted_state() {
    let mut f = Fixture::new(
        r#"
[service.later]
command = ["HELPER", "sleep"]
expected = "stopped"
min_uptime = "100ms"
"#,
    );
    f.start();
    let s = f.service("later");
    assert_eq!(s["state"], "stopped");
    assert_eq!(f.cli_code(&["status", "later"]).0, 3);

    let (code, _, err) = f.cli_code(&["start", "later"]);
    assert_eq!(code, 0, "{err}");
    let s = f.service("later");
    assert_eq!(s["state"], "running", "start returns once it runs");
    let pid = s["pid"].as_i64().unwrap();

    let (code, _, _) = f.cli_code(&["restart", "later"]);
    assert_eq!(code, 0);
    let s = f.service("later");
    assert_eq!(s["state"], "running");
    assert_ne!(s["pid"].as_i64().unwrap(), pid, "restart gives a new process");

    assert_eq!(f.cli_code(&["stop", "later"]).0, 0);
    assert_eq!(f.service("later")["state"], "stopped");
    assert_eq!(f.cli_code(&["stop", "later"]).0, 0, "stopping a stopped service is success");
    assert_eq!(f.service("later")["wanted"], "stopped");

    assert_eq!(f.cli_code(&["start", "--all", "--no-wait"]).0, 0);
    f.wait_state("later", "running", T);
}

#[test]
fn exec_failure_is_a_clear_error_not_a_crash_loop() {
    let mut f = Fixture::new(
        r#"
[service.missing]
command = ["/nonexistent/program", "x"]

[service.notinpath]
command = "no-such-program-anywhere --flag"

[service.notexec]
command = ["DIR/t.toml"]
"#,
    );
    f.start();
    let s = f.wait_state("missing", "fatal", T);
    let err = s["error"].as_str().unwrap();
    assert!(err.contains("/nonexistent/program") && err.contains("No such file"), "{err}");
    assert_eq!(s["restarts"], 0, "no crash loop");
    let s = f.wait_state("notinpath", "fatal", T);
    assert!(s["error"].as_str().unwrap().contains("not found"), "{s}");
    let s = f.wait_state("notexec", "fatal", T);
    assert!(s["error"].as_str().unwrap().contains("Permission denied"), "{s}");
    let (code, _, err) = f.cli_code(&["start", "missing"]);
    assert_eq!(code, 1);
    assert!(err.contains("No such file"), "{err}");
}

#[test]
fn environment_directory_umask_and_output() {
    let mut f = Fixture::new(
        r#"
[service.reporter]
command = ["HELPER", "report", "DIR/report", "two words"]
directory = "DIR"
umask = "027"
clear_env = true
env = { GREETING = "hello world", PATH = "/usr/bin:/bin" }

[service.shell]
command = "echo out-line; echo err-line >&2; exec HELPER sleep"
shell = true
stdout = "DIR/out.log"
stderr = "DIR/out.log"
"#,
    );
    fs::write(f.path("out.log"), "kept\n").unwrap();
    f.start();
    let report = wait_for("the report", T, || fs::read_to_string(f.path("report")).ok());
    assert!(report.contains(&format!("cwd={}", f.dir.path().display())), "{report}");
    assert!(report.contains("umask=027"), "{report}");
    assert!(report.contains("env GREETING=hello world"), "{report}");
    assert!(report.contains("env SUPERVISOR_SERVICE=reporter"), "{report}");
    assert!(!report.contains("env HOME="), "clear_env: {report}");
    assert!(report.contains("arg two words"), "{report}");
    let out = wait_for("output", T, || {
        fs::read_to_string(f.path("out.log")).ok().filter(|s| s.contains("out-line") && s.contains("err-line"))
    });
    assert!(out.starts_with("kept\n"), "appended, never truncated: {out}");
}

#[test]
fn user_and_group_are_switched() {
    crate::util::require_root("to switch users");
    let mut f = Fixture::new(
        r#"
[service.nobody]
command = ["HELPER", "report", "DIR/report"]
user = "nobody"
"#,
    );
    // The helper must be able to write its report.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(f.dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    f.start();
    let report = wait_for("the report", T, || fs::read_to_string(f.path("report")).ok());
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert!(report.contains(&format!("uid={}\n", nobody.uid)), "{report}");
    assert!(report.contains(&format!("gid={}\n", nobody.gid)), "{report}");
    assert!(!report.lines().any(|l| l == "groups=0" || l.starts_with("groups=0,")), "root's groups dropped: {report}");
}

#[test]
fn pause_and_resume() {
    let mut f = Fixture::new(
        r#"
[service.p]
command = ["HELPER", "sleep"]
min_uptime = "100ms"
stop_timeout = "5s"
"#,
    );
    f.start();
    let pid = f.wait_state("p", "running", T)["pid"].as_i64().unwrap() as i32;
    assert_eq!(f.cli_code(&["pause", "p"]).0, 0);
    assert_eq!(f.service("p")["state"], "paused");
    wait_for("the process to stop", T, || (proc_state(pid) == Some('T')).then_some(()));
    assert_eq!(f.cli_code(&["status", "p"]).0, 0, "a paused service still runs");
    assert_eq!(f.cli_code(&["resume", "p"]).0, 0);
    assert_eq!(f.service("p")["state"], "running");
    wait_for("the process to continue", T, || (proc_state(pid).is_some_and(|c| c != 'T')).then_some(()));
    // A paused service stops promptly: TERM is followed by CONT.
    assert_eq!(f.cli_code(&["pause", "p"]).0, 0);
    assert_eq!(f.cli_code(&["stop", "p"]).0, 0);
    let s = f.service("p");
    assert_eq!(s["last_exit"]["signal"], "TERM", "{s}");
}
