use std::path::PathBuf;
use std::time::Duration;

use supervisor_core::{HealthCheck, HttpTarget, Probe, ReadyCheck, ReadyPolicy};

use super::{argv, assert_at, errors, ok, one_error, service, ConfigErrors};

/// The `ready` policy of a service `web` whose table ends with `lines`.
#[track_caller]
fn ready_of(lines: &str) -> ReadyPolicy {
    *service(&format!("[service.web]\ncommand = \"x\"\n{lines}\n")).ready.expect("a ready policy")
}

/// The health check of a service `web` whose table ends with `lines`.
#[track_caller]
fn health_of(lines: &str) -> HealthCheck {
    *service(&format!("[service.web]\ncommand = \"x\"\n{lines}\n")).health.expect("a health check")
}

/// The only error of a service `web` whose third line is `line`: it must
/// be about `key`, at the first `at` of the line. Returns its message.
#[track_caller]
fn error_at(line: &str, at: &str, key: &str) -> String {
    let e = one_error(&format!("[service.web]\ncommand = \"x\"\n{line}\n"));
    assert_at(&e, 3, line.find(at).unwrap() + 1, Some("web"), Some(key));
    e.message
}

/// The names of the services, in the configuration's order.
fn order(text: &str) -> Vec<String> {
    ok(text).services.into_iter().map(|s| s.name).collect()
}

#[test]
fn each_way_to_tell_readiness() {
    let check = |line: &str| ready_of(&format!("ready = {{ {line} }}")).check;
    assert_eq!(check("notify = \"systemd\""), ReadyCheck::Systemd);
    assert_eq!(check("notify = \"fd:3\""), ReadyCheck::Fd(3));
    assert_eq!(check("notify = \"fd:1023\""), ReadyCheck::Fd(1023));
    assert_eq!(check("exec = \"pg_isready -q\""), ReadyCheck::Probe(Probe::Exec(argv(&["pg_isready", "-q"]))));
    assert_eq!(check("exec = [\"check\", \"a b\"]"), ReadyCheck::Probe(Probe::Exec(argv(&["check", "a b"]))));
    let tcp = |addr: &str| ReadyCheck::Probe(Probe::Tcp(addr.parse().unwrap()));
    assert_eq!(check("tcp = \"127.0.0.1:5432\""), tcp("127.0.0.1:5432"));
    assert_eq!(check("tcp = \"localhost:5432\""), tcp("127.0.0.1:5432"));
    assert_eq!(check("tcp = \"[::1]:80\""), tcp("[::1]:80"));
    // Relative to the configuration file's directory, /etc/sv.
    assert_eq!(check("unix = \"run/db.sock\""), ReadyCheck::Probe(Probe::Unix(PathBuf::from("/etc/sv/run/db.sock"))));
    assert_eq!(check("unix = \"/run/db.sock\""), ReadyCheck::Probe(Probe::Unix(PathBuf::from("/run/db.sock"))));
    let url = "http://127.0.0.1:8080/healthz";
    assert_eq!(check(&format!("http = {url:?}")), ReadyCheck::Probe(Probe::Http(HttpTarget::parse(url).unwrap())));
    assert_eq!(check("log = \"ready to accept connections\""), ReadyCheck::Log("ready to accept connections".into()));

    // The defaults, and both durations, in a table of its own.
    let p = ready_of("ready.notify = \"systemd\"");
    assert_eq!(p, ReadyPolicy::new(ReadyCheck::Systemd));
    assert_eq!((p.interval, p.timeout), (Duration::from_millis(250), Duration::from_secs(60)));
    let p = ready_of("[service.web.ready]\nlog = '^up$'\ninterval = \"1s\"\ntimeout = \"2m\"");
    assert_eq!(
        (p.check, p.interval, p.timeout),
        (ReadyCheck::Log("^up$".into()), Duration::from_secs(1), Duration::from_secs(120))
    );
}

