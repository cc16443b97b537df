//! Per-service runtime directories, after copkg's convention.
//!
//! A service with a [`runtime_dir`](Service::runtime_dir) gets, before each
//! start, that directory with five subdirectories:
//!
//! | directory | for |
//! | --- | --- |
//! | `log/` | the service's log files |
//! | `etc/` | the configuration of this instance |
//! | `console/` | what the program writes on stdout and stderr |
//! | `data/` | its data (a database's files) |
//! | `run/` | pid files, locks, sockets; the pid is kept in `run/start.pid` |
//!
//! The engine makes them ([`prepare_for`]) just before it spawns the
//! service; a failure is a failed start, retried after the backoff delay.
//! Unless the service has a [`pidfile`](Service::pidfile) of its own, the
//! engine keeps the pid of the main process in `run/start.pid`
//! ([`pidfile`]), written and locked the way [`PidFile`] does: a file left
//! behind by a supervisor that was killed is unlocked, so it never blocks
//! a start, and one that another live process holds (a second supervisor
//! running the same service) makes the start fail instead of running the
//! service twice.
//!
//! Commands may use placeholders ([`expand`], [`expand_command`]):
//! `{runtime_dir}`, `{coordinate}` (the service's
//! [`coordinate`](Service::coordinate)) and `{name}`; `{{` and `}}` stand
//! for literal braces. So copkg's
//!
//! ```text
//! /opt/sw/start.py --runtime-dir={runtime_dir} --coordinate={coordinate}
//! ```
//!
//! runs as the convention says.

use std::fmt;
use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};

use crate::model::{Command, Service};
use crate::os::pidfile::{PidFile, PidState};

/// The subdirectories of a runtime directory, in the order they are made.
pub const SUBDIRS: [&str; 5] = ["log", "etc", "console", "data", "run"];

/// Where the pid is kept, relative to the runtime directory.
pub const PID_FILE: &str = "run/start.pid";

/// The mode of the directories that the engine makes for a service
/// (before the umask).
///
/// `0755` rather than `0700`: the convention is there so that tools other
/// than the service (log shippers, monitoring, an operator) find logs and
/// pids in fixed places. A service that keeps secrets in `data/` or `etc/`
/// narrows those itself; the engine never changes the mode of a directory
/// that exists.
pub const MODE: u32 = 0o755;

/// Creates `dir` (and its parents) if needed and sets its mode: for a
/// supervisor instance's own runtime directory and its socket directory.
///
/// # Errors
///
/// The I/O error, with the path.
pub fn make_private_dir(dir: &Path, mode: u32) -> io::Result<()> {
    let named = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{what} {}: {e}", dir.display()));
    match fs::DirBuilder::new().recursive(true).mode(mode).create(dir) {
        // Something is there that is not a directory: said below.
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(named("create directory", e)),
        _ => {}
    }
    // The mode is set on what was opened, never through a symbolic link
    // planted in its place, and only on a directory of our own.
    let opened = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR) => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is a symbolic link or not a directory; refusing to use it", dir.display()),
            ),
            _ => named("open directory", e),
        })?;
    let owner = opened.metadata().map_err(|e| named("stat", e))?.uid();
    let me = nix::unistd::geteuid().as_raw();
    if owner != me {
        let message =
            format!("{} belongs to uid {owner}, not to this process (uid {me}); refusing to use it", dir.display());
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, message));
    }
    opened.set_permissions(fs::Permissions::from_mode(mode)).map_err(|e| named("set mode of", e))
}

/// `RUNTIME_DIR/run/start.pid`.
#[must_use]
pub fn pid_file(dir: &Path) -> PathBuf {
    dir.join(PID_FILE)
}

/// The pidfile the engine keeps for `svc`: its own
/// [`pidfile`](Service::pidfile), or else `RUNTIME_DIR/run/start.pid` when
/// it has a runtime directory.
pub fn pidfile(svc: &Service) -> Option<PathBuf> {
    svc.pidfile.clone().or_else(|| svc.runtime_dir.as_deref().map(pid_file))
}

