//! `svc` and `svstat` for daemontools service directories (the front ends
//! `svcstart` and friends are in `front.rs`).
//!
//! `svc` and `svstat` behave as daemontools' own programs do, message for
//! message and exit code for exit code, so that scripts written for them
//! keep working: `svc` warns on standard error about a directory it cannot
//! control and still exits 0 (100 for an unknown option); `svstat` prints
//! one line per directory on standard output, errors included, and exits 0.
//!
//! The front ends are the administrator's commands of a distribution built
//! on daemontools (see `docs/service-directories.md`): they change the
//! state, run the service's own `start` or `stop` check script (or wait for
//! the state), and exit 0 when the service reached it, 1 when not, 7 when
//! no supervisor serves the directory and 2 for bad arguments.

use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use nix::unistd::{access, AccessFlags};
use serde::Serialize;
use supervisor_core::servicedir::{is_supervised, send_control, RunState, SvStatus};

use crate::exit::{self, CliError};

/// The control letters that `svc` sends: daemontools' `udopchaitkx` and
/// runit's `1` (USR1), `2` (USR2), `q` (QUIT) and `w` (WINCH).
pub const SVC_LETTERS: &str = "udopchaitkx12qw";

/// `svc`'s exit code for an unknown option, as daemontools' `svc` exits.
pub const SVC_BAD_OPTION: u8 = 100;

const SVC_USAGE: &str = "svc options: u up, d down, o once, x exit, p pause, c continue, h hup, a alarm, \
                         i interrupt, t term, k kill, 1 usr1, 2 usr2, q quit, w winch";

/// How often the front ends look at `supervise/status`.
pub(crate) const POLL: Duration = Duration::from_millis(20);

/// `svc -udopchaitkx12qw DIR...`.
#[derive(Debug, Clone, Args)]
#[command(disable_help_flag = true, disable_version_flag = true)]
pub struct SvcArgs {
    /// Control letters, as daemontools' svc takes them (`-u`, `-dx`, ...),
    /// then the service directories. `-h` is the letter h (HUP), not help;
    /// `--help` prints the letters.
    #[arg(allow_hyphen_values = true, value_name = "-LETTERS... DIR")]
    pub args: Vec<String>,
}

/// `svstat DIR...`.
#[derive(Debug, Clone, Args)]
pub struct SvstatArgs {
    /// The service directories.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
}

/// The text daemontools' `error_str` gives an errno, which `svc` and
/// `svstat` print.
pub(crate) fn error_str(e: &io::Error) -> String {
    let Some(errno) = e.raw_os_error() else {
        return e.to_string();
    };
    let s = match errno {
        0 => "no error",
        libc::EINTR => "interrupted system call",
        libc::ENOMEM => "out of memory",
        libc::ENOENT => "file does not exist",
        libc::ETXTBSY => "text busy",
        libc::EIO => "input/output error",
        libc::EEXIST => "file already exists",
        libc::ETIMEDOUT => "timed out",
        libc::EINPROGRESS => "operation in progress",
        libc::EAGAIN => "temporary failure",
        libc::EPIPE => "broken pipe",
        libc::EPERM => "permission denied",
        libc::EACCES => "access denied",
        libc::ENXIO => "device not configured",
        libc::EPROTO => "protocol error",
        libc::EISDIR => "is a directory",
        libc::ECONNREFUSED => "connection refused",
        libc::ENOTDIR => "not a directory",
        libc::ESRCH => "no such process",
        libc::E2BIG => "argument list too long",
        libc::ENOEXEC => "exec format error",
        libc::EBADF => "file descriptor not open",
        libc::ECHILD => "no child processes",
        libc::EDEADLK => "operation would cause deadlock",
        libc::EFAULT => "bad address",
        libc::ENOTBLK => "not a block device",
        libc::EBUSY => "device busy",
        libc::EXDEV => "cross-device link",
        libc::ENODEV => "device does not support operation",
        libc::EINVAL => "invalid argument",
        libc::ENFILE => "system cannot open more files",
        libc::EMFILE => "process cannot open more files",
        libc::ENOTTY => "not a tty",
        libc::EFBIG => "file too big",
        libc::ENOSPC => "out of disk space",
        libc::ESPIPE => "unseekable descriptor",
        libc::EROFS => "read-only file system",
        libc::EMLINK => "too many links",
        libc::ELOOP => "symbolic link loop",
        libc::ENAMETOOLONG => "file name too long",
        libc::ENOTEMPTY => "directory not empty",
        libc::EUSERS => "too many users",
        libc::EDQUOT => "disk quota exceeded",
        libc::ESTALE => "stale NFS file handle",
        libc::ENOLCK => "no locks available",
        libc::ENOSYS => "system call not available",
        _ => "unknown error",
    };
    s.to_string()
}

