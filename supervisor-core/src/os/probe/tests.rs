use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::{listen, Backlog};
use proptest::prelude::*;

use super::*;
use crate::model::{Command, HttpTarget};

/// How long a test waits for a try to be decided before failing.
const PATIENCE: Duration = Duration::from_secs(10);

/// Runs a try to its end as the engine would: wait on the descriptor
/// for its interest, then advance.
fn try_probe(probe: &Probe) -> Progress {
    let mut conn = match Connection::start(probe) {
        Ok(c) => c,
        Err(decided) => {
            assert_ne!(decided, Progress::Waiting, "start never gives Err(Waiting)");
            return decided;
        }
    };
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{probe:?}: undecided after {PATIENCE:?}");
        let flags = match conn.interest() {
            Interest::Read => PollFlags::POLLIN,
            Interest::Write => PollFlags::POLLOUT,
        };
        let mut fds = [PollFd::new(conn.as_fd(), flags)];
        match poll(&mut fds, PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => panic!("poll: {e}"),
        }
        match conn.advance() {
            Progress::Waiting => {}
            decided => {
                assert_eq!(conn.advance(), decided, "a decision stays");
                return decided;
            }
        }
    }
}

/// A port on 127.0.0.1 where nothing listens (as far as can be
/// known: it was free a moment ago).
fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn http(addr: SocketAddr, path: &str) -> Probe {
    Probe::Http(HttpTarget { addr, host: addr.to_string(), path: path.to_string() })
}

/// An HTTP server for one connection: it reads the request (up to its
/// empty line), then hands the stream to `answer`; the thread gives
/// back the request.
fn serve(answer: impl FnOnce(&mut TcpStream) + Send + 'static) -> (SocketAddr, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_nodelay(true).unwrap();
        let request = read_request(&mut stream);
        answer(&mut stream);
        request
    });
    (addr, server)
}

fn read_request(stream: &mut TcpStream) -> Vec<u8> {
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => request.push(byte[0]),
            _ => break,
        }
    }
    request
}

fn failed_with(p: &Progress, words: &str) -> bool {
    matches!(p, Progress::Failed(why) if why.contains(words))
}

#[test]
fn tcp_passes_when_something_listens() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    assert_eq!(try_probe(&Probe::Tcp(addr)), Progress::Passed(format!("connected to {addr}")));
    // IPv6 where the machine has it.
    if let Ok(l6) = TcpListener::bind("[::1]:0") {
        let addr = l6.local_addr().unwrap();
        assert_eq!(try_probe(&Probe::Tcp(addr)), Progress::Passed(format!("connected to {addr}")));
    }
}

#[test]
fn tcp_fails_when_refused() {
    let addr = closed_port();
    let p = try_probe(&Probe::Tcp(addr));
    assert_eq!(p, Progress::Failed(format!("connect {addr}: connection refused")));
}

/// A connect still in progress is not mistaken for one made, however
/// often `advance` is called: a listener whose queue (backlog 0:
/// one connection) is full drops the SYNs of the next ones.
#[test]
fn a_connect_in_progress_waits_for_write() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // Listening again sets the queue's length.
    listen(&listener, Backlog::new(0).unwrap()).unwrap();
    let probe = Probe::Tcp(listener.local_addr().unwrap());
    let mut tries: Vec<Connection> = (0..3).filter_map(|_| Connection::start(&probe).ok()).collect();
    let mut pending = 0;
    for conn in &mut tries {
        let mut fds = [PollFd::new(conn.as_fd(), PollFlags::POLLOUT)];
        if poll(&mut fds, PollTimeout::from(200u16)).unwrap() == 0 {
            pending += 1;
            for _ in 0..3 {
                assert_eq!(conn.advance(), Progress::Waiting);
                assert_eq!(conn.interest(), Interest::Write);
            }
        }
    }
    assert!(pending >= 1, "a queue of one held three connections");
}

#[test]
fn unix_passes_when_something_listens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let _l = UnixListener::bind(&path).unwrap();
    let p = try_probe(&Probe::Unix(path.clone()));
    assert_eq!(p, Progress::Passed(format!("connected to unix {}", path.display())));
}

