//! `supervisor exec` (setuidgid, softlimit, setlock, pgrphack) and the
//! `limits` and `lock` keys of services.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use nix::sys::resource::{getrlimit, Resource};
use supervisor_core::limits::{take_lock, LockError};

use crate::util::{alive, helper, read_pid, supervisor_bin, wait_for, Fixture};

const T: Duration = Duration::from_secs(15);

fn exec_command(args: &[&str]) -> Command {
    let mut c = Command::new(supervisor_bin());
    c.arg("exec").args(args).stdin(Stdio::null());
    c
}

/// Runs `supervisor exec ARGS...` to completion: (code, stderr).
fn exec_output(args: &[&str]) -> (i32, String) {
    let Output { status, stderr, .. } = exec_command(args).output().expect("run supervisor exec");
    (status.code().unwrap_or(-1), String::from_utf8_lossy(&stderr).into_owned())
}

/// A `supervisor exec` left running (its program sleeps); killed on drop.
struct Running(Child);

impl Running {
    fn start(args: &[&str]) -> Running {
        Running(exec_command(args).stderr(Stdio::piped()).spawn().expect("spawn supervisor exec"))
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// Kills the program and waits for it.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Panics, with what it printed, if it has exited.
    fn assert_running(&mut self) {
        if let Some(st) = self.0.try_wait().expect("try_wait") {
            let mut err = String::new();
            if let Some(mut e) = self.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("supervisor exec exited ({st}): {err}");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits for the helper's `limits` (or `report`) file and reads its
/// `NAME=VALUE` lines.
fn read_report(run: &mut Running, path: &Path) -> BTreeMap<String, String> {
    let text = wait_for(&format!("{} to be written", path.display()), T, || {
        run.assert_running();
        fs::read_to_string(path).ok()
    });
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// A soft limit as the helper writes it.
fn shown(limit: u64) -> String {
    if limit == libc::RLIM_INFINITY {
        "unlimited".to_owned()
    } else {
        limit.to_string()
    }
}

fn hard(resource: Resource) -> u64 {
    getrlimit(resource).expect("getrlimit").1
}

fn soft(resource: Resource) -> u64 {
    getrlimit(resource).expect("getrlimit").0
}

#[test]
fn limits_are_set_like_softlimit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("limits");
    let h = helper();
    let mut run = Running::start(&[
        "--limit-files",
        "100",
        "--limit-core",
        "0",
        "--limit-cpu",
        "1m",
        "--limit-mem",
        "1GiB",
        "--limit-procs",
        "=",
        "--",
        &h,
        "limits",
        out.to_str().unwrap(),
    ]);
    let r = read_report(&mut run, &out);
    assert_eq!(r["pid"], run.pid().to_string(), "exec keeps the pid");
    assert_eq!(r["nofile"], "100");
    assert_eq!(r["core"], "0");
    assert_eq!(r["cpu"], "60");
    // A memory limit sets four resources, each capped at its hard limit
    // (locked memory usually has a low one).
    for (name, resource) in [
        ("data", Resource::RLIMIT_DATA),
        ("stack", Resource::RLIMIT_STACK),
        ("memlock", Resource::RLIMIT_MEMLOCK),
        ("as", Resource::RLIMIT_AS),
    ] {
        assert_eq!(r[name], shown((1 << 30u64).min(hard(resource))), "{name}");
    }
    assert_eq!(r["nproc"], shown(hard(Resource::RLIMIT_NPROC)), "= is the hard limit");
    assert_ne!(r["pgid"], r["pid"], "no new process group unless asked");
}

#[test]
fn limits_above_the_hard_limit_get_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("limits");
    let h = helper();
    let mut run = Running::start(&["--limit-files", "999999999", "--", &h, "limits", out.to_str().unwrap()]);
    let r = read_report(&mut run, &out);
    assert_eq!(r["nofile"], shown(999_999_999u64.min(hard(Resource::RLIMIT_NOFILE))));
    assert_eq!(r["core"], shown(soft(Resource::RLIMIT_CORE)), "limits not asked for are inherited");
}

#[test]
fn new_pgrp_makes_a_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("limits");
    let h = helper();
    let mut run = Running::start(&["--new-pgrp", "--", &h, "limits", out.to_str().unwrap()]);
    let r = read_report(&mut run, &out);
    assert_eq!(r["pid"], run.pid().to_string());
    assert_eq!(r["pgid"], r["pid"], "the program leads its own group");
    let our_sid = nix::unistd::getsid(None).unwrap().to_string();
    assert_eq!(r["sid"], our_sid, "in the same session: a group, not a session");
}

#[test]
fn user_switches_uid_gid_and_groups() {
    crate::util::require_root("`supervisor exec --user` switches users");
    let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("a user nobody");
    let name = std::ffi::CString::new("nobody").unwrap();
    let groups: Vec<String> =
        nix::unistd::getgrouplist(&name, nobody.gid).unwrap().iter().map(std::string::ToString::to_string).collect();
    let dir = tempfile::tempdir().unwrap();
    // Writable by nobody.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let out = dir.path().join("report");
    let h = helper();
    let mut run = Running::start(&["--user", "nobody", "--", &h, "report", out.to_str().unwrap()]);
    let r = read_report(&mut run, &out);
    assert_eq!(r["uid"], nobody.uid.to_string());
    assert_eq!(r["gid"], nobody.gid.to_string());
    let mut got: Vec<&str> = r["groups"].split(',').collect();
    let mut want: Vec<&str> = groups.iter().map(String::as_str).collect();
    got.sort_unstable();
    want.sort_unstable();
    want.dedup();
    assert_eq!(got, want, "the user's groups, and no others");
    // Nothing else changes: the environment is the caller's (setuidgid
    // sets no variables).
    let home = std::env::var("HOME").unwrap_or_default();
    let text = fs::read_to_string(&out).unwrap();
    if !home.is_empty() {
        assert!(text.contains(&format!("env HOME={home}\n")), "{text}");
    }
}

#[test]
fn lock_nowait_fails_while_the_lock_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("lock");
    let l = lock.to_str().unwrap();
    let h = helper();
    let held = take_lock(&lock, false, false).unwrap();
    let (code, err) = exec_output(&["--lock", l, "--lock-nowait", "--", &h, "exit", "7"]);
    assert_eq!(code, 111, "{err}");
    assert_eq!(err, format!("supervisor exec: lock {l} is held\n"));
    drop(held);
    let (code, err) = exec_output(&["--lock", l, "--lock-nowait", "--", &h, "exit", "7"]);
    assert_eq!(code, 7, "the program ran: {err}");
    drop(take_lock(&lock, false, false).expect("free again once the program is gone"));
}

/// Whether `pid` waits for a `flock` (a `->` line in `/proc/locks`).
fn waits_for_a_flock(pid: i32) -> bool {
    let locks = fs::read_to_string("/proc/locks").unwrap_or_default();
    locks.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 5 && f[1] == "->" && f[2] == "FLOCK" && f[5] == pid.to_string()
    })
}

