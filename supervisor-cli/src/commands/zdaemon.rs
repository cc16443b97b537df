//! zdaemon's command line: `-p` and `-s`, `start`, `stop`, `status` and
//! `restart` without names, `fg`, `kill`, and what `start` runs after a
//! start (`start_test`).
//!
//! With a zdaemon configuration, or `-p`, the commands act on its one
//! program and on the supervisor as zdaemon's do:
//!
//! - `start [ARGS...]` starts the supervisor in the background (as `up`)
//!   if it is not running, with ARGS appended to the program, waits until
//!   the program runs and its `start_test` passes, and prints
//!   `daemon process started, pid=N`;
//! - `stop` stops the program and the supervisor (`daemon process
//!   stopped`);
//! - `status` prints `program running; pid=N`, or `daemon manager not
//!   running` and exits 3;
//! - `restart` restarts the program (starting the supervisor if needed).
//!
//! `fg` and `kill` work with every configuration: on the zdaemon program,
//! on the only service, or on `--service NAME`.

use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{Group, Uid, User};
use supervisor_core::protocol::{Command, Selection};
use supervisor_core::{Service, ServiceState, ServiceStatus, Signal};

use crate::config::zdaemon::{Overrides, PROGRAM};
use crate::config::Config;
use crate::exit::{self, CliError};
use crate::{Cmd, Waiting};

/// zdaemon's command-line options, given before the command.
#[derive(Debug, Clone, Default, Args)]
pub struct ZdaemonArgs {
    /// zdaemon's -p: the program to run as service `program`, split on
    /// whitespace (no quoting). Without a configuration file it is an
    /// instance of its own, found by its socket (-s, by default `zdsock`
    /// in the current directory); with a zdaemon file it replaces its
    /// `program`.
    #[arg(short = 'p', long = "program", value_name = "CMD")]
    pub program: Option<String>,
    /// zdaemon's -s: where the control socket is (a symbolic link to the
    /// instance's socket), instead of `[supervisor] socket` or zdaemon's
    /// `socket-name`.
    #[arg(short = 's', long = "socket-name", value_name = "PATH")]
    pub socket_name: Option<PathBuf>,
    /// An argument appended to the program (how `start ARGS` reaches the
    /// supervisor that `start` runs).
    #[arg(long = "program-arg", value_name = "ARG", hide = true, allow_hyphen_values = true)]
    pub program_args: Vec<String>,
}

impl ZdaemonArgs {
    /// The options as [`Overrides`] of the configuration.
    #[must_use]
    pub fn overrides(&self) -> Overrides {
        Overrides {
            program: self.program.clone(),
            socket: self.socket_name.clone(),
            args: self.program_args.clone(),
            no_file: false,
        }
    }

    /// The options as arguments of a `supervisor` command line.
    #[must_use]
    pub fn to_args(&self) -> Vec<String> {
        Overrides { socket: self.socket_name.clone(), ..self.overrides() }.to_args()
    }
}

/// Whether `command` is one that zdaemon's forms change when the file is a
/// zdaemon configuration (see [`dispatch`]).
#[must_use]
pub fn is_zdaemon_form(command: &Cmd) -> bool {
    match command {
        Cmd::Fg { .. } | Cmd::Kill { .. } => true,
        Cmd::Start { targets, .. } | Cmd::Restart { targets, .. } => !targets.all,
        Cmd::Stop { targets, .. } => targets.names.is_empty() && !targets.all,
        Cmd::Status { names } => !crate::out::json() && names.is_empty(),
        _ => false,
    }
}

/// The commands that zdaemon's forms change: `fg` and `kill` always;
/// `start`, `restart`, `stop` and `status` without names for a zdaemon
/// configuration. `None` for the others.
///
/// # Errors
///
/// As each command.
pub fn dispatch(config: &Config, command: &Cmd) -> Result<Option<u8>, CliError> {
    let zd = config.is_zdaemon();
    let code = match command {
        Cmd::Fg { service, args } => fg(config, service.as_deref(), args)?,
        Cmd::Kill { signal, service } => kill(config, service.as_deref(), signal)?,
        Cmd::Start { targets, waiting } if zd && !targets.all => {
            start(&with_args(config, &targets.names), waiting, false)?
        }
        Cmd::Restart { targets, waiting } if zd && !targets.all => {
            start(&with_args(config, &targets.names), waiting, true)?
        }
        Cmd::Stop { targets, waiting } if zd && targets.names.is_empty() && !targets.all => stop(config, waiting)?,
        Cmd::Status { names } if zd && names.is_empty() && !crate::out::json() => status(config)?,
        _ => return Ok(None),
    };
    Ok(Some(code))
}

