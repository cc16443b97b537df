//! One try of a TCP, Unix or HTTP probe, carried out without ever
//! blocking, for an engine that sleeps in `poll(2)`/epoll.
//!
//! A [`Connection`] is a state machine around one non-blocking,
//! close-on-exec socket: connecting, then (HTTP only) sending the request,
//! then reading until the status line is complete. The engine starts a
//! try with [`Connection::start`], waits until [`Connection::fd`] is ready
//! for [`Connection::interest`], and calls [`Connection::advance`], which
//! goes as far as it can without blocking and says whether the try is
//! decided. Nothing here sleeps or keeps a clock: the timeout is the
//! engine's, which drops the `Connection` at its deadline (dropping it
//! closes the socket).
//!
//! The life of a try:
//!
//! - `start` makes the socket and calls `connect`. A connect that is
//!   decided at once (refused on loopback, the Unix path missing, a Unix
//!   listener whose queue is full) or a TCP or Unix connect that succeeds
//!   at once comes back as `Err(decision)`: a `Connection` exists only
//!   while undecided, and always holds its socket.
//! - A connect in progress (`EINPROGRESS`) is finished once the socket is
//!   writable: `advance` first asks `poll` with a zero timeout whether it
//!   is (so that it can be called at any time without mistaking a connect
//!   still in progress for one that succeeded), then reads `SO_ERROR`, and
//!   checks with `getpeername` that the socket really is connected.
//! - TCP and Unix probes pass when connected. An HTTP probe sends
//!   `GET {path} HTTP/1.1` with `Host`, `User-Agent: supervisor-probe`
//!   and `Connection: close` (picking up after partial writes), then reads
//!   at most [`MAX_RESPONSE`] bytes until the final status line is
//!   complete: 200 to 399 passes, anything else fails. Interim `1xx`
//!   answers (`100 Continue`, `103 Early Hints`), which an HTTP/1.1 client
//!   must accept before the final one, are skipped with their headers.
//!
//! `EAGAIN` from `connect` is not "in progress" on Linux: for a Unix
//! socket it means the listener's queue is full and nothing was queued
//! (the socket then polls writable at once with `SO_ERROR` 0, which would
//! pass a probe falsely), and for TCP that no local port is free. Both
//! fail the try at once; the engine tries again at the next interval.
//!
//! Sends use `MSG_NOSIGNAL`: a server that closes early gives `EPIPE`,
//! never a `SIGPIPE`. nix's safe wrappers make every call; the one
//! `unsafe` block builds an IPv4 or IPv6 address for them (nix converts a
//! `SocketAddr` only with its `net` feature, not built here).

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    connect, getpeername, getsockopt, recv, send, socket, sockopt::SocketError, AddressFamily, MsgFlags, SockFlag,
    SockType, SockaddrLike, SockaddrStorage, UnixAddr,
};

use crate::model::Probe;

/// An HTTP answer is read up to this many bytes: its final status line
/// must be complete within them.
pub(crate) const MAX_RESPONSE: usize = 4096;

/// A status line is shown in a status up to this many characters.
const MAX_SHOWN: usize = 120;

/// One try of a connecting probe, in progress: it owns a non-blocking,
/// close-on-exec socket, closed when the `Connection` is dropped.
#[derive(Debug)]
pub(crate) struct Connection {
    socket: OwnedFd,
    target: Target,
    state: State,
}

/// How a try stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Not decided yet: wait until [`Connection::fd`] is ready for
    /// [`Connection::interest`].
    Waiting,
    /// Passed, with a one-line description for the status
    /// (`connected to 127.0.0.1:5432`, `HTTP/1.1 200 OK`).
    Passed(String),
    /// Failed, with why (`connect 127.0.0.1:5432: connection refused`,
    /// `HTTP/1.1 503 Service Unavailable`, `closed before a status line`,
    /// `unix run/db.sock: no such file or directory`).
    Failed(String),
}

/// What a [`Connection`] waits for on its descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    /// Writable (`POLLOUT`/`EPOLLOUT`): the connect is in progress, or an
    /// HTTP request is not all sent.
    Write,
    /// Readable (`POLLIN`/`EPOLLIN`): an HTTP answer is awaited.
    Read,
}

/// What is connected to, for the messages and for what follows the
/// connect.
#[derive(Debug)]
enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
    Http(SocketAddr),
}

#[derive(Debug)]
enum State {
    Connecting { request: Option<Vec<u8>> },
    Sending { request: Vec<u8>, sent: usize },
    Receiving { buf: Vec<u8>, len: usize },
    Done(Progress),
}

