//! Small wrappers around system calls that `nix` does not cover: pidfds,
//! the signal self-pipe and the child-subreaper flag. Together with
//! `spawn.rs` this is where the crate's `unsafe` lives.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::signal::Signal;
use signal_hook_registry::SigId;

/// Opens a pidfd for `pid`: a descriptor that names that one process (it
/// cannot be confused with a later process that reuses the pid) and
/// becomes readable when it exits. It is numbered at [`high_fds`] or
/// above where it can be.
///
/// # Errors
///
/// `ESRCH` when no such process exists; `ENOSYS` on kernels before 5.3.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, libc::PIDFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    // Kept for as long as the process runs: out of children's way.
    Ok(keep_high(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
}

/// Where the engine keeps the descriptors it holds per service (pidfds,
/// transcript pipes and files): at this number and above. A child is made
/// with a copy of only the descriptors below it
/// (`close_range(CLOSE_RANGE_UNSHARE)`, `spawn.rs`): with 10,000 services,
/// copying every descriptor into each child and closing them all again
/// at its `exec` was most of a restart's cost. The number is a quarter of
/// the soft `RLIMIT_NOFILE` when the engine first needs it, at most 1024.
pub fn high_fds() -> RawFd {
    static HIGH: std::sync::OnceLock<RawFd> = std::sync::OnceLock::new();
    *HIGH.get_or_init(|| {
        let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map_or(1024, |(s, _)| s);
        (soft / 4).clamp(16, 1024) as RawFd
    })
}

/// `fd` at a number of [`high_fds`] or above (close-on-exec), so that
/// children are made without a copy of it; where no such number is free,
/// `fd` as it was.
pub fn keep_high(fd: OwnedFd) -> OwnedFd {
    let high = high_fds();
    if fd.as_raw_fd() >= high {
        return fd;
    }
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own; it returns a new
    // descriptor, ours alone, or -1.
    let moved = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, high) };
    if moved < 0 {
        return fd;
    }
    // SAFETY: just returned to us alone; `fd` is closed when dropped here.
    unsafe { OwnedFd::from_raw_fd(moved) }
}

/// Sends `sig` to the process behind a pidfd.
///
/// # Errors
///
/// `ESRCH` when the process has exited.
pub fn pidfd_send_signal(fd: &OwnedFd, sig: Signal) -> io::Result<()> {
    // SAFETY: a valid pidfd, a signal number, a null siginfo and no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes this process a child subreaper: orphaned descendants are
/// re-parented to it instead of to init, so that none escapes.
///
/// # Errors
///
/// The `prctl` error.
pub fn set_child_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)
}

/// Forks: `Some(child)` in the parent, `None` in the child.
///
/// The caller must make sure the process has a single thread (see
/// [`crate::os::daemon::Daemonizer::daemonize`]), so that no lock can be held
/// by a thread that does not exist in the child.
///
/// # Errors
///
/// The `fork` error.
pub fn fork() -> io::Result<Option<i32>> {
    // SAFETY: callers only fork single-threaded processes (checked by the
    // daemonizer), so the child may go on running ordinary code.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(pid)),
    }
}

