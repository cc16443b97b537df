//! The keys of readiness, health checks, the watchdog and dependencies:
//! `[service.NAME.ready]`, `[service.NAME.health]`, `watchdog`, `requires`
//! and `after`, read into [`ReadyPolicy`], [`HealthCheck`] and the
//! service's fields. Whether the names of `requires` and `after` exist,
//! can be waited for and make no cycle is checked across services, in
//! [`super::deps`].

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::time::Duration;

use supervisor_core::runtime_dir;
use supervisor_core::{Command, HealthCheck, HttpTarget, Probe, ReadyCheck, ReadyPolicy, Service};
use toml::de::{DeTable, DeValue};

use super::check::{found, Raw, Scope};
use super::kinds::KindName;

/// The keys of a service's `ready` table.
pub(super) const READY_KEYS: &[&str] = &["notify", "exec", "tcp", "unix", "http", "log", "interval", "timeout"];
/// The keys of a service's `health` table.
pub(super) const HEALTH_KEYS: &[&str] = &["exec", "tcp", "unix", "http", "interval", "timeout", "failures"];
/// The ways to tell readiness, of which a `ready` table has exactly one.
const READY_METHODS: &[&str] = &["notify", "exec", "tcp", "unix", "http", "log"];
/// The probes, of which a `health` table has exactly one.
const PROBES: &[&str] = &["exec", "tcp", "unix", "http"];
/// The descriptors that `notify = "fd:N"` may name.
const NOTIFY_FDS: Range<i32> = 3..1024;

type Fields<'v, 'i> = BTreeMap<&'static str, &'v Raw<'i>>;

/// One name in `requires` or `after`.
pub(super) struct Dep {
    /// `requires` or `after`.
    pub(super) key: &'static str,
    /// The service named.
    pub(super) name: String,
    /// Where the name is.
    pub(super) at: Range<usize>,
}

/// What [`read`] found besides the service's fields.
#[derive(Default)]
pub(super) struct Readiness {
    /// The names of `requires` and `after`, in file order.
    pub(super) deps: Vec<Dep>,
    /// The keys read (`ready`, `ready.exec`, `health.failures`,
    /// `watchdog`, `requires`...) and where their values are.
    at: Vec<(String, Range<usize>)>,
}

impl Readiness {
    /// The key in the file, and where its value is, of the field that the
    /// core's [`Service::validate`] names (`ready.check` is the method
    /// given, `health.probe` the probe, a default its table).
    pub(super) fn locate(&self, field: &str) -> Option<(String, Range<usize>)> {
        let (parent, methods): (&str, &[&str]) = match field {
            "ready.check" => ("ready", READY_METHODS),
            "health.probe" => ("health", PROBES),
            _ => (field.split('.').next().unwrap_or(field), &[]),
        };
        let is_method =
            |k: &str| k.strip_prefix(parent).and_then(|m| m.strip_prefix('.')).is_some_and(|m| methods.contains(&m));
        let find = |want: &dyn Fn(&str) -> bool| self.at.iter().find(|(k, _)| want(k)).cloned();
        find(&|k| k == field).or_else(|| find(&is_method)).or_else(|| find(&|k| k == parent))
    }
}