/// What `chdir(dir)` would fail with, without changing the directory.
pub(crate) fn check_dir(dir: &Path) -> io::Result<()> {
    if !fs::metadata(dir)?.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    access(dir, AccessFlags::X_OK).map_err(io::Error::from)
}

/// Splits `svc`'s arguments as its `getopt` does: options up to the first
/// argument that is not one (or `--`), then directories. Letters are
/// deduplicated, first occurrence first, as daemontools' `svc` does.
/// An unknown letter is the error.
fn parse_svc(args: &[String]) -> Result<(String, &[String]), char> {
    let mut letters = String::new();
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        if arg == "--" {
            i += 1;
            break;
        }
        match arg.strip_prefix('-') {
            Some(opts) if !opts.is_empty() => {
                for c in opts.chars() {
                    if !SVC_LETTERS.contains(c) {
                        return Err(c);
                    }
                    if !letters.contains(c) {
                        letters.push(c);
                    }
                }
            }
            _ => break,
        }
        i += 1;
    }
    Ok((letters, &args[i..]))
}

/// The command line after `svc`, as typed. clap takes a leading `-c`
/// (`svc -c DIR`, `svc -cd DIR`) for the global `--config` option; what
/// follows `svc` on the command line is what was meant. Arguments that are
/// not this process's (a caller of [`svc`] that built its own) are used as
/// they are.
fn raw_svc_args(parsed: &[String]) -> Vec<String> {
    let argv: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    let mut i = 1;
    while let Some(arg) = argv.get(i) {
        if arg == "svc" {
            let raw = &argv[i + 1..];
            if raw.ends_with(parsed) {
                return raw.to_vec();
            }
            break;
        }
        i += if arg == "-c" || arg == "--config" { 2 } else { 1 };
        if !arg.starts_with('-') {
            break;
        }
    }
    parsed.to_vec()
}

/// `svc`: writes the letters to each directory's `supervise/control`.
///
/// Like daemontools' `svc`, a directory that cannot be controlled gets a
/// warning on standard error and the exit code stays 0; an unknown option
/// exits [`SVC_BAD_OPTION`] before anything is sent.
///
/// # Errors
///
/// None; the exit code says it all.
pub fn svc(args: &SvcArgs) -> Result<u8, CliError> {
    let argv = raw_svc_args(&args.args);
    if argv.first().is_some_and(|a| a == "--help") {
        crate::say!("Usage: supervisor svc -LETTERS... DIR...\n\n{SVC_USAGE}");
        return Ok(exit::OK);
    }
    let (letters, dirs) = match parse_svc(&argv) {
        Ok(parsed) => parsed,
        Err(c) => {
            eprintln!("supervisor svc: illegal option -- {c}\n{SVC_USAGE}");
            return Ok(SVC_BAD_OPTION);
        }
    };
    for d in dirs {
        let dir = Path::new(d);
        if let Err(e) = check_dir(dir) {
            eprintln!("supervisor svc: warning: unable to chdir to {d}: {}", error_str(&e));
            continue;
        }
        if let Err(e) = send_control(dir, &letters) {
            match e.raw_os_error() {
                Some(libc::ENXIO) => {
                    eprintln!("supervisor svc: warning: unable to control {d}: supervise not running");
                }
                // The FIFO opened, but the write failed.
                Some(libc::EPIPE | libc::EAGAIN) => {
                    eprintln!("supervisor svc: warning: error writing commands to {d}: {}", error_str(&e));
                }
                _ => eprintln!("supervisor svc: warning: unable to control {d}: {}", error_str(&e)),
            }
        }
    }
    Ok(exit::OK)
}

