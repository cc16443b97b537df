//! The state that outlives the supervisor: each service's wanted state and
//! the process it runs, written atomically so that a supervisor killed at
//! any moment leaves either the old file or the new one, never half of one.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::Expected;

/// One service's saved state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedService {
    /// What `start` and `stop` last asked for (a shutdown does not count).
    pub wanted: Expected,
    /// Its main process when the file was written.
    #[serde(default)]
    pub pid: Option<i32>,
    /// That process's start time (clock ticks since boot), so that a
    /// reused pid is never mistaken for it.
    #[serde(default)]
    pub start_time: Option<u64>,
}

/// The whole saved state of an engine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedState {
    /// The boot the pids belong to (`/proc/sys/kernel/random/boot_id`):
    /// start times count from boot, so after a reboot a saved pid with a
    /// matching start time may name an unrelated process.
    #[serde(default)]
    pub boot_id: Option<String>,
    /// By service name.
    pub services: BTreeMap<String, SavedService>,
}

impl SavedState {
    /// The services whose saved pid may still be theirs: none when the
    /// file comes from another boot (or does not say which).
    pub fn live_pids(&self) -> impl Iterator<Item = (&String, i32, u64)> {
        let this_boot = self.boot_id.is_some() && self.boot_id.as_deref() == crate::os::procfs::boot_id();
        self.services.iter().filter(move |_| this_boot).filter_map(|(name, s)| Some((name, s.pid?, s.start_time?)))
    }

    /// Reads the file; `None` when there is none.
    ///
    /// # Errors
    ///
    /// I/O errors, and a file that is not valid state.
    pub fn load(path: &Path) -> io::Result<Option<SavedState>> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the file atomically: a temporary file in the same directory,
    /// renamed over the old one. With `durable`, the data and the rename
    /// are also flushed to disk (`fsync`) so that they survive a power
    /// loss; without, they survive any death of the process.
    ///
    /// # Errors
    ///
    /// I/O errors; the old file is then left as it was.
    #[cfg(test)]
    pub fn save(&self, path: &Path, durable: bool) -> io::Result<()> {
        let entries = self.services.iter().map(|(name, s)| (name.as_str(), s.clone()));
        save_entries(path, durable, self.boot_id.as_deref(), entries)
    }
}

/// The file's content, borrowed from the engine's services as they are:
/// with thousands of services, nothing is copied or sorted to write it.
#[derive(Serialize)]
struct View<'a, I: Iterator<Item = (&'a str, SavedService)> + Clone> {
    boot_id: Option<&'a str>,
    #[serde(serialize_with = "as_map")]
    services: I,
}

fn as_map<'a, I, S>(entries: &I, s: S) -> Result<S::Ok, S::Error>
where
    I: Iterator<Item = (&'a str, SavedService)> + Clone,
    S: serde::Serializer,
{
    s.collect_map(entries.clone())
}

/// Writes a state file of `entries` (service name and state, in any
/// order), as [`SavedState::save`] does.
///
/// # Errors
///
/// I/O errors; the old file is then left as it was.
pub fn save_entries<'a>(
    path: &Path,
    durable: bool,
    boot_id: Option<&'a str>,
    entries: impl Iterator<Item = (&'a str, SavedService)> + Clone,
) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)?;
    let mut bytes = serde_json::to_vec_pretty(&View { boot_id, services: entries }).map_err(io::Error::other)?;
    bytes.push(b'\n');
    f.write_all(&bytes)?;
    if durable {
        f.sync_data()?;
    }
    drop(f);
    fs::rename(&tmp, path)?;
    if durable {
        if let Some(dir) = path.parent() {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(SavedState::load(&path).unwrap(), None);
        let mut s = SavedState::default();
        s.services.insert("a".into(), SavedService { wanted: Expected::Stopped, pid: Some(7), start_time: Some(9) });
        s.save(&path, true).unwrap();
        assert_eq!(SavedState::load(&path).unwrap(), Some(s));
        assert!(!dir.path().join("state.json.tmp").exists());
        fs::write(&path, "{oops").unwrap();
        assert!(SavedState::load(&path).is_err());
    }
}
