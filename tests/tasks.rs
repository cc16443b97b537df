//! Loop tasks (`kind = "task"`, atomservice) and groups of services with
//! restart strategies (simplevisor's `type = supervisor`).

use std::fs;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::util::{alive, read_pid, wait_for, write_script, Fixture};

const T: Duration = Duration::from_secs(20);

fn lines(f: &Fixture, name: &str) -> Vec<String> {
    fs::read_to_string(f.path(name)).unwrap_or_default().lines().map(String::from).collect()
}

#[test]
fn a_task_runs_every_interval_and_reports_its_last_run() {
    let mut f = Fixture::new(
        r#"
[service.tick]
kind = "task"
command = "DIR/tick.sh"
interval = "200ms"
"#,
    );
    // Each run appends "begin" and "end" around a run longer than the
    // interval: runs must never overlap.
    write_script(
        &f.path("tick.sh"),
        &format!("echo begin >> {0}/runs; sleep 0.3; echo end >> {0}/runs", f.dir.path().display()),
    );
    f.start();
    wait_for("four runs", T, || (lines(&f, "runs").iter().filter(|l| *l == "end").count() >= 4).then_some(()));
    let runs = lines(&f, "runs");
    for pair in runs.chunks(2) {
        if pair.len() == 2 {
            assert_eq!(pair, ["begin", "end"], "runs overlap: {runs:?}");
        }
    }
    let s = f.service("tick");
    assert_eq!(s["kind"], "task");
    assert!(matches!(s["state"].as_str(), Some("idle" | "running")), "{s}");
    let last = &s["last_run"];
    assert!(last["started"].as_str().unwrap().ends_with('Z'), "{last}");
    assert!(last["duration_s"].as_f64().unwrap() >= 0.3, "{last}");
    assert_eq!(last["exit"]["code"], 0);
    assert_eq!(s["failures"], 0);
    assert!(s["runs"].as_u64().unwrap() >= 3);

    // stop disables it; start runs it again.
    let (code, _, err) = f.cli_code(&["stop", "tick"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(f.service("tick")["state"], "stopped");
    let n = lines(&f, "runs").len();
    let (code, _, err) = f.cli_code(&["start", "tick"]);
    assert_eq!(code, 0, "{err}");
    wait_for("a run after start", T, || (lines(&f, "runs").len() > n).then_some(()));
}

#[test]
fn task_failures_are_counted_and_timeouts_kill_the_run() {
    let mut f = Fixture::new(
        r#"
[service.fails]
kind = "task"
command = "exit 3"
shell = true
interval = "100ms"

[service.hangs]
kind = "task"
command = ["DIR/hang.sh"]
interval = "100ms"
timeout = "300ms"
stop_timeout = "200ms"
"#,
    );
    write_script(
        &f.path("hang.sh"),
        &format!("{} sleep {}/hang.pid &\nwait", crate::util::helper(), f.dir.path().display()),
    );
    f.start();
    let s = wait_for("two failures", T, || {
        let s = f.service("fails");
        (s["failures"].as_u64().unwrap_or(0) >= 2).then_some(s)
    });
    assert_eq!(s["last_run"]["exit"]["code"], 3);
    let log = f.log();
    assert!(log.contains("WARN  fails: run failed: exited with code 3 ("), "{log}");

    let s = wait_for("a timed-out run", T, || {
        let s = f.service("hangs");
        (s["last_run"]["timed_out"] == true).then_some(s)
    });
    assert!(s["failures"].as_u64().unwrap() >= 1);
    let child = read_pid(&f.path("hang.pid")).expect("the run's child");
    wait_for("the run's child to be gone", T, || (!alive(child)).then_some(()));
}

/// Three daemons in a group; each records its start.
fn group_fixture(strategy: &str) -> Fixture {
    Fixture::new(&format!(
        r#"
[service.a]
command = ["HELPER", "stamp", "DIR/starts.a"]
min_uptime = "100ms"

[service.b]
command = ["HELPER", "stamp", "DIR/starts.b"]
min_uptime = "100ms"

[service.c]
command = ["HELPER", "stamp", "DIR/starts.c"]
min_uptime = "100ms"

[group.abc]
services = ["a", "b", "c"]
strategy = "{strategy}"
"#
    ))
}

fn starts(f: &Fixture, name: &str) -> Vec<(i32, i128)> {
    lines(f, &format!("starts.{name}"))
        .iter()
        .filter_map(|l| {
            let (p, t) = l.split_once(' ')?;
            Some((p.parse().ok()?, t.parse().ok()?))
        })
        .collect()
}

fn all_running(f: &Fixture) {
    for n in ["a", "b", "c"] {
        f.wait_state(n, "running", T);
    }
}

#[test]
fn a_group_starts_in_order_stops_in_reverse_and_rest_for_one_restarts_the_rest() {
    let mut f = group_fixture("rest_for_one");
    f.start();
    all_running(&f);
    let (b, c) = (starts(&f, "b")[0], starts(&f, "c")[0]);
    // Each starts once the one before it runs (past min_uptime).
    let log = f.log();
    let at = |s: &str| log.find(s).unwrap_or_else(|| panic!("{s} in {log}"));
    assert!(at("a: running (pid") < at("b: started pid"), "{log}");
    assert!(at("b: running (pid") < at("c: started pid"), "{log}");

    // b dies: b and c are restarted, a is not.
    kill(Pid::from_raw(b.0), Signal::SIGKILL).unwrap();
    wait_for("c to be restarted", T, || (starts(&f, "c").len() >= 2).then_some(()));
    all_running(&f);
    assert_eq!(starts(&f, "a").len(), 1, "a is not touched");
    assert_eq!(starts(&f, "b").len(), 2);
    assert!(!alive(c.0), "the old c was stopped");

    // Shutdown: c, then b, then a.
    let (code, _, _) = f.cli_code(&["shutdown"]);
    assert_eq!(code, 0);
    f.wait_exit(T);
    let log = f.log();
    let at = |s: &str| log.rfind(s).unwrap_or_else(|| panic!("{s} in {log}"));
    assert!(at("c: stopped") < at("b: stopped") && at("b: stopped") < at("a: stopped"), "{log}");
}

#[test]
fn one_for_all_restarts_every_member_and_one_for_one_only_the_failed() {
    let mut f = group_fixture("one_for_all");
    f.start();
    all_running(&f);
    let c = starts(&f, "c")[0];
    kill(Pid::from_raw(c.0), Signal::SIGKILL).unwrap();
    wait_for("a and b to be restarted", T, || (starts(&f, "a").len() >= 2 && starts(&f, "b").len() >= 2).then_some(()));
    all_running(&f);
    drop(f);

    let mut f = group_fixture("one_for_one");
    f.start();
    all_running(&f);
    let b = starts(&f, "b")[0];
    kill(Pid::from_raw(b.0), Signal::SIGKILL).unwrap();
    wait_for("b to be restarted", T, || (starts(&f, "b").len() >= 2).then_some(()));
    all_running(&f);
    assert_eq!((starts(&f, "a").len(), starts(&f, "c").len()), (1, 1));
}

#[test]
fn bad_groups_are_rejected() {
    let f = Fixture::new(
        r#"
[service.a]
command = "true"

[group.g1]
services = ["a", "nope"]
strategy = "all_for_one"

[group.g2]
services = ["a"]
"#,
    );
    let (code, _, err) = f.cli_code(&["check-config"]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("no service named \"nope\""), "{err}");
    assert!(err.contains("group.g1.strategy"), "{err}");
    assert!(err.contains("\"a\" is already a member of group \"g1\""), "{err}");
}

#[test]
fn reload_auto_applies_an_edited_file_before_the_next_run() {
    let mut f = Fixture::with_supervisor_table(
        "reload = \"auto\"",
        r#"
[service.loop]
kind = "task"
command = "echo v1 >> DIR/out"
shell = true
interval = "200ms"
"#,
    );
    f.start();
    wait_for("a run of v1", T, || lines(&f, "out").contains(&"v1".to_string()).then_some(()));
    // Edited in place, as an operator would (a new file renamed over it).
    let text = fs::read_to_string(&f.config).unwrap().replace("echo v1", "echo v2");
    fs::write(f.path("t.toml.new"), text).unwrap();
    fs::rename(f.path("t.toml.new"), &f.config).unwrap();
    wait_for("a run of v2", T, || lines(&f, "out").contains(&"v2".to_string()).then_some(()));
    let out = lines(&f, "out");
    let first_v2 = out.iter().position(|l| l == "v2").unwrap();
    assert!(out[first_v2..].iter().all(|l| l == "v2"), "no run of the old definition after the new one: {out:?}");
    assert!(f.log().contains("changed; reloading it"), "{}", f.log());
}

#[test]
fn start_and_stop_of_a_group_go_in_order() {
    let mut f = group_fixture("one_for_one");
    f.start();
    all_running(&f);
    let mark = f.log().len();
    let (code, _, err) = f.cli_code(&["stop", "abc"]);
    assert_eq!(code, 0, "{err}");
    for n in ["a", "b", "c"] {
        assert_eq!(f.service(n)["state"], "stopped");
    }
    let log = f.log()[mark..].to_string();
    let at = |s: &str| log.find(s).unwrap_or_else(|| panic!("{s} in {log}"));
    assert!(at("c: stopped") < at("b: stopped") && at("b: stopped") < at("a: stopped"), "{log}");

    let mark = f.log().len();
    let (code, _, err) = f.cli_code(&["start", "abc"]);
    assert_eq!(code, 0, "{err}");
    let log = f.log()[mark..].to_string();
    let at = |s: &str| log.find(s).unwrap_or_else(|| panic!("{s} in {log}"));
    assert!(at("a: running (pid") < at("b: started pid"), "{log}");
    assert!(at("b: running (pid") < at("c: started pid"), "{log}");

    // A group may not share a name with a service.
    let text = fs::read_to_string(&f.config).unwrap().replace("[group.abc]", "[group.a]");
    fs::write(&f.config, text).unwrap();
    let (code, _, err) = f.cli_code(&["check-config"]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("a group needs a name of its own"), "{err}");
}
