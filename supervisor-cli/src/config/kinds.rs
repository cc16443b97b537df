//! The keys of loop tasks (`kind = "task"`) and external services
//! (`kind = "external"`), and the `[group.NAME]` tables.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use supervisor_core::runtime_dir;
use supervisor_core::{split_words, ExternalSpec, Group, Kind, RestartCommand, Service, Strategy, TaskSpec};
use toml::de::{DeTable, DeValue};

use super::check::{found, valid_name, Diag, Raw, Scope, NAME_RULE};
use super::simplevisor::values::unquote;

/// What `kind` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KindName {
    Daemon,
    Task,
    External,
}

impl KindName {
    fn as_str(self) -> &'static str {
        match self {
            KindName::Daemon => "daemon",
            KindName::Task => "task",
            KindName::External => "external",
        }
    }
}

/// The kinds a key of `[service.NAME]` means something for, as
/// (daemon, task, external); keys not listed are for all three.
fn kinds_of(key: &str) -> (bool, bool, bool) {
    match key {
        "exit_codes" | "min_uptime" | "backoff_limit" | "forever" | "pidfile" | "finish" | "finish_timeout"
        | "follow" | "start_test" | "start_timeout" | "ready" | "health" | "watchdog" | "critical" => {
            (true, false, false)
        }
        // A task's runs wait too; an external service's commands decide.
        "requires" | "after" => (true, true, false),
        "command" | "shell" | "stop_signal" | "stop_timeout" | "limits" | "lock" => (true, true, false),
        // A restart policy for daemons, a command for external services.
        "restart" => (true, false, true),
        "interval" | "jitter" => (false, true, false),
        "timeout" => (false, true, true),
        "control" | "start" | "stop" | "status" | "pattern" | "daemon" | "path" | "check_interval" => {
            (false, false, true)
        }
        _ => (true, true, true),
    }
}

type Fields<'v, 'i> = BTreeMap<&'static str, &'v Raw<'i>>;

/// Reads `kind` (default `daemon`).
pub(super) fn kind_of(s: &mut Scope<'_, '_>, f: &Fields<'_, '_>) -> KindName {
    let Some(v) = f.get("kind") else { return KindName::Daemon };
    let options = [("daemon", KindName::Daemon), ("task", KindName::Task), ("external", KindName::External)];
    s.choice("kind", v, &options).unwrap_or(KindName::Daemon)
}

/// Checks the keys that do not apply to the kind, and fills in
/// [`Service::kind`] from the task or external keys. Run it once
/// `runtime_dir` and `coordinate` are read (commands may use them).
pub(super) fn read_kind(
    s: &mut Scope<'_, '_>,
    f: &Fields<'_, '_>,
    kind: KindName,
    name: Range<usize>,
    svc: &mut Service,
) {
    for key in f.keys() {
        let (daemon, task, external) = kinds_of(key);
        let applies = match kind {
            KindName::Daemon => daemon,
            KindName::Task => task,
            KindName::External => external,
        };
        if !applies {
            let message = format!("`{key}` does not apply to kind = \"{}\"{}", kind.as_str(), for_which(key));
            s.error(f[key].span(), Some(key), message);
        }
    }
    match kind {
        KindName::Daemon => {}
        KindName::Task => svc.kind = Kind::Task(Box::new(task(s, f, name))),
        KindName::External => {
            if let Some(spec) = external(s, f, name, svc) {
                svc.kind = Kind::External(Box::new(spec));
            }
        }
    }
}

/// Which kinds a key is for, for the error.
fn for_which(key: &str) -> String {
    let (daemon, task, external) = kinds_of(key);
    let names: Vec<&str> = [(daemon, "daemon"), (task, "task"), (external, "external")]
        .into_iter()
        .filter_map(|(yes, name)| yes.then_some(name))
        .collect();
    match names.as_slice() {
        [] => String::new(),
        [one] => format!(" (it is for kind = \"{one}\")"),
        [a, b] => format!(" (it is for kind = \"{a}\" and kind = \"{b}\")"),
        _ => String::new(),
    }
}

fn positive(s: &mut Scope<'_, '_>, f: &Fields<'_, '_>, key: &str) -> Option<Duration> {
    let v = f.get(key)?;
    let d = s.duration(key, v)?;
    if d.is_zero() {
        s.mismatch(key, v, "a duration of more than zero");
        return None;
    }
    Some(d)
}

