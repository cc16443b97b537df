//! Faults and hostile conditions on real processes: each test holds the
//! supervisor to what it must do when things go wrong, and prints the
//! figure it measured. The quick forms run with the suite; the long forms
//! are `#[ignore]`d: `cargo test --test tests -- --ignored reliability`.

use std::fs;
use std::process::{Child, Command};
use std::time::Duration;

use crate::util::{alive, helper, Fixture};

const T: Duration = Duration::from_secs(15);

/// The start time of `pid` (clock ticks since boot), field 22 of its stat.
fn start_time(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = stat.rsplit_once(')').expect("comm").1;
    after.split_whitespace().nth(19).expect("field 22").parse().expect("a number")
}

/// A process that has nothing to do with the supervisor.
pub(crate) struct Bystander(Child);

impl Bystander {
    pub(crate) fn spawn() -> Bystander {
        Bystander(Command::new(helper()).arg("sleep").spawn().expect("spawn"))
    }

    /// A `sleep` of user `uid` (and group `uid`), with no other group.
    pub(crate) fn of_user(uid: u32) -> Bystander {
        let child = Command::new("setpriv")
            .args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into()])
            .args(["sleep", "600"])
            .spawn()
            .expect("setpriv");
        Bystander(child)
    }

    pub(crate) fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn reliability_a_state_file_from_another_boot_never_signals_a_live_process() {
    // After a reboot, pids and start times (counted from boot) repeat: a
    // saved pid with a matching start time may be anybody's process.
    for boot_id in [Some("00000000-0000-0000-0000-000000000000"), None] {
        let bystander = Bystander::spawn();
        let pid = bystander.0.id();
        let mut f = Fixture::new("[service.web]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"100ms\"\n");
        let saved = serde_json::json!({
            "boot_id": boot_id,
            "services": { "web": { "wanted": "running", "pid": pid, "start_time": start_time(pid) } },
        });
        fs::create_dir_all(f.path("rt/run")).unwrap();
        fs::write(f.path("rt/run/state.json"), saved.to_string()).unwrap();
        f.start();
        f.wait_state("web", "running", T);
        assert!(alive(pid as i32), "the supervisor signalled an unrelated process (boot id {boot_id:?})");
        assert!(!f.log().contains("left by a previous supervisor"), "{}", f.log());
        println!("state file from {}: bystander untouched", boot_id.map_or("no boot", |_| "another boot"));
    }
}

#[test]
fn reliability_services_do_not_inherit_the_command_lines_control_variables() {
    let mut f = Fixture::new("[service.env]\ncommand = [\"HELPER\", \"report\", \"DIR/env.txt\"]\n");
    f.start();
    let report = crate::util::wait_for("the report", T, || fs::read_to_string(f.path("env.txt")).ok());
    let leaked: Vec<&str> = report
        .lines()
        .filter(|l| {
            l.starts_with("env SUPERVISOR_")
                && !l.starts_with("env SUPERVISOR_SERVICE=")
                && !l.starts_with("env SUPERVISOR_INSTANCE=")
        })
        .collect();
    assert!(leaked.is_empty(), "leaked into the service: {leaked:?}");
}

#[test]
fn reliability_a_low_open_files_limit_does_not_stop_a_hundred_services() {
    // The supervisor raises its own soft limit to the hard one; services
    // get back the limit it was started with.
    let mut services = String::new();
    for i in 0..100 {
        services.push_str(&format!(
            "[service.s{i}]\ncommand = [\"HELPER\", \"limits\", \"DIR/limits-{i}\"]\nmin_uptime = \"50ms\"\n"
        ));
    }
    let mut f = Fixture::new(&services);
    f.start_with_ulimit("-Sn 64");
    for i in 0..100 {
        f.wait_state(&format!("s{i}"), "running", T);
    }
    let limits = crate::util::wait_for("a service's limits", T, || fs::read_to_string(f.path("limits-99")).ok());
    assert!(limits.lines().any(|l| l == "nofile=64"), "{limits}");
    println!("100 services up with a soft limit of 64 open files; each service kept 64");
}

