//! The `supervisor` command: maps a TOML configuration and subcommands onto
//! `supervisor-core`.
//!
//! [`run`] parses the command line, runs one subcommand and maps its
//! outcome to an exit code that follows the LSB conventions for init
//! scripts (see [`exit`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub mod commands;
pub mod config;
pub mod exit;
mod fast;
pub mod logger;
mod os;
pub mod out;

use exit::CliError;

/// Run, watch and control Unix daemons.
#[derive(Debug, Parser)]
#[command(name = "supervisor", version, about, propagate_version = true)]
pub struct Cli {
    /// The configuration file (TOML, zdaemon or simplevisor; `-C` as
    /// zdaemon spells it).
    #[arg(short, long, short_alias = 'C', global = true, env = "SUPERVISOR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The control socket of a running supervisor, for client commands
    /// (instead of finding it from the configuration file).
    #[arg(long, global = true, env = "SUPERVISOR_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The running instance of this name, found in the default runtime
    /// root (`/run/supervisor` for root, else `$XDG_RUNTIME_DIR/supervisor`
    /// or `/tmp/supervisor-UID`), for client commands.
    #[arg(short = 'n', long = "name", global = true, value_name = "NAME")]
    pub instance: Option<String>,
    /// Print only errors (and what `--json` asks for).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Say more: how the instance was found, on standard error.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Print one JSON document on standard output, also on failure (with
    /// the same exit code), for the commands that report (docs/cli.md).
    #[arg(long, global = true)]
    pub json: bool,
    /// zdaemon's command-line options (`-p`, `-s`), before the command.
    #[command(flatten)]
    pub zdaemon: commands::zdaemon::ZdaemonArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// Services named on the command line, or all of them.
#[derive(Debug, Clone, Args)]
pub struct Targets {
    /// The services.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// Every service in the configuration.
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
}

/// How long to wait for a command to take effect.
#[derive(Debug, Clone, Args)]
pub struct Waiting {
    /// Return once the command is accepted, without waiting for the state.
    #[arg(long)]
    pub no_wait: bool,
    /// Give up waiting after this long ("30s", "2m"); the default is the
    /// longest stop timeout plus start time in the configuration, plus 10 s.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (expected a duration such as \"10s\" or \"500ms\")"))
}

/// The subcommands. Each one's options are built only when it is the one
/// invoked (`defer`): building all of them cost every command 0.6 ms.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Cmd {
    /// Start the supervisor in the background; return once it answers.
    Up {
        /// How long to wait for it to answer.
        #[arg(long, value_parser = parse_duration, default_value = "10s", value_name = "DURATION")]
        timeout: Duration,
    },
    /// Run the supervisor in the foreground, logging to standard error.
    Run {
        /// The readiness pipe that `up` hands down (for `up` only).
        #[arg(long, hide = true, value_name = "FD")]
        ready_fd: Option<i32>,
        /// Act as the init process of a container: reap every orphan, and
        /// exit only once every other process is gone (implied when the
        /// supervisor is PID 1).
        #[arg(long)]
        init: bool,
    },
    /// Show the state of services (exit codes as LSB `status`).
    Status {
        /// Services to show (all when none).
        #[arg(value_name = "NAME")]
        names: Vec<String>,
    },
    /// Start services and wait until they run.
    Start {
        #[command(flatten)]
        targets: Targets,
        #[command(flatten)]
        waiting: Waiting,
    },
    /// Stop services and wait until they and their descendants are gone.
    Stop {
        #[command(flatten)]
        targets: Targets,
        #[command(flatten)]
        waiting: Waiting,
    },
    /// Stop services if they run, start them, and wait until they run.
    Restart {
        #[command(flatten)]
        targets: Targets,
        #[command(flatten)]
        waiting: Waiting,
    },
    /// Suspend services with SIGSTOP.
    Pause {
        #[command(flatten)]
        targets: Targets,
    },
    /// Continue paused services with SIGCONT.
    Resume {
        #[command(flatten)]
        targets: Targets,
    },
    /// Send a signal (name such as HUP or SIGHUP, or number) to services.
    Signal {
        /// The signal.
        signal: String,
        #[command(flatten)]
        targets: Targets,
    },
    /// Follow state changes live, one line each (JSON lines with
    /// `--json`), until interrupted; ends when the supervisor goes away.
    Events {
        /// The services (or groups) to follow (all when none).
        #[arg(value_name = "NAME")]
        names: Vec<String>,
        /// First the changes since the supervisor started (its last 1024).
        #[arg(long)]
        since_start: bool,
    },
    /// Print the metrics of the running supervisor in Prometheus' text
    /// exposition format: what `[supervisor] metrics` serves at
    /// `/metrics` (docs/metrics.md).
    Metrics,
    /// Wait until the services are ready: exit 0 then, 1 when one fails or
    /// the time is up (saying which and why), 7 when no supervisor runs.
    Wait {
        /// The services to wait for.
        #[arg(value_name = "NAME", required_unless_present = "ready")]
        names: Vec<String>,
        /// Without NAME: every service that should run (wanted running,
        /// loop tasks aside); for a container's readiness probe.
        #[arg(long)]
        ready: bool,
        /// How long to wait.
        #[arg(long, value_parser = parse_duration, value_name = "DURATION", default_value = "60s")]
        timeout: Duration,
    },
    /// Stop all services and the supervisor; return once it is gone.
    Shutdown {
        /// How long to wait.
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        timeout: Option<Duration>,
    },
    /// Reopen the transcripts (all when no name is given) and the event
    /// log, after an outside tool renamed them; SIGUSR2 does the same.
    #[command(alias = "reopen_transcript")]
    Reopen {
        /// Services whose transcripts to reopen.
        #[arg(value_name = "NAME")]
        names: Vec<String>,
    },
    /// Print the end of a service's transcript (or of its `logfile`).
    Logtail {
        /// The service (by default the program of a zdaemon configuration,
        /// or the only service).
        name: Option<String>,
        /// How many lines (`-n N` works too, as tail's).
        #[arg(long, default_value_t = 10)]
        lines: usize,
        /// Keep printing lines as they are written (across rotations).
        #[arg(short, long)]
        follow: bool,
    },
    /// Print a shell completion script (bash, zsh or fish) on standard
    /// output.
    Completions {
        /// The shell.
        shell: commands::reference::Shell,
    },
    /// Print the man page `supervisor(1)`; with `--dir DIR`, write it and
    /// one page per subcommand (`supervisor-status.1`, ...) into DIR.
    Man {
        /// Where to write the pages.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// List the supervisors running for this user (name, pid, uptime,
    /// socket, configuration file), from the default runtime root.
    List,
    /// Make a running supervisor bind its control socket (and its
    /// `[supervisor] socket` link) again where they are gone: sends it
    /// SIGUSR1, found through its pidfile, and waits until it answers.
    RepairSocket,
    /// Validate the configuration: exit 0, or print every error and exit 6.
    CheckConfig,
    /// Check the external services once, repair what is not as expected,
    /// and say what was found and done (exit 0 when all are as expected).
    Check(commands::check::CheckArgs),
    /// Remove the runtime directories (`runtime_dir`) of stopped services;
    /// refuse (exit 1) for one that runs.
    Cleanup {
        /// The services.
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
    /// Ask a running supervisor to read its configuration file again and
    /// apply the difference (for `scan`: to look for new and removed
    /// service directories now); prints the plan applied.
    Reload {
        /// The directory of a running `supervisor scan` (instead of `-c`).
        #[arg(long, value_name = "DIR")]
        scan: Option<PathBuf>,
        /// Print what a reload would do, computed by the running
        /// supervisor, and change nothing.
        #[arg(long, conflicts_with = "scan")]
        dry_run: bool,
    },
    /// Supervise every subdirectory of DIR that has an executable `run`,
    /// like daemontools' `svscan`.
    Scan(commands::servicedir::ScanArgs),
    /// Supervise one daemontools service directory, like `supervise`.
    Supervise(commands::servicedir::SuperviseArgs),
    /// Control service directories, like daemontools' `svc`.
    Svc(commands::svc::SvcArgs),
    /// Show the state of service directories, like daemontools' `svstat`.
    Svstat(commands::svc::SvstatArgs),
    /// Bring a service directory up and run its `start` check.
    Svcstart(commands::front::FrontArgs),
    /// Bring a service directory down and run its `stop` check.
    Svcstop(commands::front::FrontArgs),
    /// Put a service directory in the state its `down` file says.
    Svcreset(commands::front::FrontArgs),
    /// Restart a service directory, only if it runs.
    Svcrestart(commands::front::FrontArgs),
    /// Set up the process (user, limits, lock, process group), then exec
    /// PROGRAM: daemontools' setuidgid, softlimit, setlock and pgrphack.
    Exec(commands::exec::ExecArgs),
    /// Run a foreground program in the background with a pidfile, or stop
    /// it or report on it through the pidfile (an external service's
    /// `daemon`; simplevisor-loop).
    Daemonize(commands::daemonize::DaemonizeArgs),
    /// Print the TOML equivalent of a zdaemon or simplevisor configuration
    /// file (a TOML file is checked and printed unchanged); needs no
    /// running supervisor.
    Convert {
        /// The configuration file.
        file: PathBuf,
    },
    /// Read commands line by line from standard input, as zdaemon's and
    /// supervisorctl's interactive mode: `help` lists them; `quit`, `exit`
    /// or the end of the input leaves.
    Shell,
    /// Run the program in the foreground, attached to the terminal, with
    /// its service's environment, directory, umask and user, and exit with
    /// its exit code (zdaemon's `fg`).
    #[command(alias = "foreground")]
    Fg {
        /// The service (by default the program of a zdaemon configuration,
        /// or the only service).
        #[arg(long, value_name = "NAME")]
        service: Option<String>,
        /// Arguments appended to the program.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARG")]
        args: Vec<String>,
    },
    /// Send a signal (TERM by default) to the program (zdaemon's `kill`).
    Kill {
        /// The signal, by name (`HUP`, `SIGHUP`) or number.
        #[arg(default_value = "TERM")]
        signal: String,
        /// The service (by default the program of a zdaemon configuration,
        /// or the only service).
        #[arg(long, value_name = "NAME")]
        service: Option<String>,
    },
}

/// The `supervisor` command of this installation: this binary.
pub(crate) fn cli_binary() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("supervisor"))
}

