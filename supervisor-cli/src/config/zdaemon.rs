//! zdaemon's configuration files (ZConfig), read as they are, and the TOML
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
//! is parsed with ZConfig's syntax (`key value` lines, `#` comment lines,
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

use super::check::{resolve, valid_name, Raw, Scope};
use super::{base_dir, default_runtime_dir, Config, ConfigError, ConfigErrors, Flavour};

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

/// The keys of a runner that older zdaemons needed and that mean nothing
/// here: accepted and ignored.
const IGNORED_KEYS: &[&str] = &["hang-around", "python", "zdrun"];

/// The sections of a zdaemon file.
const TOP_SECTIONS: &[&str] = &["runner", "environment", "eventlog"];

/// The keys of `<eventlog>` and of its `<logfile>` sections.
const EVENTLOG_KEYS: &[&str] = &["level"];
const LOGFILE_KEYS: &[&str] = &["path", "level"];

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    pub fn is_empty(&self) -> bool {
        self.program.is_none() && self.socket.is_none() && self.args.is_empty()
    }

    /// The options that give a re-executed `supervisor` the same
    /// configuration (before its subcommand).
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
            for item in items.iter() {
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

/// Whether `text` looks like a ZConfig file: its first construct (after
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
    let mut config = match file {
        Some(path) => {
            overrides.no_file = false;
            Config::load(path)?
        }
        None => {
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
            _ => svc.command.argv(),
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

// ---------------------------------------------------------------------------
// ZConfig syntax.

/// A value with the 1-based line it came from (0: the command line).
#[derive(Debug, Clone, PartialEq)]
struct At<T> {
    value: T,
    line: usize,
}

impl<T> At<T> {
    fn new(value: T, line: usize) -> At<T> {
        At { value, line }
    }
}

/// A `key value` line.
#[derive(Debug)]
struct Entry {
    key: String,
    value: String,
    line: usize,
}

/// A section: its type (lower case), where it opens, and what it holds.
#[derive(Debug, Default)]
struct Section {
    kind: String,
    line: usize,
    entries: Vec<Entry>,
    sections: Vec<Section>,
}

/// The errors of one zdaemon file.
struct Errors<'p> {
    path: &'p Path,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn at(&mut self, line: usize, key: Option<&str>, message: impl Into<String>) {
        self.list.push(ConfigError {
            path: self.path.to_path_buf(),
            line: (line > 0).then_some(line),
            column: None,
            service: None,
            key: key.map(str::to_owned),
            message: message.into(),
        });
    }
}

/// `word rest`: the first word and the rest, trimmed.
fn split_first(s: &str) -> (&str, &str) {
    let s = s.trim();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    }
}

