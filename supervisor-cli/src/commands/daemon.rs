//! `run`, `up` and `shutdown`: the supervisor process itself.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use supervisor_core::control::make_private_dir;
use supervisor_core::protocol::Command;
use supervisor_core::{Engine, Signal};

use crate::config::Config;
use crate::exit::{self, CliError};
use crate::logger;

fn failed(what: impl std::fmt::Display) -> CliError {
    CliError::Failed(what.to_string())
}

/// Creates the runtime directory and its `run/` and `log/`.
fn make_runtime_dirs(config: &Config) -> Result<(), CliError> {
    let mode = if config.access.is_open() { 0o711 } else { 0o700 };
    make_private_dir(&config.runtime_dir, mode).map_err(failed)?;
    make_private_dir(&config.runtime_dir.join("run"), mode).map_err(failed)?;
    make_private_dir(&config.log_dir(), 0o700).map_err(failed)?;
    Ok(())
}

/// Takes the instance lock: `run/supervisor.pid`, locked with `flock` for
/// the life of the process and holding its pid.
fn lock_instance(path: &Path) -> Result<Flock<File>, CliError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| failed(format!("open {}: {e}", path.display())))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((mut file, _)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(failed(format!("already running (pid {})", pid.trim())));
        }
    };
    lock.set_len(0).map_err(failed)?;
    lock.seek(SeekFrom::Start(0)).map_err(failed)?;
    writeln!(lock, "{}", std::process::id()).map_err(failed)?;
    Ok(lock)
}

/// `run`: the supervisor in the foreground until SIGTERM, SIGINT or
/// `shutdown`.
///
/// # Errors
///
/// When the instance is already running or its socket cannot be served.
pub fn run_foreground(config: &Config) -> Result<u8, CliError> {
    logger::init(config.log_level);
    make_runtime_dirs(config)?;
    let pidfile = config.runtime_dir.join("run").join("supervisor.pid");
    let lock = lock_instance(&pidfile)?;
    let mut engine = Engine::new(config.name.clone()).map_err(failed)?;
    engine.own_process().map_err(failed)?;
    engine.stop_on_signals().map_err(failed)?;
    // Stray signals must not end the supervisor (their default action).
    for sig in [Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGALRM] {
        engine.catch_signal(sig).map_err(failed)?;
    }
    engine.serve_control(&config.socket_path(), config.access.clone()).map_err(failed)?;
    log::info!(
        "supervisor {} (pid {}) starting {} service(s); control socket {}",
        config.name,
        std::process::id(),
        config.services.len(),
        config.socket_path().display()
    );
    for svc in &config.services {
        engine.add_service(svc.clone()).map_err(failed)?;
    }
    while !engine.is_finished() {
        engine.turn(None).map_err(failed)?;
        for sig in engine.take_signals() {
            log::warn!("SIG{} has no meaning for the supervisor yet; ignored", supervisor_core::signal_name(sig));
        }
    }
    engine.run().map_err(failed)?;
    let _ = fs::remove_file(&pidfile);
    drop(lock);
    log::info!("supervisor {} exits", config.name);
    Ok(exit::OK)
}

fn ping(config: &Config) -> Option<i32> {
    let mut client = super::connect(config, exit::NOT_RUNNING).ok()?;
    let resp = client.call(Command::Ping, Duration::from_secs(5)).ok()?;
    resp.status.map(|s| s.supervisor.pid)
}

/// The last lines of a file, for error messages.
fn tail(path: &Path, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.seek(SeekFrom::Start(from));
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// `up`: starts `run` in the background and returns once it answers on
/// its socket (0 also when it already runs).
///
/// # Errors
///
/// When it cannot be started or does not answer within `timeout`.
pub fn up(config: &Config, timeout: Duration) -> Result<u8, CliError> {
    if let Some(pid) = ping(config) {
        println!("supervisor {} is already running (pid {pid})", config.name);
        return Ok(exit::OK);
    }
    make_runtime_dirs(config)?;
    let log_path = config.log_dir().join("supervisor.log");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| failed(format!("open {}: {e}", log_path.display())))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().map_err(failed)?;
    let cfg = fs::canonicalize(&config.path).map_err(|e| failed(format!("{}: {e}", config.path.display())))?;
    let mut child = std::process::Command::new(exe)
        .arg("-c")
        .arg(&cfg)
        .arg("run")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(failed)?)
        .stderr(log)
        .current_dir("/")
        .process_group(0)
        .spawn()
        .map_err(|e| failed(format!("cannot start the supervisor: {e}")))?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(pid) = ping(config) {
            println!("supervisor {} started (pid {pid})", config.name);
            return Ok(exit::OK);
        }
        if let Ok(Some(status)) = child.try_wait() {
            if let Some(pid) = ping(config) {
                println!("supervisor {} is already running (pid {pid})", config.name);
                return Ok(exit::OK);
            }
            return Err(failed(format!(
                "the supervisor exited ({status}) before it answered; {}:\n{}",
                log_path.display(),
                tail(&log_path, log_start)
            )));
        }
        if Instant::now() >= deadline {
            return Err(failed(format!(
                "the supervisor did not answer within {timeout:?}; see {}",
                log_path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `shutdown`: stops everything and returns once the supervisor is gone.
///
/// # Errors
///
/// When it does not finish within the timeout.
pub fn shutdown(config: &Config, timeout: Option<Duration>) -> Result<u8, CliError> {
    let mut client = match super::connect(config, exit::OK) {
        Ok(c) => c,
        Err(_) => {
            println!("supervisor {} is not running", config.name);
            return Ok(exit::OK);
        }
    };
    let slowest = config.services.iter().map(|s| s.stop_timeout).max().unwrap_or_default();
    let timeout = timeout.unwrap_or(slowest + Duration::from_secs(10));
    let resp = client.call(Command::Shutdown, timeout).map_err(failed)?;
    if let Some(err) = resp.error {
        return Err(failed(err.message));
    }
    client.wait_closed(Duration::from_secs(10)).map_err(failed)?;
    println!("supervisor {} stopped", config.name);
    Ok(exit::OK)
}
