//! Becoming a daemon, with a readiness pipe back to the caller.
//!
//! [`Daemonizer::daemonize`] forks, calls `setsid`, forks again (so the
//! daemon is not a session leader and can never get a controlling
//! terminal), changes directory, sets the umask, points standard input,
//! output and error at `/dev/null` and closes every other inherited
//! descriptor. The original process gets a [`Readiness`] to wait on; the
//! daemon gets a [`Notifier`] to say "ready" once it really serves (its
//! socket is bound, its pidfile locked), or to send its own error, which the
//! caller then reports. A daemon that dies before either is reported too.
//!
//! ```no_run
//! use std::time::Duration;
//! use supervisor_core::{Daemonized, Daemonizer};
//!
//! // SAFETY: first thing in main: no descriptor is owned yet.
//! match unsafe { Daemonizer::new().daemonize() }? {
//!     Daemonized::Parent(readiness) => {
//!         readiness.wait(Duration::from_secs(10))?; // the daemon's own error, if any
//!         println!("started");
//!     }
//!     Daemonized::Daemon(notifier) => {
//!         // ... bind sockets, lock the pidfile ...
//!         notifier.ready();
//!         // ... serve ...
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why daemonizing, or waiting for the daemon, failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// `fork` must not be used in a process with several threads.
    #[error("cannot daemonize a multi-threaded process ({0} threads)")]
    MultiThreaded(usize),
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// The call.
        what: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The daemon reported an error instead of readiness.
    #[error("{0}")]
    Failed(String),
    /// The daemon exited without reporting anything.
    #[error("the daemon exited before it was ready")]
    DiedEarly,
    /// The daemon did not report within the time allowed.
    #[error("the daemon was not ready within {0:?}")]
    Timeout(Duration),
}

fn sys(what: &'static str) -> impl FnOnce(io::Error) -> DaemonError {
    move |source| DaemonError::Sys { what, source }
}

/// How to become a daemon.
#[derive(Debug, Clone)]
pub struct Daemonizer {
    directory: PathBuf,
    umask: u32,
}

impl Default for Daemonizer {
    fn default() -> Self {
        Daemonizer::new()
    }
}

/// The two sides after [`Daemonizer::daemonize`].
#[derive(Debug)]
pub enum Daemonized {
    /// The original process: wait for the daemon's word, then exit.
    Parent(Readiness),
    /// The daemon: say "ready" (or why not) once serving.
    Daemon(Notifier),
}

/// The caller's end of the readiness pipe.
#[derive(Debug)]
pub struct Readiness {
    fd: OwnedFd,
}

/// The daemon's end of the readiness pipe.
#[derive(Debug)]
pub struct Notifier {
    fd: OwnedFd,
}

impl Daemonizer {
    /// Directory `/`, umask 022.
    #[must_use]
    pub fn new() -> Daemonizer {
        Daemonizer { directory: PathBuf::from("/"), umask: 0o022 }
    }

    /// The daemon's working directory.
    #[must_use]
    pub fn directory(mut self, dir: impl Into<PathBuf>) -> Daemonizer {
        self.directory = dir.into();
        self
    }

    /// The daemon's file mode creation mask.
    #[must_use]
    pub fn umask(mut self, umask: u32) -> Daemonizer {
        self.umask = umask;
        self
    }

    /// Detaches: returns [`Daemonized::Parent`] in the calling process and
    /// [`Daemonized::Daemon`] in the daemon.
    ///
    /// # Errors
    ///
    /// [`DaemonError::MultiThreaded`] when other threads exist (a forked
    /// copy of a multi-threaded process may deadlock); system call errors.
    ///
    /// # Safety
    ///
    /// In the daemon, standard input, output and error are `/dev/null` and
    /// every other descriptor but the notifier's is closed. The daemon must
    /// not use, or drop, anything that owned one of them before (a `File`,
    /// a socket, an `OwnedFd`): its number may name another file by then.
    /// Call it early in `main`, before such things exist, or
    /// [`forget`](std::mem::forget) them in the daemon.
    pub unsafe fn daemonize(&self) -> Result<Daemonized, DaemonError> {
        let threads = thread_count();
        if threads > 1 {
            return Err(DaemonError::MultiThreaded(threads));
        }
        let dir = self.directory.clone();
        let (r, w) = crate::os::sys::pipe().map_err(sys("pipe"))?;
        // The caller must read blocking.
        crate::os::sys::set_nonblocking(r.as_raw_fd(), false).map_err(sys("fcntl"))?;
        crate::os::sys::set_nonblocking(w.as_raw_fd(), false).map_err(sys("fcntl"))?;
        if let Some(child) = crate::os::sys::fork().map_err(sys("fork"))? {
            drop(w);
            // The first child exits as soon as it has forked the daemon.
            crate::os::reap::reap_blocking(&[child]);
            Ok(Daemonized::Parent(Readiness { fd: r }))
        } else {
            drop(r);
            // From here on, errors go to the caller through the pipe.
            let notifier = Notifier { fd: w };
            if let Err(e) = nix::unistd::setsid() {
                notifier.fail(&format!("setsid: {e}"));
                crate::os::sys::exit_now(1);
            }
            match crate::os::sys::fork() {
                Ok(Some(_)) => crate::os::sys::exit_now(0),
                Ok(None) => {}
                Err(e) => {
                    notifier.fail(&format!("fork: {e}"));
                    crate::os::sys::exit_now(1);
                }
            }
            if let Err(e) = become_daemon(&dir, self.umask, notifier.fd.as_raw_fd()) {
                notifier.fail(&e);
                crate::os::sys::exit_now(1);
            }
            Ok(Daemonized::Daemon(notifier))
        }
    }
}

