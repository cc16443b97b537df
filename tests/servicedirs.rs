//! daemontools service directories under `supervisor scan` and `supervisor
//! supervise`, driven by the real daemontools (`svc`, `svstat`, `svok`,
//! `supervise`) and runit (`sv`) programs, which must work unchanged.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::util::{alive, helper, proc_state, supervisor_bin, wait_for};

const T: Duration = Duration::from_secs(15);

/// Fails unless the real tools are installed (`.ci/run` installs them):
/// a test that cannot run is a failure, not a silent pass.
fn require_tools() {
    let missing: Vec<&str> = ["svc", "svstat", "svok", "sv", "supervise"]
        .into_iter()
        .filter(|t| {
            !Command::new("sh").args(["-c", &format!("command -v {t}")]).output().is_ok_and(|o| o.status.success())
        })
        .collect();
    assert!(missing.is_empty(), "{missing:?} not installed: apt-get install daemontools runit (.ci/run does)");
}

fn script(path: &Path, body: &str) {
    crate::util::write_script(path, &body.replace("HELPER", &helper()));
}

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd).args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

/// A `supervisor scan` or `supervisor supervise` in the foreground.
struct Sup {
    child: Child,
    log: PathBuf,
}

impl Sup {
    fn start(args: &[&str], log: PathBuf) -> Sup {
        let out = fs::File::create(&log).unwrap();
        let child = Command::new(supervisor_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Sup { child, log }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sup {
    fn drop(&mut self) {
        crate::util::stop_supervisor(&mut self.child);
    }
}

/// A temporary directory of service directories.
struct Dirs {
    tmp: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Dirs {
        Dirs { tmp: tempfile::Builder::new().prefix("svd").tempdir_in("/tmp").unwrap() }
    }
    fn svc(&self, name: &str) -> PathBuf {
        self.tmp.path().join("service").join(name)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    fn s(&self, name: &str) -> String {
        self.svc(name).display().to_string()
    }
    fn scan(&self) -> Sup {
        let dir = self.tmp.path().join("service");
        fs::create_dir_all(&dir).unwrap();
        Sup::start(&["scan", dir.to_str().unwrap(), "--rescan", "200ms"], self.path("scan.log"))
    }
}

/// The pid that `svstat` reports, if the service is up.
fn up_pid(dir: &str) -> Option<i32> {
    let out = String::from_utf8(run("svstat", &[dir]).stdout).unwrap();
    let rest = out.split(": up (pid ").nth(1)?;
    rest.split(')').next()?.parse().ok()
}

fn svstat(dir: &str) -> String {
    String::from_utf8(run("svstat", &[dir]).stdout).unwrap()
}

fn wait_up(dir: &str) -> i32 {
    wait_for(&format!("{dir} up"), T, || up_pid(dir))
}

fn wait_down(dir: &str) {
    wait_for(&format!("{dir} down"), T, || svstat(dir).contains(": down ").then_some(()));
}

fn svc(args: &[&str]) {
    let out = run("svc", args);
    assert!(out.status.success(), "svc {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn svc_svstat_svok_control_a_scanned_service() {
    require_tools();
    let d = Dirs::new();
    script(&d.svc("s").join("run"), &format!("exec HELPER signals {}", d.path("signals").display()));
    let _sup = d.scan();
    let s = d.s("s");
    let pid = wait_up(&s);
    assert!(run("svok", &[&s]).status.success(), "svok: supervised");
    let st = svstat(&s);
    assert!(st.starts_with(&format!("{s}: up (pid {pid}) ")) && st.trim_end().ends_with("seconds"), "{st}");
    wait_for("the helper to be ready", T, || fs::metadata(d.path("signals.ready")).ok());

    // Signals: h a i, and runit's 1 2 q w (written as sv and runsv do).
    svc(&["-h", "-a", "-i", &s]);
    fs::write(d.svc("s").join("supervise/control"), "12qw").unwrap();
    let got = wait_for("the signals", T, || {
        let t = fs::read_to_string(d.path("signals")).ok()?;
        ["HUP", "ALRM", "INT", "USR1", "USR2", "QUIT", "WINCH"].iter().all(|s| t.contains(s)).then_some(t)
    });
    assert!(!got.contains("TERM"), "{got}");
    assert_eq!(up_pid(&s), Some(pid), "signals did not restart it");

    // Pause and continue.
    svc(&["-p", &s]);
    wait_for("paused", T, || svstat(&s).contains(", paused").then_some(()));
    wait_for("stopped by SIGSTOP", T, || (proc_state(pid) == Some('T')).then_some(()));
    svc(&["-c", &s]);
    wait_for("continued", T, || (!svstat(&s).contains("paused")).then_some(()));
    wait_for("running again", T, || (proc_state(pid) != Some('T')).then_some(()));

    // TERM and KILL end the process; it is wanted up, so it comes back.
    svc(&["-t", &s]);
    let second = wait_for("a new pid after -t", T, || up_pid(&s).filter(|p| *p != pid));
    assert!(!alive(pid));
    svc(&["-k", &s]);
    let third = wait_for("a new pid after -k", T, || up_pid(&s).filter(|p| *p != second));

    // Down: TERM then CONT, stays down; svstat says it is normally up.
    svc(&["-d", &s]);
    wait_down(&s);
    assert!(!alive(third));
    assert!(svstat(&s).trim_end().ends_with(", normally up"), "{}", svstat(&s));
    // Up again.
    svc(&["-u", &s]);
    wait_up(&s);
    // runit's sv reads and controls the same directory.
    let out = run("sv", &["status", &s]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with(&format!("run: {s}: (pid ")), "{text}");
    assert!(run("sv", &["down", &s]).status.success());
    wait_down(&s);
    let text = String::from_utf8(run("sv", &["status", &s]).stdout).unwrap();
    assert!(text.starts_with(&format!("down: {s}: ")), "{text}");
    assert!(run("sv", &["up", &s]).status.success());
    wait_up(&s);
}

#[test]
fn down_file_once_and_exit() {
    require_tools();
    let d = Dirs::new();
    script(&d.svc("o").join("run"), "exec HELPER sleep");
    fs::write(d.svc("o").join("down"), "").unwrap();
    let sup = Sup::start(&["supervise", &d.s("o")], d.path("sup.log"));
    let s = d.s("o");
    wait_for("supervised", T, || run("svok", &[&s]).status.success().then_some(()));
    wait_down(&s);
    assert!(!svstat(&s).contains("normally"), "a down file means normally down: {}", svstat(&s));
    // Once: started, and not restarted after it ends.
    svc(&["-o", &s]);
    let pid = wait_up(&s);
    assert!(svstat(&s).contains("normally down"), "{}", svstat(&s));
    svc(&["-k", &s]);
    wait_down(&s);
    assert!(!alive(pid));
    // x: supervise exits once the service is down, and lets go of it.
    svc(&["-u", &s]);
    wait_up(&s);
    svc(&["-dx", &s]);
    let mut sup = sup;
    let status = wait_for("supervise to exit", T, || sup.child.try_wait().unwrap());
    assert!(status.success(), "{status}: {}", sup.log());
    assert!(!run("svok", &[&s]).status.success(), "no longer supervised");
    assert!(svstat(&s).contains("supervise not running"), "{}", svstat(&s));
}

#[test]
fn finish_gets_the_exit_code_and_the_signal() {
    require_tools();
    let d = Dirs::new();
    let flag = d.path("first-done");
    script(
        &d.svc("f").join("run"),
        &format!("if [ -e {0} ]; then exec HELPER sleep; fi; touch {0}; exit 3", flag.display()),
    );
    script(&d.svc("f").join("finish"), &format!("echo \"$1 $2\" >> {}", d.path("finish.txt").display()));
    let _sup = d.scan();
    let s = d.s("f");
    // The first run exits at once: wait for its finish, then for the
    // second run (the one that stays up) before killing it.
    wait_for("the first finish", T, || fs::read_to_string(d.path("finish.txt")).ok().filter(|t| !t.is_empty()));
    let pid = wait_up(&s);
    svc(&["-k", &s]);
    wait_for("a new pid", T, || up_pid(&s).filter(|p| *p != pid));
    let text = wait_for("two finishes", T, || {
        fs::read_to_string(d.path("finish.txt")).ok().filter(|t| t.lines().count() >= 2)
    });
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..2], ["3 0", "-1 9"], "exit code, then -1 and the signal: {text}");
}

#[test]
fn a_log_service_loses_no_line_while_either_side_restarts() {
    require_tools();
    let d = Dirs::new();
    script(&d.svc("w").join("run"), "i=0; while :; do echo \"$$ $i\"; i=$((i+1)); sleep 0.005; done");
    let out = d.path("log.txt");
    script(&d.svc("w").join("log/run"), &format!("exec HELPER copy {}", out.display()));
    let _sup = d.scan();
    let (s, l) = (d.s("w"), d.s("w/log"));
    let first_log = wait_up(&l);
    let first_main = wait_up(&s);
    let lines = |min: usize| {
        wait_for(&format!("{min} lines"), T, || {
            fs::read_to_string(&out).ok().filter(|t| t.lines().count() >= min).map(|t| t.lines().count())
        })
    };
    let n = lines(50);
    // The log service goes down (gracefully) and comes back: what the
    // writer wrote meanwhile waits in the pipe.
    svc(&["-t", &l]);
    wait_for("a new log service", T, || up_pid(&l).filter(|p| *p != first_log));
    let n = lines(n + 50);
    // The writer is killed and restarted: the log service reads on.
    svc(&["-k", &s]);
    wait_for("a new writer", T, || up_pid(&s).filter(|p| *p != first_main));
    lines(n + 100);
    svc(&["-d", &s]);
    wait_down(&s);
    // Every writer's lines arrive whole and without a gap.
    let text = fs::read_to_string(&out).unwrap();
    let mut per_pid = std::collections::BTreeMap::<i32, Vec<u64>>::new();
    for line in text.lines() {
        let (pid, n) = line.split_once(' ').unwrap_or_else(|| panic!("bad line {line:?}"));
        per_pid.entry(pid.parse().unwrap()).or_default().push(n.parse().unwrap_or_else(|_| panic!("{line:?}")));
    }
    assert!(per_pid.len() >= 2, "two writers: {per_pid:?}");
    for (pid, nums) in per_pid {
        let want: Vec<u64> = (0..nums.len() as u64).collect();
        assert_eq!(nums, want, "writer {pid} lost or reordered lines");
    }
}

#[test]
fn a_service_that_keeps_dying_starts_at_most_once_a_second() {
    require_tools();
    let d = Dirs::new();
    let stamps = d.path("stamps");
    script(&d.svc("c").join("run"), &format!("date +%s.%N >> {}; exit 1", stamps.display()));
    let _sup = d.scan();
    let text = wait_for("4 starts", T, || fs::read_to_string(&stamps).ok().filter(|t| t.lines().count() >= 4));
    let times: Vec<f64> = text.lines().map(|l| l.parse().unwrap()).collect();
    for w in times.windows(2) {
        assert!(w[1] - w[0] >= 0.95, "two starts {:.3} s apart: {times:?}", w[1] - w[0]);
    }
}

#[test]
fn a_second_supervisor_is_refused_and_the_first_goes_on() {
    require_tools();
    let d = Dirs::new();
    script(&d.svc("one").join("run"), "exec HELPER sleep");
    let _sup = d.scan();
    let s = d.s("one");
    let pid = wait_up(&s);
    let out = run(supervisor_bin().to_str().unwrap(), &["supervise", &s]);
    assert_eq!(out.status.code(), Some(111));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unable to acquire") && err.contains("supervise/lock"), "{err}");
    // daemontools' own supervise is refused too.
    let out = run("supervise", &[&s]);
    assert!(!out.status.success(), "daemontools supervise must be refused");
    assert_eq!(up_pid(&s), Some(pid), "the first is unaffected");
    assert!(run("svok", &[&s]).status.success());
}

#[test]
fn scan_picks_up_new_directories_and_stops_removed_ones() {
    require_tools();
    let d = Dirs::new();
    script(&d.svc("first").join("run"), "exec HELPER sleep");
    let sup = d.scan();
    wait_up(&d.s("first"));
    script(&d.svc("later").join("run"), "exec HELPER sleep");
    let later = wait_up(&d.s("later"));
    fs::rename(d.svc("later"), d.path("later-removed")).unwrap();
    wait_for("the removed service to stop", T, || (!alive(later)).then_some(()));
    assert!(up_pid(&d.s("first")).is_some());
    assert!(sup.log().contains("later: now supervised"), "{}", sup.log());
}

#[test]
fn follow_keeps_supervising_a_program_that_goes_to_the_background() {
    require_tools();
    let d = Dirs::new();
    let pidfile = d.path("daemon.pid");
    // Forks a daemon that writes its pid, and exits 0: what `fghack` is for.
    script(&d.svc("bg").join("run"), &format!("HELPER sleep {} & exit 0", pidfile.display()));
    fs::write(d.svc("bg").join("follow"), "").unwrap();
    let _sup = d.scan();
    let s = d.s("bg");
    let daemon = wait_for("the daemon", T, || crate::util::read_pid(&pidfile));
    let followed = wait_for("svstat to show the daemon", T, || up_pid(&s).filter(|p| *p == daemon));
    assert_eq!(followed, daemon);
    assert!(alive(daemon));
    // It is the service now: down stops it, up starts a new one.
    svc(&["-d", &s]);
    wait_down(&s);
    assert!(!alive(daemon));
    fs::remove_file(&pidfile).unwrap();
    svc(&["-u", &s]);
    let second = wait_for("a second daemon", T, || crate::util::read_pid(&pidfile));
    assert_ne!(second, daemon);
    wait_for("followed again", T, || up_pid(&s).filter(|p| *p == second));
}

#[test]
fn reload_and_sighup_rescan_at_once() {
    require_tools();
    let d = Dirs::new();
    let dir = d.tmp.path().join("service");
    fs::create_dir_all(&dir).unwrap();
    // No timer to help: only reload and SIGHUP can find new directories.
    let sup = Sup::start(&["scan", dir.to_str().unwrap(), "--rescan", "1h"], d.path("scan.log"));
    wait_for("the scan to serve", T, || dir.join(".supervisor/control.sock").exists().then_some(()));
    script(&d.svc("by-reload").join("run"), "exec HELPER sleep");
    let out = run(supervisor_bin().to_str().unwrap(), &["reload", "--scan", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_up(&d.s("by-reload"));
    script(&d.svc("by-hup").join("run"), "exec HELPER sleep");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sup.child.id() as i32), nix::sys::signal::SIGHUP).unwrap();
    wait_up(&d.s("by-hup"));
    assert!(!d.svc(".supervisor").join("supervise").exists(), "the control directory is not a service");
    let out = run(supervisor_bin().to_str().unwrap(), &["reload", "--scan", d.path("nothing-here").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(7), "no scan there");
}
