//! The TOML configuration file: loading, validation and error reporting.
//!
//! [`Config::load`] reads a file such as
//!
//! ```toml
//! [supervisor]
//! name = "demo"
//!
//! [service.web]
//! command = ["python3", "-m", "http.server", "8000"]
//! stop_timeout = "5s"
//! ```
//!
//! into a [`Config`] holding `supervisor-core` [`Service`]s. The schema is
//! documented in `docs/config.md`.
//!
//! Parsing has two steps. The text is first parsed into toml's spanned
//! document tree ([`toml::de::DeTable`]), in which every key and value
//! keeps its byte range; a syntax error stops there and is reported once.
//! The tree is then walked by hand: each key is checked and converted, and
//! every problem (unknown keys, wrong types, bad values, of every service)
//! is collected as a [`ConfigError`] that names the file, line, column,
//! service and key, so that one run shows them all.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use log::LevelFilter;
use supervisor_core::{AccessPolicy, ExitWhen, Service};
use toml::de::{DeTable, DeValue};

mod across;
mod check;
mod deps;
mod error;
mod kinds;
mod locate;
mod metrics;
mod readiness;
mod service;
mod settings;
pub mod simplevisor;
#[cfg(test)]
mod tests;
pub mod zdaemon;

use across::{check_files, check_runtime_dirs, check_with_the_engines_rules, default_transcripts};
use check::{found, resolve, service_before, valid_name, Diag, Raw, Scope, NAME_RULE};
pub use error::{ConfigError, ConfigErrors};
pub use locate::{locate, Located};
use service::ServiceRead;
pub use settings::ReloadMode;
use settings::{read_supervisor, Settings};
pub use zdaemon::{EventLogTarget, Overrides, ServiceExtras};

/// The keys of the top level of the file.
const TOP_KEYS: &[&str] = &["supervisor", "service", "group"];

/// A validated configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The configuration file, as given.
    pub path: PathBuf,
    /// The supervisor's name (`[supervisor] name`, by default the file
    /// name without its extension).
    pub name: String,
    /// The directory of the control socket, pidfile, logs and
    /// transcripts (see the `*_dir` and `*_path` methods for its layout).
    pub runtime_dir: PathBuf,
    /// The supervisor's working directory once `up` has detached
    /// (default `/`).
    pub directory: PathBuf,
    /// The supervisor's file mode creation mask once `up` has detached
    /// (default `0o022`).
    pub umask: u32,
    /// The supervisor's own log level (default `Info`).
    pub log_level: LevelFilter,
    /// Whether a changed file is reloaded by itself (`[supervisor] reload`).
    pub reload: ReloadMode,
    /// Who besides root and the owner may use the control socket, with
    /// user and group names resolved.
    pub access: AccessPolicy,
    /// The services, in the order they appear in the file, except that a
    /// service named in `requires` or `after` moves up to just before the
    /// first one that names it (the engine takes only names added before):
    /// add them to an engine in this order. A service has a
    /// [`Service::transcript`] exactly when its stdout or stderr goes to it,
    /// with its default path filled in.
    pub services: Vec<Service>,
    /// The `[group.NAME]` tables, in the order they appear in the file.
    pub groups: Vec<supervisor_core::Group>,
    /// What kind of file this was read from.
    pub flavour: Flavour,
    /// `[supervisor] socket`: where clients find the control socket (a
    /// symbolic link to `RUNTIME_DIR/run/control.sock`), zdaemon's
    /// `socket-name`; see [`Config::socket_path`].
    pub socket: Option<PathBuf>,
    /// `[supervisor] exit_when` (default `signalled`): whether the
    /// supervisor ends by itself once every service has finished
    /// (`all-exited`, for job containers).
    pub exit_when: ExitWhen,
    /// `[supervisor] daemon` (default true): whether `up` detaches; with
    /// false it runs the supervisor in the foreground, as zdaemon's
    /// `daemon off`.
    pub daemon: bool,
    /// `[supervisor] event_log`: more targets of the supervisor's own log.
    pub event_log: Vec<EventLogTarget>,
    /// `[supervisor] cgroups` (default true): whether each service gets a
    /// cgroup of its own where the supervisor may make one.
    pub cgroups: bool,
    /// `[supervisor] metrics`: where Prometheus metrics are served, if
    /// anywhere (docs/metrics.md).
    pub metrics: Option<supervisor_core::metrics::MetricsAddr>,
    /// The settings of each service that only the command line uses
    /// (`logfile`, `start_test`, `start_timeout`), by service name; a
    /// service without an entry has the defaults.
    pub extras: std::collections::BTreeMap<String, ServiceExtras>,
    /// zdaemon's command-line options applied to the file (`-p`, `-s`,
    /// the program's extra arguments); see [`Config::reread`].
    pub overrides: Overrides,
}

