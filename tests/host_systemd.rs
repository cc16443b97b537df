//! Under the host's systemd: `run` with `NOTIFY_SOCKET` reports to it, as
//! the unit in `examples/systemd/` runs it. A datagram socket of the test
//! stands for systemd's.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::util::{supervisor_bin, wait_for, Fixture};

/// The fake manager's socket, and everything it was told.
struct Manager {
    socket: UnixDatagram,
    heard: Vec<String>,
}

impl Manager {
    fn bind(path: &Path) -> Manager {
        let socket = UnixDatagram::bind(path).expect("bind the notify socket");
        socket.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
        Manager { socket, heard: Vec::new() }
    }

    /// Waits for a datagram that `want` accepts (those before it are kept
    /// in `heard`); returns it.
    fn expect(&mut self, what: &str, limit: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.heard.push(msg.clone());
                if want(&msg) {
                    return msg;
                }
            }
            assert!(Instant::now() < deadline, "no {what} after {limit:?}; heard {:?}", self.heard);
        }
    }
}

/// The `KEY=` lines of the example unit's `[Service]` section.
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit has no {key}="))
        .to_string()
}

/// A command line of the unit, for instance `t` of the fixture: the
/// binary and the configuration path are the test's.
fn unit_command(unit: &str, key: &str, fx: &Fixture) -> Command {
    let line = unit_value(unit, key)
        .replace("/usr/local/bin/supervisor", &supervisor_bin().display().to_string())
        .replace("/etc/supervisor/%i.toml", &fx.config.display().to_string());
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut cmd = Command::new(words[0]);
    cmd.args(&words[1..]).stdin(Stdio::null());
    cmd
}

#[test]
fn the_example_unit_reports_readiness_reloads_the_watchdog_and_the_stop() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/systemd/supervisor@.service"))
        .expect("the example unit");
    assert_eq!(unit_value(&unit, "Type"), "notify");
    assert_eq!(unit_value(&unit, "KillMode"), "mixed");
    let services = r#"
[service.web]
command = "env > DIR/web.env; exec sleep 1000"
shell = true
[service.db]
command = ["sleep", "1000"]
"#;
    let fx = Fixture::new(services);
    let mut manager = Manager::bind(&fx.path("systemd.sock"));
    let log = std::fs::File::create(fx.path("supervisor.stderr")).expect("log");
    let mut run = unit_command(&unit, "ExecStart", &fx)
        .env("NOTIFY_SOCKET", fx.path("systemd.sock"))
        .env("WATCHDOG_USEC", "200000")
        .stderr(log)
        .spawn()
        .expect("ExecStart");

    // READY=1 once both run (not before: states never go back).
    let ready = manager.expect("READY=1", Duration::from_secs(10), |m| m.lines().any(|l| l == "READY=1"));
    for name in ["web", "db"] {
        assert_eq!(fx.service(name)["state"], "running", "{name} when READY=1 came ({ready:?})");
    }
    assert!(ready.contains("STATUS=2 running"), "{ready:?}");
    // The watchdog is answered at half its period, again and again.
    for _ in 0..3 {
        manager.expect("WATCHDOG=1", Duration::from_secs(2), |m| m == "WATCHDOG=1");
    }
    // The services do not get the supervisor's manager.
    let env =
        wait_for("web's environment", Duration::from_secs(10), || std::fs::read_to_string(fx.path("web.env")).ok());
    assert!(!env.contains("NOTIFY_SOCKET") && !env.contains("WATCHDOG_USEC"), "{env}");

    // A status line on changes.
    assert!(fx.cli(&["stop", "db"]).status.success());
    manager.expect("a new STATUS=", Duration::from_secs(10), |m| m.contains("STATUS=1 stopped, 1 running"));

    // ExecReload: RELOADING=1 (with the monotonic time), then READY=1.
    let reload = unit_command(&unit, "ExecReload", &fx).output().expect("ExecReload");
    assert!(reload.status.success(), "{}", String::from_utf8_lossy(&reload.stderr));
    let reloading = manager.expect("RELOADING=1", Duration::from_secs(10), |m| m.contains("RELOADING=1"));
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading:?}");
    manager.expect("READY=1 after the reload", Duration::from_secs(10), |m| m.lines().any(|l| l == "READY=1"));

    // KillMode=mixed: TERM to the supervisor alone.
    kill(Pid::from_raw(run.id() as i32), Signal::SIGTERM).expect("TERM");
    manager.expect("STOPPING=1", Duration::from_secs(10), |m| m.contains("STOPPING=1"));
    let status = wait_for("the supervisor to exit", Duration::from_secs(20), || run.try_wait().expect("wait"));
    assert_eq!(status.code(), Some(0), "{}", fx.log());
}

#[test]
fn the_example_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/systemd/supervisor@.service"))
        .expect("the example unit");
    let dir = tempfile::tempdir().expect("tempdir");
    // An instance of the template, with the test's binary in place.
    let text = unit.replace("/usr/local/bin/supervisor", &supervisor_bin().display().to_string());
    let path = dir.path().join("supervisor@web.service");
    std::fs::write(&path, text).expect("write");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .expect("systemd-analyze (Debian's systemd package; .ci/run installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let problems: Vec<&str> =
        text.lines().filter(|l| l.contains("supervisor@")).filter(|l| !l.contains("network-online.target")).collect();
    assert!(problems.is_empty(), "{text}");
}

#[test]
fn ready_comes_when_nothing_more_will_get_ready_and_after_every_reload() {
    // web waits for db, which cannot start: neither will be ready, and
    // READY=1 must not wait for them (systemd would time the unit out).
    let services = r#"
[service.db]
command = "/nonexistent/db"
[service.web]
command = ["sleep", "1000"]
requires = ["db"]
[service.other]
command = ["sleep", "1000"]
min_uptime = "100ms"
"#;
    let mut fx = Fixture::new(services);
    let mut manager = Manager::bind(&fx.path("systemd.sock"));
    fx.start_with_shell(&format!("NOTIFY_SOCKET={} exec \"$@\"", fx.path("systemd.sock").display()));
    let ready = manager.expect("READY=1", Duration::from_secs(10), |m| m.lines().any(|l| l == "READY=1"));
    assert_eq!(fx.service("other")["state"], "running", "{ready:?}");
    assert_eq!(fx.service("db")["state"], "fatal", "{ready:?}");
    assert_eq!(fx.service("web")["waiting_for"], serde_json::json!(["db"]), "{ready:?}");
    // A reload ends with READY=1 whatever the services do.
    assert!(fx.cli(&["reload"]).status.success());
    manager.expect("RELOADING=1", Duration::from_secs(10), |m| m.contains("RELOADING=1"));
    manager.expect("READY=1 after the reload", Duration::from_secs(10), |m| m.lines().any(|l| l == "READY=1"));
}
