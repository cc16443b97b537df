//! The supervisor's end of systemd's readiness protocol, `sd_notify(3)`.
//!
//! A service is started with `NOTIFY_SOCKET=PATH` in its environment and
//! sends datagrams to that Unix datagram socket, each a list of
//! newline-separated `KEY=VALUE` assignments (`READY=1`, `STATUS=...`,
//! `WATCHDOG=1`, ...). [`NotifySocket`] is the receiving socket, one for the
//! whole supervisor; [`parse`] reads one datagram's payload.
//!
//! Who sent a datagram is what the kernel says, not what it says itself:
//! the socket has `SO_PASSCRED` on, so every datagram comes with the
//! sender's pid (`SCM_CREDENTIALS`), which a sender can only forge with
//! `CAP_SYS_ADMIN`. That is why the socket can be mode 0666: anybody may
//! send, and the engine believes a datagram only for the service that the
//! pid belongs to.
//!
//! A peer can make the supervisor neither block nor allocate without
//! bound nor keep a descriptor:
//! - the socket is non-blocking and [`NotifySocket::receive`] takes at most
//!   the datagrams it is asked for, then returns;
//! - a payload is read into a buffer of [`MAX_PAYLOAD`] bytes; a larger
//!   datagram (`MSG_TRUNC`) is dropped whole, and a status is cut to
//!   [`MAX_STATUS_CHARS`] characters;
//! - descriptors that come with a datagram (`SCM_RIGHTS`; `systemd-notify`
//!   sends one with `BARRIER=1` and waits until it is closed) are received
//!   close-on-exec into a control buffer with room for [`MAX_FDS`], and
//!   owned ([`OwnedFd`]) as soon as they are read, so that dropping the
//!   [`Datagram`] closes them. The kernel closes those that did not fit
//!   (`MSG_CTRUNC`), and those that did are owned like the others. (`nix`'s
//!   `recvmsg` is not used for this reason: it refuses to read a truncated
//!   control buffer, which would leave the descriptors in it open.)

use std::fmt;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use nix::sys::socket::{bind, setsockopt, socket, sockopt::PassCred, AddressFamily, SockFlag, SockType, UnixAddr};

/// The largest payload taken, in bytes; a larger datagram is dropped.
pub(crate) const MAX_PAYLOAD: usize = 4096;
/// The most descriptors taken with one datagram; the kernel closes the
/// others.
pub(crate) const MAX_FDS: usize = 16;
/// The longest status kept, in characters (`pub` for the `fuzzing`
/// feature, like [`parse`]).
pub const MAX_STATUS_CHARS: usize = 256;

/// The longest socket path, in bytes: a `sockaddr_un` holds it and a NUL.
const MAX_PATH: usize = size_of::<libc::sockaddr_un>() - std::mem::offset_of!(libc::sockaddr_un, sun_path) - 1;

/// One assignment of the protocol that the supervisor understands.
///
/// `pub` (the module is crate-private) only so that the `fuzzing` feature
/// can re-export it, as it does the state machine's `Event` and `Action`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// `READY=1`: started up.
    Ready,
    /// `RELOADING=1`: reloading its configuration.
    Reloading,
    /// `STOPPING=1`: shutting down.
    Stopping,
    /// `WATCHDOG=1`: the watchdog keep-alive.
    Watchdog,
    /// `WATCHDOG=trigger`: asks to be treated as if its watchdog expired.
    WatchdogTrigger,
    /// `STATUS=...`: a line for people. Control characters are spaces, and
    /// it has at most [`MAX_STATUS_CHARS`] characters.
    Status(String),
    /// `MAINPID=N`: the service's main process is `N` (more than 0).
    MainPid(i32),
}

/// The assignment as a service writes it (`READY=1`, `STATUS=up`), which
/// [`parse`] reads back to the same message.
impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Ready => f.write_str("READY=1"),
            Message::Reloading => f.write_str("RELOADING=1"),
            Message::Stopping => f.write_str("STOPPING=1"),
            Message::Watchdog => f.write_str("WATCHDOG=1"),
            Message::WatchdogTrigger => f.write_str("WATCHDOG=trigger"),
            Message::Status(s) => write!(f, "STATUS={s}"),
            Message::MainPid(pid) => write!(f, "MAINPID={pid}"),
        }
    }
}

