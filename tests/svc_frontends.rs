//! `supervisor svc`, `svstat` and the front ends `svcstart`, `svcstop`,
//! `svcreset`, `svcrestart`, driven against a real supervisor of service
//! directories and compared with daemontools' own `svc` and `svstat`.
//!
//! The supervisor is runit's `runsv`, which keeps the same 20-byte
//! `supervise/status` record as daemontools and as `supervisor supervise`.
//! `SV_TEST_SUPERVISE=supervisor` runs the same tests against our own
//! `supervisor supervise`, `SV_TEST_SUPERVISE=daemontools` against
//! daemontools' `supervise` (which lacks runit's letters `1 2 q w`; runit
//! 2.1.2's `runsv` lacks `w`).

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use supervisor_core::servicedir::{is_supervised, send_control, RunState, SvStatus};

use crate::util::{alive, helper, proc_state, read_pid, supervisor_bin, wait_for, write_script};

const T: Duration = Duration::from_secs(15);

/// Which supervisor runs the service directories: `supervisor` (ours, the
/// default), `runsv` or `daemontools` (to check the tests against the
/// originals).
fn supervise_kind() -> String {
    std::env::var("SV_TEST_SUPERVISE").unwrap_or_else(|_| "supervisor".into())
}

/// The program that supervises one service directory in these tests.
fn supervise_command(dir: &Path) -> Command {
    let mut cmd = match supervise_kind().as_str() {
        "supervisor" => {
            let mut c = Command::new(supervisor_bin());
            c.arg("supervise");
            c
        }
        "daemontools" => Command::new(tool("supervise")),
        _ => Command::new(tool("runsv")),
    };
    cmd.arg(dir);
    cmd
}

/// A program of daemontools or runit, which these tests need.
fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is missing: install the Debian packages daemontools and runit");
}

