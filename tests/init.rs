//! The supervisor as a real PID 1: `unshare --pid --fork --mount-proc`
//! makes a PID namespace whose first process it is, as in a container.
//! Orphans are reaped, signals do what `docs/containers.md` says, the exit
//! code follows the policy, and nothing is left when it exits.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::util::{alive, require_root, wait_for, Fixture};

/// A supervisor that is PID 1 of a PID namespace of its own.
struct Pid1 {
    fx: Fixture,
    /// Its pid outside the namespace (the child of `unshare`).
    pid: i32,
}

impl Pid1 {
    /// Starts `supervisor run` as PID 1 on a configuration of `services`
    /// (with `extra` keys for `[supervisor]`).
    fn start(extra: &str, services: &str) -> Pid1 {
        Pid1::start_with(extra, services, "exec unshare --pid --fork --mount-proc --kill-child \"$@\"")
    }

    /// As [`Pid1::start`], with the shell `script` that runs the
    /// supervisor's command line (`"$@"`) in a new PID namespace (its
    /// directory is in `$SV_DIR`, open to all).
    fn start_with(extra: &str, services: &str, script: &str) -> Pid1 {
        Pid1::launch(Fixture::with_supervisor_table(extra, services), script)
    }

    /// As [`Pid1::start_with`], on the configuration of `fx`.
    fn launch(mut fx: Fixture, script: &str) -> Pid1 {
        require_root("unshare makes PID namespaces as root");
        let dir = fx.dir.path().display().to_string();
        fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        fx.start_with_shell(&format!("SV_DIR={dir}\n{script}"));
        let unshare = fx.supervisor.as_ref().expect("started").id();
        let children = format!("/proc/{unshare}/task/{unshare}/children");
        let pid = wait_for("the PID 1 under unshare", Duration::from_secs(10), || {
            fs::read_to_string(&children).ok()?.split_whitespace().next()?.parse().ok()
        });
        let p = Pid1 { fx, pid };
        let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let nspid = status.lines().find(|l| l.starts_with("NSpid:")).expect("NSpid").to_string();
        assert!(nspid.ends_with("\t1"), "the supervisor is PID 1 in its namespace: {nspid}");
        p
    }

    fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid), sig).expect("signal PID 1");
    }

    /// Waits for the supervisor (and so `unshare`) to exit: its code.
    fn exit_code(&mut self, limit: Duration) -> i32 {
        self.fx.wait_exit(limit)
    }

    /// Every process in the namespace but PID 1, as (pid, state letter,
    /// command line), seen from outside.
    fn others(&self) -> Vec<(i32, char, String)> {
        let mut out = Vec::new();
        for e in fs::read_dir("/proc").expect("/proc").flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            if pid != self.pid && in_namespace_of(pid, self.pid) {
                let state = crate::util::proc_state(pid).unwrap_or('?');
                let cmd = fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default().replace('\0', " ");
                out.push((pid, state, cmd));
            }
        }
        out
    }
}

impl Drop for Pid1 {
    fn drop(&mut self) {
        if self.fx.supervisor.is_some() {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGTERM);
            let _ = self.fx.wait_exit(Duration::from_secs(20));
        }
    }
}

/// Whether `pid` lives in the PID namespace of `init`.
fn in_namespace_of(pid: i32, init: i32) -> bool {
    let ns = |p: i32| fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    ns(pid).is_some() && ns(pid) == ns(init)
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

#[test]
fn pid1_reaps_every_orphan_even_those_no_service_owns() {
    // Twenty orphans with no marker of their service (env -i), each
    // re-parented to PID 1 by the subshell that exits at once.
    let services = r#"
[service.spawner]
command = "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do ( env -i /bin/sh -c 'echo $$ >> DIR/orphans; exec sleep 0.2' & ); done; exec sleep 1000"
shell = true
"#;
    let p = Pid1::start("", services);
    let orphans = p.fx.path("orphans");
    wait_for("20 orphans to start", Duration::from_secs(10), || (lines(&orphans).len() == 20).then_some(()));
    let left = wait_for("every orphan to be gone, reaped", Duration::from_secs(10), || {
        let others = p.others();
        (others.len() == 1).then_some(others)
    });
    assert!(left[0].2.starts_with("sleep 1000"), "only the service is left: {left:?}");
    assert!(p.others().iter().all(|(_, st, _)| *st != 'Z'), "no zombie: {:?}", p.others());
}

#[test]
fn term_stops_in_reverse_dependency_order_and_exits_0() {
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let services = r#"
[service.db]
command = "trap 'echo db >> DIR/order; exit 0' TERM; echo up > DIR/db.up; while :; do sleep 0.05; done"
shell = true
[service.web]
command = "trap 'echo web >> DIR/order; exit 0' TERM; echo up > DIR/web.up; while :; do sleep 0.05; done"
shell = true
requires = ["db"]
"#;
        let mut p = Pid1::start("", services);
        wait_for("web to start", Duration::from_secs(10), || p.fx.path("web.up").exists().then_some(()));
        p.signal(sig);
        assert_eq!(p.exit_code(Duration::from_secs(20)), 0, "after {sig}: {}", p.fx.log());
        assert_eq!(lines(&p.fx.path("order")), ["web", "db"], "after {sig}");
    }
}