#[test]
fn unix_fails_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sock");
    let p = try_probe(&Probe::Unix(missing.clone()));
    assert_eq!(p, Progress::Failed(format!("unix {}: no such file or directory", missing.display())));
    // A file that is no socket.
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let p = try_probe(&Probe::Unix(file.clone()));
    assert_eq!(p, Progress::Failed(format!("unix {}: connection refused", file.display())));
}

/// A Unix listener whose queue is full refuses at once (`EAGAIN`),
/// rather than a socket that polls writable without being connected.
#[test]
fn unix_fails_when_the_queue_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let listener = UnixListener::bind(&path).unwrap();
    listen(&listener, Backlog::new(0).unwrap()).unwrap();
    let probe = Probe::Unix(path.clone());
    let mut outcomes: Vec<Progress> = (0..3).map(|_| try_probe(&probe)).collect();
    assert!(matches!(outcomes.remove(0), Progress::Passed(_)), "the first one is queued");
    for p in outcomes {
        assert!(failed_with(&p, "queue is full"), "{p:?}");
    }
}

#[test]
fn exec_is_not_connected_to() {
    let p = Connection::start(&Probe::Exec(Command::argv(["true"])));
    assert!(matches!(p, Err(Progress::Failed(_))), "{p:?}");
}

#[test]
fn http_200_passes_and_the_request_is_as_documented() {
    let (addr, server) = serve(|s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    });
    assert_eq!(try_probe(&http(addr, "/healthz?x=1")), Progress::Passed("HTTP/1.1 200 OK".to_string()));
    let request = server.join().unwrap();
    let expected = format!(
        "GET /healthz?x=1 HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: supervisor-probe\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(String::from_utf8_lossy(&request), expected);
}

