//! The endpoint on real sockets, with the engine turned by the test
//! thread while clients run in others.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;

use super::*;

const T: Duration = Duration::from_secs(10);

/// Turns `engine` until `client` has finished; its result.
fn serve<R: Send + 'static>(engine: &mut Engine, client: impl FnOnce() -> R + Send + 'static) -> R {
    let handle: JoinHandle<R> = std::thread::spawn(client);
    let deadline = Instant::now() + T;
    while !handle.is_finished() {
        assert!(Instant::now() < deadline, "the client did not finish");
        engine.turn(Some(Duration::from_millis(20))).expect("a turn");
    }
    handle.join().expect("the client")
}

/// Sends `request` and reads the answer to its end.
fn exchange(mut s: impl Read + Write, request: &[u8]) -> String {
    s.write_all(request).expect("write");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read");
    answer
}

fn tcp(addr: &MetricsAddr) -> TcpStream {
    let MetricsAddr::Tcp(a) = addr else { panic!("not TCP: {addr}") };
    let s = TcpStream::connect(a).expect("connect");
    s.set_read_timeout(Some(T)).expect("timeout");
    s
}

fn engine_on(addr: &str) -> (Engine, MetricsAddr) {
    let mut engine = Engine::new("metrics-test").expect("engine");
    let bound = engine.serve_metrics(&addr.parse().expect("an address")).expect("bound");
    (engine, bound)
}

#[test]
fn a_scrape_over_tcp_gets_the_exposition() {
    let (mut engine, addr) = engine_on("127.0.0.1:0");
    assert!(matches!(addr, MetricsAddr::Tcp(a) if a.port() != 0), "{addr}");
    let a = addr.clone();
    let answer = serve(&mut engine, move || exchange(tcp(&a), b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), "{head}");
    assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())), "{head}");
    assert!(head.contains("\r\nConnection: close"), "{head}");
    assert!(body.contains("# TYPE supervisor_events_total counter\nsupervisor_events_total 0\n"), "{body}");
    let a = addr.clone();
    let answer = serve(&mut engine, move || exchange(tcp(&a), b"HEAD /metrics HTTP/1.0\r\n\r\n"));
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("\r\n\r\n"), "no body: {answer}");
}

#[test]
fn other_requests_get_their_codes() {
    let (mut engine, addr) = engine_on("127.0.0.1:0");
    for (request, status) in [
        (&b"GET / HTTP/1.1\r\n\r\n"[..], "404"),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", "405"),
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n", "400"),
        (b"GET /metrics HTTP/3.0\r\n\r\n", "505"),
        (&[b'A'; MAX_HEAD + 100][..], "431"),
    ] {
        let a = addr.clone();
        let request = request.to_vec();
        let answer = serve(&mut engine, move || exchange(tcp(&a), &request));
        assert!(answer.starts_with(&format!("HTTP/1.1 {status} ")), "{status}: {answer}");
    }
}

#[test]
fn a_silent_client_holds_nobody_up_and_times_out() {
    let (mut engine, addr) = engine_on("127.0.0.1:0");
    let silent = tcp(&addr);
    // Half a request, then nothing.
    (&silent).write_all(b"GET /metr").expect("write");
    let a = addr.clone();
    let answer = serve(&mut engine, move || exchange(tcp(&a), b"GET /metrics HTTP/1.1\r\n\r\n"));
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    // Its deadline is the engine's next one: it is dropped then.
    let deadline = engine.next_deadline().expect("the silent client's deadline");
    assert!(deadline <= Instant::now() + CLIENT_TIMEOUT, "{deadline:?}");
}

#[test]
fn clients_beyond_the_limit_are_told_to_come_back() {
    let (mut engine, addr) = engine_on("127.0.0.1:0");
    let waiting: Vec<TcpStream> = (0..MAX_CLIENTS).map(|_| tcp(&addr)).collect();
    // Connected (in the listener's queue): one turn accepts them all.
    engine.turn(Some(Duration::ZERO)).expect("a turn");
    let a = addr.clone();
    let answer = serve(&mut engine, move || {
        let mut s = tcp(&a);
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    });
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    drop(waiting);
}

#[test]
fn a_unix_socket_is_served_replaced_when_stale_and_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.sock");
    // A stale socket (nobody serves it) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("stale"));
    let (mut engine, addr) = engine_on(&path.display().to_string());
    assert_eq!(addr, MetricsAddr::Unix(path.clone()));
    // A second server on the same path is refused, naming it.
    let mut other = Engine::new("other").expect("engine");
    let err = other.serve_metrics(&addr).expect_err("in use").to_string();
    assert!(err.contains(&path.display().to_string()) && err.contains("another process"), "{err}");
    let p = path.clone();
    let answer = serve(&mut engine, move || {
        let s = UnixStream::connect(&p).expect("connect");
        s.set_read_timeout(Some(T)).expect("timeout");
        exchange(s, b"GET /metrics HTTP/1.1\r\n\r\n")
    });
    assert!(answer.starts_with("HTTP/1.1 200 OK") && answer.contains("supervisor_service_up"), "{answer}");
    drop(engine);
    assert!(!path.exists(), "its socket goes with it");
    // Never a file of another kind.
    std::fs::write(&path, "precious").expect("write");
    let err = Engine::new("x").expect("engine").serve_metrics(&addr).expect_err("a file").to_string();
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).expect("kept"), "precious");
}

#[test]
fn a_bind_failure_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = MetricsAddr::Tcp(taken.local_addr().expect("addr"));
    let err = Engine::new("x").expect("engine").serve_metrics(&addr).expect_err("in use").to_string();
    assert!(err.contains(&addr.to_string()), "{err}");
}

#[test]
fn a_large_answer_is_written_as_the_client_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.sock");
    let (mut engine, _) = engine_on(&path.display().to_string());
    for n in 0..500 {
        let mut svc = crate::Service::new(format!("s{n}"), crate::Command::argv(["true"]));
        svc.expected = crate::Expected::Stopped;
        engine.add_service(svc).expect("add");
    }
    let expected = engine.metrics().len();
    // More than a Unix socket's buffer (about 200 kB): the answer cannot
    // go out in one write, and the rest waits for the client to read.
    assert!(expected > 400_000, "{expected}");
    let s = UnixStream::connect(&path).expect("connect");
    s.set_read_timeout(Some(T)).expect("timeout");
    (&s).write_all(b"GET /metrics HTTP/1.1\r\n\r\n").expect("write");
    // The engine turns (and answers) before the client reads anything.
    engine.turn(Some(Duration::ZERO)).expect("a turn");
    let answer = serve(&mut engine, move || {
        let mut answer = Vec::new();
        (&s).read_to_end(&mut answer).expect("read");
        answer
    });
    let text = String::from_utf8(answer).expect("utf-8");
    let (_, body) = text.split_once("\r\n\r\n").expect("a head");
    assert_eq!(body.len(), expected);
}
