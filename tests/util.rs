//! Test fixtures: a temporary directory with a configuration, the
//! `supervisor` binary running on it, and waiting with deadlines.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The directory holding the workspace's binaries (`target/debug`).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/tests-HASH -> target/debug
    exe.parent().and_then(Path::parent).expect("target dir").to_path_buf()
}

fn binary(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(p.exists(), "{} is missing: run `cargo build --workspace` before the tests (.ci/run does)", p.display());
    p
}

/// The `supervisor` binary.
pub fn supervisor_bin() -> PathBuf {
    binary("supervisor")
}

/// The `sv-test-helper` binary.
pub fn helper() -> String {
    binary("sv-test-helper").display().to_string()
}

/// Waits until `f` returns `Some`, polling every 10 ms, or panics with
/// `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Fails unless the tests run as root (`.ci/run` does): a test that
/// cannot run here is a failure that says so, never a silent pass.
pub fn require_root(why: &str) {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root ({why}); run the suite as root, as .ci/run does");
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Reads a pid written by the helper.
pub fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A temporary instance: its directory, configuration and supervisor.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub supervisor: Option<Child>,
}

impl Fixture {
    /// A configuration made of `services` (TOML, with `HELPER` replaced by
    /// the helper's path and `DIR` by the temporary directory) below a
    /// `[supervisor]` table that puts the runtime directory inside it.
    pub fn new(services: &str) -> Fixture {
        Self::with_supervisor_table("", services)
    }

    /// As [`Fixture::new`], with extra keys for `[supervisor]`.
    pub fn with_supervisor_table(extra: &str, services: &str) -> Fixture {
        let dir = tempfile::Builder::new().prefix("sv").tempdir_in("/tmp").expect("tempdir");
        let d = dir.path().display().to_string();
        let text = format!(
            "[supervisor]\nname = \"t\"\nruntime_dir = \"{d}/rt\"\nlog_level = \"debug\"\n{}\n{}",
            extra.replace("DIR", &d),
            services.replace("HELPER", &helper()).replace("DIR", &d)
        );
        let config = dir.path().join("t.toml");
        fs::write(&config, text).expect("write config");
        Fixture { dir, config, supervisor: None }
    }

    /// A path in the temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.path("rt/run/control.sock")
    }

    /// Runs `supervisor -c CONFIG ARGS...` to completion.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(supervisor_bin())
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run supervisor")
    }

    /// Runs a command and returns (exit code, stdout, stderr).
    pub fn cli_code(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cli(args);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts `supervisor run` in the foreground (its log goes to
    /// `supervisor.stderr`) and waits until it answers.
    pub fn start(&mut self) {
        self.start_with_ulimit("");
    }

    /// As [`Fixture::start`], with the shell's `ulimit` options (`-Sn 64`)
    /// applied to the supervisor first.
    pub fn start_with_ulimit(&mut self, ulimit: &str) {
        let script =
            if ulimit.is_empty() { "exec \"$@\"".to_string() } else { format!("ulimit {ulimit} && exec \"$@\"") };
        self.start_with_shell(&script);
    }

    /// As [`Fixture::start`], with the supervisor's command line run by
    /// the shell `script` as `"$@"` (to set limits, users or the
    /// environment first).
    pub fn start_with_shell(&mut self, script: &str) {
        let log = fs::File::create(self.path("supervisor.stderr")).expect("log");
        let child = Command::new("/bin/sh")
            .args(["-c", script, "sh"])
            .arg(supervisor_bin())
            .arg("-c")
            .arg(&self.config)
            .arg("run")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn supervisor");
        self.supervisor = Some(child);
        let socket = self.socket();
        wait_for("the supervisor to answer", Duration::from_secs(10), || {
            if let Some(Ok(Some(st))) = self.supervisor.as_mut().map(Child::try_wait) {
                panic!("supervisor exited early ({st}): {}", self.log());
            }
            std::os::unix::net::UnixStream::connect(&socket).ok()
        });
    }

    /// What the foreground supervisor logged.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(self.path("supervisor.stderr")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// `status --json`, parsed.
    pub fn status(&self) -> Value {
        let out = self.cli(&["status", "--json"]);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json: {e}: {}", String::from_utf8_lossy(&out.stderr)))
    }

    /// The pid of a service's main process.
    pub fn pid(&self, name: &str) -> i32 {
        self.service(name)["pid"].as_i64().unwrap_or_else(|| panic!("{name} has no pid")) as i32
    }

    /// One service's status object.
    pub fn service(&self, name: &str) -> Value {
        let st = self.status();
        st["services"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no service {name} in {st}"))
    }

    /// Waits until a service is in `state`, and returns its status.
    pub fn wait_state(&self, name: &str, state: &str, limit: Duration) -> Value {
        wait_for(&format!("{name} to be {state}"), limit, || {
            let s = self.service(name);
            (s["state"] == state).then_some(s)
        })
    }

    /// Waits for the foreground supervisor to exit; returns its code.
    pub fn wait_exit(&mut self, limit: Duration) -> i32 {
        let child = self.supervisor.as_mut().expect("supervisor started");
        let st = wait_for("the supervisor to exit", limit, || child.try_wait().expect("try_wait"));
        self.supervisor = None;
        st.code().unwrap_or(-1)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(mut child) = self.supervisor.take() {
            stop_supervisor(&mut child);
        }
    }
}

/// Stops a supervisor started by a test: SIGTERM (a graceful stop takes
/// its services with it), then SIGKILL if it is still there after 20 s.
pub fn stop_supervisor(child: &mut Child) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The state letter of a process in `/proc/PID/stat` (`S`, `T`, `Z`...).
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

/// Writes an executable `#!/bin/sh` script (its directory made if needed).
pub fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}
