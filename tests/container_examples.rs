//! `examples/container/` as a container would run it: the configuration
//! as PID 1 of a PID namespace (`unshare`, as in `tests/init.rs`), on a
//! read-only root with a tmpfs on `/run`, started as the Dockerfile's
//! `ENTRYPOINT` says, and probed with the exact commands of `pod.yaml` and
//! `nomad.hcl`, run inside the namespace as `docker exec` and the kubelet
//! run them. A change to the examples that breaks one of them fails here.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::util::{require_root, supervisor_bin, wait_for};

/// The example directory.
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/container").join(name)
}

fn read(name: &str) -> String {
    fs::read_to_string(example(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A JSON array of strings (YAML's and HCL's flow form of one), as argv.
fn argv(text: &str, what: &str) -> Vec<String> {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{what}: not a one-line list of strings: {text}: {e}"))
}

/// The value after `key` on the first line (trimmed) that starts with it.
fn after<'a>(lines: &[&'a str], key: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| l.trim().strip_prefix(key))
}

/// The Dockerfile: the entrypoint's argv, and the configuration path that
/// `SUPERVISOR_CONFIG` names, which must be where the example is copied.
fn dockerfile() -> (Vec<String>, String) {
    let text = read("Dockerfile");
    let lines: Vec<&str> = text.lines().collect();
    let entrypoint = argv(after(&lines, "ENTRYPOINT ").expect("an ENTRYPOINT"), "ENTRYPOINT");
    let config = after(&lines, "ENV SUPERVISOR_CONFIG=").expect("ENV SUPERVISOR_CONFIG=").trim().to_string();
    let copy = format!("COPY examples/container/supervisor.toml {config}");
    assert!(lines.iter().any(|l| l.trim() == copy), "the Dockerfile has `{copy}`");
    (entrypoint, config)
}

/// The probes of `pod.yaml`, by name (`startupProbe`...): the line
/// `command: [...]` after each probe's line.
fn pod_probes() -> Vec<(String, Vec<String>)> {
    let text = read("pod.yaml");
    let lines: Vec<&str> = text.lines().collect();
    let mut probes = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line.trim().strip_suffix(':').filter(|n| n.ends_with("Probe")) else { continue };
        let command = after(&lines[i..], "command:").unwrap_or_else(|| panic!("{name} has no command"));
        probes.push((name.to_string(), argv(command, name)));
    }
    probes
}

/// The script checks of `nomad.hcl`, by name: `command` and `args` after
/// each `type = "script"`.
fn nomad_checks() -> Vec<(String, Vec<String>)> {
    let text = read("nomad.hcl");
    let lines: Vec<&str> = text.lines().collect();
    let string =
        |v: &str| -> String { serde_json::from_str(v.trim().trim_start_matches('=').trim()).expect("a string") };
    let mut checks = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.split_whitespace().collect::<Vec<_>>() != ["type", "=", "\"script\""] {
            continue;
        }
        // The check's own name: the last `name` before its type.
        let name = lines[..i].iter().rev().find_map(|l| l.trim().strip_prefix("name ")).map(string).expect("name");
        let command = string(after(&lines[i..], "command").expect("command"));
        let args = argv(after(&lines[i..], "args").expect("args").trim().trim_start_matches('='), "args");
        checks.push((name, [vec![command], args].concat()));
    }
    checks
}