/// Hostile clients hold connections (silent ones, half-written requests,
/// clients that connect and hang up in a loop) while `good` clients each
/// send one well-formed request: every good one must be answered.
fn hostile_clients(silent: usize, half: usize, reconnecting: usize, good: usize) {
    hostile_clients_beside("", silent, half, reconnecting, good);
}

/// As [`hostile_clients`], with more services (`extra`, TOML) running.
fn hostile_clients_beside(extra: &str, silent: usize, half: usize, reconnecting: usize, good: usize) {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let mut f =
        Fixture::new(&format!("[service.web]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"100ms\"\n{extra}"));
    f.start();
    f.wait_state("web", "running", T);
    let socket = f.socket();
    let mut held = Vec::new();
    for i in 0..silent + half {
        if let Ok(mut s) = UnixStream::connect(&socket) {
            if i >= silent {
                let _ = s.write_all(b"{\"cmd\":\"sta");
            }
            held.push(s);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let churners: Vec<_> = (0..reconnecting)
        .map(|_| {
            let (stop, socket) = (Arc::clone(&stop), socket.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    drop(UnixStream::connect(&socket));
                    n += 1;
                }
                n
            })
        })
        .collect();
    let started = std::time::Instant::now();
    let askers: Vec<_> = (0..good)
        .map(|i| {
            let socket = socket.clone();
            std::thread::spawn(move || -> Result<(), String> {
                let mut s = UnixStream::connect(&socket).map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(Duration::from_secs(20))).map_err(|e| e.to_string())?;
                writeln!(s, "{{\"id\":{i},\"cmd\":\"status\",\"names\":[\"web\"]}}").map_err(|e| e.to_string())?;
                let mut line = String::new();
                BufReader::new(&s).read_line(&mut line).map_err(|e| format!("read: {e}"))?;
                let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| format!("{e}: {line:?}"))?;
                if v["ok"] == true && v["id"] == i {
                    Ok(())
                } else {
                    Err(line)
                }
            })
        })
        .collect();
    let answers: Vec<Result<(), String>> = askers.into_iter().map(|t| t.join().expect("asker")).collect();
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let churned: u64 = churners.into_iter().map(|t| t.join().expect("churner")).sum();
    let failed: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    println!(
        "{} of {good} well-formed requests answered in {took:?}, beside {silent} silent and {half} half-written \
         clients and {churned} connect-and-hang-up rounds",
        good - failed.len()
    );
    assert!(failed.is_empty(), "unanswered or refused: {failed:?}");
    drop(held);
    f.wait_state("web", "running", T);
}

#[test]
fn reliability_well_formed_requests_get_through_hostile_clients() {
    hostile_clients(100, 100, 4, 60);
}

#[test]
#[ignore = "long form: 1000 hostile connections; run with --ignored reliability"]
fn reliability_well_formed_requests_get_through_a_thousand_hostile_clients() {
    hostile_clients(400, 400, 8, 200);
}

#[test]
fn reliability_a_request_left_half_written_is_dropped_after_its_deadline() {
    use std::io::{Read, Write};
    let mut f = Fixture::new("[service.web]\ncommand = [\"HELPER\", \"sleep\"]\n");
    f.start();
    let mut s = std::os::unix::net::UnixStream::connect(f.socket()).unwrap();
    s.write_all(b"{\"cmd\":\"sta").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    // The server closes it: end of file (or a reset), not a timeout.
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("unexpected answer {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "still connected after 20 s"),
    }
    println!("a half-written request was dropped after {:?}", started.elapsed());
}

