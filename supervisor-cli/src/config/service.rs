//! Validation of one `[service.NAME]` table into a [`Service`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use nix::unistd::{Group, Uid, User};
use supervisor_core::limits::UNLIMITED;
use supervisor_core::runtime_dir::{self, PlaceholderError};
use supervisor_core::{
    parse_signal, Command, Expected, Limits, Output, RestartMode, Service, Signal, Timestamps, TranscriptConfig,
};
use toml::de::{DeTable, DeValue};

use super::check::{found, integer_value, parse_size, Raw, Scope, SizeError};

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
    "transcript",
    "pidfile",
    "limits",
    "lock",
    "finish",
    "finish_timeout",
    "follow",
    "critical",
    "runtime_dir",
    "coordinate",
    "logfile",
    "start_test",
    "start_timeout",
    "kind",
    "interval",
    "timeout",
    "jitter",
    "control",
    "start",
    "stop",
    "status",
    "pattern",
    "daemon",
    "path",
    "check_interval",
    "ready",
    "health",
    "watchdog",
    "requires",
    "after",
];

/// The keys of a service's `limits` table.
pub(super) const LIMITS_KEYS: &[&str] = &["mem", "files", "procs", "cpu", "core"];

/// The keys of a service's `transcript` table.
pub(super) const TRANSCRIPT_KEYS: &[&str] = &["path", "timestamps", "tag", "max_size", "keep"];

/// The most rotated transcript files a service may keep (each rotation
/// renames all of them).
pub(super) const MAX_KEEP: i64 = 1000;

/// A service as read from its table, with the positions that the checks
/// across services point at.
pub(super) struct ServiceRead {
    /// The service. Its transcript, when it has one, has an empty path
    /// until the default is filled in, unless `transcript_path` is set.
    pub(super) service: Service,
    /// Where the service's name is.
    pub(super) name: Range<usize>,
    /// The value of `transcript.path`, when given.
    pub(super) transcript_path: Option<Range<usize>>,
    /// The value of `pidfile`, when given.
    pub(super) pidfile: Option<Range<usize>>,
    /// The value of `stdout`, when given.
    pub(super) stdout: Option<Range<usize>>,
    /// The value of `stderr`, when given.
    pub(super) stderr: Option<Range<usize>>,
    /// The value of `runtime_dir`, when given.
    pub(super) runtime_dir: Option<Range<usize>>,
    /// `logfile`, `start_test` and `start_timeout`.
    pub(super) extras: super::ServiceExtras,
    /// The names of `requires` and `after`, and where the keys of
    /// readiness, health and the watchdog are.
    pub(super) readiness: super::readiness::Readiness,
}