/// What `svstat` finds in one directory.
#[derive(Debug, Clone)]
pub(crate) enum Probe {
    /// `unable to ...`: the text after `DIR: `.
    Failed(String),
    /// Nobody supervises it.
    NotRunning { normally_up: bool },
    /// The status record, and its age in whole seconds as `svstat` counts.
    Status { normally_up: bool, st: SvStatus, seconds: u64 },
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Looks at a directory in `svstat`'s order: the directory, `down`,
/// `supervise/ok`, `supervise/status`.
pub(crate) fn probe(dir: &Path) -> Probe {
    if let Err(e) = check_dir(dir) {
        return Probe::Failed(format!("unable to chdir: {}", error_str(&e)));
    }
    let normally_up = match fs::metadata(dir.join("down")) {
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::NotFound => true,
        Err(e) => return Probe::Failed(format!("unable to stat down: {}", error_str(&e))),
    };
    if !is_supervised(dir) {
        // Open it again only to find out why.
        return match fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(dir.join("supervise/ok"))
        {
            Err(e) if e.raw_os_error() != Some(libc::ENXIO) => {
                Probe::Failed(format!("unable to open supervise/ok: {}", error_str(&e)))
            }
            _ => Probe::NotRunning { normally_up },
        };
    }
    match SvStatus::read(dir) {
        Ok(st) => {
            let seconds = unix_secs(SystemTime::now()).saturating_sub(unix_secs(st.since));
            Probe::Status { normally_up, st, seconds }
        }
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            Probe::Failed("unable to read supervise/status: bad format".into())
        }
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {
            Probe::Failed(format!("unable to read supervise/status: {}", error_str(&e)))
        }
        Err(e) => Probe::Failed(format!("unable to open supervise/status: {}", error_str(&e))),
    }
}

/// `svstat`'s text for a status record, after `DIR: `.
fn describe(st: &SvStatus, seconds: u64, normally_up: bool) -> String {
    let mut s = match st.pid {
        Some(pid) => format!("up (pid {pid}) {seconds} seconds"),
        None => format!("down {seconds} seconds"),
    };
    let up = st.pid.is_some();
    if up && !normally_up {
        s.push_str(", normally down");
    }
    if !up && normally_up {
        s.push_str(", normally up");
    }
    if up && st.paused {
        s.push_str(", paused");
    }
    if !up && st.want_up == Some(true) {
        s.push_str(", want up");
    }
    if up && st.want_up == Some(false) {
        s.push_str(", want down");
    }
    s
}

impl Probe {
    pub(crate) fn text(&self) -> String {
        match self {
            Probe::Failed(why) => why.clone(),
            Probe::NotRunning { .. } => "supervise not running".into(),
            Probe::Status { normally_up, st, seconds } => describe(st, *seconds, *normally_up),
        }
    }
}

/// One directory in `svstat --json`.
#[derive(Debug, Serialize)]
struct SvstatJson {
    dir: String,
    supervised: bool,
    state: Option<&'static str>,
    pid: Option<i32>,
    seconds: Option<u64>,
    paused: Option<bool>,
    want: Option<&'static str>,
    normally: Option<&'static str>,
    got_term: Option<bool>,
    error: Option<String>,
}

