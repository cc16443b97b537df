//! The control socket's defences: permissions, peers of other uids,
//! malformed, oversized and silent clients.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::util::{helper, Fixture};

const T: Duration = Duration::from_secs(15);

fn connect(f: &Fixture) -> (UnixStream, BufReader<UnixStream>) {
    let s = UnixStream::connect(f.socket()).expect("connect");
    s.set_read_timeout(Some(T)).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

fn answer(r: &mut BufReader<UnixStream>) -> Value {
    let mut line = String::new();
    r.read_line(&mut line).expect("an answer");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

#[test]
fn socket_and_directory_are_private() {
    let mut f = Fixture::new("[service.x]\ncommand = [\"HELPER\", \"sleep\"]\n");
    f.start();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&f.path("rt")), 0o700);
    assert_eq!(mode(&f.path("rt/run")), 0o700);
    assert_eq!(mode(&f.socket()), 0o600);
}

#[test]
fn malformed_and_oversized_requests_get_errors_and_service_goes_on() {
    let mut f = Fixture::new("[service.x]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"100ms\"\n");
    f.start();
    let pid = f.wait_state("x", "running", T)["pid"].clone();
    // A silent client that never sends a byte must not stall anybody.
    let _silent = UnixStream::connect(f.socket()).unwrap();
    // Nor one that sends half a line and stops.
    let mut half = UnixStream::connect(f.socket()).unwrap();
    half.write_all(b"{\"id\":1,\"cmd\":\"sta").unwrap();

    let (mut w, mut r) = connect(&f);
    w.write_all(b"this is not json\n").unwrap();
    let a = answer(&mut r);
    assert_eq!(a["ok"], false);
    assert_eq!(a["error"]["code"], "bad_request");

    w.write_all(b"{\"id\":42,\"cmd\":\"explode\"}\n").unwrap();
    let a = answer(&mut r);
    assert_eq!(a["id"], 42, "the id comes back even on errors");
    assert_eq!(a["error"]["code"], "bad_request");

    w.write_all(b"{\"id\":43,\"cmd\":\"status\",\"names\":[\"nope\"]}\n").unwrap();
    let a = answer(&mut r);
    assert_eq!((a["id"].clone(), a["error"]["code"].clone()), (Value::from(43), Value::from("unknown_service")));

    // 1 MiB without a newline, then the end of the line.
    let big = vec![b'x'; 1024 * 1024];
    w.write_all(&big).unwrap();
    w.write_all(b"\n").unwrap();
    let a = answer(&mut r);
    assert_eq!(a["error"]["code"], "too_large");

    // The same connection still works, ids and all.
    w.write_all(b"{\"id\":\"after\",\"cmd\":\"ping\"}\n").unwrap();
    let a = answer(&mut r);
    assert_eq!(a["id"], "after");
    assert_eq!(a["ok"], true);
    assert_eq!(a["status"]["supervisor"]["name"], "t");

    // And so do other clients, and the CLI.
    assert_eq!(f.cli_code(&["status", "x"]).0, 0);
    drop(half);
    let s = f.service("x");
    assert_eq!((s["state"].as_str(), &s["pid"]), (Some("running"), &pid), "the service was not disturbed");
}

#[test]
fn many_requests_on_one_line_each_get_their_answer() {
    let mut f = Fixture::new("[service.x]\ncommand = [\"HELPER\", \"sleep\"]\n");
    f.start();
    let (mut w, mut r) = connect(&f);
    let mut batch = String::new();
    for i in 0..20 {
        batch.push_str(&format!("{{\"id\":{i},\"cmd\":\"status\"}}\n"));
    }
    w.write_all(batch.as_bytes()).unwrap();
    for i in 0..20 {
        assert_eq!(answer(&mut r)["id"], i);
    }
}

#[test]
fn a_peer_of_another_uid_is_refused() {
    crate::util::require_root("to connect as other uids");
    // Allowing uid 4242 opens the socket file to everyone, so that
    // SO_PEERCRED alone decides: 4242 is served, 4343 is refused.
    let mut f =
        Fixture::with_supervisor_table("allow_uids = [4242]", "[service.x]\ncommand = [\"HELPER\", \"sleep\"]\n");
    std::fs::set_permissions(f.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    f.start();
    let ask = |uid: u32| {
        let mut child = Command::new(helper())
            .args(["connect-as", &uid.to_string(), &f.socket().display().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"{\"id\":1,\"cmd\":\"status\"}\n").unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let refused = ask(4343);
    let v: Value = serde_json::from_str(&refused).unwrap_or_else(|e| panic!("{e}: {refused:?}"));
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["code"], "permission_denied");
    assert_eq!(v["error"]["message"], "permission denied: uid 4343 is not allowed");
    assert!(v.get("status").is_none(), "nothing else is revealed");

    let served = ask(4242);
    let v: Value = serde_json::from_str(&served).unwrap_or_else(|e| panic!("{e}: {served:?}"));
    assert_eq!(v["ok"], true, "{served}");
    assert_eq!(v["status"]["services"][0]["name"], "x");
    assert!(f.log().contains("refused peer uid 4343"), "{}", f.log());
    assert_eq!(f.cli_code(&["status"]).0, 0, "root still served");
}