/// A step of [`Connection::advance`]: wait for the descriptor, or go on
/// in this state.
enum Step {
    Wait,
    Next(State),
}

impl Connection {
    /// Starts a try of `probe` and takes it as far as it goes without
    /// blocking.
    ///
    /// `Ok` holds a try in progress: wait until [`fd`](Self::fd) is ready
    /// for [`interest`](Self::interest), then call
    /// [`advance`](Self::advance). `Err` holds a try decided at once, never
    /// [`Progress::Waiting`]: `Passed` for a TCP or Unix connect that
    /// succeeded at once, `Failed` for one refused at once, a missing Unix
    /// path, a socket that could not be made, an HTTP target with a
    /// control character in its host or path, or a [`Probe::Exec`] (the
    /// engine runs commands itself: that is a caller's mistake, reported
    /// as a failure rather than a panic).
    pub(crate) fn start(probe: &Probe) -> Result<Connection, Progress> {
        let (target, request) = match probe {
            Probe::Tcp(addr) => (Target::Tcp(*addr), None),
            Probe::Unix(path) => (Target::Unix(path.clone()), None),
            Probe::Http(t) => {
                let bad = |s: &str| s.bytes().any(|b| b.is_ascii_control());
                if bad(&t.host) || bad(&t.path) || t.path.contains(' ') || t.path.is_empty() {
                    return Err(Progress::Failed(format!(
                        "http {} {:?}: the host or path cannot go in a request",
                        t.host, t.path
                    )));
                }
                let request = format!(
                    "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: supervisor-probe\r\nConnection: close\r\n\r\n",
                    t.path, t.host
                );
                (Target::Http(t.addr), Some(request.into_bytes()))
            }
            Probe::Exec(_) => {
                return Err(Progress::Failed("an exec probe is run by the engine, not connected to".to_string()))
            }
        };
        let family = match &target {
            Target::Tcp(a) | Target::Http(a) if a.is_ipv4() => AddressFamily::Inet,
            Target::Tcp(_) | Target::Http(_) => AddressFamily::Inet6,
            Target::Unix(_) => AddressFamily::Unix,
        };
        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
        let socket = socket(family, SockType::Stream, flags, None)
            .map_err(|e| Progress::Failed(format!("{}: socket: {}", target.describe(), errno_text(e))))?;
        let connected = match &target {
            Target::Tcp(a) | Target::Http(a) => match inet_addr(*a) {
                Some(addr) => connect(socket.as_raw_fd(), &addr),
                None => Err(Errno::EINVAL),
            },
            Target::Unix(path) => match UnixAddr::new(path.as_path()) {
                Ok(addr) => connect(socket.as_raw_fd(), &addr),
                Err(e) => Err(e),
            },
        };
        let mut conn = Connection { socket, target, state: State::Connecting { request } };
        match connected {
            Ok(()) => conn.state = conn.connected(),
            // The connection goes on asynchronously after EINTR (POSIX);
            // `advance` checks it really was made.
            Err(Errno::EINPROGRESS | Errno::EINTR) => {}
            Err(Errno::EAGAIN) if matches!(conn.target, Target::Unix(_)) => {
                return Err(Progress::Failed(format!(
                    "{}: the listener's queue is full (it does not accept)",
                    conn.target.describe()
                )));
            }
            Err(e) => return Err(conn.target.connect_failed(e)),
        }
        match conn.advance() {
            Progress::Waiting => Ok(conn),
            decided => Err(decided),
        }
    }

    /// The socket, to wait on for [`interest`](Self::interest). Valid as
    /// long as the `Connection` lives.
    pub(crate) fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// What to wait for on [`fd`](Self::fd): `Write` while the connect is
    /// in progress and while an HTTP request is not all sent, `Read`
    /// while an HTTP answer is awaited. It changes as the try advances
    /// (`Write` to `Read` for HTTP): ask again after each `advance` that
    /// returns [`Progress::Waiting`]. (`Read` once decided.)
    pub(crate) fn interest(&self) -> Interest {
        match self.state {
            State::Connecting { .. } | State::Sending { .. } => Interest::Write,
            State::Receiving { .. } | State::Done(_) => Interest::Read,
        }
    }

