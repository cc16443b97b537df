//! The pipes between a service and its transcript.
//!
//! A service's pipes are made once, when it is added, and live as long as
//! it does: every new process of the service writes into the same pipe, so
//! nothing written just before a crash or just after a restart is lost.
//!
//! The supervisor holds only the read end of each pipe. For every new
//! process it opens a fresh write end through `/proc/self/fd/N` (Linux
//! opens the same pipe again), hands it to the child and closes its own
//! copy, so that an idle service costs two descriptors (the pipe and the
//! transcript file), not four or five, and `fork` and `exec` stay cheap with
//! thousands of services. When no process holds a write end any more, the
//! pipe reports end-of-file and is not polled until the next start.
//!
//! stdout and stderr have a pipe each, so that a line left unfinished on
//! one stream is never completed by bytes of the other: the transcript
//! holds whole lines of each. Within a stream, lines keep their order;
//! between the streams, lines are in the order the supervisor reads them.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::model::{Output, Service};
use crate::os::spawn::Pipes;
use crate::os::transcript::{OutputStream, Transcript};

/// The size asked for each pipe: a fast writer should not stall on a full
/// pipe while the supervisor is busy elsewhere.
const PIPE_SIZE: libc::c_int = 1 << 20;

/// How much one stream may be read in one turn, so that other services and
/// clients get their turn.
const READ_PER_TURN: usize = 4 << 20;

#[derive(Debug)]
struct Pipe {
    read: OwnedFd,
    /// Kept only where `/proc` cannot give a new write end.
    write: Option<OwnedFd>,
    /// A writer may exist: poll the read end.
    live: bool,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let (read, write) = crate::os::sys::pipe()?;
        // Kept for as long as the service is: out of children's way.
        let (read, write) = (crate::os::sys::keep_high(read), crate::os::sys::keep_high(write));
        // Failure (a user over the pipe memory limit) only means a smaller pipe.
        let _ = crate::os::sys::set_pipe_size(read.as_raw_fd(), PIPE_SIZE);
        let mut pipe = Pipe { read, write: Some(write), live: false };
        if pipe.open_writer().is_ok() {
            pipe.write = None;
        } else {
            // The kept write end must block in children (a full pipe makes
            // the writer wait, it does not lose data).
            crate::os::sys::set_nonblocking(pipe.write.as_ref().map_or(-1, std::os::fd::AsRawFd::as_raw_fd), false)?;
        }
        Ok(pipe)
    }

    /// A new, blocking write end of this same pipe.
    fn open_writer(&self) -> io::Result<OwnedFd> {
        let f = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(format!("/proc/self/fd/{}", self.read.as_raw_fd()))?;
        Ok(f.into())
    }
}

/// Write ends opened for one new process; close them once it is spawned.
#[derive(Debug, Default)]
pub struct Writers {
    /// The descriptors to give the child.
    pub pipes: Pipes,
    owned: Vec<OwnedFd>,
}

/// A service's captured output.
#[derive(Debug)]
pub struct ServiceOutput {
    /// The pipes, made at the first start of a process (so that adding a
    /// service costs no descriptor, and a lack of them is a failed start,
    /// retried, not a failed add).
    out: Option<Pipe>,
    err: Option<Pipe>,
    /// Which streams go to the transcript.
    wants: [bool; 2],
    transcript: Transcript,
    /// External services: each line is logged at debug level too.
    log_lines: Option<LineLog>,
    /// A `log` readiness check that waits for a line (boxed: most
    /// services have none).
    watch: Option<Box<LineWatch>>,
}

/// The longest line a `log` readiness check looks at (the rest of a
/// longer line is not).
const WATCHED_LINE: usize = 4096;

/// Looks for a line that matches a pattern (a `log` readiness check).
#[derive(Debug)]
struct LineWatch {
    re: regex_lite::Regex,
    partial: [Vec<u8>; 2],
    matched: bool,
}

impl LineWatch {
    fn feed(&mut self, stream: OutputStream, data: &[u8]) {
        let buf = &mut self.partial[stream as usize];
        let mut rest = data;
        while !rest.is_empty() && !self.matched {
            let (line, more, whole) = match memchr::memchr(b'\n', rest) {
                Some(nl) => (&rest[..nl], &rest[nl + 1..], true),
                None => (rest, &[][..], false),
            };
            let room = WATCHED_LINE.saturating_sub(buf.len());
            buf.extend_from_slice(&line[..line.len().min(room)]);
            if whole {
                self.matched = self.re.is_match(&String::from_utf8_lossy(buf));
                buf.clear();
            }
            rest = more;
        }
    }
}

/// Logs whole lines at debug level (an external service's command output,
/// as simplevisor logs it).
#[derive(Debug)]
struct LineLog {
    name: String,
    partial: [Vec<u8>; 2],
}

