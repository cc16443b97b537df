//! `reload`: the running supervisor reads its configuration file again,
//! validates all of it, and applies only the difference.
//!
//! The plan is computed by the supervisor against the configuration it
//! runs ([`diff`]): a service new in the file is added (and started if
//! expected running), a service gone from it is stopped and removed, a
//! service whose definition differs in any way is stopped and started
//! again with the new one, and the others are not touched. An invalid file
//! changes nothing; its errors go back to the client. The [`Reloader`]
//! keeps the running configuration for `serve`, answers `reload` requests
//! and `SIGHUP`, and with `[supervisor] reload = "auto"` watches the
//! file's metadata.

use std::time::{Duration, Instant};

use serde_json::Value;
use supervisor_core::protocol::{Command, ReloadAction, ReloadChange, ReloadReport, Response};
use supervisor_core::ReloadRequest;
use supervisor_core::{Engine, ExitWhen, Service};

use super::record::{stamp, Stamp};
use crate::config::{Config, ReloadMode};
use crate::exit::{self, CliError};
use crate::logger;

/// How often `reload = "auto"` checks the file at least.
pub const AUTO_CHECK: Duration = Duration::from_secs(1);

/// How long a changed file must have been left alone before `reload =
/// "auto"` reads it: an editor or a script may be half-way through
/// writing it (truncated, then written).
pub const SETTLE: Duration = Duration::from_millis(100);

/// What a change to a supervisor-level setting needs.
const NEEDS_RESTART: &str = "needs a restart of the supervisor; ignored until then";

/// The plan that turns the running configuration `old` into `new`: every
/// service of `new` in its order (added, restarted with the settings that
/// differ, or unchanged), then the removed ones in `old`'s order, and
/// notes on the `[supervisor]` settings. Not applied.
#[must_use]
pub fn diff(old: &Config, new: &Config) -> ReloadReport {
    let mut services = Vec::new();
    for svc in &new.services {
        let (action, changed) = match old.services.iter().find(|o| o.name == svc.name) {
            None => (ReloadAction::Add, Vec::new()),
            Some(o) if o == svc => (ReloadAction::Unchanged, Vec::new()),
            Some(o) => (ReloadAction::Restart, changed_settings(o, svc)),
        };
        services.push(ReloadChange::new(svc.name.clone(), action, changed));
    }
    for o in &old.services {
        if !new.services.iter().any(|s| s.name == o.name) {
            services.push(ReloadChange::new(o.name.clone(), ReloadAction::Remove, Vec::new()));
        }
    }
    let mut report = ReloadReport::default();
    report.path = new.path.display().to_string();
    report.services = services;
    report.notes = supervisor_notes(old, new);
    report
}

/// Notes on the `[supervisor]` settings that differ: applied at once
/// (`log_level`, `reload`, `exit_when`) or needing a restart of the
/// supervisor.
fn supervisor_notes(old: &Config, new: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    let mut restart = |what: String| notes.push(format!("{what}: {NEEDS_RESTART}"));
    if old.name != new.name {
        restart(format!("name changed from {:?} to {:?}", old.name, new.name));
    }
    if old.runtime_dir != new.runtime_dir {
        restart(format!("runtime_dir changed from {} to {}", old.runtime_dir.display(), new.runtime_dir.display()));
    } else if old.socket_path() != new.socket_path() {
        restart(format!("socket changed from {} to {}", old.socket_path().display(), new.socket_path().display()));
    }
    if old.directory != new.directory {
        restart(format!("directory changed from {} to {}", old.directory.display(), new.directory.display()));
    }
    if old.umask != new.umask {
        restart(format!("umask changed from {:03o} to {:03o}", old.umask, new.umask));
    }
    if old.access != new.access {
        restart("allow_uids or allow_groups changed".to_string());
    }
    if old.metrics != new.metrics {
        let show =
            |m: &Option<supervisor_core::metrics::MetricsAddr>| m.as_ref().map_or("none".into(), ToString::to_string);
        restart(format!("metrics changed from {} to {}", show(&old.metrics), show(&new.metrics)));
    }
    let specific = !notes.is_empty();
    // Whatever else `[supervisor]` holds (settings this function does not
    // name) also waits for a restart.
    let mut a = old.clone();
    let mut b = new.clone();
    for c in [&mut a, &mut b] {
        // Applied by the reload, or read by the client from the file.
        c.services.clear();
        c.groups.clear();
        c.extras.clear();
        c.log_level = log::LevelFilter::Off;
        c.reload = ReloadMode::Manual;
        c.exit_when = ExitWhen::Signalled;
    }
    b.flavour = a.flavour;
    b.path = a.path.clone();
    if !specific && a != b {
        notes.push(format!("other [supervisor] settings changed: {NEEDS_RESTART}"));
    }
    if old.log_level != new.log_level {
        notes.push(format!("log_level changed from {} to {}: applied", old.log_level, new.log_level).to_lowercase());
    }
    if old.groups != new.groups {
        notes.push("groups changed: applied".to_string());
    }
    if old.reload != new.reload {
        let mode = |m: ReloadMode| if m == ReloadMode::Auto { "auto" } else { "manual" };
        notes.push(format!("reload changed from {:?} to {:?}: applied", mode(old.reload), mode(new.reload)));
    }
    if old.exit_when != new.exit_when {
        let (a, b) = (old.exit_when.as_str(), new.exit_when.as_str());
        notes.push(format!("exit_when changed from {a:?} to {b:?}: applied"));
    }
    notes
}