/// Reads `ready`, `health`, `watchdog`, `requires` and `after` into `svc`
/// (whose other keys are read). A key that the kind does not take is
/// reported by [`read_kind`](super::kinds::read_kind), and not read.
pub(super) fn read(s: &mut Scope<'_, '_>, f: &Fields<'_, '_>, kind: KindName, svc: &mut Service) -> Readiness {
    let mut r = Readiness::default();
    if kind == KindName::Daemon {
        if let Some(v) = f.get("ready") {
            let ready = ready(s, &mut r, v, svc);
            svc.ready = ready.map(Box::new);
        }
        if let Some(v) = f.get("health") {
            let health = health(s, &mut r, v, svc);
            svc.health = health.map(Box::new);
        }
        if let Some(v) = f.get("watchdog") {
            r.at.push(("watchdog".into(), v.span()));
            svc.watchdog = positive(s, "watchdog", v);
            let by = match (f.get("ready"), &svc.ready) {
                (None, _) => Some("this service has no ready table".to_owned()),
                (Some(_), Some(p)) if p.check != ReadyCheck::Systemd => {
                    Some(format!("its readiness is told by {}", method_of(&p.check)))
                }
                _ => None,
            };
            if let (Some(by), Some(_)) = (by, svc.watchdog) {
                let message = format!(
                    "a watchdog needs ready.notify = \"systemd\" (the service sends WATCHDOG=1 over sd_notify), \
                     but {by}"
                );
                s.error(v.span(), Some("watchdog"), message);
            }
        }
    }
    if kind != KindName::External {
        for key in ["requires", "after"] {
            if let Some(v) = f.get(key) {
                r.at.push((key.into(), v.span()));
                let list = names(s, &mut r, key, v, &svc.name);
                match key {
                    "requires" => svc.requires = list,
                    _ => svc.after = list,
                }
            }
        }
    }
    r.deps.sort_by_key(|d| d.at.start);
    r
}

/// The key that gave `check`, for messages.
fn method_of(check: &ReadyCheck) -> String {
    let key = match check {
        ReadyCheck::Fd(fd) => return format!("notify = \"fd:{fd}\""),
        ReadyCheck::Systemd => "notify = \"systemd\"",
        ReadyCheck::Probe(Probe::Exec(_)) => "exec",
        ReadyCheck::Probe(Probe::Tcp(_)) => "tcp",
        ReadyCheck::Probe(Probe::Unix(_)) => "unix",
        ReadyCheck::Probe(Probe::Http(_)) => "http",
        ReadyCheck::Log(_) => "log",
        _ => "another key",
    };
    key.to_owned()
}

/// The table of key `key` (`ready` or `health`), or an error that shows
/// `[service.NAME.KEY]`.
fn sub_table<'v, 'i>(s: &mut Scope<'_, '_>, key: &str, v: &'v Raw<'i>, name: &str) -> Option<&'v DeTable<'i>> {
    if let DeValue::Table(t) = v.get_ref() {
        return Some(t);
    }
    let message = format!("expected a table such as [service.{name}.{key}], found {}", found(v.get_ref()));
    s.error(v.span(), Some(key), message);
    None
}

/// `[service.NAME.ready]`: one way to tell readiness, `interval` and
/// `timeout`.
fn ready(s: &mut Scope<'_, '_>, r: &mut Readiness, v: &Raw<'_>, svc: &Service) -> Option<ReadyPolicy> {
    r.at.push(("ready".into(), v.span()));
    let t = sub_table(s, "ready", v, &svc.name)?;
    let f = s.fields_in(Some("ready"), t, READY_KEYS);
    r.at.extend(f.iter().map(|(k, v)| (format!("ready.{k}"), v.span())));
    let interval = f.get("interval").map(|v| positive(s, "ready.interval", v));
    let timeout = f.get("timeout").map(|v| positive(s, "ready.timeout", v));
    let check = match one_of(s, "ready", &f, READY_METHODS, v)? {
        ("notify", v) => notify(s, v),
        ("log", v) => log(s, v),
        (method, v) => probe(s, "ready", method, v, svc).map(ReadyCheck::Probe),
    };
    let mut policy = ReadyPolicy::new(check?);
    policy.interval = interval.unwrap_or(Some(policy.interval))?;
    policy.timeout = timeout.unwrap_or(Some(policy.timeout))?;
    Some(policy)
}