#[test]
fn exec_probes_have_their_placeholders_expanded_as_the_command() {
    let s =
        service("[service.web]\ncommand = \"x\"\nruntime_dir = \"/srv/web\"\nready.exec = \"{runtime_dir}/bin/ok\"\n");
    assert_eq!(s.ready.unwrap().check, ReadyCheck::Probe(Probe::Exec(argv(&["/srv/web/bin/ok"]))));
    // Without runtime_dir or coordinate, braces are left alone.
    let p = ready_of("ready.exec = [\"awk\", \"{print}\"]");
    assert_eq!(p.check, ReadyCheck::Probe(Probe::Exec(argv(&["awk", "{print}"]))));
}

#[test]
fn each_health_probe() {
    let h =
        health_of("[service.web.health]\nexec = \"pg_isready -q\"\ninterval = \"10s\"\ntimeout = \"2s\"\nfailures = 3");
    assert_eq!(h, HealthCheck::new(Probe::Exec(argv(&["pg_isready", "-q"]))));
    let h = health_of("health = { tcp = \"localhost:5432\", interval = \"5s\", timeout = \"1s\", failures = 5 }");
    assert_eq!(h.probe, Probe::Tcp("127.0.0.1:5432".parse().unwrap()));
    assert_eq!((h.interval, h.timeout, h.failures), (Duration::from_secs(5), Duration::from_secs(1), 5));
    assert_eq!(health_of("health.unix = \"db.sock\"").probe, Probe::Unix(PathBuf::from("/etc/sv/db.sock")));
    let h = health_of("health.http = \"http://localhost:8080/healthz\"");
    assert_eq!(h.probe, Probe::Http(HttpTarget::parse("http://localhost:8080/healthz").unwrap()));
    assert_eq!((h.interval, h.timeout, h.failures), (Duration::from_secs(10), Duration::from_secs(2), 3));
}

