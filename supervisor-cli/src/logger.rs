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

/// Now as `2026-11-21T07:30:00.123Z`.
pub fn rfc3339_now() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_millis())
}

/// Formats seconds since the epoch (UTC) and milliseconds.
pub fn rfc3339(secs: i64, millis: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_246_200, 5), "2026-11-21T07:30:00.005Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000Z");
    }
}