#[test]
fn lock_waits_then_the_program_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("lock");
    let out = dir.path().join("pid");
    let h = helper();
    let held = take_lock(&lock, false, false).unwrap();
    let mut run = Running::start(&["--lock", lock.to_str().unwrap(), "--", &h, "sleep", out.to_str().unwrap()]);
    wait_for("supervisor exec to wait for the lock", T, || {
        run.assert_running();
        waits_for_a_flock(run.pid()).then_some(())
    });
    assert!(!out.exists(), "the program must not run while the lock is held");
    drop(held);
    let pid = wait_for("the program to run", T, || read_pid(&out));
    assert_eq!(pid, run.pid());
    // The program inherited the locked descriptor: the lock is its own.
    assert!(matches!(take_lock(&lock, false, false), Err(LockError::Held(_))));
    run.kill();
    assert!(!alive(pid));
    drop(take_lock(&lock, false, false).expect("released with the program"));
}

#[test]
fn failures_exit_111_and_name_the_step() {
    let h = helper();
    let (code, err) = exec_output(&["--user", "no-such-user-xyz", "--", &h, "exit", "0"]);
    assert_eq!((code, err.as_str()), (111, "supervisor exec: unknown user \"no-such-user-xyz\"\n"));
    let (code, err) = exec_output(&["--", "no-such-program-xyz"]);
    assert_eq!((code, err.as_str()), (111, "supervisor exec: exec no-such-program-xyz: No such file or directory\n"));
    let (code, err) = exec_output(&["--lock", "/nonexistent-dir-xyz/lock", "--", &h, "exit", "0"]);
    assert_eq!(code, 111);
    assert!(err.starts_with("supervisor exec: open lock file /nonexistent-dir-xyz/lock: "), "{err}");
    // Bad arguments are usage errors.
    for args in [
        &["--lock-nowait", "--", "true"][..],
        &["--limit-mem", "10M", "--", "true"],
        &["--limit-cpu", "1.5s", "--", "true"],
        &["--limit-files", "many", "--", "true"],
        &[],
        &["true"],
    ] {
        let (code, err) = exec_output(args);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
}

#[test]
fn services_get_limits_and_share_a_lock() {
    let mut f = Fixture::new(
        r#"
[service.first]
command = ["HELPER", "limits", "DIR/first.limits"]
limits = { files = 100, core = 0, cpu = "60s", mem = "1GiB", procs = "unlimited" }
lock = "shared.lock"
min_uptime = "100ms"

[service.second]
command = ["HELPER", "sleep", "DIR/second.pid"]
lock = "DIR/shared.lock"
expected = "stopped"
min_uptime = "100ms"
backoff_limit = "1s"
forever = true
"#,
    );
    f.start();
    let s = f.wait_state("first", "running", T);
    let first = s["pid"].as_i64().unwrap() as i32;
    let text = wait_for("first's limits", T, || fs::read_to_string(f.path("first.limits")).ok());
    let r: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(r["pid"], first.to_string());
    assert_eq!((r["nofile"], r["core"], r["cpu"]), ("100", "0", "60"));
    assert_eq!(r["as"], shown((1 << 30u64).min(hard(Resource::RLIMIT_AS))));
    assert_eq!(r["memlock"], shown((1 << 30u64).min(hard(Resource::RLIMIT_MEMLOCK))));
    assert_eq!(r["nproc"], shown(hard(Resource::RLIMIT_NPROC)));
    assert_eq!(r["pgid"], r["pid"], "services lead their own group");

    // The lock file is relative to the configuration's directory, and the
    // service holds it.
    let lock = f.path("shared.lock");
    assert!(matches!(take_lock(&lock, false, false), Err(LockError::Held(_))));

    let (code, out, err) = f.cli_code(&["start", "second", "--no-wait"]);
    assert_eq!(code, 0, "{out}{err}");
    let message = format!("lock {} is held by another process", lock.display());
    let s = wait_for("second to back off on the lock", T, || {
        let s = f.service("second");
        (s["state"] == "backoff" && s["error"] == message.as_str()).then_some(s)
    });
    assert!(s["pid"].is_null());
    assert!(!f.path("second.pid").exists(), "second never ran");
    assert!(f.log().contains(&message), "{}", f.log());

    let (code, out, err) = f.cli_code(&["stop", "first"]);
    assert_eq!(code, 0, "{out}{err}");
    let s = f.wait_state("second", "running", T);
    let second = s["pid"].as_i64().unwrap() as i32;
    // It writes its pidfile once it runs: wait for it.
    wait_for("second's pidfile", T, || (read_pid(&f.path("second.pid")) == Some(second)).then_some(()));
    assert!(s["error"].is_null(), "{s}");
    assert!(matches!(take_lock(&lock, false, false), Err(LockError::Held(_))), "second holds it now");

    // And first cannot come back while second holds it.
    let (code, _, _) = f.cli_code(&["start", "first", "--no-wait"]);
    assert_eq!(code, 0);
    wait_for("first to back off on the lock", T, || {
        let s = f.service("first");
        (s["state"] == "backoff" && s["error"] == message.as_str()).then_some(())
    });
}