impl SvstatJson {
    fn new(dir: &Path, probe: &Probe) -> SvstatJson {
        let mut j = SvstatJson {
            dir: dir.display().to_string(),
            supervised: false,
            state: None,
            pid: None,
            seconds: None,
            paused: None,
            want: None,
            normally: None,
            got_term: None,
            error: None,
        };
        let normally = |up: bool| Some(if up { "up" } else { "down" });
        match probe {
            Probe::Failed(why) => j.error = Some(why.clone()),
            Probe::NotRunning { normally_up } => j.normally = normally(*normally_up),
            Probe::Status { normally_up, st, seconds } => {
                j.supervised = true;
                j.normally = normally(*normally_up);
                j.state = Some(match st.state {
                    RunState::Run => "up",
                    RunState::Down => "down",
                    RunState::Finish => "finish",
                });
                j.pid = st.pid;
                j.seconds = Some(*seconds);
                j.paused = Some(st.paused && st.pid.is_some());
                j.want = st.want_up.map(|up| if up { "up" } else { "down" });
                j.got_term = Some(st.got_term);
            }
        }
        j
    }
}

/// `svstat`: one line per directory, as daemontools' `svstat` prints it
/// (errors included, on standard output), or a JSON list with `--json`.
///
/// # Errors
///
/// Only when the JSON cannot be written; the exit code is 0 otherwise, as
/// `svstat`'s is.
pub fn svstat(args: &SvstatArgs) -> Result<u8, CliError> {
    let probes: Vec<(&Path, Probe)> = args.dirs.iter().map(|d| (d.as_path(), probe(d))).collect();
    let mut out = io::stdout().lock();
    if crate::out::json() {
        let list: Vec<SvstatJson> = probes.iter().map(|(d, p)| SvstatJson::new(d, p)).collect();
        let text = serde_json::to_string_pretty(&list).map_err(|e| CliError::Failed(e.to_string()))?;
        let _ = writeln!(out, "{text}");
    } else {
        let mut buf = Vec::new();
        for (dir, probe) in &probes {
            buf.extend_from_slice(dir.as_os_str().as_bytes());
            buf.extend_from_slice(b": ");
            buf.extend_from_slice(probe.text().as_bytes());
            buf.push(b'\n');
        }
        let _ = out.write_all(&buf);
    }
    let _ = out.flush();
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(std::string::ToString::to_string).collect()
    }

    #[test]
    fn svc_options_as_getopt_reads_them() {
        let a = strings(&["-dx", "-u", "-d", "a", "-k", "b"]);
        let (letters, dirs) = parse_svc(&a).unwrap();
        assert_eq!(letters, "dxu", "deduplicated, first occurrence first");
        assert_eq!(dirs, &a[3..], "options end at the first directory");
        let a = strings(&["-12qw", "--", "-k"]);
        let (letters, dirs) = parse_svc(&a).unwrap();
        assert_eq!((letters.as_str(), dirs), ("12qw", &a[2..]));
        let a = strings(&["-", "b"]);
        assert_eq!(parse_svc(&a).unwrap(), (String::new(), &a[..]));
        assert_eq!(parse_svc(&strings(&["-uz", "a"])), Err('z'));
    }

    #[test]
    fn svstat_text() {
        let st = SvStatus {
            since: SystemTime::now(),
            pid: Some(42),
            paused: true,
            want_up: Some(false),
            got_term: false,
            state: RunState::Run,
        };
        assert_eq!(describe(&st, 7, false), "up (pid 42) 7 seconds, normally down, paused, want down");
        assert_eq!(describe(&st, 7, true), "up (pid 42) 7 seconds, paused, want down");
        let down = SvStatus { pid: None, want_up: Some(true), state: RunState::Down, ..st };
        assert_eq!(describe(&down, 0, true), "down 0 seconds, normally up, want up");
        assert_eq!(describe(&down, 3, false), "down 3 seconds, want up");
        let down = SvStatus { want_up: Some(false), ..down };
        assert_eq!(describe(&down, 3, false), "down 3 seconds");
    }

    #[test]
    fn daemontools_error_texts() {
        assert_eq!(error_str(&io::Error::from_raw_os_error(libc::ENOENT)), "file does not exist");
        assert_eq!(error_str(&io::Error::from_raw_os_error(libc::ENXIO)), "device not configured");
        assert_eq!(error_str(&io::Error::from_raw_os_error(libc::EACCES)), "access denied");
    }
}
