//! Per-service runtime directories (copkg): the five subdirectories made
//! before the start, placeholders in the command, the pid in
//! `run/start.pid`, `supervisor cleanup`, and the configuration errors.

use std::fs;
use std::path::Path;
use std::time::Duration;

use supervisor_core::{PidFile, PidState};

use crate::util::{alive, read_pid, wait_for, write_script, Fixture};

const T: Duration = Duration::from_secs(15);

/// A copkg `start.py`, in sh: it takes `--runtime-dir=` and
/// `--coordinate=`, insists that the five directories exist, writes into
/// `data/`, and becomes the service (`exec`).
const START_SCRIPT: &str = r#"
for a; do
  case $a in
    --runtime-dir=*) rt=${a#*=} ;;
    --coordinate=*) co=${a#*=} ;;
  esac
done
[ -n "$rt" ] || { echo "start.py: --runtime-dir is required" >&2; exit 2; }
for d in log etc console data run; do
  [ -d "$rt/$d" ] || { echo "start.py: $rt/$d is missing" >&2; exit 3; }
done
echo "$co" > "$rt/data/coordinate"
echo $$ > "$rt/data/pid"
exec sleep 1000
"#;

/// A fixture with the start script in `DIR/software/.../script.d/start.py`
/// and one service `idee` run as copkg says, its runtime directory given
/// relative to the configuration file.
fn copkg(extra: &str) -> Fixture {
    let f = Fixture::new(&format!(
        r#"
[service.idee]
command = "DIR/software/com/comoyo/id-cassandra/2.1.1/script.d/start.py --runtime-dir={{runtime_dir}} --coordinate={{coordinate}}"
runtime_dir = "runtime/1.idee.prod.trd"
coordinate = "1.idee.prod.trd"
min_uptime = "200ms"
stop_timeout = "5s"
{extra}
"#
    ));
    write_script(&f.path("software/com/comoyo/id-cassandra/2.1.1/script.d/start.py"), START_SCRIPT);
    f
}

fn runtime(f: &Fixture) -> std::path::PathBuf {
    f.path("runtime/1.idee.prod.trd")
}

fn held(path: &Path) -> Option<i32> {
    match PidFile::read(path) {
        Ok(PidState::Held(pid)) => Some(pid),
        _ => None,
    }
}

#[test]
fn a_copkg_start_script_runs_in_its_runtime_directory_and_cleanup_waits_for_stop() {
    let mut f = copkg("");
    let rt = runtime(&f);
    assert!(!rt.exists());
    f.start();
    let pid = f.wait_state("idee", "running", T)["pid"].as_i64().expect("pid") as i32;
    // The script found the five directories (or it would have exited),
    // and got the coordinate and the runtime directory.
    assert_eq!(fs::read_to_string(rt.join("data/coordinate")).unwrap().trim(), "1.idee.prod.trd");
    assert_eq!(read_pid(&rt.join("data/pid")), Some(pid));
    for d in ["log", "etc", "console", "data", "run"] {
        assert!(rt.join(d).is_dir(), "{d}");
    }
    // The pid is in run/start.pid, locked by the supervisor.
    assert_eq!(read_pid(&rt.join("run/start.pid")), Some(pid));
    assert_eq!(held(&rt.join("run/start.pid")), Some(pid));

    let (code, out, err) = f.cli_code(&["cleanup", "idee"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("idee") && err.contains("running") && err.contains(&pid.to_string()), "{err}");
    assert!(rt.join("data/coordinate").exists(), "nothing removed while it runs");

    let (code, _, err) = f.cli_code(&["stop", "idee"]);
    assert_eq!(code, 0, "{err}");
    assert!(!alive(pid));
    assert!(!rt.join("run/start.pid").exists(), "the pidfile goes with the process");
    let (code, out, err) = f.cli_code(&["cleanup", "idee"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("removed"), "{out}");
    assert!(!rt.exists());
    let (code, out, _) = f.cli_code(&["cleanup", "idee"]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing to remove"), "{out}");

    // The next start makes it all again.
    let (code, _, err) = f.cli_code(&["start", "idee"]);
    assert_eq!(code, 0, "{err}");
    let pid = f.pid("idee");
    assert_eq!(read_pid(&rt.join("data/pid")), Some(pid));
    assert_eq!(read_pid(&rt.join("run/start.pid")), Some(pid));
}

#[test]
fn a_stale_start_pid_never_blocks_a_start_but_a_held_one_does() {
    let mut f = copkg("");
    let rt = runtime(&f);
    fs::create_dir_all(rt.join("run")).unwrap();
    // Left by a supervisor that was killed: the pid of a live process
    // (this test), but nobody holds the lock.
    fs::write(rt.join("run/start.pid"), format!("{}\n", std::process::id())).unwrap();
    f.start();
    let pid = f.wait_state("idee", "running", T)["pid"].as_i64().unwrap() as i32;
    assert_eq!(held(&rt.join("run/start.pid")), Some(pid));
    let (code, _, err) = f.cli_code(&["stop", "idee"]);
    assert_eq!(code, 0, "{err}");

    // Another process holds it: the service runs elsewhere. The start
    // fails (and is retried) instead of running it twice.
    let lock = PidFile::acquire_with(&rt.join("run/start.pid"), 4242).unwrap();
    let (code, _, _) = f.cli_code(&["start", "idee", "--no-wait"]);
    assert_eq!(code, 0);
    let s = f.wait_state("idee", "backoff", T);
    let error = s["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("in use") && error.contains("4242"), "{s}");
    assert!(f.log().contains("is in use"), "{}", f.log());
    let (code, _, err) = f.cli_code(&["cleanup", "idee"]);
    assert_eq!(code, 1);
    assert!(err.contains("state is backoff"), "{err}");
    // Stopped here, but held there: cleanup refuses too, naming the holder.
    let (code, _, err) = f.cli_code(&["stop", "idee"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = f.cli_code(&["cleanup", "idee"]);
    assert_eq!(code, 1);
    assert!(err.contains("held for pid 4242"), "{err}");
    assert!(rt.join("data").is_dir());
    drop(lock);
    let (code, _, err) = f.cli_code(&["start", "idee"]);
    assert_eq!(code, 0, "{err}");
    let pid = f.pid("idee");
    assert_eq!(read_pid(&rt.join("run/start.pid")), Some(pid));
}

#[test]
fn cleanup_without_a_supervisor_looks_at_what_is_left() {
    let mut f = copkg("");
    let rt = runtime(&f);
    f.start();
    let pid = f.wait_state("idee", "running", T)["pid"].as_i64().unwrap() as i32;
    // A supervisor killed outright leaves its service running.
    let mut sup = f.supervisor.take().unwrap();
    sup.kill().unwrap();
    sup.wait().unwrap();
    assert!(alive(pid));
    assert_eq!(held(&rt.join("run/start.pid")), None, "the lock died with the supervisor");
    let (code, _, err) = f.cli_code(&["cleanup", "idee"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&pid.to_string()) && err.contains("still runs"), "{err}");
    assert!(rt.join("data").is_dir());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    wait_for("the leftover to go", T, || (!alive(pid)).then_some(()));

    // A symbolic link inside is removed, never what it points to.
    let keep = f.path("precious");
    fs::create_dir(&keep).unwrap();
    fs::write(keep.join("file"), "x").unwrap();
    std::os::unix::fs::symlink(&keep, rt.join("data/elsewhere")).unwrap();
    let (code, out, err) = f.cli_code(&["cleanup", "idee"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!rt.exists());
    assert_eq!(fs::read_to_string(keep.join("file")).unwrap(), "x");

    // A runtime directory that is itself a link is refused.
    fs::create_dir_all(rt.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&keep, &rt).unwrap();
    let (code, _, err) = f.cli_code(&["cleanup", "idee"]);
    assert_eq!(code, 1);
    assert!(err.contains("symbolic link"), "{err}");
    assert!(keep.join("file").exists());
}

#[test]
fn cleanup_needs_a_service_with_a_runtime_directory() {
    let f = Fixture::new(
        r#"
[service.plain]
command = ["HELPER", "sleep"]
"#,
    );
    let (code, _, err) = f.cli_code(&["cleanup", "plain"]);
    assert_eq!(code, 2);
    assert!(err.contains("\"plain\" has no runtime_dir"), "{err}");
    let (code, _, err) = f.cli_code(&["cleanup", "nosuch"]);
    assert_eq!(code, 2);
    assert!(err.contains("nosuch"), "{err}");
}

#[test]
fn placeholders_in_shell_commands_argv_and_finish() {
    let mut f = Fixture::new(
        r#"
[service.sh]
shell = true
command = "echo {name} {coordinate} > {runtime_dir}/data/out; exec sleep 1000"
runtime_dir = "DIR/sh-rt"
coordinate = "c.1"
min_uptime = "100ms"
finish = ["/bin/sh", "-c", "echo {{done}} > {runtime_dir}/data/finished"]

[service.plain]
shell = true
command = "printf '{%s}\\n' braces > DIR/plain.out; exec sleep 1000"
min_uptime = "100ms"
"#,
    );
    f.start();
    f.wait_state("sh", "running", T);
    f.wait_state("plain", "running", T);
    // The shell creates the file, then writes: wait for the line.
    let out = wait_for("the shell to write", T, || {
        fs::read_to_string(f.path("sh-rt/data/out")).ok().filter(|s| s.ends_with('\n'))
    });
    assert_eq!(out.trim(), "sh c.1");
    // Without runtime_dir or coordinate, braces are left alone.
    let out = wait_for("printf to write", T, || fs::read_to_string(f.path("plain.out")).ok().filter(|s| !s.is_empty()));
    assert_eq!(out.trim(), "{braces}");
    let (code, _, err) = f.cli_code(&["stop", "sh"]);
    assert_eq!(code, 0, "{err}");
    let done =
        wait_for("finish", T, || fs::read_to_string(f.path("sh-rt/data/finished")).ok().filter(|s| s.ends_with('\n')));
    assert_eq!(done.trim(), "{done}");
}

#[test]
fn bad_placeholders_and_shared_directories_are_config_errors() {
    let check = |services: &str| {
        let f = Fixture::new(services);
        let (code, out, err) = f.cli_code(&["check-config"]);
        assert_eq!(code, 6, "{out}{err}");
        let text = fs::read_to_string(&f.config).unwrap();
        (f.config.display().to_string(), text, err)
    };
    // file:line:col, service, key, and the placeholder.
    let (file, text, err) = check(
        r#"
[service.a]
command = "start.py --runtime-dir={runtime}"
runtime_dir = "rt-a"
"#,
    );
    let line = text.lines().position(|l| l.starts_with("command = \"start.py")).unwrap() + 1;
    let expected = format!(
        "{file}:{line}:11: service \"a\", key \"command\": cannot expand the placeholders: unknown placeholder {{runtime}}"
    );
    assert!(err.contains(&expected), "{err}\nexpected: {expected}");

    let (_, _, err) = check(
        r#"
[service.a]
command = ["start.py", "--coordinate={coordinate}"]
runtime_dir = "rt-a"
finish = ["f", "{oops"]
"#,
    );
    assert!(
        err.contains("key \"command\"") && err.contains("{coordinate} is used, but the service has no coordinate key"),
        "{err}"
    );
    assert!(err.contains("key \"finish\"") && err.contains("not closed"), "{err}");

    let (_, _, err) = check(
        r#"
[service.a]
command = "x"
runtime_dir = "DIR/shared"

[service.b]
command = "x"
runtime_dir = "DIR/shared/"

[service.c]
command = "x"
runtime_dir = "DIR/shared/c"
"#,
    );
    assert!(
        err.contains("service \"b\", key \"runtime_dir\"")
            && err.contains("also the runtime directory of service \"a\""),
        "{err}"
    );
    assert!(
        err.contains("service \"c\", key \"runtime_dir\"")
            && err.contains("inside the runtime directory of service \"a\""),
        "{err}"
    );

    // The supervisor's own runtime directory (DIR/rt) and its files are
    // not a service's to remove; a service's own files may be in its
    // directory.
    let (_, _, err) = check(
        r#"
[service.a]
command = "x"
runtime_dir = "DIR/rt"

[service.d]
command = "x"
runtime_dir = "DIR/elsewhere"
stdout = "DIR/elsewhere/log/out"
"#,
    );
    assert!(err.contains("service \"a\"") && err.contains("is the supervisor's runtime directory"), "{err}");
    assert!(!err.contains("service \"d\""), "{err}");
    let (_, _, err) = check("[service.c]\ncommand = \"x\"\nruntime_dir = \"DIR\"\n");
    assert!(err.contains("service \"c\"") && err.contains("holds the supervisor's runtime directory"), "{err}");
    let (_, _, err) = check(
        r#"
[service.b]
command = "x"
runtime_dir = "DIR/rt/run"

[service.d]
command = "x"
runtime_dir = "DIR/elsewhere"

[service.e]
command = "x"
stdout = "DIR/elsewhere/out"
"#,
    );
    assert!(err.contains("service \"b\"") && err.contains("holds the supervisor's"), "{err}");
    assert!(err.contains("service \"d\"") && err.contains("the stdout file of service \"e\""), "{err}");

    // The configuration file, with the supervisor's directory elsewhere.
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("conf/t.toml");
    fs::create_dir_all(config.parent().unwrap()).unwrap();
    let text = format!(
        "[supervisor]\nruntime_dir = \"{}/rt\"\n[service.c]\ncommand = \"x\"\nruntime_dir = \".\"\n",
        tmp.path().display()
    );
    fs::write(&config, text).unwrap();
    let out = std::process::Command::new(crate::util::supervisor_bin())
        .arg("-c")
        .arg(&config)
        .arg("check-config")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(err.contains("service \"c\"") && err.contains("holds the configuration file"), "{err}");

    let (_, _, err) = check(
        r#"
[service.a]
command = "x"
coordinate = ""
"#,
    );
    assert!(err.contains("key \"coordinate\"") && err.contains("expected a service coordinate"), "{err}");
}