#[test]
fn reliability_a_runtime_directory_removed_under_a_running_supervisor_comes_back() {
    let mut f = Fixture::new("[service.web]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"100ms\"\n");
    f.start();
    f.wait_state("web", "running", T);
    let pid = f.pid("web");
    // As `rm -rf` would, but atomically: the supervisor makes things again
    // as soon as it notices.
    fs::rename(f.path("rt"), f.path("rt.gone")).unwrap();
    let started = std::time::Instant::now();
    fs::remove_dir_all(f.path("rt.gone")).unwrap();
    crate::util::wait_for("the control socket to come back", T, || {
        std::os::unix::net::UnixStream::connect(f.socket()).ok()
    });
    let back = started.elapsed();
    // The service never noticed; the supervisor said what happened, and
    // `up` still sees it running (its pidfile is back too).
    assert_eq!(f.pid("web"), pid);
    assert!(alive(pid));
    crate::util::wait_for("the pidfile", T, || f.path("rt/run/supervisor.pid").exists().then_some(()));
    let (code, out, err) = f.cli_code(&["up"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("already running"), "{out}");
    let log = f.log();
    assert!(log.contains("was removed"), "{log}");
    println!("runtime directory removed: control socket back after {back:?}, service untouched");
}

/// `up`, then `shutdown && up` `rounds` times: `up` must never find the
/// old supervisor still there, and `shutdown` must leave no process.
fn shutdown_then_up(rounds: usize) {
    let f = Fixture::new("[service.web]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"50ms\"\n");
    let (code, _, err) = f.cli_code(&["up"]);
    assert_eq!(code, 0, "{err}");
    let mut pids = Vec::new();
    for round in 0..rounds {
        let pid = crate::util::wait_for("the supervisor's pid", T, || {
            fs::read_to_string(f.path("rt/run/supervisor.pid")).ok()?.trim().parse::<i32>().ok()
        });
        let (code, out, err) = f.cli_code(&["shutdown"]);
        assert_eq!(code, 0, "round {round}: {out}{err}");
        assert!(!alive(pid), "round {round}: shutdown returned with the supervisor (pid {pid}) alive");
        pids.push(pid);
        let (code, out, err) = f.cli_code(&["up"]);
        assert_eq!(code, 0, "round {round}: {out}{err}");
        assert!(!out.contains("already running"), "round {round}: {out}");
    }
    let (code, _, err) = f.cli_code(&["shutdown"]);
    assert_eq!(code, 0, "{err}");
    println!("{rounds} rounds of shutdown && up: never already running, no supervisor left");
}

#[test]
fn reliability_shutdown_then_up_never_finds_the_old_supervisor() {
    shutdown_then_up(10);
}

#[test]
#[ignore = "long form: 50 rounds; run with --ignored reliability"]
fn reliability_shutdown_then_up_fifty_times() {
    shutdown_then_up(50);
}

/// The live processes (not zombies) whose environment marks them as
/// service `name` of the instance whose runtime directory is `rt`.
fn processes_of(name: &str, rt: &std::path::Path) -> Vec<i32> {
    let service = format!("SUPERVISOR_SERVICE={name}");
    let instance = format!("SUPERVISOR_INSTANCE={}", rt.display());
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(env) = fs::read(entry.path().join("environ")) else { continue };
        let vars: Vec<&[u8]> = env.split(|b| *b == 0).collect();
        if vars.contains(&service.as_bytes()) && vars.contains(&instance.as_bytes()) && alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// Stops, `rounds` times, a service whose program forks a tree: a child in
/// its group, a daemon that double-forks out with setsid, and a main
/// process that ignores TERM. After each stop, none of them may be left.
fn stop_trees(rounds: usize) {
    let mut f = Fixture::new(
        r#"
[service.tree]
shell = true
command = "HELPER fork-child DIR/child.pid & HELPER double-escape DIR/daemon.pid & exec HELPER ignore-term DIR/main.pid"
min_uptime = "50ms"
stop_timeout = "300ms"
expected = "stopped"
"#,
    );
    f.start();
    let rt = f.path("rt");
    let mut most = 0;
    for round in 0..rounds {
        for file in ["child.pid", "daemon.pid", "main.pid"] {
            let _ = fs::remove_file(f.path(file));
        }
        let (code, _, err) = f.cli_code(&["start", "tree"]);
        assert_eq!(code, 0, "round {round}: {err}");
        for file in ["child.pid", "daemon.pid", "main.pid"] {
            crate::util::wait_for(file, T, || crate::util::read_pid(&f.path(file)));
        }
        most = most.max(processes_of("tree", &rt).len());
        let (code, _, err) = f.cli_code(&["stop", "tree"]);
        assert_eq!(code, 0, "round {round}: {err}");
        let left = processes_of("tree", &rt);
        assert!(left.is_empty(), "round {round}: left after the stop: {left:?}");
    }
    println!("{rounds} stops of a tree of up to {most} processes (fork, double fork + setsid, TERM ignored): 0 left");
}

#[test]
fn reliability_stopping_a_tree_of_processes_leaves_none() {
    stop_trees(10);
}

#[test]
#[ignore = "long form: 100 rounds; run with --ignored reliability"]
fn reliability_stopping_a_tree_of_processes_a_hundred_times_leaves_none() {
    stop_trees(100);
}

/// `rounds` times: `kill -9` of the supervisor, then `up`. No service may
/// ever run twice, and every wanted state set by a command must hold.
fn kill_and_up(rounds: usize) {
    let f = Fixture::new(
        r#"
[service.a]
command = ["HELPER", "sleep"]
min_uptime = "50ms"

[service.b]
command = ["HELPER", "sleep"]
min_uptime = "50ms"

[service.c]
command = ["HELPER", "sleep"]
min_uptime = "50ms"
expected = "stopped"
"#,
    );
    let rt = f.path("rt");
    let (code, _, err) = f.cli_code(&["up"]);
    assert_eq!(code, 0, "{err}");
    for (cmd, name) in [("stop", "b"), ("start", "c")] {
        let (code, _, err) = f.cli_code(&[cmd, name]);
        assert_eq!(code, 0, "{err}");
    }
    let mut most = 0;
    for round in 0..rounds {
        let pid = crate::util::wait_for("the supervisor's pid", T, || {
            fs::read_to_string(f.path("rt/run/supervisor.pid")).ok()?.trim().parse::<i32>().ok()
        });
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        crate::util::wait_for("the supervisor to die", T, || (!alive(pid)).then_some(()));
        let (code, out, err) = f.cli_code(&["up"]);
        assert_eq!(code, 0, "round {round}: {out}{err}");
        // Counted while the new supervisor takes over, and once it has.
        for _ in 0..20 {
            for name in ["a", "b", "c"] {
                let n = processes_of(name, &rt).len();
                most = most.max(n);
                assert!(n <= 1, "round {round}: service {name} runs {n} times");
            }
        }
        crate::util::wait_for("a and c up, b down", T, || {
            let counts: Vec<usize> = ["a", "b", "c"].iter().map(|n| processes_of(n, &rt).len()).collect();
            (counts == [1, 0, 1]).then_some(())
        });
    }
    let (code, _, err) = f.cli_code(&["shutdown"]);
    assert_eq!(code, 0, "{err}");
    println!("{rounds} rounds of kill -9 and up: never two processes of one service, wanted states kept");
}

#[test]
fn reliability_kill_9_then_up_never_runs_a_service_twice() {
    kill_and_up(5);
}

#[test]
#[ignore = "long form: 20 rounds; run with --ignored reliability"]
fn reliability_kill_9_then_up_twenty_times() {
    kill_and_up(20);
}

#[test]
fn reliability_a_supervisor_stopped_and_continued_catches_up() {
    let mut f = Fixture::new("[service.web]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"50ms\"\n");
    f.start();
    let first = f.wait_state("web", "running", T)["pid"].as_i64().unwrap() as i32;
    let sup = nix::unistd::Pid::from_raw(f.supervisor.as_ref().unwrap().id() as i32);
    use nix::sys::signal::{kill, Signal};
    kill(sup, Signal::SIGSTOP).unwrap();
    // The service dies while nobody watches.
    kill(nix::unistd::Pid::from_raw(first), Signal::SIGKILL).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    kill(sup, Signal::SIGCONT).unwrap();
    let again = crate::util::wait_for("web to run again", T, || {
        let s = f.service("web");
        (s["state"] == "running" && s["pid"].as_i64() != Some(i64::from(first))).then_some(s)
    });
    assert_eq!(again["restarts"], 1, "{again}");
    assert!(f.log().contains(&format!("pid {first} killed by SIGKILL")), "{}", f.log());
    println!("supervisor stopped 0.3 s while its service died: restarted after SIGCONT, death logged");
}

/// A small tmpfs at `dir`, unmounted when dropped.
struct SmallFs(std::path::PathBuf);

impl SmallFs {
    fn mount(dir: std::path::PathBuf, size: &str) -> SmallFs {
        fs::create_dir_all(&dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (as .ci/run runs): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallFs(dir)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn reliability_a_full_disk_costs_output_not_the_service_and_writing_resumes() {
    let mut f = Fixture::new(
        "[service.web]\ncommand = [\"HELPER\", \"lines\", \"2000\", \"100\"]\ntranscript.path = \"DIR/small/web.log\"\nmin_uptime = \"50ms\"\n",
    );
    let small = SmallFs::mount(f.path("small"), "64k");
    f.start();
    let s = crate::util::wait_for("the disk to fill and drops to be counted", T, || {
        let s = f.service("web");
        (s["dropped_bytes"].as_u64().unwrap_or(0) > 0).then_some(s)
    });
    let pid = s["pid"].clone();
    let s = f.wait_state("web", "running", T);
    assert_eq!(s["pid"], pid, "the service went on: {s}");
    let dropped = s["dropped_bytes"].as_u64().unwrap();
    // Room again: the next run's lines are written, whole.
    fs::write(f.path("small/web.log"), "").unwrap();
    let (code, _, err) = f.cli_code(&["restart", "web"]);
    assert_eq!(code, 0, "{err}");
    let text = crate::util::wait_for("lines after the room came back", T, || {
        let t = fs::read_to_string(f.path("small/web.log")).ok()?;
        (t.lines().count() >= 100).then_some(t)
    });
    assert!(text.lines().take(100).all(|l| l.len() == 99), "split lines after the disk was full");
    println!("transcript on a 64 KiB tmpfs: {dropped} bytes dropped and counted, service running, writing resumed");
    drop(f);
    drop(small);
}

#[test]
fn reliability_running_out_of_descriptors_refuses_clearly_and_keeps_what_runs() {
    // 500 services under a hard limit of 128 descriptors: the supervisor
    // cannot capture them all. It must start what it can, say why the
    // others wait, keep serving its socket, and stop everything at the end.
    let mut services = String::new();
    for i in 0..500 {
        services.push_str(&format!("[service.s{i:03}]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"50ms\"\n"));
    }
    let mut f = Fixture::new(&services);
    f.start_with_ulimit("-n 128");
    let status = crate::util::wait_for("every service to be running or refused", T, || {
        let st = f.status();
        let services = st["services"].as_array()?.clone();
        services.iter().all(|s| s["state"] == "running" || s["error"].is_string()).then_some(services)
    });
    let running = status.iter().filter(|s| s["state"] == "running").count();
    let refused: Vec<&serde_json::Value> = status.iter().filter(|s| s["state"] != "running").collect();
    assert!(running > 0 && !refused.is_empty(), "{running} running, {} refused", refused.len());
    for s in &refused {
        let error = s["error"].as_str().unwrap_or_default();
        assert!(error.contains("Too many open files"), "{s}");
        assert!(matches!(s["state"].as_str(), Some("backoff" | "fatal" | "starting")), "{s}");
    }
    let pids: Vec<i32> = status.iter().filter_map(|s| s["pid"].as_i64()).map(|p| p as i32).collect();
    assert!(pids.iter().all(|p| alive(*p)), "a running service was lost");
    let (code, _, err) = f.cli_code(&["shutdown"]);
    assert_eq!(code, 0, "{err}");
    assert!(pids.iter().all(|p| !alive(*p)));
    println!(
        "500 services, 128 descriptors: {running} running, {} waiting with \"Too many open files\", socket served",
        refused.len()
    );
}

/// Services that crash as soon as they start, restarted every few
/// milliseconds, for ever.
fn crash_loops(n: usize) -> String {
    let mut toml = String::new();
    for i in 0..n {
        toml.push_str(&format!(
            "[service.crash{i}]\ncommand = [\"HELPER\", \"exit\", \"1\"]\nforever = true\n\
             backoff_limit = \"20ms\"\nmin_uptime = \"1s\"\n"
        ));
    }
    toml
}

#[test]
fn reliability_hostile_clients_while_services_crash_loop() {
    hostile_clients_beside(&crash_loops(20), 100, 100, 4, 60);
}

#[test]
#[ignore = "long form: 1000 hostile connections beside 100 crash-looping services; run with --ignored reliability"]
fn reliability_a_thousand_hostile_clients_while_a_hundred_services_crash_loop() {
    hostile_clients_beside(&crash_loops(100), 400, 400, 8, 200);
}