/// Makes a service's runtime directory, if it has one, and its five
/// [`SUBDIRS`], with mode [`MODE`] less the umask. Directories that exist
/// are left as they are (a subdirectory may be a symbolic link to a
/// directory elsewhere, such as `data` on a bigger disk). When the
/// supervisor runs as root and the service has a `user` or `group`, the
/// directories made here (not those that existed) are given to that user
/// and group, so that the service can write in them; symbolic links are
/// never followed for that.
///
/// # Errors
///
/// An error whose message names the path that could not be made, or that
/// exists and is not a directory; an unknown user or group, or a failed
/// `chown`, named with the path.
pub fn prepare_for(svc: &Service) -> io::Result<()> {
    let Some(dir) = &svc.runtime_dir else { return Ok(()) };
    let owner = if Uid::effective().is_root() { owner(svc)? } else { None };
    make_all(dir, owner)
}

/// Makes the directories; returns nothing, but gives the new ones to
/// `owner`.
fn make_all(dir: &Path, owner: Option<(Uid, Gid)>) -> io::Result<()> {
    let named = |path: &Path, e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let mut made = Vec::new();
    if fs::metadata(dir).is_err() {
        // The runtime directory itself (and missing parents, which stay
        // the supervisor's): only the last component is the service's.
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            DirBuilder::new().recursive(true).mode(MODE).create(parent).map_err(|e| named(parent, e))?;
        }
        make_one(dir, &mut made).map_err(|e| named(dir, e))?;
    }
    is_dir(dir).map_err(|e| named(dir, e))?;
    for sub in SUBDIRS {
        let path = dir.join(sub);
        make_one(&path, &mut made).map_err(|e| named(&path, e))?;
    }
    if let Some((uid, gid)) = owner {
        for path in made {
            std::os::unix::fs::lchown(&path, Some(uid.as_raw()), Some(gid.as_raw()))
                .map_err(|e| named(&path, io::Error::new(e.kind(), format!("chown: {e}"))))?;
        }
    }
    Ok(())
}

/// Makes one directory (recording it in `made`), or checks that what is
/// there is a directory.
fn make_one(path: &Path, made: &mut Vec<PathBuf>) -> io::Result<()> {
    match DirBuilder::new().mode(MODE).create(path) {
        Ok(()) => {
            made.push(path.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => is_dir(path),
        Err(e) => Err(e),
    }
}

fn is_dir(path: &Path) -> io::Result<()> {
    if fs::metadata(path)?.is_dir() {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a directory"))
    }
}

/// The uid and gid that the service runs as, when it sets one.
fn owner(svc: &Service) -> io::Result<Option<(Uid, Gid)>> {
    if svc.user.is_none() && svc.group.is_none() {
        return Ok(None);
    }
    let unknown = |what: &str, spec: &str| io::Error::new(io::ErrorKind::NotFound, format!("unknown {what} {spec:?}"));
    let user = match &svc.user {
        None => None,
        Some(spec) => {
            let found = match spec.parse::<u32>() {
                Ok(n) => User::from_uid(Uid::from_raw(n)),
                Err(_) => User::from_name(spec),
            };
            Some(found.map_err(io::Error::from)?.ok_or_else(|| unknown("user", spec))?)
        }
    };
    let gid = match (&svc.group, &user) {
        (Some(spec), _) => match spec.parse::<u32>() {
            Ok(n) => Gid::from_raw(n),
            Err(_) => Group::from_name(spec).map_err(io::Error::from)?.ok_or_else(|| unknown("group", spec))?.gid,
        },
        (None, Some(u)) => u.gid,
        (None, None) => return Ok(None),
    };
    Ok(Some((user.map_or_else(Uid::effective, |u| u.uid), gid)))
}

/// What the engine does before it spawns `svc`: makes its runtime
/// directory, and refuses to start when another live process holds
/// `run/start.pid` (the service runs already, under another supervisor).
///
/// # Errors
///
/// Why the start cannot happen, for the status and the log.
pub(crate) fn before_spawn(svc: &Service) -> Result<(), String> {
    let Some(dir) = &svc.runtime_dir else { return Ok(()) };
    prepare_for(svc).map_err(|e| format!("runtime directory: {e}"))?;
    if svc.pidfile.is_none() {
        let path = pid_file(dir);
        if let Ok(PidState::Held(pid)) = PidFile::read(&path) {
            return Err(format!(
                "runtime directory {} is in use: {} is held for pid {pid} by another process",
                dir.display(),
                path.display()
            ));
        }
    }
    Ok(())
}

/// The placeholders, for messages.
const PLACEHOLDERS: &str = "{runtime_dir}, {coordinate} and {name}";

/// Why a command word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlaceholderError {
    /// `{x}` where `x` is not a placeholder.
    #[error(
        "unknown placeholder {{{0}}}: the placeholders are {PLACEHOLDERS} (write {{{{ and }}}} for literal braces)"
    )]
    Unknown(String),
    /// `{runtime_dir}` or `{coordinate}` in a service without that key.
    #[error("{{{0}}} is used, but the service has no {0} key")]
    Missing(&'static str),
    /// A `{` that is not closed.
    #[error("a \"{{\" is not closed by \"}}\" (write {{{{ for a literal brace)")]
    Unclosed,
    /// A `}` that closes nothing.
    #[error("a lone \"}}\" (write }}}} for a literal brace)")]
    LoneClose,
    /// The value is not valid UTF-8 (a runtime directory).
    #[error("the value of {{{0}}} is not valid UTF-8")]
    NotUnicode(&'static str),
    /// In a command for `/bin/sh -c`, a value with characters that the
    /// shell would interpret.
    #[error(
        "the value of {{{name}}}, {value:?}, holds characters that the shell would interpret; \
         in a shell command placeholders may only stand for letters, digits and _ . / : @ % + = , -"
    )]
    ShellUnsafe {
        /// The placeholder.
        name: &'static str,
        /// Its value.
        value: String,
    },
}

