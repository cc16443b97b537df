//! daemontools service directories as [`Service`]s.
//!
//! A service directory holds an executable `run` (the service, which must
//! stay in the foreground), optionally a `down` file (do not start it until
//! told), an executable `finish` (run after each exit, with the exit code or
//! -1 and the signal number as arguments) and a `log/` directory that is a
//! service of its own whose standard input is the main service's standard
//! output, through a pipe that outlives restarts of either side.
//!
//! A `follow` file (ours, not daemontools') replaces `fghack`: a `run`
//! that puts its program in the background is followed to the process it
//! leaves behind (see [`Service::follow`]).
//!
//! Restarts are throttled as daemontools throttles them: a service that ran
//! at least a second is restarted at once; one that died sooner waits a
//! second, so it is never started more than once per second.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::{Command, Expected, Input, Output, Service};
use crate::model::{RestartMode, RestartPolicy};

/// A service directory, and its `log/` service if it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceDir {
    /// The directory (absolute).
    pub dir: PathBuf,
    /// The main service; named after the directory.
    pub main: Service,
    /// The `log/` service, named `NAME/log`, if `log/run` is executable.
    pub log: Option<Service>,
}

pub use crate::os::spawn::is_executable;

/// The restart policy of daemontools' `supervise`: at most one start per
/// second, forever.
#[must_use]
pub fn daemontools_policy() -> RestartPolicy {
    RestartPolicy {
        mode: RestartMode::Always,
        exit_codes: Vec::new(),
        min_uptime: Duration::from_secs(1),
        backoff_limit: Duration::from_secs(1),
        backoff_step: Duration::from_secs(1),
        forever: true,
        // supervise waits one whole second between starts.
        jitter: false,
    }
}

fn one(name: String, dir: &Path) -> Service {
    let mut svc = Service::new(name, Command::Argv(vec!["./run".into()]));
    svc.directory = Some(dir.to_path_buf());
    svc.restart = daemontools_policy();
    svc.expected = if dir.join("down").exists() { Expected::Stopped } else { Expected::Running };
    if is_executable(&dir.join("finish")) {
        svc.finish = Some(vec!["./finish".into()]);
    }
    // Our own marker, in place of `exec fghack program`.
    svc.follow = dir.join("follow").exists();
    svc
}

impl ServiceDir {
    /// Reads the service directory `dir`, to be supervised as `name`.
    /// `None` when it has no executable `run`.
    #[must_use]
    pub fn load(dir: &Path, name: &str) -> Option<ServiceDir> {
        let dir = std::path::absolute(dir).ok()?;
        if !is_executable(&dir.join("run")) {
            return None;
        }
        let mut main = one(name.to_string(), &dir);
        let log_dir = dir.join("log");
        let log = is_executable(&log_dir.join("run")).then(|| {
            let mut log = one(format!("{name}/log"), &log_dir);
            log.stdin = Input::Pipe(name.to_string());
            log
        });
        if log.is_some() {
            main.stdout = Output::Pipe(name.to_string());
        }
        Some(ServiceDir { dir, main, log })
    }

    /// The name of the pipe between the main and the log service.
    #[must_use]
    pub fn pipe_name(&self) -> &str {
        &self.main.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(path: &Path) {
        std::fs::write(path, "#!/bin/sh\nexec sleep 100\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn reads_run_down_finish_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("web");
        std::fs::create_dir_all(d.join("log")).unwrap();
        assert!(ServiceDir::load(&d, "web").is_none(), "no run");
        std::fs::write(d.join("run"), "not executable").unwrap();
        assert!(ServiceDir::load(&d, "web").is_none());
        script(&d.join("run"));
        let sd = ServiceDir::load(&d, "web").unwrap();
        assert_eq!(sd.main.expected, Expected::Running);
        assert_eq!(sd.main.stdout, Output::Inherit);
        assert!(sd.log.is_none() && sd.main.finish.is_none());
        std::fs::write(d.join("down"), "").unwrap();
        script(&d.join("finish"));
        script(&d.join("log/run"));
        let sd = ServiceDir::load(&d, "web").unwrap();
        assert_eq!(sd.main.expected, Expected::Stopped);
        assert_eq!(sd.main.finish, Some(vec!["./finish".to_string()]));
        assert_eq!(sd.main.stdout, Output::Pipe("web".into()));
        let log = sd.log.unwrap();
        assert_eq!(log.name, "web/log");
        assert_eq!(log.stdin, Input::Pipe("web".into()));
        assert_eq!(log.directory.as_deref(), Some(d.join("log").as_path()));
    }
}