/// ZConfig's substitution: `$NAME` and `${NAME}` by `%define`d values,
/// `$$` by `$`.
fn substitute(value: &str, defines: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let (name, after) = match rest.strip_prefix('{') {
            Some(r) => match r.find('}') {
                Some(end) => (&r[..end], &r[end + 1..]),
                None => return Err(format!("unterminated ${{ in {value:?}")),
            },
            None => {
                let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !valid {
            return Err(format!(
                "\"$\" must be followed by a name or \"{{NAME}}\" (write \"$$\" for a dollar sign) in {value:?}"
            ));
        }
        match defines.get(&name.to_ascii_lowercase()) {
            Some(v) => out.push_str(v),
            None => return Err(format!("${name} is not defined (define it with %define {name} VALUE)")),
        }
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses ZConfig's syntax into a tree whose root has no type.
fn parse_tree(text: &str, errors: &mut Errors<'_>) -> Section {
    let mut stack = vec![Section::default()];
    let mut defines: BTreeMap<String, String> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('%') {
            let (directive, arg) = split_first(rest);
            match directive.to_ascii_lowercase().as_str() {
                "define" => {
                    let (name, value) = split_first(arg);
                    if name.is_empty() {
                        errors.at(n, None, "%define needs a name and a value");
                        continue;
                    }
                    match substitute(value, &defines) {
                        Ok(v) => {
                            if defines.insert(name.to_ascii_lowercase(), v).is_some() {
                                errors.at(n, None, format!("{name} is already defined"));
                            }
                        }
                        Err(e) => errors.at(n, None, e),
                    }
                }
                d @ ("include" | "import") => {
                    errors.at(n, None, format!("%{d} is not supported: put the whole configuration in one file"))
                }
                other => errors.at(n, None, format!("unknown directive %{other} (only %define is supported)")),
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix('<') {
            let Some(inner) = rest.strip_suffix('>') else {
                errors.at(n, None, "malformed section header: expected <type>, <type name> or </type>");
                continue;
            };
            if let Some(close) = inner.strip_prefix('/') {
                let kind = close.trim().to_ascii_lowercase();
                if stack.len() == 1 {
                    errors.at(n, None, format!("</{kind}> closes no section"));
                    continue;
                }
                let top = stack.last().expect("a section is open");
                if top.kind != kind {
                    let message = format!("</{kind}> does not close <{}> (opened at line {})", top.kind, top.line);
                    errors.at(n, None, message);
                    continue;
                }
                let done = stack.pop().expect("a section is open");
                stack.last_mut().expect("the root").sections.push(done);
                continue;
            }
            let (inner, empty) = match inner.strip_suffix('/') {
                Some(i) => (i, true),
                None => (inner, false),
            };
            let words: Vec<&str> = inner.split_whitespace().collect();
            if words.is_empty() || words.len() > 2 {
                errors.at(n, None, "malformed section header: expected <type>, <type name> or </type>");
                continue;
            }
            let section = Section { kind: words[0].to_ascii_lowercase(), line: n, ..Section::default() };
            if empty {
                stack.last_mut().expect("the root").sections.push(section);
            } else {
                stack.push(section);
            }
            continue;
        }
        let (key, value) = split_first(line);
        match substitute(value, &defines) {
            Ok(value) => {
                stack.last_mut().expect("the root").entries.push(Entry { key: key.to_owned(), value, line: n })
            }
            Err(e) => errors.at(n, Some(key), e),
        }
    }
    while stack.len() > 1 {
        let open = stack.pop().expect("a section is open");
        errors.at(open.line, None, format!("<{}> is not closed (missing </{}>)", open.kind, open.kind));
        stack.last_mut().expect("the root").sections.push(open);
    }
    stack.pop().expect("the root")
}

// ---------------------------------------------------------------------------
// zdaemon's schema.

/// What a zdaemon file says, checked.
#[derive(Debug, Default)]
struct Runner {
    runner_line: usize,
    program: Option<At<Vec<String>>>,
    socket: Option<At<PathBuf>>,
    daemon: Option<At<bool>>,
    directory: Option<At<PathBuf>>,
    backoff_limit: Option<At<u64>>,
    forever: Option<At<bool>>,
    exit_codes: Option<At<Vec<u8>>>,
    user: Option<At<String>>,
    umask: Option<At<u32>>,
    transcript: Option<At<PathBuf>>,
    logfile: Option<At<PathBuf>>,
    start_test: Option<At<String>>,
    start_timeout: Option<At<u64>>,
    stop_timeout: Option<At<u64>>,
    default_to_interactive: Option<At<bool>>,
    prompt: Option<At<String>>,
    ignored: Vec<At<(String, String)>>,
    environment_line: usize,
    env: Vec<At<(String, String)>>,
    log_level: Option<At<&'static str>>,
    event_log: Vec<At<String>>,
}

/// ZConfig's `boolean`.
fn boolean(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("expected on, off, true, false, yes or no, found {v:?}")),
    }
}

/// ZConfig's `integer`, at least zero.
fn count(v: &str) -> Result<u64, String> {
    v.parse().map_err(|_| format!("expected a whole number of seconds, found {v:?}"))
}

/// ZConfig's `time-interval`: a number of seconds, optionally with a unit
/// `s`, `m`, `h` or `d`.
fn interval(v: &str) -> Result<u64, String> {
    let bad = || format!("expected a time interval such as 10, 10s, 5m, 2h or 1d, found {v:?}");
    let lower = v.to_ascii_lowercase();
    let (digits, factor) = match lower.chars().last() {
        Some('s') => (&lower[..lower.len() - 1], 1),
        Some('m') => (&lower[..lower.len() - 1], 60),
        Some('h') => (&lower[..lower.len() - 1], 3600),
        Some('d') => (&lower[..lower.len() - 1], 86_400),
        _ => (lower.as_str(), 1),
    };
    let n: u64 = digits.trim().parse().map_err(|_| bad())?;
    n.checked_mul(factor).filter(|s| *s <= 365 * 86_400).ok_or_else(bad)
}

/// zdaemon's `list_of_ints` for `exit-codes`: comma-separated, possibly
/// empty.
fn exit_codes(v: &str) -> Result<Vec<u8>, String> {
    if v.trim().is_empty() {
        return Ok(Vec::new());
    }
    v.split(',')
        .map(|c| {
            c.trim().parse::<u8>().map_err(|_| format!("expected exit codes 0-255 separated by commas, found {v:?}"))
        })
        .collect()
}

/// zdaemon's `octal_type`.
fn octal(v: &str) -> Result<u32, String> {
    match u32::from_str_radix(v, 8) {
        Ok(m) if m <= 0o777 && !v.is_empty() => Ok(m),
        _ => Err(format!("expected an octal umask such as 022, found {v:?}")),
    }
}

/// A ZConfig logging level, as a TOML `log_level`.
fn level(v: &str) -> Result<&'static str, String> {
    match v.to_ascii_lowercase().as_str() {
        "critical" | "fatal" | "error" | "50" | "40" => Ok("error"),
        "warn" | "warning" | "30" => Ok("warn"),
        "info" | "20" => Ok("info"),
        "blather" | "debug" | "trace" | "all" | "notset" | "15" | "10" | "5" | "1" | "0" => Ok("debug"),
        _ => Err(format!(
            "expected a level (critical, error, warn, info, blather, debug, trace, all, notset), found {v:?}"
        )),
    }
}

/// A non-empty path, made absolute against `base`.
fn path_value(v: &str, base: &Path) -> Result<PathBuf, String> {
    if v.is_empty() || v.contains('\0') {
        return Err(format!("expected a path, found {v:?}"));
    }
    Ok(resolve(base, Path::new(v)))
}

/// Complains about every repeated key of a section, and returns the
/// first of each.
fn unique<'s>(section: &'s Section, errors: &mut Errors<'_>, fold: bool) -> Vec<&'s Entry> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for e in &section.entries {
        let key = if fold { e.key.to_ascii_lowercase() } else { e.key.clone() };
        match seen.get(&key) {
            Some(first) => errors.at(e.line, Some(&e.key), format!("repeated key (first set at line {first})")),
            None => {
                seen.insert(key, e.line);
                out.push(e);
            }
        }
    }
    out
}

