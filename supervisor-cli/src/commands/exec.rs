//! `exec`: set up the process, then exec a program (setuidgid, softlimit,
//! setlock, pgrphack).
//!
//! Everything that can be looked up is looked up first (the user and its
//! groups, the arguments as C strings), so that no step fails half-way for
//! a reason known in advance. Then, in this order, as a chain of the
//! daemontools helpers would do it: a new process group, the soft limits,
//! the lock, the user, and `execvp` (a `PATH` search). A failed step prints
//! `supervisor exec: STEP: REASON` and exits 111, the daemontools code for a
//! temporary failure; bad arguments exit 2.

use std::convert::Infallible;
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use clap::Args;
use nix::unistd::{Gid, Pid, Uid, User};
use supervisor_core::limits::{self, LockError, UNLIMITED};
use supervisor_core::Limits;

use crate::exit::CliError;

/// The exit code of a failed step (daemontools' "temporary failure").
pub const TEMPORARY_FAILURE: u8 = 111;

/// `exec [OPTIONS] -- PROGRAM ARGS...`.
#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// Run as this user (a name, or a uid with an entry in the user
    /// database): its groups, its primary group, then its uid, like
    /// `setuidgid`.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Soft limit on memory ("512MB", "1GiB", bytes): data segment, stack,
    /// locked memory and address space, like `softlimit -m`.
    #[arg(long, value_name = "SIZE", value_parser = parse_limit_size)]
    pub limit_mem: Option<u64>,
    /// Soft limit on open descriptors, like `softlimit -o`.
    #[arg(long, value_name = "N", value_parser = parse_limit_count)]
    pub limit_files: Option<u64>,
    /// Soft limit on the user's processes, like `softlimit -p`.
    #[arg(long, value_name = "N", value_parser = parse_limit_count)]
    pub limit_procs: Option<u64>,
    /// Soft limit on CPU time: seconds ("60") or a duration in whole
    /// seconds ("1m"), like `softlimit -t`.
    #[arg(long, value_name = "SECONDS", value_parser = parse_limit_cpu)]
    pub limit_cpu: Option<u64>,
    /// Soft limit on the size of core dumps (0: none), like `softlimit -c`.
    #[arg(long, value_name = "SIZE", value_parser = parse_limit_size)]
    pub limit_core: Option<u64>,
    /// Lock FILE (created if needed) with flock, waiting while another
    /// process holds it; PROGRAM inherits the descriptor and keeps the lock
    /// until it exits, like `setlock`.
    #[arg(long, value_name = "FILE")]
    pub lock: Option<PathBuf>,
    /// With --lock: fail at once (exit 111) when the lock is held, like
    /// `setlock -n`.
    #[arg(long, requires = "lock")]
    pub lock_nowait: bool,
    /// Run PROGRAM in a new process group, like `pgrphack`.
    #[arg(long)]
    pub new_pgrp: bool,
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    pub program: Vec<OsString>,
}

impl ExecArgs {
    /// The limits asked for.
    #[must_use]
    pub fn limits(&self) -> Limits {
        let mut limits = Limits::default();
        limits.mem = self.limit_mem;
        limits.files = self.limit_files;
        limits.procs = self.limit_procs;
        limits.cpu = self.limit_cpu;
        limits.core = self.limit_core;
        limits
    }
}

/// `=` or `unlimited`: as high as the hard limit (`softlimit`'s `=`).
fn as_high_as_allowed(s: &str) -> bool {
    s == "=" || s.eq_ignore_ascii_case("unlimited")
}

fn parse_limit_size(s: &str) -> Result<u64, String> {
    if as_high_as_allowed(s) {
        return Ok(UNLIMITED);
    }
    limits::parse_size(s).map_err(|e| format!("{e}, or \"unlimited\""))
}

fn parse_limit_count(s: &str) -> Result<u64, String> {
    if as_high_as_allowed(s) {
        return Ok(UNLIMITED);
    }
    s.parse().map_err(|_| "expected a number, or \"unlimited\"".to_owned())
}

fn parse_limit_cpu(s: &str) -> Result<u64, String> {
    const EXPECTED: &str = "expected seconds (\"60\") or a duration in whole seconds (\"1m\"), or \"unlimited\"";
    if as_high_as_allowed(s) {
        return Ok(UNLIMITED);
    }
    if let Ok(n) = s.parse() {
        return Ok(n);
    }
    match humantime::parse_duration(s) {
        Ok(d) if d.subsec_nanos() == 0 => Ok(d.as_secs()),
        _ => Err(EXPECTED.to_owned()),
    }
}

/// A user to become: what `setuidgid` sets.
struct Ids {
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
}

