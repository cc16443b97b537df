//! The rules a [`Service`] must follow before an engine takes it: what
//! would otherwise fail at every start, loop hot, or overflow a deadline.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use super::{Command, Input, Kind, Output, Probe, ReadyCheck, Service};

/// The longest duration any field may hold: one year. Deadlines are the
/// monotonic clock plus a duration, which must not overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// The most rotated transcript files kept.
pub const MAX_KEEP: usize = 1000;

/// Why a [`Service`] cannot be supervised: which service, which field
/// (named as the Rust field path, such as `restart.min_uptime` or
/// `kind.task.interval`), and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("service {service:?}: {field}: {problem}")]
#[non_exhaustive]
pub struct InvalidService {
    /// The service's name.
    pub service: String,
    /// The field, as a path from [`Service`]: `command`,
    /// `restart.min_uptime`, `kind.task.interval`.
    pub field: &'static str,
    /// What is wrong.
    pub problem: String,
}

impl InvalidService {
    pub(crate) fn new(service: &str, field: &'static str, problem: impl Into<String>) -> InvalidService {
        InvalidService { service: service.to_owned(), field, problem: problem.into() }
    }
}

/// Whether `name` can name a service: not empty, at most 255 bytes, not
/// `.` or `..`, and no white space or control characters (it is used in
/// status tables, logs and the environment). A `/` is allowed: the `log/`
/// service of a daemontools directory `web` is called `web/log`.
#[must_use]
pub fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl Service {
    /// Checks the description on its own (not against an engine: names
    /// taken, pipes made, users that exist are checked by
    /// [`Engine::add_service`](crate::Engine::add_service)).
    ///
    /// # Errors
    ///
    /// The first [`InvalidService`] found.
    pub fn validate(&self) -> Result<(), InvalidService> {
        let name = &self.name;
        let bad = |field: &'static str, problem: &str| Err(InvalidService::new(name, field, problem));
        if !valid_service_name(name) {
            return bad(
                "name",
                "a name must be 1 to 255 bytes with no space or control character, not \".\" or \"..\"",
            );
        }
        if !self.kind.is_external() {
            check_command(name, &self.command)?;
        }
        for (k, v) in &self.env.vars {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return bad("env", &format!("{k:?} cannot name an environment variable"));
            }
            if v.contains('\0') {
                return bad("env", &format!("the value of {k} contains a NUL byte"));
            }
        }
        let paths = [
            ("directory", self.directory.as_deref()),
            ("pidfile", self.pidfile.as_deref()),
            ("lock", self.lock.as_deref()),
            ("runtime_dir", self.runtime_dir.as_deref()),
        ];
        for (field, path) in paths {
            if let Some(p) = path {
                check_path(name, field, p)?;
            }
        }
        if self.umask.is_some_and(|m| m > 0o777) {
            return bad("umask", "a umask is at most 0o777");
        }
        for (field, value) in [("user", &self.user), ("group", &self.group), ("coordinate", &self.coordinate)] {
            if value.as_deref().is_some_and(|v| v.is_empty() || v.contains('\0')) {
                return bad(field, "must not be empty or contain a NUL byte");
            }
        }
        let r = &self.restart;
        positive(name, "restart.min_uptime", r.min_uptime)?;
        positive(name, "restart.backoff_step", r.backoff_step)?;
        at_most_max(name, "restart.backoff_limit", r.backoff_limit)?;
        if r.forever && r.backoff_limit.is_zero() {
            return bad(
                "restart.backoff_limit",
                "with forever, it must be more than zero (or quick failures loop hot)",
            );
        }
        positive(name, "stop_timeout", self.stop_timeout)?;
        positive(name, "finish_timeout", self.finish_timeout)?;
        if let Some(finish) = &self.finish {
            check_words(name, "finish", finish)?;
        }
        for (field, out) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            match out {
                Output::File(p) => check_path(name, field, p)?,
                Output::Pipe(n) if n.is_empty() => return bad(field, "a pipe needs a name"),
                Output::Transcript if self.transcript.is_none() => {
                    return bad(field, "goes to the transcript, but the service has none (set `transcript`)")
                }
                _ => {}
            }
        }
        if matches!(&self.stdin, Input::Pipe(n) if n.is_empty()) {
            return bad("stdin", "a pipe needs a name");
        }
        if let Some(t) = &self.transcript {
            check_path(name, "transcript.path", &t.path)?;
            if t.max_size == Some(0) {
                return bad("transcript.max_size", "must be more than zero");
            }
            if t.keep > MAX_KEEP {
                return bad("transcript.keep", &format!("at most {MAX_KEEP} rotated files are kept"));
            }
        }
        check_readiness(self)?;
        match &self.kind {
            Kind::Daemon => {}
            Kind::Task(t) => {
                positive(name, "kind.task.interval", t.interval)?;
                if let Some(timeout) = t.timeout {
                    positive(name, "kind.task.timeout", timeout)?;
                }
                at_most_max(name, "kind.task.jitter", t.jitter)?;
            }
            Kind::External(e) => {
                e.validate().map_err(|problem| InvalidService::new(name, "kind.external", problem))?;
                positive(name, "kind.external.timeout", e.timeout)?;
                positive(name, "kind.external.check_interval", e.check_interval)?;
                let commands = [&e.control, &e.start, &e.stop, &e.status];
                if commands.iter().any(|c| c.as_ref().is_some_and(|w| w.iter().any(|w| w.contains('\0')))) {
                    return bad("kind.external", "a command contains a NUL byte");
                }
            }
        }
        Ok(())
    }
}

