//! zdaemon's configuration files and command line, on real processes: the
//! configurations are written as zdaemon's documentation shows them.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::util::{alive, supervisor_bin, wait_for, write_script};

const T: Duration = Duration::from_secs(15);

/// A directory to run zdaemon-style commands in, with a `conf` file.
struct Zd {
    dir: tempfile::TempDir,
    /// Arguments that name the instance for clean-up (`-Cconf` or `-p ...`).
    stop_args: Vec<String>,
}

impl Zd {
    fn new() -> Zd {
        let dir = tempfile::Builder::new().prefix("zd").tempdir_in("/tmp").expect("tempdir");
        Zd { dir, stop_args: vec!["-Cconf".into()] }
    }

    /// Writes `conf`, with `DIR` replaced by the directory.
    fn conf(&self, text: &str) {
        fs::write(self.path("conf"), text.replace("DIR", &self.dir.path().display().to_string())).unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `supervisor ARGS...` in the directory, with `stdin` as its input.
    fn run_with(&self, args: &[&str], stdin: &str) -> (i32, String, String) {
        let mut child = Command::new(supervisor_bin())
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("SUPERVISOR_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run supervisor");
        // A command that reads no input may exit before it is written.
        match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.unwrap(),
        }
        let out: Output = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_with(args, "")
    }

    /// Runs a command that must succeed; returns its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "supervisor {args:?}: {out}{err}");
        out
    }
}

impl Drop for Zd {
    fn drop(&mut self) {
        let args: Vec<&str> = self.stop_args.iter().map(String::as_str).chain(["stop"]).collect();
        let _ = self.run(&args);
    }
}

/// The pid in "... pid=N".
fn pid_in(text: &str) -> i32 {
    let at = text.find("pid=").unwrap_or_else(|| panic!("no pid in {text:?}"));
    text[at + 4..].trim().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline")).map(|b| String::from_utf8_lossy(&b).replace('\0', " ")).unwrap_or_default()
}

fn wait_gone(pid: i32) {
    wait_for(&format!("process {pid} to end"), T, || (!alive(pid)).then_some(()));
}

#[test]
fn the_documented_session_start_status_stop() {
    let zd = Zd::new();
    zd.conf("\n<runner>\n  program sleep 100\n  socket-name DIR/demo.zdsock\n</runner>\n");
    let out = zd.ok(&["-Cconf", "start"]);
    assert!(out.contains("daemon process started, pid="), "{out}");
    let pid = pid_in(&out);
    assert_eq!(cmdline(pid).trim(), "sleep 100");
    assert!(zd.path("demo.zdsock").exists(), "socket-name is where clients connect");
    let out = zd.ok(&["-Cconf", "status"]);
    assert_eq!(out, format!("program running; pid={pid}\n"));
    let (code, out, _) = zd.run(&["-Cconf", "start"]);
    assert_eq!((code, out), (0, format!("daemon process already running; pid={pid}\n")));
    let out = zd.ok(&["-Cconf", "restart"]);
    assert!(out.starts_with("daemon process restarted, pid="), "{out}");
    wait_gone(pid);
    let pid = pid_in(&out);
    assert_eq!(zd.ok(&["-Cconf", "status"]), format!("program running; pid={pid}\n"));
    assert_eq!(zd.ok(&["-Cconf", "stop"]), "daemon process stopped\n");
    wait_gone(pid);
    let (code, out, _) = zd.run(&["-Cconf", "status"]);
    assert_eq!((code, out.as_str()), (3, "daemon manager not running\n"), "LSB: not running");
    assert!(!zd.path("demo.zdsock").exists(), "the socket goes with the supervisor");
    assert_eq!(zd.ok(&["-Cconf", "stop"]), "daemon manager not running\n");
}