/// Reads and checks the file.
fn read_runner(path: &Path, text: &str) -> Result<Runner, ConfigErrors> {
    let mut errors = Errors { path, list: Vec::new() };
    let root = parse_tree(text, &mut errors);
    let base = base_dir(path);
    let mut r = Runner::default();
    for e in &root.entries {
        let message = "a key outside any section (zdaemon's settings go in <runner>)";
        errors.at(e.line, Some(&e.key), message);
    }
    let mut runner: Option<&Section> = None;
    let mut environment: Option<&Section> = None;
    let mut eventlog: Option<&Section> = None;
    for s in &root.sections {
        let slot = match s.kind.as_str() {
            "runner" => &mut runner,
            "environment" => &mut environment,
            "eventlog" => &mut eventlog,
            other => {
                let message = format!("unknown section <{other}>; the valid sections are: {}", TOP_SECTIONS.join(", "));
                errors.at(s.line, None, message);
                continue;
            }
        };
        match slot {
            Some(first) => errors.at(s.line, None, format!("repeated <{}> (first at line {})", s.kind, first.line)),
            None => *slot = Some(s),
        }
    }
    match runner {
        None => errors.at(0, None, "no <runner> section (zdaemon's settings, with at least program)"),
        Some(runner) => {
            r.runner_line = runner.line;
            for s in &runner.sections {
                if s.kind != "eventlog" {
                    errors.at(s.line, None, format!("unknown section <{}> in <runner> (only <eventlog>)", s.kind));
                    continue;
                }
                match eventlog {
                    Some(first) => {
                        errors.at(s.line, None, format!("repeated <eventlog> (first at line {})", first.line))
                    }
                    None => eventlog = Some(s),
                }
            }
            read_runner_keys(runner, &base, &mut r, &mut errors);
            if r.program.is_none() && errors.list.iter().all(|e| e.key.as_deref() != Some("program")) {
                errors.at(runner.line, Some("program"), "missing required key (the program and its arguments)");
            }
        }
    }
    if let Some(env) = environment {
        r.environment_line = env.line;
        for s in &env.sections {
            errors.at(s.line, None, format!("unknown section <{}> in <environment> (only NAME value lines)", s.kind));
        }
        for e in unique(env, &mut errors, false) {
            if e.key.contains('=') {
                errors.at(e.line, Some(&e.key), "invalid variable name: it must not hold \"=\"");
                continue;
            }
            if e.value.contains('\0') {
                errors.at(e.line, Some(&e.key), "the value holds a NUL");
                continue;
            }
            r.env.push(At::new((e.key.clone(), e.value.clone()), e.line));
        }
    }
    if let Some(log) = eventlog {
        read_eventlog(log, &base, &mut r, &mut errors);
    }
    if errors.list.is_empty() {
        return Ok(r);
    }
    errors.list.sort_by_key(|e| e.line.unwrap_or(0));
    Err(ConfigErrors(errors.list))
}

