//! `[supervisor] metrics` and `supervisor metrics`: Prometheus' text
//! exposition, checked by the real tools (`promtool check metrics`, from
//! Debian's `prometheus`, and Python's `prometheus_client` parser, from
//! `python3-prometheus-client`; `.ci/run` installs both), with values
//! compared to what happened.

// The values compared are counts and flags: integers, exact as f64.
#![allow(clippy::float_cmp)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{supervisor_bin, wait_for, Fixture};

const T: Duration = Duration::from_secs(15);

/// A TCP port free a moment ago on the loopback address.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Sends `GET /metrics` on `stream`; the head and the body of the answer.
fn get(mut stream: impl Read + Write) -> (String, String) {
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: text/plain\r\n\r\n").expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head: {answer:?}"));
    (head.to_owned(), body.to_owned())
}

/// Scrapes `http://127.0.0.1:PORT/metrics`: checks the answer's head and
/// returns the body.
fn scrape(port: u16) -> String {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics port");
    s.set_read_timeout(Some(T)).expect("timeout");
    let (head, body) = get(s);
    check_head(&head, &body);
    body
}

fn scrape_unix(path: &Path) -> String {
    let s = UnixStream::connect(path).expect("connect to the metrics socket");
    s.set_read_timeout(Some(T)).expect("timeout");
    let (head, body) = get(s);
    check_head(&head, &body);
    body
}

fn check_head(head: &str, body: &str) {
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8"), "{head}");
    assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())), "{head}");
    assert!(head.contains("\r\nconnection: close"), "{head}");
}

/// `promtool check metrics` accepts `text` (lint included).
fn promtool_accepts(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is missing: install Debian's `prometheus` package (apt-get install prometheus), as .ci/run does"
        ),
        Err(e) => panic!("promtool: {e}"),
    };
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{text}");
}

/// The families as Python's `prometheus_client` parser reads `text`: name
/// to type and samples (`name{labels}` to value). A counter's family is
/// named without `_total`, as the parser names it.
fn python_parse(text: &str) -> BTreeMap<String, (String, BTreeMap<String, f64>)> {
    const SCRIPT: &str = r#"
import json, sys
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    sys.exit(42)
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    samples = {}
    for s in f.samples:
        labels = ",".join('%s="%s"' % (k, v) for k, v in sorted(s.labels.items()))
        samples[s.name + ("{" + labels + "}" if labels else "")] = s.value
    out[f.name] = [f.type, samples]
json.dump(out, sys.stdout)
"#;
    assert!(
        Path::new("/usr/bin/python3").exists(),
        "/usr/bin/python3 is missing: install Debian's python3 and python3-prometheus-client, as .ci/run does"
    );
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to python");
    let out = child.wait_with_output().expect("python3");
    assert_ne!(
        out.status.code(),
        Some(42),
        "Python's prometheus_client is missing: install Debian's python3-prometheus-client \
         (apt-get install python3-prometheus-client), as .ci/run does"
    );
    assert!(out.status.success(), "the parser refused the text: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the parser's JSON")
}

/// Every family, with its type, as the parser names it.
const FAMILIES: [(&str, &str); 11] = [
    ("supervisor_service_up", "gauge"),
    ("supervisor_service_ready", "gauge"),
    ("supervisor_service_restarts", "counter"),
    ("supervisor_service_last_exit_code", "gauge"),
    ("supervisor_service_state", "gauge"),
    ("supervisor_service_uptime_seconds", "gauge"),
    ("supervisor_service_transcript_bytes", "counter"),
    ("supervisor_service_transcript_dropped_bytes", "counter"),
    ("supervisor_service_health_failures", "counter"),
    ("supervisor_events", "counter"),
    ("supervisor_control_requests", "counter"),
];

/// Checks `text` with both tools and returns the samples, by
/// `name{labels}` (labels sorted), after checking every family is there
/// with its type.
fn checked(text: &str) -> BTreeMap<String, f64> {
    promtool_accepts(text);
    let families = python_parse(text);
    let mut all = BTreeMap::new();
    for (name, kind) in FAMILIES {
        let (t, samples) = families.get(name).unwrap_or_else(|| panic!("no family {name}: {families:?}"));
        assert_eq!(t, kind, "{name}");
        all.extend(samples.clone());
    }
    assert_eq!(families.len(), FAMILIES.len(), "no other family: {:?}", families.keys());
    all
}

/// One service's sample of a family (its name without the prefix).
fn value(samples: &BTreeMap<String, f64>, family: &str, service: &str) -> Option<f64> {
    samples.get(&format!("supervisor_service_{family}{{service=\"{service}\"}}")).copied()
}