/// Whether the commands of `svc` have placeholders expanded: only those
/// of services that set a `runtime_dir` or a `coordinate`, so that the
/// braces of other commands (`awk '{print}'`, `${HOME}`) keep their
/// meaning.
#[must_use]
pub fn uses_placeholders(svc: &Service) -> bool {
    svc.runtime_dir.is_some() || svc.coordinate.is_some()
}

/// The value of the placeholder `name`.
fn value<'s>(name: &str, svc: &'s Service) -> Result<(&'static str, &'s str), PlaceholderError> {
    match name {
        "runtime_dir" => {
            let dir = svc.runtime_dir.as_deref().ok_or(PlaceholderError::Missing("runtime_dir"))?;
            Ok(("runtime_dir", dir.to_str().ok_or(PlaceholderError::NotUnicode("runtime_dir"))?))
        }
        "coordinate" => Ok(("coordinate", svc.coordinate.as_deref().ok_or(PlaceholderError::Missing("coordinate"))?)),
        "name" => Ok(("name", &svc.name)),
        other => Err(PlaceholderError::Unknown(other.to_owned())),
    }
}

/// Expands the placeholders of one command word: `{runtime_dir}`,
/// `{coordinate}` and `{name}` become their values, `{{` and `}}` literal
/// braces.
///
/// # Errors
///
/// An unknown placeholder, one whose key the service lacks, or an
/// unbalanced brace.
pub fn expand(word: &str, svc: &Service) -> Result<String, PlaceholderError> {
    expand_with(word, svc, false)
}

fn expand_with(word: &str, svc: &Service, shell: bool) -> Result<String, PlaceholderError> {
    if !word.contains(['{', '}']) {
        return Ok(word.to_owned());
    }
    let mut out = String::with_capacity(word.len() + 32);
    let mut rest = word;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push('}');
            rest = after;
        } else if tail.starts_with('}') {
            return Err(PlaceholderError::LoneClose);
        } else {
            let end = tail.find('}').ok_or(PlaceholderError::Unclosed)?;
            let (name, value) = value(&tail[1..end], svc)?;
            if shell && !value.chars().all(|c| c.is_ascii_alphanumeric() || "_./:@%+=,-".contains(c)) {
                return Err(PlaceholderError::ShellUnsafe { name, value: value.to_owned() });
            }
            out.push_str(value);
            rest = &tail[end + 1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// [`expand`] on every word of an argument vector.
///
/// # Errors
///
/// As [`expand`], for the first word that fails.
pub fn expand_argv(argv: &[String], svc: &Service) -> Result<Vec<String>, PlaceholderError> {
    argv.iter().map(|w| expand(w, svc)).collect()
}

/// Expands a whole command: each word of an argument vector, or the line
/// of a shell command. In a shell command the values are inserted as they
/// are, into text that `/bin/sh` then parses, so a value with characters
/// that the shell would interpret (spaces, quotes, `$`, `;`...) is refused
/// rather than quoted behind the writer's back: use an argument vector
/// for such values.
///
/// # Errors
///
/// As [`expand`], and [`PlaceholderError::ShellUnsafe`].
pub fn expand_command(command: &Command, svc: &Service) -> Result<Command, PlaceholderError> {
    Ok(match command {
        Command::Argv(argv) => Command::Argv(expand_argv(argv, svc)?),
        Command::Shell(line) => Command::Shell(expand_with(line, svc, true)?),
    })
}

/// What [`check_removable`] found in the way of removing a runtime
/// directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InUse {
    /// A live process holds the pidfile lock (`run/start.pid`).
    Locked {
        /// The pidfile.
        path: PathBuf,
        /// The pid written in it.
        pid: i32,
    },
}

impl fmt::Display for InUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InUse::Locked { path, pid } => write!(f, "{} is held for pid {pid}, which runs", path.display()),
        }
    }
}