/// The configuration with `args` appended to the zdaemon program.
fn with_args(config: &Config, args: &[String]) -> Config {
    let mut c = config.clone();
    if args.is_empty() {
        return c;
    }
    if let Some(svc) = c.services.iter_mut().find(|s| s.name == PROGRAM) {
        let mut argv = svc.command.to_argv();
        argv.extend(args.iter().cloned());
        svc.command = supervisor_core::Command::Argv(argv);
    }
    c.overrides.args.extend(args.iter().cloned());
    c
}

/// The service a command on "the program" means: `--service NAME`, the
/// zdaemon program, or the only service.
fn pick<'c>(config: &'c Config, service: Option<&str>) -> Result<&'c Service, CliError> {
    let find = |name: &str| config.services.iter().find(|s| s.name == name);
    match service {
        Some(name) => {
            find(name).ok_or_else(|| CliError::Usage(format!("no service named {name:?} in {}", config.path.display())))
        }
        None if config.is_zdaemon() => find(PROGRAM).ok_or_else(|| CliError::Usage("no program".into())),
        None => match config.services.as_slice() {
            [only] => Ok(only),
            all => Err(CliError::Usage(format!(
                "{} has {} services: name one with --service NAME",
                config.path.display(),
                all.len()
            ))),
        },
    }
}

/// The supervisor's pid, when it answers.
fn supervisor_pid(config: &Config) -> Option<i32> {
    super::reach::Reach::of(config).answering_pid()
}

/// The status of one service of a running supervisor.
fn service_status(config: &Config, name: &str) -> Result<ServiceStatus, CliError> {
    let command = Command::Status { names: vec![name.to_owned()] };
    let resp = super::reach::Reach::of(config).call(
        command,
        Duration::from_secs(10),
        exit::STATUS_STOPPED,
        exit::STATUS_UNKNOWN,
    )?;
    let snapshot = resp.status.ok_or_else(|| CliError::Failed("the supervisor sent no status".into()))?;
    snapshot.services.into_iter().find(|s| s.name == name).ok_or_else(|| CliError::UnknownService {
        message: format!("no service named {name:?}"),
        code: exit::STATUS_UNKNOWN,
    })
}

/// zdaemon's `start` (and `restart`): the supervisor if needed, then the
/// program, its start test, and its pid.
fn start(config: &Config, waiting: &Waiting, restart: bool) -> Result<u8, CliError> {
    let began = Instant::now();
    let running = supervisor_pid(config).is_some();
    if !running {
        if !config.daemon {
            // zdaemon's `daemon off`: the supervisor runs in the foreground.
            return super::process::run_foreground(config.clone(), None, false);
        }
        super::process::up(config, Duration::from_secs(10))?;
    } else if !restart {
        let s = service_status(config, PROGRAM)?;
        if let (ServiceState::Running, Some(pid)) = (s.state, s.pid) {
            crate::say!("daemon process already running; pid={pid}");
            return Ok(exit::OK);
        }
    }
    let sel = Selection::named([PROGRAM]);
    let wait = !waiting.no_wait;
    let command = if restart && running { Command::Restart { sel, wait } } else { Command::Start { sel, wait } };
    let start_timeout = config.extras.get(PROGRAM).map_or(Duration::from_secs(300), |e| e.start_timeout);
    let timeout = waiting.timeout.unwrap_or(start_timeout);
    let resp = super::reach::Reach::of(config).call(command, timeout, exit::NOT_RUNNING, exit::USAGE)?;
    if let Some(s) = resp.services.iter().flatten().find(|s| !s.ok) {
        eprintln!("supervisor: {}: {}", s.name, s.message.as_deref().unwrap_or(s.state.as_str()));
        return Ok(exit::FAILURE);
    }
    if wait {
        let code = run_start_tests(config, &[PROGRAM.to_owned()], began)?;
        if code != exit::OK {
            return Ok(code);
        }
    }
    let pid = service_status(config, PROGRAM)?.pid.map_or_else(|| "?".to_owned(), |p| p.to_string());
    crate::say!("daemon process {}, pid={pid}", if restart { "restarted" } else { "started" });
    Ok(exit::OK)
}

