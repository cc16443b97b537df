//! The `[supervisor]` table: the settings of the supervisor itself.

use std::path::PathBuf;

use log::LevelFilter;
use nix::unistd::{Group, User};
use supervisor_core::{AccessPolicy, ExitWhen};
use toml::de::DeValue;

use super::check::{found, valid_name, Raw, Scope, NAME_RULE};
use super::{metrics, zdaemon, EventLogTarget};

/// The keys of the `[supervisor]` table.
const SUPERVISOR_KEYS: &[&str] = &[
    "name",
    "runtime_dir",
    "directory",
    "umask",
    "log_level",
    "allow_uids",
    "allow_groups",
    "reload",
    "exit_when",
    "socket",
    "daemon",
    "event_log",
    "cgroups",
    "metrics",
];

/// The default `[supervisor] umask`.
const DEFAULT_UMASK: u32 = 0o022;

/// What `[supervisor]` holds.
pub(super) struct Settings {
    pub(super) name: Option<String>,
    pub(super) runtime_dir: Option<PathBuf>,
    pub(super) directory: Option<PathBuf>,
    pub(super) umask: u32,
    pub(super) log_level: LevelFilter,
    pub(super) reload: ReloadMode,
    pub(super) exit_when: ExitWhen,
    pub(super) access: AccessPolicy,
    pub(super) socket: Option<PathBuf>,
    pub(super) daemon: bool,
    pub(super) event_log: Vec<EventLogTarget>,
    pub(super) cgroups: bool,
    pub(super) metrics: Option<supervisor_core::metrics::MetricsAddr>,
}

/// `[supervisor] reload`: when the configuration file is read again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReloadMode {
    /// On `supervisor reload` and `SIGHUP` only (the default).
    #[default]
    Manual,
    /// Also by itself: the file's metadata is checked every second (and
    /// before every task run), and a changed file is reloaded.
    Auto,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            name: None,
            runtime_dir: None,
            directory: None,
            umask: DEFAULT_UMASK,
            log_level: LevelFilter::Info,
            reload: ReloadMode::Manual,
            exit_when: ExitWhen::Signalled,
            access: AccessPolicy::default(),
            socket: None,
            daemon: true,
            event_log: Vec::new(),
            cgroups: true,
            metrics: None,
        }
    }
}

pub(super) fn read_supervisor(s: &mut Scope<'_, '_>, v: &Raw<'_>) -> Settings {
    let mut settings = Settings::default();
    let DeValue::Table(table) = v.get_ref() else {
        let message = format!("expected a table ([supervisor]), found {}", found(v.get_ref()));
        s.error(v.span(), Some("supervisor"), message);
        return settings;
    };
    let f = s.fields(table, SUPERVISOR_KEYS);
    if let Some(v) = f.get("name") {
        settings.name = s.string("name", v).and_then(|name| {
            if valid_name(name) {
                return Some(name.to_owned());
            }
            s.mismatch("name", v, &format!("a name of {NAME_RULE}"));
            None
        });
    }
    if let Some(v) = f.get("runtime_dir") {
        settings.runtime_dir = s.path("runtime_dir", v);
    }
    if let Some(v) = f.get("directory") {
        settings.directory = s.path("directory", v);
    }
    if let Some(v) = f.get("umask") {
        settings.umask = s.umask("umask", v).unwrap_or(DEFAULT_UMASK);
    }
    if let Some(v) = f.get("log_level") {
        let options = [
            ("debug", LevelFilter::Debug),
            ("info", LevelFilter::Info),
            ("warn", LevelFilter::Warn),
            ("warning", LevelFilter::Warn),
            ("error", LevelFilter::Error),
        ];
        settings.log_level = s.choice("log_level", v, &options).unwrap_or(LevelFilter::Info);
    }
    if let Some(v) = f.get("reload") {
        let options = [("manual", ReloadMode::Manual), ("auto", ReloadMode::Auto)];
        settings.reload = s.choice("reload", v, &options).unwrap_or_default();
    }
    if let Some(v) = f.get("exit_when") {
        let options = [("signalled", ExitWhen::Signalled), ("all-exited", ExitWhen::AllExited)];
        settings.exit_when = s.choice("exit_when", v, &options).unwrap_or_default();
    }
    if let Some(v) = f.get("socket") {
        settings.socket = s.path("socket", v);
    }
    if let Some(v) = f.get("daemon") {
        settings.daemon = s.boolean("daemon", v).unwrap_or(true);
    }
    if let Some(v) = f.get("event_log") {
        settings.event_log = zdaemon::read_event_log(s, v);
    }
    if let Some(v) = f.get("cgroups") {
        settings.cgroups = s.boolean("cgroups", v).unwrap_or(true);
    }
    if let Some(v) = f.get("metrics") {
        settings.metrics = metrics::read_metrics(s, v);
    }
    if let Some(v) = f.get("allow_uids") {
        settings.access.uids = ids(s, "allow_uids", v, "user");
    }
    if let Some(v) = f.get("allow_groups") {
        settings.access.gids = ids(s, "allow_groups", v, "group");
    }
    settings
}

/// `allow_uids` or `allow_groups`: an array of numeric ids or names of
/// users (`kind` = `"user"`) or groups, resolved to ids.
fn ids(s: &mut Scope<'_, '_>, key: &str, v: &Raw<'_>, kind: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for item in s.array(key, v).unwrap_or_default() {
        let expected = format!("a {kind} name or a numeric id");
        let name = match item.get_ref() {
            DeValue::Integer(_) => {
                if let Some(n) = s.integer(key, item, 0..i64::from(u32::MAX), &expected) {
                    out.push(n as u32);
                }
                continue;
            }
            DeValue::String(name) if !name.is_empty() && !name.contains('\0') => name,
            _ => {
                s.mismatch(key, item, &expected);
                continue;
            }
        };
        if let Ok(n) = name.parse::<u32>() {
            out.push(n);
            continue;
        }
        let lookup = match kind {
            "user" => User::from_name(name).map(|u| u.map(|u| u.uid.as_raw())),
            _ => Group::from_name(name).map(|g| g.map(|g| g.gid.as_raw())),
        };
        match lookup {
            Ok(Some(id)) => out.push(id),
            Ok(None) => {
                s.error(item.span(), Some(key), format!("expected an existing {kind}, found {name:?}: no such {kind}"));
            }
            Err(e) => s.error(item.span(), Some(key), format!("cannot look up {kind} {name:?}: {e}")),
        }
    }
    out
}