#[test]
fn http_503_fails_with_the_status() {
    let (addr, server) = serve(|s| {
        let _ = s.write_all(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
    });
    let p = try_probe(&http(addr, "/"));
    assert_eq!(p, Progress::Failed("HTTP/1.1 503 Service Unavailable".to_string()));
    server.join().unwrap();
    // 3xx passes, 4xx fails, a bare LF and no reason are accepted.
    let (addr, server) = serve(|s| {
        let _ = s.write_all(b"HTTP/1.0 302\nLocation: /\n\n");
    });
    assert_eq!(try_probe(&http(addr, "/")), Progress::Passed("HTTP/1.0 302".to_string()));
    server.join().unwrap();
    let (addr, server) = serve(|s| {
        let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\n");
    });
    assert_eq!(try_probe(&http(addr, "/")), Progress::Failed("HTTP/1.1 404 Not Found".to_string()));
    server.join().unwrap();
}

#[test]
fn http_fails_when_closed_without_an_answer() {
    let (addr, server) = serve(|_| {});
    assert_eq!(try_probe(&http(addr, "/")), Progress::Failed("closed before a status line".to_string()));
    server.join().unwrap();
    let (addr, server) = serve(|s| {
        let _ = s.write_all(b"HTTP/1.1 20");
    });
    let p = try_probe(&http(addr, "/"));
    assert_eq!(p, Progress::Failed("closed in the middle of the status line".to_string()));
    server.join().unwrap();
}

#[test]
fn http_status_line_in_pieces_passes() {
    let (addr, server) = serve(|s| {
        for b in b"HTTP/1.1 204 No Content\r\n\r\n" {
            if s.write_all(&[*b]).is_err() {
                break;
            }
        }
    });
    assert_eq!(try_probe(&http(addr, "/")), Progress::Passed("HTTP/1.1 204 No Content".to_string()));
    server.join().unwrap();
}

#[test]
fn http_without_a_status_line_in_4096_bytes_fails() {
    let (addr, server) = serve(|s| {
        let mut answer = b"HTTP/1.1 200 ".to_vec();
        answer.resize(5000, b'a');
        let _ = s.write_all(&answer);
    });
    let p = try_probe(&http(addr, "/"));
    assert_eq!(p, Progress::Failed("no status line in the first 4096 bytes".to_string()));
    server.join().unwrap();
    // Not HTTP at all: failed from the first bytes.
    let (addr, server) = serve(|s| {
        let mut answer = b"SSH-2.0-OpenSSH_9.6".to_vec();
        answer.resize(5000, b'x');
        let _ = s.write_all(&answer);
    });
    let p = try_probe(&http(addr, "/"));
    assert!(failed_with(&p, "not an HTTP/1.x answer: SSH-2.0"), "{p:?}");
    server.join().unwrap();
}

#[test]
fn http_interim_answers_are_skipped() {
    let (addr, server) = serve(|s| {
        let _ = s.write_all(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
        );
    });
    assert_eq!(try_probe(&http(addr, "/")), Progress::Passed("HTTP/1.1 200 OK".to_string()));
    server.join().unwrap();
}

#[test]
fn http_refused_and_bad_targets_fail() {
    let addr = closed_port();
    assert_eq!(try_probe(&http(addr, "/")), Progress::Failed(format!("connect {addr}: connection refused")));
    let probe = Probe::Http(HttpTarget { addr, host: "a\r\nX: y".to_string(), path: "/".to_string() });
    assert!(failed_with(&try_probe(&probe), "cannot go in a request"));
}

/// Once the request is sent, the try waits to read, and `advance`
/// says so without blocking however often it is called.
#[test]
fn http_waits_to_read_the_answer() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (addr, server) = serve(move |_| {
        let _ = rx.recv();
    });
    let mut conn = Connection::start(&http(addr, "/")).unwrap();
    let deadline = Instant::now() + PATIENCE;
    while conn.interest() == Interest::Write {
        assert!(Instant::now() < deadline, "the request was not sent");
        let mut fds = [PollFd::new(conn.as_fd(), PollFlags::POLLOUT)];
        poll(&mut fds, PollTimeout::from(1000u16)).unwrap();
        assert_eq!(conn.advance(), Progress::Waiting);
    }
    for _ in 0..3 {
        assert_eq!(conn.advance(), Progress::Waiting);
        assert_eq!(conn.interest(), Interest::Read);
    }
    let mut fds = [PollFd::new(conn.as_fd(), PollFlags::POLLIN)];
    assert_eq!(poll(&mut fds, PollTimeout::ZERO).unwrap(), 0, "nothing to read yet");
    drop(conn);
    tx.send(()).unwrap();
    server.join().unwrap();
}

#[test]
fn sockets_are_nonblocking_and_close_on_exec() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (addr, server) = serve(move |_| {
        let _ = rx.recv();
    });
    let conn = Connection::start(&http(addr, "/")).unwrap();
    let fl = nix::fcntl::fcntl(conn.as_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
    assert_ne!(fl & libc::O_NONBLOCK, 0);
    let fd = nix::fcntl::fcntl(conn.as_fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
    assert_ne!(fd & libc::FD_CLOEXEC, 0);
    assert_eq!(conn.fd(), conn.as_fd().as_raw_fd());
    drop(conn);
    tx.send(()).unwrap();
    server.join().unwrap();
}

/// The number of descriptors this process has open.
fn open_fds() -> usize {
    // The directory's own descriptor is counted both times.
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Set in the environment of the child that runs
/// [`no_descriptor_leaks_child`].
const LEAK_CHILD: &str = "SUPERVISOR_PROBE_LEAK_CHILD";

/// No try leaves a descriptor open, whatever its outcome. Other tests
/// open and close descriptors in parallel threads of this process, so
/// the count is taken in a child: this test binary run again with only
/// [`no_descriptor_leaks_child`], on one thread.
#[test]
fn no_descriptor_leaks() {
    let name = format!("{}::no_descriptor_leaks_child", module_path!().split_once("::").unwrap().1);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name.as_str(), "--exact", "--test-threads=1", "--nocapture"])
        .env(LEAK_CHILD, "1")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the child test did not run: {text}");
}

