//! The lenient read of a configuration file that client commands make to
//! find a running instance: of a TOML file, only `[supervisor]`'s `name`,
//! `runtime_dir` and `socket`, line by line, so that a typo anywhere else
//! (or a file that no longer parses) never locks the operator out of the
//! supervisor that runs. It costs a read and a scan of the file, not a
//! validation.
//!
//! zdaemon and simplevisor files are read in full (their socket is derived
//! from the whole file); when they have errors, `--socket` or `-n NAME`
//! still reach the instance.

use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use super::{base_dir, resolve, valid_name, Config, ConfigErrors, Flavour};

/// Where an instance's files are, as the configuration file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The instance name.
    pub name: String,
    /// Its runtime directory.
    pub runtime_dir: PathBuf,
    /// `[supervisor] socket`, when set.
    pub socket: Option<PathBuf>,
    /// The kind of file.
    pub flavour: Flavour,
}

impl Located {
    /// The socket clients use, as [`Config::socket_path`].
    #[must_use]
    pub fn socket_path(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(|| super::run_dir(&self.runtime_dir).join(super::SOCKET_FILE))
    }

    /// The supervisor's pidfile, as [`Config::pidfile_path`].
    #[must_use]
    pub fn pidfile_path(&self) -> PathBuf {
        super::run_dir(&self.runtime_dir).join(super::PIDFILE_FILE)
    }

    /// The same of a configuration read in full.
    #[must_use]
    pub fn of(config: &Config) -> Located {
        Located {
            name: config.name.clone(),
            runtime_dir: config.runtime_dir.clone(),
            socket: config.socket.clone(),
            flavour: config.flavour,
        }
    }
}

/// Locates the instance of the configuration file at `path`, leniently.
///
/// # Errors
///
/// When the file cannot be read, its name is invalid, or (a zdaemon or
/// simplevisor file) it has errors.
pub fn locate(path: &Path) -> Result<Located, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![super::ConfigError::new(path, format!("cannot read the configuration: {e}"))])
    })?;
    match Flavour::detect(&text) {
        Flavour::Toml => locate_toml(path, &text),
        _ => Config::load(path).map(|c| Located::of(&c)),
    }
}

/// The three keys of `[supervisor]` in TOML `text`, of the file at `path`.
fn locate_toml(path: &Path, text: &str) -> Result<Located, ConfigErrors> {
    let keys = scan(text);
    let base = base_dir(path);
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = keys.name.filter(|n| valid_name(n)).unwrap_or(stem);
    if !valid_name(&name) {
        let message =
            format!("cannot tell the instance name: set name in [supervisor] (the file name {name:?} is not one)");
        return Err(ConfigErrors(vec![super::ConfigError::new(path, message)]));
    }
    let runtime_dir =
        keys.runtime_dir.map_or_else(|| super::default_runtime_dir_of(&name), |dir| resolve(&base, Path::new(&dir)));
    let socket = keys.socket.map(|s| resolve(&base, Path::new(&s)));
    Ok(Located { name, runtime_dir, socket, flavour: Flavour::Toml })
}

/// The string values found for the keys a client needs.
#[derive(Debug, Default, PartialEq, Eq)]
struct Keys {
    name: Option<String>,
    runtime_dir: Option<String>,
    socket: Option<String>,
}

/// Scans the lines of the `[supervisor]` table for `name`, `runtime_dir`
/// and `socket` with a string value; anything else is skipped, valid or
/// not.
fn scan(text: &str) -> Keys {
    let mut keys = Keys::default();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = header(line) == Some("supervisor");
            continue;
        }
        if !inside {
            continue;
        }
        let Some((key, _)) = line.split_once('=') else { continue };
        let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
        let slot = match key {
            "name" => &mut keys.name,
            "runtime_dir" => &mut keys.runtime_dir,
            "socket" => &mut keys.socket,
            _ => continue,
        };
        if let Some(value) = string_value(line) {
            *slot = Some(value);
        }
    }
    keys
}

/// The table name of a header line such as `[supervisor]  # comment`.
fn header(line: &str) -> Option<&str> {
    let inner = line.strip_prefix('[')?;
    if inner.starts_with('[') {
        return None;
    }
    Some(inner.split(']').next()?.trim().trim_matches('"'))
}

/// The value of a one-line `key = "string"`, parsed as TOML (escapes,
/// literal strings, a comment after it).
fn string_value(line: &str) -> Option<String> {
    let (table, errors) = DeTable::parse_recoverable(line);
    if !errors.is_empty() {
        return None;
    }
    let (_, value) = table.get_ref().iter().next()?;
    match value.get_ref() {
        DeValue::String(s) if !s.is_empty() && !s.contains('\0') => Some(s.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_three_keys_in_a_file_that_does_not_validate() {
        let text = "# app\n[supervisor]\nname = \"app\" # the name\nruntime_dir = 'rt'\nsocket=\"s\\u0041\"\n\
                    comand = oops\n[service.web]\ncomand = [\"x\"\nname = \"web\"\n";
        let keys = scan(text);
        assert_eq!(keys.name.as_deref(), Some("app"));
        assert_eq!(keys.runtime_dir.as_deref(), Some("rt"));
        assert_eq!(keys.socket.as_deref(), Some("sA"));
    }

    #[test]
    fn keys_of_other_tables_and_bad_values_are_skipped() {
        let keys = scan("[[supervisor]]\nname = \"no\"\n[supervisor]\nname = 12\nsocket = \"\"\n[ supervisor ]\nruntime_dir = \"r\"\n");
        assert_eq!(keys, Keys { name: None, runtime_dir: Some("r".into()), socket: None });
    }

    #[test]
    fn defaults_follow_the_full_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shop.toml");
        let located = locate_toml(&path, "[supervisor]\nruntime_dir = \"rt\"\n").unwrap();
        assert_eq!(located.name, "shop");
        assert_eq!(located.runtime_dir, dir.path().join("rt"));
        assert_eq!(located.socket_path(), dir.path().join("rt/run/control.sock"));
        let full = Config::parse(&path, "[supervisor]\nruntime_dir = \"rt\"\n").unwrap();
        assert_eq!(Located::of(&full), located);
        assert!(locate_toml(&dir.path().join("bad name.toml"), "").is_err());
    }
}
