//! The instance record, `RUNTIME_DIR/run/instance.json`: what the running
//! supervisor tells its clients about itself without a round trip (its
//! name, pid, socket, configuration file and start time), for `list`, and
//! for a client that wants to know whether the file changed since the
//! supervisor read it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use std::os::unix::fs::MetadataExt;

/// The record's file name, in `RUNTIME_DIR/run`.
const FILE: &str = "instance.json";

/// What a running supervisor says of itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The instance name.
    pub name: String,
    /// The supervisor's pid.
    pub pid: i32,
    /// The socket clients use.
    pub socket: PathBuf,
    /// The configuration file (absolute), when there is one.
    pub config: Option<PathBuf>,
    /// The file's metadata when the running configuration was read.
    pub(crate) config_stamp: Option<Stamp>,
    /// When the supervisor started (seconds since the epoch).
    pub started: f64,
}

impl Record {
    /// The record of this process.
    pub(crate) fn new(name: &str, socket: PathBuf, config: Option<PathBuf>, stamp: Option<Stamp>) -> Record {
        let started = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        Record { name: name.to_owned(), pid, socket, config, config_stamp: stamp, started }
    }

    /// Writes the record into `run_dir`, whole or not at all (a temporary
    /// file renamed over it).
    ///
    /// # Errors
    ///
    /// When the file cannot be written.
    pub fn save(&self, run_dir: &Path) -> std::io::Result<()> {
        let tmp = run_dir.join(format!(".{FILE}.tmp"));
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        fs::rename(&tmp, run_dir.join(FILE))
    }

    /// The record in `run_dir`, when there is a readable one.
    #[must_use]
    pub fn load(run_dir: &Path) -> Option<Record> {
        serde_json::from_slice(&fs::read(run_dir.join(FILE)).ok()?).ok()
    }

    /// Removes the record of this process from `run_dir`.
    pub fn remove(run_dir: &Path) {
        let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        if Record::load(run_dir).is_some_and(|r| r.pid == pid) {
            let _ = fs::remove_file(run_dir.join(FILE));
        }
    }

    /// How long the supervisor has run.
    #[must_use]
    pub fn uptime(&self) -> std::time::Duration {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        std::time::Duration::from_secs_f64((now - self.started).max(0.0))
    }
}

/// The metadata that tells a changed file: modification time, size,
/// inode and device. `None` when the file cannot be examined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Stamp {
    pub(crate) mtime: (i64, i64),
    pub(crate) size: u64,
    pub(crate) ino: u64,
    pub(crate) dev: u64,
}

pub(crate) fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp { mtime: (m.mtime(), m.mtime_nsec()), size: m.size(), ino: m.ino(), dev: m.dev() })
}
