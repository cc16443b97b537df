//! The control socket: a Unix stream socket that serves the
//! [`protocol`](crate::protocol) (its client is in `client.rs`).
//!
//! The server never blocks: every client socket is non-blocking, input is
//! cut into lines of at most [`MAX_REQUEST`] bytes, output is buffered up to
//! a limit, and a client that sends nothing for a while, or reads nothing
//! while its answers pile up, is dropped. Peers are checked with
//! `SO_PEERCRED` when they connect: root and the supervisor's own user are
//! served, plus the uids and groups of an [`AccessPolicy`]; anybody else
//! gets one "permission denied" line and is disconnected.

use std::collections::HashMap;
use std::fs;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use serde_json::Value;

use crate::engine::{ClientId, Engine, EngineError, FrontEnd, Role};
use crate::model::protocol::{ErrorCode, Request, Response};
use crate::os::runtime_dir::make_private_dir;
use conn::Client;

mod access;
mod conn;

pub use access::AccessPolicy;

/// Most clients connected at once.
pub const MAX_CLIENTS: usize = 128;
/// Most requests of one client waiting for their answers.
pub const MAX_IN_FLIGHT: usize = 32;
/// Most bytes of answers buffered for a client that does not read them.
pub const MAX_OUTPUT: usize = 4 * 1024 * 1024;
/// How long an idle client with nothing in flight stays connected (while
/// there is room for others).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a client may take to finish a request line it began: a client
/// that sends a byte now and then cannot hold its place.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The listening side.
#[derive(Debug)]
pub(crate) struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    policy: AccessPolicy,
    clients: HashMap<ClientId, Client>,
    next_id: ClientId,
    /// The socket file as bound (device, inode), and a watch on it: when
    /// it is removed (alone, or with the runtime directory), it is made
    /// again.
    bound: (u64, u64),
    watch: Option<Inotify>,
    /// A descriptor held in reserve: when the process has no descriptor
    /// left, it is given up so that a client can still be accepted and
    /// served (a `status` or a `stop` must get through then too).
    reserve: Option<fs::File>,
    /// With no descriptor left at all, new connections wait until then
    /// (polling the listener would only spin).
    accept_paused_until: Option<Instant>,
    /// Where clients' input is read, reused (not a fresh 16 KB per read).
    read_buf: Vec<u8>,
    /// The clients' descriptors, each with its id as token: the loop
    /// polls this one descriptor, not one per client (a thousand clients
    /// made every turn cost the kernel a thousand looks).
    epoll: OwnedFd,
    events: Vec<(u64, u32)>,
}

/// At most this many clients' events are taken in one turn; the rest stay
/// ready for the next.
const EVENT_BATCH: usize = 512;

/// How long one turn reads clients and accepts connections for: beyond it,
/// the rest waits for the next turn (their descriptors stay ready), which
/// looks at exits and timers first. A storm of clients cannot hold back a
/// restart.
const TURN_BUDGET: Duration = Duration::from_millis(1);

/// How long new connections wait when no descriptor is left.
const ACCEPT_PAUSE: Duration = Duration::from_secs(1);

fn open_reserve() -> Option<fs::File> {
    fs::File::open("/dev/null").ok()
}

/// Watches the socket file at `path` for its removal (unlinking changes
/// its link count: `IN_ATTRIB`) or its move. Nothing else in its directory
/// (the state file, renamed at every change) wakes the engine.
fn watch_socket(path: &Path) -> Option<Inotify> {
    let watch = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
    let mask = AddWatchFlags::IN_ATTRIB | AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF;
    match watch.add_watch(path, mask) {
        Ok(_) => Some(watch),
        Err(e) => {
            log::warn!("control socket: cannot watch {}: {e}; a removed socket will not come back", path.display());
            None
        }
    }
}