/// The work of [`no_descriptor_leaks`], done only in its child.
#[test]
fn no_descriptor_leaks_child() {
    if std::env::var_os(LEAK_CHILD).is_none() {
        return;
    }
    // Fewer connections than the listeners' queues hold (128): they
    // accept nothing, and what they queue has no descriptor here.
    const ROUNDS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let _unix = UnixListener::bind(&path).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let http_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let http_addr = http_listener.local_addr().unwrap();
    let refused = closed_port();
    let before = open_fds();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 0..3 * ROUNDS {
                let (mut s, _) = http_listener.accept().unwrap();
                s.set_read_timeout(Some(PATIENCE)).unwrap();
                read_request(&mut s);
                let _ = match i % 3 {
                    0 => s.write_all(b"HTTP/1.1 200 OK\r\n\r\n"),
                    1 => s.write_all(b"HTTP/1.1 500 Oops\r\n\r\n"),
                    _ => Ok(()),
                };
            }
        });
        for _ in 0..ROUNDS {
            assert!(matches!(try_probe(&Probe::Tcp(tcp.local_addr().unwrap())), Progress::Passed(_)));
            assert!(matches!(try_probe(&Probe::Tcp(refused)), Progress::Failed(_)));
            assert!(matches!(try_probe(&Probe::Unix(path.clone())), Progress::Passed(_)));
            assert!(matches!(try_probe(&Probe::Unix(dir.path().join("no"))), Progress::Failed(_)));
            assert!(matches!(try_probe(&Probe::Exec(Command::argv(["true"]))), Progress::Failed(_)));
            assert!(matches!(try_probe(&http(http_addr, "/")), Progress::Passed(_)));
            assert!(matches!(try_probe(&http(http_addr, "/")), Progress::Failed(_)));
            assert!(matches!(try_probe(&http(http_addr, "/")), Progress::Failed(_)));
            // Dropped undecided, as at a deadline.
            drop(Connection::start(&http(refused, "/")));
        }
    });
    assert_eq!(open_fds(), before, "descriptors left open by {ROUNDS} rounds of tries");
}

#[test]
fn status_lines_read() {
    assert_eq!(status_line(b"HTTP/1.1 200 OK\r\n"), Some(Ok((200, "HTTP/1.1 200 OK".to_string()))));
    assert_eq!(status_line(b"HTTP/1.0 404\n"), Some(Ok((404, "HTTP/1.0 404".to_string()))));
    assert_eq!(status_line(b"HTTP/1.1 200 OK"), None);
    assert_eq!(status_line(b""), None);
    assert_eq!(status_line(b"HTT"), None);
    for bad in [&b"HTTP/2 200 OK\r\n"[..], b"HTTP/1.1 20 OK\r\n", b"HTTP/1.1 2000\r\n", b"HTTP/1.1  200\r\n", b"<html>"]
    {
        assert!(matches!(status_line(bad), Some(Err(_))), "{:?}", String::from_utf8_lossy(bad));
    }
    let long = format!("HTTP/1.1 200 {}\r\n", "a".repeat(500));
    let (_, shown) = status_line(long.as_bytes()).unwrap().unwrap();
    assert_eq!(shown.chars().count(), MAX_SHOWN + 3);
    assert_eq!(final_status(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2"), None);
    assert_eq!(final_status(b"HTTP/1.1 101 Switching Protocols\r\n").map(|r| r.map(|s| s.0)), Some(Ok(101)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn status_line_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = status_line(&bytes);
        let _ = final_status(&bytes);
    }

    #[test]
    fn any_http1_status_line_reads(
        minor in 0u8..10,
        code in 0u16..1000,
        reason in "[ -~]{0,40}",
        rest in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let line = format!("HTTP/1.{minor} {code:03} {reason}\r\n");
        let mut bytes = line.clone().into_bytes();
        bytes.extend_from_slice(&rest);
        let read = status_line(&bytes);
        prop_assert_eq!(read.clone().map(|r| r.map(|(c, _)| c)), Some(Ok(code)));
        prop_assert_eq!(read.unwrap().unwrap().1, line.trim_end_matches("\r\n"));
        // Any part of it short of the newline: more is needed.
        for cut in 0..line.len() - 1 {
            prop_assert_eq!(status_line(&line.as_bytes()[..cut]), None);
        }
    }
}