    /// Moves on as far as it can without blocking: call it when
    /// [`fd`](Self::fd) is ready (readable, writable, or in error or hang
    /// up), or at any time. Once decided, returns the same decision again;
    /// drop the `Connection` then (the socket stays open until dropped).
    /// Never blocks, never panics.
    pub(crate) fn advance(&mut self) -> Progress {
        loop {
            let step = match &mut self.state {
                State::Done(decided) => return decided.clone(),
                State::Connecting { .. } => self.finish_connect(),
                State::Sending { request, sent } => send_request(&self.socket, &self.target, request, sent),
                State::Receiving { buf, len } => receive(&self.socket, &self.target, buf, len),
            };
            match step {
                Step::Wait => return Progress::Waiting,
                Step::Next(state) => self.state = state,
            }
        }
    }

    /// The connect in progress: done once the socket is writable (or in
    /// error), with the outcome in `SO_ERROR`.
    fn finish_connect(&mut self) -> Step {
        let ready = loop {
            let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLOUT)];
            match poll(&mut fds, PollTimeout::ZERO) {
                Ok(n) => break n > 0,
                Err(Errno::EINTR) => continue,
                Err(e) => return failed(format!("{}: poll: {}", self.target.describe(), errno_text(e))),
            }
        };
        if !ready {
            return Step::Wait;
        }
        match getsockopt(&self.socket, SocketError) {
            Ok(0) => {}
            Ok(raw) => return done(self.target.connect_failed(Errno::from_raw(raw))),
            Err(e) => return failed(format!("{}: SO_ERROR: {}", self.target.describe(), errno_text(e))),
        }
        // Writable with no error but not connected happens where the
        // connect was never in progress (EINTR on a Unix socket).
        match getpeername::<SockaddrStorage>(self.socket.as_raw_fd()) {
            Ok(_) => Step::Next(self.connected()),
            Err(e) => done(self.target.connect_failed(e)),
        }
    }

    /// The state once connected.
    fn connected(&mut self) -> State {
        match (&self.target, &mut self.state) {
            (Target::Http(_), State::Connecting { request }) => {
                State::Sending { request: request.take().unwrap_or_default(), sent: 0 }
            }
            (target, _) => State::Done(Progress::Passed(format!("connected to {}", target.describe()))),
        }
    }
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl Target {
    /// `127.0.0.1:5432`, `[::1]:80` or `unix run/db.sock`.
    fn describe(&self) -> String {
        match self {
            Target::Tcp(a) | Target::Http(a) => a.to_string(),
            Target::Unix(p) => format!("unix {}", p.display()),
        }
    }

    /// `connect 127.0.0.1:5432: connection refused`, or
    /// `unix run/db.sock: no such file or directory`.
    fn connect_failed(&self, e: Errno) -> Progress {
        Progress::Failed(match self {
            Target::Tcp(_) | Target::Http(_) => format!("connect {}: {}", self.describe(), errno_text(e)),
            Target::Unix(_) => format!("{}: {}", self.describe(), errno_text(e)),
        })
    }
}

/// `addr` as a `sockaddr_in` or `sockaddr_in6`, made as std makes them
/// (nix converts a `SocketAddr` only with its `net` feature, which this
/// workspace does not build). `None` cannot happen: `from_raw` refuses
/// only a null pointer or a size out of range.
fn inet_addr(addr: SocketAddr) -> Option<SockaddrStorage> {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: a pointer to an initialized sockaddr_in and its exact
            // size; from_raw copies that many bytes into the storage.
            unsafe { SockaddrStorage::from_raw((&raw const sin).cast(), Some(size_of_val(&sin) as libc::socklen_t)) }
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for an initialized sockaddr_in6.
            unsafe { SockaddrStorage::from_raw((&raw const sin6).cast(), Some(size_of_val(&sin6) as libc::socklen_t)) }
        }
    }
}

/// Sends what is left of the request; on to reading once all is sent.
fn send_request(socket: &OwnedFd, target: &Target, request: &[u8], sent: &mut usize) -> Step {
    while *sent < request.len() {
        match send(socket.as_raw_fd(), &request[*sent..], MsgFlags::MSG_NOSIGNAL) {
            Ok(0) => return failed(format!("send to {}: nothing was sent", target.describe())),
            Ok(n) => *sent += n,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Step::Wait,
            Err(e) => return failed(format!("send to {}: {}", target.describe(), errno_text(e))),
        }
    }
    Step::Next(State::Receiving { buf: vec![0; MAX_RESPONSE], len: 0 })
}