/// The settings (fields of [`Service`]) that differ between two
/// definitions of a service, in declaration order.
#[must_use]
pub fn changed_settings(old: &Service, new: &Service) -> Vec<String> {
    let a = fields(old);
    let b = fields(new);
    let mut out: Vec<String> = Vec::new();
    for (key, text) in &a {
        if b.iter().find(|(k, _)| k == key).is_none_or(|(_, t)| t != text) {
            out.push(key.clone());
        }
    }
    for (key, _) in &b {
        if !a.iter().any(|(k, _)| k == key) {
            out.push(key.clone());
        }
    }
    if out.is_empty() {
        out.push("definition".to_string());
    }
    out
}

/// The top-level fields of a service and their values, from its pretty
/// `Debug` form (which lists every field, whatever the struct holds).
fn fields(svc: &Service) -> Vec<(String, String)> {
    let text = format!("{svc:#?}");
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines().skip(1) {
        let top = line.strip_prefix("    ").filter(|rest| !rest.starts_with(' '));
        let key = top.and_then(|rest| rest.split_once(": ").map(|(k, _)| k));
        match key {
            Some(k) if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                out.push((k.to_string(), line.to_string()));
            }
            _ => {
                if let Some((_, v)) = out.last_mut() {
                    v.push('\n');
                    v.push_str(line);
                }
            }
        }
    }
    out
}

/// Applies a plan made by [`diff`] from the running configuration to
/// `new`: removed services are stopped and removed first, then the groups
/// set, then new services added and changed ones replaced, in the file's
/// order (so that new members of a group start in order); `log_level` is
/// set, and `exit_when`. Returns the problems met (also logged).
pub fn apply(engine: &mut Engine, new: &Config, plan: &ReloadReport) -> Vec<String> {
    let mut problems = Vec::new();
    for change in plan.services.iter().filter(|c| c.action == ReloadAction::Remove) {
        log::info!("{}: removed from the configuration; stopping it", change.name);
        if let Err(e) = engine.remove_service(&change.name) {
            problems.push(format!("{}: {e}", change.name));
        }
    }
    engine.set_groups(new.groups.clone());
    for svc in &new.services {
        let Some(change) = plan.services.iter().find(|c| c.name == svc.name) else { continue };
        match change.action {
            ReloadAction::Add => log::info!("{}: added to the configuration", svc.name),
            ReloadAction::Restart => {
                log::info!("{}: changed ({}); restarting it", svc.name, change.changed.join(", "));
            }
            _ => continue,
        }
        if let Err(e) = engine.replace_service(svc.clone()) {
            problems.push(format!("{}: {e}", svc.name));
        }
    }
    logger::init(new.log_level);
    engine.set_exit_when(new.exit_when);
    for p in &problems {
        log::error!("reload: {p}");
    }
    problems
}

/// The plan as `reload` prints it: a heading, one line per service, the
/// notes.
#[must_use]
pub fn render(report: &ReloadReport) -> String {
    let mut out = String::new();
    let heading = if report.applied { "reloaded" } else { "dry run, nothing changed" };
    out.push_str(&format!("{}: {heading}\n", report.path));
    for c in &report.services {
        out.push_str(&format!("  {:<10} {}", c.action.as_str(), c.name));
        if !c.changed.is_empty() {
            out.push_str(&format!(" ({})", c.changed.join(", ")));
        }
        out.push('\n');
    }
    for n in &report.notes {
        out.push_str(&format!("  note: {n}\n"));
    }
    out
}

