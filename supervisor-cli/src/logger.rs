//! The supervisor's event log: one line per event, with a UTC timestamp
//! and level, appended to `log/supervisor.log` in the runtime directory and
//! written to standard error (the terminal or init system in `run` mode,
//! `/dev/null` once `up` has detached), and to the targets of
//! `[supervisor] event_log` (zdaemon's `<eventlog>`): more files, standard
//! output.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use log::{LevelFilter, Log, Metadata, Record};

use crate::config::EventLogTarget;

struct EventLog {
    file: Mutex<Option<(PathBuf, File)>>,
    /// More files (`event_log`), with their paths for reopening.
    more: Mutex<Vec<(PathBuf, File)>>,
    /// Whether lines also go to standard output (`event_log = ["STDOUT"]`).
    stdout: AtomicBool,
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
        if let Ok(mut more) = self.more.lock() {
            for (_, f) in more.iter_mut() {
                let _ = f.write_all(line.as_bytes());
            }
        }
        if self.stdout.load(Ordering::Relaxed) {
            let _ = std::io::stdout().lock().write_all(line.as_bytes());
        }
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

static LOGGER: EventLog =
    EventLog { file: Mutex::new(None), more: Mutex::new(Vec::new()), stdout: AtomicBool::new(false) };

fn open(path: &Path) -> std::io::Result<File> {
    // Never through a symbolic link planted where the log goes.
    OpenOptions::new().create(true).append(true).mode(0o640).custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW).open(path)
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

/// Also writes every line to the `event_log` targets: files are appended
/// to, `STDOUT` is standard output; `STDERR` is where lines always go.
///
/// # Errors
///
/// When a file cannot be opened (with its path).
pub fn add_targets(targets: &[EventLogTarget]) -> std::io::Result<()> {
    let mut files = Vec::new();
    for t in targets {
        match t {
            EventLogTarget::Stdout => LOGGER.stdout.store(true, Ordering::Relaxed),
            EventLogTarget::Stderr => {}
            EventLogTarget::File(path) => {
                let f = open(path).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
                files.push((path.clone(), f));
            }
        }
    }
    if let Ok(mut more) = LOGGER.more.lock() {
        more.extend(files);
    }
    Ok(())
}

/// Reopens the log files (after an outside tool renamed them).
pub fn reopen() {
    if let Ok(mut guard) = LOGGER.file.lock() {
        if let Some((path, f)) = guard.as_mut() {
            match open(path) {
                Ok(new) => *f = new,
                Err(e) => eprintln!("cannot reopen {}: {e}", path.display()),
            }
        }
    }
    if let Ok(mut more) = LOGGER.more.lock() {
        for (path, f) in more.iter_mut() {
            match open(path) {
                Ok(new) => *f = new,
                Err(e) => eprintln!("cannot reopen {}: {e}", path.display()),
            }
        }
    }
}

/// Now as `2026-11-21T07:30:00.123456Z`.
#[must_use]
pub fn rfc3339_now() -> String {
    supervisor_core::Timestamps::Rfc3339.stamp(SystemTime::now()).trim_end().to_owned()
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