#[test]
fn hup_reloads_and_winch_reaches_the_services() {
    let services = r#"
[service.tty]
command = "trap 'echo winch >> DIR/winch' WINCH; while :; do sleep 0.05; done"
shell = true
"#;
    let p = Pid1::start("", services);
    p.fx.wait_state("tty", "running", Duration::from_secs(10));
    p.signal(Signal::SIGWINCH);
    wait_for("WINCH to reach the service", Duration::from_secs(10), || {
        (lines(&p.fx.path("winch")) == ["winch"]).then_some(())
    });
    let more = "\n[service.added]\ncommand = [\"sleep\", \"1000\"]\n";
    fs::OpenOptions::new()
        .append(true)
        .open(&p.fx.config)
        .and_then(|mut f| {
            use std::io::Write;
            f.write_all(more.as_bytes())
        })
        .expect("append");
    p.signal(Signal::SIGHUP);
    p.fx.wait_state("added", "running", Duration::from_secs(10));
}

#[test]
fn escapees_and_exec_sessions_are_stopped_before_pid1_exits() {
    // Without cgroups (which would find them as the service's), an orphan
    // that left its service's session and environment belongs to no
    // service once re-parented to PID 1. `nsenter` stands for `docker
    // exec`: a process in the namespace that is nobody's child there; it
    // ignores TERM, and gets KILL after the grace period.
    let services = r#"
[service.leaver]
command = "( env -i setsid /bin/sh -c 'echo $$ > DIR/escapee; exec sleep 1000' & ); exec sleep 1000"
shell = true
"#;
    let mut p = Pid1::start("cgroups = false", services);
    let escapee = wait_for("the escapee", Duration::from_secs(10), || crate::util::read_pid(&p.fx.path("escapee")));
    let host = wait_for("the escapee to be PID 1's child", Duration::from_secs(10), || {
        p.others().into_iter().find(|o| {
            let stat = fs::read_to_string(format!("/proc/{}/stat", o.0)).unwrap_or_default();
            let ppid = stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).unwrap_or("");
            o.2.starts_with("sleep 1000") && ppid == p.pid.to_string() && o.0 != p.fx.pid("leaver")
        })
    });
    let mut exec = Command::new("nsenter")
        .args(["--target", &p.pid.to_string(), "--pid", "--mount", "--"])
        .args(["/bin/sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"])
        .stdin(Stdio::null())
        .spawn()
        .expect("nsenter");
    wait_for("the exec'd shell in the namespace", Duration::from_secs(10), || {
        p.others().iter().any(|(_, _, cmd)| cmd.contains("trap")).then_some(())
    });
    let before: Vec<i32> = p.others().iter().map(|o| o.0).collect();
    p.signal(Signal::SIGTERM);
    // The services stopped cleanly: what no service owns does not count.
    assert_eq!(p.exit_code(Duration::from_secs(30)), 0, "{}", p.fx.log());
    let _ = exec.wait();
    for pid in before {
        assert!(!alive(pid), "pid {pid} outlived PID 1");
    }
    let log = p.fx.log();
    assert!(log.contains("process(es) that no service owns are left"), "{log}");
    assert!(log.contains("still left") && log.contains("sending KILL"), "the exec'd shell got KILL: {log}");
    assert!(escapee > 1 && host.0 > 1);
}