#[test]
fn arguments_after_start_are_appended_to_the_program() {
    let zd = Zd::new();
    zd.conf("\n<runner>\n  program sleep\n  socket-name DIR/demo.zdsock\n</runner>\n");
    let pid = pid_in(&zd.ok(&["-Cconf", "start", "100"]));
    assert_eq!(cmdline(pid).trim(), "sleep 100");
    assert_eq!(zd.ok(&["-Cconf", "status"]), format!("program running; pid={pid}\n"));
    // The program can be restarted with the same arguments.
    let (code, out, err) = zd.run(&["-Cconf", "kill"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, format!("signal SIGTERM sent to process {pid}\n"));
    wait_gone(pid);
    let again = wait_for("the program to be restarted", T, || {
        let (_, out, _) = zd.run(&["-Cconf", "status"]);
        out.starts_with("program running").then(|| pid_in(&out)).filter(|p| *p != pid)
    });
    assert_eq!(cmdline(again).trim(), "sleep 100");
    zd.ok(&["-Cconf", "stop"]);
    wait_gone(again);
}

#[test]
fn ad_hoc_program_with_p() {
    let mut zd = Zd::new();
    zd.stop_args = vec!["-p".into(), "sleep 100".into()];
    let out = zd.ok(&["-p", "sleep 100", "start"]);
    let pid = pid_in(&out);
    assert_eq!(cmdline(pid).trim(), "sleep 100");
    assert!(fs::symlink_metadata(zd.path("zdsock")).is_ok(), "zdaemon's default socket: zdsock here");
    assert_eq!(zd.ok(&["-p", "sleep 100", "status"]), format!("program running; pid={pid}\n"));
    // The long options, and the socket named with -s, reach the same one.
    let socket = zd.path("zdsock").display().to_string();
    assert_eq!(
        zd.ok(&["--program", "sleep 100", "--socket-name", &socket, "status"]),
        format!("program running; pid={pid}\n")
    );
    assert_eq!(zd.ok(&["-p", "sleep 100", "stop"]), "daemon process stopped\n");
    wait_gone(pid);
    let (code, out, _) = zd.run(&["-p", "sleep 100", "status"]);
    assert_eq!((code, out.as_str()), (3, "daemon manager not running\n"));
    assert!(fs::symlink_metadata(zd.path("zdsock")).is_err());
}

#[test]
fn ad_hoc_socket_elsewhere_with_s() {
    let mut zd = Zd::new();
    fs::create_dir(zd.path("run")).unwrap();
    zd.stop_args = vec!["-p".into(), "sleep 100".into(), "-s".into(), "run/ctl".into()];
    let pid = pid_in(&zd.ok(&["-p", "sleep 100", "-s", "run/ctl", "start"]));
    assert!(fs::symlink_metadata(zd.path("run/ctl")).is_ok());
    assert!(fs::symlink_metadata(zd.path("zdsock")).is_err());
    let (code, out, _) = zd.run(&["-p", "sleep 100", "status"]);
    assert_eq!((code, out.as_str()), (3, "daemon manager not running\n"), "another socket, another instance");
    assert_eq!(zd.ok(&["-p", "sleep 100", "-s", "run/ctl", "status"]), format!("program running; pid={pid}\n"));
    zd.ok(&["-p", "sleep 100", "-s", "run/ctl", "stop"]);
    wait_gone(pid);
}

#[test]
fn fg_runs_the_program_with_its_environment() {
    let zd = Zd::new();
    zd.conf(
        "\n<runner>\n  program env\n  socket-name DIR/demo.zdsock\n</runner>\n\
         <environment>\n  LD_LIBRARY_PATH /home/foo/lib\n  HOME /home/foo\n</environment>\n",
    );
    let (code, out, err) = zd.run(&["-Cconf", "fg"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(err, "env\n", "the command is shown first, as zdaemon does");
    assert!(out.lines().any(|l| l == "LD_LIBRARY_PATH=/home/foo/lib"), "{out}");
    assert!(out.lines().any(|l| l == "HOME=/home/foo"), "{out}");
    // `foreground` is the same command; its arguments go to the program.
    let (code, out, _) = zd.run(&["-Cconf", "foreground", "-u", "HOME"]);
    assert_eq!(code, 0);
    assert!(!out.lines().any(|l| l.starts_with("HOME=")), "{out}");
    // The exit code is the program's.
    let (code, out, err) = zd.run(&["-p", "echo hello world", "fg"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "hello world\n", "echo hello world\n"));
    assert_eq!(zd.run(&["-p", "false", "fg"]).0, 1);
}

#[test]
fn transcript_and_reopen_transcript() {
    let zd = Zd::new();
    fs::write(zd.path("data"), "rec 1\n").unwrap();
    zd.conf("\n<runner>\n  program tail -f data\n  transcript log\n</runner>\n");
    let pid = pid_in(&zd.ok(&["-Cconf", "start"]));
    let read = |name: &str| fs::read_to_string(zd.path(name)).unwrap_or_default();
    wait_for("rec 1 in the log", T, || (read("log") == "rec 1\n").then_some(()));
    let append = |text: &str| {
        let mut f = fs::OpenOptions::new().append(true).open(zd.path("data")).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f.sync_all().unwrap();
    };
    fs::rename(zd.path("log"), zd.path("log.1")).unwrap();
    append("rec 2\n");
    wait_for("rec 2 in the old file", T, || (read("log.1") == "rec 1\nrec 2\n").then_some(()));
    let (code, out, err) = zd.run(&["-Cconf", "reopen_transcript"]);
    assert_eq!(code, 0, "{out}{err}");
    append("rec 3\n");
    wait_for("rec 3 in the new file", T, || (read("log") == "rec 3\n").then_some(()));
    assert_eq!(read("log.1"), "rec 1\nrec 2\n");
    // logtail shows the transcript.
    assert_eq!(zd.ok(&["-Cconf", "logtail", "-n", "1"]), "rec 3\n");
    zd.ok(&["-Cconf", "stop"]);
    wait_gone(pid);
}

#[test]
fn without_a_transcript_output_is_discarded_and_logtail_shows_the_logfile() {
    let zd = Zd::new();
    fs::write(zd.path("app.log"), "one\ntwo\nthree\n").unwrap();
    zd.conf("<runner>\n  program echo lost\n  logfile app.log\n</runner>\n");
    assert_eq!(zd.ok(&["-Cconf", "logtail", "-n", "2"]), "two\nthree\n");
    let (code, out, _) = zd.run(&["-Cconf", "convert", "conf"]);
    assert_eq!(code, 0);
    assert!(out.contains("stdout = \"null\"") && out.contains("stderr = \"null\""), "{out}");
}

#[test]
fn start_test_program_and_eventlog() {
    let zd = Zd::new();
    // Passes on its third run.
    write_script(&zd.path("check"), "n=$(cat count 2>/dev/null || echo 0)\necho $((n + 1)) > count\n[ \"$n\" -ge 2 ]");
    zd.conf(
        "<runner>\n  program sleep 100\n  start-test-program DIR/check\n  start-timeout 20\n</runner>\n\
         <eventlog>\n  level debug\n  <logfile>\n    path events.log\n  </logfile>\n</eventlog>\n",
    );
    let pid = pid_in(&zd.ok(&["-Cconf", "start"]));
    assert_eq!(fs::read_to_string(zd.path("count")).unwrap(), "3\n", "start waited for the test to pass");
    let events = fs::read_to_string(zd.path("events.log")).unwrap();
    assert!(events.contains("starting 1 service(s)"), "the event log: {events}");
    zd.ok(&["-Cconf", "stop"]);
    wait_gone(pid);

    // A test that never passes: start fails after start-timeout.
    zd.conf("<runner>\n  program sleep 100\n  start-test-program false\n  start-timeout 2\n</runner>\n");
    let (code, out, err) = zd.run(&["-Cconf", "start"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("start_test /bin/sh -c false did not succeed within 2s"), "{err}");
}

#[test]
fn errors_name_the_zdaemon_file_line_and_key() {
    let zd = Zd::new();
    zd.conf("<runner>\n  program sleep 100\n  progam sleep\n  backoff-limit ten\n</runner>\n");
    let (code, _, err) = zd.run(&["-Cconf", "status"]);
    assert_eq!(code, 6);
    assert!(
        err.contains("error: conf:3: key \"progam\": unknown key; the valid keys are: program, socket-name,"),
        "{err}"
    );
    assert!(
        err.contains("error: conf:4: key \"backoff-limit\": expected a whole number of seconds, found \"ten\""),
        "{err}"
    );
    let (code, _, err) = zd.run(&["convert", "conf"]);
    assert_eq!(code, 6);
    assert!(err.contains("conf:3: key \"progam\""), "{err}");
    // One found by the TOML reader, mapped back to its zdaemon line.
    zd.conf("<runner>\n  program sleep 100\n\n  user no-such-user-xyz\n</runner>\n");
    let (code, _, err) = zd.run(&["-Cconf", "check-config"]);
    assert_eq!(code, 6);
    assert!(err.contains("conf:4: key \"user\": expected an existing user"), "{err}");
    // -p with a TOML configuration.
    fs::write(zd.path("t.toml"), "[service.a]\ncommand = \"sleep 1\"\n").unwrap();
    let (code, _, err) = zd.run(&["-c", "t.toml", "-p", "sleep 1", "status"]);
    assert_eq!(code, 6);
    assert!(err.contains("-p (--program) applies to the program of a zdaemon configuration"), "{err}");
}

#[test]
fn convert_prints_toml_that_runs_the_same() {
    let zd = Zd::new();
    zd.conf(
        "\n<runner>\n  program env\n  socket-name DIR/demo.zdsock\n</runner>\n\
         <environment>\n  LD_LIBRARY_PATH /home/foo/lib\n  HOME /home/foo\n</environment>\n",
    );
    let toml = zd.ok(&["convert", "conf"]);
    assert!(toml.starts_with("# The zdaemon configuration conf, in the TOML schema"), "{toml}");
    assert!(toml.contains("[service.program.env]"), "{toml}");
    fs::create_dir(zd.path("elsewhere")).unwrap();
    fs::write(zd.path("elsewhere/conf.toml"), &toml).unwrap();
    let out = zd.ok(&["-c", "elsewhere/conf.toml", "check-config"]);
    assert!(out.ends_with(": ok (1 services)\n"), "{out}");
    let (code, out, _) = zd.run(&["-c", "elsewhere/conf.toml", "fg"]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l == "LD_LIBRARY_PATH=/home/foo/lib"), "{out}");
    // A TOML file is printed unchanged.
    let (code, out, err) = zd.run(&["convert", "elsewhere/conf.toml"]);
    assert_eq!((code, out.as_str()), (0, toml.as_str()));
    assert!(err.contains("already a TOML configuration"), "{err}");
    // The converted file runs the same instance (same name, runtime
    // directory and socket): started from one, stopped from the other.
    zd.conf("<runner>\n  program sleep 100\n  socket-name DIR/demo.zdsock\n</runner>\n");
    fs::write(zd.path("elsewhere/conf.toml"), zd.ok(&["convert", "conf"])).unwrap();
    let pid = pid_in(&zd.ok(&["-Cconf", "start"]));
    let status = zd.ok(&["-c", "elsewhere/conf.toml", "status", "program"]);
    assert!(status.contains(&pid.to_string()) && status.contains("running"), "{status}");
    zd.ok(&["-c", "elsewhere/conf.toml", "shutdown"]);
    wait_gone(pid);
}

#[test]
fn the_shell_reads_commands_from_a_pipe() {
    let zd = Zd::new();
    zd.conf("<runner>\n  program sleep 100\n  socket-name DIR/demo.zdsock\n</runner>\n");
    let script =
        "status\n# a comment\n\nstart\nstatus\nnonsense\nkill CONT\nstatus --json\nstop\nstatus\nquit\nstatus\n";
    let (code, out, err) = zd.run_with(&["-Cconf", "shell"], script);
    assert_eq!(code, 3, "the last command's code (status: not running): {out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "daemon manager not running");
    let started = lines.iter().position(|l| l.starts_with("daemon process started, pid=")).expect(&out);
    let pid = pid_in(lines[started]);
    assert_eq!(lines[started + 1], format!("program running; pid={pid}"));
    assert_eq!(lines[started + 2], format!("signal SIGCONT sent to process {pid}"));
    assert!(out.contains("\"services\""), "status --json: {out}");
    assert!(err.contains("nonsense"), "the error is printed and the shell goes on: {err}");
    let end: Vec<&str> = lines.iter().rev().take(2).copied().collect();
    assert_eq!(end, ["daemon manager not running", "daemon process stopped"], "{out}");
    wait_gone(pid);

    // No command: zdaemon's default-to-interactive, also with -p alone.
    let (code, out, _) = zd.run_with(&["-Cconf"], "status\n");
    assert_eq!((code, out.as_str()), (3, "daemon manager not running\n"));
    let (code, out, _) = zd.run_with(&["-p", "sleep 100", "-s", "other.sock"], "status\ncheck-config\n");
    assert_eq!((code, out.as_str()), (0, "daemon manager not running\n<command line>: ok (1 services)\n"));
    zd.conf("<runner>\n  program sleep 100\n  default-to-interactive off\n</runner>\n");
    let (code, _, err) = zd.run_with(&["-Cconf"], "status\n");
    assert_eq!(code, 2, "{err}");
    // `help` lists the commands.
    let (code, out, _) = zd.run_with(&["-Cconf", "shell"], "help\n");
    assert_eq!(code, 0);
    assert!(out.contains("reopen") && out.contains("quit, exit"), "{out}");
}

#[test]
fn daemon_off_runs_in_the_foreground() {
    let zd = Zd::new();
    zd.conf("<runner>\n  program sleep 100\n  daemon off\n  socket-name DIR/demo.zdsock\n</runner>\n");
    let mut child = Command::new(supervisor_bin())
        .args(["-Cconf", "start"])
        .current_dir(zd.dir.path())
        .env_remove("SUPERVISOR_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let socket: &Path = &zd.path("demo.zdsock");
    wait_for("the supervisor to answer", T, || std::os::unix::net::UnixStream::connect(socket).ok());
    let out = zd.ok(&["-Cconf", "status"]);
    let pid = pid_in(&out);
    let sup = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let parent: i32 = sup.rsplit(')').next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(parent as u32, child.id(), "the program is a child of the `start` process itself");
    zd.ok(&["-Cconf", "stop"]);
    let status = wait_for("start to return", T, || child.try_wait().unwrap());
    assert!(status.success());
}