/// The messages in one datagram's payload, in the order written (a key
/// that repeats gives a message each time). Unknown keys, lines that are
/// not `KEY=VALUE`, values that are not UTF-8 and values the protocol does
/// not define (`READY=0`, `MAINPID=0`) are ignored. A payload with a NUL
/// byte gives nothing, as systemd ignores such a datagram whole.
///
/// `pub` (the module is crate-private) only for the `fuzzing` feature.
#[must_use]
pub fn parse(payload: &[u8]) -> Vec<Message> {
    if payload.contains(&0) {
        return Vec::new();
    }
    payload.split(|b| *b == b'\n').filter_map(assignment).collect()
}

/// The message of one line, if it is one.
fn assignment(line: &[u8]) -> Option<Message> {
    let eq = line.iter().position(|b| *b == b'=')?;
    let (key, value) = (&line[..eq], &line[eq + 1..]);
    match key {
        b"READY" => (value == b"1").then_some(Message::Ready),
        b"RELOADING" => (value == b"1").then_some(Message::Reloading),
        b"STOPPING" => (value == b"1").then_some(Message::Stopping),
        b"WATCHDOG" => match value {
            b"1" => Some(Message::Watchdog),
            b"trigger" => Some(Message::WatchdogTrigger),
            _ => None,
        },
        b"STATUS" => std::str::from_utf8(value).ok().map(|s| Message::Status(sanitize(s))),
        b"MAINPID" => main_pid(value).map(Message::MainPid),
        _ => None,
    }
}

/// A status as kept: control characters (newlines cannot be there, tabs
/// can) made spaces, at most [`MAX_STATUS_CHARS`] characters.
fn sanitize(s: &str) -> String {
    s.chars().take(MAX_STATUS_CHARS).map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// A pid written in decimal digits, more than 0.
fn main_pid(value: &[u8]) -> Option<i32> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse::<i32>().ok().filter(|pid| *pid > 0)
}

/// One datagram received.
#[derive(Debug)]
pub(crate) struct Datagram {
    /// The sender's pid from `SCM_CREDENTIALS` (`None` if the kernel gave
    /// none, or a pid outside the supervisor's pid namespace).
    pub pid: Option<i32>,
    /// What it said.
    pub messages: Vec<Message>,
    /// The descriptors that came with it (`SCM_RIGHTS`), closed when the
    /// datagram is dropped: that is what releases a `systemd-notify` that
    /// waits on `BARRIER=1`, and keeping the sender waiting until then is
    /// what keeps its pid its own while the datagram is handled.
    #[allow(dead_code)] // held, never read: dropping them is the point
    pub fds: Vec<OwnedFd>,
}

/// The supervisor's notify socket: a Unix datagram socket at a path.
/// Dropping it removes the socket file, if it is still this one.
#[derive(Debug)]
pub(crate) struct NotifySocket {
    fd: OwnedFd,
    path: PathBuf,
    /// The socket file as bound: (device, inode).
    bound: (u64, u64),
}

/// An `io::Error` that names `path` and what was done to it.
fn at<'a, E: Into<io::Error>>(path: &'a Path, what: &'a str) -> impl FnOnce(E) -> io::Error + 'a {
    move |e| {
        let e: io::Error = e.into();
        io::Error::new(e.kind(), format!("{}: {what}: {e}", path.display()))
    }
}

/// The socket address of `path`, refusing one too long for it (the
/// kernel would not truncate it, but the error would not say why).
fn address(path: &Path) -> io::Result<UnixAddr> {
    let len = path.as_os_str().as_bytes().len();
    if len > MAX_PATH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: the path is {len} bytes long; a Unix socket address holds at most {MAX_PATH}: choose a \
                 shorter directory",
                path.display()
            ),
        ));
    }
    UnixAddr::new(path).map_err(at(path, "socket address"))
}

