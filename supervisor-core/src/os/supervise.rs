//! The `supervise/` directory of a daemontools service directory, byte for
//! byte as daemontools' `supervise` and runit's `runsv` keep it, so that
//! `svc`, `svstat`, `svok` and runit's `sv` work against this supervisor
//! unchanged.
//!
//! - `supervise/lock`: locked (`flock`) for as long as the directory is
//!   supervised; a second supervisor is refused.
//! - `supervise/control`: a FIFO (0600) from which control letters are read
//!   (`svc -u` writes `u`).
//! - `supervise/ok`: a FIFO (0600) kept open for reading, so that opening it
//!   for writing (what `svok` does) succeeds only while supervised.
//! - `supervise/status`: 20 bytes, written to `status.new` and renamed:
//!   a TAI64N time of the last change (12 bytes), the pid (4 bytes, little
//!   endian, 0 when down), a paused flag, the wanted state (`u`/`d`), a
//!   "got TERM" flag and the run state (0 down, 1 run, 2 finish). The first
//!   18 bytes are daemontools' record; the last two are runit's extension.
//! - `supervise/stat` and `supervise/pid`: runit's text files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

/// Why a service directory cannot be supervised.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SuperviseError {
    /// Another supervisor holds `supervise/lock`.
    #[error("{0}: already supervised (supervise/lock is held)")]
    AlreadySupervised(PathBuf),
    /// A file system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SuperviseError + '_ {
    move |source| SuperviseError::Io { path: path.to_path_buf(), source }
}

/// Whether the process runs, and what the supervisor does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// No process.
    Down,
    /// The `run` process runs.
    Run,
    /// The `finish` script runs.
    Finish,
}

/// One `supervise/status` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SvStatus {
    /// When the process started or stopped, or the wanted state changed.
    pub since: SystemTime,
    /// The `run` process.
    pub pid: Option<i32>,
    /// Stopped with `SIGSTOP`.
    pub paused: bool,
    /// The wanted state: `Some(true)` up, `Some(false)` down.
    pub want_up: Option<bool>,
    /// A `TERM` was sent and the process has not exited yet.
    pub got_term: bool,
    /// What runs.
    pub state: RunState,
}

/// The TAI64N label of a time: 2^62 + 10 + seconds since 1970 (as
/// daemontools' `tai_now` counts), big endian, then nanoseconds.
pub fn tai64n(t: SystemTime) -> [u8; 12] {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&((1u64 << 62) + 10 + d.as_secs()).to_be_bytes());
    out[8..].copy_from_slice(&d.subsec_nanos().to_be_bytes());
    out
}

/// The time of a TAI64N label.
pub fn from_tai64n(b: &[u8]) -> Option<SystemTime> {
    let secs = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
    let nanos = u32::from_be_bytes(b.get(8..12)?.try_into().ok()?);
    let unix = secs.checked_sub((1u64 << 62) + 10)?;
    Some(UNIX_EPOCH + Duration::new(unix, nanos.min(999_999_999)))
}

impl SvStatus {
    /// The 20-byte record.
    #[must_use]
    pub fn encode(&self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[..12].copy_from_slice(&tai64n(self.since));
        b[12..16].copy_from_slice(&(self.pid.unwrap_or(0) as u32).to_le_bytes());
        b[16] = u8::from(self.paused && self.pid.is_some());
        b[17] = match self.want_up {
            Some(true) => b'u',
            Some(false) => b'd',
            None => 0,
        };
        b[18] = u8::from(self.got_term);
        b[19] = match self.state {
            RunState::Down => 0,
            RunState::Run => 1,
            RunState::Finish => 2,
        };
        b
    }

    /// Reads a record of 18 bytes (daemontools) or 20 (runit, this crate).
    #[must_use]
    pub fn decode(b: &[u8]) -> Option<SvStatus> {
        if b.len() < 18 {
            return None;
        }
        let pid = u32::from_le_bytes(b[12..16].try_into().ok()?) as i32;
        let pid = (pid > 0).then_some(pid);
        Some(SvStatus {
            since: from_tai64n(&b[..12])?,
            pid,
            paused: b[16] != 0,
            want_up: match b[17] {
                b'u' => Some(true),
                b'd' => Some(false),
                _ => None,
            },
            got_term: b.get(18).is_some_and(|x| *x != 0),
            state: match b.get(19) {
                Some(2) => RunState::Finish,
                Some(1) => RunState::Run,
                Some(_) => RunState::Down,
                None if pid.is_some() => RunState::Run,
                None => RunState::Down,
            },
        })
    }