/// The state of a process in `/proc/PID/stat` (`S`, `T`, ...).
/// Runs `supervisor ARGS...`: (exit code, stdout, stderr).
fn sv(args: &[&str]) -> (i32, String, String) {
    run(Command::new(supervisor_bin()).args(args))
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.stdin(Stdio::null()).output().expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One service directory `TMP/s` in a temporary directory, and its
/// supervisor.
struct Service {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    sup: Option<Child>,
}

impl Service {
    /// A service whose `run` is `body` (after `#!/bin/sh`), with `HELPER`
    /// replaced by the helper's path and `TMP` by the temporary directory.
    fn new(body: &str) -> Service {
        let tmp = tempfile::Builder::new().prefix("svc").tempdir_in("/tmp").expect("tempdir");
        let dir = tmp.path().join("s");
        fs::create_dir(&dir).expect("mkdir");
        let s = Service { tmp, dir, sup: None };
        s.script("run", body);
        s
    }

    /// A file in the temporary directory, beside the service directory.
    fn file(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn d(&self) -> &str {
        self.dir.to_str().expect("utf-8 path")
    }

    /// Writes an executable script into the service directory.
    fn script(&self, name: &str, body: &str) {
        let body = body
            .replace("HELPER", &helper())
            .replace("SUPERVISOR", &supervisor_bin().display().to_string())
            .replace("TMP", &self.tmp.path().display().to_string());
        write_script(&self.dir.join(name), &body);
    }

    fn set_down(&self, down: bool) {
        if down {
            fs::write(self.dir.join("down"), "").expect("down");
        } else {
            let _ = fs::remove_file(self.dir.join("down"));
        }
    }

    fn has_down(&self) -> bool {
        self.dir.join("down").exists()
    }

    /// Starts the supervisor and waits until it serves the directory.
    fn supervise(mut self) -> Service {
        let log = fs::File::create(self.file("supervise.log")).expect("log");
        let child = supervise_command(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn the supervisor");
        self.sup = Some(child);
        wait_for("the directory to be supervised", T, || {
            (is_supervised(&self.dir) && SvStatus::read(&self.dir).is_ok()).then_some(())
        });
        self
    }

    fn status(&self) -> SvStatus {
        SvStatus::read(&self.dir).expect("supervise/status")
    }

    fn wait_status(&self, what: &str, f: impl Fn(&SvStatus) -> bool) -> SvStatus {
        wait_for(what, T, || SvStatus::read(&self.dir).ok().filter(&f))
    }

    /// Waits until a process runs; returns its pid.
    fn wait_up(&self) -> i32 {
        let st = self.wait_status("the service to be up", |s| s.pid.is_some() && s.state == RunState::Run);
        st.pid.expect("pid")
    }

    /// Waits until a process other than `old` runs.
    fn wait_new_pid(&self, old: i32) -> i32 {
        let st = self.wait_status("a new process", |s| s.pid.is_some_and(|p| p != old) && s.state == RunState::Run);
        st.pid.expect("pid")
    }

    fn wait_down(&self) -> SvStatus {
        self.wait_status("the service to be down", |s| s.pid.is_none())
    }

    /// Stops the supervisor (and the service) and waits until it exited.
    fn shut(&mut self) {
        let Some(mut child) = self.sup.take() else { return };
        let pid = SvStatus::read(&self.dir).ok().and_then(|s| s.pid);
        let _ = send_control(&self.dir, "dx");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut killed = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            if !killed && Instant::now() + Duration::from_secs(3) > deadline {
                // A service that ignores TERM.
                let _ = send_control(&self.dir, "k");
                killed = true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        if let Some(pid) = pid {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.shut();
    }
}

/// A `sleep` service that writes its pid to `TMP/pid`.
fn sleeper() -> Service {
    Service::new("exec HELPER sleep TMP/pid")
}

#[test]
fn svc_up_down_once_pause_continue_term_kill_and_exit() {
    let mut s = sleeper().supervise();
    let d = s.d().to_string();
    let p1 = s.wait_up();
    assert_eq!(wait_for("the pid file", T, || read_pid(&s.file("pid")).filter(|p| *p == p1)), p1);

    assert_eq!(sv(&["svc", "-d", &d]).0, 0);
    let st = s.wait_down();
    assert_eq!(st.want_up, Some(false));
    wait_for("the process to end", T, || (!alive(p1)).then_some(()));

    assert_eq!(sv(&["svc", "-u", &d]).0, 0);
    let p2 = s.wait_new_pid(p1);
    assert_eq!(s.status().want_up, Some(true));

    assert_eq!(sv(&["svc", "-p", &d]).0, 0);
    s.wait_status("paused", |st| st.paused);
    wait_for("the process to be stopped", T, || (proc_state(p2) == Some('T')).then_some(()));
    assert_eq!(sv(&["svc", "-c", &d]).0, 0);
    s.wait_status("not paused", |st| !st.paused);
    wait_for("the process to continue", T, || (proc_state(p2).is_some_and(|c| c != 'T')).then_some(()));
    assert_eq!(s.status().pid, Some(p2), "pause and continue keep the process");

    assert_eq!(sv(&["svc", "-t", &d]).0, 0);
    let p3 = s.wait_new_pid(p2);
    assert!(!alive(p2), "TERM ended it; it was restarted as it is wanted up");
    assert_eq!(sv(&["svc", "-k", &d]).0, 0);
    let p4 = s.wait_new_pid(p3);
    assert!(!alive(p3));

    // Once: started, not restarted.
    assert_eq!(sv(&["svc", "-d", &d]).0, 0);
    s.wait_down();
    assert_eq!(sv(&["svc", "-o", &d]).0, 0);
    let p5 = s.wait_new_pid(p4);
    assert_eq!(sv(&["svc", "-k", &d]).0, 0);
    let st = s.wait_down();
    assert_ne!(st.want_up, Some(true), "a once service is not restarted");
    assert!(!alive(p5));

    // Letters combine; x ends the supervisor once the service is down.
    assert_eq!(sv(&["svc", "-u", &d]).0, 0);
    let p6 = s.wait_new_pid(p5);
    assert_eq!(sv(&["svc", "-dx", &d]).0, 0);
    let child = s.sup.as_mut().expect("supervisor");
    wait_for("the supervisor to exit", T, || child.try_wait().expect("try_wait"));
    s.sup = None;
    assert!(!alive(p6));
    assert!(!is_supervised(&s.dir));
    let (code, out, _) = sv(&["svstat", &d]);
    assert_eq!((code, out), (0, format!("{d}: supervise not running\n")));
}

#[test]
fn svc_signal_letters_reach_the_service() {
    let services: Vec<Service> = (0..2).map(|_| Service::new("exec HELPER signals TMP/signals").supervise()).collect();
    let dirs: Vec<String> = services.iter().map(|s| s.d().to_string()).collect();
    let pids: Vec<i32> = services.iter().map(Service::wait_up).collect();
    for s in &services {
        wait_for("the helper to be ready", T, || s.file("signals.ready").exists().then_some(()));
    }
    let lines = |s: &Service| -> Vec<String> {
        fs::read_to_string(s.file("signals")).unwrap_or_default().lines().map(str::to_string).collect()
    };
    let wait_lines = |s: &Service, n: usize| -> Vec<String> {
        wait_for(&format!("{n} signals recorded"), T, || Some(lines(s)).filter(|l| l.len() >= n))
    };

    // One option, every directory.
    assert_eq!(sv(&["svc", "-h", &dirs[0], &dirs[1]]).0, 0);
    for s in &services {
        assert_eq!(wait_lines(s, 1), ["HUP"]);
    }
    let s = &services[0];
    // runit 2.1.2's runsv knows 1, 2 and q but not w; daemontools'
    // supervise none of them.
    let mut letters = vec![("a", "ALRM"), ("i", "INT"), ("c", "CONT")];
    match supervise_kind().as_str() {
        "daemontools" => {}
        "supervisor" => letters.extend([("1", "USR1"), ("2", "USR2"), ("q", "QUIT"), ("w", "WINCH")]),
        _ => letters.extend([("1", "USR1"), ("2", "USR2"), ("q", "QUIT")]),
    }
    let mut expected = vec!["HUP".to_string()];
    for (letter, name) in letters {
        assert_eq!(sv(&["svc", &format!("-{letter}"), &dirs[0]]).0, 0);
        expected.push(name.to_string());
        assert_eq!(wait_lines(s, expected.len()), expected, "svc -{letter}");
    }
    // Separate options, then combined ones: each letter once.
    assert_eq!(sv(&["svc", "-h", "-a", &dirs[0]]).0, 0);
    let got = wait_lines(s, expected.len() + 2);
    let mut tail = got[expected.len()..].to_vec();
    tail.sort();
    assert_eq!(tail, ["ALRM", "HUP"]);
    // The second service only got the first HUP.
    assert_eq!(lines(&services[1]), ["HUP"]);
    for (s, pid) in services.iter().zip(pids) {
        assert_eq!(s.status().pid, Some(pid), "no signal ended the process");
    }
}

/// What a command writes to `DIR/supervise/control`, read by the test.
fn control_bytes(cmd: &mut Command, dir: &Path) -> (i32, Vec<u8>) {
    use std::io::Read;
    let fifo = dir.join("supervise/control");
    let mut reader =
        fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo).expect("open control");
    let (code, _, err) = run(cmd);
    assert_eq!(err, "", "no warning");
    let mut buf = Vec::new();
    match reader.read_to_end(&mut buf) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(e) => panic!("read control: {e}"),
    }
    (code, buf)
}

#[test]
fn svc_writes_the_letters_as_daemontools_svc_does() {
    let tmp = tempfile::Builder::new().prefix("svcl").tempdir_in("/tmp").expect("tempdir");
    let dir = tmp.path();
    fs::create_dir(dir.join("supervise")).unwrap();
    nix::unistd::mkfifo(&dir.join("supervise/control"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let d = dir.to_str().unwrap();
    for (args, letters) in [
        (&["-u"][..], "u"),
        (&["-dx"], "dx"),
        (&["-d", "-x"], "dx"),
        (&["-uudx"], "udx"),
        (&["-t", "-k", "-t"], "tk"),
        (&["-opchaitkx"], "opchaitkx"),
        (&["-c"], "c"),
        (&["-cd"], "cd"),
    ] {
        let theirs = control_bytes(Command::new(tool("svc")).args(args).arg(d), dir);
        let ours = control_bytes(Command::new(supervisor_bin()).arg("svc").args(args).arg(d), dir);
        assert_eq!(theirs, (0, letters.as_bytes().to_vec()), "svc {args:?}");
        assert_eq!(ours, theirs, "svc {args:?}");
    }
    let ours = control_bytes(Command::new(supervisor_bin()).args(["svc", "-12", "-qw", "-1", d]), dir);
    assert_eq!(ours, (0, b"12qw".to_vec()), "runit's letters");
    // Options end at the first directory; `--` ends them too.
    let ours = control_bytes(Command::new(supervisor_bin()).args(["svc", "-u", "--", d]), dir);
    assert_eq!(ours, (0, b"u".to_vec()));
}

/// Replaces the number before " seconds" with "N"; returns the number.
fn split_seconds(line: &str) -> (String, Option<u64>) {
    let Some(end) = line.find(" seconds") else { return (line.to_string(), None) };
    let start = line[..end].rfind(' ').map_or(0, |i| i + 1);
    let n = line[start..end].parse().ok();
    (format!("{}N{}", &line[..start], &line[end..]), n)
}

/// Runs the real `svstat` and ours on the same directories, while their
/// status records do not change, and checks that the lines are the same
/// (the seconds may differ by one).
fn assert_same_svstat(dirs: &[&Path], expected: &[&str]) {
    assert_same_svstat_when(dirs, expected, |_| true);
}

/// As [`assert_same_svstat`], at a moment when every status record
/// satisfies `when`.
fn assert_same_svstat_when(dirs: &[&Path], expected: &[&str], when: impl Fn(&SvStatus) -> bool) {
    let snapshot =
        || -> Vec<Option<Vec<u8>>> { dirs.iter().map(|d| fs::read(d.join("supervise/status")).ok()).collect() };
    let (theirs, ours) = wait_for("svstat outputs while the status records stay the same", T, || {
        let before = snapshot();
        if !before.iter().flatten().filter_map(|b| SvStatus::decode(b)).all(|s| when(&s)) {
            return None;
        }
        let theirs = run(Command::new(tool("svstat")).args(dirs));
        let ours = run(Command::new(supervisor_bin()).arg("svstat").args(dirs));
        (snapshot() == before).then_some((theirs, ours))
    });
    assert_eq!((theirs.0, ours.0), (0, 0), "svstat exits 0");
    assert_eq!(ours.2, "", "nothing on stderr");
    let (theirs, ours): (Vec<&str>, Vec<&str>) = (theirs.1.lines().collect(), ours.1.lines().collect());
    assert_eq!(theirs.len(), ours.len(), "svstat: {theirs:?}\nours: {ours:?}");
    for ((t, o), e) in theirs.iter().zip(&ours).zip(expected) {
        let (t_text, t_n) = split_seconds(t);
        let (o_text, o_n) = split_seconds(o);
        assert_eq!(o_text, t_text, "svstat printed {t:?}, we printed {o:?}");
        if let (Some(a), Some(b)) = (t_n, o_n) {
            assert!(a.abs_diff(b) <= 1, "svstat printed {t:?}, we printed {o:?}");
        }
        assert!(o_text.ends_with(e), "{o_text:?} should end with {e:?}");
    }
}

#[test]
fn svstat_prints_what_daemontools_svstat_prints() {
    // Up; up while normally down; paused; up but wanted down (it ignores
    // TERM); down; down and wanted up (it dies at once and is restarted
    // every second); down as its down file says.
    let up = sleeper().supervise();
    let normally_down = sleeper();
    normally_down.set_down(true);
    let normally_down = normally_down.supervise();
    let paused = sleeper().supervise();
    let want_down = Service::new("exec HELPER ignore-term TMP/ready").supervise();
    let down = sleeper().supervise();
    let want_up = Service::new("exec HELPER exit 1").supervise();
    let downfile = sleeper();
    downfile.set_down(true);
    let downfile = downfile.supervise();

    up.wait_up();
    assert_same_svstat(&[&up.dir], &["seconds"]);
    assert_eq!(sv(&["svc", "-u", normally_down.d()]).0, 0);
    normally_down.wait_up();
    assert_same_svstat(&[&normally_down.dir], &["seconds, normally down"]);
    paused.wait_up();
    assert_eq!(sv(&["svc", "-p", paused.d()]).0, 0);
    paused.wait_status("paused", |s| s.paused);
    assert_same_svstat(&[&paused.dir], &["seconds, paused"]);
    want_down.wait_up();
    wait_for("the helper to ignore TERM", T, || want_down.file("ready").exists().then_some(()));
    assert_eq!(sv(&["svc", "-d", want_down.d()]).0, 0);
    want_down.wait_status("want down", |s| s.want_up == Some(false) && s.pid.is_some());
    assert_same_svstat(&[&want_down.dir], &["seconds, want down"]);
    down.wait_up();
    assert_eq!(sv(&["svc", "-d", down.d()]).0, 0);
    down.wait_down();
    assert_same_svstat(&[&down.dir], &["seconds, normally up"]);
    // Between two restarts (daemontools' supervise shows that for a
    // moment only).
    if supervise_kind() != "daemontools" {
        assert_same_svstat_when(&[&want_up.dir], &["seconds, normally up, want up"], |s| {
            s.pid.is_none() && s.want_up == Some(true)
        });
    }
    assert_same_svstat(&[&downfile.dir], &["seconds"]);
    assert!(sv(&["svstat", downfile.d()]).1.starts_with(&format!("{}: down ", downfile.d())));

    // Directories that svstat cannot read, as svstat says it.
    let tmp = tempfile::Builder::new().prefix("svstat").tempdir_in("/tmp").expect("tempdir");
    let t = tmp.path();
    let unsupervised = t.join("unsupervised");
    fs::create_dir(&unsupervised).unwrap();
    let missing = t.join("missing");
    let file = t.join("file");
    fs::write(&file, "").unwrap();
    let loop_down = t.join("loop");
    fs::create_dir(&loop_down).unwrap();
    std::os::unix::fs::symlink("down", loop_down.join("down")).unwrap();
    // supervise/ok with a reader, but no or a short status record.
    let no_status = t.join("nostatus");
    let short_status = t.join("short");
    let mut readers = Vec::new();
    for d in [&no_status, &short_status] {
        fs::create_dir_all(d.join("supervise")).unwrap();
        nix::unistd::mkfifo(&d.join("supervise/ok"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        readers.push(
            fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(d.join("supervise/ok"))
                .expect("open ok for reading"),
        );
    }
    fs::write(short_status.join("supervise/status"), b"short").unwrap();
    // A directory whose supervisor is gone: its FIFOs stay.
    let mut gone = sleeper().supervise();
    gone.wait_up();
    gone.shut();
    assert_same_svstat(
        &[&unsupervised, &missing, &file, &loop_down, &no_status, &short_status, &gone.dir],
        &[
            ": unable to open supervise/ok: file does not exist",
            ": unable to chdir: file does not exist",
            ": unable to chdir: not a directory",
            ": unable to stat down: symbolic link loop",
            ": unable to open supervise/status: file does not exist",
            ": unable to read supervise/status: bad format",
            ": supervise not running",
        ],
    );

    // Several directories, one line each, in order.
    assert_same_svstat(
        &[&up.dir, &paused.dir, &down.dir, &missing],
        &["seconds", "seconds, paused", "seconds, normally up", "file does not exist"],
    );
    drop(readers);
}

#[test]
fn svstat_json() {
    let s = sleeper().supervise();
    let pid = s.wait_up();
    let down = sleeper();
    down.set_down(true);
    let down = down.supervise();
    let missing = down.file("missing");
    let (code, out, err) = sv(&["svstat", "--json", s.d(), down.d(), missing.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let list = v.as_array().expect("a list");
    assert_eq!(list.len(), 3);
    let up = &list[0];
    assert_eq!(up["dir"], s.d());
    assert_eq!(up["supervised"], true);
    assert_eq!(up["state"], "up");
    assert_eq!(up["pid"], pid);
    assert!(up["seconds"].as_u64().is_some_and(|n| n < 60), "{up}");
    assert_eq!(up["paused"], false);
    assert_eq!(up["want"], "up");
    assert_eq!(up["normally"], "up");
    assert_eq!(up["got_term"], false);
    assert!(up["error"].is_null());
    let d = &list[1];
    assert_eq!((d["state"].as_str(), d["pid"].is_null()), (Some("down"), true), "{d}");
    assert_eq!(d["normally"], "down");
    assert_eq!(d["want"], "down");
    let m = &list[2];
    assert_eq!(m["supervised"], false);
    assert!(m["state"].is_null() && m["pid"].is_null());
    assert_eq!(m["error"], "unable to chdir: file does not exist");

    // Paused, and the supervisor gone.
    assert_eq!(sv(&["svc", "-p", s.d()]).0, 0);
    s.wait_status("paused", |st| st.paused);
    let v: Value = serde_json::from_str(&sv(&["svstat", "--json", s.d()]).1).unwrap();
    assert_eq!(v[0]["paused"], true);
    let mut down = down;
    down.shut();
    let v: Value = serde_json::from_str(&sv(&["svstat", "--json", down.d()]).1).unwrap();
    assert_eq!(v[0]["supervised"], false);
    assert_eq!(v[0]["normally"], "down");
    assert!(v[0]["error"].is_null() && v[0]["state"].is_null());
}

#[test]
fn svc_warns_as_daemontools_svc_does() {
    let tmp = tempfile::Builder::new().prefix("svcw").tempdir_in("/tmp").expect("tempdir");
    let plain = tmp.path().join("plain");
    fs::create_dir(&plain).unwrap();
    let missing = tmp.path().join("missing");
    let mut gone = sleeper().supervise();
    gone.wait_up();
    gone.shut();
    let dirs = [plain.to_str().unwrap(), missing.to_str().unwrap(), gone.d()];
    let theirs = run(Command::new(tool("svc")).arg("-u").args(dirs));
    let ours = sv(&[&["svc", "-u"], &dirs[..]].concat());
    assert_eq!(ours.0, theirs.0, "exit code as svc's");
    let expected: Vec<String> = theirs.2.lines().map(|l| format!("supervisor {l}")).collect();
    assert_eq!(ours.2.lines().collect::<Vec<_>>(), expected);
    assert!(ours.2.contains("supervise not running"), "{}", ours.2);
    assert!(ours.2.contains("unable to chdir to"), "{}", ours.2);

    let theirs = run(Command::new(tool("svc")).args(["-z", dirs[0]]));
    let ours = sv(&["svc", "-z", dirs[0]]);
    assert_eq!((ours.0, theirs.0), (100, 100));
    let (ours_first, theirs_first) = (ours.2.lines().next().unwrap_or(""), theirs.2.lines().next().unwrap_or(""));
    assert_eq!(ours_first, format!("supervisor {theirs_first}"));
}

#[test]
fn svc_c_is_continue_not_the_config_option() {
    let s = sleeper().supervise();
    let pid = s.wait_up();
    assert_eq!(sv(&["svc", "-p", s.d()]).0, 0);
    s.wait_status("paused", |st| st.paused);
    let (code, _, err) = sv(&["svc", "-c", s.d()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err, "");
    s.wait_status("continued", |st| !st.paused);
    wait_for("the process to continue", T, || (proc_state(pid).is_some_and(|c| c != 'T')).then_some(()));
}

const START_SCRIPT: &str = r#"pwd > TMP/start.cwd
SUPERVISOR svc -u .
i=0
while [ $i -lt 300 ]; do
    if [ -s TMP/pid ] && kill -0 "$(cat TMP/pid)" 2>/dev/null; then
        echo "it works"
        exit 0
    fi
    sleep 0.05
    i=$((i + 1))
done
SUPERVISOR svc -d .
exit 1"#;

#[test]
fn svcstart_runs_a_passing_start_script() {
    let s = sleeper();
    s.set_down(true);
    s.script("start", START_SCRIPT);
    let s = s.supervise();
    assert!(s.status().pid.is_none(), "the down file keeps it down");
    let (code, out, err) = sv(&["svcstart", "--persist", s.d()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("it works") && out.contains("started"), "{out}");
    let pid = s.status().pid.expect("up when svcstart returns");
    assert_eq!(read_pid(&s.file("pid")), Some(pid));
    assert!(alive(pid));
    let cwd = fs::read_to_string(s.file("start.cwd")).unwrap();
    assert_eq!(Path::new(cwd.trim()), s.dir, "the script runs in the service directory");
    assert!(!s.has_down(), "--persist removed the down file");
}

#[test]
fn svcstart_with_a_failing_start_script_takes_the_service_down() {
    let s = sleeper();
    s.set_down(true);
    s.script("start", "echo checking; exit 3");
    let s = s.supervise();
    let (code, out, err) = sv(&["svcstart", "--persist", s.d()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("checking"), "{out}");
    assert!(err.contains("start exited with code 3"), "{err}");
    let st = s.wait_status("down and wanted down", |st| st.pid.is_none() && st.want_up == Some(false));
    assert_eq!(st.state, RunState::Down);
    assert!(s.has_down(), "a failed start keeps the down file");
}

#[test]
fn svcstart_kills_a_start_script_that_hangs() {
    let s = sleeper();
    s.set_down(true);
    s.script("start", "HELPER sleep TMP/child.pid &\nwait");
    let s = s.supervise();
    let begin = Instant::now();
    let (code, _, err) = sv(&["svcstart", "--timeout", "1s", s.d()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("start did not finish within 1s"), "{err}");
    assert!(begin.elapsed() < Duration::from_secs(10));
    let child = read_pid(&s.file("child.pid")).expect("the script's child ran");
    wait_for("the script's process group to be killed", T, || (!alive(child)).then_some(()));
    s.wait_status("down and wanted down", |st| st.pid.is_none() && st.want_up == Some(false));
}

/// Whether a process blocks `sig`, from `/proc/PID/status`.
fn blocks(pid: u32, sig: i32) -> bool {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & (1 << (sig - 1)) != 0)
}

#[test]
fn svcstart_passes_a_signal_on_to_the_start_script() {
    let s = sleeper();
    s.set_down(true);
    s.script(
        "start",
        "trap 'echo TERM > TMP/got; exit 4' TERM\necho $$ > TMP/script.pid\nwhile :; do sleep 0.05; done",
    );
    let s = s.supervise();
    let mut child = Command::new(supervisor_bin())
        .args(["svcstart", s.d()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("svcstart");
    let script = wait_for("the script to run", T, || read_pid(&s.file("script.pid")));
    wait_for("svcstart to catch TERM", T, || blocks(child.id(), libc::SIGTERM).then_some(()));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::SIGTERM).unwrap();
    let st = wait_for("svcstart to exit", T, || child.try_wait().expect("try_wait"));
    assert_eq!(st.code(), Some(1), "the script failed, so svcstart did");
    assert_eq!(fs::read_to_string(s.file("got")).unwrap().trim(), "TERM", "the script got the TERM");
    wait_for("the script to end", T, || (!alive(script)).then_some(()));
    s.wait_status("down and wanted down", |st| st.pid.is_none() && st.want_up == Some(false));
}

#[test]
fn svcstart_without_a_script_waits_until_up() {
    let s = sleeper();
    s.set_down(true);
    let s = s.supervise();
    let (code, out, err) = sv(&["svcstart", "--persist", s.d()]);
    assert_eq!(code, 0, "{out}{err}");
    let st = s.status();
    let pid = st.pid.expect("up when svcstart returns");
    assert!(alive(pid));
    assert_eq!(st.state, RunState::Run);
    assert!(out.contains(&format!("up (pid {pid})")), "{out}");
    assert!(!s.has_down());
    // Already up: at once.
    let (code, _, _) = sv(&["svcstart", s.d()]);
    assert_eq!(code, 0);
    assert_eq!(s.status().pid, Some(pid));

    // A service that dies at once never counts as up.
    let crashing = Service::new("exec HELPER exit 1");
    crashing.set_down(true);
    let crashing = crashing.supervise();
    let (code, _, err) = sv(&["svcstart", "--timeout", "3s", crashing.d()]);
    assert_eq!(code, 1);
    assert!(err.contains("not up after 3s"), "{err}");
    crashing.wait_status("down and wanted down", |st| st.pid.is_none() && st.want_up == Some(false));
}

#[test]
fn svcstop_with_and_without_a_stop_script() {
    // Without: waits until down; --persist creates the down file.
    let plain = sleeper().supervise();
    let pid = plain.wait_up();
    let (code, out, err) = sv(&["svcstop", "--persist", plain.d()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("stopped"), "{out}");
    assert!(plain.status().pid.is_none(), "down when svcstop returns");
    wait_for("the process to end", T, || (!alive(pid)).then_some(()));
    assert!(plain.has_down());

    // With a stop script that checks.
    let checked = sleeper();
    checked.script(
        "stop",
        r"echo ran > TMP/stop.ran
i=0
while [ $i -lt 300 ]; do
    SUPERVISOR svstat . | grep -q ': down ' && exit 0
    sleep 0.05
    i=$((i + 1))
done
exit 1",
    );
    let checked = checked.supervise();
    checked.wait_up();
    let (code, out, err) = sv(&["svcstop", checked.d()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(checked.file("stop.ran").exists());
    assert!(checked.status().pid.is_none());
    assert!(!checked.has_down(), "no --persist, no down file");

    // A stop script that fails.
    let failing = sleeper();
    failing.script("stop", "exit 2");
    let failing = failing.supervise();
    failing.wait_up();
    let (code, _, err) = sv(&["svcstop", failing.d()]);
    assert_eq!(code, 1);
    assert!(err.contains("stop exited with code 2"), "{err}");

    // A service that ignores TERM is not down in time.
    let stubborn = Service::new("exec HELPER ignore-term TMP/ready").supervise();
    stubborn.wait_up();
    wait_for("the helper to ignore TERM", T, || stubborn.file("ready").exists().then_some(()));
    let (code, _, err) = sv(&["svcstop", "--timeout", "1s", stubborn.d()]);
    assert_eq!(code, 1);
    assert!(err.contains("not down after 1s"), "{err}");
    assert!(stubborn.status().pid.is_some());
}

#[test]
fn svcreset_puts_the_service_in_the_state_of_its_down_file() {
    let running = sleeper().supervise();
    let pid = running.wait_up();
    running.set_down(true);
    let (code, out, err) = sv(&["svcreset", running.d()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(running.status().pid.is_none());
    wait_for("the process to end", T, || (!alive(pid)).then_some(()));
    assert!(running.has_down());

    let stopped = sleeper();
    stopped.set_down(true);
    let stopped = stopped.supervise();
    assert!(stopped.status().pid.is_none());
    stopped.set_down(false);
    let (code, out, err) = sv(&["svcreset", stopped.d()]);
    assert_eq!(code, 0, "{out}{err}");
    let pid = stopped.status().pid.expect("up");
    assert!(alive(pid));
    assert!(!stopped.has_down());

    let (code, _, err) = sv(&["svcreset", "--persist", stopped.d()]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn svcrestart_restarts_only_a_running_service() {
    let running = sleeper().supervise();
    let p1 = running.wait_up();
    let (code, out, err) = sv(&["svcrestart", running.d()]);
    assert_eq!(code, 0, "{out}{err}");
    let p2 = running.status().pid.expect("up when svcrestart returns");
    assert_ne!(p1, p2);
    assert!(alive(p2));
    assert!(!alive(p1));
    assert!(out.contains("stopped") && out.contains("started"), "{out}");

    let stopped = sleeper();
    stopped.set_down(true);
    let stopped = stopped.supervise();
    let (code, out, err) = sv(&["svcrestart", stopped.d()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("not running, not restarted"), "{out}");
    let st = stopped.status();
    assert_eq!((st.pid, st.want_up), (None, Some(false)), "left alone");
}

#[test]
fn front_ends_refuse_an_unsupervised_or_missing_directory() {
    let tmp = tempfile::Builder::new().prefix("svcf").tempdir_in("/tmp").expect("tempdir");
    let d = tmp.path().display().to_string();
    for cmd in ["svcstart", "svcstop", "svcreset", "svcrestart"] {
        let (code, _, err) = sv(&[cmd, &d]);
        assert_eq!(code, 7, "{cmd}: {err}");
        assert!(err.contains("supervise not running"), "{err}");
        let (code, _, err) = sv(&[cmd, &format!("{d}/missing")]);
        assert_eq!(code, 2, "{cmd}: {err}");
    }
    let (code, _, _) = sv(&["svcstop", "--persist", &d]);
    assert_eq!(code, 7);
    assert!(!tmp.path().join("down").exists(), "nothing changed");
}
