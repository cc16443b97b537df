//! The supervisor's event log: one line per event, with a UTC timestamp
//! and level, appended to `log/supervisor.log` in the runtime directory and
//! written to standard error (the terminal or init system in `run` mode,
//! `/dev/null` once `up` has detached).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{LevelFilter, Log, Metadata, Record};

struct EventLog {
    file: Mutex<Option<(PathBuf, File)>>,
}

impl Log for EventLog {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = format!("{} {:<5} {}\n", rfc3339_now(), r.level(), r.args());
        if let Ok(mut guard) = self.file.lock() {
            if let Some((_, f)) = guard.as_mut() {
                let _ = f.write_all(line.as_bytes());
            }
        }
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

static LOGGER: EventLog = EventLog { file: Mutex::new(None) };

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(0o640).custom_flags(libc::O_CLOEXEC).open(path)
}

/// Installs the logger at `level` (once; later calls only change the level).
pub fn init(level: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Also appends every line to the file at `path`.
///
/// # Errors
///
/// When the file cannot be opened.
pub fn to_file(path: &Path) -> std::io::Result<()> {
    let f = open(path)?;
    if let Ok(mut guard) = LOGGER.file.lock() {
        *guard = Some((path.to_path_buf(), f));
    }
    Ok(())
}

/// Reopens the log file (after an outside tool renamed it).
pub fn reopen() {
    if let Ok(mut guard) = LOGGER.file.lock() {
        if let Some((path, f)) = guard.as_mut() {
            match open(path) {
                Ok(new) => *f = new,
                Err(e) => eprintln!("cannot reopen {}: {e}", path.display()),
            }
        }
    }
}

/// Now as `2026-11-21T07:30:00.123456Z`.
pub fn rfc3339_now() -> String {
    supervisor_core::transcript::rfc3339_micros(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_timestamped_now() {
        let stamp = rfc3339_now();
        assert_eq!(stamp.len(), "2026-11-21T07:30:00.123456Z".len());
        assert!(stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T', "{stamp}");
    }
}
