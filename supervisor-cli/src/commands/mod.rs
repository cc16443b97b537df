//! One module per group of subcommands.

use crate::config::Flavour;
use crate::exit::{self, CliError};
use crate::{Cli, Cmd};
use reach::Reach;

pub mod check;
pub mod cleanup;
pub mod convert;
pub mod daemonize;
pub mod events;
pub mod exec;
pub mod front;
pub mod instances;
pub mod logs;
pub mod metrics;
pub mod process;
pub mod reach;
pub mod record;
pub mod reference;
pub mod reload;
pub mod servicedir;
pub mod services;
pub mod shell;
pub mod status;
pub mod svc;
pub mod wait;
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
        Cmd::List => return instances::list(),
        Cmd::Completions { shell } => return reference::completions(shell),
        Cmd::Man { dir } => return reference::man(dir.as_deref()),
        command => Cli { command, ..cli },
    };
    if is_client(&cli.command) {
        let reach = Reach::resolve(&cli)?;
        crate::out::detail(&format!("instance {}: socket {}", reach.label, reach.socket.display()));
        // zdaemon's forms of start, stop, status and restart read the file.
        if !(reach.flavour == Flavour::Zdaemon && zdaemon::is_zdaemon_form(&cli.command)) {
            return client(&reach, cli.command);
        }
    }
    // The file (or zdaemon's -p), with zdaemon's command-line options.
    let config = match (crate::load_config(&cli), &cli.command) {
        (Ok(config), _) => config,
        (Err(e), Cmd::Run { ready_fd, .. }) => return Err(process::fail_start(e, *ready_fd)),
        (Err(e), _) => return Err(e),
    };
    let path = config.path.clone();
    if let Some(code) = zdaemon::dispatch(&config, &cli.command)? {
        return Ok(code);
    }
    match cli.command {
        Cmd::CheckConfig => {
            if crate::out::json() {
                let doc = serde_json::json!({ "ok": true, "file": path, "services": config.services.len() });
                crate::out::document(&doc);
            }
            crate::say!("{}: ok ({} services)", path.display(), config.services.len());
            Ok(exit::OK)
        }
        Cmd::Up { timeout } => process::up(&config, timeout),
        Cmd::Run { ready_fd, init } => process::run_foreground(config, ready_fd, init),
        Cmd::Logtail { name, lines, follow } => {
            // `logtail -n N`, as tail's -n: a number given to the global -n.
            let lines = cli.instance.as_deref().and_then(|n| n.parse().ok()).unwrap_or(lines);
            logs::logtail(&config, name.as_deref(), lines, follow)
        }
        Cmd::Cleanup { names } => cleanup::cleanup(&config, &names),
        Cmd::Check(args) => check::check(&config, &args),
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
        | Cmd::List
        | Cmd::Completions { .. }
        | Cmd::Man { .. }
        | Cmd::Shell => unreachable!("handled before the configuration is loaded"),
        Cmd::Status { .. }
        | Cmd::Start { .. }
        | Cmd::Stop { .. }
        | Cmd::Restart { .. }
        | Cmd::Pause { .. }
        | Cmd::Resume { .. }
        | Cmd::Signal { .. }
        | Cmd::Shutdown { .. }
        | Cmd::Reopen { .. }
        | Cmd::Reload { .. }
        | Cmd::RepairSocket
        | Cmd::Events { .. }
        | Cmd::Metrics
        | Cmd::Wait { .. } => unreachable!("client commands, or zdaemon's forms of them"),
        Cmd::Fg { .. } | Cmd::Kill { .. } => unreachable!("handled by zdaemon::dispatch"),
    }
}

/// Whether `command` only talks to a running supervisor (and so needs
/// only to find it, not a valid file).
fn is_client(command: &Cmd) -> bool {
    matches!(
        command,
        Cmd::Status { .. }
            | Cmd::Start { .. }
            | Cmd::Stop { .. }
            | Cmd::Restart { .. }
            | Cmd::Pause { .. }
            | Cmd::Resume { .. }
            | Cmd::Signal { .. }
            | Cmd::Shutdown { .. }
            | Cmd::Reopen { .. }
            | Cmd::Reload { scan: None, .. }
            | Cmd::RepairSocket
            | Cmd::Events { .. }
            | Cmd::Metrics
            | Cmd::Wait { .. }
    )
}

/// Runs a client command against the instance `reach` found.
fn client(reach: &Reach, command: Cmd) -> Result<u8, CliError> {
    match command {
        Cmd::Status { names } => status::status(reach, &names),
        Cmd::Start { targets, waiting } => services::change(reach, services::Change::Start, &targets, &waiting),
        Cmd::Stop { targets, waiting } => services::change(reach, services::Change::Stop, &targets, &waiting),
        Cmd::Restart { targets, waiting } => services::change(reach, services::Change::Restart, &targets, &waiting),
        Cmd::Pause { targets } => services::pause_resume(reach, true, &targets),
        Cmd::Resume { targets } => services::pause_resume(reach, false, &targets),
        Cmd::Signal { signal, targets } => services::signal(reach, &signal, &targets),
        Cmd::Shutdown { timeout } => instances::shutdown(reach, timeout),
        Cmd::Reopen { names } => logs::reopen(reach, &names),
        Cmd::Reload { dry_run, .. } => reload::reload(reach, dry_run),
        Cmd::RepairSocket => instances::repair_socket(reach),
        Cmd::Events { names, since_start } => events::events(reach, names, since_start),
        Cmd::Wait { names, ready, timeout } => wait::wait(reach, &names, ready && names.is_empty(), timeout),
        Cmd::Metrics => metrics::metrics(reach),
        other => unreachable!("not a client command: {other:?}"),
    }
}
