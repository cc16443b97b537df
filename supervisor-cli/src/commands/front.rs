//! The front ends `svcstart`, `svcstop`, `svcreset` and `svcrestart`: the
//! administrator's commands of a distribution built on daemontools (see
//! `docs/service-directories.md`). They change the state, run the
//! service's own `start` or `stop` check script (or wait for the state),
//! and exit 0 when the service reached it, 1 when not, 7 when no supervisor
//! serves the directory and 2 for bad arguments.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use clap::Args;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{access, AccessFlags, Pid};
use supervisor_core::servicedir::{is_supervised, send_control, RunState, SvStatus};

use super::svc::{check_dir, error_str, probe, POLL};
use crate::exit::{self, CliError};

/// How long a service must have been up (the same process) before
/// `svcstart` without a `start` script calls it started: daemontools
/// restarts a dying service at most once a second, so a service that dies
/// at once is never seen up this long.
pub const MIN_UPTIME: Duration = Duration::from_secs(1);

/// How long a timed-out check script's process group has between `TERM`
/// and `KILL`.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// The front-end commands' arguments.
#[derive(Debug, Clone, Args)]
pub struct FrontArgs {
    /// The service directory.
    pub dir: PathBuf,
    /// Create or remove the `down` file so that the state survives a reboot
    /// (`svcstart` and `svcstop` only).
    #[arg(long)]
    pub persist: bool,
    /// How long the `start` or `stop` script may run (its process group is
    /// killed after that), or, without one, how long to wait for the state.
    #[arg(long, value_parser = crate::parse_duration, default_value = "60s", value_name = "DURATION")]
    pub timeout: Duration,
}

/// Which front-end command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// `svcstart`.
    Start,
    /// `svcstop`.
    Stop,
    /// `svcreset`.
    Reset,
    /// `svcrestart`.
    Restart,
}

impl Front {
    /// The command's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Front::Start => "svcstart",
            Front::Stop => "svcstop",
            Front::Reset => "svcreset",
            Front::Restart => "svcrestart",
        }
    }
}

/// One front-end run on one directory.
struct Ctx<'a> {
    name: &'static str,
    dir: &'a Path,
    /// `dir` made absolute, for the scripts' working directory.
    abs_dir: PathBuf,
    timeout: Duration,
}

