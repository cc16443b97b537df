//! The supervisor process: `run` and `up`, its runtime directory, its
//! pidfile, its socket, and the one re-execution of `up`.
//!
//! `up` reads the configuration, detaches (fork, `setsid`, fork) and
//! executes this binary once more, as `supervisor: NAME` (the name `ps`
//! shows), with the configuration's path and zdaemon's options as
//! arguments and the readiness pipe as `run --ready-fd N`. That process
//! reads the file again and serves; `up` returns once it says it serves,
//! or with its error.

use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Duration;

use supervisor_core::runtime_dir::make_private_dir;
use supervisor_core::PidFile;
use supervisor_core::{DaemonError, Daemonized, Daemonizer, Notifier};
use supervisor_core::{Engine, Signal};

use super::record::Record;
use crate::config::Config;
use crate::exit::{self, CliError};
use crate::logger;

/// How long processes left by a killed supervisor get to stop on `TERM`
/// before `KILL`: short, so that services are back within a second.
const LEFTOVER_GRACE: Duration = Duration::from_millis(500);

/// How long, as an init, the processes that no service owns get to stop
/// on `TERM` at the end, before `KILL`.
const INIT_GRACE: Duration = Duration::from_secs(5);

fn failed(what: impl std::fmt::Display) -> CliError {
    CliError::Failed(what.to_string())
}

/// Whether a service that runs as another user sends `sd_notify`
/// datagrams, to `run/notify.sock`.
fn notifies_as_other_user(config: &Config) -> bool {
    config.services.iter().any(|s| {
        s.user.is_some() && matches!(s.ready.as_ref().map(|r| &r.check), Some(supervisor_core::ReadyCheck::Systemd))
    })
}

/// Creates the runtime directory, laid out as copkg lays out a service's:
/// `run/`, `log/`, `console/`, `etc/`, `data/`. The directory and `run/`
/// are private (0700), or only traversable by others (0711, not listable)
/// where other users must reach a socket in `run/`: the control socket
/// (`allow_uids`, `allow_groups`), or the notify socket of a service that
/// runs as another user with `notify = "systemd"`.
fn make_runtime_dirs(config: &Config) -> Result<(), CliError> {
    let open = config.access.is_open() || notifies_as_other_user(config);
    make_private_dir(&config.runtime_dir, if open { 0o711 } else { 0o700 }).map_err(failed)?;
    make_private_dir(&config.run_dir(), if open { 0o711 } else { 0o700 }).map_err(failed)?;
    for dir in [config.log_dir(), config.console_dir()] {
        make_private_dir(&dir, 0o750).map_err(failed)?;
    }
    for sub in ["etc", "data"] {
        make_private_dir(&config.runtime_dir.join(sub), 0o755).map_err(failed)?;
    }
    Ok(())
}

/// `run`: the supervisor in the foreground until SIGTERM, SIGINT or
/// `shutdown`. When started by `up`, it reports readiness (or its error)
/// to the waiting `up` through `ready_fd`, the pipe it inherited.
///
/// # Errors
///
/// When the instance is already running or its socket cannot be served.
pub fn run_foreground(config: Config, ready_fd: Option<i32>, init: bool) -> Result<u8, CliError> {
    // SAFETY: the descriptor is the readiness pipe that `up` handed down
    // (`run --ready-fd`); nothing else in this process owns it.
    let notifier = ready_fd.and_then(|fd| unsafe { Notifier::from_inherited(fd) });
    match serve(config, notifier, init) {
        Ok(code) => Ok(code),
        Err((e, Some(n))) => {
            n.fail(&e.to_string());
            Err(e)
        }
        Err((e, None)) => Err(e),
    }
}

/// `run` with a configuration that could not be read: tells a waiting
/// `up` why, through `ready_fd`, and returns the error.
#[must_use]
pub fn fail_start(error: CliError, ready_fd: Option<i32>) -> CliError {
    // SAFETY: as in run_foreground.
    if let Some(n) = ready_fd.and_then(|fd| unsafe { Notifier::from_inherited(fd) }) {
        n.fail(&error.to_string());
    }
    error
}