/// Ends the process at once, without running destructors or flushing
/// buffers (for a forked child that must not touch its parent's state).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// `dup2(from, to)`.
///
/// # Errors
///
/// The `dup2` error.
pub fn dup2(from: RawFd, to: RawFd) -> io::Result<()> {
    // SAFETY: dup2 only manipulates the descriptor table; `to` is replaced
    // on purpose (it is one of 0, 1, 2 in this crate).
    if unsafe { libc::dup2(from, to) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Closes every descriptor from `first` up, except those in `keep`.
pub fn close_fds_from(first: RawFd, keep: &[RawFd]) {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|k| *k >= first).collect();
    keep.sort_unstable();
    let mut lo = first as libc::c_uint;
    for k in keep.into_iter().map(|k| k as libc::c_uint).chain(std::iter::once(libc::c_uint::MAX)) {
        if k > lo {
            let hi = if k == libc::c_uint::MAX { k } else { k - 1 };
            // SAFETY: close_range only closes descriptors; those kept are
            // excluded from the range, and no Rust object owns the others in
            // a freshly daemonized process.
            let r = unsafe { libc::syscall(libc::SYS_close_range, lo, hi, 0 as libc::c_uint) };
            if r != 0 {
                // Old kernel: close one by one up to a sane limit.
                for fd in lo..=hi.min(4096) {
                    // SAFETY: as above.
                    unsafe { libc::close(fd as RawFd) };
                }
            }
        }
        lo = k.saturating_add(1);
    }
}

/// Ignores `SIGXFSZ` in this process, so that a write past the file size
/// limit fails with `EFBIG` instead of killing the process. Children get
/// the default back before `exec`.
pub fn ignore_sigxfsz() {
    // SAFETY: installing SIG_IGN runs no handler code.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// Asks for a pipe buffer of `size` bytes (`F_SETPIPE_SZ`).
///
/// # Errors
///
/// `EPERM` past the user's pipe memory limit, `EBUSY` if the data in the
/// pipe does not fit.
pub fn set_pipe_size(fd: RawFd, size: libc::c_int) -> io::Result<()> {
    // SAFETY: F_SETPIPE_SZ only resizes the pipe's buffer.
    if unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, size) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes ownership of a pipe descriptor inherited across `exec` (its
/// number passed in the environment), after checking that it is open and
/// a pipe, and marks it close-on-exec. `None` otherwise.
///
/// Call it at the start of the program, before anything else may own the
/// descriptor.
pub fn adopt_inherited_fifo(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: only borrowed for the fstat call; fstat fails on a closed fd.
    let st = nix::sys::stat::fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }).ok()?;
    if st.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return None;
    }
    set_cloexec(fd, true).ok()?;
    // SAFETY: the descriptor is open (fstat succeeded) and a pipe, handed
    // over by the previous image of this program for this purpose; nothing
    // else in this process knows its number.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets or clears `O_NONBLOCK` on a descriptor.
///
/// # Errors
///
/// The `fcntl` error.
pub fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor only change its status flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let new = if on { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
        if libc::fcntl(fd, libc::F_SETFL, new) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sets or clears `FD_CLOEXEC` on a descriptor.
///
/// # Errors
///
/// The `fcntl` error.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD on a descriptor only change its flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let new = if on { flags | libc::FD_CLOEXEC } else { flags & !libc::FD_CLOEXEC };
        if libc::fcntl(fd, libc::F_SETFD, new) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Takes an exclusive `flock` on a descriptor, waiting for it when `wait`
/// (`LOCK_EX`), or failing at once with `EWOULDBLOCK` when another open
/// file description holds it (`LOCK_EX | LOCK_NB`).
///
/// Unlike `nix`'s `Flock`, nothing unlocks it on drop: the lock belongs to
/// the open file description and lasts while any descriptor for it is
/// open, in this process or in a child that inherited one (what `setlock`
/// relies on).
///
/// # Errors
///
/// The `flock` error (`EINTR` is retried).
pub fn flock_exclusive(fd: RawFd, wait: bool) -> io::Result<()> {
    let op = if wait { libc::LOCK_EX } else { libc::LOCK_EX | libc::LOCK_NB };
    loop {
        // SAFETY: flock takes a descriptor and flags; no memory is passed.
        if unsafe { libc::flock(fd, op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Waits in `poll(2)` for the descriptors, at most `timeout` (forever
/// when `None`). A signal ends the wait early with no event, like a
/// timeout.
///
/// # Errors
///
/// The `poll` error, except `EINTR`.
pub fn poll(fds: &mut [libc::pollfd], timeout: Option<std::time::Duration>) -> io::Result<usize> {
    let ms: libc::c_int = match timeout {
        None => -1,
        // Round up, so that a deadline is never polled for early in a loop.
        Some(t) => t.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int,
    };
    // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            for f in fds.iter_mut() {
                f.revents = 0;
            }
            return Ok(0);
        }
        return Err(e);
    }
    Ok(n as usize)
}

/// A non-blocking, close-on-exec pipe: (read end, write end).
///
/// # Errors
///
/// The `pipe2` error (descriptor limit).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK).map_err(io::Error::from)
}

/// A new epoll instance (close-on-exec).
///
/// # Errors
///
/// The `epoll_create1` error (descriptor limit).
pub fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: epoll_create1 takes no pointers.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Watches descriptor `fd` for `events` (`EPOLLIN`, `EPOLLOUT`) in
/// `epoll`, or changes what a watched one is watched for. Nothing is done
/// to `fd` itself.
///
/// # Errors
///
/// The `epoll_ctl` error (`EBADF` for a closed `fd`).
pub fn epoll_watch(epoll: &OwnedFd, fd: RawFd, events: u32) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: fd as u64 };
    // SAFETY: `ev` is a valid epoll_event for the duration of the call;
    // epoll_ctl only reads it.
    let modified = unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_MOD, fd, &raw mut ev) };
    if modified == 0 {
        return Ok(());
    }
    // Not watched yet (or the descriptor number is a new file since).
    // SAFETY: as above.
    if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &raw mut ev) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Changes what `fd`, watched in `epoll` with `token`, is watched for.
