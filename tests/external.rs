//! External services (`kind = "external"`, simplevisor's services): a real
//! LSB init script and a real daemon, checked and repaired by `supervisor
//! check` and by a running supervisor; hung commands; the pattern and
//! `daemon` forms; `%20` quoting.

use std::fs;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::util::{alive, read_pid, wait_for, write_script, Fixture};

const T: Duration = Duration::from_secs(20);

/// An LSB init script for a daemon (the test helper's `sleep`, detached
/// with setsid) that keeps its pid in `DIR/daemon.pid`: `start`, `stop`,
/// `status` (0 running, 1 dead with a pidfile left, 3 stopped), `restart`.
/// Every call is appended to `DIR/calls`.
fn init_script(dir: &Path) {
    let d = dir.display();
    let helper = crate::util::helper();
    write_script(
        &dir.join("init.d/daemon"),
        &format!(
            r#"PIDFILE={d}/daemon.pid
echo "$1" >> {d}/calls
# Alive, and not a zombie waiting for init to reap it.
running() {{ [ -f $PIDFILE ] && kill -0 "$(cat $PIDFILE)" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$(cat $PIDFILE)/status"; }}
case "$1" in
  start)
    if running; then echo "already running"; exit 0; fi
    setsid {helper} sleep </dev/null >/dev/null 2>&1 &
    echo $! > $PIDFILE
    echo "daemon started with pid $(cat $PIDFILE)"
    exit 0 ;;
  stop)
    if [ -f $PIDFILE ]; then kill "$(cat $PIDFILE)" 2>/dev/null; rm -f $PIDFILE; fi
    echo "daemon stopped"; exit 0 ;;
  status)
    if running; then echo "daemon is running"; exit 0; fi
    if [ -f $PIDFILE ]; then echo "daemon is dead but its pidfile is left"; exit 1; fi
    echo "daemon is not running"; exit 3 ;;
  restart) "$0" stop; "$0" start ;;
  *) echo "usage: $0 start|stop|status|restart"; exit 2 ;;
esac"#
        ),
    );
}

/// Kills the processes whose pids these files hold when the test ends, so
/// that a failing test leaves no daemon behind (they are not the
/// supervisor's children).
struct KillPids(Vec<std::path::PathBuf>);