/// The kind of configuration file, recognised by its content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Flavour {
    /// The TOML schema of `docs/config.md`.
    #[default]
    Toml,
    /// A zdaemon (`ZConfig`) file with a `<runner>` section.
    Zdaemon,
    /// A simplevisor (`Config::General`) file with `<entry>` blocks.
    Simplevisor,
}

impl Flavour {
    /// Recognises the kind of a configuration file by its content.
    #[must_use]
    pub fn detect(text: &str) -> Flavour {
        if simplevisor::looks_like(text) {
            Flavour::Simplevisor
        } else if zdaemon::looks_like(text) {
            Flavour::Zdaemon
        } else {
            Flavour::Toml
        }
    }
}

impl Config {
    /// Reads and validates the configuration file at `path`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the path when the file cannot be read,
    /// otherwise as [`Config::parse`].
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        match std::fs::read_to_string(path) {
            Ok(text) => match Flavour::detect(&text) {
                Flavour::Toml => Config::parse(path, &text),
                Flavour::Zdaemon => zdaemon::load(path, &text),
                Flavour::Simplevisor => {
                    let toml = simplevisor::to_toml(path, &text)?;
                    let mut config = Config::parse(path, &toml)?;
                    config.flavour = Flavour::Simplevisor;
                    Ok(config)
                }
            },
            Err(e) => Err(ConfigErrors(vec![ConfigError::new(path, format!("cannot read the configuration: {e}"))])),
        }
    }

    /// Validates `text`, the content of the configuration file at `path`
    /// (which is used in errors, for the default name, and as the base of
    /// relative paths).
    ///
    /// # Errors
    ///
    /// Every problem found: one error for a TOML syntax error, otherwise
    /// one per bad key or value, ordered by their position in the file.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        let mut diag = Diag::new(path, text);
        // The parser reports errors in no particular order: the first one
        // in the file is the one to show.
        let (root, syntax) = DeTable::parse_recoverable(text);
        let first = syntax.into_iter().min_by_key(|e| e.span().map_or(usize::MAX, |s| s.start));
        let root = match first {
            None => root,
            Some(e) => {
                let span = e.span();
                let service = span.as_ref().and_then(|s| service_before(text, s.start));
                let message = format!("invalid TOML: {}", e.message().trim_end());
                diag.error(span, service.as_deref(), None, message);
                return Err(ConfigErrors(diag.errors));
            }
        };
        let base = base_dir(path);
        let mut scope = Scope { diag: &mut diag, service: None, base: &base };
        let top = scope.fields(root.get_ref(), TOP_KEYS);
        let settings = match top.get("supervisor") {
            Some(v) => read_supervisor(&mut scope, v),
            None => Settings::default(),
        };
        // Only the services that have some: most have none, and an entry
        // per service cost the supervisor 0.2 kB each.
        let extras_of = |services: &[ServiceRead]| {
            let default = ServiceExtras::default();
            services
                .iter()
                .filter(|r| r.extras != default)
                .map(|r| (r.service.name.clone(), r.extras.clone()))
                .collect()
        };
        let mut services = match top.get("service") {
            Some(v) => read_services(&mut diag, &base, v),
            None => Vec::new(),
        };
        let groups = match top.get("group") {
            Some(v) => {
                let names = services.iter().map(|r| r.service.name.as_str()).collect();
                kinds::read_groups(&mut diag, &base, v, &names)
            }
            None => Vec::new(),
        };

        let name = match settings.name {
            Some(name) => Some(name),
            None => default_name(&mut diag, path),
        };
        let runtime_dir = settings.runtime_dir.or_else(|| {
            let xdg = std::env::var_os("XDG_RUNTIME_DIR");
            Some(default_runtime_dir(name.as_deref()?, nix::unistd::geteuid().as_raw(), xdg.as_deref()))
        });
        if let Some(dir) = &runtime_dir {
            default_transcripts(dir, &mut services);
        }
        check_files(&mut diag, runtime_dir.as_deref(), &services);
        let config_file = base.join(path.file_name().unwrap_or_default());
        check_runtime_dirs(&mut diag, &config_file, runtime_dir.as_deref(), &services);
        check_with_the_engines_rules(&mut diag, &services);
        deps::check_and_order(&mut diag, top.get("service").copied(), &mut services);
        // Without a name (reported above) there is no runtime directory.
        let (true, Some(name), Some(runtime_dir)) = (diag.errors.is_empty(), name, runtime_dir) else {
            let mut errors = diag.errors;
            errors.sort_by_key(|e| (e.line.unwrap_or(0), e.column.unwrap_or(0)));
            return Err(ConfigErrors(errors));
        };
        Ok(Config {
            path: path.to_path_buf(),
            name,
            runtime_dir,
            directory: settings.directory.unwrap_or_else(|| PathBuf::from("/")),
            umask: settings.umask,
            log_level: settings.log_level,
            reload: settings.reload,
            exit_when: settings.exit_when,
            access: settings.access,
            extras: extras_of(&services),
            services: services.into_iter().map(|r| r.service).collect(),
            groups,
            flavour: Flavour::Toml,
            socket: settings.socket,
            daemon: settings.daemon,
            event_log: settings.event_log,
            cgroups: settings.cgroups,
            metrics: settings.metrics,
            overrides: Overrides::default(),
        })
    }

    /// The directory of the supervisor's pidfile, control socket and
    /// state: `RUNTIME_DIR/run`.
    #[must_use]
    pub fn run_dir(&self) -> PathBuf {
        run_dir(&self.runtime_dir)
    }

    /// The control socket that clients use: `[supervisor] socket` when
    /// set, else `RUNTIME_DIR/run/control.sock`.
    #[must_use]
    pub fn socket_path(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(|| self.bound_socket_path())
    }

    /// The socket that the supervisor binds: always
    /// `RUNTIME_DIR/run/control.sock`, in a private directory
    /// (`[supervisor] socket` is a symbolic link to it).
    #[must_use]
    pub fn bound_socket_path(&self) -> PathBuf {
        self.run_dir().join(SOCKET_FILE)
    }

    /// The supervisor's pidfile: `RUNTIME_DIR/run/supervisor.pid`.
    #[must_use]
    pub fn pidfile_path(&self) -> PathBuf {
        self.run_dir().join(PIDFILE_FILE)
    }

    /// The socket services send `sd_notify` datagrams to:
    /// `RUNTIME_DIR/run/notify.sock`.
    #[must_use]
    pub fn notify_socket_path(&self) -> PathBuf {
        self.run_dir().join("notify.sock")
    }

    /// The saved state of the services: `RUNTIME_DIR/run/state.json`.
    #[must_use]
    pub fn state_path(&self) -> PathBuf {
        self.run_dir().join(STATE_FILE)
    }

    /// The directory of the supervisor's logs: `RUNTIME_DIR/log`.
    #[must_use]
    pub fn log_dir(&self) -> PathBuf {
        log_dir(&self.runtime_dir)
    }

    /// The directory of the default transcripts: `RUNTIME_DIR/console`.
    #[must_use]
    pub fn console_dir(&self) -> PathBuf {
        console_dir(&self.runtime_dir)
    }

    /// About the longest a shutdown can take: the slowest service's stop,
    /// or a group's members one after the other.
    pub fn longest_stop(&self) -> std::time::Duration {
        let single = self.services.iter().map(stop_time).max().unwrap_or_default();
        let grouped = self.groups.iter().map(|g| {
            g.services.iter().filter_map(|n| self.services.iter().find(|s| &s.name == n)).map(stop_time).sum()
        });
        grouped.fold(single, std::cmp::max)
    }

    /// About the longest one service takes to get where a command sends
    /// it: its stop, then (but for an external service) a start until it
    /// counts as running.
    #[must_use]
    pub fn longest_change(&self) -> std::time::Duration {
        let start = |s: &Service| if s.kind.is_external() { std::time::Duration::ZERO } else { s.restart.min_uptime };
        self.services.iter().map(|s| stop_time(s) + start(s)).max().unwrap_or_default()
    }
}

