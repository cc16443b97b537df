//! zdaemon's configuration files (`ZConfig`), read as they are, and the TOML
//! keys that came with them.
//!
//! A zdaemon file such as
//!
//! ```text
//! <runner>
//!   program sleep 100
//!   socket-name /tmp/demo.zdsock
//!   transcript log
//! </runner>
//! <environment>
//!   LD_LIBRARY_PATH /home/foo/lib
//! </environment>
//! ```
//!
//! is parsed with `ZConfig`'s syntax (`key value` lines, `#` comment lines,
//! `<section>`...`</section>`, case-insensitive keys and section types,
//! `%define NAME VALUE` with `$NAME`, `${NAME}` and `$$` in values), checked
//! against zdaemon's schema, and translated into the TOML schema: one
//! service named `program`, a supervisor named after the file. The TOML text
//! is then read by [`Config::parse`], so the result is an ordinary
//! [`Config`]; the errors that this second step finds are mapped back to
//! the line and key of the zdaemon file. [`to_toml`] gives the same TOML
//! text to `supervisor convert`.
//!
//! Paths (`socket-name`, `transcript`, `logfile`, `directory`, event log
//! files, a relative program with a `/`) are relative to the directory of
//! the file, as in TOML files (zdaemon took them relative to the directory
//! it was started in; the two agree when it was started next to its file).
//! The instance's runtime directory is derived from the file's path
//! (`NAME-HASH`), so that many `zdaemon.conf` files can run side by side.
//!
//! Besides the reader, this module holds what the TOML schema gained for
//! zdaemon: `[supervisor] socket`, `daemon` and `event_log` (see
//! [`EventLogTarget`]), the service keys `logfile`, `start_test` and
//! `start_timeout` (see [`ServiceExtras`]), and zdaemon's command-line
//! options `-p` and `-s` ([`Overrides`]).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use supervisor_core::{split_words, Command};
use toml::de::DeValue;

use super::check::{resolve, Raw, Scope};
use super::{Config, ConfigError, ConfigErrors, Flavour};

mod syntax;
#[cfg(test)]
mod tests;
mod translate;

use syntax::At;
use translate::{emit, read_runner, translate, Runner};

/// The name of the one service of a zdaemon configuration.
pub const PROGRAM: &str = "program";

/// The default `start_timeout`, zdaemon's `start-timeout`.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(300);

/// The path that ad hoc configurations (`-p` without a file) carry.
pub const COMMAND_LINE: &str = "<command line>";

/// The keys of zdaemon's `<runner>` section.
pub const RUNNER_KEYS: &[&str] = &[
    "program",
    "socket-name",
    "daemon",
    "directory",
    "backoff-limit",
    "forever",
    "exit-codes",
    "user",
    "umask",
    "transcript",
    "logfile",
    "start-test-program",
    "start-timeout",
    "stop-timeout",
    "default-to-interactive",
    "prompt",
    "hang-around",
    "python",
    "zdrun",
];

// ---------------------------------------------------------------------------
// What the TOML schema gained.

/// One more target of the supervisor's own event log (`[supervisor]
/// event_log`, zdaemon's `<eventlog><logfile> path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventLogTarget {
    /// `"STDOUT"`: the supervisor's standard output.
    Stdout,
    /// `"STDERR"`: the supervisor's standard error.
    Stderr,
    /// A file, appended to.
    File(PathBuf),
}

/// The settings of a service that only the command-line tool uses (the
/// engine never sees them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceExtras {
    /// `logfile`: what `logtail` shows (the transcript when `None`).
    pub logfile: Option<PathBuf>,
    /// `start_test`: run by `start` once the service runs, again and again
    /// until it exits 0 (zdaemon's `start-test-program`).
    pub start_test: Option<Vec<String>>,
    /// `start_timeout`: how long `start` waits for the service to run and
    /// for `start_test` to pass (300 s).
    pub start_timeout: Duration,
}

impl Default for ServiceExtras {
    fn default() -> Self {
        ServiceExtras { logfile: None, start_test: None, start_timeout: DEFAULT_START_TIMEOUT }
    }
}

/// zdaemon's command-line options, applied on top of the configuration
/// file (or making the whole configuration, for `-p` without a file).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Overrides {
    /// `-p`: the program, split on whitespace.
    pub program: Option<String>,
    /// `-s`: the control socket, absolute.
    pub socket: Option<PathBuf>,
    /// Arguments appended to the program (`start ARGS`, `fg ARGS`).
    pub args: Vec<String>,
    /// There is no file: the configuration is made of `-p` (and `-s`).
    pub no_file: bool,
}

