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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::IoSlice;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use nix::errno::Errno;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use proptest::prelude::*;
    use Message::{MainPid, Ready, Reloading, Status, Stopping, Watchdog, WatchdogTrigger};

    /// How long a test waits for anything.
    const WAIT: Duration = Duration::from_secs(5);
    const SYSTEMD_NOTIFY: &str = "/usr/bin/systemd-notify";

    fn our_pid() -> i32 {
        std::process::id() as i32
    }

    /// Which of `fds` are readable (or hung up), waiting until one is, at
    /// most until `deadline`.
    fn wait_readable(fds: &[BorrowedFd<'_>], deadline: Instant) -> Vec<bool> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut polled: Vec<PollFd<'_>> = fds.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)).collect();
            match poll(&mut polled, PollTimeout::from(ms)) {
                Ok(n) if n > 0 => return polled.iter().map(|p| p.revents().is_some_and(|r| !r.is_empty())).collect(),
                Ok(_) if left.is_zero() => return vec![false; fds.len()],
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => panic!("poll: {e}"),
            }
        }
    }

    /// Receives until `n` datagrams came (failing after 5 s).
    fn receive_n(sock: &NotifySocket, n: usize) -> Vec<Datagram> {
        let deadline = Instant::now() + WAIT;
        let mut got = Vec::new();
        while got.len() < n {
            let ready = wait_readable(&[sock.fd.as_fd()], deadline)[0];
            assert!(ready, "{} datagrams of {n} came within {WAIT:?}", got.len());
            got.extend(sock.receive(n - got.len()).unwrap());
        }
        got
    }

    fn send(path: &Path, payload: &[u8]) {
        UnixDatagram::unbound().unwrap().send_to(payload, path).unwrap();
    }

    fn send_with_fds(path: &Path, payload: &[u8], fds: &[RawFd]) {
        let tx = UnixDatagram::unbound().unwrap();
        let addr = UnixAddr::new(path).unwrap();
        let rights = [ControlMessage::ScmRights(fds)];
        sendmsg(tx.as_raw_fd(), &[IoSlice::new(payload)], &rights, MsgFlags::empty(), Some(&addr)).unwrap();
    }

    /// A pipe: its read end, `n` descriptors of its write end, its inode.
    fn pipe_with_writers(n: usize) -> (OwnedFd, Vec<OwnedFd>, u64) {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let ino = nix::sys::stat::fstat(&r).unwrap().st_ino;
        let mut writers: Vec<OwnedFd> = (1..n).map(|_| w.try_clone().unwrap()).collect();
        writers.push(w);
        (r, writers, ino)
    }

    /// How many of this process's descriptors (`/proc/self/fd`) are ends
    /// of the pipe `ino`. Counting only those, not all, keeps other tests'
    /// descriptors, opened and closed meanwhile, out of the count.
    fn pipe_fds(ino: u64) -> usize {
        let want = format!("pipe:[{ino}]");
        fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == want.as_str()))
            .count()
    }

    /// Whether every write end of the pipe is closed (end-of-file), waiting
    /// for it up to 5 s: a child that another test forks meanwhile holds a
    /// copy until it execs.
    fn at_eof(r: &OwnedFd) -> bool {
        if !wait_readable(&[r.as_fd()], Instant::now() + WAIT)[0] {
            return false;
        }
        nix::unistd::read(r, &mut [0u8; 1]).unwrap() == 0
    }

    /// Whether the pipe has a writer left, without waiting.
    fn has_writer(r: &OwnedFd) -> bool {
        !wait_readable(&[r.as_fd()], Instant::now())[0]
    }

    #[test]
    fn parse_reads_what_the_protocol_defines_and_ignores_the_rest() {
        assert_eq!(
            parse(b"READY=1\nRELOADING=1\nSTOPPING=1\nWATCHDOG=1\nWATCHDOG=trigger\nMAINPID=4711\nSTATUS=a=b"),
            vec![Ready, Reloading, Stopping, Watchdog, WatchdogTrigger, MainPid(4711), Status("a=b".into())]
        );
        let ignored: &[&[u8]] = &[
            b"",
            b"\n\n",
            b"READY=0",
            b"READY=",
            b"READY",
            b"READY=1 ",
            b"READY=1\r",
            b" READY=1",
            b"ready=1",
            b"=1",
            b"WATCHDOG=0",
            b"WATCHDOG=Trigger",
            b"MAINPID=0",
            b"MAINPID=-1",
            b"MAINPID=+1",
            b"MAINPID= 1",
            b"MAINPID=2147483648",
            b"MAINPID=",
            b"MAINPID=1x",
            b"STATUS=\xff",
            b"BARRIER=1",
            b"FDSTORE=1",
            b"EXTEND_TIMEOUT_USEC=5000000",
            b"READY=1\0",
        ];
        for payload in ignored {
            assert_eq!(parse(payload), vec![], "{:?}", String::from_utf8_lossy(payload));
        }
        // A NUL anywhere: the whole datagram is ignored, as systemd does.
        assert_eq!(parse(b"READY=1\nSTATUS=a\0b"), vec![]);
        // The rest of a datagram stays when one line is bad.
        assert_eq!(parse(b"STATUS=\xff\nREADY=1\n"), vec![Ready]);
        assert_eq!(
            parse(b"STATUS=\nSTATUS=a\nSTATUS=b"),
            vec![Status(String::new()), Status("a".into()), Status("b".into())]
        );
        assert_eq!(parse(b"STATUS=a\tb\x1bc\x7fd\r"), vec![Status("a b c d ".into())]);
        assert_eq!(parse("STATUS=a\u{85}b\u{200b}".as_bytes()), vec![Status("a b\u{200b}".into())]);
        assert_eq!(parse(b"MAINPID=2147483647\nMAINPID=007"), vec![MainPid(i32::MAX), MainPid(7)]);
        // Cut at 256 characters, not bytes.
        let long = format!("STATUS={}", "é".repeat(300));
        assert_eq!(parse(long.as_bytes()), vec![Status("é".repeat(MAX_STATUS_CHARS))]);
    }

    #[test]
    fn messages_come_with_the_senders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let sock = NotifySocket::bind(&dir.path().join("notify")).unwrap();
        send(sock.path(), b"READY=1\nSTATUS=starting\tup\nBOGUS=1\nREADY=0\nMAINPID=42\n");
        send(sock.path(), b"");
        send(sock.path(), b"WATCHDOG=1");
        let got = receive_n(&sock, 3);
        assert_eq!(got[0].messages, vec![Ready, Status("starting up".into()), MainPid(42)]);
        assert_eq!(got[1].messages, vec![], "an empty datagram is returned, with no message");
        assert_eq!(got[2].messages, vec![Watchdog]);
        for d in &got {
            assert_eq!(d.pid, Some(our_pid()));
            assert!(d.fds.is_empty());
        }
        assert!(sock.receive(8).unwrap().is_empty(), "nothing more, and no waiting for it");
    }

    #[test]
    fn bind_makes_a_socket_anybody_may_send_to_and_drop_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = NotifySocket::bind(&path).unwrap();
        assert_eq!(sock.path(), path);
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o666);
        // SAFETY: the socket outlives this borrow.
        let fd = unsafe { BorrowedFd::borrow_raw(sock.fd()) };
        let fl = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert_ne!(fl & libc::O_NONBLOCK, 0, "non-blocking");
        let fdfl = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(fdfl & libc::FD_CLOEXEC, 0, "close-on-exec");
        assert!(sock.receive(8).unwrap().is_empty());
        drop(sock);
        assert!(fs::symlink_metadata(&path).is_err(), "removed on drop");

        // A file bound there since is not ours to remove.
        let sock = NotifySocket::bind(&path).unwrap();
        fs::remove_file(&path).unwrap();
        let newer = UnixDatagram::bind(&path).unwrap();
        drop(sock);
        assert!(fs::symlink_metadata(&path).is_ok(), "the newer socket is left alone");
        drop(newer);

        // A stale socket (its file left behind, nobody receiving) is replaced.
        let sock = NotifySocket::bind(&path).unwrap();
        send(&path, b"READY=1");
        assert_eq!(receive_n(&sock, 1)[0].messages, vec![Ready]);
    }

    #[test]
    fn bind_refuses_what_it_must_not_replace_and_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");

        let live = UnixDatagram::bind(&path).unwrap();
        let e = NotifySocket::bind(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        send(&path, b"x");
        assert_eq!(live.recv(&mut [0u8; 8]).unwrap(), 1, "the other socket still receives");
        drop(live);
        fs::remove_file(&path).unwrap();

        fs::write(&path, "precious\n").unwrap();
        let e = NotifySocket::bind(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "precious\n");

        let long = dir.path().join("x".repeat(MAX_PATH));
        let e = NotifySocket::bind(&long).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains(&long.display().to_string()) && e.to_string().contains("at most 107"), "{e}");
        assert!(fs::symlink_metadata(&long).is_err());

        let missing = dir.path().join("missing/notify");
        let e = NotifySocket::bind(&missing).unwrap_err();
        assert!(e.to_string().contains(&missing.display().to_string()), "{e}");
    }

    #[test]
    fn descriptors_are_closed_when_the_datagram_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let sock = NotifySocket::bind(&dir.path().join("notify")).unwrap();
        let (r, writers, ino) = pipe_with_writers(3);
        assert_eq!(pipe_fds(ino), 4);
        let raw: Vec<RawFd> = writers.iter().map(AsRawFd::as_raw_fd).collect();
        send_with_fds(sock.path(), b"BARRIER=1", &raw);
        drop(writers);
        assert_eq!(pipe_fds(ino), 1, "in flight, the copies are in no table");
        let mut got = receive_n(&sock, 1);
        assert_eq!(got[0].fds.len(), 3);
        assert_eq!(got[0].messages, vec![], "BARRIER is not a message");
        assert_eq!(got[0].pid, Some(our_pid()));
        assert_eq!(pipe_fds(ino), 4, "received: ours until dropped");
        for fd in &got[0].fds {
            let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
            assert_ne!(flags & libc::FD_CLOEXEC, 0, "received close-on-exec");
        }
        assert!(has_writer(&r));
        drop(got.pop());
        assert_eq!(pipe_fds(ino), 1, "dropping the datagram closed them");
        assert!(at_eof(&r), "no copy of the write end is left anywhere");
    }

    #[test]
    fn descriptors_past_the_control_buffer_are_closed_too() {
        let dir = tempfile::tempdir().unwrap();
        let sock = NotifySocket::bind(&dir.path().join("notify")).unwrap();
        let (r, writers, ino) = pipe_with_writers(MAX_FDS + 4);
        let raw: Vec<RawFd> = writers.iter().map(AsRawFd::as_raw_fd).collect();
        send_with_fds(sock.path(), b"READY=1", &raw);
        drop(writers);
        let got = receive_n(&sock, 1);
        let d = &got[0];
        assert_eq!((d.messages.as_slice(), d.pid), (&[Ready][..], Some(our_pid())), "the payload is whole");
        assert!(!d.fds.is_empty() && d.fds.len() <= MAX_FDS, "{} descriptors taken", d.fds.len());
        assert_eq!(pipe_fds(ino), 1 + d.fds.len(), "only those taken are in our table");
        drop(got);
        assert_eq!(pipe_fds(ino), 1);
        assert!(at_eof(&r), "the kernel closed the ones that did not fit, we the others");
    }

    #[test]
    fn an_oversized_datagram_is_dropped_whole_and_the_next_one_taken() {
        let dir = tempfile::tempdir().unwrap();
        let sock = NotifySocket::bind(&dir.path().join("notify")).unwrap();
        let (r, writers, ino) = pipe_with_writers(1);
        let mut big = b"READY=1\nSTATUS=".to_vec();
        big.resize(MAX_PAYLOAD + 1, b'x');
        send_with_fds(sock.path(), &big, &[writers[0].as_raw_fd()]);
        drop(writers);
        // The largest payload taken: exactly MAX_PAYLOAD bytes.
        let mut largest = b"STOPPING=1\nSTATUS=".to_vec();
        largest.resize(MAX_PAYLOAD, b'y');
        send(sock.path(), &largest);
        let got = receive_n(&sock, 1);
        assert_eq!(got[0].messages, vec![Stopping, Status("y".repeat(MAX_STATUS_CHARS))]);
        assert!(sock.receive(8).unwrap().is_empty());
        assert_eq!(pipe_fds(ino), 1, "the dropped datagram's descriptor was closed");
        assert!(at_eof(&r));
    }

    #[test]
    fn receive_takes_at_most_max() {
        let dir = tempfile::tempdir().unwrap();
        let sock = NotifySocket::bind(&dir.path().join("notify")).unwrap();
        for i in 0..5 {
            send(sock.path(), format!("STATUS={i}").as_bytes());
        }
        assert!(wait_readable(&[sock.fd.as_fd()], Instant::now() + WAIT)[0]);
        let status = |ds: Vec<Datagram>| ds.into_iter().flat_map(|d| d.messages).collect::<Vec<_>>();
        assert_eq!(status(sock.receive(2).unwrap()), vec![Status("0".into()), Status("1".into())]);
        assert!(sock.receive(0).unwrap().is_empty());
        assert_eq!(status(sock.receive(10).unwrap()), vec![Status("2".into()), Status("3".into()), Status("4".into())]);
        assert!(sock.receive(10).unwrap().is_empty());
    }

    /// A datagram as taken from `systemd-notify` (its descriptors closed
    /// since).
    #[derive(Debug)]
    struct Seen {
        pid: Option<i32>,
        messages: Vec<Message>,
        fds: usize,
    }

    fn systemd_notify() -> Command {
        assert!(
            Path::new(SYSTEMD_NOTIFY).exists(),
            "{SYSTEMD_NOTIFY} is missing: install Debian's `systemd` package (`apt-get install systemd`), as CI does"
        );
        Command::new(SYSTEMD_NOTIFY)
    }

    /// Runs `cmd` with `NOTIFY_SOCKET` set, taking (and dropping) the
    /// datagrams as they come until it exits, 5 s at most: what came and
    /// the child's pid. It must exit 0.
    ///
    /// Taking datagrams until it exits, not only until `READY=1` came:
    /// after that datagram it sends `BARRIER=1` in another and waits until
    /// the descriptor that comes with it is closed.
    fn run_client(sock: &NotifySocket, mut cmd: Command) -> (Vec<Seen>, i32) {
        let mut child = cmd.env("NOTIFY_SOCKET", sock.path()).stdin(Stdio::null()).spawn().unwrap();
        let pid = child.id() as i32;
        let pidfd = crate::os::sys::pidfd_open(pid).unwrap();
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        let take = |seen: &mut Vec<Seen>| {
            for d in sock.receive(16).unwrap() {
                seen.push(Seen { pid: d.pid, messages: d.messages, fds: d.fds.len() });
                // `d.fds` are closed here: a waiting barrier is released.
            }
        };
        loop {
            let ready = wait_readable(&[sock.fd.as_fd(), pidfd.as_fd()], deadline);
            take(&mut seen);
            if ready[1] {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{SYSTEMD_NOTIFY} did not exit within {WAIT:?}; datagrams: {seen:?}");
            }
        }
        take(&mut seen);
        let status = child.wait().unwrap();
        assert!(status.success(), "{SYSTEMD_NOTIFY} exited with {status}; datagrams: {seen:?}");
        (seen, pid)
    }

    /// Whether a child of ours may put another pid in its credentials:
    /// root with `CAP_SYS_ADMIN` (bit 21), which `systemd-notify` uses to
    /// send as its parent.
    fn children_can_forge_pids() -> bool {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim();
        nix::unistd::geteuid().is_root() && u64::from_str_radix(eff, 16).unwrap() & (1 << 21) != 0
    }

    #[test]
    fn systemd_notify_ready_and_status() {
        let dir = tempfile::tempdir().unwrap();
        let sock = NotifySocket::bind(&dir.path().join("notify")).unwrap();
        let mut cmd = systemd_notify();
        cmd.args(["--ready", "--status=hello world"]);
        let (seen, child) = run_client(&sock, cmd);
        let ready = seen.iter().find(|s| s.messages.contains(&Ready)).unwrap_or_else(|| panic!("no READY=1: {seen:?}"));
        assert_eq!(ready.messages, vec![Ready, Status("hello world".into())]);
        // It sends as the process that ran it (us) when it may, as itself
        // otherwise (systemd-notify(1)).
        let sender = if children_can_forge_pids() { our_pid() } else { child };
        assert_eq!(ready.pid, Some(sender), "child {child}, us {}: {seen:?}", our_pid());
        let barrier = seen.iter().find(|s| s.fds > 0).unwrap_or_else(|| panic!("no BARRIER=1 datagram: {seen:?}"));
        assert_eq!((barrier.messages.as_slice(), barrier.pid), (&[][..], Some(child)), "{seen:?}");
    }

    #[test]
    fn systemd_notify_unprivileged_sends_as_itself_and_names_its_parent_with_mainpid() {
        let dir = tempfile::tempdir().unwrap();
        // Another user must reach the socket: the directory is searchable,
        // the socket writable by anybody (0666).
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let sock = NotifySocket::bind(&dir.path().join("notify")).unwrap();
        let mut cmd = if nix::unistd::geteuid().is_root() {
            // Drop to nobody (the capabilities go with root).
            let mut cmd = Command::new("setpriv");
            cmd.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                &systemd_notify().get_program().to_string_lossy(),
            ]);
            cmd
        } else {
            systemd_notify()
        };
        cmd.args(["--ready", "--pid=auto"]);
        let (seen, child) = run_client(&sock, cmd);
        let ready = seen.iter().find(|s| s.messages.contains(&Ready)).unwrap_or_else(|| panic!("no READY=1: {seen:?}"));
        // `--pid=auto`: the process that ran it, which is us (setpriv execs).
        assert_eq!(ready.messages, vec![Ready, MainPid(our_pid())]);
        assert_eq!(ready.pid, Some(child), "unprivileged, it sends as itself: {seen:?}");
    }

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            Just(Ready),
            Just(Reloading),
            Just(Stopping),
            Just(Watchdog),
            Just(WatchdogTrigger),
            "\\PC{0,256}".prop_map(Status),
            (1..=i32::MAX).prop_map(MainPid),
        ]
    }

    const KEYS: [&str; 6] = ["READY", "RELOADING", "STOPPING", "WATCHDOG", "STATUS", "MAINPID"];

    /// Lines that give no message.
    fn ignored_line() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "",
                "READY=0",
                "READY=",
                "READY",
                "READY=1\r",
                "ready=1",
                "WATCHDOG=0",
                "MAINPID=0",
                "MAINPID=-3",
                "MAINPID=99999999999",
                "BARRIER=1",
                "FDSTORE=1",
                "=",
            ])
            .prop_map(String::from),
            "[A-Z_]{1,12}=[ -~]{0,20}"
                .prop_filter("an unknown key", |l| !KEYS.iter().any(|k| l.starts_with(&format!("{k}=")))),
        ]
    }

    /// What holds for anything `parse` returns.
    fn check(messages: &[Message]) -> Result<(), TestCaseError> {
        for m in messages {
            match m {
                Status(s) => {
                    prop_assert!(s.chars().count() <= MAX_STATUS_CHARS);
                    prop_assert!(!s.chars().any(char::is_control));
                }
                MainPid(pid) => prop_assert!(*pid > 0),
                _ => {}
            }
            prop_assert_eq!(parse(m.to_string().as_bytes()), vec![m.clone()]);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn parse_never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2 * MAX_PAYLOAD)) {
            check(&parse(&bytes))?;
        }

        #[test]
        fn parse_never_panics_on_known_keys_with_any_values(
            lines in prop::collection::vec((prop::sample::select(KEYS.to_vec()), prop::collection::vec(any::<u8>(), 0..300)), 0..12)
        ) {
            let mut payload = Vec::new();
            for (key, value) in lines {
                payload.extend_from_slice(key.as_bytes());
                payload.push(b'=');
                payload.extend_from_slice(&value);
                payload.push(b'\n');
            }
            check(&parse(&payload))?;
        }

        #[test]
        fn assignments_in_any_order_round_trip_among_ignored_lines(
            messages in prop::collection::vec(message(), 0..12),
            junk in prop::collection::vec((any::<prop::sample::Index>(), ignored_line()), 0..6),
        ) {
            let mut lines: Vec<String> = messages.iter().map(ToString::to_string).collect();
            for (at, line) in junk {
                lines.insert(at.index(lines.len() + 1), line);
            }
            prop_assert_eq!(parse(lines.join("\n").as_bytes()), messages.clone());
            check(&messages)?;
        }
    }
}
