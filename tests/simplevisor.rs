//! simplevisor configuration files: `-c FILE` reads them as they are,
//! `convert FILE` prints the TOML equivalent, and the services they
//! describe run.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::{alive, helper, read_pid, stop_supervisor, supervisor_bin, wait_for};

/// The seed's first example, exactly as its document shows it.
const HTTPD: &str = "<entry>
    type = service
    name = httpd
    expected = stopped
    control = /sbin/service httpd
</entry>
";

/// The seed's second example, exactly as its document shows it.
const CUSTOM1: &str = "<entry>
    type = service
    name = custom1
    start = /path/to/script --conf /path/to/conf --daemon
    # If you cannot provide a status or stop command you can specify a
    # pattern which will be used to look for the process in the process
    # table, however this is supported only on Linux.
    # If not specified start command is used as pattern.
    pattern = /path/to/script --conf /path/to/conf --daemon
</entry>
";

/// A simplevisor file in a temporary directory, named after it (so that
/// its supervisor's name and runtime directory are its own).
struct Instance {
    dir: tempfile::TempDir,
    config: PathBuf,
    name: String,
    supervisor: Option<Child>,
}

impl Instance {
    /// `text` (with `HELPER` replaced by the helper's path and `DIR` by
    /// the temporary directory) as `DIR/NAME.conf`.
    fn new(text: &str) -> Instance {
        let dir = tempfile::Builder::new().prefix("svsv").tempdir_in("/tmp").expect("tempdir");
        let name = dir.path().file_name().expect("name").to_string_lossy().into_owned();
        let config = dir.path().join(format!("{name}.conf"));
        let d = dir.path().display().to_string();
        fs::write(&config, text.replace("HELPER", &helper()).replace("DIR", &d)).expect("write config");
        Instance { dir, config, name, supervisor: None }
    }

    /// Writes another file in the directory.
    fn write(&self, file: &str, text: &str) {
        fs::write(self.dir.path().join(file), text).expect("write");
    }

    /// The runtime directory: `/run/supervisor/NAME` for root, otherwise
    /// in the temporary directory (through `XDG_RUNTIME_DIR`).
    fn runtime_dir(&self) -> PathBuf {
        if nix::unistd::geteuid().is_root() {
            PathBuf::from("/run/supervisor").join(&self.name)
        } else {
            self.dir.path().join("supervisor").join(&self.name)
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(supervisor_bin());
        cmd.env("XDG_RUNTIME_DIR", self.dir.path()).stdin(Stdio::null());
        cmd
    }

    /// `supervisor ARGS...` (without `-c`): exit code, stdout, stderr.
    fn run_bare(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.command().args(args).output().expect("run supervisor");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
    }

    /// `supervisor -c CONFIG ARGS...`.
    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let config = self.config.display().to_string();
        let mut all = vec!["-c", config.as_str()];
        all.extend_from_slice(args);
        self.run_bare(&all)
    }

    /// `supervisor -c CONFIG run` in the foreground, until it answers.
    fn start(&mut self) {
        let log = fs::File::create(self.dir.path().join("supervisor.stderr")).expect("log");
        let child = self
            .command()
            .arg("-c")
            .arg(&self.config)
            .arg("run")
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn supervisor");
        self.supervisor = Some(child);
        let socket = self.runtime_dir().join("run/control.sock");
        wait_for("the supervisor to answer", Duration::from_secs(10), || {
            if let Some(Ok(Some(st))) = self.supervisor.as_mut().map(Child::try_wait) {
                panic!("supervisor exited early ({st}): {}", self.log());
            }
            std::os::unix::net::UnixStream::connect(&socket).ok()
        });
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("supervisor.stderr")).unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = self.supervisor.take() {
            stop_supervisor(&mut child);
        }
        if nix::unistd::geteuid().is_root() {
            let _ = fs::remove_dir_all(self.runtime_dir());
        }
    }
}