/// A one-line summary of a plan, for the event log.
fn summary(report: &ReloadReport) -> String {
    let names = |a: ReloadAction| -> Vec<&str> {
        report.services.iter().filter(|c| c.action == a).map(|c| c.name.as_str()).collect()
    };
    let mut parts = Vec::new();
    for a in [ReloadAction::Add, ReloadAction::Restart, ReloadAction::Remove] {
        let n = names(a);
        if !n.is_empty() {
            parts.push(format!("{} {}", a.as_str(), n.join(", ")));
        }
    }
    parts.push(format!("{} unchanged", names(ReloadAction::Unchanged).len()));
    parts.join("; ")
}

/// Whether the file looks complete at first sight: not empty, and
/// modified at least `SETTLE` ago (by the system clock). An empty file
/// may be one being truncated, whose modification time the kernel
/// updates just after its size: it must stay so for `SETTLE`.
fn settled(stamp: &Stamp) -> bool {
    if stamp.size == 0 {
        return false;
    }
    let (secs, nsecs) = stamp.mtime;
    let Ok(secs) = u64::try_from(secs) else { return false };
    let mtime = std::time::UNIX_EPOCH + Duration::new(secs, nsecs.clamp(0, 999_999_999) as u32);
    std::time::SystemTime::now().duration_since(mtime).is_ok_and(|age| age >= SETTLE)
}

/// The running configuration of a supervisor, and how it is reloaded.
#[derive(Debug)]
pub struct Reloader {
    current: Config,
    /// The file's metadata when it was last read (applied or rejected).
    seen: Option<Stamp>,
    /// With `reload = "auto"`: new metadata, and when they were first
    /// seen, while the file settles.
    settling: Option<(Option<Stamp>, Instant)>,
    /// The file's metadata when the running configuration was read from it.
    applied: Option<Stamp>,
}

impl Reloader {
    /// Starts from `config`, which the supervisor runs.
    #[must_use]
    pub fn new(config: Config) -> Reloader {
        let seen = stamp(&config.path);
        Reloader { current: config, seen, settling: None, applied: seen }
    }

    /// The file's metadata when the running configuration was read from it
    /// (a rejected file does not change it): a client that finds other
    /// metadata checks the file for errors.
    #[must_use]
    pub(crate) fn applied(&self) -> Option<Stamp> {
        self.applied
    }

    /// The configuration the supervisor runs.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.current
    }

    /// The longest the engine may sleep in one turn: with `reload =
    /// "auto"` 1 s (less while a changed file settles), otherwise no limit.
    #[must_use]
    pub fn max_wait(&self) -> Option<Duration> {
        if self.current.reload != ReloadMode::Auto {
            return None;
        }
        Some(if self.settling.is_some() { SETTLE } else { AUTO_CHECK })
    }

    /// Reads the file again and, unless `dry_run`, applies the difference.
    /// The report holds the plan, or the errors of an invalid file (then
    /// nothing changed). Everything is logged.
    pub fn reload(&mut self, engine: &mut Engine, dry_run: bool) -> ReloadReport {
        let path = self.current.path.clone();
        let now = stamp(&path);
        if !dry_run {
            engine.set_reloading(true);
        }
        let report = match self.current.reread() {
            Err(errors) => {
                let errors: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
                let what = if dry_run { "dry run of a reload" } else { "reload" };
                log::error!(
                    "{what} rejected: {} has {} error(s); the running configuration stays",
                    path.display(),
                    errors.len()
                );
                for e in &errors {
                    log::error!("{e}");
                }
                let mut report = ReloadReport::default();
                report.path = path.display().to_string();
                report.errors = errors;
                report
            }
            Ok(new) if dry_run => {
                let report = diff(&self.current, &new);
                log::info!("dry run of a reload of {}: {}", path.display(), summary(&report));
                report
            }
            Ok(new) => {
                let mut report = diff(&self.current, &new);
                log::info!("reloading {}: {}", path.display(), summary(&report));
                for n in &report.notes {
                    log::warn!("reload: {n}");
                }
                let problems = apply(engine, &new, &report);
                report.notes.extend(problems);
                report.applied = true;
                self.current = new;
                self.applied = now;
                report
            }
        };
        if !dry_run {
            self.seen = now;
            self.settling = None;
            engine.set_reloading(false);
        }
        report
    }

    /// Answers a `reload` request from the control socket.
    pub fn answer(&mut self, engine: &mut Engine, req: ReloadRequest) {
        let report = self.reload(engine, req.dry_run);
        engine.answer_reload(req, Response::with_reload(Value::Null, report));
    }

    /// With `reload = "auto"`: reloads when the file's metadata changed
    /// (an invalid file is logged once per change, and the running
    /// configuration stays). A file modified less than [`SETTLE`] ago, or
    /// empty, is read only once its metadata stayed the same for
    /// [`SETTLE`], so that a file caught half-written (an empty file is
    /// valid) is never applied. Returns whether the file was read.
    pub fn check_auto(&mut self, engine: &mut Engine) -> bool {
        if self.current.reload != ReloadMode::Auto || engine.is_shutting_down() {
            return false;
        }
        let now = stamp(&self.current.path);
        if now == self.seen {
            self.settling = None;
            return false;
        }
        let still_since = match self.settling {
            Some((s, since)) if s == now => since,
            _ => {
                let t = Instant::now();
                self.settling = Some((now, t));
                t
            }
        };
        if !now.is_some_and(|s| settled(&s)) && still_since.elapsed() < SETTLE {
            return false;
        }
        log::info!("{} changed; reloading it", self.current.path.display());
        self.reload(engine, false);
        true
    }

    /// What the host does after each turn: answers `reload` requests,
    /// checks the file when `reload = "auto"`, then lets the task runs
    /// that are due start (the engine holds them, see
    /// [`Engine::gate_task_runs`]), so that a run always follows a check of
    /// the file, as atomservice re-reads its configuration at the top of
    /// every loop.
    pub fn after_turn(&mut self, engine: &mut Engine) {
        while let Some(req) = engine.take_reload_request() {
            self.answer(engine, req);
        }
        self.check_auto(engine);
        if engine.task_runs_due() {
            engine.release_task_runs();
        }
    }

    /// `SIGHUP`: a reload, logged.
    pub fn on_hangup(&mut self, engine: &mut Engine) {
        if engine.is_shutting_down() {
            return;
        }
        log::info!("SIGHUP: reloading {}", self.current.path.display());
        self.reload(engine, false);
    }
}

