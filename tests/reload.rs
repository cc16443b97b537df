//! `reload`, `SIGHUP` and `reload = "auto"`: the configuration file read
//! again and only the difference applied, on real processes.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::util::{alive, helper, read_pid, wait_for, Fixture};

const T: Duration = Duration::from_secs(15);

/// Writes the fixture's configuration again: the same `[supervisor]`
/// table (with `extra`), and `services` (`HELPER` and `DIR` replaced).
fn rewrite(f: &Fixture, extra: &str, services: &str) {
    let d = f.dir.path().display().to_string();
    let text = format!(
        "[supervisor]\nname = \"t\"\nruntime_dir = \"{d}/rt\"\nlog_level = \"debug\"\n{}\n{}",
        extra.replace("DIR", &d),
        services.replace("HELPER", &helper()).replace("DIR", &d)
    );
    // Through a rename, as editors do: the watcher sees a new inode.
    let tmp = f.path("t.toml.new");
    fs::write(&tmp, text).expect("write config");
    fs::rename(&tmp, &f.config).expect("rename config");
}

/// One request on the control socket, without the CLI (which needs a
/// valid configuration file to find the socket).
fn raw(f: &Fixture, request: &str) -> Value {
    let mut s = UnixStream::connect(f.socket()).expect("connect");
    s.set_read_timeout(Some(T)).expect("timeout");
    s.write_all(format!("{request}\n").as_bytes()).expect("send");
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("answer");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// The pid of service `name` through the socket, `None` when it has none
/// or does not exist.
fn raw_pid(f: &Fixture, name: &str) -> Option<i32> {
    let st = raw(f, r#"{"cmd":"status"}"#);
    let services = st["status"]["services"].as_array().cloned().unwrap_or_default();
    services.iter().find(|s| s["name"] == name).and_then(|s| s["pid"].as_i64()).map(|p| p as i32)
}

fn names(f: &Fixture) -> Vec<String> {
    let st = f.status();
    st["services"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

/// As [`wait_for`], with the supervisor's log in the panic message.
fn wait_logged<T>(f: &Fixture, what: &str, limit: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}; log:\n{}",
            f.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until service `name` is listed and running.
fn wait_running(f: &Fixture, name: &str, limit: Duration) -> Value {
    wait_logged(f, &format!("{name} to be listed"), limit, || names(f).iter().any(|n| n == name).then_some(()));
    f.wait_state(name, "running", limit)
}

const FOUR: &str = r#"
[service.keep]
command = ["HELPER", "sleep", "DIR/keep.pid"]
[service.change]
command = ["HELPER", "sleep", "DIR/change.pid"]
[service.gone]
command = ["HELPER", "fork-child", "DIR/gone-child.pid"]
[service.idle]
command = ["HELPER", "sleep"]
"#;

#[test]
fn reload_applies_only_the_difference() {
    let mut f = Fixture::new(FOUR);
    f.start();
    for n in ["keep", "change", "gone", "idle"] {
        f.wait_state(n, "running", T);
    }
    let keep = f.pid("keep");
    let change = f.pid("change");
    let gone = f.pid("gone");
    let gone_child = wait_for("the child of gone", T, || read_pid(&f.path("gone-child.pid")));
    assert!(alive(gone_child));
    // Stopped on purpose: a changed definition keeps it stopped.
    let (code, _, err) = f.cli_code(&["stop", "idle"]);
    assert_eq!(code, 0, "{err}");

    rewrite(
        &f,
        "",
        r#"
[service.keep]
command = ["HELPER", "sleep", "DIR/keep.pid"]
[service.change]
command = ["HELPER", "sleep", "DIR/change2.pid"]
stop_timeout = "3s"
[service.idle]
command = ["HELPER", "sleep", "DIR/idle.pid"]
[service.new]
command = ["HELPER", "sleep", "DIR/new.pid"]
"#,
    );
    let (code, out, err) = f.cli_code(&["reload"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": reloaded"), "{out}");
    assert!(out.contains("  unchanged  keep\n"), "{out}");
    assert!(out.contains("  restart    change (command, stop_timeout)\n"), "{out}");
    assert!(out.contains("  restart    idle (command)\n"), "{out}");
    assert!(out.contains("  add        new\n"), "{out}");
    assert!(out.contains("  remove     gone\n"), "{out}");

    // The new one runs, the changed one runs its new definition.
    let new = wait_for("new to run", T, || read_pid(&f.path("new.pid")));
    assert_eq!(f.wait_state("new", "running", T)["pid"], new);
    let change2 = wait_for("change to run again", T, || read_pid(&f.path("change2.pid")));
    assert_ne!(change2, change);
    assert_eq!(f.wait_state("change", "running", T)["pid"], change2);
    assert!(!alive(change), "the old process of change is gone");
    // The removed one is stopped, with its descendants, and no longer listed.
    wait_for("gone and its child to end", T, || (!alive(gone) && !alive(gone_child)).then_some(()));
    wait_for("gone to leave the status", T, || (!names(&f).contains(&"gone".to_string())).then_some(()));
    // Untouched: the same process.
    assert_eq!(f.pid("keep"), keep);
    assert!(alive(keep));
    // Stopped on purpose, and still stopped with its new definition.
    let idle = f.wait_state("idle", "stopped", T);
    assert!(idle["pid"].is_null());
    assert!(!f.path("idle.pid").exists());
    assert_eq!(names(&f), ["keep", "change", "idle", "new"]);

    // The same file again: nothing to do, nothing touched.
    let (code, out, _) = f.cli_code(&["reload"]);
    assert_eq!(code, 0);
    assert_eq!(out.matches("unchanged").count(), 4, "{out}");
    assert_eq!(f.pid("keep"), keep);
    assert_eq!(f.pid("change"), change2);
    let log = f.log();
    assert!(
        log.contains("reloading ") && log.contains("add new; restart change, idle; remove gone; 1 unchanged"),
        "{log}"
    );
}

#[test]
fn an_invalid_file_is_rejected_with_all_its_errors() {
    let mut f = Fixture::new("[service.a]\ncommand = [\"HELPER\", \"sleep\"]\n");
    f.start();
    let a = f.wait_state("a", "running", T)["pid"].as_i64().unwrap() as i32;
    rewrite(
        &f,
        "",
        r#"
[service.a]
command = ["HELPER", "sleep", "DIR/other.pid"]
stop_timeout = "soon"
[service.b]
command = ["HELPER", "sleep"]
colour = "blue"
"#,
    );
    // The supervisor finds every error that check-config finds, and
    // reports them with the same exit code.
    let (check, _, check_err) = f.cli_code(&["check-config"]);
    let (code, out, err) = f.cli_code(&["reload"]);
    assert_eq!(code, 6, "{out}{err}");
    assert_eq!(code, check);
    assert!(err.starts_with(&check_err) && err.contains("not reloaded"), "{err}");
    assert!(err.contains("stop_timeout") && err.contains("colour"), "{err}");

    // The supervisor, asked directly, rejects it the same way.
    let resp = raw(&f, r#"{"id":7,"cmd":"reload"}"#);
    assert_eq!(resp["id"], 7);
    assert_eq!(resp["ok"], false);
    assert_eq!(resp["error"]["code"], "bad_config", "{resp}");
    let errors = resp["reload"]["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{resp}");
    assert!(errors[0].as_str().unwrap().contains("key \"stop_timeout\""), "{resp}");
    assert!(errors[1].as_str().unwrap().contains("key \"colour\""), "{resp}");
    assert_eq!(resp["reload"]["applied"], false);
    // And so does SIGHUP, in the log.
    let sv = f.supervisor.as_ref().unwrap().id() as i32;
    kill(Pid::from_raw(sv), Signal::SIGHUP).unwrap();
    wait_for("the rejection in the log", T, || (f.log().matches("reload rejected").count() >= 2).then_some(()));

    // Nothing changed.
    assert_eq!(raw_pid(&f, "a"), Some(a));
    assert_eq!(raw_pid(&f, "b"), None);
    assert!(!f.path("other.pid").exists());

    // Once fixed, the file applies.
    rewrite(&f, "", "[service.a]\ncommand = [\"HELPER\", \"sleep\", \"DIR/other.pid\"]\n");
    let (code, out, err) = f.cli_code(&["reload"]);
    assert_eq!(code, 0, "{out}{err}");
    let other = wait_for("a's new definition", T, || read_pid(&f.path("other.pid")));
    assert_eq!(f.wait_state("a", "running", T)["pid"], other);
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let mut f = Fixture::new(
        "[service.a]\ncommand = [\"HELPER\", \"sleep\"]\n[service.b]\ncommand = [\"HELPER\", \"sleep\"]\n",
    );
    f.start();
    let a = f.wait_state("a", "running", T)["pid"].as_i64().unwrap() as i32;
    let b = f.wait_state("b", "running", T)["pid"].as_i64().unwrap() as i32;
    rewrite(
        &f,
        "",
        "[service.a]\ncommand = [\"HELPER\", \"sleep\", \"DIR/a.pid\"]\n[service.c]\ncommand = [\"HELPER\", \"sleep\"]\n",
    );
    let (code, out, err) = f.cli_code(&["reload", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    let path = f.config.display().to_string();
    assert_eq!(
        out,
        format!("{path}: dry run, nothing changed\n  restart    a (command)\n  add        c\n  remove     b\n"),
    );
    // Nothing moved, even after a while.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(f.pid("a"), a);
    assert_eq!(f.pid("b"), b);
    assert_eq!(names(&f), ["a", "b"]);
    assert!(!f.path("a.pid").exists());
    // The supervisor computed the plan against what it runs: the applied
    // reload finds the same.
    let (code, out, _) = f.cli_code(&["reload"]);
    assert_eq!(code, 0);
    assert!(out.contains("  restart    a (command)\n  add        c\n  remove     b\n"), "{out}");
    f.wait_state("c", "running", T);
    wait_for("b to go", T, || (!alive(b)).then_some(()));
}

#[test]
fn sighup_reloads() {
    let mut f = Fixture::new("[service.a]\ncommand = [\"HELPER\", \"sleep\"]\n");
    f.start();
    let a = f.wait_state("a", "running", T)["pid"].as_i64().unwrap() as i32;
    rewrite(&f, "", "[service.a]\ncommand = [\"HELPER\", \"sleep\"]\n[service.b]\ncommand = [\"HELPER\", \"sleep\"]\n");
    let sv = f.supervisor.as_ref().unwrap().id() as i32;
    kill(Pid::from_raw(sv), Signal::SIGHUP).unwrap();
    wait_running(&f, "b", T);
    assert_eq!(f.pid("a"), a);
    assert!(f.log().contains("SIGHUP: reloading"), "{}", f.log());
    assert!(!f.log().contains("has no meaning"), "{}", f.log());
}

#[test]
fn auto_reload_picks_up_an_edited_file() {
    let auto = "reload = \"auto\"";
    let mut f = Fixture::with_supervisor_table(auto, "[service.a]\ncommand = [\"HELPER\", \"sleep\"]\n");
    f.start();
    let a = f.wait_state("a", "running", T)["pid"].as_i64().unwrap() as i32;
    rewrite(
        &f,
        auto,
        "[service.a]\ncommand = [\"HELPER\", \"sleep\"]\n[service.b]\ncommand = [\"HELPER\", \"sleep\"]\n",
    );
    wait_running(&f, "b", Duration::from_secs(10));
    assert_eq!(f.pid("a"), a);
    assert!(f.log().contains("changed; reloading it"), "{}", f.log());

    // An invalid edit is logged once, and the running configuration stays.
    rewrite(&f, auto, "[service.a]\ncommand = [\"HELPER\", \"sleep\"]\nfrobnicate = 1\n");
    wait_for("the rejection in the log", Duration::from_secs(10), || f.log().contains("reload rejected").then_some(()));
    // Several checks later, still logged once (nothing changed since).
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(f.log().matches("reload rejected").count(), 1, "{}", f.log());
    assert!(f.log().contains("key \"frobnicate\""), "{}", f.log());
    assert_eq!(raw_pid(&f, "a"), Some(a));
    assert!(raw_pid(&f, "b").is_some());

    // Edited in place (same inode), once more valid: applied.
    let d = f.dir.path().display().to_string();
    let text = fs::read_to_string(&f.config).unwrap().replace("frobnicate = 1\n", "");
    let text = format!("{text}[service.c]\ncommand = [\"{}\", \"sleep\", \"{d}/c.pid\"]\n", helper());
    fs::write(&f.config, text).unwrap();
    wait_logged(&f, "c to run", Duration::from_secs(10), || read_pid(&f.path("c.pid")));
    wait_for("b to go", T, || (!names(&f).contains(&"b".to_string())).then_some(()));
    assert_eq!(f.pid("a"), a);
}

#[test]
fn reload_repairs_a_service_in_backoff() {
    let mut f = Fixture::new(
        r#"
[service.broken]
command = ["HELPER", "exit", "1"]
backoff_limit = "30s"
"#,
    );
    f.start();
    f.wait_state("broken", "backoff", T);
    rewrite(
        &f,
        "",
        r#"
[service.broken]
command = ["HELPER", "sleep", "DIR/fixed.pid"]
backoff_limit = "30s"
"#,
    );
    let (code, out, err) = f.cli_code(&["reload"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("  restart    broken (command)\n"), "{out}");
    // At once, not after the backoff delay.
    let pid = wait_for("the fixed program", Duration::from_secs(5), || read_pid(&f.path("fixed.pid")));
    let s = f.wait_state("broken", "running", T);
    assert_eq!(s["pid"], pid);
    assert_eq!(s["restarts"], 0, "a new definition starts afresh: {s}");
}

#[test]
fn reload_needs_a_running_supervisor_and_dry_run_is_not_for_scans() {
    let f = Fixture::new("[service.a]\ncommand = [\"HELPER\", \"sleep\"]\n");
    let (code, _, err) = f.cli_code(&["reload"]);
    assert_eq!(code, 7, "{err}");
    let (code, _, err) = f.cli_code(&["reload", "--dry-run", "--scan", "/tmp"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn supervisor_settings_that_need_a_restart_are_reported() {
    let mut f = Fixture::new("[service.a]\ncommand = [\"HELPER\", \"sleep\"]\n");
    f.start();
    let a = f.wait_state("a", "running", T)["pid"].as_i64().unwrap() as i32;
    let text = fs::read_to_string(&f.config).unwrap();
    let text = text.replace("log_level = \"debug\"\n", "log_level = \"warn\"\numask = \"077\"\n");
    fs::write(&f.config, text).unwrap();
    let (code, out, err) = f.cli_code(&["reload"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("note: umask changed from 022 to 077: needs a restart of the supervisor"), "{out}");
    assert!(out.contains("note: log_level changed from debug to warn: applied"), "{out}");
    assert_eq!(f.pid("a"), a);
    // Applied at once: a restart of the service is no longer logged at
    // info level.
    let before = f.log().len();
    let (code, _, _) = f.cli_code(&["restart", "a"]);
    assert_eq!(code, 0);
    f.wait_state("a", "running", T);
    let log = f.log();
    assert!(!log[before..].contains(" INFO "), "{}", &log[before..]);
}

#[test]
fn a_removed_service_is_forgotten_by_the_state_file() {
    let two = "[service.a]\ncommand = [\"HELPER\", \"sleep\"]\n[service.b]\ncommand = [\"HELPER\", \"sleep\"]\n";
    let mut f = Fixture::new(two);
    f.start();
    f.wait_state("b", "running", T);
    rewrite(&f, "", "[service.a]\ncommand = [\"HELPER\", \"sleep\"]\n");
    let (code, out, err) = f.cli_code(&["reload"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_for("b to go", T, || (!names(&f).contains(&"b".to_string())).then_some(()));
    let state = fs::read_to_string(f.path("rt/run/state.json")).unwrap();
    assert!(!state.contains("\"b\""), "{state}");
    // Back in the file, after a restart of the supervisor: its `expected`
    // applies, not the stop that removed it.
    crate::util::stop_supervisor(f.supervisor.as_mut().unwrap());
    f.supervisor = None;
    rewrite(&f, "", two);
    f.start();
    f.wait_state("b", "running", T);
}