/// Removes a socket file at `path` that nobody receives on. Anything else
/// there is left alone and refused: a live socket (another supervisor's),
/// or a file that is not a socket.
fn remove_stale(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(at(path, "stat")(e)),
    };
    if !meta.file_type().is_socket() {
        let e = io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a socket; not removing it");
        return Err(at(path, "notify socket")(e));
    }
    let probe = UnixDatagram::unbound().map_err(at(path, "socket"))?;
    match probe.connect(path) {
        Ok(()) => {
            let e = io::Error::new(io::ErrorKind::AddrInUse, "another process receives on this socket");
            Err(at(path, "notify socket")(e))
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused || e.kind() == io::ErrorKind::NotFound => {
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(at(path, "removing a stale socket")(e)),
                _ => Ok(()),
            }
        }
        Err(e) => Err(at(path, "checking the socket already there")(e)),
    }
}

impl NotifySocket {
    /// Binds a datagram socket at `path` (a stale socket file there is
    /// removed first), non-blocking, close-on-exec, with `SO_PASSCRED` on,
    /// mode 0666 so that services that run as other users can send (the
    /// pid of each datagram says who sent it). Services must also be able
    /// to reach it: every directory above needs search permission for them.
    ///
    /// # Errors
    ///
    /// Each names the path: `InvalidInput` for a path longer than a socket
    /// address holds; `AddrInUse` when another process receives on a socket
    /// there; `AlreadyExists` when a file that is not a socket is there;
    /// the system call's error otherwise.
    pub(crate) fn bind(path: &Path) -> io::Result<NotifySocket> {
        let addr = address(path)?;
        remove_stale(path)?;
        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
        let fd = socket(AddressFamily::Unix, SockType::Datagram, flags, None).map_err(at(path, "socket"))?;
        // Before bind: no datagram can arrive without its credentials.
        setsockopt(&fd, PassCred, &true).map_err(at(path, "SO_PASSCRED"))?;
        bind(fd.as_raw_fd(), &addr).map_err(at(path, "bind"))?;
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) => {
                let _ = fs::remove_file(path);
                return Err(at(path, "stat after bind")(e));
            }
        };
        // From here on, dropping it removes the file.
        let sock =
            NotifySocket { fd: super::sys::keep_high(fd), path: path.to_path_buf(), bound: (meta.dev(), meta.ino()) };
        fs::set_permissions(path, fs::Permissions::from_mode(0o666)).map_err(at(path, "chmod 0666"))?;
        Ok(sock)
    }

    /// The socket, to poll for readability (datagrams waiting).
    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The socket's path: what `NOTIFY_SOCKET` is set to.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the datagrams waiting, in the order they came, at most `max`
    /// of them, without ever blocking. A datagram over [`MAX_PAYLOAD`]
    /// bytes is dropped (its descriptors closed) and counts towards `max`,
    /// so that a flood of them cannot keep the caller here; every other
    /// datagram is returned, even one with no message.
    ///
    /// # Errors
    ///
    /// The `recvmsg` error (naming the path) when no datagram was taken
    /// before it; after some were, they are returned and the error is left
    /// for the next call to meet.
    pub(crate) fn receive(&self, max: usize) -> io::Result<Vec<Datagram>> {
        let mut out = Vec::new();
        let mut payload = [0u8; MAX_PAYLOAD];
        for _ in 0..max {
            let got = match receive_one(self.fd.as_fd(), &mut payload) {
                Ok(Some(got)) => got,
                Ok(None) => break,
                Err(e) if out.is_empty() => return Err(at(&self.path, "recvmsg")(e)),
                Err(e) => {
                    log::debug!("{}: recvmsg: {e}", self.path.display());
                    break;
                }
            };
            if got.truncated {
                log::debug!(
                    "{}: dropped a datagram of {} bytes (more than {MAX_PAYLOAD}) from pid {:?}",
                    self.path.display(),
                    got.size,
                    got.pid
                );
                continue;
            }
            if got.control_truncated {
                log::debug!(
                    "{}: took {} of the descriptors that came with a datagram from pid {:?} (at most {MAX_FDS}, \
                     or no descriptor free); the kernel closed the others",
                    self.path.display(),
                    got.fds.len(),
                    got.pid
                );
            }
            let messages = parse(&payload[..got.size.min(MAX_PAYLOAD)]);
            out.push(Datagram { pid: got.pid, messages, fds: got.fds });
        }
        Ok(out)
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        // Only our own file: not one that another socket bound there since.
        let ours = fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_socket() && (m.dev(), m.ino()) == self.bound);
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// One datagram as `recvmsg` gave it.
struct Received {
    /// Its payload's size, also when `truncated` (`MSG_TRUNC` asked).
    size: usize,
    /// Larger than the buffer: only its beginning was read.
    truncated: bool,
    /// More control data than the buffer holds: some descriptors were
    /// closed by the kernel.
    control_truncated: bool,
    pid: Option<i32>,
    fds: Vec<OwnedFd>,
}

