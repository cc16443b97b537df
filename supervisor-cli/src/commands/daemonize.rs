//! `daemonize`: runs a foreground program in the background with a pidfile,
//! and stops it or reports on it through that pidfile, as simplevisor's
//! `simplevisor-loop --daemon` does for an external service's `daemon`
//! option.
//!
//! The background process is a small supervisor of its own: it holds the
//! pidfile (locked, so that a stale one is never believed), runs the
//! program in its own process group, and when asked to stop (`TERM`) stops
//! the program and its descendants (`TERM`, then `KILL`), removes the
//! pidfile and exits. When the program ends by itself, it removes the
//! pidfile and exits too, so that `--status` says "stopped".

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use supervisor_core::{Command, Engine, RestartMode, Service, ServiceState};
use supervisor_core::{Daemonized, Daemonizer};
use supervisor_core::{PidFile, PidState};

use crate::exit::{self, CliError};

/// Arguments of `daemonize`.
#[derive(Debug, Clone, Args)]
pub struct DaemonizeArgs {
    /// The pidfile (it holds the pid of the background process).
    #[arg(long, value_name = "PATH")]
    pub pidfile: PathBuf,
    /// Stop the program that runs with this pidfile.
    #[arg(long, conflicts_with_all = ["status", "program"])]
    pub stop: bool,
    /// Exit 0 if it runs, 3 if it does not, 1 if a stale pidfile is left
    /// (LSB status codes).
    #[arg(long, conflicts_with = "program")]
    pub status: bool,
    /// How long `--stop` waits before `KILL`.
    #[arg(long, value_parser = crate::parse_duration, default_value = "10s", value_name = "DURATION")]
    pub timeout: Duration,
    /// The program and its arguments.
    #[arg(last = true, value_name = "PROGRAM")]
    pub program: Vec<String>,
}

/// The name of the one service of the background process.
const PROGRAM: &str = "program";

fn failed(what: impl std::fmt::Display) -> CliError {
    CliError::Failed(what.to_string())
}

/// Runs `daemonize`.
///
/// # Errors
///
/// When the program cannot be started or stopped.
pub fn daemonize(args: &DaemonizeArgs) -> Result<u8, CliError> {
    let state = PidFile::read(&args.pidfile).map_err(|e| failed(format!("{}: {e}", args.pidfile.display())))?;
    if args.status {
        return Ok(match state {
            PidState::Held(pid) => {
                crate::say!("running (pid {pid})");
                exit::OK
            }
            PidState::Absent => {
                crate::say!("not running");
                exit::STATUS_STOPPED
            }
            PidState::Stale(_) => {
                crate::say!("not running, but a stale pidfile is left: {}", args.pidfile.display());
                exit::FAILURE
            }
        });
    }
    if args.stop {
        return stop(args, state);
    }
    if args.program.is_empty() {
        return Err(CliError::Usage("daemonize: give the program after --, or --stop or --status".into()));
    }
    if let PidState::Held(pid) = state {
        crate::say!("already running (pid {pid})");
        return Ok(exit::OK);
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    // SAFETY: the pidfile was read and closed; the daemon opens what it
    // uses afterwards.
    match unsafe { Daemonizer::new().directory(&cwd).daemonize() }.map_err(failed)? {
        Daemonized::Parent(readiness) => match readiness.wait(Duration::from_secs(30)) {
            Ok(()) => Ok(exit::OK),
            Err(e) => Err(failed(format!("{}: {e}", args.program[0]))),
        },
        Daemonized::Daemon(notifier) => {
            let pidfile = match PidFile::acquire(&args.pidfile) {
                Ok(p) => p,
                Err(e) => {
                    notifier.fail(&e.to_string());
                    std::process::exit(1)
                }
            };
            crate::os::set_process_name(&format!("daemonize: {}", args.program[0]));
            let code = match run_program(args) {
                Ok(engine) => {
                    notifier.ready();
                    watch(engine)
                }
                Err(e) => {
                    notifier.fail(&e);
                    1
                }
            };
            drop(pidfile);
            std::process::exit(code)
        }
    }
}

/// Starts the program under a one-service engine; an error when it could
/// not be executed.
fn run_program(args: &DaemonizeArgs) -> Result<Engine, String> {
    let mut engine = Engine::new("daemonize").map_err(|e| e.to_string())?;
    engine.stop_on_signals().map_err(|e| e.to_string())?;
    let mut svc = Service::new(PROGRAM, Command::Argv(args.program.clone()));
    svc.restart.mode = RestartMode::Never;
    svc.stop_timeout = args.timeout;
    engine.add_service(svc).map_err(|e| e.to_string())?;
    let status = engine.status();
    match status.services.first() {
        Some(s) if s.state == ServiceState::Fatal => Err(s.error.clone().unwrap_or_else(|| "cannot start".into())),
        _ => Ok(engine),
    }
}

/// Runs until the program ends or a stop signal has stopped it.
fn watch(mut engine: Engine) -> i32 {
    loop {
        if engine.turn(None).is_err() || engine.is_finished() {
            return 0;
        }
        if matches!(engine.state(PROGRAM), Some(ServiceState::Exited | ServiceState::Fatal)) {
            return 0;
        }
    }
}

/// `--stop`: `TERM` to the background process (which stops the program),
/// then `KILL` to it and its children after the timeout.
fn stop(args: &DaemonizeArgs, state: PidState) -> Result<u8, CliError> {
    let pid = match state {
        PidState::Held(pid) => pid,
        PidState::Absent => {
            crate::say!("not running");
            return Ok(exit::OK);
        }
        PidState::Stale(_) => {
            let _ = std::fs::remove_file(&args.pidfile);
            crate::say!("not running; removed the stale pidfile {}", args.pidfile.display());
            return Ok(exit::OK);
        }
    };
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    // The background process stops the program (TERM, then KILL after the
    // timeout) before it releases the pidfile; give it that and a little.
    let deadline = Instant::now() + args.timeout + Duration::from_secs(2);
    while Instant::now() < deadline {
        match PidFile::read(&args.pidfile) {
            Ok(PidState::Held(_)) => {}
            other => {
                if matches!(other, Ok(PidState::Stale(_))) {
                    let _ = std::fs::remove_file(&args.pidfile);
                }
                crate::say!("stopped");
                return Ok(exit::OK);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let kids = supervisor_core::process::children(pid);
    for k in kids {
        let _ = kill(Pid::from_raw(-k), Signal::SIGKILL);
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    Err(failed(format!("pid {pid} did not stop within {:?}; killed it", args.timeout)))
}
