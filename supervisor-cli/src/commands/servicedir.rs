//! `scan` and `supervise`: daemontools service directories, supervised with
//! a `supervise/` directory that daemontools' and runit's tools understand.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::Value;
use supervisor_core::protocol::{ErrorCode, Response};
use supervisor_core::servicedir::ServiceDir;
use supervisor_core::servicedir::{SuperviseDir, SuperviseError};
use supervisor_core::{Daemonized, Daemonizer};
use supervisor_core::{Engine, Signal};

use crate::exit::{self, CliError};
use crate::logger;

/// daemontools' exit code for a temporary failure.
const TEMPORARY_FAILURE: u8 = 111;

/// `scan DIR`.
#[derive(Debug, Clone, Args)]
pub struct ScanArgs {
    /// The directory whose subdirectories are services.
    pub dir: PathBuf,
    /// Detach into the background (with the daemon machinery of `up`).
    #[arg(long)]
    pub daemon: bool,
    /// Rescan this often for new and removed service directories.
    #[arg(long, default_value = "5s", value_parser = crate::parse_duration)]
    pub rescan: Duration,
}

/// `supervise SERVICEDIR`.
#[derive(Debug, Clone, Args)]
pub struct SuperviseArgs {
    /// The service directory.
    pub dir: PathBuf,
}

fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::Failed(e.to_string())
}

fn engine(name: String) -> Result<Engine, CliError> {
    logger::init(log::LevelFilter::Info);
    let mut engine = Engine::new(name).map_err(failed)?;
    engine.own_process().map_err(failed)?;
    engine.stop_on_signals().map_err(failed)?;
    for sig in [Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGALRM] {
        engine.catch_signal(sig).map_err(failed)?;
    }
    Ok(engine)
}

/// Adds a service directory (and its `log/`) to the engine. A directory
/// that another supervisor holds is an error.
fn add_dir(engine: &mut Engine, dir: &Path, name: &str) -> Result<bool, SuperviseError> {
    let Some(sd) = ServiceDir::load(dir, name) else { return Ok(false) };
    // Lock both directories before starting anything.
    let main_lock = SuperviseDir::open(&sd.dir)?;
    let log_lock = match &sd.log {
        Some(_) => Some(SuperviseDir::open(&sd.dir.join("log"))?),
        None => None,
    };
    let io = |e: supervisor_core::EngineError| SuperviseError::Io { path: sd.dir.clone(), source: e.into_io() };
    if let (Some(log), Some(lock)) = (sd.log.clone(), log_lock) {
        engine.add_pipe(sd.pipe_name()).map_err(io)?;
        // The reader first, so that the first lines have somewhere to go.
        let log_name = log.name.clone();
        engine.add_service(log).map_err(io)?;
        engine.attach_supervise_dir(&log_name, lock).map_err(io)?;
    }
    let main_name = sd.main.name.clone();
    engine.add_service(sd.main).map_err(io)?;
    engine.attach_supervise_dir(&main_name, main_lock).map_err(io)?;
    Ok(true)
}

/// `supervise SERVICEDIR`: one service directory in the foreground, until
/// `svc -x` (once it is down), SIGTERM or SIGINT.
///
/// # Errors
///
/// 111 when the directory is already supervised or cannot be used.
pub fn supervise(args: &SuperviseArgs) -> Result<u8, CliError> {
    let name = dir_name(&args.dir);
    let mut engine = engine(name.clone())?;
    match add_dir(&mut engine, &args.dir, &name) {
        Ok(true) => {}
        Ok(false) => {
            return Err(failed(format!("{}: no executable run file", args.dir.display())));
        }
        Err(SuperviseError::AlreadySupervised(_)) => {
            eprintln!(
                "supervisor supervise: fatal: unable to acquire {}/supervise/lock: temporary failure",
                args.dir.display()
            );
            return Ok(TEMPORARY_FAILURE);
        }
        Err(e) => {
            eprintln!("supervisor supervise: fatal: {e}");
            return Ok(TEMPORARY_FAILURE);
        }
    }
    while !engine.is_finished() {
        engine.turn(None).map_err(failed)?;
        let _ = engine.take_signals();
        if engine.exit_requested().iter().any(|n| n == &name) {
            engine.shutdown();
        }
    }
    engine.run().map_err(failed)?;
    Ok(exit::OK)
}