/// How long a service may take to stop: its stop timeout, or for an
/// external service a whole pass (status, stop, start, status).
fn stop_time(s: &Service) -> std::time::Duration {
    match &s.kind {
        supervisor_core::Kind::External(e) => e.timeout * 4,
        _ => s.stop_timeout,
    }
}

/// The file names in `RUNTIME_DIR/run`.
const SOCKET_FILE: &str = "control.sock";
const PIDFILE_FILE: &str = "supervisor.pid";
const STATE_FILE: &str = "state.json";
/// The supervisor's log, in `RUNTIME_DIR/log`.
const LOG_FILE: &str = "supervisor.log";

fn run_dir(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("run")
}

fn log_dir(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("log")
}

fn console_dir(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("console")
}

/// The `[service.NAME]` tables, in file order.
fn read_services(diag: &mut Diag<'_>, base: &Path, v: &Raw<'_>) -> Vec<ServiceRead> {
    let entries = check::tables_in_order(diag, "service", "[service.web]", v);
    let mut services = Vec::new();
    for (key, value) in entries {
        let name = key.get_ref().as_ref();
        let mut s = Scope { diag: &mut *diag, service: Some(name), base };
        if !valid_name(name) {
            s.error(key.span(), None, format!("invalid service name: use {NAME_RULE}"));
        }
        match value.get_ref() {
            DeValue::Table(t) => services.extend(service::read_service(&mut s, name, key.span(), t)),
            other => {
                let message = format!("expected a table such as [service.{name}], found {}", found(other));
                s.error(value.span(), None, message);
            }
        }
    }
    services
}

