//! How a client command reaches a running supervisor, whatever state its
//! configuration file is in.
//!
//! The socket comes from, in this order: `--socket PATH` (or
//! `SUPERVISOR_SOCKET`); the instance name (`-n NAME`, in the default
//! runtime root); zdaemon's `-s`; or a lenient read of the configuration
//! file ([`locate`](crate::config::locate)): only `[supervisor]`'s `name`,
//! `runtime_dir` and `socket`. A typo elsewhere in the file does not stop
//! `status`, `stop` or `shutdown`; they print one warning that the file
//! has errors, found only when the file changed since the supervisor read
//! it (the instance record says when that was).
//!
//! "Is it running" has one answer: the pidfile's lock. A socket that does
//! not answer while the pidfile is held is reported as such, not as "not
//! running".

use std::path::{Path, PathBuf};
use std::time::Duration;

use supervisor_core::protocol::{ClientError, Command, ControlClient, ErrorCode, Response};
use supervisor_core::{PidFile, PidState};

use super::record::Record;
use crate::config::{Config, Flavour, Located};
use crate::exit::CliError;
use crate::Cli;

/// A running instance, as a client finds it.
#[derive(Debug, Clone)]
pub struct Reach {
    /// For messages: the instance name, or the socket's path.
    pub label: String,
    /// The socket to connect to.
    pub socket: PathBuf,
    /// `RUNTIME_DIR/run`, when known: the pidfile and the instance record.
    pub run_dir: Option<PathBuf>,
    /// The configuration file, when the instance was found through one.
    pub file: Option<PathBuf>,
    /// The kind of that file.
    pub flavour: Flavour,
}

impl Reach {
    /// Finds the instance that the command line means.
    ///
    /// # Errors
    ///
    /// A usage error without any way to find one; the file's errors when
    /// even the lenient read fails (it cannot be read, or a zdaemon or
    /// simplevisor file is invalid).
    pub fn resolve(cli: &Cli) -> Result<Reach, CliError> {
        if let Some(socket) = &cli.socket {
            return Ok(Reach::at_socket(socket));
        }
        if cli.zdaemon.program.is_some() {
            // zdaemon's -p: the program of an instance of its own, or of a
            // zdaemon file; read in full, as zdaemon does.
            let config = crate::load_config(cli)?;
            return Ok(Reach::of(&config));
        }
        if let Some(name) = &cli.instance {
            return Reach::named(name);
        }
        if let Some(socket) = &cli.zdaemon.socket_name {
            let file = cli.config.clone().or_else(|| crate::config_path(cli).ok());
            let flavour =
                file.as_ref().and_then(|f| crate::config::locate(f).ok()).map_or(Flavour::Toml, |l| l.flavour);
            return Ok(Reach { file, flavour, ..Reach::at_socket(socket) });
        }
        let file = crate::config_path(cli)?;
        let located = crate::config::locate(&file).map_err(CliError::Config)?;
        Ok(Reach::located(&located, Some(file)))
    }

    /// The instance of a configuration read in full.
    #[must_use]
    pub fn of(config: &Config) -> Reach {
        let file = (!config.overrides.no_file).then(|| config.path.clone());
        let mut reach = Reach::located(&Located::of(config), file);
        if config.is_zdaemon() {
            reach.flavour = Flavour::Zdaemon;
        }
        reach
    }

    fn located(l: &Located, file: Option<PathBuf>) -> Reach {
        Reach {
            label: l.name.clone(),
            socket: l.socket_path(),
            run_dir: l.pidfile_path().parent().map(Path::to_path_buf),
            file,
            flavour: l.flavour,
        }
    }

    /// `-n NAME`: the instance's directory in the default runtime root.
    fn named(name: &str) -> Result<Reach, CliError> {
        if !crate::config::valid_instance_name(name) {
            return Err(CliError::Usage(format!("{name:?} is not a valid instance name")));
        }
        let run_dir = crate::config::default_runtime_dir_of(name).join("run");
        Ok(Reach {
            label: name.to_owned(),
            socket: run_dir.join("control.sock"),
            run_dir: Some(run_dir),
            file: None,
            flavour: Flavour::Toml,
        })
    }