type ServeError = (CliError, Option<Notifier>);

fn serve(config: Config, notifier: Option<Notifier>, init: bool) -> Result<u8, ServeError> {
    macro_rules! try_ {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => return Err((failed(e), notifier)),
            }
        };
    }
    logger::init(config.log_level);
    crate::os::set_process_name(&format!("sv: {}", config.name));
    crate::os::scrub_control_env();
    let manager = crate::os::take_manager_env();
    match supervisor_core::limits::raise_open_files_limit() {
        Ok(n) => log::debug!("open files: soft limit raised to {n} (services keep the one they inherit)"),
        Err(e) => log::warn!("cannot raise the limit on open files: {e}"),
    }
    if let Err(e) = make_runtime_dirs(&config) {
        return Err((e, notifier));
    }
    let log_path = config.log_dir().join("supervisor.log");
    try_!(logger::to_file(&log_path).map_err(|e| format!("{}: {e}", log_path.display())));
    try_!(logger::add_targets(&config.event_log));
    let mut pidfile = match PidFile::acquire(&config.pidfile_path()) {
        // A supervisor just sent KILL holds the lock a moment longer.
        Err(supervisor_core::PidFileError::AlreadyRunning { .. })
            if ping_settled(&config, Duration::from_secs(2)).is_none() =>
        {
            try_!(PidFile::acquire(&config.pidfile_path()))
        }
        other => try_!(other),
    };
    let mut engine = try_!(Engine::new(config.name.clone()));
    engine.set_cgroups(config.cgroups);
    if init || std::process::id() == 1 {
        try_!(engine.act_as_init(INIT_GRACE));
    } else {
        try_!(engine.own_process());
    }
    engine.set_exit_when(config.exit_when);
    if let Some((socket, watchdog)) = manager {
        match engine.notify_service_manager(&socket, watchdog) {
            Ok(()) => log::debug!("reporting to the service manager at {socket}"),
            Err(e) => log::warn!("cannot report to the service manager (NOTIFY_SOCKET={socket}): {e}"),
        }
    }
    try_!(engine.stop_on_signals());
    // Stray signals must not end the supervisor (their default action);
    // USR2 reopens the transcripts and the event log; WINCH goes to the
    // services.
    for sig in [Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGALRM, Signal::SIGWINCH] {
        try_!(engine.catch_signal(sig));
    }
    engine.set_instance_marker(config.runtime_dir.display().to_string());
    engine.set_reopen_hook(logger::reopen);
    let leftovers = try_!(engine.restore(&config.state_path(), LEFTOVER_GRACE));
    if leftovers > 0 {
        log::warn!("stopped {leftovers} process(es) left by a previous supervisor of {}", config.name);
    }
    try_!(engine.serve_control(&config.bound_socket_path(), config.access.clone()));
    if let Some(addr) = &config.metrics {
        try_!(engine.serve_metrics(addr));
    }
    // Only services with notify = "systemd" need it; they say so if it is
    // missing.
    if notifies_as_other_user(&config) {
        // The control server made run/ as closed as its own policy asks;
        // these services must pass through it (the control socket itself
        // stays 0600, and refuses peers by their credentials).
        try_!(make_private_dir(&config.run_dir(), 0o711));
    }
    if let Err(e) = engine.listen_notify(config.notify_socket_path()) {
        log::warn!("no sd_notify socket: {e}");
    }
    let mut socket_link = try_!(SocketLink::create(&config));
    log::info!(
        "supervisor {} (pid {}) starting {} service(s); control socket {}",
        config.name,
        std::process::id(),
        config.services.len(),
        config.socket_path().display()
    );
    // Groups first, so that their members start in order.
    engine.set_groups(config.groups.clone());
    // Task runs wait for the host to check the file (reload = "auto").
    engine.gate_task_runs();
    for svc in &config.services {
        try_!(engine.add_service(svc.clone()));
    }
    // Start-up is over: its temporary memory goes back to the system, the
    // heap's and the stack's.
    crate::os::release_free_memory();
    crate::os::release_unused_stack();
    if let Some(n) = notifier {
        n.ready();
    }
    let name = config.name.clone();
    let run_dir = config.run_dir();
    let mut name_link = NameLink::create(&config);
    // The reloader keeps the one copy of the configuration from now on.
    let mut reloader = super::reload::Reloader::new(config);
    let mut record = record_of(&reloader);
    save_record(&record, &run_dir);
    engine.accept_reload();
    while !engine.is_finished() {
        engine.turn(reloader.max_wait()).map_err(|e| (failed(e), None))?;
        for sig in engine.take_signals() {
            if sig == Signal::SIGUSR2 {
                logger::reopen();
                let _ = engine.reopen(None);
            } else if sig == Signal::SIGHUP {
                reloader.on_hangup(&mut engine);
            } else if sig == Signal::SIGUSR1 {
                repair_socket(&mut engine, &mut socket_link, reloader.config());
                name_link = name_link.or_else(|| NameLink::create(reloader.config()));
                save_record(&record, &run_dir);
            } else if sig == Signal::SIGWINCH {
                forward(&mut engine, sig);
            } else {
                log::warn!("SIG{} has no meaning for the supervisor; ignored", supervisor_core::signal_name(sig));
            }
        }
        reloader.after_turn(&mut engine);
        let remade = keep_pidfile(&mut pidfile, reloader.config());
        if remade || record.config_stamp != reloader.applied() {
            record = Record { config_stamp: reloader.applied(), ..record };
            save_record(&record, &run_dir);
        }
    }
    engine.run().map_err(|e| (failed(e), None))?;
    Record::remove(&run_dir);
    drop(name_link);
    drop(socket_link);
    drop(pidfile);
    let code = engine.exit_code();
    log::info!("supervisor {name} exits with code {code}");
    Ok(code)
}

