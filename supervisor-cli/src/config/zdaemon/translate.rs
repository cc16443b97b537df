//! zdaemon's schema (`<runner>`, `<environment>`, `<eventlog>`), checked,
//! and its translation to the TOML schema, with the mapping of the errors
//! found in the TOML text back to the lines and keys of the zdaemon file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::syntax::{parse_tree, At, Entry, Errors, Section};
use super::{program_words, short_hash, PROGRAM, RUNNER_KEYS};
use crate::config::check::{resolve, valid_name};
use crate::config::{base_dir, default_runtime_dir, ConfigErrors};

/// The keys of a runner that older zdaemons needed and that mean nothing
/// here: accepted and ignored.
const IGNORED_KEYS: &[&str] = &["hang-around", "python", "zdrun"];

/// The sections of a zdaemon file.
const TOP_SECTIONS: &[&str] = &["runner", "environment", "eventlog"];

/// The keys of `<eventlog>` and of its `<logfile>` sections.
const EVENTLOG_KEYS: &[&str] = &["level"];
const LOGFILE_KEYS: &[&str] = &["path", "level"];

// ---------------------------------------------------------------------------
// zdaemon's schema.

/// What a zdaemon file says, checked.
#[derive(Debug, Default)]
#[allow(clippy::struct_field_names)] // `runner_line`: the line of `<runner>` itself
pub(super) struct Runner {
    pub(super) runner_line: usize,
    pub(super) program: Option<At<Vec<String>>>,
    pub(super) socket: Option<At<PathBuf>>,
    pub(super) daemon: Option<At<bool>>,
    pub(super) directory: Option<At<PathBuf>>,
    pub(super) backoff_limit: Option<At<u64>>,
    pub(super) forever: Option<At<bool>>,
    pub(super) exit_codes: Option<At<Vec<u8>>>,
    pub(super) user: Option<At<String>>,
    pub(super) umask: Option<At<u32>>,
    pub(super) transcript: Option<At<PathBuf>>,
    pub(super) logfile: Option<At<PathBuf>>,
    pub(super) start_test: Option<At<String>>,
    pub(super) start_timeout: Option<At<u64>>,
    pub(super) stop_timeout: Option<At<u64>>,
    pub(super) default_to_interactive: Option<At<bool>>,
    pub(super) prompt: Option<At<String>>,
    pub(super) ignored: Vec<At<(String, String)>>,
    pub(super) environment_line: usize,
    pub(super) env: Vec<At<(String, String)>>,
    pub(super) log_level: Option<At<&'static str>>,
    pub(super) event_log: Vec<At<String>>,
}

/// `ZConfig`'s `boolean`.
fn boolean(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("expected on, off, true, false, yes or no, found {v:?}")),
    }
}

/// `ZConfig`'s `integer`, at least zero.
fn count(v: &str) -> Result<u64, String> {
    v.parse().map_err(|_| format!("expected a whole number of seconds, found {v:?}"))
}

/// `ZConfig`'s `time-interval`: a number of seconds, optionally with a unit
/// `s`, `m`, `h` or `d`.
pub(super) fn interval(v: &str) -> Result<u64, String> {
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
pub(super) fn exit_codes(v: &str) -> Result<Vec<u8>, String> {
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
pub(super) fn octal(v: &str) -> Result<u32, String> {
    match u32::from_str_radix(v, 8) {
        Ok(m) if m <= 0o777 && !v.is_empty() => Ok(m),
        _ => Err(format!("expected an octal umask such as 022, found {v:?}")),
    }
}

/// A `ZConfig` logging level, as a TOML `log_level`.
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
        if let Some(first) = seen.get(&key) {
            errors.at(e.line, Some(&e.key), format!("repeated key (first set at line {first})"));
        } else {
            seen.insert(key, e.line);
            out.push(e);
        }
    }
    out
}

/// Reads and checks the file.
pub(super) fn read_runner(path: &Path, text: &str) -> Result<Runner, ConfigErrors> {
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
                        errors.at(s.line, None, format!("repeated <eventlog> (first at line {})", first.line));
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
                    r.ignored.push(At::new((ignored.to_owned(), v.to_owned()), n));
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
pub(super) struct Translation {
    pub(super) toml: String,
    origins: Vec<Origin>,
}

impl Translation {
    fn push(&mut self, text: &str, line: usize, key: Option<&'static str>) {
        self.toml.push_str(text);
        self.toml.push('\n');
        self.origins.push(Origin { line: (line > 0).then_some(line), key });
    }

    fn comment(&mut self, text: &str) {
        self.push(&crate::config::simplevisor::toml_comment(text), 0, None);
    }

    /// Maps errors about the TOML text back to the lines and keys of the
    /// zdaemon file.
    pub(super) fn remap(&self, path: &Path, errors: ConfigErrors) -> ConfigErrors {
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
    crate::config::simplevisor::toml_string(s)
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
pub(super) fn emit(
    r: &Runner,
    name: &str,
    runtime_dir: Option<&Path>,
    source: Option<&Path>,
    cwd: &Path,
) -> Translation {
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
    if let Some(d) = &r.directory {
        t.push(&format!("directory = {}", quote_path(&d.value)), d.line, Some("directory"));
    } else {
        t.comment("zdaemon ran the program where it was started; here, in the file's directory.");
        t.push(&format!("directory = {}", quote_path(cwd)), 0, None);
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

pub(super) fn translate(path: &Path, text: &str) -> Result<Translation, ConfigErrors> {
    let r = read_runner(path, text)?;
    let name = name_of(path);
    let instance = format!("{name}-{}", short_hash(identity(path).as_os_str()));
    let xdg = std::env::var_os("XDG_RUNTIME_DIR");
    let runtime_dir = default_runtime_dir(&instance, nix::unistd::geteuid().as_raw(), xdg.as_deref());
    Ok(emit(&r, &name, Some(&runtime_dir), Some(path), &base_dir(path)))
}