    /// Reads `DIR/supervise/status`.
    ///
    /// # Errors
    ///
    /// I/O errors; `InvalidData` for a short or bad record.
    pub fn read(service_dir: &Path) -> io::Result<SvStatus> {
        let bytes = fs::read(service_dir.join("supervise/status"))?;
        SvStatus::decode(&bytes).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad supervise/status"))
    }

    /// runit's `supervise/stat` text: `run`, `down` or `finish`, with
    /// `, paused`, `, got TERM`, `, want up`/`, want down` as they apply.
    #[must_use]
    pub fn stat_text(&self) -> String {
        let mut s = String::from(match self.state {
            RunState::Down => "down",
            RunState::Run => "run",
            RunState::Finish => "finish",
        });
        if self.paused && self.pid.is_some() {
            s.push_str(", paused");
        }
        if self.got_term {
            s.push_str(", got TERM");
        }
        match (self.want_up, self.pid.is_some()) {
            (Some(true), false) => s.push_str(", want up"),
            (Some(false), true) => s.push_str(", want down"),
            _ => {}
        }
        s
    }
}

/// Whether a supervisor serves the directory (what `svok` checks).
#[must_use]
pub fn is_supervised(service_dir: &Path) -> bool {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(service_dir.join("supervise/ok"))
        .is_ok()
}

/// Sends control letters to a supervised directory (what `svc` does).
///
/// # Errors
///
/// `ENXIO` (as `io::Error`) when nobody supervises it.
pub fn send_control(service_dir: &Path, letters: &str) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(service_dir.join("supervise/control"))?;
    f.write_all(letters.as_bytes())
}

/// The `supervise/` directory of one supervised service directory.
#[derive(Debug)]
pub struct SuperviseDir {
    dir: PathBuf,
    _lock: Flock<File>,
    control: File,
    // Kept open so that the control FIFO never reports end-of-file.
    _control_writer: File,
    // Kept open for reading so that `svok` succeeds.
    _ok: File,
    last: Option<[u8; 20]>,
}

/// Makes the FIFO at `path` (an existing one is kept) and opens it for
/// reading, mode 0600. Never through a symbolic link planted in its place:
/// that would let whoever planted it have the supervisor chmod or read
/// another file.
fn mkfifo(path: &Path) -> Result<File, SuperviseError> {
    match nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(io_err(path)(e.into())),
    }
    let fifo = open_fifo(path, false)?;
    let meta = fifo.metadata().map_err(io_err(path))?;
    if !meta.file_type().is_fifo() {
        let e = io::Error::new(io::ErrorKind::InvalidInput, "not a FIFO; refusing to use it");
        return Err(io_err(path)(e));
    }
    fifo.set_permissions(fs::Permissions::from_mode(0o600)).map_err(io_err(path))?;
    Ok(fifo)
}

fn open_fifo(path: &Path, write: bool) -> Result<File, SuperviseError> {
    OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err(path))
}