fn lookup_user(spec: &str) -> Result<Ids, String> {
    let found = match spec.parse::<u32>() {
        Ok(n) => User::from_uid(Uid::from_raw(n)),
        Err(_) => User::from_name(spec),
    };
    let user = match found {
        Ok(Some(u)) => u,
        Ok(None) => return Err(format!("unknown user {spec:?}")),
        Err(e) => return Err(format!("look up user {spec:?}: {}", e.desc())),
    };
    let name = CString::new(user.name.as_bytes()).map_err(|_| format!("user name {:?} holds a NUL", user.name))?;
    let groups = nix::unistd::getgrouplist(&name, user.gid)
        .map_err(|e| format!("groups of user {}: {}", user.name, e.desc()))?;
    Ok(Ids { uid: user.uid, gid: user.gid, groups })
}

fn cstring(s: &OsString) -> Result<CString, String> {
    CString::new(s.as_bytes()).map_err(|_| format!("argument {s:?} holds a NUL"))
}

/// Runs the steps; returns only on failure, with the message.
fn run(args: &ExecArgs) -> Result<Infallible, String> {
    let argv = args.program.iter().map(cstring).collect::<Result<Vec<_>, _>>()?;
    let program = argv.first().ok_or("no program to run")?;
    let ids = args.user.as_deref().map(lookup_user).transpose()?;

    if args.new_pgrp {
        // A process group leader (a session leader, say) already has a
        // group of its own, and may not call setpgid.
        if nix::unistd::getpgrp() != nix::unistd::getpid() {
            nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)).map_err(|e| format!("setpgid: {}", e.desc()))?;
        }
    }
    args.limits().apply().map_err(|e| e.to_string())?;
    // Kept open (and inheritable) through exec: the program holds the lock.
    let _lock = match &args.lock {
        None => None,
        Some(path) => Some(limits::take_lock(path, !args.lock_nowait, true).map_err(|e| match e {
            LockError::Held(p) => format!("lock {} is held", p.display()),
            other => other.to_string(),
        })?),
    };
    if let Some(ids) = &ids {
        nix::unistd::setgroups(&ids.groups).map_err(|e| format!("setgroups: {}", e.desc()))?;
        nix::unistd::setgid(ids.gid).map_err(|e| format!("setgid {}: {}", ids.gid, e.desc()))?;
        nix::unistd::setuid(ids.uid).map_err(|e| format!("setuid {}: {}", ids.uid, e.desc()))?;
    }
    // Rust ignores SIGPIPE, and ignored signals survive exec.
    crate::os::default_ignored_signals();
    let e = nix::unistd::execvp(program, &argv).unwrap_err();
    Err(format!("exec {}: {}", program.to_string_lossy(), e.desc()))
}

/// `exec`: returns only when a step fails, with exit code 111.
///
/// # Errors
///
/// None: failures are printed here and mapped to [`TEMPORARY_FAILURE`].
pub fn exec(args: &ExecArgs) -> Result<u8, CliError> {
    match run(args) {
        Ok(never) => match never {},
        Err(message) => {
            eprintln!("supervisor exec: {message}");
            Ok(TEMPORARY_FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_values() {
        assert_eq!(parse_limit_size("512MB"), Ok(512_000_000));
        assert_eq!(parse_limit_size("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_limit_size("0"), Ok(0));
        assert_eq!(parse_limit_size("="), Ok(UNLIMITED));
        assert_eq!(parse_limit_size("unlimited"), Ok(UNLIMITED));
        assert!(parse_limit_size("10M").unwrap_err().contains("expected a size such as"));
        assert_eq!(parse_limit_count("1024"), Ok(1024));
        assert_eq!(parse_limit_count("Unlimited"), Ok(UNLIMITED));
        assert!(parse_limit_count("-1").is_err());
        assert!(parse_limit_count("1k").is_err());
        assert_eq!(parse_limit_cpu("60"), Ok(60));
        assert_eq!(parse_limit_cpu("2m"), Ok(120));
        assert_eq!(parse_limit_cpu("="), Ok(UNLIMITED));
        assert!(parse_limit_cpu("1500ms").unwrap_err().contains("whole seconds"));
        assert!(parse_limit_cpu("soon").is_err());
    }

    #[test]
    fn users_are_looked_up_first() {
        let root = lookup_user("root").unwrap();
        assert_eq!((root.uid.as_raw(), root.gid.as_raw()), (0, 0));
        assert!(root.groups.contains(&Gid::from_raw(0)));
        assert_eq!(lookup_user("0").unwrap().uid.as_raw(), 0);
        assert_eq!(lookup_user("no-such-user-xyz").err().unwrap(), "unknown user \"no-such-user-xyz\"");
    }
}
