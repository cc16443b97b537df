//! The conversion of simplevisor's entries, once read, to our services and
//! groups, and the TOML written for them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::syntax::Block;
use super::values::{parse_int, toml_key, words};
use super::{error_at, toml_comment, toml_string, Pos};
use crate::config::check::{valid_name, NAME_RULE};
use crate::config::ConfigError;

/// simplevisor's interval between supervision cycles when none is given,
/// in seconds: the `check_interval` of every service.
const DEFAULT_INTERVAL: u64 = 60;
/// The longest duration our configuration accepts, in seconds.
const MAX_SECONDS: u64 = 365 * 24 * 3600;

/// The keys of the `<simplevisor>` block (besides `var_*` variables).
const GLOBAL_KEYS: &[&str] =
    &["interval", "loglevel", "log", "logfile", "logname", "pidfile", "store", "daemon", "conftype", "command", "path"];
/// The keys of a `type = service` entry (besides `var_*` variables).
const SERVICE_KEYS: &[&str] = &[
    "type", "name", "control", "start", "stop", "status", "restart", "pattern", "daemon", "path", "timeout",
    "expected", "logname",
];
/// The keys of a `type = supervisor` entry (besides `var_*` variables and
/// the `<children>` block).
const SUPERVISOR_KEYS: &[&str] = &["type", "name", "strategy", "expected", "window", "adjustments", "logname"];
/// simplevisor's restart strategies, which are also ours.
const STRATEGIES: &[&str] = &["one_for_one", "one_for_all", "rest_for_one"];

// ---------------------------------------------------------------------
// Converting: simplevisor's entries to our services and groups.

/// A value of a converted service.
enum Value {
    Bool(bool),
    Str(String),
    Words(Vec<String>),
}

/// A `type = service` entry, converted.
struct Service {
    name: String,
    at: Pos,
    values: Vec<(&'static str, Value)>,
    notes: Vec<String>,
}

/// A `type = supervisor` entry, converted.
struct Group {
    name: String,
    at: Pos,
    services: Vec<String>,
    strategy: String,
    notes: Vec<String>,
}

/// What an entry became, for its parent.
enum Child {
    Service,
    Supervisor(String),
}

/// The `<simplevisor>` options that have a place in our TOML, and notes
/// for those that do not.
#[derive(Default)]
struct Globals {
    interval: Option<u64>,
    log_level: Option<&'static str>,
    notes: Vec<String>,
}

pub(super) struct Converter<'f> {
    files: &'f [PathBuf],
    pub(super) errors: Vec<ConfigError>,
    globals: Globals,
    services: Vec<Service>,
    groups: Vec<Group>,
}

