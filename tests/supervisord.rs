//! `supervisor run` hands the supervisor process over to `supervisord`, the
//! smaller binary of the same build, and a `supervisord` of another build
//! hands it back.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{supervisor_bin, wait_for, Fixture};

const T: Duration = Duration::from_secs(15);

fn exe_of(pid: u32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe")
}

#[test]
fn run_becomes_supervisord_and_keeps_its_pid_and_name() {
    let mut f = Fixture::new("[service.s]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"100ms\"\n");
    f.start();
    f.wait_state("s", "running", T);
    let pid = f.supervisor.as_ref().unwrap().id();
    assert_eq!(exe_of(pid).file_name().unwrap(), "supervisord");
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmdline.starts_with("supervisor: t"), "{cmdline:?}");
    assert_eq!(f.status()["supervisor"]["pid"], pid);
}

#[test]
fn a_supervisord_of_another_build_hands_back_to_supervisor() {
    let f = Fixture::new("[service.s]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"100ms\"\n");
    let daemon = supervisor_bin().with_file_name("supervisord");
    let child = Command::new(&daemon)
        .env("SUPERVISOR_CONFIG", &f.config)
        .env("SUPERVISOR_BUILD_ID", "another build")
        .env("SUPERVISOR_CLI", supervisor_bin())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn supervisord");
    // Stopped even when an assertion fails.
    let mut child = Stopped(child);
    let child_id = child.0.id();
    wait_for("the supervisor to answer", T, || std::os::unix::net::UnixStream::connect(f.socket()).ok());
    f.wait_state("s", "running", T);
    // The same process, now the `supervisor` binary running it itself.
    wait_for("the hand-back", T, || (exe_of(child_id) == supervisor_bin()).then_some(()));
    assert_eq!(f.status()["supervisor"]["pid"], child_id);
    let cmdline = std::fs::read_to_string(format!("/proc/{child_id}/cmdline")).unwrap();
    // Its name (argv[0]) is kept through the hand-back.
    assert!(cmdline.starts_with(&format!("{}\0run\0", daemon.display())), "{cmdline:?}");
    crate::util::stop_supervisor(&mut child.0);
}

/// A supervisor process stopped when the test ends, however it ends.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        crate::util::stop_supervisor(&mut self.0);
    }
}