#[test]
fn check_config_reads_the_seeds_examples_as_written() {
    let f = Instance::new(&format!("{HTTPD}\n{CUSTOM1}"));
    let (code, out, err) = f.cli(&["check-config"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn check_config_reads_a_supervisor_tree_with_an_include() {
    // As simplevisor's own examples: simplevisor.conf.example includes
    // the services, which include other_service.conf.
    let f = Instance::new(
        "<simplevisor>
    # file used to store the status
    store = /var/cache/simplevisor/simplevisor.json
    interval = 120
    log = stdout
    loglevel = info
</simplevisor>

<<include simplevisor.services>>
",
    );
    f.write(
        "simplevisor.services",
        &format!(
            "<entry>
    type = supervisor
    name = svisor1
    window = 12
    adjustments = 3
    strategy = one_for_one
    <children>
{HTTPD}        <<include other_service.conf>>
    </children>
</entry>
"
        ),
    );
    f.write("other_service.conf", CUSTOM1);
    let (code, out, err) = f.cli(&["check-config"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn errors_name_the_simplevisor_file_line_and_key() {
    let f = Instance::new(
        "<entry>
    type = service
    name = web
    colour = blue
    start = /usr/bin/web
    timeout = soon
</entry>
<<include more.conf>>
",
    );
    f.write("more.conf", "<entry>\n    type = service\n    name = db\n</entry>\n");
    let (code, _, err) = f.cli(&["check-config"]);
    assert_eq!(code, 6, "{err}");
    let path = f.config.display().to_string();
    let line = |needle: &str| {
        err.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no error with {needle}: {err}")).to_owned()
    };
    let colour = line("\"colour\"");
    assert!(colour.contains(&format!("{path}:4:5: service \"web\", key \"colour\": unknown key")), "{colour}");
    assert!(colour.contains("control, start, stop, status, restart"), "the known keys are listed: {colour}");
    assert!(line("\"timeout\"").contains(&format!("{path}:6:")));
    let more = f.dir.path().join("more.conf").display().to_string();
    assert!(line("needs start or control").contains(&format!("{more}:1:")), "{err}");
}

#[test]
fn convert_prints_toml_that_loads() {
    let f = Instance::new(&format!(
        "<simplevisor>
    interval = 30
</simplevisor>
<entry>
    type = supervisor
    name = svisor1
    strategy = rest_for_one
    <children>
{HTTPD}{CUSTOM1}        <entry>
            type = service
            name = spaced
            start = /path/to/script --conf /path/to/conf --space hello%20world start
        </entry>
    </children>
</entry>
"
    ));
    let config = f.config.display().to_string();
    let (code, toml, err) = f.run_bare(&["convert", &config]);
    assert_eq!(code, 0, "{err}");
    for expected in [
        &format!("name = \"{}\"", f.name),
        "[service.httpd]\nkind = \"external\"\ncontrol = [\"/sbin/service\", \"httpd\"]\nexpected = \"stopped\"\n\
         check_interval = \"30s\"\n",
        "start = [\"/path/to/script\", \"--conf\", \"/path/to/conf\", \"--daemon\"]\n\
         pattern = \"/path/to/script --conf /path/to/conf --daemon\"\n",
        "\"--space\", \"hello world\", \"start\"]",
        "[group.svisor1]\nservices = [\"httpd\", \"custom1\", \"spaced\"]\nstrategy = \"rest_for_one\"\n",
    ] {
        assert!(toml.contains(expected), "{expected:?} not in:\n{toml}");
    }
    // The output is a configuration of its own, and the same every time.
    let converted = f.dir.path().join(format!("{}.toml", f.name));
    fs::write(&converted, &toml).expect("write");
    let (code, out, err) = f.run_bare(&["-c", &converted.display().to_string(), "check-config"]);
    assert_eq!(code, 0, "{out}{err}\n{toml}");
    assert_eq!(f.run_bare(&["convert", &config]).1, toml);
}

#[test]
fn a_service_from_a_simplevisor_file_runs_and_is_repaired() {
    // `daemon` makes the foreground helper a daemon with a pidfile; the
    // helper's own pid file has a space in its name, given as %20.
    let mut f = Instance::new(
        "<simplevisor>
    interval = 1
</simplevisor>
<entry>
    type = supervisor
    name = svisor1
    <children>
        <entry>
            type = service
            name = worker
            start = HELPER sleep DIR/worker%20pid
            daemon = DIR/worker.pid
            timeout = 10
        </entry>
    </children>
</entry>
",
    );
    f.start();
    let pid_file = f.dir.path().join("worker pid");
    let first = wait_for("the worker to start", Duration::from_secs(15), || read_pid(&pid_file).filter(|&p| alive(p)));
    // Killed behind the supervisor's back, it is found stopped at the next
    // check (every second, simplevisor's interval) and started again.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), nix::sys::signal::Signal::SIGKILL).expect("kill");
    let second = wait_for("the worker to be started again", Duration::from_secs(15), || {
        read_pid(&pid_file).filter(|&p| p != first && alive(p))
    });
    let (code, out, err) = f.cli(&["shutdown"]);
    assert_eq!(code, 0, "{out}{err}\n{}", f.log());
    wait_for("the worker to stop", Duration::from_secs(15), || (!alive(second)).then_some(()));
}