/// The directory of the socket at `path`.
fn socket_dir(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

impl ControlServer {
    /// Binds the socket at `path`, creating its directory (mode 0700, or
    /// 0711 when the policy admits other users) and replacing a stale
    /// socket file that nobody serves.
    ///
    /// # Errors
    ///
    /// `AddrInUse` when another process serves `path`; any I/O error.
    fn bind(path: &Path, policy: AccessPolicy) -> io::Result<ControlServer> {
        let (listener, bound) = Self::listen(path, &policy)?;
        let watch = watch_socket(path);
        let clients = HashMap::new();
        let reserve = open_reserve();
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
            policy,
            clients,
            next_id: 1,
            bound,
            watch,
            reserve,
            accept_paused_until: None,
            read_buf: vec![0; 16 * 1024],
            epoll: crate::os::sys::epoll_create()?,
            events: Vec::with_capacity(EVENT_BATCH),
        })
    }

    /// Makes the directory, replaces a stale socket, binds and sets the
    /// mode; the listener and the socket file's (device, inode).
    fn listen(path: &Path, policy: &AccessPolicy) -> io::Result<(UnixListener, (u64, u64))> {
        let dir = socket_dir(path);
        make_private_dir(dir, if policy.is_open() { 0o711 } else { 0o700 })?;
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    ErrorKind::AddrInUse,
                    format!("another supervisor serves {}", path.display()),
                ));
            }
            fs::remove_file(path)?;
        }
        let listener =
            UnixListener::bind(path).map_err(|e| io::Error::new(e.kind(), format!("bind {}: {e}", path.display())))?;
        let mode = if policy.is_open() { 0o666 } else { 0o600 };
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        listener.set_nonblocking(true)?;
        let meta = fs::symlink_metadata(path)?;
        Ok((listener, (meta.dev(), meta.ino())))
    }

    /// Whether the socket file is still the one bound.
    fn intact(&self) -> bool {
        fs::symlink_metadata(&self.path).is_ok_and(|m| m.file_type().is_socket() && (m.dev(), m.ino()) == self.bound)
    }

    /// The socket file changed: when it is gone (removed alone, or with the
    /// runtime directory under a running supervisor), binds it again.
    /// Connected clients keep their connections. True when the socket
    /// serves afterwards.
    fn check_socket(&mut self) -> bool {
        if let Some(w) = &self.watch {
            while let Ok(events) = w.read_events() {
                if events.is_empty() {
                    break;
                }
            }
        }
        if self.intact() {
            if self.watch.is_none() {
                self.watch = watch_socket(&self.path);
            }
            return true;
        }
        match Self::listen(&self.path, &self.policy) {
            Ok((listener, bound)) => {
                log::warn!("control socket {} was removed; serving it again", self.path.display());
                self.listener = listener;
                self.bound = bound;
                self.watch = watch_socket(&self.path);
                true
            }
            Err(e) => {
                // The services go on; the socket stays gone (and said so)
                // until SIGUSR1 or `repair-socket` tries again.
                log::error!("control socket {} was removed and cannot be made again: {e}", self.path.display());
                self.watch = None;
                false
            }
        }
    }

    /// Descriptors to poll and the events wanted for each.
    fn poll_fds(&self) -> Vec<(RawFd, i16)> {
        let mut v = Vec::with_capacity(self.clients.len() + 2);
        if let Some(w) = &self.watch {
            v.push((w.as_fd().as_raw_fd(), libc::POLLIN));
        }
        // Also with every place taken: an idle client makes room, or the
        // newcomer is told that we are busy.
        if self.accept_paused_until.is_none() {
            v.push((self.listener.as_raw_fd(), libc::POLLIN));
        }
        v.push((self.epoll.as_raw_fd(), libc::POLLIN));
        v
    }

    /// Brings what client `id`'s descriptor is watched for up to date.
    fn rewatch(&mut self, id: ClientId) {
        let Some(c) = self.clients.get_mut(&id) else { return };
        let wanted = c.wanted();
        if wanted != c.watched {
            let fd = c.stream.as_raw_fd();
            match crate::os::sys::epoll_modify(&self.epoll, fd, wanted, id) {
                Ok(()) => c.watched = wanted,
                Err(e) => {
                    log::warn!("control socket: cannot watch a client ({e}); dropping it");
                    self.clients.remove(&id);
                }
            }
        }
    }

    /// The next time a client must be dropped, or connections accepted
    /// again, if any.
    fn deadline(&self) -> Option<Instant> {
        self.clients.values().filter_map(Client::deadline).chain(self.accept_paused_until).min()
    }

    /// Handles readiness of the descriptors given by [`poll_fds`]
    /// (`ready` holds those with events) and returns the complete requests
    /// that arrived. Malformed, oversized and refused input is answered
    /// here.
    ///
    /// [`poll_fds`]: ControlServer::poll_fds
    fn handle_ready(&mut self, ready: &[RawFd], now: Instant) -> Vec<(ClientId, Request)> {
        let mut requests = Vec::new();
        if self.watch.as_ref().is_some_and(|w| ready.contains(&w.as_fd().as_raw_fd())) {
            self.check_socket();
        }
        let started = Instant::now();
        // Clients already connected first, then newcomers: a storm of
        // connections cannot starve a client that sent its request late.
        if ready.contains(&self.epoll.as_raw_fd()) {
            if let Err(e) = crate::os::sys::epoll_ready(&self.epoll, &mut self.events, EVENT_BATCH) {
                log::warn!("control socket: epoll_wait: {e}");
            }
            let ids: Vec<ClientId> = self.events.iter().map(|&(token, _)| token).collect();
            for id in ids {
                self.read_client(id, now, &mut requests);
                self.flush(id);
                if started.elapsed() > TURN_BUDGET {
                    break;
                }
            }
        }
        if ready.contains(&self.listener.as_raw_fd()) {
            self.accept_all(now, started, &mut requests);
        }
        self.expire(now);
        requests
    }

    /// Accepts the waiting connections (at most [`MAX_CLIENTS`] a turn, and
    /// for at most [`TURN_BUDGET`] from `started` once one is accepted),
    /// and reads at once what each has sent: a client that sends its
    /// request as it connects is served even when others hold every place.
    /// When all places are taken, the client idle the longest with nothing
    /// pending makes room.
    fn accept_all(&mut self, now: Instant, started: Instant, requests: &mut Vec<(ClientId, Request)>) {
        if self.reserve.is_none() {
            self.reserve = open_reserve();
        }
        for n in 0..MAX_CLIENTS {
            if n > 0 && started.elapsed() > TURN_BUDGET {
                break;
            }
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) && self.reserve.is_some() => {
                    log::warn!("control socket: no descriptor left ({e}); serving one client from the reserve");
                    self.reserve = None;
                    continue;
                }
                Err(e) => {
                    log::warn!("control socket: accept: {e}");
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                        self.accept_paused_until = Some(now + ACCEPT_PAUSE);
                    }
                    break;
                }
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let allowed = match getsockopt(&stream, PeerCredentials) {
                Ok(cred) => self.policy.allows(cred.uid(), cred.gid(), cred.pid()),
                Err(_) => false,
            };
            if !allowed {
                let cred = getsockopt(&stream, PeerCredentials).ok();
                log::warn!(
                    "control socket: refused peer uid {} pid {}",
                    cred.map_or(-1, |c| i64::from(c.uid())),
                    cred.map_or(-1, |c| i64::from(c.pid()))
                );
                let who = cred.map_or_else(|| "a peer of unknown uid".to_owned(), |c| format!("uid {}", c.uid()));
                let message = format!("permission denied: {who} is not allowed");
                let line = Response::error(Value::Null, ErrorCode::PermissionDenied, message).to_line();
                let _ = (&stream).write(&line);
                continue;
            }
            if self.clients.len() >= MAX_CLIENTS && !self.evict_one() {
                let line = Response::error(Value::Null, ErrorCode::Busy, "too many clients").to_line();
                let _ = (&stream).write(&line);
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            self.clients.insert(
                id,
                Client {
                    stream,
                    input: Vec::new(),
                    output: Vec::new(),
                    skipping: false,
                    in_flight: 0,
                    last_active: now,
                    partial_since: None,
                    closing: false,
                    streaming: false,
                    watched: libc::EPOLLIN as u32,
                },
            );
            let fd = self.clients[&id].stream.as_raw_fd();
            if let Err(e) = crate::os::sys::epoll_add(&self.epoll, fd, libc::EPOLLIN as u32, id) {
                log::warn!("control socket: cannot watch a client ({e}); dropping it");
                self.clients.remove(&id);
                continue;
            }
            self.read_client(id, now, requests);
            self.flush(id);
        }
    }

    /// Drops the client idle the longest among those with nothing pending;
    /// false when every client waits for an answer.
    fn evict_one(&mut self) -> bool {
        let oldest = self.clients.iter().filter(|(_, c)| c.evictable()).min_by_key(|(_, c)| c.last_active);
        match oldest.map(|(id, _)| *id) {
            Some(id) => {
                self.clients.remove(&id);
                true
            }
            None => false,
        }
    }

    fn read_client(&mut self, id: ClientId, now: Instant, requests: &mut Vec<(ClientId, Request)>) {
        let Some(c) = self.clients.get_mut(&id) else { return };
        let buf = &mut self.read_buf;
        let mut eof = false;
        // Read a bounded amount per turn, so one client cannot starve others.
        for _ in 0..16 {
            match c.stream.read(buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    c.last_active = now;
                    let seen = c.input.len();
                    c.input.extend_from_slice(&buf[..n]);
                    c.split_lines(id, seen, requests);
                    c.partial_since =
                        if c.input.is_empty() && !c.skipping { None } else { c.partial_since.or(Some(now)) };
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        if eof {
            // Half-closed: answer what is in flight, then drop.
            c.closing = true;
            if c.streaming || (c.in_flight == 0 && c.output.is_empty()) {
                self.clients.remove(&id);
            }
        }
    }

    /// Queues the answer to one of a client's requests. A client that has
    /// gone is silently skipped.
    fn respond(&mut self, id: ClientId, response: &Response) {
        let Some(c) = self.clients.get_mut(&id) else { return };
        c.in_flight = c.in_flight.saturating_sub(1);
        c.output.extend(response.to_line());
        self.flush(id);
    }

    /// Queues one line of a stream (`events`) to a client, whose request
    /// stays in flight; false when it is gone or has not read the
    /// [`MAX_OUTPUT`] bytes already queued (it is dropped then).
    fn stream(&mut self, id: ClientId, response: &Response) -> bool {
        let Some(c) = self.clients.get_mut(&id) else { return false };
        c.streaming = true;
        c.output.extend(response.to_line());
        self.flush(id);
        self.clients.contains_key(&id)
    }

    fn flush(&mut self, id: ClientId) {
        let Some(c) = self.clients.get_mut(&id) else { return };
        while !c.output.is_empty() {
            match c.stream.write(&c.output) {
                Ok(0) => break,
                Ok(n) => {
                    c.output.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.clients.remove(&id);
                    return;
                }
            }
        }
        if c.output.len() > MAX_OUTPUT || (c.closing && c.in_flight == 0 && c.output.is_empty()) {
            self.clients.remove(&id);
            return;
        }
        self.rewatch(id);
    }

    /// Drops idle clients whose time is up.
    fn expire(&mut self, now: Instant) {
        if self.accept_paused_until.is_some_and(|t| now >= t) {
            self.accept_paused_until = None;
        }
        self.clients.retain(|_, c| c.deadline().is_none_or(|d| now < d));
    }

    /// Tries for a short while to deliver what is buffered (used just
    /// before the supervisor exits).
    fn flush_all(&mut self, limit: Duration) {
        let ids: Vec<ClientId> = self.clients.keys().copied().collect();
        for id in ids {
            if let Some(c) = self.clients.get_mut(&id) {
                let _ = c.stream.set_nonblocking(false);
                let _ = c.stream.set_write_timeout(Some(limit));
                let _ = c.stream.write_all(&c.output);
                c.output.clear();
            }
        }
    }
}

impl FrontEnd for ControlServer {
    fn role(&self) -> Role {
        Role::Control
    }

    fn poll_fds(&self) -> Vec<(RawFd, i16)> {
        ControlServer::poll_fds(self)
    }

    fn deadline(&self) -> Option<Instant> {
        ControlServer::deadline(self)
    }

    fn ready(&mut self, ready: &[RawFd], now: Instant) -> Vec<(ClientId, Request)> {
        self.handle_ready(ready, now)
    }

    fn idle(&mut self, now: Instant) {
        self.expire(now);
    }

    fn respond(&mut self, client: ClientId, response: &Response) {
        ControlServer::respond(self, client, response);
    }

    fn close(&mut self, limit: Duration) {
        self.flush_all(limit);
    }

    fn repair(&mut self) -> bool {
        self.check_socket()
    }

    fn stream(&mut self, client: ClientId, line: &Response) -> bool {
        ControlServer::stream(self, client, line)
    }
}

impl Engine {
    /// Serves the control protocol on a Unix socket at `path`: one JSON
    /// request and one JSON answer per line ([`protocol`](crate::protocol)),
    /// for peers that `policy` admits (checked with `SO_PEERCRED`). The
    /// requests go the way a [`Handle`](crate::Handle)'s do.
    ///
    /// # Errors
    ///
    /// When the socket cannot be bound (another supervisor serves it, no
    /// permission).
    pub fn serve_control(&mut self, path: &Path, policy: AccessPolicy) -> Result<(), EngineError> {
        self.attach_front_end(Box::new(ControlServer::bind(path, policy)?));
        Ok(())
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        // Only our own socket: not one that a newer supervisor bound there.
        if self.intact() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests;