#[test]
fn a_critical_service_ends_the_container_with_its_code() {
    let services = r#"
[service.other]
command = "sleep 1000"
[service.main]
command = "while [ ! -e DIR/go ]; do sleep 0.02; done; exit 3"
shell = true
critical = true
"#;
    let mut p = Pid1::start("", services);
    p.fx.wait_state("other", "running", Duration::from_secs(10));
    fs::write(p.fx.path("go"), "").expect("go");
    assert_eq!(p.exit_code(Duration::from_secs(20)), 3, "{}", p.fx.log());
    assert!(p.fx.log().contains("main is critical and exited with code 3"), "{}", p.fx.log());
}

#[test]
fn a_critical_service_killed_by_a_signal_gives_128_plus_n() {
    let services = r#"
[service.main]
command = "sleep 1000"
critical = true
"#;
    let mut p = Pid1::start("", services);
    let pid = p.fx.wait_state("main", "running", Duration::from_secs(10))["pid"].as_i64().expect("pid");
    let host_pid = p.others().into_iter().find(|o| o.2.starts_with("sleep 1000")).expect("main").0;
    assert!(pid > 0);
    kill(Pid::from_raw(host_pid), Signal::SIGKILL).expect("kill");
    assert_eq!(p.exit_code(Duration::from_secs(20)), 137, "{}", p.fx.log());
}

#[test]
fn a_critical_service_that_cannot_start_gives_127() {
    let services = r#"
[service.main]
command = "/nonexistent/program"
critical = true
expected = "stopped"
"#;
    // Started once the supervisor answers, which it would not do for
    // long otherwise.
    let mut p = Pid1::start("", services);
    let _ = p.fx.cli(&["start", "main"]);
    assert_eq!(p.exit_code(Duration::from_secs(20)), 127, "{}", p.fx.log());
}

#[test]
fn all_exited_waits_for_every_job_and_the_worst_code_wins() {
    let services = r#"
[service.fine]
command = "exit 0"
shell = true
restart = "never"
[service.bad]
command = "exit 5"
shell = true
restart = "never"
[service.slow]
command = "while [ ! -e DIR/go ]; do sleep 0.02; done; exit 2"
shell = true
restart = "never"
"#;
    let mut p = Pid1::start("exit_when = \"all-exited\"", services);
    p.fx.wait_state("bad", "exited", Duration::from_secs(10));
    p.fx.wait_state("fine", "exited", Duration::from_secs(10));
    assert!(p.fx.supervisor.as_mut().expect("running").try_wait().expect("wait").is_none(), "slow still runs");
    fs::write(p.fx.path("go"), "").expect("go");
    assert_eq!(p.exit_code(Duration::from_secs(20)), 5, "{}", p.fx.log());
}

#[test]
fn a_service_that_needs_kill_at_the_shutdown_makes_the_exit_code_1() {
    let services = r#"
[service.deaf]
command = "trap '' TERM; echo up > DIR/up; while :; do sleep 0.05; done"
shell = true
stop_timeout = "200ms"
"#;
    let mut p = Pid1::start("", services);
    wait_for("deaf to start", Duration::from_secs(10), || p.fx.path("up").exists().then_some(()));
    p.signal(Signal::SIGTERM);
    assert_eq!(p.exit_code(Duration::from_secs(20)), 1, "{}", p.fx.log());
}

#[test]
fn pid1_runs_as_nobody_on_a_read_only_root_with_a_tmpfs_runtime_dir() {
    require_root("mounts and setpriv need root");
    // The runtime directory is a tmpfs (mounted here, so that the test
    // reaches the control socket); inside the supervisor's mount
    // namespace everything else is read-only, as with `docker run
    // --read-only --tmpfs`.
    let services = r#"
[service.web]
command = "sleep 1000"
[service.orphans]
command = "( env -i sleep 0.1 & ); ( env -i sleep 0.1 & ); exec sleep 1000"
shell = true
"#;
    let script = r#"d=$(dirname "$SV_DIR/x")
mkdir -p "$d/rt" && mount -t tmpfs -o uid=65534,gid=65534,mode=0700 tmpfs "$d/rt" || exit 9
exec unshare --mount --propagation private /bin/sh -c '
    mount --rbind "$1" "$1" && mount -o remount,bind,ro "$1" && mount -o remount,bind,ro / || exit 9
    if touch "$1/probe" 2>/dev/null; then echo "not read-only"; exit 9; fi
    shift
    exec unshare --pid --fork --mount-proc --kill-child setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"
' sh "$d" "$@""#;
    let mut p = Pid1::start_with("", services, script);
    let _unmount = Unmount(p.fx.path("rt"));
    let owner = fs::metadata(format!("/proc/{}", p.pid)).map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    assert_eq!(owner.ok(), Some(65534), "the supervisor runs as nobody");
    p.fx.wait_state("web", "running", Duration::from_secs(10));
    p.fx.wait_state("orphans", "running", Duration::from_secs(10));
    wait_for("the orphans to be reaped", Duration::from_secs(10), || {
        let others = p.others();
        (others.len() == 2 && others.iter().all(|o| o.1 != 'Z')).then_some(())
    });
    p.signal(Signal::SIGTERM);
    assert_eq!(p.exit_code(Duration::from_secs(20)), 0, "{}", p.fx.log());
}

