//! What a spawn resolves in the parent, before the child is made: the
//! user and groups, the program in `PATH`, the environment.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};

use super::{cstring, SpawnError, SERVICE_ENV};
use crate::model::Service;

/// Resolves the user and group to (uid, gid, supplementary groups).
pub(super) fn resolve_ids(svc: &Service) -> Result<Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>, SpawnError> {
    let user = match &svc.user {
        None => None,
        Some(u) => Some(lookup_user(u)?),
    };
    let gid = match (&svc.group, &user) {
        (Some(g), _) => lookup_group(g)?,
        (None, Some(u)) => u.gid,
        (None, None) => return Ok(None),
    };
    let (uid, groups) = match &user {
        Some(u) => {
            let name = cstring(&u.name, "user name")?;
            let groups = nix::unistd::getgrouplist(&name, gid)
                .map_err(|e| SpawnError::Setup(format!("groups of user {}: {e}", u.name)))?;
            (u.uid, groups)
        }
        None => (Uid::current(), vec![gid]),
    };
    Ok(Some((uid.as_raw(), gid.as_raw(), groups.into_iter().map(Gid::as_raw).collect())))
}

/// Whether the service's `user` and `group` exist: the field that names
/// one that does not, and why.
pub(crate) fn check_ids(svc: &Service) -> Result<(), (&'static str, String)> {
    if let Some(u) = &svc.user {
        lookup_user(u).map_err(|e| ("user", e.to_string()))?;
    }
    if let Some(g) = &svc.group {
        lookup_group(g).map_err(|e| ("group", e.to_string()))?;
    }
    Ok(())
}

fn lookup_user(spec: &str) -> Result<User, SpawnError> {
    let found = match spec.parse::<u32>() {
        Ok(n) => User::from_uid(Uid::from_raw(n)),
        Err(_) => User::from_name(spec),
    };
    match found {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(SpawnError::Setup(format!("unknown user {spec:?}"))),
        Err(e) => Err(SpawnError::Setup(format!("look up user {spec:?}: {e}"))),
    }
}

fn lookup_group(spec: &str) -> Result<Gid, SpawnError> {
    if let Ok(n) = spec.parse::<u32>() {
        return Ok(Gid::from_raw(n));
    }
    match Group::from_name(spec) {
        Ok(Some(g)) => Ok(g.gid),
        Ok(None) => Err(SpawnError::Setup(format!("unknown group {spec:?}"))),
        Err(e) => Err(SpawnError::Setup(format!("look up group {spec:?}: {e}"))),
    }
}

/// Finds `program` in `path_var` the way `execvp` would, or returns it as
/// it is when it holds a `/`.
pub fn find_program(program: &str, path_var: Option<&OsStr>, cwd: Option<&Path>) -> Option<PathBuf> {
    if program.contains('/') {
        let p = Path::new(program);
        return Some(match (p.is_relative(), cwd) {
            (true, Some(dir)) => dir.join(p),
            _ => p.to_path_buf(),
        });
    }
    let default = OsString::from("/usr/local/bin:/usr/bin:/bin");
    let path_var = path_var.unwrap_or(&default);
    std::env::split_paths(path_var).map(|dir| dir.join(program)).find(|cand| is_executable(cand))
}

/// Whether `p` is an executable regular file.
pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The variables of `sd_notify` that the
/// supervisor's own service manager set for it.
const MANAGER_ENV: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// The environment of the child, as `KEY=VALUE` pairs: ours (unless
/// `env.clear`), the service's, `extra` (what the engine adds at each
/// start), and the service's name.
pub(super) fn environment(svc: &Service, extra: &[(&str, String)]) -> Vec<(OsString, OsString)> {
    let mut env: std::collections::BTreeMap<OsString, OsString> = if svc.env.clear {
        std::collections::BTreeMap::default()
    } else {
        // What the supervisor's own service manager gave it is not the
        // services' to use.
        std::env::vars_os().filter(|(k, _)| !MANAGER_ENV.iter().any(|m| k == m)).collect()
    };
    for (k, v) in &svc.env.vars {
        env.insert(k.into(), v.into());
    }
    for (k, v) in extra {
        env.insert(k.into(), v.into());
    }
    env.insert(SERVICE_ENV.into(), svc.name.clone().into());
    env.into_iter().collect()
}