/// zdaemon's `stop`: the program and the supervisor.
fn stop(config: &Config, waiting: &Waiting) -> Result<u8, CliError> {
    let Ok(mut client) = super::reach::Reach::of(config).connect(exit::OK) else {
        crate::say!("daemon manager not running");
        return Ok(exit::OK);
    };
    let timeout = waiting.timeout.unwrap_or(config.longest_stop() + Duration::from_secs(10));
    let failed = |e: &dyn std::fmt::Display| CliError::Failed(e.to_string());
    let pid = client.call(Command::Ping, Duration::from_secs(5)).ok().and_then(|r| r.status).map(|s| s.supervisor.pid);
    let resp = client.call(Command::Shutdown, timeout).map_err(|e| failed(&e))?;
    if let Some(err) = resp.error {
        return Err(CliError::Failed(err.message));
    }
    client.wait_closed(Duration::from_secs(10)).map_err(|e| failed(&e))?;
    // Until the supervisor is gone, with its socket link and pidfile.
    if let Some(pid) = pid {
        let deadline = Instant::now() + Duration::from_secs(10);
        while supervisor_core::process::is_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    crate::say!("daemon process stopped");
    Ok(exit::OK)
}

/// zdaemon's `status`: one line, and the LSB code.
fn status(config: &Config) -> Result<u8, CliError> {
    match service_status(config, PROGRAM) {
        Ok(s) => match s.pid {
            Some(pid) if s.state != ServiceState::Stopping => {
                crate::say!("program running; pid={pid}");
                Ok(super::status::lsb_code(&s))
            }
            _ => {
                crate::say!("daemon manager running; daemon process not running");
                Ok(super::status::lsb_code(&s))
            }
        },
        Err(CliError::NotRunning { .. }) => {
            crate::say!("daemon manager not running");
            Ok(exit::STATUS_STOPPED)
        }
        Err(e) => Err(e),
    }
}

/// zdaemon's `kill [SIGNAL]`: 0 when sent, 7 when the program does not
/// run.
fn kill(config: &Config, service: Option<&str>, signal: &str) -> Result<u8, CliError> {
    let name = pick(config, service)?.name.clone();
    let sig = supervisor_core::parse_signal(signal).map_err(CliError::Usage)?;
    let pid = service_status(config, &name).map_err(|e| match e {
        CliError::NotRunning { name, socket, .. } => CliError::NotRunning { name, socket, code: exit::NOT_RUNNING },
        other => other,
    })?;
    let command = Command::Signal { signal: signal.to_owned(), sel: Selection::named([name.clone()]) };
    let resp =
        super::reach::Reach::of(config).call(command, Duration::from_secs(10), exit::NOT_RUNNING, exit::USAGE)?;
    if let Some(s) = resp.services.iter().flatten().find(|s| !s.ok) {
        eprintln!("supervisor: {}: not signalled: {}", s.name, s.message.as_deref().unwrap_or("not running"));
        return Ok(exit::NOT_RUNNING);
    }
    let name = supervisor_core::signal_name(sig);
    match pid.pid {
        Some(pid) => crate::say!("signal SIG{name} sent to process {pid}"),
        None => crate::say!("signal SIG{name} sent"),
    }
    Ok(exit::OK)
}

/// A command with a service's environment and working directory.
fn command_for(svc: &Service, argv: &[String]) -> std::process::Command {
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    if svc.env.clear {
        cmd.env_clear();
    }
    cmd.envs(&svc.env.vars);
    cmd.env("SUPERVISOR_SERVICE", &svc.name);
    if let Some(dir) = &svc.directory {
        cmd.current_dir(dir);
    }
    cmd
}

/// The uid and gid of a service's `user` and `group`.
fn ids(svc: &Service) -> Result<Option<(u32, u32)>, CliError> {
    let Some(spec) = &svc.user else { return Ok(None) };
    let found = match spec.parse::<u32>() {
        Ok(n) => User::from_uid(Uid::from_raw(n)),
        Err(_) => User::from_name(spec),
    };
    let user = found
        .map_err(|e| CliError::Failed(format!("look up user {spec:?}: {e}")))?
        .ok_or_else(|| CliError::Failed(format!("unknown user {spec:?}")))?;
    let gid = match &svc.group {
        None => user.gid.as_raw(),
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => Group::from_name(g)
                .map_err(|e| CliError::Failed(format!("look up group {g:?}: {e}")))?
                .ok_or_else(|| CliError::Failed(format!("unknown group {g:?}")))?
                .gid
                .as_raw(),
        },
    };
    Ok(Some((user.uid.as_raw(), gid)))
}