fn dir_name(dir: &Path) -> String {
    std::path::absolute(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string())
}

/// The service directories in `dir`: subdirectories not starting with `.`.
fn list(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            (!name.starts_with('.')).then_some((name, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Picks up new service directories and retires those that are gone.
fn rescan(engine: &mut Engine, dir: &Path) {
    let present = list(dir);
    let known = engine.service_names();
    for (name, path) in &present {
        if known.iter().any(|k| k == name) {
            continue;
        }
        match add_dir(engine, path, name) {
            Ok(true) => log::info!("{name}: now supervised"),
            Ok(false) => {}
            Err(e) => log::error!("{name}: not supervised: {e}"),
        }
    }
    for name in known {
        let main = name.strip_suffix("/log").unwrap_or(&name);
        let still = present.iter().any(|(n, p)| n == main && ServiceDir::load(p, n).is_some());
        if !still {
            log::info!("{name}: its directory is gone; stopping it");
            let _ = engine.retire_service(&name);
        }
    }
}

/// The control socket of the `scan` of `dir` (a dot-directory, which is
/// never taken for a service).
fn control_socket(dir: &Path) -> PathBuf {
    dir.join(".supervisor").join("control.sock")
}

/// `reload --scan DIR`: asks the running scan of DIR to rescan now.
///
/// # Errors
///
/// 7 when no scan runs there.
pub fn reload(dir: &Path) -> Result<u8, CliError> {
    let socket = control_socket(dir);
    let mut client = supervisor_core::protocol::ControlClient::connect(&socket).map_err(|_| CliError::NotRunning {
        name: format!("scan {}", dir.display()),
        socket: socket.display().to_string(),
        code: exit::NOT_RUNNING,
    })?;
    let command = supervisor_core::protocol::Command::Reload { dry_run: false };
    let resp = client.call(command, Duration::from_secs(10)).map_err(failed)?;
    match resp.error {
        None => Ok(exit::OK),
        Some(e) => Err(failed(e.message)),
    }
}

/// `scan DIR`: every service directory in DIR, like `svscan`.
///
/// # Errors
///
/// When the directory cannot be read, or the daemon cannot start.
pub fn scan(args: &ScanArgs) -> Result<u8, CliError> {
    let dir = std::path::absolute(&args.dir).map_err(failed)?;
    if !dir.is_dir() {
        return Err(failed(format!("{}: not a directory", dir.display())));
    }
    let notifier = if args.daemon {
        // SAFETY: nothing is open yet; the daemon opens what it uses
        // afterwards.
        match unsafe { Daemonizer::new().daemonize() }.map_err(failed)? {
            Daemonized::Parent(readiness) => {
                readiness.wait(Duration::from_secs(10)).map_err(failed)?;
                crate::say!("supervisor scan {}: started", dir.display());
                return Ok(exit::OK);
            }
            Daemonized::Daemon(n) => Some(n),
        }
    } else {
        None
    };
    let mut engine = engine(dir_name(&dir))?;
    engine.serve_control(&control_socket(&dir), supervisor_core::AccessPolicy::default()).map_err(failed)?;
    engine.accept_reload();
    rescan(&mut engine, &dir);
    if let Some(n) = notifier {
        n.ready();
    }
    let mut next = Instant::now() + args.rescan;
    while !engine.is_finished() {
        engine.turn(Some(next.saturating_duration_since(Instant::now()))).map_err(failed)?;
        let mut hup = engine.take_signals().contains(&Signal::SIGHUP);
        while let Some(req) = engine.take_reload_request() {
            let answer = if req.dry_run {
                let msg = "a scan has no plan to show: reload --scan rescans";
                Response::error(Value::Null, ErrorCode::BadRequest, msg)
            } else {
                hup = true;
                Response::with_services(Value::Null, Vec::new())
            };
            engine.answer_reload(req, answer);
        }
        for name in engine.exit_requested() {
            let _ = engine.retire_service(&name);
        }
        if (hup || Instant::now() >= next) && !engine.is_finished() {
            rescan(&mut engine, &dir);
            next = Instant::now() + args.rescan;
        }
    }
    engine.run().map_err(failed)?;
    Ok(exit::OK)
}
