//! `reopen` and `logtail`: transcripts from the command line.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use supervisor_core::protocol::Command;

use crate::config::Config;
use crate::exit::{self, CliError};

/// `reopen [NAME...]`.
///
/// # Errors
///
/// Not running (7), unknown service (2).
pub fn reopen(reach: &super::reach::Reach, names: &[String]) -> Result<u8, CliError> {
    let resp = reach.call(
        Command::Reopen { names: names.to_vec() },
        Duration::from_secs(10),
        exit::NOT_RUNNING,
        exit::USAGE,
    )?;
    let mut code = exit::OK;
    for s in resp.services.iter().flatten().filter(|s| !s.ok) {
        eprintln!("supervisor: {}: {}", s.name, s.message.as_deref().unwrap_or("not reopened"));
        code = exit::FAILURE;
    }
    Ok(code)
}

/// The last `n` lines of the file at `path` (reading at most what is
/// needed from its end).
fn last_lines(file: &mut File, n: usize) -> std::io::Result<Vec<u8>> {
    let len = file.metadata()?.len();
    let mut start = len;
    let mut tail: Vec<u8> = Vec::new();
    let chunk = 64 * 1024;
    while start > 0 {
        let read_from = start.saturating_sub(chunk);
        file.seek(SeekFrom::Start(read_from))?;
        let mut buf = vec![0; (start - read_from) as usize];
        file.read_exact(&mut buf)?;
        buf.extend_from_slice(&tail);
        tail = buf;
        start = read_from;
        // n lines need n + 1 newlines when the last line ends with one.
        #[allow(clippy::naive_bytecount)] // a tail's worth of bytes, once per block
        let newlines = tail.iter().filter(|b| **b == b'\n').count();
        if newlines > n {
            break;
        }
    }
    let body = tail.strip_suffix(b"\n").unwrap_or(&tail);
    let cut = body.iter().enumerate().rev().filter(|(_, b)| **b == b'\n').nth(n.saturating_sub(1)).map(|(i, _)| i + 1);
    let from = if n == 0 { tail.len() } else { cut.unwrap_or(0) };
    file.seek(SeekFrom::Start(len))?;
    Ok(tail[from..].to_vec())
}

/// The service `logtail` shows without a name: the program of a zdaemon
/// configuration, or the only service.
fn default_service(config: &Config) -> Result<&str, CliError> {
    if config.is_zdaemon() {
        return Ok(crate::config::zdaemon::PROGRAM);
    }
    match config.services.as_slice() {
        [only] => Ok(&only.name),
        all => Err(CliError::Usage(format!("{} has {} services: name one", config.path.display(), all.len()))),
    }
}

/// `logtail [NAME] [-n N] [-f]`: the service's `logfile` when it has one,
/// else its transcript.
///
/// # Errors
///
/// Unknown service or one without a transcript (2), an unreadable file (1).
pub fn logtail(config: &Config, name: Option<&str>, lines: usize, follow: bool) -> Result<u8, CliError> {
    let name = match name {
        Some(n) => n,
        None => default_service(config)?,
    };
    let svc = config
        .services
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| CliError::Usage(format!("no service named {name:?} in {}", config.path.display())))?;
    let logfile = config.extras.get(name).and_then(|e| e.logfile.clone());
    let path = logfile.or_else(|| svc.transcript.as_ref().map(|t| t.path.clone())).ok_or_else(|| {
        CliError::Usage(format!("service {name:?} has no transcript (its output is not captured) and no logfile"))
    })?;
    // The transcript is made when the service first writes: until then
    // there is nothing to print, or (with -f) to wait for.
    let open = |p: &Path| File::open(p).map_err(|e| CliError::Failed(format!("{}: {e}", p.display())));
    if !path.exists() {
        if !follow {
            return Ok(exit::OK);
        }
        while !path.exists() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let mut file = open(&path)?;
    let mut out = std::io::stdout().lock();
    let text = last_lines(&mut file, lines).map_err(|e| CliError::Failed(e.to_string()))?;
    let _ = out.write_all(&text);
    let _ = out.flush();
    if !follow {
        return Ok(exit::OK);
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => {
                // Rotated or reopened: a new file at the path.
                let renamed = std::fs::metadata(&path).map(|m| m.ino()).ok() != file.metadata().map(|m| m.ino()).ok();
                if renamed {
                    if let Ok(f) = File::open(&path) {
                        file = f;
                        continue;
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(n) => {
                if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                    return Ok(exit::OK);
                }
            }
            Err(e) => return Err(CliError::Failed(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail_of(text: &str, n: usize) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, text).unwrap();
        String::from_utf8(last_lines(&mut File::open(&p).unwrap(), n).unwrap()).unwrap()
    }

    #[test]
    fn last_lines_of_a_file() {
        assert_eq!(tail_of("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail_of("a\nb\nc\n", 10), "a\nb\nc\n");
        assert_eq!(tail_of("a\nb\nc", 1), "c");
        assert_eq!(tail_of("a\nb\nc\n", 0), "");
        assert_eq!(tail_of("", 3), "");
        let big: String = (0..100_000).fold(String::new(), |mut s, i| {
            s.push_str(&format!("line {i}\n"));
            s
        });
        assert_eq!(tail_of(&big, 2), "line 99998\nline 99999\n");
    }
}
