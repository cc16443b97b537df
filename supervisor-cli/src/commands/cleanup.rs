//! `cleanup NAME...`: removes the runtime directories (copkg) of services
//! that are stopped.
//!
//! With a supervisor running, it decides: a service is removable when its
//! state is `stopped`, `exited` or `fatal`, with no process and no
//! descendant left. Without one (or for a service that the running
//! supervisor does not know, after an edit of the file), what is left on
//! the system decides: a live process holding the lock of `run/start.pid`,
//! the main process recorded in the state file, or any process marked as
//! this service of this instance (a supervisor that was killed leaves its
//! services running) keeps the directory.
//!
//! The directory is removed with [`std::fs::remove_dir_all`], which never
//! follows symbolic links: a link inside it (`data` pointing at a bigger
//! disk) is removed, not what it points to. A runtime directory that is
//! itself a symbolic link is refused, as removing only the link would not
//! clean anything up; remove the link or its target by hand.
//!
//! Between the check and the removal, nothing stops a `start` from another
//! terminal; the next start makes the directories again.

use std::io;
use std::path::Path;
use std::time::Duration;

use supervisor_core::protocol::Command;
use supervisor_core::runtime_dir::{self, InUse};
use supervisor_core::{ServiceState, ServiceStatus};

use crate::config::Config;
use crate::exit::{self, CliError};

/// `cleanup NAME...`: 0 when every named directory is gone, 1 when one was
/// refused or could not be removed.
///
/// # Errors
///
/// A usage error (2) for an unknown service or one without `runtime_dir`,
/// before anything is removed.
pub fn cleanup(config: &Config, names: &[String]) -> Result<u8, CliError> {
    if names.is_empty() {
        return Err(CliError::Usage("name the services whose runtime directories to remove".into()));
    }
    let mut targets = Vec::new();
    for name in names {
        let svc = config.services.iter().find(|s| &s.name == name).ok_or_else(|| CliError::UnknownService {
            message: format!("no service named {name:?} in {}", config.path.display()),
            code: exit::USAGE,
        })?;
        let dir = svc.runtime_dir.as_deref().ok_or_else(|| {
            CliError::Usage(format!("service {name:?} has no runtime_dir: there is no runtime directory to remove"))
        })?;
        targets.push((name.as_str(), dir));
    }
    let mut code = exit::OK;
    for (name, dir) in targets {
        let verdict = match busy(config, name, dir) {
            Ok(None) => remove(dir),
            Ok(Some(why)) => Err(why),
            Err(e) => return Err(e),
        };
        match verdict {
            Ok(done) => crate::say!("{name}: {done}"),
            Err(why) => {
                eprintln!("supervisor: {name}: runtime directory {} not removed: {why}", dir.display());
                code = exit::FAILURE;
            }
        }
    }
    Ok(code)
}

/// Why the service's directory must stay, if it must.
fn busy(config: &Config, name: &str, dir: &Path) -> Result<Option<String>, CliError> {
    let command = Command::Status { names: vec![name.to_owned()] };
    match super::reach::Reach::of(config).call(command, Duration::from_secs(10), exit::NOT_RUNNING, exit::USAGE) {
        Ok(resp) => {
            let status = resp.status.and_then(|s| s.services.into_iter().find(|s| s.name == name));
            match status {
                Some(s) => {
                    if let Some(why) = active(&s) {
                        return Ok(Some(why));
                    }
                }
                None => return Err(CliError::Failed(format!("the supervisor sent no status for {name:?}"))),
            }
        }
        // No supervisor, or one that runs an older version of the file:
        // look at the system.
        Err(CliError::NotRunning { .. } | CliError::UnknownService { .. }) => {
            if let Some(why) = leftover(config, name) {
                return Ok(Some(why));
            }
        }
        Err(e) => return Err(e),
    }
    match runtime_dir::check_removable(dir) {
        Ok(Ok(())) => Ok(None),
        Ok(Err(InUse::Locked { path, pid })) => {
            Ok(Some(format!("{} is held for pid {pid}: the service runs (under another supervisor?)", path.display())))
        }
        Ok(Err(other)) => Ok(Some(format!("{other:?}"))),
        Err(e) => Ok(Some(format!("cannot read {}: {e}", runtime_dir::pid_file(dir).display()))),
    }
}

/// Why a service that the supervisor reports on is not down.
fn active(s: &ServiceStatus) -> Option<String> {
    let down = matches!(s.state, ServiceState::Stopped | ServiceState::Exited | ServiceState::Fatal);
    if down && s.pid.is_none() && s.descendants == 0 {
        return None;
    }
    let mut what = format!("the service's state is {}", s.state);
    if let Some(pid) = s.pid {
        what.push_str(&format!(" (pid {pid})"));
    }
    if s.descendants > 0 {
        what.push_str(&format!(" with {} descendant(s) left", s.descendants));
    }
    Some(format!("{what}; stop it first (supervisor stop {})", s.name))
}

/// A process of the service left running without a supervisor (see
/// [`runtime_dir::leftover_process`]).
fn leftover(config: &Config, name: &str) -> Option<String> {
    let marker = config.runtime_dir.display().to_string();
    let pid = runtime_dir::leftover_process(&config.state_path(), &marker, name)?;
    Some(format!("process {pid} of the service still runs (no supervisor watches it)"))
}

/// Removes `dir`; what was done, or why not.
fn remove(dir: &Path) -> Result<String, String> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(format!("{} does not exist; nothing to remove", dir.display()))
        }
        Err(e) => return Err(e.to_string()),
        Ok(m) if m.file_type().is_symlink() => {
            let target = std::fs::read_link(dir).map(|t| format!(" to {}", t.display())).unwrap_or_default();
            return Err(format!(
                "it is a symbolic link{target}; remove the link, or the directory it points to, by hand"
            ));
        }
        Ok(m) if !m.is_dir() => return Err("it is not a directory".into()),
        Ok(_) => {}
    }
    std::fs::remove_dir_all(dir).map_err(|e| e.to_string())?;
    Ok(format!("removed {}", dir.display()))
}