/// The highest descriptor number `notify = "fd:N"` may name.
const MAX_NOTIFY_FD: i32 = 1023;

/// The rules for readiness, health, the watchdog and dependencies, part
/// of [`Service::validate`]:
///
/// - `ready`, `health`, `watchdog` and `critical` are for daemons;
/// - `requires` and `after` are for daemons and tasks (a task's runs wait
///   for them); an external service's commands decide on their own;
/// - `watchdog` needs `ready` by [`ReadyCheck::Systemd`];
/// - a service does not name itself, nor a name twice.
///
/// (Whether the names exist, are not tasks and make no cycle is checked by
/// [`Engine::add_service`](crate::Engine::add_service).)
fn check_readiness(svc: &Service) -> Result<(), InvalidService> {
    let name = &svc.name;
    let bad = |field: &'static str, problem: &str| Err(InvalidService::new(name, field, problem));
    let daemon = matches!(svc.kind, Kind::Daemon);
    for (field, set) in [
        ("ready", svc.ready.is_some()),
        ("health", svc.health.is_some()),
        ("watchdog", svc.watchdog.is_some()),
        ("critical", svc.critical),
    ] {
        if set && !daemon {
            return bad(field, &format!("only a daemon has one (this is a {} service)", svc.kind.as_str()));
        }
    }
    if svc.kind.is_external() {
        for (field, list) in [("requires", &svc.requires), ("after", &svc.after)] {
            if !list.is_empty() {
                return bad(field, "an external service's commands decide when it runs: it cannot wait for others");
            }
        }
    }
    if let Some(r) = &svc.ready {
        positive(name, "ready.interval", r.interval)?;
        positive(name, "ready.timeout", r.timeout)?;
        match &r.check {
            ReadyCheck::Systemd => {}
            ReadyCheck::Fd(fd) if !(3..=MAX_NOTIFY_FD).contains(fd) => {
                return bad("ready.check", &format!("fd:{fd}: the descriptor must be from 3 to {MAX_NOTIFY_FD}"));
            }
            ReadyCheck::Fd(_) => {}
            ReadyCheck::Probe(p) => check_probe(name, "ready.check", p)?,
            ReadyCheck::Log(re) => {
                if let Err(e) = regex_lite::Regex::new(re) {
                    return bad("ready.check", &format!("log: {re:?} is not a regular expression: {e}"));
                }
                if svc.stdout != Output::Transcript && svc.stderr != Output::Transcript {
                    return bad("ready.check", "log: the output it reads must go to the transcript (stdout or stderr)");
                }
            }
        }
    }
    if let Some(h) = &svc.health {
        check_probe(name, "health.probe", &h.probe)?;
        positive(name, "health.interval", h.interval)?;
        positive(name, "health.timeout", h.timeout)?;
        if h.failures == 0 {
            return bad("health.failures", "must be at least 1");
        }
    }
    if let Some(w) = svc.watchdog {
        positive(name, "watchdog", w)?;
        if !matches!(svc.ready.as_ref().map(|r| &r.check), Some(ReadyCheck::Systemd)) {
            return bad("watchdog", "needs ready by notify = \"systemd\" (WATCHDOG=1 comes over sd_notify)");
        }
    }
    for (field, list) in [("requires", &svc.requires), ("after", &svc.after)] {
        for (i, dep) in list.iter().enumerate() {
            if !valid_service_name(dep) {
                return bad(field, &format!("{dep:?} cannot name a service"));
            }
            if dep == name {
                return bad(field, "a service cannot wait for itself");
            }
            if list[..i].contains(dep) {
                return bad(field, &format!("{dep:?} is named twice"));
            }
        }
    }
    Ok(())
}