fn task(s: &mut Scope<'_, '_>, f: &Fields<'_, '_>, name: Range<usize>) -> TaskSpec {
    let interval = positive(s, f, "interval");
    if f.get("interval").is_none() {
        s.error(name, Some("interval"), "missing required key for kind = \"task\" (a duration such as \"5m\")");
    }
    let mut spec = TaskSpec::every(interval.unwrap_or(Duration::from_secs(60)));
    spec.timeout = positive(s, f, "timeout");
    if let Some(v) = f.get("jitter") {
        spec.jitter = s.duration("jitter", v).unwrap_or_default();
    }
    spec
}

fn external(s: &mut Scope<'_, '_>, f: &Fields<'_, '_>, name: Range<usize>, svc: &Service) -> Option<ExternalSpec> {
    let mut cmd = |key: &str| f.get(key).and_then(|v| external_command(s, key, v, svc));
    let control = cmd("control");
    let start = cmd("start");
    let stop = cmd("stop");
    let status = cmd("status");
    let restart = match f.get("restart") {
        Some(v) if matches!(v.get_ref(), DeValue::String(t) if t.trim() == "stop+start") => {
            Some(RestartCommand::StopStart)
        }
        Some(v) => external_command(s, "restart", v, svc).map(RestartCommand::Run),
        None => None,
    };
    let mut spec = ExternalSpec::start(Vec::new());
    spec.control = control;
    spec.start = start;
    spec.stop = stop;
    spec.status = status;
    spec.restart = restart;
    if let Some(v) = f.get("pattern") {
        spec.pattern = s.string("pattern", v).map(str::to_owned);
    }
    if let Some(v) = f.get("path") {
        spec.path = s.string("path", v).map(str::to_owned);
    }
    spec.timeout = positive(s, f, "timeout").unwrap_or(spec.timeout);
    spec.check_interval = positive(s, f, "check_interval").unwrap_or(spec.check_interval);
    if spec.control.is_none() && spec.start.is_none() {
        if f.get("start").is_none() && f.get("control").is_none() {
            s.error(name, None, "an external service needs `start` or `control`");
        }
        return None;
    }
    if let Some(v) = f.get("daemon") {
        if let Some(pidfile) = s.path("daemon", v) {
            if spec.control.is_none() {
                daemonized(&mut spec, &pidfile);
            }
        }
    }
    if let Err(e) = spec.validate() {
        let (key, span) = match f.get("pattern") {
            Some(v) => (Some("pattern"), v.span()),
            None => (None, name),
        };
        s.error(span, key, e);
        return None;
    }
    Some(spec)
}

/// `daemon = PIDFILE`: the start command runs daemonized by this tool with
/// that pidfile; stop and status go through the pidfile (simplevisor's
/// `simplevisor-loop --daemon`).
fn daemonized(spec: &mut ExternalSpec, pidfile: &Path) {
    let exe = crate::cli_binary().display().to_string();
    let base = |extra: &[&str]| {
        let mut v = vec![exe.clone(), "daemonize".into(), "--pidfile".into(), pidfile.display().to_string()];
        v.extend(extra.iter().map(std::string::ToString::to_string));
        v
    };
    let timeout = format!("{}s", spec.timeout.as_secs().saturating_sub(1).max(1));
    let mut start = base(&["--"]);
    start.extend(spec.start.take().unwrap_or_default());
    spec.start = Some(start);
    spec.stop = Some(base(&["--stop", "--timeout", &timeout]));
    spec.status = Some(base(&["--status"]));
}