impl Overrides {
    /// Whether no option is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.program.is_none() && self.socket.is_none() && self.args.is_empty()
    }

    /// The options that give a re-executed `supervisor` the same
    /// configuration (before its subcommand).
    #[must_use]
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(p) = &self.program {
            out.extend(["--program".to_owned(), p.clone()]);
        }
        if let Some(s) = &self.socket {
            out.extend(["--socket-name".to_owned(), s.display().to_string()]);
        }
        for a in &self.args {
            out.push(format!("--program-arg={a}"));
        }
        out
    }
}

/// `event_log`: an array of paths, `"STDOUT"` or `"STDERR"`.
pub(super) fn read_event_log(s: &mut Scope<'_, '_>, v: &Raw<'_>) -> Vec<EventLogTarget> {
    let mut out = Vec::new();
    for item in s.array("event_log", v).unwrap_or_default() {
        match item.get_ref() {
            DeValue::String(t) if t == "STDOUT" => out.push(EventLogTarget::Stdout),
            DeValue::String(t) if t == "STDERR" => out.push(EventLogTarget::Stderr),
            _ => {
                if let Some(p) = s.path("event_log", item) {
                    out.push(EventLogTarget::File(p));
                }
            }
        }
    }
    out
}

/// The keys `logfile`, `start_test` and `start_timeout` of a service.
pub(super) fn read_extras(s: &mut Scope<'_, '_>, f: &BTreeMap<&'static str, &Raw<'_>>) -> ServiceExtras {
    let mut extras = ServiceExtras::default();
    if let Some(v) = f.get("logfile") {
        extras.logfile = s.path("logfile", v);
    }
    if let Some(v) = f.get("start_test") {
        extras.start_test = argv(s, "start_test", v);
    }
    if let Some(v) = f.get("start_timeout") {
        extras.start_timeout = s.duration("start_timeout", v).unwrap_or(DEFAULT_START_TIMEOUT);
    }
    extras
}

/// A command: a string split into words like `command`, or a non-empty
/// array of strings.
fn argv(s: &mut Scope<'_, '_>, key: &str, v: &Raw<'_>) -> Option<Vec<String>> {
    const EXPECTED: &str = "a command line or a non-empty array of strings";
    match v.get_ref() {
        DeValue::String(line) => match split_words(line) {
            Ok(words) if !words.is_empty() => Some(words),
            Ok(_) => {
                s.mismatch(key, v, EXPECTED);
                None
            }
            Err(e) => {
                let message = format!("expected a command line, found {line:?}, which cannot be split into words: {e}");
                s.error(v.span(), Some(key), message);
                None
            }
        },
        DeValue::Array(items) if !items.is_empty() => {
            let mut out = Vec::new();
            for item in items {
                match item.get_ref() {
                    DeValue::String(a) if !a.contains('\0') => out.push(a.to_string()),
                    _ => s.mismatch(key, item, "a string (each argument is one string)"),
                }
            }
            (out.len() == items.len()).then_some(out)
        }
        _ => {
            s.mismatch(key, v, EXPECTED);
            None
        }
    }
}

// ---------------------------------------------------------------------------
// Recognising and loading.

/// Whether `text` looks like a `ZConfig` file: its first construct (after
/// blank and `#` comment lines) is a `<section>` or a `%` directive, which
/// no TOML file starts with.
pub fn looks_like(text: &str) -> bool {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'));
    first.is_some_and(|l| l.starts_with('<') || l.starts_with('%'))
}

/// Reads the zdaemon file `path`, whose content is `text`, into a
/// [`Config`] of [`Flavour::Zdaemon`].
///
/// # Errors
///
/// Every problem, each naming the file, the line and the zdaemon key.
pub fn load(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let t = translate(path, text)?;
    match Config::parse(path, &t.toml) {
        Ok(mut config) => {
            config.flavour = Flavour::Zdaemon;
            Ok(config)
        }
        Err(e) => Err(t.remap(path, e)),
    }
}

/// The TOML text equivalent to the zdaemon file `path` (for `supervisor
/// convert`), checked to load.
///
/// # Errors
///
/// As [`load`].
pub fn to_toml(path: &Path, text: &str) -> Result<String, ConfigErrors> {
    let t = translate(path, text)?;
    if let Err(e) = Config::parse(path, &t.toml) {
        return Err(t.remap(path, e));
    }
    Ok(t.toml)
}

/// zdaemon's interactive settings of the file at `path`:
/// `default-to-interactive` (true when not set, or when the file is not a
/// zdaemon file) and `prompt`.
#[must_use]
pub fn interactive_settings(path: &Path) -> (bool, Option<String>) {
    let Ok(text) = std::fs::read_to_string(path) else { return (true, None) };
    match read_runner(path, &text) {
        Ok(r) => (r.default_to_interactive.is_none_or(|b| b.value), r.prompt.map(|p| p.value)),
        Err(_) => (true, None),
    }
}