#[test]
fn pid1_as_nobody_keeps_its_runtime_dir_in_xdg_runtime_dir() {
    require_root("mounts and setpriv need root");
    // No runtime_dir: a user other than root gets
    // $XDG_RUNTIME_DIR/supervisor/NAME, here on a tmpfs (DIR/rt is a link
    // to it, where the fixture looks for the socket).
    let fx = Fixture::new("[service.web]\ncommand = \"sleep 1000\"\n");
    let text = fs::read_to_string(&fx.config).expect("config");
    let text: Vec<&str> = text.lines().filter(|l| !l.starts_with("runtime_dir")).collect();
    let text = text.join("\n");
    fs::write(&fx.config, text).expect("config");
    let xdg = fx.path("xdg");
    fs::create_dir(&xdg).expect("mkdir");
    let mounted =
        Command::new("mount").args(["-t", "tmpfs", "-o", "uid=65534,gid=65534,mode=0700", "tmpfs"]).arg(&xdg).status();
    assert!(mounted.expect("mount").success());
    let _unmount = Unmount(xdg.clone());
    std::os::unix::fs::symlink(xdg.join("supervisor/t"), fx.path("rt")).expect("link");
    let nobody = format!("setpriv --reuid=65534 --regid=65534 --clear-groups -- env XDG_RUNTIME_DIR={}", xdg.display());
    let script = format!("exec unshare --pid --fork --mount-proc --kill-child {nobody} \"$@\"");
    let mut p = Pid1::launch(fx, &script);
    // A client finds it the same way: as the same user, with the same
    // XDG_RUNTIME_DIR.
    let config = p.fx.config.display().to_string();
    let sv = crate::util::supervisor_bin().display().to_string();
    let client = format!("{nobody} {sv} -c {config} wait --ready --timeout 10s");
    let out = Command::new("sh").args(["-c", &client]).output().expect("wait --ready");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(xdg.join("supervisor/t/run/control.sock").exists());
    p.signal(Signal::SIGTERM);
    assert_eq!(p.exit_code(Duration::from_secs(20)), 0, "{}", p.fx.log());
}

/// Unmounts a tmpfs that a test mounted.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn run_init_without_pid1_stops_the_descendants_no_service_owns() {
    // Not PID 1: a child subreaper, whose descendants are its to stop.
    let services = r#"
[service.leaver]
command = "( env -i setsid /bin/sh -c 'echo $$ > DIR/escapee; exec sleep 1000' & ); exec sleep 1000"
shell = true
"#;
    let mut fx = Fixture::with_supervisor_table("cgroups = false", services);
    fx.start_with_shell("exec \"$@\" --init");
    let escapee = wait_for("the escapee", Duration::from_secs(10), || crate::util::read_pid(&fx.path("escapee")));
    let sup = fx.supervisor.as_ref().expect("started").id() as i32;
    wait_for("the escapee to be the supervisor's child", Duration::from_secs(10), || {
        let stat = fs::read_to_string(format!("/proc/{escapee}/stat")).ok()?;
        (stat.rsplit(')').next()?.split_whitespace().nth(1)? == sup.to_string()).then_some(())
    });
    kill(Pid::from_raw(sup), Signal::SIGTERM).expect("TERM");
    assert_eq!(fx.wait_exit(Duration::from_secs(20)), 0, "{}", fx.log());
    assert!(!alive(escapee), "the escapee outlived the supervisor");
    assert!(fx.log().contains("1 process(es) that no service owns are left"), "{}", fx.log());
}
