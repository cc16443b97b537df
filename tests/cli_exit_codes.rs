//! Every exit code of the command line, and `up`.

use std::time::Duration;

use crate::util::{wait_for, Fixture};

const T: Duration = Duration::from_secs(15);

#[test]
fn exit_codes_without_a_supervisor() {
    let f = Fixture::new(
        r#"
[service.x]
command = ["HELPER", "sleep"]
"#,
    );
    assert_eq!(f.cli_code(&["status"]).0, 3, "no supervisor: status 3");
    assert_eq!(f.cli_code(&["status", "x", "--json"]).0, 3);
    assert_eq!(f.cli_code(&["start", "x"]).0, 7, "start needs a supervisor: 7");
    assert_eq!(f.cli_code(&["stop", "--all"]).0, 7);
    assert_eq!(f.cli_code(&["signal", "HUP", "x"]).0, 7);
    assert_eq!(f.cli_code(&["start"]).0, 2, "neither names nor --all: usage");
    assert_eq!(f.cli_code(&["start", "--all", "x"]).0, 2, "both: usage");
    assert_eq!(f.cli_code(&["frobnicate"]).0, 2);
    assert_eq!(f.cli_code(&["check-config"]).0, 0);
    let out = std::process::Command::new(crate::util::supervisor_bin())
        .args(["-c", "/nonexistent/x.toml", "status"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(err.contains("/nonexistent/x.toml"), "{err}");
}

#[test]
fn exit_codes_with_a_supervisor() {
    let mut f = Fixture::new(
        r#"
[service.up]
command = ["HELPER", "sleep"]
min_uptime = "100ms"

[service.down]
command = ["HELPER", "sleep"]
expected = "stopped"

[service.dead]
command = ["HELPER", "exit", "1"]
backoff_limit = "1s"
"#,
    );
    f.start();
    f.wait_state("up", "running", T);
    f.wait_state("dead", "fatal", T);
    assert_eq!(f.cli_code(&["status", "up"]).0, 0);
    assert_eq!(f.cli_code(&["status", "down"]).0, 3);
    assert_eq!(f.cli_code(&["status", "dead"]).0, 1);
    assert_eq!(f.cli_code(&["status", "nope"]).0, 4);
    // Several: the first that applies of 4, 1, 3, 0.
    assert_eq!(f.cli_code(&["status", "up", "down"]).0, 3);
    assert_eq!(f.cli_code(&["status", "up", "down", "dead"]).0, 1);
    assert_eq!(f.cli_code(&["status", "up", "dead", "nope"]).0, 4);
    assert_eq!(f.cli_code(&["status"]).0, 1);
    assert_eq!(f.cli_code(&["start", "nope"]).0, 2, "unknown service for start: bad argument");
    assert_eq!(f.cli_code(&["stop", "down"]).0, 0);
    assert_eq!(f.cli_code(&["start", "dead"]).0, 1, "a service that cannot start: failure");
    assert_eq!(f.cli_code(&["stop", "dead"]).0, 0);
    assert_eq!(f.cli_code(&["stop", "up", "--no-wait"]).0, 0);
    f.wait_state("up", "stopped", T);
}

#[test]
fn up_detaches_and_is_idempotent() {
    let f = Fixture::new(
        r#"
[service.bg]
command = ["HELPER", "sleep"]
min_uptime = "100ms"
"#,
    );
    struct Shutdown<'a>(&'a Fixture);
    impl Drop for Shutdown<'_> {
        fn drop(&mut self) {
            let _ = self.0.cli(&["shutdown"]);
        }
    }
    let guard = Shutdown(&f);
    let (code, out, err) = f.cli_code(&["up"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("started"), "{out}");
    // `up` returned only once it answers: status works at once.
    let st = f.status();
    let sup = st["supervisor"]["pid"].as_i64().unwrap();
    let (code, out, _) = f.cli_code(&["up"]);
    assert_eq!(code, 0, "already running is success");
    assert!(out.contains("already running") && out.contains(&sup.to_string()), "{out}");
    f.wait_state("bg", "running", T);
    let log = std::fs::read_to_string(f.path("rt/log/supervisor.log")).unwrap();
    assert!(log.contains("bg: started pid"), "{log}");
    assert_eq!(f.cli_code(&["shutdown"]).0, 0);
    wait_for("the supervisor to exit", T, || (!crate::util::alive(sup as i32)).then_some(()));
    drop(guard);
}

#[test]
fn a_second_supervisor_for_the_same_instance_is_refused() {
    let mut f = Fixture::new(
        r#"
[service.one]
command = ["HELPER", "sleep"]
"#,
    );
    f.start();
    let (code, _, err) = f.cli_code(&["run"]);
    assert_eq!(code, 1);
    assert!(err.contains("already running"), "{err}");
    assert_eq!(f.status()["services"][0]["name"], "one", "the first is unaffected");
}