/// The configuration of zdaemon's command line: the file (if any) with the
/// options `-p`, `-s` and the program's extra arguments applied.
///
/// Without a file, `-p` makes a configuration of its own: the socket is
/// `-s`, by default `zdsock` in the current directory (as zdaemon's), the
/// supervisor is named `zdaemon-HASH` after the socket's path, and the
/// paths are relative to the current directory.
///
/// # Errors
///
/// The file's errors; `-p` or extra arguments with a TOML file; no `-p`
/// without a file.
pub fn load_with(file: Option<&Path>, mut overrides: Overrides) -> Result<Config, ConfigErrors> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    // Made absolute here, so that the daemon (in another directory) reads
    // them the same.
    if let Some(s) = overrides.socket.take() {
        overrides.socket = Some(resolve(&cwd, &s));
    }
    if let Some(p) = overrides.program.take() {
        overrides.program = Some(program_words(&p, &cwd).join(" "));
    }
    let mut config = if let Some(path) = file {
        overrides.no_file = false;
        Config::load(path)?
    } else {
        overrides.no_file = true;
        let path = Path::new(COMMAND_LINE);
        let err = |m: &str| ConfigErrors(vec![ConfigError::new(path, m)]);
        let program = overrides.program.as_deref().ok_or_else(|| err("no configuration file and no -p"))?;
        let socket = overrides.socket.clone().unwrap_or_else(|| cwd.join("zdsock"));
        let r = Runner {
            program: Some(At::new(program_words(program, &cwd), 0)),
            socket: Some(At::new(socket.clone(), 0)),
            ..Runner::default()
        };
        let name = format!("zdaemon-{}", short_hash(socket.as_os_str()));
        let t = emit(&r, &name, None, None, &cwd);
        match Config::parse(path, &t.toml) {
            Ok(mut c) => {
                c.flavour = Flavour::Zdaemon;
                c
            }
            Err(e) => return Err(t.remap(path, e)),
        }
    };
    let refuse = |what: &str| {
        let message = format!(
            "{what} applies to the program of a zdaemon configuration, and this is not one \
             (drop -c and unset SUPERVISOR_CONFIG to run the program on its own)"
        );
        Err(ConfigErrors(vec![ConfigError::new(&config.path, message)]))
    };
    if config.flavour != Flavour::Zdaemon {
        if overrides.program.is_some() {
            return refuse("-p (--program)");
        }
        if !overrides.args.is_empty() {
            return refuse("arguments for the program");
        }
    }
    if let Some(socket) = &overrides.socket {
        config.socket = Some(socket.clone());
    }
    if let Some(svc) = config.services.iter_mut().find(|s| s.name == PROGRAM) {
        let mut words = match &overrides.program {
            Some(p) if !overrides.no_file => program_words(p, &cwd),
            _ => svc.command.to_argv(),
        };
        words.extend(overrides.args.iter().cloned());
        if words.is_empty() {
            let message = "-p (--program): expected a program and its arguments, found nothing";
            return Err(ConfigErrors(vec![ConfigError::new(&config.path, message)]));
        }
        svc.command = Command::Argv(words);
    }
    config.overrides = overrides;
    Ok(config)
}

impl Config {
    /// Reads the configuration again as it was made: the same file (or
    /// none) with the same zdaemon command-line options ([`Overrides`]).
    ///
    /// # Errors
    ///
    /// As [`Config::load`].
    pub fn reread(&self) -> Result<Config, ConfigErrors> {
        let file = (!self.overrides.no_file).then_some(self.path.as_path());
        if self.overrides.is_empty() {
            return Config::load(&self.path);
        }
        load_with(file, self.overrides.clone())
    }

    /// Whether zdaemon's command forms apply: a zdaemon file, or `-p`.
    #[must_use]
    pub fn is_zdaemon(&self) -> bool {
        self.flavour == Flavour::Zdaemon
    }
}

/// zdaemon's `program`: words split on whitespace (no quoting); a relative
/// program with a `/` is made absolute against `base`.
fn program_words(program: &str, base: &Path) -> Vec<String> {
    let mut words: Vec<String> = program.split_whitespace().map(str::to_owned).collect();
    if let Some(first) = words.first_mut() {
        if first.contains('/') && !first.starts_with('/') {
            *first = resolve(base, Path::new(first.as_str())).display().to_string();
        }
    }
    words
}

/// Eight hex digits of the FNV-1a hash of `bytes`: stable across runs
/// and machines.
fn short_hash(s: &OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", (h ^ (h >> 32)) as u32)
}