impl LineLog {
    fn feed(&mut self, stream: OutputStream, data: &[u8]) {
        if !log::log_enabled!(log::Level::Debug) {
            return;
        }
        let (i, tag) = match stream {
            OutputStream::Out => (0, "out"),
            OutputStream::Err => (1, "err"),
        };
        let buf = &mut self.partial[i];
        buf.extend_from_slice(data);
        while let Some(nl) = memchr::memchr(b'\n', buf) {
            log::debug!("{} {tag}: {}", self.name, String::from_utf8_lossy(&buf[..nl]));
            buf.drain(..=nl);
        }
    }

    fn flush(&mut self) {
        for (i, tag) in [(0, "out"), (1, "err")] {
            if !self.partial[i].is_empty() {
                log::debug!("{} {tag}: {}", self.name, String::from_utf8_lossy(&self.partial[i]));
                self.partial[i].clear();
            }
        }
    }
}

impl ServiceOutput {
    /// The captured output of `svc`'s streams that go to its transcript;
    /// `None` when none does.
    pub fn new(svc: &Service) -> Option<ServiceOutput> {
        let wants = |o: &Output| *o == Output::Transcript;
        let cfg = svc.transcript.as_ref()?;
        let (out, err) = (wants(&svc.stdout), wants(&svc.stderr));
        if !out && !err {
            return None;
        }
        // A transcript past the file size limit must fail, not kill us.
        crate::os::sys::ignore_sigxfsz();
        let transcript = Transcript::open(&svc.name, cfg.clone());
        let log_lines =
            svc.kind.is_external().then(|| LineLog { name: svc.name.clone(), partial: [Vec::new(), Vec::new()] });
        Some(ServiceOutput { out: None, err: None, wants: [out, err], transcript, log_lines, watch: None })
    }

    /// Write ends for a new process; the pipes are polled from now on.
    ///
    /// # Errors
    ///
    /// When a write end cannot be opened (descriptor limit).
    pub fn writers(&mut self) -> io::Result<Writers> {
        let mut w = Writers::default();
        let mut take = |pipe: &mut Option<Pipe>| -> io::Result<Option<RawFd>> {
            let Some(p) = pipe else { return Ok(None) };
            p.live = true;
            if let Some(kept) = &p.write {
                return Ok(Some(kept.as_raw_fd()));
            }
            let fd = p.open_writer()?;
            let raw = fd.as_raw_fd();
            w.owned.push(fd);
            Ok(Some(raw))
        };
        for (pipe, wanted) in [(&mut self.out, self.wants[0]), (&mut self.err, self.wants[1])] {
            if wanted && pipe.is_none() {
                *pipe = Some(Pipe::new()?);
            }
        }
        let out = take(&mut self.out)?;
        let err = take(&mut self.err)?;
        w.pipes = Pipes { stdout: out, stderr: err, ..Pipes::default() };
        Ok(w)
    }

    /// The read ends to poll (those a writer may hold).
    pub fn poll_fds(&self) -> impl Iterator<Item = (RawFd, OutputStream)> + '_ {
        let out = self.out.as_ref().filter(|p| p.live).map(|p| (p.read.as_raw_fd(), OutputStream::Out));
        let err = self.err.as_ref().filter(|p| p.live).map(|p| (p.read.as_raw_fd(), OutputStream::Err));
        out.into_iter().chain(err)
    }

    /// Reads what one stream has (up to a per-turn limit) into the
    /// transcript, through `buf` (one buffer shared by all services keeps
    /// the memory of a thousand idle services small). Returns the bytes
    /// read.
    pub fn read_ready(&mut self, stream: OutputStream, buf: &mut [u8]) -> usize {
        let pipe = match stream {
            OutputStream::Out => &mut self.out,
            OutputStream::Err => &mut self.err,
        };
        let Some(pipe) = pipe else { return 0 };
        let mut total = 0;
        while total < READ_PER_TURN {
            match nix::unistd::read(&pipe.read, buf) {
                Ok(0) => {
                    // No writer left: quiet until the next process.
                    pipe.live = false;
                    break;
                }
                Ok(n) => {
                    total += n;
                    self.transcript.write(stream, &buf[..n]);
                    if let Some(l) = self.log_lines.as_mut() {
                        l.feed(stream, &buf[..n]);
                    }
                    if let Some(w) = self.watch.as_mut() {
                        w.feed(stream, &buf[..n]);
                    }
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

    /// Reads everything that is waiting in the pipes and writes the
    /// unfinished lines (the process has ended).
    pub fn drain(&mut self, buf: &mut [u8]) {
        for stream in [OutputStream::Out, OutputStream::Err] {
            while self.read_ready(stream, buf) >= READ_PER_TURN {}
        }
        self.transcript.finish_lines();
        if let Some(l) = self.log_lines.as_mut() {
            l.flush();
        }
    }

    /// Looks for a line that matches `re` in the output from now on
    /// (`None`: stops looking).
    pub fn watch_lines(&mut self, re: Option<regex_lite::Regex>) {
        self.watch = re.map(|re| Box::new(LineWatch { re, partial: [Vec::new(), Vec::new()], matched: false }));
    }

    /// Whether a watched line was seen (once: the watch ends with it).
    pub fn take_matched(&mut self) -> bool {
        if self.watch.as_ref().is_some_and(|w| w.matched) {
            self.watch = None;
            return true;
        }
        false
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