fn check_probe(name: &str, field: &'static str, probe: &Probe) -> Result<(), InvalidService> {
    match probe {
        Probe::Exec(c) => check_command(name, c).map_err(|e| InvalidService::new(name, field, e.problem)),
        Probe::Unix(p) if p.as_os_str().is_empty() => Err(InvalidService::new(name, field, "unix: the path is empty")),
        Probe::Unix(p) if p.as_os_str().len() > 107 => {
            Err(InvalidService::new(name, field, "unix: a socket path is at most 107 bytes"))
        }
        Probe::Tcp(_) | Probe::Unix(_) | Probe::Http(_) => Ok(()),
    }
}

fn check_command(name: &str, command: &Command) -> Result<(), InvalidService> {
    match command {
        Command::Argv(words) => check_words(name, "command", words),
        Command::Shell(line) if line.trim().is_empty() => Err(InvalidService::new(name, "command", "empty command")),
        Command::Shell(line) if line.contains('\0') => {
            Err(InvalidService::new(name, "command", "the command contains a NUL byte"))
        }
        Command::Shell(_) => Ok(()),
    }
}

fn check_words(name: &str, field: &'static str, words: &[String]) -> Result<(), InvalidService> {
    match words.first() {
        None => Err(InvalidService::new(name, field, "empty command: give at least the program")),
        Some(p) if p.is_empty() => Err(InvalidService::new(name, field, "the program's name is empty")),
        Some(_) if words.iter().any(|w| w.contains('\0')) => {
            Err(InvalidService::new(name, field, "an argument contains a NUL byte"))
        }
        Some(_) => Ok(()),
    }
}

fn check_path(name: &str, field: &'static str, path: &Path) -> Result<(), InvalidService> {
    let bytes = OsStr::as_bytes(path.as_os_str());
    if bytes.is_empty() {
        return Err(InvalidService::new(name, field, "the path is empty"));
    }
    if bytes.contains(&0) {
        return Err(InvalidService::new(name, field, "the path contains a NUL byte"));
    }
    Ok(())
}

fn positive(name: &str, field: &'static str, d: Duration) -> Result<(), InvalidService> {
    if d.is_zero() {
        return Err(InvalidService::new(name, field, "must be more than zero"));
    }
    at_most_max(name, field, d)
}

