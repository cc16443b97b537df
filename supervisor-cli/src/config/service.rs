//! Validation of one `[service.NAME]` table into a [`Service`].

use std::ops::Range;
use std::time::Duration;

use nix::unistd::{Group, Uid, User};
use supervisor_core::{parse_signal, Command, Expected, Output, RestartMode, Service, Signal};
use toml::de::{DeTable, DeValue};

use super::check::{integer_value, Raw, Scope};

/// The keys of a service table.
pub(super) const SERVICE_KEYS: &[&str] = &[
    "command",
    "shell",
    "directory",
    "env",
    "clear_env",
    "umask",
    "user",
    "group",
    "expected",
    "restart",
    "exit_codes",
    "min_uptime",
    "backoff_limit",
    "forever",
    "stop_signal",
    "stop_timeout",
    "stdout",
    "stderr",
];

/// Reads the table of service `name` (whose key is at `name_span`).
///
/// Every problem is recorded in `s`; the service comes back whenever its
/// command could be read, so that the caller decides by the error count.
pub(super) fn read_service(
    s: &mut Scope<'_, '_>,
    name: &str,
    name_span: Range<usize>,
    table: &DeTable<'_>,
) -> Option<Service> {
    let f = s.fields(table, SERVICE_KEYS);
    let shell = f.get("shell").and_then(|v| s.boolean("shell", v)).unwrap_or(false);
    let command = match f.get("command") {
        Some(v) => command(s, v, shell),
        None => {
            s.error(name_span, Some("command"), "missing required key (a command line or an array of arguments)");
            None
        }
    };
    let has_command = command.is_some();
    let mut svc = Service::new(name, command.unwrap_or(Command::Argv(Vec::new())));

    if let Some(v) = f.get("directory") {
        svc.directory = s.path("directory", v);
    }
    if let Some(v) = f.get("env") {
        env(s, v, &mut svc);
    }
    if let Some(v) = f.get("clear_env") {
        svc.env.clear = s.boolean("clear_env", v).unwrap_or(false);
    }
    if let Some(v) = f.get("umask") {
        svc.umask = umask(s, v);
    }
    if let Some(v) = f.get("user") {
        svc.user = user_or_group(s, "user", v);
    }
    if let Some(v) = f.get("group") {
        svc.group = user_or_group(s, "group", v);
    }
    if let Some(v) = f.get("expected") {
        let options = [("running", Expected::Running), ("stopped", Expected::Stopped)];
        svc.expected = s.choice("expected", v, &options).unwrap_or_default();
    }
    if let Some(v) = f.get("restart") {
        let options =
            [("always", RestartMode::Always), ("on-failure", RestartMode::OnFailure), ("never", RestartMode::Never)];
        svc.restart.mode = s.choice("restart", v, &options).unwrap_or_default();
    }
    if let Some(v) = f.get("exit_codes") {
        for code in s.array("exit_codes", v).unwrap_or_default() {
            if let Some(n) = s.integer("exit_codes", code, 0..256, "an exit code from 0 to 255") {
                svc.restart.exit_codes.push(n as i32);
            }
        }
    }
    let durations: [(&str, &mut Duration); 3] = [
        ("min_uptime", &mut svc.restart.min_uptime),
        ("backoff_limit", &mut svc.restart.backoff_limit),
        ("stop_timeout", &mut svc.stop_timeout),
    ];
    for (key, slot) in durations {
        if let Some(d) = f.get(key).and_then(|v| s.duration(key, v)) {
            *slot = d;
        }
    }
    if let Some(v) = f.get("forever") {
        svc.restart.forever = s.boolean("forever", v).unwrap_or(false);
        if svc.restart.forever && svc.restart.backoff_limit.is_zero() {
            let message = "with forever = true, backoff_limit must be more than zero (or quick failures loop hot)";
            s.error(v.span(), Some("forever"), message);
        }
    }
    if let Some(v) = f.get("stop_signal") {
        svc.stop_signal = signal(s, v).unwrap_or(Signal::SIGTERM);
    }
    if let Some(v) = f.get("stdout") {
        svc.stdout = output(s, "stdout", v);
    }
    if let Some(v) = f.get("stderr") {
        svc.stderr = output(s, "stderr", v);
    }
    has_command.then_some(svc)
}

/// `command`: a string split into words, a string for `sh -c`, or an
/// array of strings.
fn command(s: &mut Scope<'_, '_>, v: &Raw<'_>, shell: bool) -> Option<Command> {
    match v.get_ref() {
        DeValue::String(line) if shell => {
            if line.trim().is_empty() {
                s.mismatch("command", v, "a non-empty shell command line");
                return None;
            }
            Some(Command::Shell(line.to_string()))
        }
        _ if shell => {
            s.mismatch("command", v, "a string (with shell = true the command is one line for /bin/sh -c)");
            None
        }
        DeValue::String(line) => match Command::parse(line) {
            Ok(c) => Some(c),
            Err(e) => {
                let message = format!("expected a command line, found {line:?}, which cannot be split into words: {e}");
                s.error(v.span(), Some("command"), message);
                None
            }
        },
        DeValue::Array(items) => {
            const EXPECTED: &str = "a command line or a non-empty array of strings";
            if items.is_empty() {
                s.mismatch("command", v, EXPECTED);
                return None;
            }
            let mut argv = Vec::with_capacity(items.len());
            for item in items.iter() {
                match item.get_ref() {
                    DeValue::String(a) if a.contains('\0') => s.mismatch("command", item, "a string without NUL"),
                    DeValue::String(a) => argv.push(a.to_string()),
                    _ => s.mismatch("command", item, "a string (each argument is one string)"),
                }
            }
            if argv.first().is_some_and(|p| p.is_empty()) {
                s.mismatch("command", &items[0], "a program name or path as the first element");
                return None;
            }
            (argv.len() == items.len()).then_some(Command::Argv(argv))
        }
        _ => {
            s.mismatch("command", v, "a command line or a non-empty array of strings");
            None
        }
    }
}