impl Ctx<'_> {
    fn fail(&self, why: impl std::fmt::Display) {
        eprintln!("supervisor {}: {}: {why}", self.name, self.dir.display());
    }

    fn control(&self, letters: &str) -> bool {
        match send_control(self.dir, letters) {
            Ok(()) => true,
            Err(e) => {
                let why = match e.raw_os_error() {
                    Some(libc::ENXIO) => "supervise not running".to_string(),
                    _ => error_str(&e),
                };
                self.fail(format_args!("unable to control: {why}"));
                false
            }
        }
    }

    fn status_text(&self) -> String {
        probe(self.dir).text()
    }

    /// `DIR/NAME` when it is an executable file.
    fn script(&self, name: &str) -> Option<PathBuf> {
        let path = self.abs_dir.join(name);
        let meta = fs::metadata(&path).ok()?;
        if !meta.is_file() {
            return None;
        }
        if meta.permissions().mode() & 0o111 == 0 || access(&path, AccessFlags::X_OK).is_err() {
            self.fail(format_args!("{name} is not executable; ignoring it"));
            return None;
        }
        Some(path)
    }

    /// Waits until the service is up (the same live process in the run
    /// state, not paused, for [`MIN_UPTIME`]) or down (no process).
    fn wait_for(&self, up: bool) -> Result<(), String> {
        let start = Instant::now();
        let deadline = start + self.timeout;
        let min_uptime = MIN_UPTIME.min(self.timeout / 2);
        let mut seen: Option<(i32, Instant)> = None;
        loop {
            if let Ok(st) = SvStatus::read(self.dir) {
                if up {
                    match (st.pid, st.state, st.paused) {
                        (Some(pid), RunState::Run, false) if !is_dead(pid) => {
                            let first = match seen {
                                Some((p, t)) if p == pid => t,
                                _ => seen.insert((pid, Instant::now())).1,
                            };
                            let age = SystemTime::now().duration_since(st.since).unwrap_or_default();
                            if age >= min_uptime || first.elapsed() >= min_uptime {
                                return Ok(());
                            }
                        }
                        _ => seen = None,
                    }
                } else if st.pid.is_none() {
                    return Ok(());
                }
            }
            if !is_supervised(self.dir) {
                return Err("supervise is no longer running".into());
            }
            if Instant::now() >= deadline {
                let what = if up { "not up" } else { "not down" };
                return Err(format!(
                    "{what} after {} ({})",
                    humantime::format_duration(self.timeout),
                    self.status_text()
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Runs a `start` or `stop` script in the service directory, in its own
    /// process group, for at most the timeout. `INT`, `TERM` and `HUP`
    /// that this command receives meanwhile are passed on to the script's
    /// process group.
    fn run_script(&self, path: &Path) -> Result<(), String> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut signals = SigSet::empty();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            signals.add(s);
        }
        // Spawned before the signals are blocked: the child inherits the
        // signal mask.
        let mut child = Command::new(path)
            .current_dir(&self.abs_dir)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run {name}: {e}"))?;
        let _mask = MaskGuard::block(&signals);
        let sfd = SignalFd::with_flags(&signals, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).ok();
        let pgrp = Pid::from_raw(child.id() as i32);
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(e) => return Err(format!("waiting for {name}: {e}")),
            }
            if Instant::now() >= deadline {
                kill_group(&mut child, pgrp);
                return Err(format!(
                    "{name} did not finish within {}; killed it",
                    humantime::format_duration(self.timeout)
                ));
            }
            match &sfd {
                Some(sfd) => {
                    let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
                    let _ = poll(&mut fds, PollTimeout::from(POLL.as_millis() as u16));
                    while let Ok(Some(info)) = sfd.read_signal() {
                        if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                            let _ = killpg(pgrp, sig);
                        }
                    }
                }
                None => std::thread::sleep(POLL),
            }
        };
        describe_exit(&name, status)
    }

    /// The script if there is one, otherwise waiting for the state.
    fn check(&self, script: &str, up: bool) -> Result<(), String> {
        match self.script(script) {
            Some(path) => self.run_script(&path),
            None => self.wait_for(up),
        }
    }

    /// `svcstart`: `svc -u`, then the `start` script or waiting until up;
    /// on failure `svc -d`.
    fn start(&self, persist: bool) -> bool {
        let paused = SvStatus::read(self.dir).is_ok_and(|st| st.paused && st.pid.is_some());
        if !self.control(if paused { "uc" } else { "u" }) {
            return false;
        }
        if let Err(why) = self.check("start", true) {
            self.fail(format_args!("{why}; taking it down"));
            self.control("d");
            return false;
        }
        if persist {
            match fs::remove_file(self.dir.join("down")) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    self.fail(format_args!("started, but cannot remove down: {}", error_str(&e)));
                    return false;
                }
            }
        }
        crate::say!("{}: started: {}", self.dir.display(), self.status_text());
        true
    }

    /// `svcstop`: (`--persist`: the `down` file first), `svc -d`, then the
    /// `stop` script or waiting until down.
    fn stop(&self, persist: bool) -> bool {
        if persist {
            let made = fs::OpenOptions::new().write(true).create(true).truncate(false).open(self.dir.join("down"));
            if let Err(e) = made {
                self.fail(format_args!("cannot create down: {}", error_str(&e)));
                return false;
            }
        }
        if !self.control("d") {
            return false;
        }
        if let Err(why) = self.check("stop", false) {
            self.fail(why);
            return false;
        }
        crate::say!("{}: stopped: {}", self.dir.display(), self.status_text());
        true
    }
}