fn become_daemon(dir: &Path, umask: u32, keep: RawFd) -> Result<(), String> {
    std::env::set_current_dir(dir).map_err(|e| format!("chdir {}: {e}", dir.display()))?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask as libc::mode_t));
    let null = File::options().read(true).write(true).open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
    for target in 0..3 {
        crate::os::sys::dup2(null.as_raw_fd(), target).map_err(|e| format!("dup2: {e}"))?;
    }
    drop(null);
    crate::os::sys::close_fds_from(3, &[keep]);
    Ok(())
}

fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:").map(|n| n.trim().parse().unwrap_or(1))))
        .unwrap_or(1)
}

impl Readiness {
    /// Waits for the daemon's word.
    ///
    /// # Errors
    ///
    /// [`DaemonError::Failed`] with the daemon's own message,
    /// [`DaemonError::DiedEarly`] or [`DaemonError::Timeout`].
    pub fn wait(self, timeout: Duration) -> Result<(), DaemonError> {
        let deadline = Instant::now() + timeout;
        let mut file = File::from(self.fd);
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut fds = [libc::pollfd { fd: file.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
            if left.is_zero() || crate::os::sys::poll(&mut fds, Some(left)).map_err(sys("poll"))? == 0 {
                if Instant::now() >= deadline {
                    return Err(DaemonError::Timeout(timeout));
                }
                continue;
            }
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    text.extend_from_slice(&buf[..n]);
                    if text.ends_with(b"\n") {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(sys("read")(e)),
            }
        }
        let text = String::from_utf8_lossy(&text);
        match text.trim_end() {
            "ready" => Ok(()),
            "" => Err(DaemonError::DiedEarly),
            msg => Err(DaemonError::Failed(msg.strip_prefix("error: ").unwrap_or(msg).to_string())),
        }
    }
}

impl Notifier {
    /// Prepares the notifier for a re-execution: lets its descriptor
    /// survive `exec` and returns its number, to give the new image (on
    /// its command line, say), which takes it back with
    /// [`Notifier::from_inherited`]. If the `exec` fails, this notifier
    /// still works.
    ///
    /// # Errors
    ///
    /// When its close-on-exec flag cannot be cleared.
    pub fn inheritable(&self) -> io::Result<RawFd> {
        crate::os::sys::set_cloexec(self.fd.as_raw_fd(), false)?;
        Ok(self.fd.as_raw_fd())
    }

    /// Takes back a notifier handed over by [`Notifier::inheritable`] as
    /// descriptor `fd`, and makes it close-on-exec again so that children
    /// do not inherit it. `None` when `fd` is not an open pipe above
    /// standard error.
    ///
    /// # Safety
    ///
    /// Descriptor `fd` becomes the notifier's own: call it at the start of
    /// `main`, before anything else may own that descriptor.
    #[must_use]
    pub unsafe fn from_inherited(fd: RawFd) -> Option<Notifier> {
        if fd <= 2 {
            return None;
        }
        Some(Notifier { fd: crate::os::sys::adopt_inherited_fifo(fd)? })
    }

    /// Tells the caller that the daemon serves.
    pub fn ready(self) {
        let _ = (&File::from(self.fd)).write_all(b"ready\n");
    }

    /// Tells the caller why the daemon cannot serve.
    pub fn fail(&self, message: &str) {
        let one_line = message.replace('\n', " / ");
        let _ = (&File::from(self.fd.try_clone().unwrap_or_else(|_| crate::os::sys::exit_now(1))))
            .write_all(format!("error: {one_line}\n").as_bytes());
    }
}