/// `pod.yaml` read by a YAML parser (Python's, Debian's `python3-yaml`):
/// the same probe commands as the line reading found.
fn pod_probes_by_yaml() -> Vec<(String, Vec<String>)> {
    let script = "import json, sys, yaml\n\
                  pod = yaml.safe_load(open(sys.argv[1]))\n\
                  c = pod['spec']['containers'][0]\n\
                  print(json.dumps([[k, v['exec']['command']] for k, v in c.items() if k.endswith('Probe')]))";
    let out = Command::new("/usr/bin/python3").args(["-c", script]).arg(example("pod.yaml")).output();
    let out = out.expect("/usr/bin/python3 (Debian's python3 and python3-yaml, which .ci/run installs)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("No module named 'yaml'"), "install Debian's python3-yaml (.ci/run does): {err}");
    assert!(out.status.success(), "pod.yaml is not valid YAML, or not a pod with exec probes: {err}");
    serde_json::from_slice(&out.stdout).expect("the probes as JSON")
}

/// `runtime_dir` of the example.
fn runtime_dir() -> String {
    let text = read("supervisor.toml");
    let lines: Vec<&str> = text.lines().collect();
    let value = after(&lines, "runtime_dir =").expect("runtime_dir");
    serde_json::from_str(value.trim()).expect("a quoted path")
}

/// A uid (and gid) from `runAsUser:` in `pod.yaml`.
fn pod_user() -> u32 {
    let text = read("pod.yaml");
    let lines: Vec<&str> = text.lines().collect();
    after(&lines, "runAsUser:").expect("runAsUser").trim().parse().expect("a numeric uid")
}

/// The example run as a container's PID 1: a PID namespace and a mount
/// namespace with `/` read-only and a tmpfs on `/run`, the environment of
/// the image (`PATH` finds `supervisor`, `SUPERVISOR_CONFIG`), as `uid`.
struct Container {
    dir: tempfile::TempDir,
    /// `unshare`, whose exit code is the supervisor's.
    unshare: Child,
    /// PID 1, seen from outside.
    pid1: i32,
    uid: u32,
    config: String,
}

impl Container {
    fn start(uid: u32) -> Container {
        require_root("unshare makes PID and mount namespaces as root");
        let (entrypoint, _) = dockerfile();
        let dir = tempfile::Builder::new().prefix("svc").tempdir_in("/tmp").expect("tempdir");
        fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        // `supervisor` on PATH, as /usr/local/bin/supervisor in the image.
        fs::create_dir(dir.path().join("bin")).expect("mkdir");
        std::os::unix::fs::symlink(supervisor_bin(), dir.path().join("bin/supervisor")).expect("symlink");
        let config = dir.path().join("supervisor.toml");
        fs::copy(example("supervisor.toml"), &config).expect("copy the example");
        let log = fs::File::create(dir.path().join("supervisor.log")).expect("log");
        // /run as an emptyDir or `--tmpfs /run` has it: open to the user.
        let setup = "mount -t tmpfs -o mode=1777 tmpfs /run && mount -o remount,bind,ro / || exit 9; exec \"$@\"";
        let mut cmd = Command::new("unshare");
        cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child", "/bin/sh", "-c", setup, "sh"]);
        cmd.args(as_user(uid)).args(["env", "-i"]).args(image_env(dir.path(), &config)).args(&entrypoint);
        let unshare =
            cmd.stdin(Stdio::null()).stdout(log.try_clone().expect("dup")).stderr(log).spawn().expect("unshare");
        let id = unshare.id();
        let pid1 = wait_for("PID 1 under unshare", Duration::from_secs(10), || {
            fs::read_to_string(format!("/proc/{id}/task/{id}/children")).ok()?.split_whitespace().next()?.parse().ok()
        });
        Container { dir, unshare, pid1, uid, config: config.display().to_string() }
    }

    /// Runs `argv` in the container, as its user, with the image's
    /// environment (what `docker exec` and exec probes do).
    fn exec(&self, argv: &[String]) -> Output {
        Command::new("nsenter")
            .args(["--target", &self.pid1.to_string(), "--pid", "--mount", "--"])
            .args(as_user(self.uid))
            .args(["env", "-i"])
            .args(image_env(self.dir.path(), Path::new(&self.config)))
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .expect("nsenter")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("supervisor.log")).unwrap_or_default()
    }

    /// `docker stop`: TERM to PID 1, then its exit code.
    fn stop(&mut self) -> i32 {
        kill(Pid::from_raw(self.pid1), Signal::SIGTERM).expect("TERM to PID 1");
        let status =
            wait_for("the container to exit", Duration::from_secs(30), || self.unshare.try_wait().expect("wait"));
        status.code().unwrap_or(-1)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.unshare.try_wait().ok().flatten().is_none() {
            let _ = kill(Pid::from_raw(self.pid1), Signal::SIGKILL);
            let _ = self.unshare.wait();
        }
    }
}

/// `setpriv` to `uid` (its gid the same), or nothing for root.
fn as_user(uid: u32) -> Vec<String> {
    if uid == 0 {
        return Vec::new();
    }
    let id = uid.to_string();
    ["setpriv", &format!("--reuid={id}"), &format!("--regid={id}"), "--clear-groups", "--"].map(String::from).to_vec()
}