/// `[service.NAME.health]`: one probe, `interval`, `timeout` and
/// `failures`.
fn health(s: &mut Scope<'_, '_>, r: &mut Readiness, v: &Raw<'_>, svc: &Service) -> Option<HealthCheck> {
    r.at.push(("health".into(), v.span()));
    let t = sub_table(s, "health", v, &svc.name)?;
    // `notify` and `log` are known, but for `ready` only.
    let mut probes_only = DeTable::new();
    for (key, value) in t {
        let name = key.get_ref().as_ref();
        if !matches!(name, "notify" | "log") {
            probes_only.insert(key.clone(), value.clone());
            continue;
        }
        let message = format!(
            "`{name}` tells when a service is ready (in [service.{}.ready]); a health check is one of: {}",
            svc.name,
            PROBES.join(", ")
        );
        s.error(key.span(), Some(&format!("health.{name}")), message);
    }
    let f = s.fields_in(Some("health"), &probes_only, HEALTH_KEYS);
    r.at.extend(f.iter().map(|(k, v)| (format!("health.{k}"), v.span())));
    let interval = f.get("interval").map(|v| positive(s, "health.interval", v));
    let timeout = f.get("timeout").map(|v| positive(s, "health.timeout", v));
    let failures = f.get("failures").map(|v| {
        let expected = "a number of failures in a row of at least 1";
        s.integer("health.failures", v, 1..i64::from(u32::MAX) + 1, expected).map(|n| n as u32)
    });
    // A misplaced `notify` or `log` alone is reported once, above.
    if t.len() > probes_only.len() && !PROBES.iter().any(|p| f.contains_key(p)) {
        return None;
    }
    let (method, v) = one_of(s, "health", &f, PROBES, v)?;
    let probe = probe(s, "health", method, v, svc);
    let mut check = HealthCheck::new(probe?);
    check.interval = interval.unwrap_or(Some(check.interval))?;
    check.timeout = timeout.unwrap_or(Some(check.timeout))?;
    check.failures = failures.unwrap_or(Some(check.failures))?;
    Some(check)
}