///
/// # Errors
///
/// The `epoll_ctl` error (`ENOENT` when it is not watched).
pub fn epoll_modify(epoll: &OwnedFd, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: `ev` is a valid epoll_event for the duration of the call;
    // epoll_ctl only reads it.
    if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_MOD, fd, &raw mut ev) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Watches `fd` for `events` in `epoll`, with `token` as the data its
/// events carry.
///
/// # Errors
///
/// The `epoll_ctl` error (`EBADF` for a closed `fd`, `EEXIST` when it is
/// watched already).
pub fn epoll_add(epoll: &OwnedFd, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: `ev` is a valid epoll_event for the duration of the call;
    // epoll_ctl only reads it.
    if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &raw mut ev) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The events ready in `epoll` now, without waiting: (token, events)
/// pairs in `out` (cleared first), at most its capacity.
///
/// # Errors
///
/// The `epoll_wait` error other than `EINTR`.
pub fn epoll_ready(epoll: &OwnedFd, out: &mut Vec<(u64, u32)>, max: usize) -> io::Result<()> {
    out.clear();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; max.max(1)];
    // SAFETY: `events` is a valid, exclusively borrowed buffer of
    // `events.len()` epoll_event; the kernel writes at most that many.
    let n = unsafe { libc::epoll_wait(epoll.as_raw_fd(), events.as_mut_ptr(), events.len() as libc::c_int, 0) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(e) };
    }
    out.extend(events[..n as usize].iter().map(|e| (e.u64, e.events)));
    Ok(())
}

/// Stops watching `fd` in `epoll` (nothing happens when it was not
/// watched, or is closed: the kernel forgets closed files itself).
pub fn epoll_forget(epoll: &OwnedFd, fd: RawFd) {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: `ev` is valid for the call (older kernels want a non-null
    // pointer even for EPOLL_CTL_DEL).
    unsafe {
        libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &raw mut ev);
    }
}

/// Signal handlers that write the signal number into a self-pipe, and
/// nothing else. Dropping it unregisters them.
#[derive(Debug)]
pub struct SignalPipe {
    read: OwnedFd,
    // Kept open for the handlers; closed after they are unregistered.
    write: OwnedFd,
    ids: Vec<SigId>,
}

impl SignalPipe {
    /// An empty self-pipe with no handlers yet.
    ///
    /// # Errors
    ///
    /// When the pipe cannot be created.
    pub fn new() -> io::Result<SignalPipe> {
        let (read, write) = pipe()?;
        Ok(SignalPipe { read, write, ids: Vec::new() })
    }

    /// Adds a handler for `sig`.
    ///
    /// # Errors
    ///
    /// For a signal that cannot be caught (`KILL`, `STOP`).
    pub fn add(&mut self, sig: Signal) -> io::Result<()> {
        let fd = self.write.as_raw_fd();
        let byte = sig as u8;
        // SAFETY: the handler only calls write(2) on a non-blocking pipe and
        // saves and restores errno: both are async-signal-safe. The write
        // end outlives the registration (unregistered in Drop first).
        let id = unsafe {
            signal_hook_registry::register(sig as libc::c_int, move || {
                let saved = *libc::__errno_location();
                libc::write(fd, (&raw const byte).cast(), 1);
                *libc::__errno_location() = saved;
            })
        }?;
        self.ids.push(id);
        Ok(())
    }

    /// The end to poll for readability.
    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Reads the signals that arrived since the last call (duplicates
    /// collapsed, order kept).
    pub fn drain(&self) -> Vec<Signal> {
        let mut out: Vec<Signal> = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match nix::unistd::read(&self.read, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    for b in &buf[..n] {
                        if let Ok(s) = Signal::try_from(i32::from(*b)) {
                            if !out.contains(&s) {
                                out.push(s);
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook_registry::unregister(id);
        }
    }
}

/// `CLOCK_MONOTONIC` in microseconds (what `sd_notify`'s
/// `MONOTONIC_USEC=` carries).
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always
    // exists on Linux.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts);
    }
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_reaches_the_pipe() {
        let mut p = SignalPipe::new().unwrap();
        p.add(Signal::SIGUSR2).unwrap();
        nix::sys::signal::raise(Signal::SIGUSR2).unwrap();
        assert_eq!(p.drain(), vec![Signal::SIGUSR2]);
        assert!(p.drain().is_empty());
    }

    #[test]
    fn pidfd_becomes_readable_when_the_process_exits() {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let fd = pidfd_open(child.id() as i32).unwrap();
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::ZERO).unwrap(), 0, "alive: not readable");
        pidfd_send_signal(&fd, Signal::SIGKILL).unwrap();
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::from(10_000u16)).unwrap(), 1, "dead: readable");
        child.wait().unwrap();
    }
}
