//! `supervisor events`: state changes as they happen, until the
//! supervisor goes away.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{supervisor_bin, Fixture};

const T: Duration = Duration::from_secs(15);

/// `supervisor events ARGS...` with its output lines on a channel.
fn follow(f: &Fixture, args: &[&str]) -> (Child, Receiver<String>) {
    let mut child = Command::new(supervisor_bin())
        .args(["-c", &f.config.display().to_string(), "events"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Lines until `done` says the last one is enough.
fn until(rx: &Receiver<String>, mut done: impl FnMut(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + T;
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| panic!("timed out; got {lines:?}"));
        let stop = done(&line);
        lines.push(line);
        if stop {
            return lines;
        }
    }
}

fn wait_exit(child: &mut Child) -> i32 {
    let deadline = Instant::now() + T;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "events did not end with the supervisor");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn events_follow_changes_in_order_and_end_with_the_supervisor() {
    let mut f = Fixture::new(
        "[service.s]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"100ms\"\n\
         [service.t]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"100ms\"\n",
    );
    f.start();
    f.wait_state("s", "running", T);
    f.wait_state("t", "running", T);
    let (mut all, rx) = follow(&f, &["--json", "--since-start"]);
    let (mut only_t, rx_t) = follow(&f, &["t", "--since-start"]);
    // The past first: both services' starts.
    let seen = until(&rx, |l| l.contains("\"service\":\"t\"") && l.contains("\"to\":\"running\""));
    assert!(seen.iter().any(|l| l.contains("\"service\":\"s\"") && l.contains("\"to\":\"running\"")), "{seen:?}");
    // Then live changes.
    let pid = f.pid("s");
    assert_eq!(f.cli_code(&["stop", "s"]).0, 0);
    let live = until(&rx, |l| l.contains("\"to\":\"stopped\""));
    let events: Vec<Value> = seen.iter().chain(&live).map(|l| serde_json::from_str(l).unwrap()).collect();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "numbered from 1 without gaps: {events:?}");
    let stopping = events.iter().find(|e| e["to"] == "stopping").unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(
        (&stopping["service"], &stopping["from"], &stopping["pid"]),
        (&"s".into(), &"running".into(), &pid.into())
    );
    assert!(stopping["time"].as_f64().unwrap() > 1.7e9, "{stopping}");
    let stopped = events.last().unwrap();
    assert_eq!(stopped["exit"]["signal"], "TERM", "{stopped}");
    // The filtered follower saw t only, as lines for people.
    let lines = until(&rx_t, |l| l.contains("t starting -> running"));
    assert!(lines.iter().all(|l| l.contains(" t ") && l.contains(" -> ") && l.contains(" #")), "{lines:?}");
    assert_eq!(f.cli_code(&["shutdown"]).0, 0);
    assert_eq!(wait_exit(&mut all), 0);
    assert_eq!(wait_exit(&mut only_t), 0);
    f.supervisor = None;
}

#[test]
fn events_of_an_unknown_service_or_without_a_supervisor_fail() {
    let mut f = Fixture::new("[service.s]\ncommand = [\"HELPER\", \"sleep\"]\n");
    assert_eq!(f.cli_code(&["events"]).0, 7);
    f.start();
    let (code, _, err) = f.cli_code(&["events", "nosuch"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nosuch"), "{err}");
}

#[test]
fn events_end_when_their_reader_goes_away() {
    let mut f = Fixture::new("[service.s]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"100ms\"\n");
    f.start();
    f.wait_state("s", "running", T);
    // Close-on-exec: a process that another test spawns meanwhile must not
    // keep the read end open (its writes would then never fail).
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    drop(read);
    let mut child = Command::new(supervisor_bin())
        .args(["-c", &f.config.display().to_string(), "events", "--since-start"])
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The past changes are written at once, into a pipe nobody reads.
    assert_eq!(wait_exit(&mut child), 0, "a closed output is not a failure");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!err.contains("panicked"), "{err}");
}
