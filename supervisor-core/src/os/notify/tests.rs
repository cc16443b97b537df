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