/// The file name without its extension, when it is a valid name.
fn default_name(diag: &mut Diag<'_>, path: &Path) -> Option<String> {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    if valid_name(&stem) {
        return Some(stem);
    }
    let message = format!(
        "the supervisor name defaults to the file name {stem:?}, which is not a valid name ({NAME_RULE}); \
         set name in [supervisor]"
    );
    diag.error(None, None, None, message);
    None
}

/// The directory of the configuration file, made absolute.
fn base_dir(path: &Path) -> PathBuf {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match std::env::current_dir() {
        Ok(cwd) => resolve(&cwd, dir),
        Err(_) => dir.to_path_buf(),
    }
}

/// Whether `name` is a valid instance (or service) name.
#[must_use]
pub fn valid_instance_name(name: &str) -> bool {
    valid_name(name)
}

/// The runtime directory of instance `name` when none is configured, for
/// this user and environment (root: `/run/supervisor/NAME`; others: `$XDG_RUNTIME_DIR/supervisor/NAME`, else `/tmp/supervisor-UID/NAME`).
#[must_use]
pub fn default_runtime_dir_of(name: &str) -> PathBuf {
    let xdg = std::env::var_os("XDG_RUNTIME_DIR");
    default_runtime_dir(name, nix::unistd::geteuid().as_raw(), xdg.as_deref())
}

/// The runtime directory used when none is configured: for root
/// `/run/supervisor/NAME`, otherwise `$XDG_RUNTIME_DIR/supervisor/NAME`
/// when that is set and non-empty, else `/tmp/supervisor-UID/NAME`.
fn default_runtime_dir(name: &str, euid: u32, xdg_runtime_dir: Option<&OsStr>) -> PathBuf {
    if euid == 0 {
        return Path::new("/run/supervisor").join(name);
    }
    match xdg_runtime_dir {
        Some(dir) if !dir.is_empty() => Path::new(dir).join("supervisor").join(name),
        _ => PathBuf::from(format!("/tmp/supervisor-{euid}")).join(name),
    }
}