/// Whether the process has ended (or is a zombie) although the status
/// record still shows it: daemontools' `supervise` reaps its child only
/// after a second, so a service that dies at once shows as up meanwhile.
/// Without `/proc`, nothing is known and nothing is dead.
fn is_dead(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => Path::new("/proc/self/stat").exists(),
    }
}

/// Blocks signals for as long as it lives.
struct MaskGuard(Option<SigSet>);

impl MaskGuard {
    fn block(set: &SigSet) -> MaskGuard {
        MaskGuard(set.thread_swap_mask(SigmaskHow::SIG_BLOCK).ok())
    }
}

impl Drop for MaskGuard {
    fn drop(&mut self) {
        if let Some(old) = self.0.take() {
            let _ = old.thread_set_mask();
        }
    }
}

/// `TERM` (and `CONT`) to a process group, `KILL` after [`KILL_GRACE`],
/// and reaps the leader.
fn kill_group(child: &mut Child, pgrp: Pid) {
    let _ = killpg(pgrp, Signal::SIGTERM);
    let _ = killpg(pgrp, Signal::SIGCONT);
    let grace = Instant::now() + KILL_GRACE;
    while Instant::now() < grace && matches!(child.try_wait(), Ok(None)) {
        std::thread::sleep(POLL);
    }
    let _ = killpg(pgrp, Signal::SIGKILL);
    let _ = child.wait();
}

fn describe_exit(name: &str, status: ExitStatus) -> Result<(), String> {
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(format!("{name} exited with code {code}")),
        (None, Some(sig)) => {
            let sig = Signal::try_from(sig).map_or_else(|_| sig.to_string(), |s| s.as_str().to_string());
            Err(format!("{name} was killed by {sig}"))
        }
        (None, None) => Err(format!("{name} failed ({status})")),
    }
}

/// The front ends: `svcstart`, `svcstop`, `svcreset`, `svcrestart`.
///
/// Exit codes: 0 the service reached the state (or, for `svcrestart`, was
/// not running and was left alone); 1 it did not (the script failed or
/// timed out, or the state was not reached in time); 7 no supervisor serves
/// the directory; 2 bad arguments (not a directory, `--persist` with
/// `svcreset` or `svcrestart`).
///
/// # Errors
///
/// [`CliError::Usage`] for bad arguments.
pub fn front(which: Front, args: &FrontArgs) -> Result<u8, CliError> {
    let name = which.name();
    if args.persist && matches!(which, Front::Reset | Front::Restart) {
        return Err(CliError::Usage(format!(
            "{name}: --persist only applies to svcstart and svcstop ({name} follows or keeps the down file)"
        )));
    }
    let dir = args.dir.as_path();
    if let Err(e) = check_dir(dir) {
        return Err(CliError::Usage(format!("{name}: {}: not a service directory: {}", dir.display(), error_str(&e))));
    }
    let abs_dir = std::path::absolute(dir).map_err(|e| CliError::Failed(format!("{}: {e}", dir.display())))?;
    let ctx = Ctx { name, dir, abs_dir, timeout: args.timeout };
    if !is_supervised(dir) {
        ctx.fail("supervise not running");
        return Ok(exit::NOT_RUNNING);
    }
    let ok = match which {
        Front::Start => ctx.start(args.persist),
        Front::Stop => ctx.stop(args.persist),
        Front::Reset => {
            if fs::metadata(dir.join("down")).is_ok() {
                ctx.stop(false)
            } else {
                ctx.start(false)
            }
        }
        Front::Restart => {
            let running = SvStatus::read(dir).is_ok_and(|st| st.pid.is_some() && st.state == RunState::Run);
            if !running {
                crate::say!("{}: not running, not restarted: {}", dir.display(), ctx.status_text());
                return Ok(exit::OK);
            }
            // Start even when the stop check failed, so that a restart never
            // leaves behind a service that is wanted down.
            let stopped = ctx.stop(false);
            let started = ctx.start(false);
            stopped && started
        }
    };
    Ok(if ok { exit::OK } else { exit::FAILURE })
}
