//! The metrics endpoint: Prometheus' text exposition at `GET /metrics`,
//! over HTTP on a TCP address or a Unix socket, served from the engine's
//! loop without ever holding it up.
//!
//! The listener and every client are non-blocking and in the engine's poll
//! set. A client has [`CLIENT_TIMEOUT`] to send its request head (at most
//! [`MAX_HEAD`] bytes, 8 KiB) and then to take each part of the answer; at most
//! [`MAX_CLIENTS`] are served at once (the next ones get a `503`). An
//! answer that the socket does not take at once is kept and written as
//! the client reads. Every answer closes the connection. The requests
//! reach the engine as [`Command::Metrics`], as the control socket's do.
//!
//! Nobody is authenticated: bind a loopback address or a Unix socket
//! whose directory limits who may connect.

use std::fs;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::engine::{ClientId, Engine, EngineError, FrontEnd, Role};
use crate::model::metrics::MetricsAddr;
use crate::model::protocol::{Command, Request, Response};

pub(crate) mod http;

use http::{parse, response, Parsed, Route, MAX_HEAD};

/// Most clients served at once.
pub const MAX_CLIENTS: usize = 16;
/// How long a client may take to send its request head, and then to take
/// each part of the answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client that has its whole answer may take to close the
/// connection, while what it still sends is read and dropped (so that
/// the close does not reset a connection whose answer is unread).
const LINGER: Duration = Duration::from_secs(2);
/// How long new connections wait when no descriptor is left.
const ACCEPT_PAUSE: Duration = Duration::from_secs(1);
/// At most this many connections are accepted in one turn.
const ACCEPT_BATCH: usize = 32;

/// The listening socket.
#[derive(Debug)]
enum Listener {
    Tcp(TcpListener),
    /// The socket, its path, and the file as bound (device, inode).
    Unix(UnixListener, PathBuf, (u64, u64)),
}

/// A client's connection.
#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn shutdown_write(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }

    fn fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

/// Where a client is in its one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading the request head.
    Reading,
    /// The request went to the engine, whose answer comes in this turn.
    Asked {
        /// A `HEAD` request: the answer without the body.
        head: bool,
    },
    /// Writing the answer.
    Writing,
    /// Answered and shut down for writing: reading what it still sends
    /// until it closes.
    Lingering,
}

#[derive(Debug)]
struct Client {
    id: ClientId,
    stream: Stream,
    phase: Phase,
    input: Vec<u8>,
    output: Vec<u8>,
    /// How much of `output` is written.
    sent: usize,
    /// When it is dropped unless it makes progress.
    deadline: Instant,
}

/// The metrics endpoint, a front end of the engine.
#[derive(Debug)]
pub(crate) struct MetricsServer {
    listener: Listener,
    /// The address served (for a TCP port 0, the port the kernel chose).
    addr: MetricsAddr,
    clients: Vec<Client>,
    next_id: ClientId,
    /// With no descriptor left, new connections wait until then (polling
    /// the listener would only spin).
    accept_paused_until: Option<Instant>,
}

impl MetricsServer {
    /// Binds `addr`: a TCP address, or a Unix socket (replacing a stale
    /// socket file that nobody serves, never another kind of file).
    ///
    /// # Errors
    ///
    /// Any I/O error, its message naming the address.
    pub(crate) fn bind(addr: &MetricsAddr) -> io::Result<MetricsServer> {
        let named = |e: io::Error| io::Error::new(e.kind(), format!("metrics: cannot serve {addr}: {e}"));
        let (listener, bound) = match addr {
            MetricsAddr::Tcp(a) => {
                let l = TcpListener::bind(a).map_err(named)?;
                l.set_nonblocking(true).map_err(named)?;
                let bound = MetricsAddr::Tcp(l.local_addr().map_err(named)?);
                (Listener::Tcp(l), bound)
            }
            MetricsAddr::Unix(path) => {
                let (l, file) = bind_unix(path).map_err(named)?;
                (Listener::Unix(l, path.clone(), file), addr.clone())
            }
        };
        Ok(MetricsServer { listener, addr: bound, clients: Vec::new(), next_id: 1, accept_paused_until: None })
    }

