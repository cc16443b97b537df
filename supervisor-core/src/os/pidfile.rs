//! Pidfiles that cannot go stale.
//!
//! A [`PidFile`] is opened without truncation (`O_NOFOLLOW`, close-on-exec),
//! locked with `flock(LOCK_EX | LOCK_NB)`, and only then truncated and
//! written. The lock is held for as long as the `PidFile` lives: it is the
//! proof that the holder is alive. A file left behind by a process that was
//! killed is unlocked, so the next [`PidFile::acquire`] simply takes it
//! over; a live holder makes it fail with "already running (pid N)".
//!
//! [`PidFile::read`] never reports a pid it cannot prove: the lock must be
//! held by somebody. A pid read from an unlocked file is stale, whatever
//! process may now carry that number.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Why a pidfile could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PidFileError {
    /// A live process holds the lock.
    #[error("already running (pid {pid}): {path} is locked")]
    AlreadyRunning {
        /// The holder's pid as written in the file (0 if unreadable).
        pid: i32,
        /// The pidfile.
        path: PathBuf,
    },
    /// Opening, locking or writing failed.
    #[error("pidfile {path}: {source}")]
    Io {
        /// The pidfile.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// What [`PidFile::read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidState {
    /// No file.
    Absent,
    /// The file is locked: this pid is its live holder's.
    Held(i32),
    /// The file is not locked: its holder is gone; the pid in it (if any)
    /// must not be signalled.
    Stale(Option<i32>),
}

/// A locked pidfile; dropping it removes the file and releases the lock.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    lock: Option<Flock<File>>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PidFileError + '_ {
    move |source| PidFileError::Io { path: path.to_path_buf(), source }
}

fn open(path: &Path, write: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .create(write)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

fn parse_pid(text: &str) -> Option<i32> {
    text.lines().next()?.trim().parse().ok().filter(|p: &i32| *p > 0)
}

impl PidFile {
    /// Takes the pidfile at `path` and writes this process's pid.
    ///
    /// # Errors
    ///
    /// [`PidFileError::AlreadyRunning`] when a live process holds it.
    pub fn acquire(path: &Path) -> Result<PidFile, PidFileError> {
        Self::acquire_with(path, std::process::id() as i32)
    }

    /// Takes the pidfile at `path` and writes `pid` in it: used for the
    /// pidfile of a service, which the supervisor holds on its behalf.
    ///
    /// # Errors
    ///
    /// As [`PidFile::acquire`].
    pub fn acquire_with(path: &Path, pid: i32) -> Result<PidFile, PidFileError> {
        let file = open(path, true).map_err(io_err(path))?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(PidFileError::AlreadyRunning { pid: parse_pid(&text).unwrap_or(0), path: path.into() });
            }
            Err((_, errno)) => return Err(io_err(path)(errno.into())),
        };
        let mut pf = PidFile { path: path.to_path_buf(), lock: Some(lock) };
        pf.write_pid(pid)?;
        Ok(pf)
    }

    /// Replaces the pid in the file (a service's new process).
    ///
    /// # Errors
    ///
    /// When writing fails.
    pub fn write_pid(&mut self, pid: i32) -> Result<(), PidFileError> {
        let path = self.path.clone();
        let Some(lock) = self.lock.as_mut() else { return Ok(()) };
        let f: &mut File = lock;
        f.set_len(0).map_err(io_err(&path))?;
        f.seek(SeekFrom::Start(0)).map_err(io_err(&path))?;
        f.write_all(format!("{pid}\n").as_bytes()).map_err(io_err(&path))?;
        f.flush().map_err(io_err(&path))
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the pidfile at `path` and says whether its pid is proven.
    ///
    /// # Errors
    ///
    /// I/O errors other than a missing file.
    pub fn read(path: &Path) -> io::Result<PidState> {
        let mut file = match open(path, false) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(PidState::Absent),
            Err(e) => return Err(e),
        };
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        let pid = parse_pid(&text);
        match Flock::lock(file, FlockArg::LockSharedNonblock) {
            // We got the lock: nobody holds it, so nobody vouches for the pid.
            Ok(_unlocked_on_drop) => Ok(PidState::Stale(pid)),
            Err((_, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => match pid {
                Some(p) => Ok(PidState::Held(p)),
                // Locked but not yet written: the holder is starting.
                None => Ok(PidState::Stale(None)),
            },
            Err((_, errno)) => Err(errno.into()),
        }
    }
}

impl PidFile {
    /// Whether the file at its path is still the one it locked (not one
    /// made there since, after this one was removed).
    fn still_there(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Some(lock) = self.lock.as_ref() else { return false };
        let (Ok(ours), Ok(there)) = (lock.metadata(), std::fs::symlink_metadata(&self.path)) else { return false };
        (ours.dev(), ours.ino()) == (there.dev(), there.ino())
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Remove first, then unlock, so that nobody can take over a file
        // that is about to disappear; and only our own file.
        if self.still_there() {
            let _ = std::fs::remove_file(&self.path);
        }
        self.lock = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acquire_read_and_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pid");
        assert_eq!(PidFile::read(&path).unwrap(), PidState::Absent);
        let pf = PidFile::acquire(&path).unwrap();
        let me = std::process::id() as i32;
        assert_eq!(PidFile::read(&path).unwrap(), PidState::Held(me));
        match PidFile::acquire(&path) {
            Err(PidFileError::AlreadyRunning { pid, .. }) => assert_eq!(pid, me),
            other => panic!("{other:?}"),
        }
        drop(pf);
        assert_eq!(PidFile::read(&path).unwrap(), PidState::Absent);
    }

    #[test]
    fn a_stale_file_is_taken_over_and_never_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pid");
        std::fs::write(&path, "1\n").unwrap();
        assert_eq!(PidFile::read(&path).unwrap(), PidState::Stale(Some(1)), "pid 1 exists, but is not proven");
        let mut pf = PidFile::acquire_with(&path, 4242).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "4242\n");
        pf.write_pid(7).unwrap();
        assert_eq!(PidFile::read(&path).unwrap(), PidState::Held(7));
    }

    #[test]
    fn symlinks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "precious\n").unwrap();
        let link = dir.path().join("x.pid");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(PidFile::acquire(&link), Err(PidFileError::Io { .. })));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
    }
}