/// The one key of `methods` that table `parent` (whose value is `table`)
/// has, with its value. Reports none, or every one after the first.
fn one_of<'v, 'i>(
    s: &mut Scope<'_, '_>,
    parent: &str,
    f: &Fields<'v, 'i>,
    methods: &[&'static str],
    table: &Raw<'_>,
) -> Option<(&'static str, &'v Raw<'i>)> {
    let mut given: Vec<_> = f.iter().filter(|(k, _)| methods.contains(k)).map(|(k, v)| (*k, *v)).collect();
    given.sort_by_key(|(_, v)| v.span().start);
    let what = if parent == "ready" { "way to tell readiness" } else { "probe" };
    let methods = methods.join(", ");
    match given.as_slice() {
        [] => {
            s.error(table.span(), Some(parent), format!("needs one {what}: one of the keys {methods}"));
            None
        }
        [one] => Some(*one),
        [(first, _), more @ ..] => {
            for (key, v) in more {
                let message = format!("`{first}` is given already: only one {what} is allowed (one of {methods})");
                s.error(v.span(), Some(&format!("{parent}.{key}")), message);
            }
            None
        }
    }
}

/// A duration of more than zero.
fn positive(s: &mut Scope<'_, '_>, key: &str, v: &Raw<'_>) -> Option<Duration> {
    let d = s.duration(key, v)?;
    if d.is_zero() {
        s.mismatch(key, v, "a duration of more than zero");
        return None;
    }
    Some(d)
}

/// `ready.notify`: `"systemd"` or `"fd:N"`.
fn notify(s: &mut Scope<'_, '_>, v: &Raw<'_>) -> Option<ReadyCheck> {
    if let DeValue::String(t) = v.get_ref() {
        if t == "systemd" {
            return Some(ReadyCheck::Systemd);
        }
        let fd = t.strip_prefix("fd:").and_then(|n| n.parse::<i32>().ok());
        if let Some(fd) = fd.filter(|fd| NOTIFY_FDS.contains(fd)) {
            return Some(ReadyCheck::Fd(fd));
        }
    }
    let expected = format!(
        "\"systemd\" (sd_notify) or \"fd:N\" (a newline written on descriptor N, from {} to {})",
        NOTIFY_FDS.start,
        NOTIFY_FDS.end - 1
    );
    s.mismatch("ready.notify", v, &expected);
    None
}

/// `ready.log`: a regular expression, as the engine compiles it.
fn log(s: &mut Scope<'_, '_>, v: &Raw<'_>) -> Option<ReadyCheck> {
    let DeValue::String(re) = v.get_ref() else {
        s.mismatch("ready.log", v, "a regular expression that matches a line of the service's output");
        return None;
    };
    match regex_lite::Regex::new(re) {
        Ok(_) => Some(ReadyCheck::Log(re.to_string())),
        Err(e) => {
            s.error(v.span(), Some("ready.log"), format!("{re:?} is not a regular expression: {e}"));
            None
        }
    }
}

/// A probe (`exec`, `tcp`, `unix` or `http`) of table `parent`.
fn probe(s: &mut Scope<'_, '_>, parent: &str, method: &str, v: &Raw<'_>, svc: &Service) -> Option<Probe> {
    let key = format!("{parent}.{method}");
    match method {
        "exec" => exec(s, &key, v, svc).map(Probe::Exec),
        "unix" => {
            let path = s.path(&key, v)?;
            s.socket_path(&key, v, path).map(Probe::Unix)
        }
        "tcp" => {
            let addr = match v.get_ref() {
                DeValue::String(t) => tcp_addr(t),
                _ => None,
            };
            if addr.is_none() {
                s.mismatch(&key, v, "an address IP:PORT or localhost:PORT, such as \"127.0.0.1:5432\"");
            }
            addr.map(Probe::Tcp)
        }
        _ => {
            const EXPECTED: &str = "a URL such as \"http://127.0.0.1:8080/healthz\"";
            let DeValue::String(url) = v.get_ref() else {
                s.mismatch(&key, v, EXPECTED);
                return None;
            };
            match HttpTarget::parse(url) {
                Ok(target) => Some(Probe::Http(target)),
                Err(e) => {
                    s.error(v.span(), Some(&key), format!("expected {EXPECTED}, found {e}"));
                    None
                }
            }
        }
    }
}

/// An `exec` probe: a command read as `command` is (without a shell),
/// its placeholders expanded as theirs are.
fn exec(s: &mut Scope<'_, '_>, key: &str, v: &Raw<'_>, svc: &Service) -> Option<Command> {
    let command = s.command(key, v, false)?;
    if !runtime_dir::uses_placeholders(svc) {
        return Some(command);
    }
    match runtime_dir::expand_command(&command, svc) {
        Ok(c) => Some(c),
        Err(e) => {
            s.error(v.span(), Some(key), format!("cannot expand the placeholders: {e}"));
            None
        }
    }
}

/// `IP:PORT` (`[IPv6]:PORT`) or `localhost:PORT`, the port not zero.
fn tcp_addr(text: &str) -> Option<SocketAddr> {
    let addr = match text.strip_prefix("localhost:") {
        Some(port) => SocketAddr::from((Ipv4Addr::LOCALHOST, port.parse::<u16>().ok()?)),
        None => text.parse::<SocketAddr>().ok()?,
    };
    (addr.port() != 0).then_some(addr)
}

/// `requires` or `after`: an array of service names, none of them the
/// service's own (`own`) or named twice.
fn names(s: &mut Scope<'_, '_>, r: &mut Readiness, key: &'static str, v: &Raw<'_>, own: &str) -> Vec<String> {
    let DeValue::Array(items) = v.get_ref() else {
        s.mismatch(key, v, &format!("an array of service names, such as {key} = [\"db\"]"));
        return Vec::new();
    };
    let mut list: Vec<String> = Vec::new();
    for item in items {
        let DeValue::String(name) = item.get_ref() else {
            s.mismatch(key, item, "a service name");
            continue;
        };
        if name == own {
            s.error(item.span(), Some(key), format!("{own:?} is this service: a service cannot wait for itself"));
        } else if list.iter().any(|n| n == name) {
            s.error(item.span(), Some(key), format!("{name:?} is named twice"));
        } else {
            list.push(name.to_string());
            r.deps.push(Dep { key, name: name.to_string(), at: item.span() });
        }
    }
    list
}