fn read_runner_keys(runner: &Section, base: &Path, r: &mut Runner, errors: &mut Errors<'_>) {
    for e in unique(runner, errors, true) {
        let key = e.key.to_ascii_lowercase();
        let Some(&known) = RUNNER_KEYS.iter().find(|k| **k == key) else {
            let message = format!("unknown key; the valid keys are: {}", RUNNER_KEYS.join(", "));
            errors.at(e.line, Some(&e.key), message);
            continue;
        };
        let v = e.value.as_str();
        let n = e.line;
        if v == "=" || v.starts_with("= ") {
            let message = format!("ZConfig has no \"=\": write \"{known} {}\"", v.trim_start_matches('=').trim());
            errors.at(n, Some(known), message);
            continue;
        }
        let result: Result<(), String> = (|| {
            match known {
                "program" => {
                    let words = program_words(v, base);
                    if words.is_empty() {
                        return Err("expected a program and its arguments, found nothing".into());
                    }
                    r.program = Some(At::new(words, n));
                }
                "socket-name" => r.socket = Some(At::new(path_value(v, base)?, n)),
                "daemon" => r.daemon = Some(At::new(boolean(v)?, n)),
                "directory" => r.directory = Some(At::new(path_value(v, base)?, n)),
                "backoff-limit" => r.backoff_limit = Some(At::new(count(v)?, n)),
                "forever" => r.forever = Some(At::new(boolean(v)?, n)),
                "exit-codes" => r.exit_codes = Some(At::new(exit_codes(v)?, n)),
                "user" => {
                    if v.is_empty() {
                        return Err("expected a user name or a numeric uid, found nothing".into());
                    }
                    r.user = Some(At::new(v.to_owned(), n));
                }
                "umask" => r.umask = Some(At::new(octal(v)?, n)),
                "transcript" => r.transcript = Some(At::new(path_value(v, base)?, n)),
                "logfile" => r.logfile = Some(At::new(path_value(v, base)?, n)),
                "start-test-program" => {
                    if v.trim().is_empty() {
                        return Err("expected a shell command, found nothing".into());
                    }
                    r.start_test = Some(At::new(v.to_owned(), n));
                }
                "start-timeout" => r.start_timeout = Some(At::new(interval(v)?, n)),
                "stop-timeout" => r.stop_timeout = Some(At::new(interval(v)?, n)),
                "default-to-interactive" => r.default_to_interactive = Some(At::new(boolean(v)?, n)),
                "prompt" => r.prompt = Some(At::new(v.to_owned(), n)),
                ignored if IGNORED_KEYS.contains(&ignored) => {
                    r.ignored.push(At::new((ignored.to_owned(), v.to_owned()), n))
                }
                other => unreachable!("{other} is in RUNNER_KEYS"),
            }
            Ok(())
        })();
        if let Err(message) = result {
            errors.at(n, Some(known), message);
        }
    }
}

fn read_eventlog(log: &Section, base: &Path, r: &mut Runner, errors: &mut Errors<'_>) {
    let mut levels: Vec<At<&'static str>> = Vec::new();
    for e in unique(log, errors, true) {
        let key = e.key.to_ascii_lowercase();
        if key != "level" {
            let message = format!("unknown key in <eventlog>; the valid keys are: {}", EVENTLOG_KEYS.join(", "));
            errors.at(e.line, Some(&e.key), message);
            continue;
        }
        match level(&e.value) {
            Ok(l) => r.log_level = Some(At::new(l, e.line)),
            Err(m) => errors.at(e.line, Some("level"), m),
        }
    }
    for s in &log.sections {
        if s.kind != "logfile" {
            let message = format!("unsupported handler <{}> in <eventlog> (only <logfile> with a path)", s.kind);
            errors.at(s.line, None, message);
            continue;
        }
        let mut path = None;
        for e in unique(s, errors, true) {
            match e.key.to_ascii_lowercase().as_str() {
                "path" => match e.value.as_str() {
                    "STDOUT" | "STDERR" => path = Some(At::new(e.value.clone(), e.line)),
                    v => match path_value(v, base) {
                        Ok(p) => path = Some(At::new(p.display().to_string(), e.line)),
                        Err(m) => errors.at(e.line, Some("path"), m),
                    },
                },
                "level" => match level(&e.value) {
                    Ok(l) => levels.push(At::new(l, e.line)),
                    Err(m) => errors.at(e.line, Some("level"), m),
                },
                _ => {
                    let message = format!("unknown key in <logfile>; the valid keys are: {}", LOGFILE_KEYS.join(", "));
                    errors.at(e.line, Some(&e.key), message);
                }
            }
        }
        match path {
            Some(p) => r.event_log.push(p),
            None => errors.at(s.line, Some("path"), "missing required key (a file, STDOUT or STDERR)"),
        }
    }
    // One level for the whole log: <eventlog>'s own, else the most
    // verbose of its files'.
    if r.log_level.is_none() {
        let rank = |l: &str| ["error", "warn", "info", "debug"].iter().position(|x| *x == l).unwrap_or(2);
        r.log_level = levels.into_iter().max_by_key(|l| rank(l.value));
    }
}

// ---------------------------------------------------------------------------
// Translation to TOML.

/// Where a line of the TOML text came from.
#[derive(Debug, Clone, Default)]
struct Origin {
    line: Option<usize>,
    key: Option<&'static str>,
}

/// The TOML text of a zdaemon file, with the origin of each of its lines.
struct Translation {
    toml: String,
    origins: Vec<Origin>,
}

impl Translation {
    fn push(&mut self, text: &str, line: usize, key: Option<&'static str>) {
        self.toml.push_str(text);
        self.toml.push('\n');
        self.origins.push(Origin { line: (line > 0).then_some(line), key });
    }

    fn comment(&mut self, text: &str) {
        self.push(&format!("# {text}"), 0, None);
    }