/// `env`: a table of variables whose values are strings, numbers or
/// booleans.
fn env(s: &mut Scope<'_, '_>, v: &Raw<'_>, svc: &mut Service) {
    let Some(table) = s.table("env", v) else { return };
    for (name, value) in table.iter() {
        let name_text = name.get_ref().as_ref();
        if name_text.is_empty() || name_text.contains(['=', '\0']) {
            let message = format!("invalid variable name {name_text:?}: it must be non-empty, without \"=\" or NUL");
            s.error(name.span(), Some("env"), message);
            continue;
        }
        let text = match value.get_ref() {
            DeValue::String(t) if !t.contains('\0') => Some(t.to_string()),
            DeValue::Integer(i) => integer_value(i).map(|n| n.to_string()),
            DeValue::Float(x) => Some(x.as_str().to_owned()),
            DeValue::Boolean(b) => Some(b.to_string()),
            _ => None,
        };
        match text {
            Some(t) => {
                svc.env.vars.insert(name_text.to_owned(), t);
            }
            None => {
                let expected = format!("a string, number or boolean for variable {name_text:?}");
                s.mismatch("env", value, &expected);
            }
        }
    }
}

/// `umask`: an octal string (`"022"`) or an octal integer (`0o022`).
fn umask(s: &mut Scope<'_, '_>, v: &Raw<'_>) -> Option<u32> {
    const EXPECTED: &str =
        "an octal umask from \"000\" to \"777\" (a string such as \"022\" or an integer such as 0o022)";
    let value = match v.get_ref() {
        DeValue::String(t) if !t.is_empty() && t.chars().all(|c| ('0'..='7').contains(&c)) => {
            u32::from_str_radix(t, 8).ok()
        }
        DeValue::Integer(i) if i.radix() == 8 || integer_value(i) == Some(0) => {
            integer_value(i).and_then(|n| u32::try_from(n).ok())
        }
        DeValue::Integer(i) if i.radix() == 10 && integer_value(i).is_some_and(|n| n > 0) => {
            let message = format!("expected {EXPECTED}, found the decimal integer {i} (write \"{i:0>3}\" or 0o{i})");
            s.error(v.span(), Some("umask"), message);
            return None;
        }
        _ => None,
    };
    match value {
        Some(m) if m <= 0o777 => Some(m),
        _ => {
            s.mismatch("umask", v, EXPECTED);
            None
        }
    }
}

/// `user` or `group`: a name or a number, which must exist.
fn user_or_group(s: &mut Scope<'_, '_>, key: &str, v: &Raw<'_>) -> Option<String> {
    let expected = format!("a {key} name or a numeric id");
    let spec = match v.get_ref() {
        DeValue::String(t) if !t.is_empty() && !t.contains('\0') => t.to_string(),
        DeValue::Integer(i) => match integer_value(i).and_then(|n| u32::try_from(n).ok()) {
            Some(n) => n.to_string(),
            None => {
                s.mismatch(key, v, &expected);
                return None;
            }
        },
        _ => {
            s.mismatch(key, v, &expected);
            return None;
        }
    };
    let numeric = spec.parse::<u32>().ok();
    // A numeric group is used as it is; a numeric user needs an entry, as
    // the spawner takes its primary group and home from it.
    let lookup = match (key, numeric) {
        ("group", Some(_)) => Ok(true),
        ("group", None) => Group::from_name(&spec).map(|g| g.is_some()),
        (_, Some(n)) => User::from_uid(Uid::from_raw(n)).map(|u| u.is_some()),
        (_, None) => User::from_name(&spec).map(|u| u.is_some()),
    };
    match lookup {
        Ok(true) => Some(spec),
        Ok(false) => {
            s.error(v.span(), Some(key), format!("expected an existing {key}, found {spec:?}: no such {key}"));
            None
        }
        Err(e) => {
            s.error(v.span(), Some(key), format!("cannot look up {key} {spec:?}: {e}"));
            None
        }
    }
}

/// `stop_signal`: a name such as `"TERM"` or `"SIGTERM"`, or a number.
fn signal(s: &mut Scope<'_, '_>, v: &Raw<'_>) -> Option<Signal> {
    let parsed = match v.get_ref() {
        DeValue::String(t) => parse_signal(t).ok(),
        DeValue::Integer(i) => integer_value(i).and_then(|n| parse_signal(&n.to_string()).ok()),
        _ => None,
    };
    if parsed.is_none() {
        s.mismatch("stop_signal", v, "a signal name such as \"TERM\" or \"SIGHUP\", or a signal number");
    }
    parsed
}

/// `stdout` or `stderr`: `"inherit"`, `"null"` or a file path.
fn output(s: &mut Scope<'_, '_>, key: &str, v: &Raw<'_>) -> Output {
    match v.get_ref() {
        DeValue::String(t) if t == "inherit" => Output::Inherit,
        DeValue::String(t) if t == "null" => Output::Null,
        DeValue::String(t) if !t.is_empty() => s.path(key, v).map_or(Output::Inherit, Output::File),
        _ => {
            s.mismatch(key, v, "\"inherit\", \"null\" or a file path");
            Output::Inherit
        }
    }
}