#[test]
fn metrics_over_tcp_match_what_happened() {
    let port = free_port();
    let mut f = Fixture::with_supervisor_table(
        &format!("metrics = \"127.0.0.1:{port}\""),
        r#"
[service.web]
command = ["HELPER", "sleep"]
min_uptime = "100ms"

[service.chatty]
command = ["HELPER", "lines", "200", "50"]
min_uptime = "100ms"

[service.sick]
command = ["HELPER", "sleep"]
min_uptime = "100ms"
[service.sick.health]
exec = "false"
interval = "100ms"
failures = 1000

[service.idle]
command = ["HELPER", "sleep"]
expected = "stopped"
"#,
    );
    f.start();
    f.wait_state("web", "running", T);
    f.wait_state("chatty", "running", T);
    // A death by SIGKILL: one restart, and 128 + 9 as its last exit code.
    let pid = f.pid("web");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).expect("kill");
    wait_for("web to run again", T, || {
        let s = f.service("web");
        (s["state"] == "running" && s["restarts"] == 1).then_some(())
    });
    // 200 lines of 50 bytes in the transcript; 3 failed health checks.
    let transcript = f.path("rt/console/chatty.log");
    wait_for("chatty's lines in its transcript", T, || {
        (std::fs::metadata(&transcript).map_or(0, |m| m.len()) >= 10_000).then_some(())
    });
    wait_for("3 failed health checks", T, || {
        (f.service("sick")["health"]["failures_total"].as_u64()? >= 3).then_some(())
    });
    let written = std::fs::metadata(&transcript).expect("transcript").len();
    let status = f.status();

    let s = checked(&scrape(port));
    let v = |family: &str, service: &str| value(&s, family, service);
    assert_eq!(v("up", "web"), Some(1.0));
    assert_eq!(v("up", "idle"), Some(0.0));
    assert_eq!(v("ready", "web"), Some(1.0));
    assert_eq!(v("ready", "idle"), Some(0.0));
    assert_eq!(v("restarts_total", "web"), Some(1.0));
    assert_eq!(v("restarts_total", "chatty"), Some(0.0));
    assert_eq!(v("last_exit_code", "web"), Some(137.0), "killed by SIGKILL: 128 + 9");
    assert_eq!(v("last_exit_code", "idle"), None, "never exited: no sample");
    assert!(v("transcript_bytes_total", "chatty").is_some_and(|b| b >= written as f64), "{written}: {s:?}");
    assert_eq!(v("transcript_dropped_bytes_total", "chatty"), Some(0.0));
    assert!(v("health_failures_total", "sick").is_some_and(|n| n >= 3.0), "{s:?}");
    assert_eq!(v("health_failures_total", "web"), Some(0.0));
    let uptime = v("uptime_seconds", "chatty").expect("uptime");
    assert!(uptime > 0.0 && uptime < status["supervisor"]["uptime_s"].as_f64().expect("uptime") + 5.0, "{uptime}");
    assert_eq!(v("uptime_seconds", "idle"), Some(0.0));
    // The state, one-hot: 1 for the state the status shows, 0 for others.
    for svc in status["services"].as_array().expect("services") {
        let name = svc["name"].as_str().expect("a name");
        let states: Vec<(&str, f64)> = s
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix("supervisor_service_state{")?;
                let rest = rest.strip_prefix(&format!("service=\"{name}\",state=\""))?;
                Some((rest.strip_suffix("\"}")?, *v))
            })
            .collect();
        assert_eq!(states.len(), 11, "one sample per state: {states:?}");
        let on: Vec<&str> = states.iter().filter(|(_, v)| *v == 1.0).map(|(st, _)| *st).collect();
        assert_eq!(on, [svc["state"].as_str().expect("a state")], "{name}: {states:?}");
        assert!(states.iter().all(|(_, v)| *v == 0.0 || *v == 1.0));
    }

    // Control requests: each `status` is one; scrapes are not.
    let before = checked(&scrape(port))["supervisor_control_requests_total"];
    for _ in 0..3 {
        assert_eq!(f.cli_code(&["status", "web"]).0, 0);
    }
    let after = checked(&scrape(port))["supervisor_control_requests_total"];
    assert_eq!(after - before, 3.0);

    // Events: as many as `events --since-start` shows, numbered 1..=N.
    let events = checked(&scrape(port))["supervisor_events_total"] as u64;
    assert!(events >= 6, "{events}");
    let mut follow = Command::new(supervisor_bin())
        .args(["-c", &f.config.display().to_string(), "events", "--since-start", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("events");
    let out = follow.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seqs = Vec::new();
    let deadline = Instant::now() + T;
    while seqs.last() != Some(&events) {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| panic!("no event {events}; got {seqs:?}"));
        let event: Value = serde_json::from_str(&line).expect("an event");
        seqs.push(event["seq"].as_u64().expect("seq"));
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(seqs, (1..=events).collect::<Vec<_>>(), "events_total is the number of the last event");
}

#[test]
fn metrics_on_a_unix_socket_and_through_the_cli_agree() {
    // A relative path: to the configuration file's directory.
    let mut f = Fixture::with_supervisor_table(
        "metrics = \"./m.sock\"",
        "[service.web]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"100ms\"\n\
         [service.once]\ncommand = [\"HELPER\", \"exit\", \"3\"]\nrestart = \"never\"\n",
    );
    f.start();
    f.wait_state("web", "running", T);
    f.wait_state("once", "exited", T);
    let socket = f.path("m.sock");
    let http = checked(&scrape_unix(&socket));
    let (code, text, err) = f.cli_code(&["metrics"]);
    assert_eq!(code, 0, "{err}");
    let cli = checked(&text);
    assert_eq!(http.keys().collect::<Vec<_>>(), cli.keys().collect::<Vec<_>>(), "the same series");
    for (k, v) in &http {
        // What moves between the two: the clock, and the request itself.
        if !k.contains("uptime_seconds") && !k.contains("control_requests") {
            assert_eq!(cli[k], *v, "{k}");
        }
    }
    assert_eq!(value(&cli, "last_exit_code", "once"), Some(3.0));
    assert_eq!(value(&cli, "up", "once"), Some(0.0));
    // With --json: the same text in a document.
    let (code, doc, _) = f.cli_code(&["metrics", "--json"]);
    let doc: Value = serde_json::from_str(&doc).expect("a JSON document");
    assert_eq!((code, &doc["ok"], &doc["command"]), (0, &Value::from(true), &Value::from("metrics")));
    checked(doc["metrics"].as_str().expect("the text"));
    // The socket goes with the supervisor; then `metrics` says it is not
    // running (7), as other client commands do.
    assert_eq!(f.cli_code(&["shutdown"]).0, 0);
    f.wait_exit(T);
    assert!(!socket.exists(), "the metrics socket is removed at exit");
    let (code, _, err) = f.cli_code(&["metrics"]);
    assert_eq!(code, 7, "{err}");
}

#[test]
fn a_silent_client_holds_up_neither_status_nor_a_scrape() {
    let port = free_port();
    let mut f = Fixture::with_supervisor_table(
        &format!("metrics = \"{port}\""),
        "[service.web]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"100ms\"\n",
    );
    f.start();
    f.wait_state("web", "running", T);
    // Clients that connect and send nothing, or half a request, and wait
    // (the endpoint drops them after 10 s).
    let mut silent: Vec<TcpStream> =
        (0..8).map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect")).collect();
    let mut half = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    half.write_all(b"GET /metr").expect("write");
    silent.push(half);
    let started = Instant::now();
    assert_eq!(f.cli_code(&["status"]).0, 0);
    let body = scrape(port);
    assert!(body.contains("supervisor_service_up{service=\"web\"} 1"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5), "held up for {:?}", started.elapsed());
    // Nothing came to them.
    for s in &silent {
        s.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 16];
        let got = (&*s).read(&mut buf);
        assert!(matches!(&got, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "{got:?}");
    }
    // Another path, another method: 404 and 405, and the loop goes on.
    for (request, status) in [("GET / HTTP/1.1\r\n\r\n", "404"), ("PUT /metrics HTTP/1.0\r\n\r\n", "405")] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(T)).expect("timeout");
        s.write_all(request.as_bytes()).expect("write");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("read");
        assert!(answer.starts_with(&format!("HTTP/1.1 {status} ")), "{answer}");
    }
    assert_eq!(f.cli_code(&["status", "web"]).0, 0);
}