/// Room for the credentials and [`MAX_FDS`] descriptors.
const CONTROL_LEN: usize = cmsg_space(size_of::<libc::ucred>()) + cmsg_space(MAX_FDS * size_of::<RawFd>());

const fn cmsg_space(len: usize) -> usize {
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    unsafe { libc::CMSG_SPACE(len as libc::c_uint) as usize }
}

/// A control buffer aligned for `cmsghdr`.
#[repr(C)]
struct ControlBuffer {
    _align: [libc::cmsghdr; 0],
    bytes: [u8; CONTROL_LEN],
}

/// Receives one datagram into `payload`, without blocking: `None` when
/// none is waiting.
fn receive_one(fd: BorrowedFd<'_>, payload: &mut [u8]) -> io::Result<Option<Received>> {
    let mut control = ControlBuffer { _align: [], bytes: [0; CONTROL_LEN] };
    let mut iov = libc::iovec { iov_base: payload.as_mut_ptr().cast(), iov_len: payload.len() };
    // SAFETY: msghdr is plain data (pointers and lengths); all zeros is
    // "no address, no buffers", filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.bytes.as_mut_ptr().cast();
    msg.msg_controllen = CONTROL_LEN as _;
    // MSG_TRUNC: the size returned is the datagram's, not what was read.
    let flags = libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC | libc::MSG_TRUNC;
    let size = loop {
        // SAFETY: `msg` points at `iov` (which points at `payload`) and at
        // `control`, all alive and not otherwise borrowed during the call;
        // the kernel writes at most their lengths, and updates `msg`.
        let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &raw mut msg, flags) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(e),
        }
    };
    // Owned first, so that they are closed whatever happens next.
    let (pid, fds) = take_control(&msg);
    Ok(Some(Received {
        size,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        control_truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
        pid,
        fds,
    }))
}

/// The sender's pid and the descriptors in the control data of a message
/// that `recvmsg` just filled in (`msg_controllen` is what it wrote).
// The lengths are `usize` with glibc, `socklen_t` with musl.
#[allow(clippy::unnecessary_cast)]
fn take_control(msg: &libc::msghdr) -> (Option<i32>, Vec<OwnedFd>) {
    let mut pid = None;
    let mut fds = Vec::new();
    let end = msg.msg_control as usize + msg.msg_controllen as usize;
    // SAFETY: `msg` describes a control buffer that the kernel just filled
    // in; CMSG_FIRSTHDR returns its first header if one fits, or null.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: CMSG_FIRSTHDR and CMSG_NXTHDR return only headers that
        // lie whole within the buffer.
        let (hdr, data) = unsafe { (cmsg.read_unaligned(), libc::CMSG_DATA(cmsg)) };
        // The data, never past the end of what the kernel wrote (a
        // truncated message says so in its own length, too).
        let header_len = data as usize - cmsg as usize;
        let len = (hdr.cmsg_len as usize).saturating_sub(header_len).min(end.saturating_sub(data as usize));
        match (hdr.cmsg_level, hdr.cmsg_type) {
            (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                for i in 0..len / size_of::<RawFd>() {
                    // SAFETY: the i-th int of the data, within the buffer.
                    let raw = unsafe { data.add(i * size_of::<RawFd>()).cast::<RawFd>().read_unaligned() };
                    if raw >= 0 {
                        // SAFETY: the kernel just installed this descriptor
                        // in our table for this message; nothing else has
                        // its number.
                        fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
                    }
                }
            }
            (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) if len >= size_of::<libc::ucred>() => {
                // SAFETY: a whole ucred lies within the data.
                let cred = unsafe { data.cast::<libc::ucred>().read_unaligned() };
                pid = (cred.pid > 0).then_some(cred.pid);
            }
            _ => {}
        }
        // SAFETY: `cmsg` is a header of `msg`'s buffer; CMSG_NXTHDR returns
        // the next one that fits, or null.
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
    (pid, fds)
}

pub(crate) mod client;

#[cfg(test)]
mod tests;
