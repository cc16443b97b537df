//! The pipes between a service and its transcript.
//!
//! A service's pipes are made once, when it is added, and live as long as
//! it does: every new process of the service gets the same write ends, so
//! nothing written just before a crash or just after a restart is lost.
//! The engine keeps both ends; it reads the read ends whenever `poll` says
//! they are readable.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::service::{Output, Service};
use crate::spawn::Pipes;
use crate::transcript::{Stream, Transcript};

/// The size asked for each pipe: a fast writer should not stall on a full
/// pipe while the supervisor is busy elsewhere.
const PIPE_SIZE: libc::c_int = 1 << 20;

/// How much one stream may be read in one turn, so that other services and
/// clients get their turn.
const READ_PER_TURN: usize = 4 << 20;

#[derive(Debug)]
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let (read, write) = crate::sys::pipe()?;
        // The write end is handed to children with dup2, which clears
        // close-on-exec on the copy; it must block there (a full pipe
        // makes the writer wait, it does not lose data).
        crate::sys::set_nonblocking(write.as_raw_fd(), false)?;
        // SAFETY: F_SETPIPE_SZ on our own pipe; failure is harmless.
        unsafe { libc::fcntl(read.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        Ok(Pipe { read, write })
    }
}

/// A service's captured output.
#[derive(Debug)]
pub struct ServiceOutput {
    out: Option<Pipe>,
    err: Option<Pipe>,
    transcript: Transcript,
}

impl ServiceOutput {
    /// Pipes for the streams of `svc` that go to its transcript; `None`
    /// when none does.
    ///
    /// # Errors
    ///
    /// When a pipe cannot be made (descriptor limit).
    pub fn new(svc: &Service) -> io::Result<Option<ServiceOutput>> {
        let wants = |o: &Output| *o == Output::Transcript;
        let Some(cfg) = &svc.transcript else { return Ok(None) };
        if !wants(&svc.stdout) && !wants(&svc.stderr) {
            return Ok(None);
        }
        // A transcript past the file size limit must fail, not kill us.
        crate::sys::ignore_sigxfsz();
        let out = if wants(&svc.stdout) { Some(Pipe::new()?) } else { None };
        let err = if wants(&svc.stderr) { Some(Pipe::new()?) } else { None };
        Ok(Some(ServiceOutput { out, err, transcript: Transcript::open(&svc.name, cfg.clone()) }))
    }

    /// The write ends for a new process.
    pub fn pipes(&self) -> Pipes {
        Pipes {
            stdout: self.out.as_ref().map(|p| p.write.as_raw_fd()),
            stderr: self.err.as_ref().map(|p| p.write.as_raw_fd()),
        }
    }

    /// The read ends to poll.
    pub fn poll_fds(&self) -> impl Iterator<Item = (RawFd, Stream)> + '_ {
        let out = self.out.as_ref().map(|p| (p.read.as_raw_fd(), Stream::Out));
        let err = self.err.as_ref().map(|p| (p.read.as_raw_fd(), Stream::Err));
        out.into_iter().chain(err)
    }

    /// Reads what one stream has (up to a per-turn limit) into the
    /// transcript, through `buf` (one buffer shared by all services keeps
    /// the memory of a thousand idle services small). Returns the bytes
    /// read.
    pub fn read_ready(&mut self, stream: Stream, buf: &mut [u8]) -> usize {
        let pipe = match stream {
            Stream::Out => &self.out,
            Stream::Err => &self.err,
        };
        let Some(pipe) = pipe else { return 0 };
        let mut total = 0;
        while total < READ_PER_TURN {
            match nix::unistd::read(&pipe.read, buf) {
                Ok(0) => break,
                Ok(n) => {
                    total += n;
                    self.transcript.write(stream, &buf[..n]);
                    if n < buf.len() {
                        break;
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        total
    }

    /// Reads everything that is waiting in both pipes and writes the
    /// unfinished lines (the process has ended).
    pub fn drain(&mut self, buf: &mut [u8]) {
        for stream in [Stream::Out, Stream::Err] {
            while self.read_ready(stream, buf) >= READ_PER_TURN {}
        }
        self.transcript.finish_lines();
    }

    /// Reopens the transcript file (after an outside rotation).
    pub fn reopen(&mut self) {
        self.transcript.reopen();
    }

    /// The transcript.
    pub fn transcript(&self) -> &Transcript {
        &self.transcript
    }
}