/// The options of one block, checked: known keys, each once, with a value.
type Fields<'b> = HashMap<&'b str, (&'b str, Pos)>;

impl<'f> Converter<'f> {
    pub(super) fn new(files: &'f [PathBuf]) -> Self {
        Converter { files, errors: Vec::new(), globals: Globals::default(), services: Vec::new(), groups: Vec::new() }
    }

    fn error(&mut self, at: Pos, service: Option<&str>, key: Option<&str>, message: impl Into<String>) {
        let e = error_at(self.files, at, service, key, message);
        self.errors.push(e);
    }

    /// The file as a whole: `var_*` variables, one optional `<simplevisor>`
    /// block and `<entry>` blocks.
    pub(super) fn root(&mut self, path: &Path, root: &Block) {
        for opt in root.opts.iter().filter(|o| !o.key.starts_with("var_")) {
            let message = "unknown key outside any block: a simplevisor file holds a <simplevisor> block, <entry> \
                           blocks and var_* variables";
            self.error(opt.at, None, Some(&opt.key), message);
        }
        let mut globals: Option<&Block> = None;
        let mut entries = Vec::new();
        for b in &root.blocks {
            match b.name.as_str() {
                "simplevisor" => match globals {
                    Some(first) => {
                        let message = format!("a second <simplevisor> block (the first is at line {})", first.at.line);
                        self.error(b.at, None, Some("<simplevisor>"), message);
                    }
                    None => globals = Some(b),
                },
                "entry" => entries.push(b),
                other => {
                    let message = format!(
                        "unknown block <{other}>: the blocks of a simplevisor file are <simplevisor> and <entry>"
                    );
                    self.error(b.at, None, Some(&format!("<{other}>")), message);
                }
            }
        }
        if let Some(g) = globals {
            self.globals(g);
        }
        if entries.is_empty() {
            let at = Pos { file: 0, line: 1, column: 1 };
            self.error(at, None, None, "no <entry> block: there is nothing to supervise");
        }
        for e in entries {
            self.entry(e, None);
        }
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        if !valid_name(&stem) {
            let message = format!(
                "the supervisor's name is the file's name without its extension, {stem:?}, which is not a valid \
                 name ({NAME_RULE}): rename the file"
            );
            self.errors.push(ConfigError::new(path, message));
        }
        self.errors.sort_by_key(|e| (e.path != self.files[0], e.path.clone(), e.line, e.column));
    }

    /// Checks the options of `block` against `known`: an unknown key (other
    /// than `var_*`), a repeated key or a key without a value is an error.
    fn fields<'b>(&mut self, block: &'b Block, known: &[&str], what: &str, service: Option<&str>) -> Fields<'b> {
        let mut fields = Fields::new();
        for opt in &block.opts {
            let key = opt.key.as_str();
            if key.starts_with("var_") {
                continue;
            }
            if !known.contains(&key) {
                let message =
                    format!("unknown key; the keys of {what} are: {} (and var_* variables)", known.join(", "));
                self.error(opt.at, service, Some(key), message);
                continue;
            }
            let Some(value) = opt.value.as_deref().filter(|v| !v.trim().is_empty()) else {
                self.error(opt.at, service, Some(key), "the key has no value");
                continue;
            };
            if let Some((_, first)) = fields.get(key) {
                let message = format!("the key is given twice (first at line {})", first.line);
                self.error(opt.at, service, Some(key), message);
                continue;
            }
            fields.insert(key, (value, opt.at));
        }
        fields
    }

    /// A whole number of seconds, at least 1, as simplevisor's `int()`
    /// reads it.
    fn seconds(&mut self, (value, at): (&str, Pos), service: Option<&str>, key: &str) -> Option<u64> {
        match parse_int(value) {
            Some(n) if (1..=i128::from(MAX_SECONDS)).contains(&n) => Some(n as u64),
            _ => {
                let message = format!("expected a whole number of seconds from 1 to {MAX_SECONDS}, found {value:?}");
                self.error(at, service, Some(key), message);
                None
            }
        }
    }

    /// The `<simplevisor>` block.
    fn globals(&mut self, block: &Block) {
        for b in &block.blocks {
            let message = "<simplevisor> holds options only, no blocks";
            self.error(b.at, None, Some(&format!("<{}>", b.name)), message);
        }
        let f = self.fields(block, GLOBAL_KEYS, "<simplevisor>", None);
        let mut notes = Vec::new();
        if let Some(&v) = f.get("interval") {
            self.globals.interval = self.seconds(v, None, "interval");
        }
        if let Some(&(value, at)) = f.get("loglevel") {
            let level = match value.to_ascii_lowercase().as_str() {
                "debug" => Some("debug"),
                "info" => Some("info"),
                "warning" | "warn" => Some("warning"),
                "error" => Some("error"),
                "critical" => {
                    notes.push("simplevisor loglevel = critical: the closest level is error".to_owned());
                    Some("error")
                }
                _ => {
                    let message = format!("expected one of debug, info, warning, error, critical, found {value:?}");
                    self.error(at, None, Some("loglevel"), message);
                    None
                }
            };
            self.globals.log_level = level;
        }
        if let Some(&(value, at)) = f.get("conftype") {
            if value != "apache" {
                let message = format!(
                    "only the \"apache\" format (this one) can be read, found {value:?}; use `supervisor convert` \
                     on the simplevisor file in the Apache format"
                );
                self.error(at, None, Some("conftype"), message);
            }
        }
        for key in ["command", "path"] {
            if let Some(&(_, at)) = f.get(key) {
                let message = format!(
                    "{key} is an argument of the simplevisor command, not a setting: give the command to \
                     `supervisor` (see docs/migrating.md)"
                );
                self.error(at, None, Some(key), message);
            }
        }
        let unmapped = [
            ("pidfile", "the supervisor's pidfile is RUNTIME_DIR/run/supervisor.pid"),
            ("store", "the services' states are kept in RUNTIME_DIR/run/state.json"),
            ("log", "the supervisor logs to RUNTIME_DIR/log/supervisor.log (and to stderr under `supervisor run`)"),
            ("logfile", "the supervisor's log is RUNTIME_DIR/log/supervisor.log"),
            ("logname", "log lines are tagged with the supervisor's and the services' names"),
            ("daemon", "`supervisor up` detaches, `supervisor run` stays in the foreground"),
        ];
        for (key, instead) in unmapped {
            if let Some(&(value, _)) = f.get(key) {
                notes.push(format!("simplevisor {key} = {value}: not used; {instead}"));
            }
        }
        self.globals.notes = notes;
    }

    /// An `<entry>` block; `forced` is the `expected` that an enclosing
    /// supervisor imposes on it.
    fn entry(&mut self, block: &Block, forced: Option<&str>) -> Option<Child> {
        let typ = block.opts.iter().find(|o| o.key == "type").and_then(|o| o.value.as_deref());
        let name = block.opts.iter().find(|o| o.key == "name").and_then(|o| o.value.as_deref());
        match typ {
            Some("service") => self.service(block, forced),
            Some("supervisor") => self.supervisor(block, forced),
            Some(other) => {
                let at = block.opts.iter().find(|o| o.key == "type").map_or(block.at, |o| o.at);
                let message = format!("expected \"service\" or \"supervisor\", found {other:?}");
                self.error(at, name, Some("type"), message);
                None
            }
            None => {
                self.error(
                    block.at,
                    name,
                    Some("type"),
                    "the entry has no type: add type = service or type = supervisor",
                );
                None
            }
        }
    }

    /// A `type = service` entry: `[service.NAME]`.
    fn service(&mut self, block: &Block, forced: Option<&str>) -> Option<Child> {
        let name = block.opts.iter().find(|o| o.key == "name").and_then(|o| o.value.clone());
        let label = name.as_deref();
        for b in &block.blocks {
            let message = "a service entry holds options only, no blocks";
            self.error(b.at, label, Some(&format!("<{}>", b.name)), message);
        }
        let f = self.fields(block, SERVICE_KEYS, "a service entry", label);
        let Some(&(name, name_at)) = f.get("name") else {
            if !block.opts.iter().any(|o| o.key == "name") {
                self.error(block.at, None, Some("name"), "the service entry has no name");
            }
            return None;
        };
        let ok_name = self.check_name(name, name_at, "service");
        let mut values: Vec<(&'static str, Value)> = vec![("kind", Value::Str("external".to_owned()))];
        for key in ["control", "start", "stop", "status", "restart"] {
            let Some(&(value, _)) = f.get(key) else { continue };
            if key == "restart" && value == "stop+start" {
                values.push((key, Value::Str(value.to_owned())));
            } else {
                values.push((key, Value::Words(words(value))));
            }
        }
        for key in ["pattern", "daemon", "path"] {
            if let Some(&(value, _)) = f.get(key) {
                values.push((key, Value::Str(value.to_owned())));
            }
        }
        if f.contains_key("path") {
            // simplevisor runs the commands with PATH as their only
            // environment variable when path is set.
            values.push(("clear_env", Value::Bool(true)));
        }
        if let Some(&v) = f.get("timeout") {
            if let Some(n) = self.seconds(v, Some(name), "timeout") {
                values.push(("timeout", Value::Str(format!("{n}s"))));
            }
        }
        let own = match f.get("expected") {
            Some(&(value, at)) if value != "running" && value != "stopped" => {
                let message = format!("expected \"running\" or \"stopped\", found {value:?}");
                self.error(at, Some(name), Some("expected"), message);
                None
            }
            Some(&(value, _)) => Some(value),
            None => None,
        };
        if let Some(expected) = forced.or(own) {
            values.push(("expected", Value::Str(expected.to_owned())));
        }
        let interval = self.globals.interval.unwrap_or(DEFAULT_INTERVAL);
        values.push(("check_interval", Value::Str(format!("{interval}s"))));
        let mut notes = Vec::new();
        if let (Some(forced), Some(own)) = (forced, own) {
            if forced != own {
                notes
                    .push(format!("expected = {own} in the entry; an enclosing supervisor's expected = {forced} wins"));
            }
        }
        if let Some(&(value, _)) = f.get("logname") {
            notes.push(format!("simplevisor logname = {value}: not used; log lines carry the service's name"));
        }
        if !f.contains_key("start") && !f.contains_key("control") {
            self.error(block.at, Some(name), None, "the service entry needs start or control");
            return None;
        }
        for (key, value) in &values {
            if let Value::Words(w) = value {
                if w.iter().any(|w| w.contains('\0')) {
                    let at = f.get(key).map_or(block.at, |v| v.1);
                    self.error(at, Some(name), Some(key), "a word of the command holds %00, a NUL byte");
                }
            }
        }
        if ok_name {
            self.services.push(Service { name: name.to_owned(), at: block.at, values, notes });
        }
        Some(Child::Service)
    }

    /// Whether `name` can name a `kind` ("service" or "group"), and is the
    /// first of its kind with that name; reports it when not.
    fn check_name(&mut self, name: &str, at: Pos, kind: &str) -> bool {
        let (service, label) = if kind == "service" { (Some(name), "service") } else { (None, "supervisor") };
        if !valid_name(name) {
            let message = format!("{name:?} cannot be a {label} name: use {NAME_RULE}");
            self.error(at, service, Some("name"), message);
            return false;
        }
        let first = if kind == "service" {
            self.services.iter().find(|s| s.name == name).map(|s| s.at)
        } else {
            self.groups.iter().find(|g| g.name == name).map(|g| g.at)
        };
        if let Some(first) = first {
            let message = format!(
                "a second {label} named {name:?} (the first is at {}:{}): the converted services and groups \
                 share one namespace each, whatever supervisor they were in",
                self.files[first.file].display(),
                first.line
            );
            self.error(at, service, Some("name"), message);
            return false;
        }
        true
    }

    /// A `type = supervisor` entry: `[group.NAME]`, and its children.
    #[allow(clippy::unnecessary_wraps)] // the shape of the other entry readers
    fn supervisor(&mut self, block: &Block, forced: Option<&str>) -> Option<Child> {
        let f = self.fields(block, SUPERVISOR_KEYS, "a supervisor entry", None);
        let (name, name_at) = f.get("name").copied().unwrap_or(("supervisor", block.at));
        let label = format!("supervisor {name:?}: ");
        let strategy = match f.get("strategy") {
            Some(&(value, at)) if !STRATEGIES.contains(&value) => {
                let message = format!("{label}expected one of {}, found {value:?}", STRATEGIES.join(", "));
                self.error(at, None, Some("strategy"), message);
                "one_for_one"
            }
            Some(&(value, _)) => value,
            None => "one_for_one",
        };
        let own = match f.get("expected") {
            Some(&(value, at)) => {
                let lower = value.to_ascii_lowercase();
                if let Some(v) = ["none", "running", "stopped"].into_iter().find(|v| *v == lower) {
                    v
                } else {
                    let message = format!("{label}expected \"none\", \"running\" or \"stopped\", found {value:?}");
                    self.error(at, None, Some("expected"), message);
                    "none"
                }
            }
            None => "none",
        };
        let mut notes = Vec::new();
        for key in ["window", "adjustments"] {
            if let Some(&(value, at)) = f.get(key) {
                if parse_int(value).is_none() {
                    let message = format!("{label}expected a whole number, found {value:?}");
                    self.error(at, None, Some(key), message);
                }
            }
        }
        if f.contains_key("window") || f.contains_key("adjustments") {
            let show = |key: &str, default: &str| f.get(key).map_or(default.to_owned(), |v| v.0.to_owned());
            notes.push(format!(
                "simplevisor window = {}, adjustments = {}: a supervisor that needed adjustments in more than \
                 {} of its last {} cycles stopped its children and was restarted; not mapped",
                show("window", "12"),
                show("adjustments", "3"),
                show("adjustments", "3"),
                show("window", "12")
            ));
        }
        if let Some(&(value, _)) = f.get("logname") {
            notes.push(format!("simplevisor logname = {value}: not used"));
        }
        let ok_name = self.check_name(name, name_at, "group");
        let index = self.groups.len();
        if ok_name {
            let group = Group {
                name: name.to_owned(),
                at: block.at,
                services: Vec::new(),
                strategy: strategy.to_owned(),
                notes,
            };
            self.groups.push(group);
        }

        let mut children: Option<&Block> = None;
        for b in &block.blocks {
            match (b.name.as_str(), children) {
                ("children", None) => children = Some(b),
                ("children", Some(first)) => {
                    let message = format!("{label}a second <children> block (the first is at line {})", first.at.line);
                    self.error(b.at, None, Some("<children>"), message);
                }
                (other, _) => {
                    let message =
                        format!("{label}unknown block <{other}>: a supervisor entry holds one <children> block");
                    self.error(b.at, None, Some(&format!("<{other}>")), message);
                }
            }
        }
        let entries: Vec<&Block> = match children {
            Some(c) => {
                for opt in c.opts.iter().filter(|o| !o.key.starts_with("var_")) {
                    let message = format!("{label}<children> holds <entry> blocks (and var_* variables) only");
                    self.error(opt.at, None, Some(&opt.key), message);
                }
                for b in c.blocks.iter().filter(|b| b.name != "entry") {
                    let message = format!("{label}unknown block <{}>: <children> holds <entry> blocks", b.name);
                    self.error(b.at, None, Some(&format!("<{}>", b.name)), message);
                }
                c.blocks.iter().filter(|b| b.name == "entry").collect()
            }
            None => Vec::new(),
        };
        if entries.is_empty() {
            let message = format!("{label}a supervisor needs at least one child: add <children> with <entry> blocks");
            self.error(block.at, None, Some("<children>"), message);
        }

        let inherited = forced.or((own != "none").then_some(own));
        let mut services = Vec::new();
        let mut first_service: Option<usize> = None;
        let mut nested: Vec<(usize, String, Pos)> = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let service_name = entry.opts.iter().find(|o| o.key == "name").and_then(|o| o.value.clone());
            match self.entry(entry, inherited) {
                Some(Child::Service) => {
                    first_service.get_or_insert(i);
                    services.extend(service_name);
                }
                Some(Child::Supervisor(n)) => nested.push((i, n, entry.at)),
                None => {}
            }
        }
        for (i, child, at) in nested {
            let restarted_by_sibling = match strategy {
                "one_for_all" => first_service.is_some(),
                "rest_for_one" => first_service.is_some_and(|s| s < i),
                _ => false,
            };
            if restarted_by_sibling {
                let message = format!(
                    "{label}the nested supervisor {child:?} cannot be converted: with strategy = {strategy}, {name:?} \
                     restarts {child:?}'s services when one of its own services fails, and a group cannot hold \
                     another group; use strategy = one_for_one in {name:?}, put {child:?} before {name:?}'s \
                     services with rest_for_one, or move the services into one supervisor"
                );
                self.error(at, None, Some("type"), message);
            }
        }
        if ok_name {
            let group = &mut self.groups[index];
            group.services = services;
        }
        Some(Child::Supervisor(name.to_owned()))
    }

    /// The TOML text. Every value of the simplevisor file goes into a
    /// TOML string or key, quoted, or into a comment through [`toml_comment`].
    pub(super) fn write(&self, path: &Path) -> String {
        let mut out = String::from("[supervisor]\n");
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let _ = writeln!(out, "name = {}", toml_string(&stem));
        if let Some(level) = self.globals.log_level {
            let _ = writeln!(out, "log_level = {}", toml_string(level));
        }
        for note in &self.globals.notes {
            let _ = writeln!(out, "{}", toml_comment(note));
        }
        for s in &self.services {
            let _ = writeln!(out, "\n{}", toml_comment(&format!("{}:{}", self.files[s.at.file].display(), s.at.line)));
            let _ = writeln!(out, "[service.{}]", toml_key(&s.name));
            for (key, value) in &s.values {
                let value = match value {
                    Value::Bool(b) => b.to_string(),
                    Value::Str(v) => toml_string(v),
                    Value::Words(w) => {
                        let items: Vec<String> = w.iter().map(|w| toml_string(w)).collect();
                        format!("[{}]", items.join(", "))
                    }
                };
                let _ = writeln!(out, "{key} = {value}");
            }
            for note in &s.notes {
                let _ = writeln!(out, "{}", toml_comment(note));
            }
        }
        for g in &self.groups {
            let _ = writeln!(out, "\n{}", toml_comment(&format!("{}:{}", self.files[g.at.file].display(), g.at.line)));
            if g.services.is_empty() {
                let _ = writeln!(
                    out,
                    "# supervisor {:?} has no services of its own: its nested supervisors are groups of their own",
                    g.name
                );
                for note in &g.notes {
                    let _ = writeln!(out, "{}", toml_comment(note));
                }
                continue;
            }
            let _ = writeln!(out, "[group.{}]", toml_key(&g.name));
            let items: Vec<String> = g.services.iter().map(|s| toml_string(s)).collect();
            let _ = writeln!(out, "services = [{}]", items.join(", "));
            let _ = writeln!(out, "strategy = {}", toml_string(&g.strategy));
            for note in &g.notes {
                let _ = writeln!(out, "{}", toml_comment(note));
            }
        }
        out
    }
}