    /// `--socket PATH`: the run directory is the socket's (or its link
    /// target's) when it holds a pidfile.
    fn at_socket(socket: &Path) -> Reach {
        let target = match std::fs::read_link(socket) {
            Ok(t) if t.is_absolute() => t,
            Ok(t) => socket.parent().unwrap_or(Path::new(".")).join(t),
            Err(_) => socket.to_path_buf(),
        };
        let run_dir = target.parent().filter(|d| d.join("supervisor.pid").exists()).map(Path::to_path_buf);
        Reach {
            label: socket.display().to_string(),
            socket: socket.to_path_buf(),
            run_dir,
            file: None,
            flavour: Flavour::Toml,
        }
    }

    /// The pid of the supervisor that holds the pidfile, if one does.
    #[must_use]
    pub fn running_pid(&self) -> Option<i32> {
        let run_dir = self.run_dir.as_ref()?;
        match PidFile::read(&run_dir.join("supervisor.pid")) {
            Ok(PidState::Held(pid)) => Some(pid),
            _ => None,
        }
    }

    /// The pid of the supervisor when it answers a ping on the socket.
    #[must_use]
    pub fn answering_pid(&self) -> Option<i32> {
        let mut client = ControlClient::connect(&self.socket).ok()?;
        let resp = client.call(Command::Ping, Duration::from_secs(5)).ok()?;
        resp.status.map(|s| s.supervisor.pid)
    }

    /// The error for a socket that does not answer: "not running" (with
    /// `code`), or running without a socket when the pidfile is held.
    #[must_use]
    pub fn unreachable(&self, code: u8) -> CliError {
        let socket = self.socket.display().to_string();
        match self.running_pid() {
            Some(pid) => CliError::SocketMissing { name: self.label.clone(), pid, socket },
            None => CliError::NotRunning { name: self.label.clone(), socket, code },
        }
    }

    /// Connects; "not running" maps to `not_running`.
    ///
    /// # Errors
    ///
    /// As [`Reach::unreachable`].
    pub fn connect(&self, not_running: u8) -> Result<ControlClient, CliError> {
        let client = ControlClient::connect(&self.socket).map_err(|_| self.unreachable(not_running))?;
        self.warn_if_file_invalid();
        Ok(client)
    }

    /// One request and its response, with errors mapped for a command
    /// whose "not running" and "unknown service" codes are given.
    ///
    /// # Errors
    ///
    /// As [`Reach::connect`]; the supervisor's error.
    pub fn call(
        &self,
        command: Command,
        timeout: Duration,
        not_running: u8,
        unknown: u8,
    ) -> Result<Response, CliError> {
        self.open(command, timeout, not_running, unknown).map(|(_, resp)| resp)
    }

    /// As [`Reach::call`], keeping the connection (for a stream).
    ///
    /// # Errors
    ///
    /// As [`Reach::call`].
    pub fn open(
        &self,
        command: Command,
        timeout: Duration,
        not_running: u8,
        unknown: u8,
    ) -> Result<(ControlClient, Response), CliError> {
        let mut client = self.connect(not_running)?;
        let resp = client.call(command, timeout).map_err(|e| match e {
            ClientError::Timeout(t) => CliError::Failed(format!("no answer from the supervisor within {t:?}")),
            other => CliError::Failed(other.to_string()),
        })?;
        match &resp.error {
            None => Ok((client, resp)),
            Some(err) => Err(match err.code {
                ErrorCode::UnknownService => CliError::UnknownService { message: err.message.clone(), code: unknown },
                ErrorCode::BadRequest => CliError::Usage(err.message.clone()),
                _ => CliError::Failed(err.message.clone()),
            }),
        }
    }

    /// The configuration file read in full, when there is one and it is
    /// valid (for what only the file says: `start_test`, timeouts).
    #[must_use]
    pub fn config(&self) -> Option<Config> {
        Config::load(self.file.as_ref()?).ok()
    }

    /// Prints one warning when the configuration file changed since the
    /// running supervisor read it and now has errors.
    fn warn_if_file_invalid(&self) {
        let Some(file) = &self.file else { return };
        let now = super::record::stamp(file);
        let record = self.run_dir.as_deref().and_then(Record::load);
        if record.is_some_and(|r| r.config_stamp == now) {
            return;
        }
        if let Err(errors) = Config::load(file) {
            let first = errors.0.first().map(ToString::to_string).unwrap_or_default();
            crate::out::warn(&format!(
                "{} has {} error(s) (first: {first}); the supervisor runs its last good configuration, and \
                 `reload` would refuse this file",
                file.display(),
                errors.0.len()
            ));
        }
    }
}
