//! Reaching a running supervisor: with a broken file, by socket or name,
//! without its socket; `list`, `repair-socket`, `shutdown`, refused peers,
//! `-q`, and a reader that goes away.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::util::{alive, supervisor_bin, wait_for, Fixture};

const T: Duration = Duration::from_secs(15);
const SLEEPER: &str = "[service.s]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"100ms\"\n";

/// `supervisor ARGS...` run in `dir` (so that no `./supervisor.toml` is
/// found), without `SUPERVISOR_CONFIG`: (code, stdout, stderr).
fn bare(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(supervisor_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("SUPERVISOR_CONFIG")
        .env_remove("SUPERVISOR_SOCKET")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run supervisor");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// Renames the fixture's instance (its `name` is `t`), before it starts.
fn rename(f: &Fixture, name: &str) {
    let text = fs::read_to_string(&f.config).unwrap().replacen("name = \"t\"", &format!("name = \"{name}\""), 1);
    fs::write(&f.config, text).unwrap();
}

fn supervisor_pid(f: &Fixture) -> i32 {
    i32::try_from(f.supervisor.as_ref().expect("started").id()).unwrap()
}

#[test]
fn a_typo_in_the_file_does_not_lock_the_operator_out() {
    let mut f = Fixture::new(SLEEPER);
    f.start();
    f.wait_state("s", "running", T);
    let good = fs::read_to_string(&f.config).unwrap();
    fs::write(&f.config, good.replace("command =", "comand =")).unwrap();
    let (code, out, err) = f.cli_code(&["status", "s"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("running"), "{out}");
    assert_eq!(err.lines().count(), 1, "one warning line: {err}");
    assert!(err.contains("t.toml has 2 error(s)") && err.contains("`reload` would refuse"), "{err}");
    // -q keeps only errors: no table, no warning; the code stays.
    let (code, out, err) = f.cli_code(&["-q", "status", "s"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    let (code, _, err) = f.cli_code(&["stop", "s"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(f.service("s")["state"], "stopped");
    let pid = supervisor_pid(&f);
    let (code, out, err) = f.cli_code(&["shutdown"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!alive(pid), "shutdown returns once the supervisor is gone");
    // A file that is valid again gives no warning (nothing runs: exit 3).
    fs::write(&f.config, good).unwrap();
    let (code, _, err) = f.cli_code(&["status"]);
    assert_eq!((code, err.contains("warning")), (3, false), "{err}");
}

#[test]
fn an_unchanged_file_is_not_read_in_full() {
    let mut f = Fixture::new(SLEEPER);
    f.start();
    f.wait_state("s", "running", T);
    // The record says which file the supervisor read.
    let record: Value = serde_json::from_slice(&fs::read(f.path("rt/run/instance.json")).unwrap()).unwrap();
    assert_eq!(record["name"], "t");
    assert_eq!(record["pid"], supervisor_pid(&f));
    assert_eq!(record["config"], fs::canonicalize(&f.config).unwrap().display().to_string());
    let (code, _, err) = f.cli_code(&["status"]);
    assert_eq!((code, err.as_str()), (0, ""));
    // -v says how the instance was found.
    let (code, _, err) = f.cli_code(&["-v", "status"]);
    assert_eq!(code, 0);
    assert!(err.contains(&format!("instance t: socket {}", f.socket().display())), "{err}");
}

#[test]
fn socket_and_name_reach_the_instance_without_a_file() {
    let name = format!("reach-{}", std::process::id());
    let mut f = Fixture::new(SLEEPER);
    rename(&f, &name);
    f.start();
    f.wait_state("s", "running", T);
    let empty = tempfile::tempdir().unwrap();
    let socket = f.socket().display().to_string();
    for (args, env) in [
        (vec!["--socket", socket.as_str(), "status", "s"], vec![]),
        (vec!["status", "s"], vec![("SUPERVISOR_SOCKET", socket.as_str())]),
        (vec!["-n", name.as_str(), "status", "s"], vec![]),
    ] {
        let (code, out, err) = bare(empty.path(), &args, &env);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        assert!(out.contains("running"), "{args:?}: {out}");
    }
    // `list` shows it (its runtime directory is linked into the default root).
    let (code, out, err) = bare(empty.path(), &["list", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let list: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let mine = list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name.as_str())
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(mine["pid"], supervisor_pid(&f));
    assert_eq!(mine["config"], fs::canonicalize(&f.config).unwrap().display().to_string());
    let (_, table, _) = bare(empty.path(), &["list"], &[]);
    assert!(table.starts_with("NAME") && table.contains(&name), "{table}");
    let (code, _, _) = bare(empty.path(), &["-n", name.as_str(), "shutdown"], &[]);
    assert_eq!(code, 0);
    let (_, out, _) = bare(empty.path(), &["list", "--json"], &[]);
    assert!(!out.contains(&name), "gone from the list: {out}");
    let (code, _, err) = bare(empty.path(), &["-n", name.as_str(), "status"], &[]);
    assert_eq!(code, 3, "not running: {err}");
}

#[test]
fn a_missing_socket_is_reported_repaired_and_shutdown_still_works() {
    let mut f = Fixture::with_supervisor_table("socket = \"DIR/app.sock\"", SLEEPER);
    f.start();
    f.wait_state("s", "running", T);
    let pid = supervisor_pid(&f);
    let link = f.path("app.sock");
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    fs::remove_file(&link).unwrap();
    let (code, _, err) = f.cli_code(&["status"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("running as pid {pid}")) && err.contains("repair-socket"), "{err}");
    let (code, out, err) = f.cli_code(&["repair-socket"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(fs::symlink_metadata(&link).is_ok(), "the link is back");
    assert!(f.log().contains("SIGUSR1"), "{}", f.log());
    assert_eq!(f.cli_code(&["status", "s"]).0, 0);
    // Without its socket, shutdown goes through the pid, and waits.
    fs::remove_file(&link).unwrap();
    let (code, out, err) = f.cli_code(&["shutdown"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!alive(pid), "gone when shutdown returns");
    assert_eq!(f.wait_exit(T), 0);
}

#[test]
fn shutdown_returns_only_when_the_supervisor_is_gone() {
    let mut f = Fixture::new(SLEEPER);
    for _ in 0..5 {
        let (code, out, err) = f.cli_code(&["up"]);
        assert_eq!(code, 0, "{out}{err}");
        let pid = f.status()["supervisor"]["pid"].as_i64().unwrap() as i32;
        let service = f.pid("s");
        let (code, out, err) = f.cli_code(&["shutdown"]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(!alive(pid) && !alive(service), "supervisor {pid} or service {service} still alive");
    }
    f.supervisor = None;
}

#[test]
fn a_refused_peer_reads_why() {
    crate::util::require_root("to run the command as another uid");
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let mut f = Fixture::with_supervisor_table("allow_uids = [4242]", SLEEPER);
    fs::set_permissions(f.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    f.start();
    let out = Command::new(supervisor_bin())
        .args(["--socket", &f.socket().display().to_string(), "status"])
        .current_dir("/")
        .uid(4343)
        .gid(4343)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("permission denied: uid 4343 is not allowed"), "{err}");
    assert!(!err.contains("Broken pipe"), "{err}");
}

#[test]
fn a_closed_standard_output_is_not_a_failure() {
    let mut f = Fixture::new(SLEEPER);
    f.start();
    f.wait_state("s", "running", T);
    // Close-on-exec: a process that another test spawns meanwhile must not
    // keep the read end open (its writes would then never fail).
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    drop(read);
    let out = Command::new(supervisor_bin())
        .args(["-c", &f.config.display().to_string(), "status"])
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    wait_for("the supervisor to still answer", T, || (f.cli_code(&["status"]).0 == 0).then_some(()));
}