/// `reload [--dry-run]`: asks the running supervisor to reload its
/// configuration file, and prints the plan it applied (or would apply).
///
/// # Errors
///
/// 7 when no supervisor runs, 6 (after printing every error) when the
/// supervisor found the file invalid, 1 for other failures.
pub fn reload(reach: &super::reach::Reach, dry_run: bool) -> Result<u8, CliError> {
    // Not `reach.connect`, which would warn of the file's errors: the
    // supervisor reports them itself.
    let mut client = supervisor_core::protocol::ControlClient::connect(&reach.socket)
        .map_err(|_| reach.unreachable(exit::NOT_RUNNING))?;
    let resp = client.call(Command::Reload { dry_run }, Duration::from_secs(30)).map_err(|e| match e {
        supervisor_core::protocol::ClientError::Timeout(t) => {
            CliError::Failed(format!("no answer from the supervisor within {t:?}"))
        }
        other => CliError::Failed(other.to_string()),
    })?;
    let document = |report: &ReloadReport, code: u8| {
        if crate::out::json() {
            let doc =
                serde_json::json!({ "ok": code == exit::OK, "exit_code": code, "dry_run": dry_run, "reload": report });
            crate::out::document(&doc);
        }
    };
    match (resp.reload, resp.error) {
        (Some(report), _) if !report.errors.is_empty() => {
            for e in &report.errors {
                eprintln!("error: {e}");
            }
            eprintln!("supervisor: {}: not reloaded; the running configuration is unchanged", report.path);
            document(&report, exit::BAD_CONFIG);
            Ok(exit::BAD_CONFIG)
        }
        (Some(report), None) => {
            crate::out::say(&render(&report));
            document(&report, exit::OK);
            Ok(exit::OK)
        }
        (_, Some(err)) => Err(CliError::Failed(err.message)),
        (None, None) => Err(CliError::Failed("the supervisor answered without a plan".to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> Config {
        let text = format!("[supervisor]\nname = \"t\"\nruntime_dir = \"/tmp/sv-reload-unit\"\n{text}");
        Config::parse(Path::new("/etc/sv/t.toml"), &text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn actions(r: &ReloadReport) -> Vec<(String, ReloadAction)> {
        r.services.iter().map(|c| (c.name.clone(), c.action)).collect()
    }

    #[test]
    fn diff_sorts_services_into_add_remove_restart_unchanged() {
        let old = config(
            r#"
[service.keep]
command = "sleep 1"
[service.change]
command = "sleep 1"
[service.gone]
command = "sleep 1"
"#,
        );
        let new = config(
            r#"
[service.new]
command = "sleep 2"
[service.change]
command = "sleep 2"
stop_timeout = "3s"
[service.keep]
command = "sleep 1"
"#,
        );
        let r = diff(&old, &new);
        let a = |n: &str, x| (n.to_string(), x);
        assert_eq!(
            actions(&r),
            vec![
                a("new", ReloadAction::Add),
                a("change", ReloadAction::Restart),
                a("keep", ReloadAction::Unchanged),
                a("gone", ReloadAction::Remove)
            ]
        );
        assert_eq!(r.services[1].changed, vec!["command", "stop_timeout"]);
        assert!(r.notes.is_empty(), "{:?}", r.notes);
        assert!(!r.applied);
        assert_eq!(r.path, "/etc/sv/t.toml");
    }

    #[test]
    fn the_same_file_is_all_unchanged() {
        let text =
            "[service.a]\ncommand = \"sleep 1\"\n[service.b]\ncommand = [\"sleep\", \"2\"]\nenv = { A = \"1\" }\n";
        let r = diff(&config(text), &config(text));
        assert!(r.services.iter().all(|c| c.action == ReloadAction::Unchanged && c.changed.is_empty()));
        assert!(r.notes.is_empty());
    }

    #[test]
    fn any_difference_restarts_and_is_named() {
        let old = config("[service.a]\ncommand = \"sleep 1\"\nenv = { A = \"1\" }\n");
        let new = config("[service.a]\ncommand = \"sleep 1\"\nenv = { A = \"2\" }\nexpected = \"stopped\"\n");
        let r = diff(&old, &new);
        assert_eq!(r.services[0].action, ReloadAction::Restart);
        assert_eq!(r.services[0].changed, vec!["env", "expected"]);
    }

    #[test]
    fn supervisor_settings_need_a_restart_or_apply_at_once() {
        let old = config("log_level = \"info\"\n");
        let text = "[supervisor]\nname = \"u\"\nruntime_dir = \"/tmp/sv-reload-unit2\"\nlog_level = \"debug\"\n\
                    reload = \"auto\"\numask = \"077\"\nexit_when = \"all-exited\"\n";
        let new = Config::parse(Path::new("/etc/sv/t.toml"), text).unwrap();
        let r = diff(&old, &new);
        let notes = r.notes.join("\n");
        assert!(notes.contains("name changed from \"t\" to \"u\": needs a restart of the supervisor"), "{notes}");
        assert!(notes.contains("runtime_dir changed"), "{notes}");
        assert!(notes.contains("umask changed from 022 to 077"), "{notes}");
        assert!(notes.contains("log_level changed from info to debug: applied"), "{notes}");
        assert!(notes.contains("reload changed from \"manual\" to \"auto\": applied"), "{notes}");
        assert!(notes.contains("exit_when changed from \"signalled\" to \"all-exited\": applied"), "{notes}");
        assert!(!notes.contains("other [supervisor]"), "{notes}");
    }

    #[test]
    fn groups_apply_at_once() {
        let services = "[service.a]\ncommand = \"sleep 1\"\n[service.b]\ncommand = \"sleep 1\"\n";
        let old = config(services);
        let new = config(&format!("{services}[group.g]\nservices = [\"a\", \"b\"]\nstrategy = \"one_for_all\"\n"));
        let r = diff(&old, &new);
        assert_eq!(r.notes, vec!["groups changed: applied"]);
        assert!(r.services.iter().all(|c| c.action == ReloadAction::Unchanged));
    }

    #[test]
    fn the_plan_is_printed_one_line_per_service() {
        let old = config("[service.a]\ncommand = \"sleep 1\"\n[service.b]\ncommand = \"sleep 1\"\n");
        let new = config("[service.a]\ncommand = \"sleep 2\"\n[service.c]\ncommand = \"sleep 1\"\n");
        let mut r = diff(&old, &new);
        let text = render(&r);
        assert_eq!(
            text,
            "/etc/sv/t.toml: dry run, nothing changed\n  restart    a (command)\n  add        c\n  remove     b\n"
        );
        r.applied = true;
        assert!(render(&r).starts_with("/etc/sv/t.toml: reloaded\n"));
        assert_eq!(summary(&r), "add c; restart a; remove b; 0 unchanged");
    }

    #[test]
    fn changed_settings_come_from_every_field() {
        let a = Service::new("x", supervisor_core::Command::Argv(vec!["a".into()]));
        let mut b = a.clone();
        b.stop_timeout = Duration::from_secs(99);
        b.env.vars.insert("K".into(), "V".into());
        assert_eq!(changed_settings(&a, &b), vec!["env", "stop_timeout"]);
        assert_eq!(changed_settings(&a, &a), vec!["definition"]);
    }
}