impl SuperviseDir {
    /// Creates (if needed) and takes `SERVICE_DIR/supervise/`.
    ///
    /// # Errors
    ///
    /// [`SuperviseError::AlreadySupervised`] when another supervisor holds
    /// the lock; file system errors.
    pub fn open(service_dir: &Path) -> Result<SuperviseDir, SuperviseError> {
        let dir = service_dir.join("supervise");
        fs::DirBuilder::new().mode(0o700).create(&dir).or_else(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(io_err(&dir)(e)),
        })?;
        let lock_path = dir.join("lock");
        let lock_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock)
            .map_err(|_| SuperviseError::AlreadySupervised(service_dir.to_path_buf()))?;
        let control_path = dir.join("control");
        let ok_path = dir.join("ok");
        let control = mkfifo(&control_path)?;
        let control_writer = open_fifo(&control_path, true)?;
        let ok = mkfifo(&ok_path)?;
        Ok(SuperviseDir { dir, _lock: lock, control, _control_writer: control_writer, _ok: ok, last: None })
    }

    /// The control FIFO, to poll for readability.
    pub(crate) fn control_fd(&self) -> RawFd {
        self.control.as_raw_fd()
    }

    /// The control letters that arrived.
    pub(crate) fn read_control(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            match self.control.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        out
    }

    /// Writes the status record (and runit's `stat` and `pid`), if it
    /// changed.
    ///
    /// # Errors
    ///
    /// File system errors.
    pub(crate) fn write_status(&mut self, st: &SvStatus) -> io::Result<()> {
        let bytes = st.encode();
        if self.last == Some(bytes) {
            return Ok(());
        }
        let write = |name: &str, data: &[u8]| -> io::Result<()> {
            let tmp = self.dir.join(format!("{name}.new"));
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(&tmp)?;
            f.write_all(data)?;
            drop(f);
            fs::rename(&tmp, self.dir.join(name))
        };
        write("status", &bytes)?;
        write("stat", format!("{}\n", st.stat_text()).as_bytes())?;
        write("pid", st.pid.map(|p| format!("{p}\n")).unwrap_or_default().as_bytes())?;
        self.last = Some(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_layout() {
        let since = UNIX_EPOCH + Duration::new(1_795_246_200, 5);
        let st = SvStatus {
            since,
            pid: Some(0x1234),
            paused: true,
            want_up: Some(false),
            got_term: true,
            state: RunState::Run,
        };
        let b = st.encode();
        assert_eq!(&b[..8], &((1u64 << 62) + 10 + 1_795_246_200).to_be_bytes());
        assert_eq!(&b[8..12], &5u32.to_be_bytes());
        assert_eq!(&b[12..16], &[0x34, 0x12, 0, 0]);
        assert_eq!(&b[16..], &[1, b'd', 1, 1]);
        assert_eq!(SvStatus::decode(&b), Some(st));
        // daemontools' 18-byte record.
        let old = SvStatus::decode(&b[..18]).unwrap();
        assert_eq!((old.pid, old.state, old.got_term), (Some(0x1234), RunState::Run, false));
        assert!(SvStatus::decode(&b[..17]).is_none());
        assert_eq!(st.stat_text(), "run, paused, got TERM, want down");
    }

    #[test]
    fn directory_lock_fifos_and_status() {
        let dir = tempfile::tempdir().unwrap();
        let mut sd = SuperviseDir::open(dir.path()).unwrap();
        assert!(matches!(SuperviseDir::open(dir.path()), Err(SuperviseError::AlreadySupervised(_))));
        assert!(is_supervised(dir.path()));
        send_control(dir.path(), "ux").unwrap();
        assert_eq!(sd.read_control(), b"ux");
        assert!(sd.read_control().is_empty());
        let st = SvStatus {
            since: SystemTime::now(),
            pid: None,
            paused: false,
            want_up: Some(true),
            got_term: false,
            state: RunState::Down,
        };
        sd.write_status(&st).unwrap();
        assert_eq!(fs::read(dir.path().join("supervise/status")).unwrap().len(), 20);
        assert_eq!(fs::read_to_string(dir.path().join("supervise/stat")).unwrap(), "down, want up\n");
        let mode = fs::metadata(dir.path().join("supervise")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        drop(sd);
        // A child forked by another test at this moment may hold a copy of
        // our descriptors until it execs: wait for that, with a deadline.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while is_supervised(dir.path()) {
            assert!(std::time::Instant::now() < deadline, "nobody reads ok any more");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(send_control(dir.path(), "u").is_err());
    }

    #[test]
    fn planted_links_for_the_fifos_are_refused_and_their_targets_untouched() {
        for name in ["control", "ok"] {
            let dir = tempfile::tempdir().unwrap();
            let target = dir.path().join("precious");
            fs::write(&target, "precious\n").unwrap();
            fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
            fs::create_dir(dir.path().join("supervise")).unwrap();
            std::os::unix::fs::symlink(&target, dir.path().join("supervise").join(name)).unwrap();
            assert!(SuperviseDir::open(dir.path()).is_err(), "supervise/{name} as a link must be refused");
            let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644, "the target of supervise/{name} was chmod-ed");
            assert_eq!(fs::read_to_string(&target).unwrap(), "precious\n");
        }
    }
}