/// The image's environment, for `env -i`.
fn image_env(dir: &Path, config: &Path) -> Vec<String> {
    vec![
        format!("PATH={}/bin:/usr/local/bin:/usr/bin:/bin", dir.display()),
        format!("SUPERVISOR_CONFIG={}", config.display()),
    ]
}

fn shown(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn check_config_accepts_the_container_example() {
    let out = Command::new(supervisor_bin()).arg("-c").arg(example("supervisor.toml")).arg("check-config").output();
    let out = out.expect("supervisor");
    assert!(out.status.success(), "{}", shown(&out));
}

#[test]
fn the_probes_of_pod_yaml_and_nomad_hcl_are_what_a_yaml_reader_and_the_docs_expect() {
    let pod = pod_probes();
    let names: Vec<&str> = pod.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["startupProbe", "readinessProbe", "livenessProbe"]);
    assert_eq!(pod_probes_by_yaml(), pod, "the line reading and the YAML parser agree");
    assert_eq!(pod[1].1[..3], ["supervisor", "wait", "--ready"]);
    assert_eq!(pod[2].1[..2], ["supervisor", "status"]);
    let nomad = nomad_checks();
    let names: Vec<&str> = nomad.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["ready", "alive"]);
    assert!(nomad[0].1[2].starts_with("supervisor wait --ready"), "{nomad:?}");
    assert!(nomad[1].1[2].starts_with("supervisor status"), "{nomad:?}");
    let (entrypoint, config) = dockerfile();
    assert_eq!(entrypoint, ["supervisor", "run"]);
    assert!(config.starts_with('/'), "{config}");
}

/// Runs the example as PID 1 as `uid`, waits until it is ready, runs
/// every probe (each must pass), and stops it as `docker stop` does.
fn run_the_example_and_probe_it(uid: u32) {
    let mut c = Container::start(uid);
    let wait: Vec<String> = ["supervisor", "wait", "--ready", "--timeout", "30s"].map(String::from).to_vec();
    // Until the supervisor answers on its socket (seen through PID 1's
    // root), then until it is ready.
    let socket = format!("/proc/{}/root{}/run/control.sock", c.pid1, runtime_dir());
    let log = c.dir.path().join("supervisor.log");
    wait_for("the supervisor to answer", Duration::from_secs(10), || {
        if let Ok(Some(status)) = c.unshare.try_wait() {
            panic!("the container ended ({status}): {}", fs::read_to_string(&log).unwrap_or_default());
        }
        std::os::unix::net::UnixStream::connect(&socket).ok()
    });
    let out = c.exec(&wait);
    assert!(out.status.success(), "not ready: {}\n{}", shown(&out), c.log());
    let owner = fs::metadata(format!("/proc/{}", c.pid1)).map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    assert_eq!(owner.ok(), Some(uid), "PID 1's user");
    let read_only = ["sh", "-c", "test ! -w / && test -w /run"].map(String::from).to_vec();
    assert!(c.exec(&read_only).status.success(), "/ is read-only, /run is not");
    let probes = [pod_probes(), nomad_checks()].concat();
    for (name, argv) in &probes {
        let out = c.exec(argv);
        assert_eq!(out.status.code(), Some(0), "{name} {argv:?}: {}\n{}", shown(&out), c.log());
    }
    // A probe says why when it fails: db stopped takes web down with it.
    let stop_db = ["supervisor", "stop", "db"].map(String::from).to_vec();
    assert!(c.exec(&stop_db).status.success(), "{}", c.log());
    for (name, argv) in &probes {
        let out = c.exec(argv);
        assert_ne!(out.status.code(), Some(0), "{name} {argv:?} passes with db stopped: {}", shown(&out));
    }
    let start_db = ["supervisor", "start", "db", "web"].map(String::from).to_vec();
    assert!(c.exec(&start_db).status.success(), "{}", c.log());
    assert_eq!(c.stop(), 0, "{}", c.log());
    let log = c.log();
    assert!(log.contains("supervisor app (pid 1) starting 3 service(s)"), "{log}");
    assert!(log.contains("exits with code 0"), "{log}");
}

#[test]
fn the_example_as_pid1_as_root_on_a_read_only_root_passes_its_probes() {
    run_the_example_and_probe_it(0);
}

#[test]
fn the_example_as_pid1_as_the_pods_user_passes_its_probes() {
    run_the_example_and_probe_it(pod_user());
}