/// An external service's command: a string split into words like a shell
/// does, each word then `%XX`-unquoted (simplevisor), or an array taken
/// literally. Placeholders are expanded.
fn external_command(s: &mut Scope<'_, '_>, key: &str, v: &Raw<'_>, svc: &Service) -> Option<Vec<String>> {
    let argv = match v.get_ref() {
        DeValue::String(line) => match split_words(line) {
            Ok(words) if !words.is_empty() => words.iter().map(|w| unquote(w)).collect(),
            Ok(_) => {
                s.mismatch(key, v, "a non-empty command line");
                return None;
            }
            Err(e) => {
                s.error(v.span(), Some(key), format!("cannot split the command line: {e}"));
                return None;
            }
        },
        DeValue::Array(items) => {
            let mut argv = Vec::new();
            for item in items {
                match item.get_ref() {
                    DeValue::String(t) => argv.push(t.to_string()),
                    other => {
                        s.error(item.span(), Some(key), format!("expected a string, found {}", found(other)));
                        return None;
                    }
                }
            }
            if argv.is_empty() {
                s.mismatch(key, v, "a non-empty array of arguments");
                return None;
            }
            argv
        }
        _ => {
            s.mismatch(key, v, "a command line or an array of arguments");
            return None;
        }
    };
    // Placeholders are expanded only for services that use them (with
    // `runtime_dir` or `coordinate`), as in `command`.
    if !runtime_dir::uses_placeholders(svc) {
        return Some(argv);
    }
    match runtime_dir::expand_argv(&argv, svc) {
        Ok(a) => Some(a),
        Err(e) => {
            s.error(v.span(), Some(key), format!("cannot expand the placeholders: {e}"));
            None
        }
    }
}

/// Reads the `[group.NAME]` tables; `services` are the names of the
/// services that were read.
pub(super) fn read_groups(diag: &mut Diag<'_>, base: &Path, v: &Raw<'_>, services: &HashSet<&str>) -> Vec<Group> {
    let entries = super::check::tables_in_order(diag, "group", "[group.web]", v);
    let mut groups = Vec::new();
    let mut member_of: HashMap<String, String> = HashMap::new();
    for (key, value) in entries {
        let name = key.get_ref().as_ref();
        let mut s = Scope { diag: &mut *diag, service: None, base };
        let what = format!("group.{name}");
        if !valid_name(name) {
            s.error(key.span(), Some(&what), format!("invalid group name: use {NAME_RULE}"));
        }
        if services.contains(name) {
            // `start NAME` must mean one thing.
            s.error(
                key.span(),
                Some(&what),
                format!("a service is named {name:?} too: a group needs a name of its own"),
            );
        }
        let DeValue::Table(t) = value.get_ref() else {
            let message = format!("expected a table such as [group.{name}], found {}", found(value.get_ref()));
            s.error(value.span(), Some(&what), message);
            continue;
        };
        if let Some(g) = read_group(&mut s, name, key.span(), t, services, &mut member_of) {
            groups.push(g);
        }
    }
    groups
}

fn read_group(
    s: &mut Scope<'_, '_>,
    name: &str,
    span: Range<usize>,
    t: &DeTable<'_>,
    services: &HashSet<&str>,
    member_of: &mut HashMap<String, String>,
) -> Option<Group> {
    let prefix = format!("group.{name}");
    let f = s.fields_in(Some(&prefix), t, &["services", "strategy"]);
    let key = |k: &str| format!("{prefix}.{k}");
    let strategy = match f.get("strategy") {
        Some(v) => {
            let options = [
                ("one_for_one", Strategy::OneForOne),
                ("one_for_all", Strategy::OneForAll),
                ("rest_for_one", Strategy::RestForOne),
            ];
            s.choice(&key("strategy"), v, &options).unwrap_or_default()
        }
        None => Strategy::OneForOne,
    };
    let Some(v) = f.get("services") else {
        s.error(span, Some(&key("services")), "missing required key (the member services, in start order)");
        return None;
    };
    let items = s.array(&key("services"), v)?;
    let mut members = Vec::new();
    for item in items {
        let DeValue::String(m) = item.get_ref() else {
            s.error(
                item.span(),
                Some(&key("services")),
                format!("expected a service name, found {}", found(item.get_ref())),
            );
            continue;
        };
        let m = m.to_string();
        if !services.contains(m.as_str()) {
            s.error(item.span(), Some(&key("services")), format!("no service named {m:?}"));
            continue;
        }
        if members.contains(&m) {
            s.error(item.span(), Some(&key("services")), format!("{m:?} is listed twice"));
            continue;
        }
        if let Some(other) = member_of.get(&m) {
            s.error(item.span(), Some(&key("services")), format!("{m:?} is already a member of group {other:?}"));
            continue;
        }
        member_of.insert(m.clone(), name.to_string());
        members.push(m);
    }
    if members.is_empty() {
        s.error(v.span(), Some(&key("services")), "a group needs at least one member");
        return None;
    }
    Some(Group::new(name, members, strategy))
}