/// Reads the table of service `name` (whose key is at `name_span`).
///
/// Every problem is recorded in `s`; the service comes back whenever its
/// command could be read, so that the caller decides by the error count.
pub(super) fn read_service(
    s: &mut Scope<'_, '_>,
    name: &str,
    name_span: Range<usize>,
    table: &DeTable<'_>,
) -> Option<ServiceRead> {
    let f = s.fields(table, SERVICE_KEYS);
    let kind = super::kinds::kind_of(s, &f);
    let external = kind == super::kinds::KindName::External;
    let shell = f.get("shell").and_then(|v| s.boolean("shell", v)).unwrap_or(false);
    let command = match f.get("command") {
        Some(v) => s.command("command", v, shell),
        // An external service runs its start, stop and status commands.
        None if external => Some(Command::Argv(Vec::new())),
        None => {
            let message = "missing required key (a command line or an array of arguments)";
            s.error(name_span.clone(), Some("command"), message);
            None
        }
    };
    let has_command = command.is_some();
    let mut svc = Service::new(name, command.unwrap_or(Command::Argv(Vec::new())));
    svc.stdout = Output::Transcript;
    svc.stderr = Output::Transcript;

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
        svc.umask = s.umask("umask", v);
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
    if let Some(v) = f.get("restart").filter(|_| !external) {
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
    let durations: [(&str, &mut Duration); 4] = [
        ("min_uptime", &mut svc.restart.min_uptime),
        ("backoff_limit", &mut svc.restart.backoff_limit),
        ("stop_timeout", &mut svc.stop_timeout),
        ("finish_timeout", &mut svc.finish_timeout),
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
    let (config, mut transcript_path) = match f.get("transcript") {
        Some(v) => transcript(s, name, v),
        None => (TranscriptConfig::new(PathBuf::new()), None),
    };
    // Only a transcript that a stream goes to is kept (its table is
    // checked all the same).
    if svc.stdout == Output::Transcript || svc.stderr == Output::Transcript {
        svc.transcript = Some(config);
    } else {
        transcript_path = None;
    }
    if let Some(v) = f.get("pidfile") {
        svc.pidfile = s.path("pidfile", v);
    }
    if let Some(v) = f.get("limits") {
        svc.limits = limits(s, v);
    }
    if let Some(v) = f.get("lock") {
        svc.lock = s.path("lock", v);
    }
    if let Some(v) = f.get("finish") {
        svc.finish = s.command("finish", v, false).map(|c| c.to_argv());
    }
    if let Some(v) = f.get("follow") {
        svc.follow = s.boolean("follow", v).unwrap_or(false);
    }
    if let Some(v) = f.get("critical") {
        svc.critical = s.boolean("critical", v).unwrap_or(false);
    }
    runtime_dir_keys(s, &f, &mut svc);
    super::kinds::read_kind(s, &f, kind, name_span.clone(), &mut svc);
    let readiness = super::readiness::read(s, &f, kind, &mut svc);
    let extras = super::zdaemon::read_extras(s, &f);
    has_command.then(|| ServiceRead {
        service: svc,
        name: name_span,
        transcript_path,
        pidfile: f.get("pidfile").map(|v| v.span()),
        stdout: f.get("stdout").map(|v| v.span()),
        stderr: f.get("stderr").map(|v| v.span()),
        runtime_dir: f.get("runtime_dir").map(|v| v.span()),
        extras,
        readiness,
    })
}

/// `transcript`: the table of the transcript settings. Also returns where
/// its `path` is, when it has one (otherwise the path is left empty).
fn transcript(s: &mut Scope<'_, '_>, name: &str, v: &Raw<'_>) -> (TranscriptConfig, Option<Range<usize>>) {
    let mut config = TranscriptConfig::new(PathBuf::new());
    let DeValue::Table(table) = v.get_ref() else {
        let message = format!("expected a table such as [service.{name}.transcript], found {}", found(v.get_ref()));
        s.error(v.span(), Some("transcript"), message);
        return (config, None);
    };
    let f = s.fields_in(Some("transcript"), table, TRANSCRIPT_KEYS);
    let mut path_span = None;
    if let Some(v) = f.get("path") {
        if let Some(path) = s.path("transcript.path", v) {
            config.path = path;
            path_span = Some(v.span());
        }
    }
    if let Some(v) = f.get("timestamps") {
        let options = [("none", Timestamps::None), ("rfc3339", Timestamps::Rfc3339), ("tai64n", Timestamps::Tai64n)];
        config.timestamps = s.choice("transcript.timestamps", v, &options).unwrap_or_default();
    }
    if let Some(v) = f.get("tag") {
        config.tag = s.boolean("transcript.tag", v).unwrap_or(false);
    }
    if let Some(v) = f.get("max_size") {
        config.max_size = s.size("transcript.max_size", v);
    }
    if let Some(v) = f.get("keep") {
        let expected = format!("a number of rotated files from 0 to {MAX_KEEP}");
        if let Some(n) = s.integer("transcript.keep", v, 0..MAX_KEEP + 1, &expected) {
            config.keep = n as usize;
        }
    }
    (config, path_span)
}

/// `limits`: the table of soft resource limits, each a number or
/// `"unlimited"` (as high as the hard limit allows).
fn limits(s: &mut Scope<'_, '_>, v: &Raw<'_>) -> Limits {
    let mut limits = Limits::default();
    let DeValue::Table(table) = v.get_ref() else {
        let message =
            format!("expected a table such as {{ mem = \"512MB\", files = 1024 }}, found {}", found(v.get_ref()));
        s.error(v.span(), Some("limits"), message);
        return limits;
    };
    let f = s.fields_in(Some("limits"), table, LIMITS_KEYS);
    if let Some(v) = f.get("mem") {
        limits.mem = unlimited(v).or_else(|| limit_size(s, "limits.mem", v, 1));
    }
    if let Some(v) = f.get("files") {
        let expected = "a number of open files of at least 1, or \"unlimited\"";
        limits.files = unlimited(v).or_else(|| s.integer("limits.files", v, 1..i64::MAX, expected).map(|n| n as u64));
    }
    if let Some(v) = f.get("procs") {
        let expected = "a number of processes of at least 1, or \"unlimited\"";
        limits.procs = unlimited(v).or_else(|| s.integer("limits.procs", v, 1..i64::MAX, expected).map(|n| n as u64));
    }
    if let Some(v) = f.get("cpu") {
        limits.cpu = unlimited(v).or_else(|| cpu_seconds(s, v));
    }
    if let Some(v) = f.get("core") {
        limits.core = unlimited(v).or_else(|| limit_size(s, "limits.core", v, 0));
    }
    limits
}

/// `Some(UNLIMITED)` for the string `"unlimited"`.
fn unlimited(v: &Raw<'_>) -> Option<u64> {
    matches!(v.get_ref(), DeValue::String(t) if t == "unlimited").then_some(UNLIMITED)
}

/// A limit in bytes of at least `min`: a size string (see [`parse_size`])
/// or an integer.
fn limit_size(s: &mut Scope<'_, '_>, key: &str, v: &Raw<'_>, min: u64) -> Option<u64> {
    const EXPECTED: &str = "a size such as \"512MB\", \"1GiB\" or \"1000\" (bytes), or \"unlimited\"";
    let n = match v.get_ref() {
        DeValue::String(t) => match parse_size(t) {
            Ok(n) => Some(n),
            Err(SizeError::TooLarge) => {
                s.mismatch(key, v, &format!("a size of at most {} bytes", u64::MAX));
                return None;
            }
            Err(_) => None,
        },
        DeValue::Integer(i) => integer_value(i).and_then(|n| u64::try_from(n).ok()),
        _ => None,
    };
    match n {
        Some(n) if n >= min => Some(n),
        Some(_) => {
            s.mismatch(key, v, &format!("a size of at least {min} byte"));
            None
        }
        None => {
            s.mismatch(key, v, EXPECTED);
            None
        }
    }
}

/// `limits.cpu`: a duration in whole seconds, at least one.
fn cpu_seconds(s: &mut Scope<'_, '_>, v: &Raw<'_>) -> Option<u64> {
    let d = s.duration("limits.cpu", v)?;
    if d.subsec_nanos() != 0 || d.as_secs() == 0 {
        s.mismatch("limits.cpu", v, "a CPU time in whole seconds, at least \"1s\"");
        return None;
    }
    Some(d.as_secs())
}

/// `env`: a table of variables whose values are strings, numbers or
/// booleans.
fn env(s: &mut Scope<'_, '_>, v: &Raw<'_>, svc: &mut Service) {
    let Some(table) = s.table("env", v) else { return };
    for (name, value) in table {
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
        if let Some(t) = text {
            svc.env.vars.insert(name_text.to_owned(), t);
        } else {
            let expected = format!("a string, number or boolean for variable {name_text:?}");
            s.mismatch("env", value, &expected);
        }
    }
}

/// `user` or `group`: a name or a number, which must exist.
fn user_or_group(s: &mut Scope<'_, '_>, key: &str, v: &Raw<'_>) -> Option<String> {
    let expected = format!("a {key} name or a numeric id");
    let spec = match v.get_ref() {
        DeValue::String(t) if !t.is_empty() && !t.contains('\0') => t.to_string(),
        DeValue::Integer(i) => {
            if let Some(n) = integer_value(i).and_then(|n| u32::try_from(n).ok()) {
                n.to_string()
            } else {
                s.mismatch(key, v, &expected);
                return None;
            }
        }
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

/// `stdout` or `stderr`: `"transcript"`, `"inherit"`, `"null"` or a file
/// path.
fn output(s: &mut Scope<'_, '_>, key: &str, v: &Raw<'_>) -> Output {
    match v.get_ref() {
        DeValue::String(t) if t == "transcript" => Output::Transcript,
        DeValue::String(t) if t == "inherit" => Output::Inherit,
        DeValue::String(t) if t == "null" => Output::Null,
        DeValue::String(t) if !t.is_empty() => s.path(key, v).map_or(Output::Transcript, Output::File),
        _ => {
            s.mismatch(key, v, "\"transcript\", \"inherit\", \"null\" or a file path");
            Output::Transcript
        }
    }
}

/// `runtime_dir` and `coordinate` (copkg), then the placeholders of the
/// service's commands (`command`, `finish`), which only services with one
/// of those keys have expanded (see [`runtime_dir::uses_placeholders`]).
fn runtime_dir_keys(s: &mut Scope<'_, '_>, f: &BTreeMap<&'static str, &Raw<'_>>, svc: &mut Service) {
    if let Some(v) = f.get("runtime_dir") {
        svc.runtime_dir = s.path("runtime_dir", v);
    }
    if let Some(v) = f.get("coordinate") {
        svc.coordinate = match v.get_ref() {
            DeValue::String(t) if !t.trim().is_empty() && !t.contains(['\0', '\n']) => Some(t.to_string()),
            _ => {
                s.mismatch("coordinate", v, "a service coordinate such as \"1.idee.prod.trd\" (a non-empty string)");
                None
            }
        };
    }
    if !runtime_dir::uses_placeholders(svc) {
        return;
    }
    let failed = |s: &mut Scope<'_, '_>, key: &str, v: &Raw<'_>, e: PlaceholderError| {
        s.error(v.span(), Some(key), format!("cannot expand the placeholders: {e}"));
    };
    if let Some(v) = f.get("command") {
        match runtime_dir::expand_command(&svc.command, svc) {
            Ok(c) => svc.command = c,
            Err(e) => failed(s, "command", v, e),
        }
    }
    if let (Some(v), Some(finish)) = (f.get("finish"), &svc.finish) {
        match runtime_dir::expand_argv(finish, svc) {
            Ok(argv) => svc.finish = Some(argv),
            Err(e) => failed(s, "finish", v, e),
        }
    }
}
