//! Transcripts: a service's standard output and error, captured through
//! pipes and appended to a file, line by line.
//!
//! Only whole lines are written: what a stream sends after its last newline
//! waits for the rest of its line (or for the process to end), so lines of
//! stdout and stderr never cut into each other and rotation never splits
//! one. Each line can carry a timestamp (RFC 3339, or TAI64N as
//! daemontools' `multilog` writes it) and a stream tag (`out`/`err`).
//!
//! A transcript that cannot be written (disk full, file size limit, a
//! removed directory) never blocks the service: the bytes are dropped and
//! counted, the error is logged once, and writing resumes as soon as it
//! works again.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::model::TranscriptConfig;

/// The longest line kept waiting for its end; longer ones are written in
/// pieces of this size.
pub const MAX_LINE: usize = 64 * 1024;

/// How often a transcript that cannot be opened is tried again.
const RETRY_OPEN: Duration = Duration::from_secs(1);

/// Which stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// Standard output.
    Out,
    /// Standard error.
    Err,
}

impl OutputStream {
    fn tag(self) -> &'static [u8] {
        match self {
            OutputStream::Out => b"out ",
            OutputStream::Err => b"err ",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// An open transcript.
#[derive(Debug)]
pub struct Transcript {
    cfg: TranscriptConfig,
    file: Option<File>,
    size: u64,
    partial: [Vec<u8>; 2],
    out: Vec<u8>,
    dropped: u64,
    written: u64,
    failing: Option<String>,
    retry_open: Option<Instant>,
    name: String,
}

impl Transcript {
    /// The transcript of service `name`. The file is opened (created if
    /// needed) when the first line arrives; one that cannot be opened is
    /// not an error: it is tried again later, and the output is counted as
    /// dropped meanwhile.
    #[must_use]
    pub fn open(name: &str, cfg: TranscriptConfig) -> Transcript {
        // Nothing is opened yet: a thousand services that never write cost
        // no files and no descriptors.
        Transcript {
            cfg,
            file: None,
            size: 0,
            partial: [Vec::new(), Vec::new()],
            out: Vec::new(),
            dropped: 0,
            written: 0,
            failing: None,
            retry_open: None,
            name: name.to_string(),
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &TranscriptConfig {
        &self.cfg
    }

    /// Bytes that could not be written so far.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes written to the file so far (timestamps and tags included).
    #[must_use]
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The current write error, if writing fails.
    #[must_use]
    pub fn error(&self) -> Option<&str> {
        self.failing.as_deref()
    }

    fn try_open(&mut self, now: Instant) {
        match open_append(&self.cfg.path) {
            Ok(f) => {
                self.size = f.metadata().map_or(0, |m| m.len());
                self.file = Some(f);
                self.retry_open = None;
            }
            Err(e) => {
                self.file = None;
                self.retry_open = Some(now + RETRY_OPEN);
                self.fail(format!("open {}: {e}", self.cfg.path.display()));
            }
        }
    }

    fn fail(&mut self, msg: String) {
        if self.failing.is_none() {
            log::error!("{}: transcript: {msg}; output is dropped until it can be written", self.name);
        }
        self.failing = Some(msg);
    }

    fn recovered(&mut self) {
        if let Some(msg) = self.failing.take() {
            log::warn!("{}: transcript writable again after: {msg} ({} bytes dropped so far)", self.name, self.dropped);
        }
    }

    /// Closes and reopens the file at the configured path: after an
    /// outside tool renamed it, new lines go to a new file.
    pub fn reopen(&mut self) {
        if self.file.is_some() || self.failing.is_some() {
            self.file = None;
            self.try_open(Instant::now());
        }
    }

    /// Takes a chunk read from one stream and writes every line it
    /// completes.
    pub fn write(&mut self, stream: OutputStream, data: &[u8]) {
        let pending = &mut self.partial[stream.index()];
        let Some(last_nl) = memchr::memrchr(b'\n', data) else {
            pending.extend_from_slice(data);
            while self.partial[stream.index()].len() >= MAX_LINE {
                let mut piece: Vec<u8> = self.partial[stream.index()].drain(..MAX_LINE).collect();
                piece.push(b'\n');
                self.emit(stream, &piece);
            }
            return;
        };
        let (complete, rest) = data.split_at(last_nl + 1);
        if pending.is_empty() {
            self.emit(stream, complete);
        } else {
            let mut joined = std::mem::take(pending);
            joined.extend_from_slice(complete);
            self.emit(stream, &joined);
        }
        self.partial[stream.index()].extend_from_slice(rest);
    }

    /// Writes what is left of unfinished lines (the process ended), each
    /// with a newline added.
    pub fn finish_lines(&mut self) {
        for stream in [OutputStream::Out, OutputStream::Err] {
            if !self.partial[stream.index()].is_empty() {
                let mut line = std::mem::take(&mut self.partial[stream.index()]);
                line.push(b'\n');
                self.emit(stream, &line);
            }
        }
    }

    /// Formats whole lines (`lines` ends with a newline) and writes them.
    fn emit(&mut self, stream: OutputStream, lines: &[u8]) {
        if self.file.is_none() {
            let now = Instant::now();
            if self.retry_open.is_none_or(|t| now >= t) {
                self.try_open(now);
            }
            if self.file.is_none() {
                self.dropped += lines.len() as u64;
                return;
            }
        }
        if !self.cfg.per_line() {
            self.write_out(lines);
            return;
        }
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let stamp = self.cfg.timestamps.stamp(SystemTime::now());
        let prefix_len = stamp.len() + if self.cfg.tag { 4 } else { 0 };
        if prefix_len == 0 {
            // Rotation only: whole runs of lines at once, cut at the last
            // newline that still fits.
            self.emit_rotating(lines);
            self.out = out;
            return;
        }
        let count = memchr::memchr_iter(b'\n', lines).count();
        out.reserve(lines.len() + count * prefix_len);
        let mut start_of_line = 0;
        for end in memchr::memchr_iter(b'\n', lines) {
            let line = &lines[start_of_line..=end];
            start_of_line = end + 1;
            let start = out.len();
            out.extend_from_slice(stamp.as_bytes());
            if self.cfg.tag {
                out.extend_from_slice(stream.tag());
            }
            out.extend_from_slice(line);
            if let Some(max) = self.cfg.max_size {
                let pending_size = self.size + out.len() as u64;
                if pending_size > max && self.size + start as u64 > 0 {
                    // This line would pass the limit: write what comes
                    // before it, rotate, and start the new file with it.
                    let line_bytes = out.split_off(start);
                    self.write_out(&out);
                    self.rotate();
                    out = line_bytes;
                }
            }
        }
        self.write_out(&out);
        self.out = out;
    }

    /// Writes whole lines with rotation but no prefixes: as many lines at
    /// once as fit before the size limit.
    fn emit_rotating(&mut self, mut lines: &[u8]) {
        let max = self.cfg.max_size.unwrap_or(u64::MAX);
        while !lines.is_empty() {
            let room = max.saturating_sub(self.size);
            if lines.len() as u64 <= room {
                self.write_out(lines);
                return;
            }
            // The lines that fit, up to the last newline within the room.
            let fit = memchr::memrchr(b'\n', &lines[..room.min(lines.len() as u64) as usize]).map(|i| i + 1);
            match fit {
                Some(n) => {
                    self.write_out(&lines[..n]);
                    lines = &lines[n..];
                    self.rotate();
                }
                None if self.size > 0 => self.rotate(),
                None => {
                    // A single line longer than the limit goes alone.
                    let n = memchr::memchr(b'\n', lines).map_or(lines.len(), |i| i + 1);
                    self.write_out(&lines[..n]);
                    lines = &lines[n..];
                    if !lines.is_empty() {
                        self.rotate();
                    }
                }
            }
        }
    }

    fn write_out(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let Some(file) = self.file.as_mut() else {
            self.dropped += bytes.len() as u64;
            return;
        };
        let mut written = 0;
        let mut error = None;
        while written < bytes.len() {
            match file.write(&bytes[written..]) {
                Ok(0) => {
                    error = Some(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let Some(e) = error else {
            self.size += written as u64;
            self.written += written as u64;
            self.recovered();
            return;
        };
        // A short write must not leave the start of a line behind for the
        // next line to be glued to: cut the file back to the last whole
        // line that made it.
        let whole = bytes[..written].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if whole < written && file.set_len(self.size + whole as u64).is_err() {
            // Cannot cut it: end the fragment instead, if there is room.
            let _ = file.write(b"\n");
        }
        self.size += whole as u64;
        self.written += whole as u64;
        self.dropped += (bytes.len() - whole) as u64;
        self.fail(format!("write {}: {e}", self.cfg.path.display()));
    }

    /// `PATH.(N-1)` -> `PATH.N`, ..., `PATH` -> `PATH.1`, then a new `PATH`.
    fn rotate(&mut self) {
        let keep = self.cfg.keep;
        let path = self.cfg.path.clone();
        let numbered = |n: usize| {
            let mut p = path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if keep == 0 {
            let _ = fs::remove_file(&path);
        } else {
            for n in (1..keep).rev() {
                let _ = fs::rename(numbered(n), numbered(n + 1));
            }
            if let Err(e) = fs::rename(&path, numbered(1)) {
                self.fail(format!("rotate {}: {e}", path.display()));
            }
        }
        self.file = None;
        // The old file is gone from the path; even if the new one cannot be
        // opened, counting starts over (and the loop above moves on).
        self.size = 0;
        self.try_open(Instant::now());
    }
}

/// Opens the transcript for appending, creating it; never through a
/// symbolic link (one planted in the directory would make the supervisor
/// write wherever it points).
fn open_append(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)?;
    Ok(File::from(crate::os::sys::keep_high(f.into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn only_whole_lines_are_written_and_streams_do_not_mix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.log");
        let mut cfg = TranscriptConfig::new(&path);
        cfg.tag = true;
        let mut t = Transcript::open("t", cfg);
        t.write(OutputStream::Out, b"hel");
        t.write(OutputStream::Err, b"oops\nhalf");
        t.write(OutputStream::Out, b"lo\nworld\n");
        assert_eq!(read(&path), "err oops\nout hello\nout world\n");
        t.finish_lines();
        assert_eq!(read(&path), "err oops\nout hello\nout world\nerr half\n");
    }

    #[test]
    fn appends_and_never_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.log");
        fs::write(&path, "old\n").unwrap();
        let mut t = Transcript::open("t", TranscriptConfig::new(&path));
        t.write(OutputStream::Out, b"new\n");
        assert_eq!(read(&path), "old\nnew\n");
    }

    #[test]
    fn rotation_keeps_every_line_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.log");
        let mut cfg = TranscriptConfig::new(&path);
        cfg.max_size = Some(100);
        cfg.keep = 3;
        let mut t = Transcript::open("t", cfg);
        for i in 0..40 {
            t.write(OutputStream::Out, format!("line {i:04} xxxxxxxxxx\n").as_bytes());
        }
        let mut all = String::new();
        for name in ["t.log.3", "t.log.2", "t.log.1", "t.log"] {
            let text = read(&dir.path().join(name));
            assert!(text.len() <= 100, "{name} is {} bytes", text.len());
            assert!(text.ends_with('\n'));
            all.push_str(&text);
        }
        assert!(!dir.path().join("t.log.4").exists());
        let lines: Vec<&str> = all.lines().collect();
        assert!(lines.iter().all(|l| l.len() == 20), "no split line: {lines:?}");
        // The newest lines survive, in order.
        assert_eq!(*lines.last().unwrap(), "line 0039 xxxxxxxxxx");
        let nums: Vec<u32> = lines.iter().map(|l| l[5..9].parse().unwrap()).collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1));
    }

    #[test]
    fn reopen_follows_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.log");
        let mut t = Transcript::open("t", TranscriptConfig::new(&path));
        t.write(OutputStream::Out, b"one\n");
        fs::rename(&path, dir.path().join("t.log.old")).unwrap();
        t.write(OutputStream::Out, b"two\n");
        t.reopen();
        t.write(OutputStream::Out, b"three\n");
        assert_eq!(read(&dir.path().join("t.log.old")), "one\ntwo\n");
        assert_eq!(read(&path), "three\n");
    }

    #[test]
    fn an_unwritable_transcript_counts_drops_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("gone");
        fs::create_dir(&sub).unwrap();
        let path = sub.join("t.log");
        let mut t = Transcript::open("t", TranscriptConfig::new(&path));
        assert!(!path.exists(), "made with the first line, not before");
        t.write(OutputStream::Out, b"first\n");
        fs::remove_file(&path).unwrap();
        fs::remove_dir(&sub).unwrap();
        t.reopen();
        t.write(OutputStream::Out, b"lost\n");
        assert_eq!(t.dropped(), 5);
        assert!(t.error().is_some());
        fs::create_dir(&sub).unwrap();
        t.retry_open = Some(Instant::now());
        t.write(OutputStream::Out, b"back\n");
        assert_eq!(read(&path), "back\n");
        assert!(t.error().is_none());
        assert_eq!(t.written(), 11, "what was written is counted, what was lost is not");
    }

    #[test]
    fn endless_lines_are_cut_into_pieces_of_max_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.log");
        let mut t = Transcript::open("t", TranscriptConfig::new(&path));
        let chunk = vec![b'x'; 50_000];
        for _ in 0..4 {
            t.write(OutputStream::Out, &chunk);
        }
        let text = read(&path);
        assert_eq!(text.lines().map(str::len).collect::<Vec<_>>(), [MAX_LINE, MAX_LINE, MAX_LINE]);
        t.finish_lines();
        assert_eq!(read(&path).len(), 200_000 + 4);
    }

    #[test]
    fn a_planted_symbolic_link_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        fs::write(&target, "precious\n").unwrap();
        let path = dir.path().join("web.log");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let mut t = Transcript::open("web", TranscriptConfig::new(&path));
        t.write(OutputStream::Out, b"a line\n");
        t.finish_lines();
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious\n");
        assert_eq!(t.dropped(), 7, "the loss is counted");
        assert!(t.error().is_some_and(|e| e.contains("web.log")), "{:?}", t.error());
    }
}