/// Reads the answer until its final status line is complete, or
/// [`MAX_RESPONSE`] bytes, or the end.
fn receive(socket: &OwnedFd, target: &Target, buf: &mut [u8], len: &mut usize) -> Step {
    loop {
        if *len >= buf.len() {
            return failed(format!("no status line in the first {} bytes", buf.len()));
        }
        match recv(socket.as_raw_fd(), &mut buf[*len..], MsgFlags::empty()) {
            Ok(0) if *len == 0 => return failed("closed before a status line".to_string()),
            Ok(0) => return failed("closed in the middle of the status line".to_string()),
            Ok(n) => *len = (*len + n).min(buf.len()),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Step::Wait,
            Err(e) => return failed(format!("read from {}: {}", target.describe(), errno_text(e))),
        }
        match final_status(&buf[..*len]) {
            None => {}
            Some(Ok((code, line))) if (200..=399).contains(&code) => return done(Progress::Passed(line)),
            Some(Ok((_, line))) => return failed(line),
            Some(Err(why)) => return failed(why),
        }
    }
}

fn done(decided: Progress) -> Step {
    Step::Next(State::Done(decided))
}

fn failed(why: String) -> Step {
    done(Progress::Failed(why))
}

/// The final status of an HTTP/1.x answer that begins with `bytes`,
/// skipping interim `1xx` answers (but `101`) and their headers: `None`
/// while more bytes are needed to tell, else as [`status_line`]. Never
/// panics.
fn final_status(bytes: &[u8]) -> Option<Result<(u16, String), String>> {
    let mut rest = bytes;
    loop {
        match status_line(rest)? {
            Ok((code, _)) if (100..200).contains(&code) && code != 101 => {
                let line_end = memchr::memchr(b'\n', rest)? + 1;
                rest = &rest[line_end..];
                rest = after_headers(rest)?;
            }
            decided => return Some(decided),
        }
    }
}

/// What follows the header fields that begin `bytes` and the empty line
/// that ends them, or `None` when that empty line is not there yet.
fn after_headers(mut bytes: &[u8]) -> Option<&[u8]> {
    loop {
        let end = memchr::memchr(b'\n', bytes)?;
        let line = &bytes[..end];
        bytes = &bytes[end + 1..];
        if line.is_empty() || line == b"\r" {
            return Some(bytes);
        }
    }
}

/// Reads the status line at the start of `bytes` (`HTTP/1.1 200 OK`,
/// ended by CRLF or a bare LF; the reason phrase may be empty or
/// missing):
///
/// - `None` while the line is not complete and could still be one;
/// - `Some(Ok((code, line)))` with the three-digit status code and the
///   line as shown in a status (control characters replaced, at most
///   [`MAX_SHOWN`] characters);
/// - `Some(Err(why))` when it is not an HTTP/1.x status line, as soon as
///   the first bytes say so.
///
/// Never panics, whatever the bytes.
fn status_line(bytes: &[u8]) -> Option<Result<(u16, String), String>> {
    const VERSION: &[u8] = b"HTTP/1.";
    let Some(end) = memchr::memchr(b'\n', bytes) else {
        let n = bytes.len().min(VERSION.len());
        if bytes[..n] != VERSION[..n] {
            return Some(Err(format!("not an HTTP/1.x answer: {}", shown(bytes))));
        }
        return None;
    };
    let line = bytes[..end].strip_suffix(b"\r").unwrap_or(&bytes[..end]);
    let bad = || Err(format!("not an HTTP/1.x status line: {}", shown(line)));
    let Some(rest) = line.strip_prefix(VERSION) else { return Some(bad()) };
    let (code, after) = match rest {
        [minor, b' ', a, b, c, after @ ..] if [minor, a, b, c].iter().all(|d| d.is_ascii_digit()) => {
            (u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'), after)
        }
        _ => return Some(bad()),
    };
    if !(after.is_empty() || after[0] == b' ') {
        return Some(bad());
    }
    Some(Ok((code, shown(line))))
}

/// `bytes` as text for a status: invalid UTF-8 and control characters
/// replaced, at most [`MAX_SHOWN`] characters (then `...`).
fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text.chars().take(MAX_SHOWN).map(|c| if c.is_control() { '\u{FFFD}' } else { c }).collect();
    if text.chars().nth(MAX_SHOWN).is_some() {
        out.push_str("...");
    }
    out
}

/// `connection refused`: the system's text for `e`, as a clause.
fn errno_text(e: Errno) -> String {
    let desc = e.desc();
    let mut chars = desc.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_ascii_uppercase() && !second.is_ascii_uppercase() => {
            first.to_ascii_lowercase().to_string() + &desc[1..]
        }
        _ => desc.to_string(),
    }
}

#[cfg(test)]
mod tests;