    fn listener_fd(&self) -> RawFd {
        match &self.listener {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l, ..) => l.as_raw_fd(),
        }
    }

    /// Accepts the waiting connections, at most [`ACCEPT_BATCH`]: one
    /// past [`MAX_CLIENTS`] gets a `503` and is closed.
    fn accept_all(&mut self, now: Instant, requests: &mut Vec<(ClientId, Request)>) {
        for _ in 0..ACCEPT_BATCH {
            let accepted = match &self.listener {
                Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
                Listener::Unix(l, ..) => l.accept().map(|(s, _)| Stream::Unix(s)),
            };
            let mut stream = match accepted {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("metrics: accept: {e}");
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)) {
                        self.accept_paused_until = Some(now + ACCEPT_PAUSE);
                    }
                    break;
                }
            };
            let nonblocking = match &stream {
                Stream::Tcp(s) => s.set_nonblocking(true),
                Stream::Unix(s) => s.set_nonblocking(true),
            };
            if nonblocking.is_err() {
                continue;
            }
            if self.clients.len() >= MAX_CLIENTS {
                // One try, without waiting; then the connection closes.
                let _ = stream.write(&response(Route::Busy, ""));
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let deadline = now + CLIENT_TIMEOUT;
            let client =
                Client { id, stream, phase: Phase::Reading, input: Vec::new(), output: Vec::new(), sent: 0, deadline };
            self.clients.push(client);
            // What it sent with its connection is read at once.
            self.progress(id, now, requests);
        }
    }

    /// Moves client `id` on as far as its socket lets it.
    fn progress(&mut self, id: ClientId, now: Instant, requests: &mut Vec<(ClientId, Request)>) {
        let Some(at) = self.clients.iter().position(|c| c.id == id) else { return };
        let c = &mut self.clients[at];
        let keep = match c.phase {
            Phase::Reading => read_request(c, now, requests),
            Phase::Asked { .. } => true,
            Phase::Writing => flush(c, now),
            Phase::Lingering => drain(c),
        };
        if !keep {
            self.clients.swap_remove(at);
        }
    }

    /// Handles the ready descriptors among those of [`FrontEnd::poll_fds`].
    fn handle_ready(&mut self, ready: &[RawFd], now: Instant) -> Vec<(ClientId, Request)> {
        let mut requests = Vec::new();
        let ids: Vec<ClientId> = self.clients.iter().filter(|c| ready.contains(&c.stream.fd())).map(|c| c.id).collect();
        for id in ids {
            self.progress(id, now, &mut requests);
        }
        if ready.contains(&self.listener_fd()) {
            self.accept_all(now, &mut requests);
        }
        self.expire(now);
        requests
    }

    /// Drops the clients whose time is up.
    fn expire(&mut self, now: Instant) {
        if self.accept_paused_until.is_some_and(|t| now >= t) {
            self.accept_paused_until = None;
        }
        self.clients.retain(|c| c.deadline > now);
    }
}

/// Reads what client `c` sent; once its head is complete, queues its
/// request (`GET /metrics`) or its answer (anything else). False when it
/// is gone.
fn read_request(c: &mut Client, now: Instant, requests: &mut Vec<(ClientId, Request)>) -> bool {
    let mut buf = [0u8; 2048];
    // At most a little more than a head, then it is answered.
    while c.input.len() <= MAX_HEAD {
        match c.stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => c.input.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => return false,
        }
    }
    match parse(&c.input) {
        Parsed::Partial => true,
        Parsed::Done(Route::Metrics { head }) => {
            c.phase = Phase::Asked { head };
            // Answered in this turn: not dropped before then.
            c.deadline = now + CLIENT_TIMEOUT;
            requests.push((c.id, Request { id: Value::Null, command: Command::Metrics }));
            true
        }
        Parsed::Done(route) => {
            c.output = response(route, "");
            c.phase = Phase::Writing;
            c.deadline = now + CLIENT_TIMEOUT;
            flush(c, now)
        }
    }
}