/// `supervisor svc -LETTERS DIR...` as daemontools' `svc`: its letters
/// (`-q` is quit) are not this command's global options, so an `--` goes
/// after `svc`.
fn svc_args(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    if args.get(1).is_some_and(|a| a == "svc") && args.get(2).is_some_and(|a| a != "--") {
        args.insert(2, "--".into());
    }
    args
}

/// Runs the command line of this process and returns its exit code.
#[must_use]
pub fn run() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(cli) = fast::parse(&args) {
        return ExitCode::from(execute(cli));
    }
    let args = svc_args(args);
    let json = args.iter().any(|a| a == "--json");
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if json && e.use_stderr() => {
            let _ = e.print();
            let doc = exit::error_document(exit::USAGE, "usage", &e.kind().to_string());
            data!("{doc}");
            return ExitCode::from(exit::USAGE);
        }
        Err(e) => {
            // zdaemon's default-to-interactive: no command means the shell.
            if let Some(code) = commands::shell::without_command(&e) {
                return ExitCode::from(code);
            }
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    ExitCode::from(execute(cli))
}

/// Runs a parsed command line (of this process, or a line of the shell)
/// with its output options, reports its error, and returns its exit code.
#[must_use]
pub fn execute(cli: Cli) -> u8 {
    out::set_level(cli.quiet, cli.verbose, cli.json);
    match commands::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            e.report();
            if out::json() {
                data!("{}", e.to_json());
            }
            e.exit_code()
        }
    }
}

/// The configuration file to use: `-c`, `SUPERVISOR_CONFIG`, or
/// `./supervisor.toml`.
///
/// # Errors
///
/// [`CliError::Usage`] when none is given and the default does not exist.
pub fn config_path(cli: &Cli) -> Result<PathBuf, CliError> {
    if let Some(p) = &cli.config {
        return Ok(p.clone());
    }
    let default = PathBuf::from("supervisor.toml");
    if default.exists() {
        return Ok(default);
    }
    Err(CliError::Usage("no configuration: use -c FILE or set SUPERVISOR_CONFIG".into()))
}

/// The configuration of a command line: `-c` (or `SUPERVISOR_CONFIG`,
/// or `./supervisor.toml`), or `-p` alone, with zdaemon's options applied.
///
/// # Errors
///
/// No configuration (usage), or its errors (6).
pub fn load_config(cli: &Cli) -> Result<config::Config, CliError> {
    let overrides = cli.zdaemon.overrides();
    let file = match (&cli.config, &overrides.program) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(_)) => None,
        (None, None) => Some(config_path(cli)?),
    };
    crate::config::zdaemon::load_with(file.as_deref(), overrides).map_err(CliError::Config)
}