fn at_most_max(name: &str, field: &'static str, d: Duration) -> Result<(), InvalidService> {
    if d > MAX_DURATION {
        return Err(InvalidService::new(name, field, "must be at most 365 days"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ExternalSpec, TaskSpec, TranscriptConfig};

    fn ok() -> Service {
        Service::new("web", Command::argv(["sleep", "30"]))
    }

    fn field_of(svc: &Service) -> &'static str {
        svc.validate().expect_err("invalid").field
    }

    #[test]
    fn a_plain_service_is_valid() {
        assert_eq!(ok().validate(), Ok(()));
    }

    #[test]
    fn each_rule_names_its_field() {
        type Change = Box<dyn Fn(&mut Service)>;
        let cases: Vec<(&str, Change)> = vec![
            ("name", Box::new(|s| s.name = String::new())),
            ("name", Box::new(|s| s.name = "a b".into())),
            ("name", Box::new(|s| s.name = "a\nb".into())),
            ("name", Box::new(|s| s.name = "..".into())),
            ("command", Box::new(|s| s.command = Command::Argv(Vec::new()))),
            ("command", Box::new(|s| s.command = Command::argv([""]))),
            ("command", Box::new(|s| s.command = Command::argv(["x", "a\0b"]))),
            ("command", Box::new(|s| s.command = Command::Shell("  ".into()))),
            ("env", Box::new(|s| drop(s.env.vars.insert("A=B".into(), "x".into())))),
            ("directory", Box::new(|s| s.directory = Some("".into()))),
            ("umask", Box::new(|s| s.umask = Some(0o1000))),
            ("user", Box::new(|s| s.user = Some(String::new()))),
            ("restart.min_uptime", Box::new(|s| s.restart.min_uptime = Duration::ZERO)),
            ("restart.backoff_step", Box::new(|s| s.restart.backoff_step = Duration::ZERO)),
            (
                "restart.backoff_limit",
                Box::new(|s| {
                    s.restart.forever = true;
                    s.restart.backoff_limit = Duration::ZERO;
                }),
            ),
            ("stop_timeout", Box::new(|s| s.stop_timeout = Duration::ZERO)),
            ("stop_timeout", Box::new(|s| s.stop_timeout = Duration::MAX)),
            ("finish", Box::new(|s| s.finish = Some(Vec::new()))),
            ("stdout", Box::new(|s| s.stdout = Output::Transcript)),
            (
                "transcript.max_size",
                Box::new(|s| {
                    let mut t = TranscriptConfig::new("/tmp/x.log");
                    t.max_size = Some(0);
                    s.transcript = Some(t);
                }),
            ),
            ("kind.task.interval", Box::new(|s| s.kind = Kind::Task(Box::new(TaskSpec::every(Duration::ZERO))))),
            (
                "kind.task.timeout",
                Box::new(|s| {
                    let mut t = TaskSpec::every(Duration::from_secs(1));
                    t.timeout = Some(Duration::ZERO);
                    s.kind = Kind::Task(Box::new(t));
                }),
            ),
            ("kind.external", Box::new(|s| s.kind = Kind::External(Box::new(ExternalSpec::start(Vec::new()))))),
            (
                "kind.external.check_interval",
                Box::new(|s| {
                    let mut e = ExternalSpec::start(vec!["x".into()]);
                    e.check_interval = Duration::ZERO;
                    s.kind = Kind::External(Box::new(e));
                }),
            ),
        ];
        for (field, change) in cases {
            let mut s = ok();
            change(&mut s);
            assert_eq!(field_of(&s), field, "{s:?}");
        }
    }

    #[test]
    fn the_message_names_service_field_and_problem() {
        let mut s = ok();
        s.stop_timeout = Duration::ZERO;
        assert_eq!(s.validate().unwrap_err().to_string(), "service \"web\": stop_timeout: must be more than zero");
    }

    #[test]
    fn an_external_service_needs_no_command() {
        let mut s = Service::new("ext", Command::Argv(Vec::new()));
        s.kind = Kind::External(Box::new(ExternalSpec::start(vec!["/etc/init.d/x".into(), "start".into()])));
        assert_eq!(s.validate(), Ok(()));
    }
}