#[test]
fn a_taken_address_stops_run_and_up_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let f = Fixture::with_supervisor_table(&format!("metrics = \"{addr}\""), "");
    for command in ["run", "up"] {
        let (code, out, err) = f.cli_code(&[command]);
        assert_eq!(code, 1, "{command}: {out}{err}");
        assert!(err.contains(&format!("metrics: cannot serve {addr}")), "{command}: {err}");
    }
    // Nothing was left running.
    assert_eq!(f.cli_code(&["status"]).0, 3);
}

#[test]
fn a_bad_metrics_value_is_a_config_error_with_its_place() {
    let f = Fixture::with_supervisor_table("metrics = \"localhost\"", "");
    let (code, _, err) = f.cli_code(&["check-config"]);
    assert_eq!(code, 6, "{err}");
    // [supervisor], name, runtime_dir, log_level, then metrics on line 5.
    let place = format!("{}:5:11: key \"metrics\": expected an address", f.config.display());
    assert!(err.contains(&place), "{err}");
}

#[test]
fn the_command_has_its_man_page_and_completions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(supervisor_bin()).args(["man", "--dir"]).arg(dir.path()).output().expect("man");
    assert!(out.status.success());
    let page = std::fs::read_to_string(dir.path().join("supervisor-metrics.1")).expect("supervisor-metrics.1");
    assert!(page.contains("Prometheus"), "{page}");
    let out = Command::new(supervisor_bin()).args(["completions", "bash"]).output().expect("completions");
    assert!(String::from_utf8_lossy(&out.stdout).contains("metrics"));
}