/// zdaemon's `fg`: the program in the foreground, with its service's
/// environment, directory, umask and user (without supplementary groups),
/// standard input and output attached to ours; its exit code (128 + the
/// signal number after a signal). `TERM` and `HUP` sent to us are passed
/// on; `INT` and `QUIT` from the terminal reach it directly.
///
/// # Errors
///
/// An unknown service, or a program that cannot be started.
pub fn fg(config: &Config, service: Option<&str>, args: &[String]) -> Result<u8, CliError> {
    let svc = pick(config, service)?;
    let mut argv = svc.command.to_argv();
    argv.extend(args.iter().cloned());
    eprintln!("{}", argv.join(" "));
    let mut cmd = command_for(svc, &argv);
    if let Some((uid, gid)) = ids(svc)? {
        cmd.uid(uid).gid(gid);
    }
    // SIGTERM and SIGHUP are caught (and passed on) while the program runs,
    // INT and QUIT only caught (the terminal sends them to the program
    // too); SIGCHLD says it ended. They are blocked here and read from a
    // signalfd; the child starts with an empty mask (std resets it).
    let mut mask = SigSet::empty();
    for sig in [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGINT, Signal::SIGQUIT, Signal::SIGCHLD] {
        mask.add(sig);
    }
    let old_mask = mask.thread_swap_mask(SigmaskHow::SIG_BLOCK).map_err(|e| CliError::Failed(e.to_string()))?;
    let signals = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(s) => s,
        Err(e) => {
            let _ = old_mask.thread_set_mask();
            return Err(CliError::Failed(format!("signalfd: {e}")));
        }
    };
    let umask = svc.umask.map(|m| nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(m)));
    let spawned = cmd.spawn();
    if let Some(old) = umask {
        nix::sys::stat::umask(old);
    }
    let status = match spawned {
        Ok(mut child) => wait_forwarding(&mut child, &signals),
        Err(e) => Err(CliError::Failed(format!("{}: {e}", argv[0]))),
    };
    let _ = old_mask.thread_set_mask();
    let status = status?;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => code.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        _ => exit::FAILURE,
    })
}

/// Waits for `child`, passing `TERM` and `HUP` on to it.
fn wait_forwarding(child: &mut Child, signals: &SignalFd) -> Result<std::process::ExitStatus, CliError> {
    let failed = |e: &dyn std::fmt::Display| CliError::Failed(e.to_string());
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    loop {
        if let Some(status) = child.try_wait().map_err(|e| failed(&e))? {
            return Ok(status);
        }
        let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(1000u16)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(failed(&e)),
        }
        while let Ok(Some(info)) = signals.read_signal() {
            let sig = Signal::try_from(info.ssi_signo as i32);
            if let Ok(sig @ (Signal::SIGTERM | Signal::SIGHUP)) = sig {
                let _ = nix::sys::signal::kill(pid, sig);
            }
        }
    }
}

/// Runs the `start_test` of each named service that has one, again and
/// again until it exits 0, within the service's `start_timeout` counted
/// from `began`: 0 when every test passed, 1 (with the reason printed)
/// otherwise.
///
/// # Errors
///
/// None so far: failures are printed and give 1.
pub fn run_start_tests(config: &Config, names: &[String], began: Instant) -> Result<u8, CliError> {
    for name in names {
        let Some(extras) = config.extras.get(name) else { continue };
        let Some(test) = extras.start_test.as_ref().filter(|t| !t.is_empty()) else { continue };
        let Some(svc) = config.services.iter().find(|s| &s.name == name) else { continue };
        let deadline = began + extras.start_timeout;
        let shown = test.join(" ");
        loop {
            let mut cmd = command_for(svc, test);
            cmd.stdin(Stdio::null()).process_group(0);
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("supervisor: {name}: start_test {shown}: {e}");
                    return Ok(exit::FAILURE);
                }
            };
            let passed = loop {
                if let Ok(Some(status)) = child.try_wait() {
                    break status.success();
                }
                if Instant::now() >= deadline {
                    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                    let _ = child.wait();
                    break false;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if passed {
                break;
            }
            if Instant::now() + Duration::from_millis(500) >= deadline {
                let limit = humantime::format_duration(extras.start_timeout);
                eprintln!("supervisor: {name}: start_test {shown} did not succeed within {limit} (start_timeout)");
                return Ok(exit::FAILURE);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    Ok(exit::OK)
}