#[test]
fn watchdog_requires_and_after() {
    let c = ok(r#"
[service.db]
command = "db"
[service.cache]
kind = "external"
start = "cache start"
[service.api]
command = "api-server"
watchdog = "30s"
ready.notify = "systemd"
requires = ["db"]
after = ["cache", "db"]
[service.backup]
kind = "task"
command = "backup"
interval = "1h"
requires = ["db"]
"#);
    let api = &c.services[2];
    assert_eq!(api.watchdog, Some(Duration::from_secs(30)));
    assert_eq!(
        (api.requires.as_slice(), api.after.as_slice()),
        (&["db".to_string()][..], &["cache".into(), "db".into()][..])
    );
    assert_eq!(c.services[3].requires, ["db"]);
    assert!(c.services[0].requires.is_empty() && c.services[0].after.is_empty() && c.services[0].watchdog.is_none());
}

#[test]
fn bad_ready_values_point_at_the_value() {
    let notify =
        "expected \"systemd\" (sd_notify) or \"fd:N\" (a newline written on descriptor N, from 3 to 1023), found";
    for value in ["\"sd\"", "\"fd:2\"", "\"fd:1024\"", "\"fd:x\"", "3"] {
        let message = error_at(&format!("ready = {{ notify = {value} }}"), value, "ready.notify");
        assert_eq!(message, format!("{notify} {value}"));
    }
    let cases = [
        ("ready = { exec = [] }", "[]", "ready.exec", "expected a command line or a non-empty array of strings"),
        ("ready = { exec = \"a 'b\" }", "\"a", "ready.exec", "expected a command line, found \"a 'b\", which cannot"),
        ("ready = { exec = [\"ok\", 1] }", "1]", "ready.exec", "expected a string (each argument is one string)"),
        (
            "ready = { tcp = \"db:5432\" }",
            "\"db",
            "ready.tcp",
            "expected an address IP:PORT or localhost:PORT, such as \"127.0.0.1:5432\", found \"db:5432\"",
        ),
        ("ready = { tcp = \"127.0.0.1\" }", "\"127", "ready.tcp", "found \"127.0.0.1\""),
        ("ready = { tcp = \"127.0.0.1:0\" }", "\"127", "ready.tcp", "found \"127.0.0.1:0\""),
        ("ready = { tcp = 5432 }", "5432", "ready.tcp", "found 5432"),
        ("ready = { unix = \"\" }", "\"\"", "ready.unix", "expected a path, found \"\""),
        (
            "ready = { http = \"https://x/\" }",
            "\"https",
            "ready.http",
            "expected a URL such as \"http://127.0.0.1:8080/healthz\", found \"https://x/\": only http:// URLs",
        ),
        (
            "ready = { http = \"http://db.example/\" }",
            "\"http",
            "ready.http",
            "found \"http://db.example/\": \"db.example\" is not an IP address or localhost",
        ),
        ("ready = { http = true }", "true", "ready.http", "found true"),
        ("ready = { log = \"(\" }", "\"(\"", "ready.log", "\"(\" is not a regular expression: "),
        (
            "ready = { log = [] }",
            "[]",
            "ready.log",
            "expected a regular expression that matches a line of the service's output, found an array",
        ),
        (
            "ready = { notify = \"systemd\", interval = \"0s\" }",
            "\"0s",
            "ready.interval",
            "expected a duration of more than zero, found \"0s\"",
        ),
        (
            "ready = { notify = \"systemd\", timeout = 60 }",
            "60",
            "ready.timeout",
            "found the number 60 (a duration needs a unit: write \"60s\")",
        ),
        (
            "ready = { notify = \"systemd\", every = \"1s\" }",
            "every",
            "ready.every",
            "unknown key; the valid keys are: notify, exec, tcp, unix, http, log, interval, timeout",
        ),
        (
            "ready = \"systemd\"",
            "\"systemd",
            "ready",
            "expected a table such as [service.web.ready], found \"systemd\"",
        ),
        (
            "ready = { interval = \"1s\" }",
            "{",
            "ready",
            "needs one way to tell readiness: one of the keys notify, exec, tcp, unix, http, log",
        ),
        (
            "ready = { notify = \"systemd\", exec = \"x\" }",
            "\"x\"",
            "ready.exec",
            "`notify` is given already: only one way to tell readiness is allowed (one of notify, exec, tcp,",
        ),
    ];
    for (line, at, key, want) in cases {
        let message = error_at(line, at, key);
        assert!(message.contains(want), "{line}: got {message:?}, want {want:?}");
    }
    let long = format!("ready = {{ unix = \"/{}\" }}", "s".repeat(107));
    let message = error_at(&long, "\"/", "ready.unix");
    assert!(message.starts_with("expected a socket path of at most 107 bytes, found \"/sss"), "{message}");
    assert!(message.contains("which is 108 bytes long"), "{message}");
}

#[test]
fn bad_health_values_point_at_the_value() {
    let probes = "a health check is one of: exec, tcp, unix, http";
    let cases = [
        (
            "health = { exec = \"x\", failures = 0 }",
            "0",
            "health.failures",
            "expected a number of failures in a row of at least 1, found 0".to_string(),
        ),
        ("health = { exec = \"x\", failures = \"3\" }", "\"3\"", "health.failures", "found \"3\"".into()),
        (
            "health = { exec = \"x\", interval = \"0s\" }",
            "\"0s",
            "health.interval",
            "expected a duration of more than zero".into(),
        ),
        (
            "health = { exec = \"x\", timeout = \"x\" }",
            "\"x\" }",
            "health.timeout",
            "expected a duration such as".into(),
        ),
        ("health = { tcp = \"x\" }", "\"x\"", "health.tcp", "expected an address IP:PORT or localhost:PORT".into()),
        (
            "health = { notify = \"systemd\" }",
            "notify",
            "health.notify",
            format!("`notify` tells when a service is ready (in [service.web.ready]); {probes}"),
        ),
        (
            "health = { log = \"up\" }",
            "log",
            "health.log",
            format!("`log` tells when a service is ready (in [service.web.ready]); {probes}"),
        ),
        ("health = { failures = 2 }", "{", "health", "needs one probe: one of the keys exec, tcp, unix, http".into()),
        (
            "health = { tcp = \"127.0.0.1:1\", http = \"http://127.0.0.1:1/\" }",
            "\"http",
            "health.http",
            "`tcp` is given already: only one probe is allowed (one of exec, tcp, unix, http)".into(),
        ),
        (
            "health = { exec = \"x\", every = 1 }",
            "every",
            "health.every",
            "unknown key; the valid keys are: exec, tcp, unix, http, interval, timeout, failures".into(),
        ),
        ("health = 1", "1", "health", "expected a table such as [service.web.health], found 1".into()),
    ];
    for (line, at, key, want) in cases {
        let message = error_at(line, at, key);
        assert!(message.contains(&want), "{line}: got {message:?}, want {want:?}");
    }
    // A misplaced `log` beside a probe is the only error.
    let e = one_error("[service.web]\ncommand = \"x\"\n[service.web.health]\nexec = \"x\"\nlog = \"up\"\n");
    assert_at(&e, 5, 1, Some("web"), Some("health.log"));
}

#[test]
fn a_table_without_a_way_to_tell_readiness_points_at_its_header() {
    let e = one_error("[service.db]\ncommand = \"x\"\n\n[service.db.ready]\ninterval = \"1s\"\n");
    assert_at(&e, 4, 1, Some("db"), Some("ready"));
    assert_eq!(e.message, "needs one way to tell readiness: one of the keys notify, exec, tcp, unix, http, log");
}

#[test]
fn the_engines_rules_are_reported_at_the_value() {
    // A NUL byte in a command: the CLI leaves that rule to the core.
    let e = one_error("[service.web]\ncommand = \"x\"\nready.exec = \"ok\\u0000x\"\n");
    assert_at(&e, 3, 14, Some("web"), Some("ready.exec"));
    assert_eq!(e.message, "an argument contains a NUL byte");
}

#[test]
fn bad_watchdogs() {
    let e = error_at("watchdog = \"0s\"\nready.notify = \"systemd\"", "\"0s", "watchdog");
    assert_eq!(e, "expected a duration of more than zero, found \"0s\"");
    let e = error_at("watchdog = 30\nready.notify = \"systemd\"", "30", "watchdog");
    assert!(e.ends_with("found the number 30 (a duration needs a unit: write \"30s\")"), "{e}");
    let e = error_at("watchdog = \"30s\"", "\"30s", "watchdog");
    assert_eq!(
        e,
        "a watchdog needs ready.notify = \"systemd\" (the service sends WATCHDOG=1 over sd_notify), but this \
         service has no ready table"
    );
    let e = error_at("watchdog = \"30s\"\nready.tcp = \"127.0.0.1:80\"", "\"30s", "watchdog");
    assert!(e.ends_with("but its readiness is told by tcp"), "{e}");
    let e = error_at("watchdog = \"30s\"\nready.notify = \"fd:3\"", "\"30s", "watchdog");
    assert!(e.ends_with("but its readiness is told by notify = \"fd:3\""), "{e}");
    // A ready table with an error of its own: that error only.
    let e = one_error("[service.web]\ncommand = \"x\"\nwatchdog = \"30s\"\nready.notify = \"fd:1\"\n");
    assert_eq!(e.key.as_deref(), Some("ready.notify"));
}

#[test]
fn bad_requires_and_after() {
    let e = error_at("requires = \"db\"", "\"db", "requires");
    assert_eq!(e, "expected an array of service names, such as requires = [\"db\"], found \"db\"");
    let e = error_at("after = [1]", "1]", "after");
    assert_eq!(e, "expected a service name, found 1");
    let e = error_at("after = [\"web\"]", "\"web", "after");
    assert_eq!(e, "\"web\" is this service: a service cannot wait for itself");
    let e = error_at("requires = [\"nope\"]", "\"nope", "requires");
    assert_eq!(e, "no service named \"nope\"");

    let text = "[service.db]\ncommand = \"x\"\n[service.web]\ncommand = \"x\"\nafter = [\"db\", \"db\"]\n";
    let e = one_error(text);
    assert_at(&e, 5, 16, Some("web"), Some("after"));
    assert_eq!(e.message, "\"db\" is named twice");
    // In both lists is fine: needed, and started after.
    ok("[service.db]\ncommand = \"x\"\n[service.web]\ncommand = \"x\"\nrequires = [\"db\"]\nafter = [\"db\"]\n");

    // A task cannot be waited for; an external service can.
    let text = r#"[service.backup]
kind = "task"
command = "x"
interval = "1h"
[service.db]
kind = "external"
start = "x"
[service.web]
command = "x"
requires = ["db", "backup"]
"#;
    let e = one_error(text);
    assert_at(&e, 10, 19, Some("web"), Some("requires"));
    assert_eq!(
        e.message,
        "\"backup\" is a task, which is never ready: requires and after name daemons and external services"
    );
    // A service whose table has errors is not reported again as unknown.
    let errs = errors("[service.db]\nstop_timeout = \"1s\"\n[service.web]\ncommand = \"x\"\nrequires = [\"db\"]\n");
    assert_eq!(errs.len(), 1, "{}", ConfigErrors(errs.clone()));
    assert_eq!(errs[0].key.as_deref(), Some("command"));
}

#[test]
fn keys_for_daemons_only_and_not_for_external_services() {
    let task = "[service.t]\nkind = \"task\"\ncommand = \"x\"\ninterval = \"1m\"\n";
    // A dotted key's table is where the line starts.
    for (line, key, column) in [
        ("ready.notify = \"systemd\"", "ready", 1),
        ("health.exec = \"x\"", "health", 1),
        ("watchdog = \"1s\"", "watchdog", 12),
    ] {
        let e = one_error(&format!("{task}{line}\n"));
        assert_at(&e, 5, column, Some("t"), Some(key));
        assert_eq!(e.message, format!("`{key}` does not apply to kind = \"task\" (it is for kind = \"daemon\")"));
    }
    let external = "[service.db]\ncommand = \"x\"\n[service.x]\nkind = \"external\"\nstart = \"x\"\n";
    for (line, key, column) in [
        ("requires = [\"db\"]", "requires", 12),
        ("after = [\"db\"]", "after", 9),
        ("health = { exec = \"x\" }", "health", 10),
    ] {
        let e = one_error(&format!("{external}{line}\n"));
        assert_at(&e, 6, column, Some("x"), Some(key));
        let which = if key == "health" {
            "(it is for kind = \"daemon\")"
        } else {
            "(it is for kind = \"daemon\" and kind = \"task\")"
        };
        assert_eq!(e.message, format!("`{key}` does not apply to kind = \"external\" {which}"));
    }
}

#[test]
fn one_error_per_cycle_at_the_name_that_closes_it() {
    let text = r#"[service.a]
command = "x"
requires = ["b"]

[service.b]
command = "x"
after = ["c"]

[service.c]
command = "x"
requires = ["a"]

[service.d]
command = "x"
after = ["e"]

[service.e]
command = "x"
requires = ["d"]
"#;
    let errs = errors(text);
    assert_eq!(errs.len(), 2, "{}", ConfigErrors(errs.clone()));
    assert_at(&errs[0], 11, 13, Some("c"), Some("requires"));
    assert_eq!(errs[0].message, "a cycle: a -> b -> c -> a (each waits for the next, so none can start)");
    assert_at(&errs[1], 19, 13, Some("e"), Some("requires"));
    assert_eq!(errs[1].message, "a cycle: d -> e -> d (each waits for the next, so none can start)");
    assert_eq!(
        errs[0].to_string(),
        "/etc/sv/demo.toml:11:13: service \"c\", key \"requires\": a cycle: a -> b -> c -> a (each waits for the \
         next, so none can start)"
    );
}

#[test]
fn services_come_after_those_they_name() {
    let web = "[service.web]\ncommand = \"x\"\nrequires = [\"db\"]\n";
    let db = "[service.db]\ncommand = \"x\"\n";
    assert_eq!(order(&format!("{web}{db}")), ["db", "web"]);
    // A named service moves up to just before the first that needs it;
    // the others keep the file's order.
    let text = r#"
[service.a]
command = "x"
after = ["c"]
[service.b]
command = "x"
[service.c]
command = "x"
requires = ["e"]
[service.d]
command = "x"
requires = ["b"]
[service.e]
command = "x"
[service.f]
command = "x"
"#;
    assert_eq!(order(text), ["e", "c", "a", "b", "d", "f"]);
    // Already in order: unchanged.
    assert_eq!(order(&format!("{db}{web}[service.z]\ncommand = \"x\"\n")), ["db", "web", "z"]);
}