/// Sends `sig` to every service that has a process.
fn forward(engine: &mut Engine, sig: Signal) {
    for s in engine.status().services {
        let _ = engine.signal(&s.name, sig);
    }
}

/// The instance record of the supervisor that `reloader` runs.
fn record_of(reloader: &super::reload::Reloader) -> Record {
    let config = reloader.config();
    let file = (!config.overrides.no_file).then(|| fs::canonicalize(&config.path).unwrap_or(config.path.clone()));
    Record::new(&config.name, config.socket_path(), file, reloader.applied())
}

fn save_record(record: &Record, run_dir: &std::path::Path) {
    if let Err(e) = record.save(run_dir) {
        log::warn!("cannot write the instance record in {}: {e}", run_dir.display());
    }
}

/// `SIGUSR1` (`supervisor repair-socket`): binds the control socket again,
/// and makes the `[supervisor] socket` link again, if they are gone.
fn repair_socket(engine: &mut Engine, link: &mut Option<SocketLink>, config: &Config) {
    log::info!("SIGUSR1: making the control socket again where it is gone");
    if !engine.repair_control_socket() {
        log::error!("the control socket {} cannot be made again", config.bound_socket_path().display());
    }
    if link.as_ref().is_some_and(|l| fs::symlink_metadata(&l.path).is_ok()) {
        return;
    }
    // The old one first: dropping it after would remove the new link.
    *link = None;
    match SocketLink::create(config) {
        Ok(new) => *link = new,
        Err(e) => log::error!("cannot make the socket link again: {e}"),
    }
}

/// A link `ROOT/NAME` to a runtime directory that is not the default one
/// (`ROOT` being the default runtime root), so that `-n NAME` and `list`
/// find the instance; removed when the supervisor ends. Made only where
/// nothing is in the way.
#[derive(Debug)]
struct NameLink {
    path: PathBuf,
    target: PathBuf,
}