/// Whether `run/start.pid` in `dir` proves a live process: its lock is
/// held. A pid in an unlocked file proves nothing and is ignored.
///
/// # Errors
///
/// When the pidfile exists but cannot be read.
pub fn check_removable(dir: &Path) -> io::Result<Result<(), InUse>> {
    let path = pid_file(dir);
    Ok(match PidFile::read(&path)? {
        PidState::Held(pid) => Err(InUse::Locked { path, pid }),
        PidState::Absent | PidState::Stale(_) => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn prepare(dir: &Path) -> io::Result<()> {
        make_all(dir, None)
    }

    fn svc() -> Service {
        let mut s = Service::new("web", Command::Argv(vec!["x".into()]));
        s.runtime_dir = Some(PathBuf::from("/comoyo/runtime/1.idee.prod.trd"));
        s.coordinate = Some("1.idee.prod.trd".into());
        s
    }

    #[test]
    fn expands_the_copkg_command() {
        let s = svc();
        let line = "/opt/sw/start.py --runtime-dir={runtime_dir} --coordinate={coordinate}";
        let cmd = expand_command(&Command::parse(line).unwrap(), &s).unwrap();
        assert_eq!(
            cmd.to_argv(),
            ["/opt/sw/start.py", "--runtime-dir=/comoyo/runtime/1.idee.prod.trd", "--coordinate=1.idee.prod.trd"]
        );
        assert_eq!(expand("{name}-{name}", &s).unwrap(), "web-web");
        assert_eq!(expand("plain", &s).unwrap(), "plain");
        assert_eq!(expand("", &s).unwrap(), "");
    }

    #[test]
    fn doubled_braces_are_literal() {
        let s = svc();
        assert_eq!(expand("{{name}}", &s).unwrap(), "{name}");
        assert_eq!(expand("awk '{{print}}' {{{name}}}", &s).unwrap(), "awk '{print}' {web}");
        assert_eq!(expand("}}{{", &s).unwrap(), "}{");
    }

    #[test]
    fn errors_name_the_placeholder() {
        let s = svc();
        let e = expand("--x={runtime}", &s).unwrap_err();
        assert_eq!(e, PlaceholderError::Unknown("runtime".into()));
        assert!(e.to_string().contains("unknown placeholder {runtime}"), "{e}");
        assert!(e.to_string().contains("{runtime_dir}, {coordinate} and {name}"), "{e}");
        assert_eq!(expand("a{name", &s), Err(PlaceholderError::Unclosed));
        assert_eq!(expand("a}b", &s), Err(PlaceholderError::LoneClose));
        assert_eq!(expand("{}", &s), Err(PlaceholderError::Unknown(String::new())));
        let bare = Service::new("b", Command::Argv(vec!["x".into()]));
        let e = expand("{runtime_dir}", &bare).unwrap_err();
        assert_eq!(e, PlaceholderError::Missing("runtime_dir"));
        assert_eq!(e.to_string(), "{runtime_dir} is used, but the service has no runtime_dir key");
        assert_eq!(expand("{coordinate}", &bare), Err(PlaceholderError::Missing("coordinate")));
        assert_eq!(expand("{name}", &bare).unwrap(), "b");
        assert!(!uses_placeholders(&bare));
        assert!(uses_placeholders(&s));
    }

    #[test]
    fn shell_commands_take_only_plain_values() {
        let mut s = svc();
        let cmd = Command::Shell("exec start.py --runtime-dir={runtime_dir} > {runtime_dir}/console/out".into());
        let Command::Shell(line) = expand_command(&cmd, &s).unwrap() else { panic!() };
        assert_eq!(
            line,
            format!("exec start.py --runtime-dir={0} > {0}/console/out", "/comoyo/runtime/1.idee.prod.trd")
        );
        s.runtime_dir = Some(PathBuf::from("/a b/$(reboot)"));
        let e = expand_command(&cmd, &s).unwrap_err();
        assert!(matches!(e, PlaceholderError::ShellUnsafe { name: "runtime_dir", .. }), "{e:?}");
        // An argument vector takes any value: no shell parses it.
        let argv = Command::Argv(vec!["x".into(), "--d={runtime_dir}".into()]);
        assert_eq!(expand_command(&argv, &s).unwrap().to_argv()[1], "--d=/a b/$(reboot)");
    }

    #[test]
    fn prepare_makes_the_five_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("runtime/1.idee.prod.trd");
        prepare(&dir).unwrap();
        for sub in SUBDIRS {
            let meta = fs::metadata(dir.join(sub)).unwrap();
            assert!(meta.is_dir(), "{sub}");
            // Less the umask, which may take bits away but adds none.
            assert_eq!(meta.permissions().mode() & 0o777 & !MODE, 0, "{sub}");
        }
        // Again: existing directories are fine, and what is in them stays.
        fs::write(dir.join("data/db"), "x").unwrap();
        fs::set_permissions(dir.join("data"), fs::Permissions::from_mode(0o700)).unwrap();
        prepare(&dir).unwrap();
        assert_eq!(fs::read_to_string(dir.join("data/db")).unwrap(), "x");
        assert_eq!(fs::metadata(dir.join("data")).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(pid_file(&dir), dir.join("run/start.pid"));
    }

    #[test]
    fn prepare_accepts_a_linked_subdirectory_and_names_what_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rt");
        fs::create_dir(&dir).unwrap();
        fs::create_dir(tmp.path().join("big")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("big"), dir.join("data")).unwrap();
        fs::write(dir.join("log"), "a file").unwrap();
        let e = prepare(&dir).unwrap_err();
        assert!(e.to_string().contains(&dir.join("log").display().to_string()), "{e}");
        assert!(e.to_string().contains("not a directory"), "{e}");
        fs::remove_file(dir.join("log")).unwrap();
        prepare(&dir).unwrap();
        assert!(fs::symlink_metadata(dir.join("data")).unwrap().file_type().is_symlink());
        // A runtime directory that is a file.
        let file = tmp.path().join("file");
        fs::write(&file, "").unwrap();
        let e = prepare(&file).unwrap_err();
        assert!(e.to_string().starts_with(&file.display().to_string()), "{e}");
    }

    #[test]
    fn the_pid_goes_to_run_start_pid_unless_a_pidfile_is_set() {
        let mut s = svc();
        assert_eq!(pidfile(&s), Some(PathBuf::from("/comoyo/runtime/1.idee.prod.trd/run/start.pid")));
        s.pidfile = Some(PathBuf::from("/run/web.pid"));
        assert_eq!(pidfile(&s), Some(PathBuf::from("/run/web.pid")));
        s.runtime_dir = None;
        s.pidfile = None;
        assert_eq!(pidfile(&s), None);
    }

    #[test]
    fn a_held_pidfile_blocks_a_start_and_a_removal_but_a_stale_one_does_not() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = svc();
        s.runtime_dir = Some(tmp.path().join("rt"));
        before_spawn(&s).unwrap();
        let path = pid_file(tmp.path().join("rt").as_path());
        fs::write(&path, "1\n").unwrap();
        assert_eq!(check_removable(&tmp.path().join("rt")).unwrap(), Ok(()));
        before_spawn(&s).unwrap();
        let held = PidFile::acquire_with(&path, 4242).unwrap();
        let e = before_spawn(&s).unwrap_err();
        assert!(e.contains("is in use") && e.contains("4242"), "{e}");
        assert_eq!(
            check_removable(&tmp.path().join("rt")).unwrap(),
            Err(InUse::Locked { path: path.clone(), pid: 4242 })
        );
        drop(held);
        before_spawn(&s).unwrap();
    }

    #[test]
    fn a_private_directory_is_never_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o755)).unwrap();
        let console = dir.path().join("console");
        std::os::unix::fs::symlink(&elsewhere, &console).unwrap();
        let e = make_private_dir(&console, 0o700).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(fs::metadata(&elsewhere).unwrap().permissions().mode() & 0o777, 0o755);
        let fresh = dir.path().join("a/b");
        make_private_dir(&fresh, 0o700).unwrap();
        assert_eq!(fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
