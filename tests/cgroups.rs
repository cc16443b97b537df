//! A cgroup per service (where the supervisor may make one), and the
//! `/proc` way of finding a service's processes where it may not (or with
//! `cgroups = false`): both find and stop an escaped descendant.

use std::fs;
use std::time::Duration;

use crate::util::{alive, read_pid, wait_for, Fixture};

const T: Duration = Duration::from_secs(15);

const ESCAPING_DAEMON: &str = r#"
[service.daemon]
command = ["HELPER", "double-escape", "DIR/daemon.pid"]
min_uptime = "100ms"
stop_timeout = "60s"
"#;

/// The cgroup 2 path of `pid` (`None` once it is gone).
fn cgroup_of(pid: i32) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("0::")).map(str::to_owned)
}

/// Starts the escaping daemon, returns (fixture, supervisor pid, main
/// process, escapee).
fn start(table: &str) -> (Fixture, i32, i32, i32) {
    let mut f = Fixture::with_supervisor_table(table, ESCAPING_DAEMON);
    f.start();
    f.wait_state("daemon", "running", T);
    let escapee = wait_for("the escaped daemon", T, || read_pid(&f.path("daemon.pid")));
    let sv = f.status()["supervisor"]["pid"].as_i64().expect("supervisor pid") as i32;
    let leader = f.pid("daemon");
    (f, sv, leader, escapee)
}

/// Stops the daemon: the escapee got `TERM`, not only the final `KILL`.
fn stop_and_check(f: &Fixture, escapee: i32) {
    let (code, _, err) = f.cli_code(&["stop", "daemon"]);
    assert_eq!(code, 0, "{err}");
    assert!(!alive(escapee), "the escapee outlived its service's stop");
    let term = fs::read_to_string(f.path("daemon.pid.term")).unwrap_or_default();
    assert_eq!(term.trim(), "TERM", "the escapee never got the stop signal; log:\n{}", f.log());
}

#[test]
#[ignore = "needs a writable cgroup 2 hierarchy (root on a host, a privileged container): .ci/run runs it where there is one"]
fn cgroup_a_service_and_its_escapee_share_the_services_cgroup() {
    let (mut f, sv, leader, escapee) = start("");
    let own = cgroup_of(sv).expect("the supervisor's cgroup");
    let want = format!("{}/supervisor-{sv}/svc-daemon", own.trim_end_matches('/'));
    assert_eq!(cgroup_of(leader).as_deref(), Some(want.as_str()), "the main process; log:\n{}", f.log());
    // It left the group and the session, not the cgroup.
    assert_eq!(cgroup_of(escapee).as_deref(), Some(want.as_str()), "the escapee");
    stop_and_check(&f, escapee);
    let (code, _, err) = f.cli_code(&["shutdown"]);
    assert_eq!(code, 0, "{err}");
    f.wait_exit(T);
    // The tree went with the supervisor.
    let mount = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.contains(" - cgroup2 "))
        .and_then(|l| l.split(' ').nth(4).map(str::to_owned))
        .expect("a cgroup 2 mount");
    let base = format!("{mount}{}/supervisor-{sv}", own.trim_end_matches('/'));
    wait_for("the cgroup tree to go", T, || (!std::path::Path::new(&base).exists()).then_some(()));
}

#[test]
fn without_cgroups_an_escapee_is_found_in_proc_and_stopped() {
    let (f, sv, leader, escapee) = start("cgroups = false\n");
    let own = cgroup_of(sv).unwrap_or_default();
    assert_eq!(cgroup_of(leader).unwrap_or_default(), own, "cgroups = false: the service stays in ours");
    assert!(!own.contains(&format!("supervisor-{sv}")));
    stop_and_check(&f, escapee);
}

#[test]
fn without_cgroups_a_crash_that_leaves_an_escapee_cleans_it_up() {
    let (f, _, leader, escapee) = start("cgroups = false\n");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(leader), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for("the escapee to be stopped", T, || (!alive(escapee)).then_some(()));
    let new = wait_for("the restart", T, || {
        let s = f.service("daemon");
        let pid = s["pid"].as_i64()? as i32;
        (pid != leader && s["state"] != "stopped").then_some(pid)
    });
    assert_ne!(new, leader);
    assert!(f.log().contains("descendant(s) of pid"), "{}", f.log());
}