    /// Maps errors about the TOML text back to the lines and keys of the
    /// zdaemon file.
    fn remap(&self, path: &Path, errors: ConfigErrors) -> ConfigErrors {
        let list = errors
            .0
            .into_iter()
            .map(|mut e| {
                let origin = e.line.and_then(|l| self.origins.get(l - 1)).cloned().unwrap_or_default();
                e.path = path.to_path_buf();
                e.line = origin.line;
                e.column = None;
                e.service = None;
                if e.key.is_some() || origin.key.is_some() {
                    e.key = origin.key.map(str::to_owned).or(e.key);
                }
                e
            })
            .collect();
        ConfigErrors(list)
    }
}

/// A TOML string literal.
fn quote(s: &str) -> String {
    super::simplevisor::toml_string(s)
}

/// A TOML key: bare when it can be.
fn bare_key(key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        quote(key)
    }
}

fn quote_path(p: &Path) -> String {
    quote(&p.display().to_string())
}

/// A TOML array of strings.
fn quote_all(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// Builds the TOML text of `r` for a supervisor `name`, with an explicit
/// runtime directory when given; `source` is the zdaemon file; `cwd` is the
/// working directory of the supervisor (and so of the program) when the
/// file sets no `directory`.
fn emit(r: &Runner, name: &str, runtime_dir: Option<&Path>, source: Option<&Path>, cwd: &Path) -> Translation {
    let mut t = Translation { toml: String::new(), origins: Vec::new() };
    let rl = r.runner_line;
    if let Some(source) = source {
        t.comment(&format!("The zdaemon configuration {}, in the TOML schema", source.display()));
        t.comment("(see docs/config.md and the zdaemon part of docs/migrating.md).");
        t.push("", 0, None);
    }
    t.push("[supervisor]", rl, None);
    t.push(&format!("name = {}", quote(name)), 0, None);
    if let Some(dir) = runtime_dir {
        t.comment("zdaemon files have no runtime directory: this one is derived from the file's path.");
        t.push(&format!("runtime_dir = {}", quote_path(dir)), 0, None);
    }
    if let Some(s) = &r.socket {
        t.push(&format!("socket = {}", quote_path(&s.value)), s.line, Some("socket-name"));
    }
    if let Some(d) = &r.daemon {
        t.push(&format!("daemon = {}", d.value), d.line, Some("daemon"));
    }
    match &r.directory {
        Some(d) => t.push(&format!("directory = {}", quote_path(&d.value)), d.line, Some("directory")),
        None => {
            t.comment("zdaemon ran the program where it was started; here, in the file's directory.");
            t.push(&format!("directory = {}", quote_path(cwd)), 0, None);
        }
    }
    if let Some(u) = &r.umask {
        t.push(&format!("umask = \"{:03o}\"", u.value), u.line, Some("umask"));
    }
    if let Some(l) = &r.log_level {
        t.push(&format!("log_level = {}", quote(l.value)), l.line, Some("level"));
    }
    if !r.event_log.is_empty() {
        let line = r.event_log[0].line;
        let targets: Vec<String> = r.event_log.iter().map(|p| p.value.clone()).collect();
        t.push(&format!("event_log = {}", quote_all(&targets)), line, Some("path"));
    }
    for i in &r.ignored {
        t.comment(&format!("{} {}: ignored (not needed by this supervisor)", i.value.0, i.value.1));
    }
    if let Some(d) = &r.default_to_interactive {
        t.comment(&format!("default-to-interactive {}: read from the zdaemon file only", d.value));
    }
    if let Some(p) = &r.prompt {
        t.comment(&format!("prompt {:?}: read from the zdaemon file only", p.value));
    }
    t.push("", 0, None);

    t.push(&format!("[service.{PROGRAM}]"), rl, None);
    if let Some(p) = &r.program {
        t.push(&format!("command = {}", quote_all(&p.value)), p.line, Some("program"));
    }
    if let Some(u) = &r.user {
        t.push(&format!("user = {}", quote(&u.value)), u.line, Some("user"));
    }
    t.comment("zdaemon restarts the program unless it exits with one of exit-codes (0 and 2 by default).");
    t.push("restart = \"always\"", rl, None);
    let (codes, line) = match &r.exit_codes {
        Some(c) => (c.value.clone(), c.line),
        None => (vec![0, 2], 0),
    };
    let codes: Vec<String> = codes.iter().map(u8::to_string).collect();
    t.push(&format!("exit_codes = [{}]", codes.join(", ")), line, Some("exit-codes"));
    if let Some(b) = &r.backoff_limit {
        t.push(&format!("backoff_limit = \"{}s\"", b.value), b.line, Some("backoff-limit"));
    }
    if let Some(f) = &r.forever {
        t.push(&format!("forever = {}", f.value), f.line, Some("forever"));
    }
    if let Some(s) = &r.stop_timeout {
        t.push(&format!("stop_timeout = \"{}s\"", s.value), s.line, Some("stop-timeout"));
    }
    let daemon = r.daemon.as_ref().is_none_or(|d| d.value);
    match (&r.transcript, daemon) {
        (Some(tr), _) => {
            t.push("stdout = \"transcript\"", tr.line, Some("transcript"));
            t.push("stderr = \"transcript\"", tr.line, Some("transcript"));
        }
        (None, true) => {
            t.comment("Without a transcript, zdaemon discards the program's output.");
            t.push("stdout = \"null\"", rl, None);
            t.push("stderr = \"null\"", rl, None);
        }
        (None, false) => {
            t.comment("daemon off: the program writes to the terminal, as the supervisor does.");
            t.push("stdout = \"inherit\"", rl, None);
            t.push("stderr = \"inherit\"", rl, None);
        }
    }
    if let Some(l) = &r.logfile {
        t.push(&format!("logfile = {}", quote_path(&l.value)), l.line, Some("logfile"));
    }
    if let Some(s) = &r.start_test {
        let argv = ["/bin/sh".to_owned(), "-c".to_owned(), s.value.clone()];
        t.push(&format!("start_test = {}", quote_all(&argv)), s.line, Some("start-test-program"));
    }
    if let Some(s) = &r.start_timeout {
        t.push(&format!("start_timeout = \"{}s\"", s.value), s.line, Some("start-timeout"));
    }
    if !r.env.is_empty() {
        t.push("", 0, None);
        t.push(&format!("[service.{PROGRAM}.env]"), r.environment_line, None);
        for e in &r.env {
            t.push(&format!("{} = {}", bare_key(&e.value.0), quote(&e.value.1)), e.line, Some("environment"));
        }
    }
    if let Some(tr) = &r.transcript {
        t.push("", 0, None);
        t.push(&format!("[service.{PROGRAM}.transcript]"), tr.line, Some("transcript"));
        t.push(&format!("path = {}", quote_path(&tr.value)), tr.line, Some("transcript"));
    }
    t
}

/// A valid supervisor name made of the file's stem.
fn name_of(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    if valid_name(&stem) {
        return stem;
    }
    let cleaned: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') { c } else { '-' }).collect();
    if valid_name(&cleaned) {
        cleaned
    } else {
        "zdaemon".to_owned()
    }
}

/// The absolute, canonical path of the file, for its hash.
fn identity(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| match path.file_name() {
        Some(f) => base_dir(path).join(f),
        None => base_dir(path),
    })
}

