//! One module per group of subcommands.

use std::time::Duration;

use supervisor_core::protocol::{ClientError, ControlClient};
use supervisor_core::protocol::{Command, ErrorCode, Response};

use crate::config::Config;
use crate::exit::{self, CliError};
use crate::{Cli, Cmd};

pub mod check;
pub mod cleanup;
pub mod convert;
pub mod daemonize;
pub mod exec;
pub mod front;
pub mod logs;
pub mod process;
pub mod reload;
pub mod servicedir;
pub mod services;
pub mod shell;
pub mod status;
pub mod svc;
pub mod zdaemon;

/// Runs the parsed command line; returns the exit code.
///
/// # Errors
///
/// Any [`CliError`]; its exit code is [`CliError::exit_code`].
pub fn dispatch(cli: Cli) -> Result<u8, CliError> {
    // Commands on service directories and `exec` need no configuration.
    let cli = match cli.command {
        Cmd::Scan(args) => return servicedir::scan(&args),
        Cmd::Supervise(args) => return servicedir::supervise(&args),
        Cmd::Svc(args) => return svc::svc(&args),
        Cmd::Svstat(args) => return svc::svstat(&args),
        Cmd::Svcstart(args) => return front::front(front::Front::Start, &args),
        Cmd::Svcstop(args) => return front::front(front::Front::Stop, &args),
        Cmd::Svcreset(args) => return front::front(front::Front::Reset, &args),
        Cmd::Svcrestart(args) => return front::front(front::Front::Restart, &args),
        Cmd::Exec(args) => return exec::exec(&args),
        Cmd::Daemonize(args) => return daemonize::daemonize(&args),
        Cmd::Reload { scan: Some(dir), .. } => return servicedir::reload(&dir),
        Cmd::Convert { file } => return convert::convert(&file),
        Cmd::Shell => return shell::shell(cli.config.as_deref(), &cli.zdaemon),
        command => Cli { command, ..cli },
    };
    // The file (or zdaemon's -p), with zdaemon's command-line options.
    let config = match (zdaemon::load(&cli), &cli.command) {
        (Ok(config), _) => config,
        (Err(e), Cmd::Run { ready_fd }) => return Err(process::fail_start(e, *ready_fd)),
        (Err(e), _) => return Err(e),
    };
    let path = config.path.clone();
    if let Some(code) = zdaemon::dispatch(&config, &cli.command)? {
        return Ok(code);
    }
    match cli.command {
        Cmd::CheckConfig => {
            println!("{}: ok ({} services)", path.display(), config.services.len());
            Ok(exit::OK)
        }
        Cmd::Up { timeout } => process::up(&config, timeout),
        Cmd::Run { ready_fd } => process::run_foreground(config, ready_fd),
        Cmd::Status { names, json } => status::status(&config, &names, json),
        Cmd::Start { targets, waiting } => services::change(&config, services::Change::Start, &targets, &waiting),
        Cmd::Stop { targets, waiting } => services::change(&config, services::Change::Stop, &targets, &waiting),
        Cmd::Restart { targets, waiting } => services::change(&config, services::Change::Restart, &targets, &waiting),
        Cmd::Pause { targets } => services::pause_resume(&config, true, &targets),
        Cmd::Resume { targets } => services::pause_resume(&config, false, &targets),
        Cmd::Signal { signal, targets } => services::signal(&config, &signal, &targets),
        Cmd::Shutdown { timeout } => process::shutdown(&config, timeout),
        Cmd::Reopen { names } => logs::reopen(&config, &names),
        Cmd::Logtail { name, lines, follow } => logs::logtail(&config, name.as_deref(), lines, follow),
        Cmd::Cleanup { names } => cleanup::cleanup(&config, &names),
        Cmd::Check(args) => check::check(&config, &args),
        Cmd::Reload { scan: None, dry_run } => reload::reload(&config, dry_run),
        Cmd::Scan(_)
        | Cmd::Supervise(_)
        | Cmd::Svc(_)
        | Cmd::Svstat(_)
        | Cmd::Svcstart(_)
        | Cmd::Svcstop(_)
        | Cmd::Svcreset(_)
        | Cmd::Svcrestart(_)
        | Cmd::Exec(_)
        | Cmd::Daemonize(_)
        | Cmd::Reload { scan: Some(_), .. }
        | Cmd::Convert { .. }
        | Cmd::Shell => unreachable!("handled before the configuration is loaded"),
        Cmd::Fg { .. } | Cmd::Kill { .. } => unreachable!("handled by zdaemon::dispatch"),
    }
}

/// Connects to the instance's socket; "not running" maps to `code`.
pub(crate) fn connect(config: &Config, not_running_code: u8) -> Result<ControlClient, CliError> {
    let socket = config.socket_path();
    ControlClient::connect(&socket).map_err(|_| CliError::NotRunning {
        name: config.name.clone(),
        socket: socket.display().to_string(),
        code: not_running_code,
    })
}

/// One request and its response, with errors mapped for a command whose
/// "not running" and "unknown service" codes are given.
pub(crate) fn call(
    config: &Config,
    command: Command,
    timeout: Duration,
    not_running: u8,
    unknown: u8,
) -> Result<Response, CliError> {
    let mut client = connect(config, not_running)?;
    let resp = client.call(command, timeout).map_err(|e| match e {
        ClientError::Timeout(t) => CliError::Failed(format!("no answer from the supervisor within {t:?}")),
        other => CliError::Failed(other.to_string()),
    })?;
    match &resp.error {
        None => Ok(resp),
        Some(err) => match err.code {
            ErrorCode::UnknownService => Err(CliError::UnknownService { message: err.message.clone(), code: unknown }),
            ErrorCode::BadRequest => Err(CliError::Usage(err.message.clone())),
            _ => Err(CliError::Failed(err.message.clone())),
        },
    }
}