impl Drop for KillPids {
    fn drop(&mut self) {
        for p in &self.0 {
            if let Some(pid) = read_pid(p).filter(|p| alive(*p)) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

fn calls(f: &Fixture) -> Vec<String> {
    fs::read_to_string(f.path("calls")).unwrap_or_default().lines().map(String::from).collect()
}

fn daemon_pid(f: &Fixture) -> Option<i32> {
    read_pid(&f.path("daemon.pid")).filter(|p| alive(*p))
}

#[test]
fn check_repairs_an_init_script_service_and_reports() {
    let f = Fixture::new(
        r#"
[service.daemon]
kind = "external"
control = "DIR/init.d/daemon"
"#,
    );
    init_script(f.dir.path());
    let _cleanup = KillPids(vec![f.path("daemon.pid")]);

    // --dry-run only reports.
    let (code, out, err) = f.cli_code(&["check", "--dry-run"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("daemon: expected running, found stopped") && out.contains("nothing done"), "{out}");
    assert_eq!(calls(&f), ["status"]);
    assert!(daemon_pid(&f).is_none());

    // A pass starts it, and checks again.
    let (code, out, err) = f.cli_code(&["check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("found stopped; ran start: exit 0; now running (ok)"), "{out}");
    let pid = daemon_pid(&f).expect("the daemon runs");
    assert_eq!(calls(&f), ["status", "status", "start", "status"]);

    // As expected: nothing to do.
    let (code, out, _) = f.cli_code(&["check", "daemon"]);
    assert_eq!((code, out.trim()), (0, "daemon: expected running, found running (ok)"));

    // The daemon dies and leaves its pidfile: status 1, dirty; repaired by
    // stop then start.
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    wait_for("the daemon to die", T, || (!alive(pid)).then_some(()));
    let (code, out, _) = f.cli_code(&["check"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("found dirty (status exit 1); ran stop: exit 0, start: exit 0; now running (ok)"), "{out}");
    let new = daemon_pid(&f).expect("running again");
    assert_ne!(new, pid);

    // Unknown names and daemons are refused.
    let (code, _, err) = f.cli_code(&["check", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nope"), "{err}");
    kill(Pid::from_raw(new), Signal::SIGTERM).unwrap();
}

#[test]
fn check_says_when_a_repair_fails() {
    let f = Fixture::new(
        r#"
[service.broken]
kind = "external"
start = "DIR/start.sh"
status = "DIR/status.sh"
stop = "DIR/stop.sh"
expected = "running"
"#,
    );
    write_script(&f.path("start.sh"), "echo cannot start >&2; exit 1");
    write_script(&f.path("status.sh"), "exit 3");
    write_script(&f.path("stop.sh"), "exit 0");
    let (code, out, _) = f.cli_code(&["check"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("found stopped; ran start: exit 1; now stopped (NOT as expected)"), "{out}");
}

#[test]
fn the_supervisor_keeps_an_init_script_service_as_expected() {
    let mut f = Fixture::new(
        r#"
[service.daemon]
kind = "external"
control = "DIR/init.d/daemon"
check_interval = "300ms"
"#,
    );
    init_script(f.dir.path());
    f.start();
    let s = f.wait_state("daemon", "running", T);
    assert_eq!(s["kind"], "external");
    assert_eq!(s["last_check"]["result"]["state"], "running");
    let pid = daemon_pid(&f).expect("started by the supervisor");

    // Killed behind our back: found at the next check and started again.
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let new = wait_for("the daemon to be restarted", T, || daemon_pid(&f).filter(|p| *p != pid));
    assert!(alive(new));
    let s = f.wait_state("daemon", "running", T);
    assert!(s["restarts"].as_u64().unwrap() >= 1, "{s}");
    // The command output is logged at debug level.
    let log = f.log();
    assert!(log.contains("DEBUG daemon out: daemon started with pid"), "{log}");

    // stop: the stop command runs; the daemon is gone; no more starts.
    let (code, out, err) = f.cli_code(&["stop", "daemon"]);
    assert_eq!(code, 0, "{out}{err}");
    // The script sends TERM and returns without waiting for the daemon.
    wait_for("the daemon to end", T, || (!alive(new)).then_some(()));
    assert_eq!(f.service("daemon")["state"], "stopped");
    let n = calls(&f).len();
    wait_for("two more checks", T, || (calls(&f).len() >= n + 2).then_some(()));
    assert!(daemon_pid(&f).is_none(), "a stopped service stays stopped");
    assert_eq!(calls(&f).last().map(String::as_str), Some("status"));

    // start, and restart through `CONTROL restart`.
    let (code, _, err) = f.cli_code(&["start", "daemon"]);
    assert_eq!(code, 0, "{err}");
    let p1 = daemon_pid(&f).expect("started");
    let (code, _, err) = f.cli_code(&["restart", "daemon"]);
    assert_eq!(code, 0, "{err}");
    let p2 = daemon_pid(&f).expect("restarted");
    assert_ne!(p1, p2);
    assert!(calls(&f).contains(&"restart".to_string()));

    // A shutdown stops it.
    let (code, _, _) = f.cli_code(&["shutdown"]);
    assert_eq!(code, 0);
    f.wait_exit(T);
    assert!(!alive(p2));
}

#[test]
fn a_hung_command_is_killed_with_its_group() {
    let f = Fixture::new(
        r#"
[service.hangs]
kind = "external"
start = "DIR/start.sh"
status = "DIR/status.sh"
stop = "DIR/stop.sh"
timeout = "1s"
expected = "stopped"
"#,
    );
    // The status command starts a child and hangs.
    write_script(
        &f.path("status.sh"),
        &format!("{} sleep {}/child.pid &\nwait", crate::util::helper(), f.dir.path().display()),
    );
    write_script(&f.path("stop.sh"), "exit 0");
    write_script(&f.path("start.sh"), "exit 0");
    let (code, out, _) = f.cli_code(&["check"]);
    let child = read_pid(&f.path("child.pid")).expect("the status command's child ran");
    wait_for("the hung command's group to be killed", T, || (!alive(child)).then_some(()));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("found dirty (status exit 124)"), "{out}");
    assert!(out.contains("status timed out"), "{out}");
}

#[test]
fn pattern_daemon_and_url_quoting() {
    let f = Fixture::new(
        r#"
# No status or stop: the process table is searched for the pattern.
[service.found]
kind = "external"
start = "/bin/sh -c 'setsid HELPER sleep DIR/found.pid </dev/null >/dev/null 2>&1 &'"
pattern = "sv-test-helper sleep DIR/found.pid$"

# A foreground program, daemonized by the supervisor with a pidfile. `%20`
# is a space within one argument, as simplevisor unquotes it.
[service.fg]
kind = "external"
start = "HELPER sleep DIR/fg%20program.pid"
daemon = "DIR/fg-daemon.pid"
"#,
    );
    let _cleanup = KillPids(vec![f.path("found.pid"), f.path("fg program.pid"), f.path("fg-daemon.pid")]);
    let (code, out, err) = f.cli_code(&["check"]);
    assert_eq!(code, 0, "{out}{err}");
    let found = wait_for("the pattern service", T, || read_pid(&f.path("found.pid")));
    assert!(alive(found));
    // One argument with a space in it.
    let fg = wait_for("the daemonized program", T, || read_pid(&f.path("fg program.pid")));
    assert!(alive(fg));
    let holder = read_pid(&f.path("fg-daemon.pid")).expect("the daemon pidfile");
    assert!(alive(holder));
    let (code, out, _) = f.cli_code(&["check"]);
    assert_eq!(code, 0);
    assert!(out.contains("found: expected running, found running (ok)"), "{out}");
    assert!(out.contains("fg: expected running, found running (ok)"), "{out}");

    // Expected stopped now: both are stopped, by pattern and by pidfile.
    let text = fs::read_to_string(&f.config)
        .unwrap()
        .replace("kind = \"external\"", "kind = \"external\"\nexpected = \"stopped\"");
    fs::write(&f.config, text).unwrap();
    let (code, out, err) = f.cli_code(&["check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("found: expected stopped, found running; ran stop: exit 0; now stopped (ok)"), "{out}");
    wait_for("the pattern service to stop", T, || (!alive(found)).then_some(()));
    wait_for("the daemonized program to stop", T, || (!alive(fg) && !alive(holder)).then_some(()));
    assert!(!f.path("fg-daemon.pid").exists(), "the pidfile is removed");
}

#[test]
fn bad_external_configs_are_rejected() {
    let f = Fixture::new(
        r#"
[service.a]
kind = "external"
stop = "x"

[service.b]
kind = "external"
start = "x"
pattern = "("
min_uptime = "1s"
"#,
    );
    let (code, _, err) = f.cli_code(&["check-config"]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("service \"a\": an external service needs `start` or `control`"), "{err}");
    assert!(err.contains("invalid pattern"), "{err}");
    assert!(err.contains("`min_uptime` does not apply to kind = \"external\""), "{err}");
}

#[test]
fn path_is_the_commands_path_and_stop_start_restarts() {
    let mut f = Fixture::new(
        r#"
[service.tool]
kind = "external"
path = "DIR/bin"
start = "tool-start"
stop = "tool-stop"
status = "tool-status"
restart = "stop+start"
"#,
    );
    let d = f.dir.path().display().to_string();
    // Found through `path` only: the commands are not in the inherited PATH.
    // (Only shell built-ins and absolute paths work with that PATH.)
    write_script(&f.path("bin/tool-start"), &format!("echo start >> {d}/calls; : > {d}/up"));
    write_script(&f.path("bin/tool-stop"), &format!("echo stop >> {d}/calls; /bin/rm -f {d}/up"));
    write_script(&f.path("bin/tool-status"), &format!("echo \"$PATH\" > {d}/path; [ -f {d}/up ] && exit 0; exit 3"));
    let (code, out, err) = f.cli_code(&["check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(fs::read_to_string(f.path("path")).unwrap().trim(), format!("{d}/bin"));
    assert_eq!(calls(&f), ["start"]);

    // restart = "stop+start": the stop command, then the start command.
    f.start();
    f.wait_state("tool", "running", T);
    let (code, _, err) = f.cli_code(&["restart", "tool"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(calls(&f), ["start", "stop", "start"]);
}
