//! Readiness and dependencies from the command line: `wait`, the status
//! table and JSON, `check-config` on a graph.

use std::time::Duration;

use crate::util::{wait_for, Fixture};

const T: Duration = Duration::from_secs(15);

/// db is ready once DIR/go exists (a newline on fd 3); web requires it.
const DB_AND_WEB: &str = r#"
[service.db]
command = ["sh", "-c", "while [ ! -e DIR/go ]; do sleep 0.02; done; echo >&3; exec sleep 100"]
[service.db.ready]
notify = "fd:3"
timeout = "30s"

[service.web]
command = ["sleep", "100"]
requires = ["db"]
min_uptime = "100ms"
"#;

#[test]
fn wait_returns_once_ready_and_says_why_not_before() {
    let mut f = Fixture::new(DB_AND_WEB);
    f.start();
    let (code, out, _) = f.cli_code(&["wait", "web", "--timeout", "300ms"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out.trim(), "web: not ready after 300ms: stopped (waiting for db (starting))");
    let (code, out, _) = f.cli_code(&["status", "web"]);
    assert_eq!(code, 3, "{out}");
    let head = out.lines().next().unwrap();
    assert!(head.starts_with("NAME  STATE    READY  HEALTH  PID"), "{out}");
    assert!(out.lines().nth(1).unwrap().ends_with("waiting for db (starting)"), "{out}");
    let web = f.service("web");
    assert_eq!(web["ready"], false);
    assert_eq!(web["waiting_for"], serde_json::json!(["db"]));
    let db = f.service("db");
    assert!(db["reason"].as_str().unwrap().starts_with("waiting for a newline on descriptor 3"), "{db}");

    let waiter = std::process::Command::new(crate::util::supervisor_bin())
        .args(["-c", &f.config.display().to_string(), "--json", "wait", "db", "web"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::fs::write(f.path("go"), b"").unwrap();
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ready"], true);
    assert_eq!(doc["services"][1]["name"], "web");
    wait_for("web ready", T, || (f.service("web")["ready"] == true).then_some(()));
}

#[test]
fn wait_fails_at_once_for_a_service_that_gave_up_and_without_a_supervisor() {
    let mut f = Fixture::new("[service.ghost]\ncommand = [\"/nonexistent/ghost\"]\n");
    let (code, _, err) = f.cli_code(&["wait", "ghost"]);
    assert_eq!(code, 7, "{err}");
    f.start();
    let (code, out, _) = f.cli_code(&["wait", "ghost", "--timeout", "10s"]);
    assert_eq!(code, 1);
    assert!(out.starts_with("ghost: fatal: gave up: exec /nonexistent/ghost: No such file"), "{out}");
}

#[test]
fn check_config_names_a_cycle_and_an_unknown_dependency() {
    let f = Fixture::new(
        "[service.a]\ncommand = [\"true\"]\nrequires = [\"b\"]\n\
         [service.b]\ncommand = [\"true\"]\nafter = [\"a\", \"nope\"]\n",
    );
    let (code, _, err) = f.cli_code(&["check-config"]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("key \"after\": a cycle: a -> b -> a"), "{err}");
    assert!(err.contains("t.toml:11:15: service \"b\", key \"after\": no service named \"nope\""), "{err}");
}

#[test]
fn sd_notify_from_the_script_and_mainpid_are_followed() {
    let mut f = Fixture::new(
        r#"
[service.forking]
command = ["sh", "-c", "sleep 1000 & systemd-notify --ready --status='forked' --pid=$!; exit 0"]
[service.forking.ready]
notify = "systemd"
timeout = "20s"
"#,
    );
    f.start();
    let (code, out, err) = f.cli_code(&["wait", "forking", "--timeout", "20s"]);
    assert_eq!(code, 0, "{out}{err}");
    // The shell is gone; the process it named is the main one now.
    let svc = wait_for("the main process to be the sleep", T, || {
        let svc = f.service("forking");
        let pid = svc["pid"].as_i64()?;
        let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).ok()?;
        (cmd.starts_with("sleep\u{0}1000") && svc["state"] == "running").then_some(svc)
    });
    assert_eq!(svc["status_text"], "forked");
    let pid = svc["pid"].as_i64().unwrap() as i32;
    let (code, _, err) = f.cli_code(&["stop", "forking"]);
    assert_eq!(code, 0, "{err}");
    assert!(!crate::util::alive(pid));
}

/// db (ready at once by fd:3) and web requiring it, both left stopped;
/// each writes its name to DIR/order when it is stopped.
const STOPPED_CHAIN: &str = r#"
[service.db]
command = ["sh", "-c", "trap 'echo db >> DIR/order; exit 0' TERM; echo >&3; while :; do sleep 0.05; done"]
expected = "stopped"
[service.db.ready]
notify = "fd:3"

[service.web]
command = ["sh", "-c", "trap 'sleep 0.2; echo web >> DIR/order; exit 0' TERM; while :; do sleep 0.05; done"]
requires = ["db"]
expected = "stopped"
min_uptime = "100ms"
"#;

#[test]
fn start_and_stop_from_the_command_line_follow_the_graph() {
    let mut f = Fixture::new(STOPPED_CHAIN);
    f.start();
    let (code, out, err) = f.cli_code(&["start", "web"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(f.service("db")["state"], "running");
    assert_eq!(f.service("web")["state"], "running");
    let (code, out, err) = f.cli_code(&["stop", "db"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(std::fs::read_to_string(f.path("order")).unwrap(), "web\ndb\n");
    let web = f.service("web");
    assert_eq!((web["state"].as_str(), web["wanted"].as_str()), (Some("stopped"), Some("running")));
    assert_eq!(web["reason"], "waiting for db (stopped)");
    assert_eq!(f.service("db")["reason"], "stopped by a command");
}

#[test]
fn wait_fails_at_once_when_a_dependency_gave_up() {
    let mut f = Fixture::new(
        "[service.ghost]\ncommand = [\"/nonexistent/ghost\"]\n\
         [service.web]\ncommand = [\"sleep\", \"100\"]\nrequires = [\"ghost\"]\n",
    );
    f.start();
    let t = std::time::Instant::now();
    let (code, out, _) = f.cli_code(&["wait", "web", "--timeout", "30s"]);
    assert_eq!(code, 1, "{out}");
    assert!(t.elapsed() < Duration::from_secs(20), "it waited out the timeout");
    assert!(out.starts_with("web: waits for ghost, which will not be ready (fatal: gave up: exec"), "{out}");
    assert!(out.ends_with('\n'));
}

#[test]
fn reload_shows_graph_changes_and_applies_them_in_dependency_order() {
    let mut f = Fixture::new(
        "[service.web]\ncommand = [\"sleep\", \"100\"]\nmin_uptime = \"100ms\"\n\
         [service.db]\ncommand = [\"sleep\", \"100\"]\nmin_uptime = \"100ms\"\n",
    );
    f.start();
    wait_for("both running", T, || (f.service("web")["state"] == "running").then_some(()));
    // web now requires a new service, listed after it in the file.
    let text = std::fs::read_to_string(&f.config).unwrap().replace(
        "[service.web]\ncommand = [\"sleep\", \"100\"]\n",
        "[service.web]\ncommand = [\"sleep\", \"100\"]\nrequires = [\"cache\"]\n",
    ) + "[service.cache]\ncommand = [\"sh\", \"-c\", \"sleep 0.3; echo >&3; exec sleep 100\"]\nready.notify = \"fd:3\"\n";
    std::fs::write(&f.config, text).unwrap();
    let (code, out, err) = f.cli_code(&["reload", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    let path = f.config.display();
    assert_eq!(
        out,
        format!("{path}: dry run, nothing changed\n  add        cache\n  restart    web (requires)\n  unchanged  db\n")
    );
    let (code, _, err) = f.cli_code(&["reload"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = f.cli_code(&["wait", "web", "cache", "--timeout", "10s"]);
    assert_eq!(code, 0, "{out}{err}");
    let web = f.service("web");
    let cache = f.service("cache");
    assert!(web["uptime_s"].as_f64().unwrap() < cache["uptime_s"].as_f64().unwrap(), "web started after cache");
}

#[test]
fn a_service_of_another_user_reaches_the_notify_socket() {
    crate::util::require_root("the service runs as nobody");
    let mut f = Fixture::new(
        r#"
[service.web]
command = ["sh", "-c", "systemd-notify --ready --status=\"as $(id -un)\"; exec sleep 100"]
user = "nobody"
directory = "/"
[service.web.ready]
notify = "systemd"
timeout = "20s"
"#,
    );
    // The test's own directory must let nobody through too.
    std::fs::set_permissions(f.dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    f.start();
    let (code, out, err) = f.cli_code(&["wait", "web", "--timeout", "20s"]);
    let transcript = std::fs::read_to_string(f.path("rt/console/web.log")).unwrap_or_default();
    assert_eq!(code, 0, "{out}{err}{transcript}");
    assert_eq!(f.service("web")["status_text"], "as nobody");
    let mode = std::fs::metadata(f.path("rt/run")).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o711);
}

#[test]
fn wait_ready_waits_for_every_service_that_should_run() {
    let mut f = Fixture::new(
        r#"
[service.web]
command = "while [ ! -e DIR/go ]; do sleep 0.02; done; exec sleep 1000"
shell = true
[service.web.ready]
exec = "test -e DIR/go"
interval = "50ms"
[service.idle]
command = "sleep 1000"
expected = "stopped"
[service.tick]
kind = "task"
command = "true"
interval = "1h"
"#,
    );
    f.start();
    // A readiness probe: not yet, at once.
    let (code, out, _) = f.cli_code(&["wait", "--ready", "--timeout", "0s"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("web: not ready after 0s"), "{out}");
    std::fs::write(f.path("go"), "").unwrap();
    // Neither the stopped service nor the loop task holds it up.
    let (code, out, err) = f.cli_code(&["wait", "--ready", "--timeout", "20s"]);
    assert_eq!((code, out.trim()), (0, "ready: web"), "{err}");
}