fn translate(path: &Path, text: &str) -> Result<Translation, ConfigErrors> {
    let r = read_runner(path, text)?;
    let name = name_of(path);
    let instance = format!("{name}-{}", short_hash(identity(path).as_os_str()));
    let xdg = std::env::var_os("XDG_RUNTIME_DIR");
    let runtime_dir = default_runtime_dir(&instance, nix::unistd::geteuid().as_raw(), xdg.as_deref());
    Ok(emit(&r, &name, Some(&runtime_dir), Some(path), &base_dir(path)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use supervisor_core::Output;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn load_text(dir: &Path, text: &str) -> Result<Config, ConfigErrors> {
        let path = dir.join("conf");
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    fn errors(text: &str) -> Vec<String> {
        let d = dir();
        match load_text(d.path(), text) {
            Ok(c) => panic!("expected errors, got {c:?}"),
            Err(e) => e.0.iter().map(|e| e.to_string().replace(&d.path().display().to_string(), "D")).collect(),
        }
    }

    #[test]
    fn recognised_by_content() {
        assert!(looks_like("\n# a comment\n<runner>\n  program sleep 1\n</runner>\n"));
        assert!(looks_like("%define X 1\n<runner>\n</runner>"));
        assert!(!looks_like("[supervisor]\nname = \"x\"\n"));
        assert!(!looks_like("# <runner>\n"));
        assert!(!looks_like(""));
        let d = dir();
        let c = load_text(d.path(), "<runner>\n  program sleep 100\n</runner>\n").unwrap();
        assert_eq!(c.flavour, Flavour::Zdaemon);
        let c = load_text(d.path(), "[service.a]\ncommand = \"sleep 1\"\n").unwrap();
        assert_eq!(c.flavour, Flavour::Toml);
    }

    #[test]
    fn the_seed_example_is_one_service_named_program() {
        let d = dir();
        let c = load_text(d.path(), "\n<runner>\n  program sleep 100\n</runner>\n").unwrap();
        assert_eq!(c.name, "conf");
        assert_eq!(c.services.len(), 1);
        let svc = &c.services[0];
        assert_eq!(svc.name, "program");
        assert_eq!(svc.command, Command::Argv(vec!["sleep".into(), "100".into()]));
        assert_eq!(svc.restart.exit_codes, vec![0, 2]);
        assert_eq!((svc.stdout.clone(), svc.stderr.clone()), (Output::Null, Output::Null));
        assert!(svc.transcript.is_none());
        assert!(c.daemon);
        assert_eq!(c.socket, None);
        let dir_name = c.runtime_dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(dir_name.starts_with("conf-") && dir_name.len() == 13, "{dir_name}");
        assert_eq!(c.extras["program"], ServiceExtras::default());
    }

    #[test]
    fn every_runner_option_maps() {
        let d = dir();
        let text = "\
# zdaemon's options
%define BASE /srv/app
<runner>
  Program $BASE/bin/app --port 80
  socket-name ${BASE}/zdsock
  daemon on
  directory /srv
  backoff-limit 30
  forever true
  exit-codes 0,3
  umask 027
  transcript log
  logfile app.log
  start-test-program curl -s http://localhost/ | grep -q ok
  start-timeout 2m
  stop-timeout 20
  default-to-interactive off
  prompt app>
  hang-around on
  <eventlog>
    level debug
    <logfile>
      path STDOUT
    </logfile>
    <logfile>
      path events.log
    </logfile>
  </eventlog>
</runner>
<environment>
  LD_LIBRARY_PATH /home/foo/lib
  HOME /home/foo
</environment>
";
        let c = load_text(d.path(), text).unwrap();
        let base = d.path().canonicalize().unwrap();
        let base = if base == d.path() { base } else { d.path().to_path_buf() };
        let svc = &c.services[0];
        assert_eq!(svc.command.argv(), ["/srv/app/bin/app", "--port", "80"]);
        assert_eq!(c.socket.as_deref(), Some(Path::new("/srv/app/zdsock")));
        assert_eq!(c.directory, Path::new("/srv"));
        assert_eq!(c.umask, 0o027);
        assert_eq!(c.log_level, log::LevelFilter::Debug);
        assert_eq!(c.event_log, vec![EventLogTarget::Stdout, EventLogTarget::File(base.join("events.log"))]);
        assert_eq!(svc.restart.backoff_limit, Duration::from_secs(30));
        assert!(svc.restart.forever);
        assert_eq!(svc.restart.exit_codes, vec![0, 3]);
        assert_eq!(svc.stop_timeout, Duration::from_secs(20));
        assert_eq!((svc.stdout.clone(), svc.stderr.clone()), (Output::Transcript, Output::Transcript));
        assert_eq!(svc.transcript.as_ref().unwrap().path, base.join("log"));
        assert_eq!(svc.env.vars["LD_LIBRARY_PATH"], "/home/foo/lib");
        assert_eq!(svc.env.vars["HOME"], "/home/foo");
        let extras = &c.extras["program"];
        assert_eq!(extras.logfile.as_deref(), Some(base.join("app.log").as_path()));
        assert_eq!(extras.start_test.as_ref().unwrap()[..2], ["/bin/sh", "-c"]);
        assert_eq!(extras.start_test.as_ref().unwrap()[2], "curl -s http://localhost/ | grep -q ok");
        assert_eq!(extras.start_timeout, Duration::from_secs(120));
        assert_eq!(interactive_settings(&d.path().join("conf")), (false, Some("app>".to_owned())));
    }

    #[test]
    fn daemon_off_writes_to_the_terminal() {
        let d = dir();
        let c = load_text(d.path(), "<runner>\nprogram sleep 1\ndaemon off\n</runner>\n").unwrap();
        assert!(!c.daemon);
        assert_eq!(c.services[0].stdout, Output::Inherit);
        assert_eq!(interactive_settings(&d.path().join("conf")), (true, None));
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let e = errors("<runner>\n  program sleep 1\n  progam x\n  daemon maybe\n  exit-codes 0,x\n</runner>\n");
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].starts_with("D/conf:3: key \"progam\": unknown key; the valid keys are: program, socket-name"));
        assert_eq!(e[1], "D/conf:4: key \"daemon\": expected on, off, true, false, yes or no, found \"maybe\"");
        assert!(e[2].starts_with("D/conf:5: key \"exit-codes\": expected exit codes"), "{e:?}");
    }

    #[test]
    fn errors_found_by_the_toml_reader_point_at_the_zdaemon_line() {
        let e = errors("<runner>\n  program sleep 1\n  user no-such-user-xyz\n</runner>\n");
        assert_eq!(e, ["D/conf:3: key \"user\": expected an existing user, found \"no-such-user-xyz\": no such user"]);
        let e = errors("<runner>\n  program sleep 1\n  backoff-limit 0\n  forever on\n</runner>\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("D/conf:4: key \"forever\": with forever = true, backoff_limit"), "{e:?}");
    }

    #[test]
    fn syntax_errors() {
        let e = errors("<runner>\n  program sleep 1\n");
        assert_eq!(e, ["D/conf:1: <runner> is not closed (missing </runner>)"]);
        let e = errors("<runner>\n  program sleep 1\n</environment>\n</runner>\n<supervisor>\n</supervisor>\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[0], "D/conf:3: </environment> does not close <runner> (opened at line 1)");
        assert!(e[1].starts_with("D/conf:5: unknown section <supervisor>; the valid sections are"), "{e:?}");
        let e = errors("<runner>\n  program $NOPE\n</runner>\n");
        assert_eq!(e, ["D/conf:2: key \"program\": $NOPE is not defined (define it with %define NOPE VALUE)"]);
        let e = errors("<runner>\n  program = sleep 1\n</runner>\n");
        assert_eq!(e, ["D/conf:2: key \"program\": ZConfig has no \"=\": write \"program sleep 1\""]);
        let e = errors("<runner>\n  daemon = off\n  program sleep 1\n  program sleep 2\n</runner>\n%include x.conf\n");
        assert_eq!(e.len(), 3, "{e:?}");
        assert_eq!(e[0], "D/conf:2: key \"daemon\": ZConfig has no \"=\": write \"daemon off\"");
        assert_eq!(e[1], "D/conf:4: key \"program\": repeated key (first set at line 3)");
        assert!(e[2].starts_with("D/conf:6: %include is not supported"), "{e:?}");
        let e = errors("<runner>\n</runner>\n");
        assert_eq!(e, ["D/conf:1: key \"program\": missing required key (the program and its arguments)"]);
        let e = errors("<environment>\nA b\n</environment>\n");
        assert_eq!(e, ["D/conf: no <runner> section (zdaemon's settings, with at least program)"]);
    }

    #[test]
    fn substitutions() {
        let d: BTreeMap<String, String> = [("a".to_owned(), "x".to_owned())].into();
        assert_eq!(substitute("$a/${A}/$$/b", &d).unwrap(), "x/x/$/b");
        assert!(substitute("$", &d).is_err());
        assert!(substitute("${a", &d).is_err());
        assert_eq!(interval("90").unwrap(), 90);
        assert_eq!(interval("2M").unwrap(), 120);
        assert!(interval("soon").is_err());
        assert_eq!(exit_codes(" ").unwrap(), Vec::<u8>::new());
        assert_eq!(octal("022").unwrap(), 0o22);
        assert!(octal("9").is_err());
    }

    #[test]
    fn converted_toml_loads_back_to_the_same_config() {
        let d = dir();
        let text = "<runner>\n  program sleep\n  socket-name /tmp/demo.zdsock\n  transcript log\n  logfile log\n  \
                    user root\n  umask 077\n  directory /tmp\n  stop-timeout 5\n  start-test-program true\n</runner>\n\
                    <environment>\n  LD_LIBRARY_PATH /home/foo/lib\n  weird\\\"name x\n</environment>\n\
                    <eventlog>\n  <logfile>\n    path STDERR\n    level warn\n  </logfile>\n</eventlog>\n";
        let path = d.path().join("zd.conf");
        std::fs::write(&path, text).unwrap();
        let original = Config::load(&path).unwrap();
        let toml = to_toml(&path, text).unwrap();
        let other = d.path().join("sub");
        std::fs::create_dir(&other).unwrap();
        let converted_path = other.join("converted.toml");
        std::fs::write(&converted_path, &toml).unwrap();
        let converted = Config::load(&converted_path).unwrap();
        assert_eq!(converted.flavour, Flavour::Toml);
        let same = Config { path: original.path.clone(), flavour: original.flavour, ..converted };
        assert_eq!(same, original, "{toml}");
    }

    #[test]
    fn command_line_options() {
        let d = dir();
        let path = d.path().join("conf");
        std::fs::write(&path, "<runner>\n  program sleep\n</runner>\n").unwrap();
        let o = Overrides { args: vec!["100".into()], socket: Some(d.path().join("s")), ..Overrides::default() };
        let c = load_with(Some(&path), o.clone()).unwrap();
        assert_eq!(c.services[0].command.argv(), ["sleep", "100"]);
        assert_eq!(c.socket_path(), d.path().join("s"));
        assert_eq!(c.reread().unwrap(), c);
        let p = Overrides { program: Some("echo  a b".into()), ..o };
        let c = load_with(Some(&path), p).unwrap();
        assert_eq!(c.services[0].command.argv(), ["echo", "a", "b", "100"]);
        let adhoc =
            Overrides { program: Some("sleep 5".into()), socket: Some(d.path().join("zdsock")), ..Default::default() };
        let c = load_with(None, adhoc.clone()).unwrap();
        assert!(c.overrides.no_file && c.is_zdaemon());
        assert_eq!(c.name, format!("zdaemon-{}", short_hash(d.path().join("zdsock").as_os_str())));
        assert_eq!(c.services[0].command.argv(), ["sleep", "5"]);
        assert_eq!(c.reread().unwrap(), c);
        assert_eq!(c.overrides.to_args()[..2], ["--program", "sleep 5"]);
        let toml = d.path().join("t.toml");
        std::fs::write(&toml, "[service.a]\ncommand = \"sleep 1\"\n").unwrap();
        let e = load_with(Some(&toml), adhoc).unwrap_err();
        assert!(e.to_string().contains("-p (--program) applies to the program of a zdaemon configuration"), "{e}");
    }
}
