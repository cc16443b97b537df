//! Daemon mode: `up`, pidfiles, instances side by side, the event log,
//! and recovery after the supervisor is killed with SIGKILL.

use std::fs;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::util::{alive, read_pid, wait_for, Fixture};

const T: Duration = Duration::from_secs(15);

/// A supervisor started with `up`; shut down (or killed) when dropped.
struct Daemon<'a> {
    f: &'a Fixture,
}

impl<'a> Daemon<'a> {
    fn up(f: &'a Fixture) -> Daemon<'a> {
        let (code, out, err) = f.cli_code(&["up"]);
        assert_eq!(code, 0, "up: {out}{err}");
        Daemon { f }
    }

    fn pid(&self) -> i32 {
        self.f.status()["supervisor"]["pid"].as_i64().expect("supervisor pid") as i32
    }
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        if self.f.cli(&["shutdown"]).status.success() {
            return;
        }
        if let Some(pid) = read_pid(&self.f.path("rt/run/supervisor.pid")) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline")).map(|b| String::from_utf8_lossy(&b).replace('\0', " ")).unwrap_or_default()
}

fn stat_field(pid: i32, n: usize) -> i64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit(')').next().unwrap();
    rest.split_whitespace().nth(n - 3).unwrap().parse().unwrap()
}

#[test]
fn up_detaches_into_a_named_daemon_with_a_locked_pidfile() {
    let f = Fixture::with_supervisor_table(
        "directory = \"DIR\"\numask = \"027\"",
        "[service.a]\ncommand = [\"HELPER\", \"report\", \"DIR/report\"]\n",
    );
    let d = Daemon::up(&f);
    let pid = d.pid();
    // The pidfile holds the daemon's pid and is locked: PidFile::read proves it.
    let state = supervisor_core::PidFile::read(&f.path("rt/run/supervisor.pid")).unwrap();
    assert_eq!(state, supervisor_core::PidState::Held(pid));
    assert!(cmdline(pid).starts_with("supervisor: t"), "ps shows the instance: {:?}", cmdline(pid));
    // One binary: the daemon is `supervisor` itself, given its file and
    // the readiness pipe as arguments, not through the environment.
    assert_eq!(fs::read_link(format!("/proc/{pid}/exe")).unwrap(), crate::util::supervisor_bin());
    let config = fs::canonicalize(&f.config).unwrap();
    let args = format!("--config {} run --ready-fd ", config.display());
    assert!(cmdline(pid).contains(&args), "{:?} has {args:?}", cmdline(pid));
    let environ = fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(!environ.contains("SUPERVISOR_"), "no hand-over variables: {environ:?}");
    let parent = stat_field(pid, 4) as i32;
    assert!(!cmdline(parent).contains("supervisor"), "detached from `up`: parent {parent} is {:?}", cmdline(parent));
    assert_ne!(stat_field(pid, 6), i64::from(pid), "not a session leader (forked twice)");
    assert_eq!(fs::read_link(format!("/proc/{pid}/cwd")).unwrap(), f.dir.path(), "chdir to `directory`");
    for fd in 0..3 {
        let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        assert_eq!(target, std::path::Path::new("/dev/null"), "fd {fd}");
    }
    // The daemon's umask reaches the service when it has none of its own.
    let report = wait_for("the report", T, || fs::read_to_string(f.path("report")).ok());
    assert!(report.contains("umask=027"), "{report}");
    let layout = ["run", "log", "console", "etc", "data"];
    assert!(layout.iter().all(|d| f.path("rt").join(d).is_dir()), "runtime dir laid out as copkg's");
}

#[test]
fn up_reports_the_daemons_own_error() {
    // The runtime directory cannot be created: a file is in the way.
    let f = Fixture::new("[service.a]\ncommand = [\"HELPER\", \"sleep\"]\n");
    fs::write(f.path("rt"), "in the way").unwrap();
    let (code, out, err) = f.cli_code(&["up"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("could not start") && err.contains("rt"), "the daemon's own error: {err}");
}

#[test]
fn a_live_pidfile_refuses_a_second_supervisor_and_a_stale_one_is_taken_over() {
    let f = Fixture::new("[service.a]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"100ms\"\n");
    let d = Daemon::up(&f);
    let first = d.pid();
    // A second supervisor on the same instance (not through `up`) is refused.
    let (code, _, err) = f.cli_code(&["run"]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("already running (pid {first})")), "{err}");
    // Kill -9: the pidfile stays behind, unlocked.
    kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
    wait_for("the daemon to die", T, || (!alive(first)).then_some(()));
    assert_eq!(read_pid(&f.path("rt/run/supervisor.pid")), Some(first), "the stale pidfile is still there");
    let state = supervisor_core::PidFile::read(&f.path("rt/run/supervisor.pid")).unwrap();
    assert_eq!(state, supervisor_core::PidState::Stale(Some(first)), "nobody vouches for its pid");
    let (code, out, err) = f.cli_code(&["up"]);
    assert_eq!(code, 0, "a stale pidfile never blocks a start: {out}{err}");
    let second = d.pid();
    assert_ne!(second, first);
    assert_eq!(read_pid(&f.path("rt/run/supervisor.pid")), Some(second));
}