/// Writes what client `c` has not taken yet; once all is written, shuts
/// the connection down for writing. False when it is gone.
fn flush(c: &mut Client, now: Instant) -> bool {
    while c.sent < c.output.len() {
        match c.stream.write(&c.output[c.sent..]) {
            Ok(0) => return false,
            Ok(n) => {
                c.sent += n;
                c.deadline = now + CLIENT_TIMEOUT;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
    c.stream.shutdown_write();
    c.output = Vec::new();
    c.input = Vec::new();
    c.phase = Phase::Lingering;
    c.deadline = now + LINGER;
    true
}

/// Reads and drops what an answered client still sends; false once it
/// has closed.
fn drain(c: &mut Client) -> bool {
    let mut buf = [0u8; 2048];
    for _ in 0..16 {
        match c.stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
    true
}

/// Binds a non-blocking Unix socket at `path`, replacing a stale socket
/// file; the listener and the file's (device, inode).
fn bind_unix(path: &Path) -> io::Result<(UnixListener, (u64, u64))> {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(ErrorKind::AlreadyExists, "a file that is not a socket is in the way"));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(ErrorKind::AddrInUse, "another process serves it"));
        }
        fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    match listener.set_nonblocking(true).and_then(|()| fs::symlink_metadata(path)) {
        Ok(meta) => Ok((listener, (meta.dev(), meta.ino()))),
        Err(e) => {
            let _ = fs::remove_file(path);
            Err(e)
        }
    }
}

impl FrontEnd for MetricsServer {
    fn role(&self) -> Role {
        Role::Metrics
    }

    fn poll_fds(&self) -> Vec<(RawFd, i16)> {
        let mut fds = Vec::with_capacity(self.clients.len() + 1);
        if self.accept_paused_until.is_none() {
            fds.push((self.listener_fd(), libc::POLLIN));
        }
        for c in &self.clients {
            match c.phase {
                Phase::Reading | Phase::Lingering => fds.push((c.stream.fd(), libc::POLLIN)),
                Phase::Writing => fds.push((c.stream.fd(), libc::POLLOUT)),
                Phase::Asked { .. } => {}
            }
        }
        fds
    }

    fn deadline(&self) -> Option<Instant> {
        self.clients.iter().map(|c| c.deadline).chain(self.accept_paused_until).min()
    }

    fn ready(&mut self, ready: &[RawFd], now: Instant) -> Vec<(ClientId, Request)> {
        self.handle_ready(ready, now)
    }

    fn idle(&mut self, now: Instant) {
        self.expire(now);
    }

    fn respond(&mut self, client: ClientId, answer: &Response) {
        let Some(at) = self.clients.iter().position(|c| c.id == client) else { return };
        let c = &mut self.clients[at];
        let Phase::Asked { head } = c.phase else { return };
        c.output = match &answer.metrics {
            Some(text) => response(Route::Metrics { head }, text),
            None => response(Route::Failed, ""),
        };
        c.phase = Phase::Writing;
        let now = Instant::now();
        c.deadline = now + CLIENT_TIMEOUT;
        if !flush(c, now) {
            self.clients.swap_remove(at);
        }
    }

    fn close(&mut self, _limit: Duration) {
        self.clients.clear();
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        // Only our own socket file: not one that another process bound
        // there since.
        if let Listener::Unix(_, path, bound) = &self.listener {
            if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket() && (m.dev(), m.ino()) == *bound) {
                let _ = fs::remove_file(path);
            }
        }
    }
}

impl Engine {
    /// Serves the metrics ([`Engine::metrics`]) over HTTP at
    /// `GET /metrics` on `addr`, from the engine's own loop: a client
    /// never holds it up (see the `metrics` module). Returns the address
    /// served: for a TCP port 0, with the port the kernel chose. A second
    /// call replaces the first endpoint.
    ///
    /// Nobody is authenticated: bind a loopback address, or a Unix socket
    /// in a directory that only those who may read the metrics can enter.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound (in use, no permission, a file
    /// that is not a socket in the way); the message names the address.
    pub fn serve_metrics(&mut self, addr: &MetricsAddr) -> Result<MetricsAddr, EngineError> {
        let server = MetricsServer::bind(addr)?;
        let bound = server.addr.clone();
        log::info!("metrics: serving GET /metrics on {bound}");
        self.attach_front_end(Box::new(server));
        Ok(bound)
    }
}

#[cfg(test)]
mod tests;