impl NameLink {
    fn create(config: &Config) -> Option<NameLink> {
        let path = crate::config::default_runtime_dir_of(&config.name);
        if path == config.runtime_dir {
            return None;
        }
        match fs::symlink_metadata(&path) {
            // A link left by a supervisor that was killed: nobody holds
            // the pidfile it leads to.
            Ok(m) if m.file_type().is_symlink() && !held(&path.join("run/supervisor.pid")) => {
                let _ = fs::remove_file(&path);
            }
            Ok(_) => return None,
            Err(_) => {}
        }
        let root = path.parent()?;
        make_private_dir(root, 0o755).ok()?;
        match std::os::unix::fs::symlink(&config.runtime_dir, &path) {
            Ok(()) => Some(NameLink { path, target: config.runtime_dir.clone() }),
            Err(e) => {
                log::debug!("cannot link {} to the runtime directory: {e}", path.display());
                None
            }
        }
    }
}

fn held(pidfile: &std::path::Path) -> bool {
    matches!(PidFile::read(pidfile), Ok(supervisor_core::PidState::Held(_)))
}

impl Drop for NameLink {
    fn drop(&mut self) {
        if fs::read_link(&self.path).ok().as_ref() == Some(&self.target) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The runtime directory (or the pidfile alone) was removed under the
/// running supervisor: makes them again, so that `up` still sees that it
/// runs (the control socket comes back by itself). True when it did.
fn keep_pidfile(pidfile: &mut PidFile, config: &Config) -> bool {
    if pidfile.path().exists() {
        return false;
    }
    log::warn!("{} was removed; making the runtime directory and the pidfile again", pidfile.path().display());
    if let Err(e) = make_runtime_dirs(config) {
        log::error!("cannot make the runtime directory again: {e}");
        return false;
    }
    match PidFile::acquire(&config.pidfile_path()) {
        Ok(new) => *pidfile = new,
        Err(e) => log::error!("cannot make the pidfile again: {e}"),
    }
    true
}

/// The pid of the supervisor of `config` when one runs: it answers, or
/// holds the pidfile without a socket.
fn ping(config: &Config) -> Option<i32> {
    let reach = super::reach::Reach::of(config);
    reach.answering_pid().or_else(|| reach.running_pid())
}

/// As [`ping`], but a pidfile held by a supervisor that does not answer
/// gets up to `patience` to settle: a supervisor that was just sent
/// `KILL` holds its lock until the kernel has torn it down, and one that
/// is starting holds it before it serves its socket. The answer is its
/// pid once it answers, `None` once the lock is free, or the holder's
/// pid when neither happened in time (a supervisor whose socket was
/// removed).
fn ping_settled(config: &Config, patience: Duration) -> Option<i32> {
    let reach = super::reach::Reach::of(config);
    let deadline = std::time::Instant::now() + patience;
    loop {
        if let Some(pid) = reach.answering_pid() {
            return Some(pid);
        }
        let holder = reach.running_pid()?;
        if std::time::Instant::now() >= deadline {
            return Some(holder);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `up`: detaches a supervisor (fork, `setsid`, fork, `chdir`, `umask`,
/// stdio to `/dev/null`), which re-executes itself as `supervisor: NAME`,
/// and returns once it serves its socket, or with its own error.
///
/// # Errors
///
/// When the daemon fails (its message), or does not answer in `timeout`.
pub fn up(config: &Config, timeout: Duration) -> Result<u8, CliError> {
    if let Some(pid) = ping_settled(config, timeout.min(Duration::from_secs(2))) {
        crate::say!("supervisor {} is already running (pid {pid})", config.name);
        return Ok(exit::OK);
    }
    if !config.daemon {
        // `[supervisor] daemon = false` (zdaemon's `daemon off`).
        return run_foreground(config.clone(), None, false);
    }
    let mut command = daemon_command(config)?;
    let daemonizer = Daemonizer::new().directory(&config.directory).umask(config.umask);
    // SAFETY: nothing here owns a descriptor: the file was read and closed,
    // the ping's socket dropped; the daemon only execs or exits.
    match unsafe { daemonizer.daemonize() }.map_err(failed)? {
        Daemonized::Parent(readiness) => match readiness.wait(timeout) {
            Ok(()) => {
                let pid = ping(config).map_or_else(|| "?".to_string(), |p| p.to_string());
                crate::say!("supervisor {} started (pid {pid})", config.name);
                Ok(exit::OK)
            }
            Err(e) => {
                // Lost a race with another `up`: that one serves now.
                if let Some(pid) = ping(config) {
                    crate::say!("supervisor {} is already running (pid {pid})", config.name);
                    return Ok(exit::OK);
                }
                let log = config.log_dir().join("supervisor.log");
                Err(match e {
                    DaemonError::Failed(msg) => failed(format!("the supervisor could not start: {msg}")),
                    other => failed(format!("{other}; see {}", log.display())),
                })
            }
        },
        Daemonized::Daemon(notifier) => {
            // The daemon re-executes itself so that `ps` shows the instance.
            let fd = match notifier.inheritable() {
                Ok(fd) => fd,
                Err(e) => {
                    notifier.fail(&format!("fcntl: {e}"));
                    std::process::exit(1)
                }
            };
            let err = command.args(["run", "--ready-fd", &fd.to_string()]).exec();
            // Only reached when exec failed.
            notifier.fail(&format!("exec: {err}"));
            std::process::exit(1)
        }
    }
}

/// The `supervisor` command that `up` runs as the daemon (before its
/// `run` argument): this binary, named `supervisor: NAME`, with the
/// configuration file and zdaemon's options as arguments.
///
/// # Errors
///
/// When the configuration file cannot be found again.
pub fn daemon_command(config: &Config) -> Result<std::process::Command, CliError> {
    let exe = std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
    let mut cmd = std::process::Command::new(exe);
    cmd.arg0(format!("supervisor: {}", config.name));
    // A variable of the caller's would stand for a file not given.
    cmd.env_remove("SUPERVISOR_CONFIG");
    if !config.overrides.no_file {
        let cfg =
            fs::canonicalize(&config.path).map_err(|e| CliError::Failed(format!("{}: {e}", config.path.display())))?;
        cmd.arg("--config").arg(cfg);
    }
    cmd.args(config.overrides.to_args());
    Ok(cmd)
}

/// `[supervisor] socket`: a symbolic link to the socket the supervisor
/// binds, made while it serves and removed when it ends.
#[derive(Debug)]
pub struct SocketLink {
    path: PathBuf,
    target: PathBuf,
}

impl SocketLink {
    /// Makes the link of `config`, if it has a `socket`, replacing a stale
    /// link or socket that nothing serves.
    ///
    /// # Errors
    ///
    /// When something else serves that path, or a file that is not a
    /// socket is there, or the link cannot be made.
    pub fn create(config: &Config) -> io::Result<Option<SocketLink>> {
        let Some(path) = config.socket.clone() else { return Ok(None) };
        let target = config.bound_socket_path();
        if path == target {
            return Ok(None);
        }
        let err = |kind, m: String| io::Error::new(kind, m);
        match fs::symlink_metadata(&path) {
            Ok(meta) => {
                let kind = meta.file_type();
                if kind.is_symlink() && fs::read_link(&path).ok().as_ref() == Some(&target) {
                    return Ok(Some(SocketLink { path, target }));
                }
                if !kind.is_symlink() && !kind.is_socket() {
                    let m = format!("socket {}: a file that is not a socket is in the way", path.display());
                    return Err(err(io::ErrorKind::AlreadyExists, m));
                }
                if UnixStream::connect(&path).is_ok() {
                    let m = format!("socket {}: another supervisor serves it", path.display());
                    return Err(err(io::ErrorKind::AddrInUse, m));
                }
                fs::remove_file(&path).map_err(|e| err(e.kind(), format!("remove {}: {e}", path.display())))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e.kind(), format!("socket {}: {e}", path.display()))),
        }
        std::os::unix::fs::symlink(&target, &path)
            .map_err(|e| err(e.kind(), format!("link {} to {}: {e}", path.display(), target.display())))?;
        Ok(Some(SocketLink { path, target }))
    }
}

impl Drop for SocketLink {
    fn drop(&mut self) {
        if fs::read_link(&self.path).ok().as_ref() == Some(&self.target) {
            let _ = fs::remove_file(&self.path);
        }
    }
}