/// What a supervisor just sent `KILL` looks like for a moment: its
/// pidfile still locked, nothing answering on its socket. The lock goes
/// after a second, with the returned process.
fn dying_supervisor(f: &Fixture) -> std::process::Child {
    let run = f.path("rt/run");
    fs::create_dir_all(&run).unwrap();
    for d in [f.path("rt"), run.clone()] {
        fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    }
    let pidfile = run.join("supervisor.pid");
    let dying = std::process::Command::new("flock").arg(&pidfile).args(["sleep", "1"]).spawn().unwrap();
    fs::write(&pidfile, format!("{}\n", dying.id())).unwrap();
    wait_for("the lock to be held", T, || {
        matches!(supervisor_core::PidFile::read(&pidfile), Ok(supervisor_core::PidState::Held(_))).then_some(())
    });
    dying
}

#[test]
fn up_waits_for_a_dying_supervisor_to_let_go_of_its_pidfile() {
    let f = Fixture::new("[service.a]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"100ms\"\n");
    let mut dying = dying_supervisor(&f);
    let (code, out, err) = f.cli_code(&["up"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("started"), "up took the dying holder for a running supervisor: {out}");
    let d = Daemon { f: &f };
    assert_ne!(d.pid(), dying.id() as i32);
    dying.wait().unwrap();
}

#[test]
fn run_waits_for_a_dying_supervisor_to_let_go_of_its_pidfile() {
    let mut f = Fixture::new("[service.a]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"100ms\"\n");
    let mut dying = dying_supervisor(&f);
    // Fails with the supervisor's log when it exits at once.
    f.start();
    let ours = f.supervisor.as_ref().map(std::process::Child::id);
    assert_eq!(f.status()["supervisor"]["pid"].as_u64(), ours.map(u64::from));
    f.wait_state("a", "running", T);
    dying.wait().unwrap();
}

#[test]
fn after_kill_9_a_new_up_restores_wanted_states_without_duplicates() {
    let f = Fixture::new(
        r#"
[service.web]
command = ["HELPER", "escape", "DIR/web-child.pid"]
min_uptime = "100ms"

[service.manual]
command = ["HELPER", "sleep"]
expected = "stopped"
min_uptime = "100ms"

[service.off]
command = ["HELPER", "sleep"]
min_uptime = "100ms"
"#,
    );
    let d = Daemon::up(&f);
    f.wait_state("web", "running", T);
    // Wanted states changed by hand must survive.
    assert_eq!(f.cli_code(&["start", "manual"]).0, 0);
    assert_eq!(f.cli_code(&["stop", "off"]).0, 0);
    let old_pids: Vec<i32> = ["web", "manual"].iter().map(|s| f.pid(s)).collect();
    let escaped = wait_for("web's escaped child", T, || read_pid(&f.path("web-child.pid")));
    fs::remove_file(f.path("web-child.pid")).unwrap();

    kill(Pid::from_raw(d.pid()), Signal::SIGKILL).unwrap();
    let killed_at = Instant::now();
    let (code, out, err) = f.cli_code(&["up"]);
    assert_eq!(code, 0, "{out}{err}");
    f.wait_state("web", "running", T);
    f.wait_state("manual", "running", T);
    let back_in = killed_at.elapsed();
    assert_eq!(f.service("off")["state"], "stopped", "a service stopped on purpose stays stopped");
    for pid in old_pids.iter().chain([&escaped]) {
        assert!(!alive(*pid), "pid {pid} of the old supervisor is still running");
    }
    let new_escaped = wait_for("the new escaped child", T, || read_pid(&f.path("web-child.pid")));
    assert_ne!(new_escaped, escaped);
    // Exactly one copy of each: count live processes carrying the marker.
    let copies = |name: &str| {
        fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
            .filter(|pid| alive(*pid))
            .filter(|pid| {
                let env = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                let want = format!("SUPERVISOR_SERVICE={name}");
                let rt = format!("SUPERVISOR_INSTANCE={}", f.path("rt").display());
                let has = |w: &str| env.split(|b| *b == 0).any(|kv| kv == w.as_bytes());
                has(&want) && has(&rt)
            })
            .count()
    };
    assert_eq!(copies("web"), 2, "one web and its one escaped child");
    assert_eq!(copies("manual"), 1);
    assert_eq!(copies("off"), 0);
    eprintln!("services back {back_in:?} after the kill (min_uptime 100ms included)");
    let log = fs::read_to_string(f.path("rt/log/supervisor.log")).unwrap();
    assert!(log.contains("left by a previous supervisor"), "{log}");
}

#[test]
fn two_instances_side_by_side() {
    let svc = "[service.same]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"100ms\"\n";
    let a = Fixture::new(svc);
    let b = Fixture::new(svc);
    let da = Daemon::up(&a);
    let db = Daemon::up(&b);
    assert_ne!(da.pid(), db.pid());
    let pa = a.wait_state("same", "running", T)["pid"].clone();
    let pb = b.wait_state("same", "running", T)["pid"].clone();
    assert_ne!(pa, pb);
    assert_eq!(a.cli_code(&["stop", "same"]).0, 0);
    assert_eq!(b.service("same")["state"], "running", "the other instance is untouched");
    assert_eq!(b.service("same")["pid"], pb);
    drop(da);
    assert_eq!(b.cli_code(&["status", "same"]).0, 0);
}

#[test]
fn sigterm_removes_socket_and_pidfile_and_exits_0() {
    let mut f = Fixture::new("[service.a]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"100ms\"\n");
    f.start();
    f.wait_state("a", "running", T);
    assert!(f.socket().exists() && f.path("rt/run/supervisor.pid").exists());
    let sup = f.supervisor.as_ref().unwrap().id() as i32;
    kill(Pid::from_raw(sup), Signal::SIGTERM).unwrap();
    assert_eq!(f.wait_exit(T), 0);
    assert!(!f.socket().exists(), "socket removed");
    assert!(!f.path("rt/run/supervisor.pid").exists(), "pidfile removed");
    let state: serde_json::Value = serde_json::from_slice(&fs::read(f.path("rt/run/state.json")).unwrap()).unwrap();
    assert_eq!(state["services"]["a"]["wanted"], "running", "a shutdown is not a wish to stop: {state}");
    assert!(state["services"]["a"]["pid"].is_null());
}

#[test]
fn service_pidfile_is_written_locked_and_removed() {
    let mut f = Fixture::new(
        "[service.a]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"100ms\"\npidfile = \"DIR/a.pid\"\n",
    );
    f.start();
    let pid = f.wait_state("a", "running", T)["pid"].as_i64().unwrap() as i32;
    let state = supervisor_core::PidFile::read(&f.path("a.pid")).unwrap();
    assert_eq!(state, supervisor_core::PidState::Held(pid));
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let new = wait_for("a new pid in the pidfile", T, || read_pid(&f.path("a.pid")).filter(|p| *p != pid));
    assert_eq!(f.wait_state("a", "running", T)["pid"].as_i64(), Some(i64::from(new)));
    assert_eq!(f.cli_code(&["stop", "a"]).0, 0);
    assert!(!f.path("a.pid").exists(), "removed when the service stops");
}

#[test]
fn the_event_log_tells_what_happened() {
    let mut f = Fixture::new(
        r#"
[service.crash]
command = ["HELPER", "exit", "3"]
backoff_limit = "1s"

[service.stubborn]
command = ["HELPER", "ignore-term", "DIR/ready"]
stop_timeout = "200ms"
min_uptime = "100ms"
"#,
    );
    f.start();
    f.wait_state("crash", "fatal", T);
    f.wait_state("stubborn", "running", T);
    wait_for("stubborn ready", T, || read_pid(&f.path("ready")));
    assert_eq!(f.cli_code(&["stop", "stubborn"]).0, 0);
    let log = fs::read_to_string(f.path("rt/log/supervisor.log")).unwrap();
    for needle in [
        "crash: started pid",
        "crash: pid",
        "exited with code 3",
        // 1 s, less its jitter (at most a quarter).
        "exited with code 3; backing off for 0.",
        "crash: fatal after 2 quick failures",
        "stubborn: stop timed out; sending KILL",
        "killed by SIGKILL",
    ] {
        assert!(log.contains(needle), "{needle:?} missing from the event log:\n{log}");
    }
    let first = log.lines().next().unwrap();
    assert!(first.len() > 27 && first.as_bytes()[10] == b'T' && first[..27].ends_with('Z'), "timestamped: {first}");
}
