use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use log::LevelFilter;
use supervisor_core::limits::UNLIMITED;
use supervisor_core::{Command, Expected, Limits, Output, RestartMode, Service, Signal, Timestamps, TranscriptConfig};

use super::*;

/// `[supervisor] exit_when` and `[service.NAME] critical`.
mod exit;
/// `[supervisor] metrics`.
mod metrics;
/// `ready`, `health`, `watchdog`, `requires` and `after`.
mod readiness;

const PATH: &str = "/etc/sv/demo.toml";

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse(Path::new(PATH), text)
}

fn ok(text: &str) -> Config {
    parse(text).unwrap_or_else(|e| panic!("unexpected errors:\n{e}"))
}

fn errors(text: &str) -> Vec<ConfigError> {
    match parse(text) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => e.0,
    }
}

fn one_error(text: &str) -> ConfigError {
    let mut e = errors(text);
    assert_eq!(e.len(), 1, "expected one error, got:\n{}", ConfigErrors(e.clone()));
    e.remove(0)
}

/// Asserts where an error points and what it concerns.
#[track_caller]
fn assert_at(e: &ConfigError, line: usize, column: usize, service: Option<&str>, key: Option<&str>) {
    assert_eq!(
        (e.line, e.column, e.service.as_deref(), e.key.as_deref()),
        (Some(line), Some(column), service, key),
        "{e}"
    );
}

/// The only error of a service `web` whose third line is `line`
/// (`key = value`); it must point at the value.
#[track_caller]
fn bad_value(line: &str) -> String {
    let text = format!("[service.web]\ncommand = \"x\"\n{line}\n");
    let e = one_error(&text);
    let key = line.split('=').next().unwrap().trim();
    let column = line.find('=').unwrap() + 3;
    assert_at(&e, 3, column, Some("web"), Some(key));
    e.message
}

fn service(text: &str) -> Service {
    let mut c = ok(text);
    assert_eq!(c.services.len(), 1);
    c.services.remove(0)
}

fn argv(words: &[&str]) -> Command {
    Command::Argv(words.iter().map(std::string::ToString::to_string).collect())
}

#[test]
fn complete_config_with_every_key() {
    let c = ok(r#"
[supervisor]
name = "prod"
runtime_dir = "/var/run/sv"
directory = "/var/lib/sv"
umask = "077"
log_level = "debug"
allow_uids = [1000, "root"]
allow_groups = ["root", 44]

[service.web]
command = ["/usr/bin/python3", "-m", "http.server", "8000"]
shell = false
directory = "/srv/www"
env = { PORT = 8000, RATIO = 0.5, DEBUG = true, NAME = "web" }
clear_env = true
umask = "027"
user = "root"
group = 0
expected = "stopped"
restart = "on-failure"
exit_codes = [0, 3]
min_uptime = "2s"
backoff_limit = "1m"
forever = true
stop_signal = "INT"
stop_timeout = "500ms"
stdout = "/var/log/web.out"
stderr = "transcript"
pidfile = "/run/web.pid"
limits = { mem = "512MB", files = 1024, procs = 200, cpu = "1m", core = 0 }
lock = "/run/web.lock"

[service.web.transcript]
path = "/var/log/web.transcript"
timestamps = "tai64n"
tag = true
max_size = "10MB"
keep = 3
"#);
    assert_eq!(c.path, PathBuf::from(PATH));
    assert_eq!(c.name, "prod");
    assert_eq!(c.runtime_dir, PathBuf::from("/var/run/sv"));
    assert_eq!(c.directory, PathBuf::from("/var/lib/sv"));
    assert_eq!(c.umask, 0o077);
    assert_eq!(c.log_level, LevelFilter::Debug);
    assert_eq!(c.access, AccessPolicy { uids: vec![1000, 0], gids: vec![0, 44] });
    assert_eq!(c.run_dir(), PathBuf::from("/var/run/sv/run"));
    assert_eq!(c.socket_path(), PathBuf::from("/var/run/sv/run/control.sock"));
    assert_eq!(c.pidfile_path(), PathBuf::from("/var/run/sv/run/supervisor.pid"));
    assert_eq!(c.state_path(), PathBuf::from("/var/run/sv/run/state.json"));
    assert_eq!(c.log_dir(), PathBuf::from("/var/run/sv/log"));
    assert_eq!(c.console_dir(), PathBuf::from("/var/run/sv/console"));
    let vars: BTreeMap<String, String> = [("PORT", "8000"), ("RATIO", "0.5"), ("DEBUG", "true"), ("NAME", "web")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let mut expected = Service::new("web", argv(&["/usr/bin/python3", "-m", "http.server", "8000"]));
    expected.directory = Some(PathBuf::from("/srv/www"));
    expected.env.clear = true;
    expected.env.vars = vars;
    expected.umask = Some(0o027);
    expected.user = Some("root".into());
    expected.group = Some("0".into());
    expected.expected = Expected::Stopped;
    let r = &mut expected.restart;
    r.mode = RestartMode::OnFailure;
    r.exit_codes = vec![0, 3];
    r.min_uptime = Duration::from_secs(2);
    r.backoff_limit = Duration::from_secs(60);
    r.backoff_step = Duration::from_secs(1);
    r.forever = true;
    expected.stop_signal = Signal::SIGINT;
    expected.stop_timeout = Duration::from_millis(500);
    expected.stdout = Output::File(PathBuf::from("/var/log/web.out"));
    expected.stderr = Output::Transcript;
    let mut t = TranscriptConfig::new("/var/log/web.transcript");
    t.timestamps = Timestamps::Tai64n;
    t.tag = true;
    t.max_size = Some(10_000_000);
    t.keep = 3;
    expected.transcript = Some(t);
    expected.pidfile = Some(PathBuf::from("/run/web.pid"));
    let l = &mut expected.limits;
    (l.mem, l.files, l.procs, l.cpu, l.core) = (Some(512_000_000), Some(1024), Some(200), Some(60), Some(0));
    expected.lock = Some(PathBuf::from("/run/web.lock"));
    assert_eq!(c.services, vec![expected]);
}

#[test]
fn defaults() {
    let c = ok("[service.web]\ncommand = \"sleep 10\"\n");
    assert_eq!(c.name, "demo");
    assert_eq!(c.log_level, LevelFilter::Info);
    assert_eq!(c.access, AccessPolicy::default());
    let xdg = std::env::var_os("XDG_RUNTIME_DIR");
    let runtime_dir = default_runtime_dir("demo", nix::unistd::geteuid().as_raw(), xdg.as_deref());
    assert_eq!(c.runtime_dir, runtime_dir);
    assert_eq!(c.directory, PathBuf::from("/"));
    assert_eq!(c.umask, 0o022);
    let mut expected = Service::new("web", argv(&["sleep", "10"]));
    expected.stdout = Output::Transcript;
    expected.stderr = Output::Transcript;
    expected.transcript = Some(TranscriptConfig::new(runtime_dir.join("console/web.log")));
    assert_eq!(c.services, vec![expected]);
    let s = &c.services[0];
    assert_eq!(s.restart.min_uptime, Duration::from_secs(1));
    assert_eq!(s.restart.backoff_limit, Duration::from_secs(10));
    assert_eq!(s.stop_timeout, Duration::from_secs(10));
    assert_eq!(s.stop_signal, Signal::SIGTERM);
    assert_eq!(s.pidfile, None);
    let t = s.transcript.as_ref().unwrap();
    assert_eq!((t.timestamps, t.tag, t.max_size, t.keep), (Timestamps::None, false, None, 5));
    assert_eq!(t.path, c.console_dir().join("web.log"));
}

#[test]
fn default_runtime_dir_rules() {
    let xdg = Some(OsStr::new("/run/user/1000"));
    assert_eq!(default_runtime_dir("a", 0, xdg), PathBuf::from("/run/supervisor/a"));
    assert_eq!(default_runtime_dir("a", 1000, xdg), PathBuf::from("/run/user/1000/supervisor/a"));
    assert_eq!(default_runtime_dir("a", 1000, Some(OsStr::new(""))), PathBuf::from("/tmp/supervisor-1000/a"));
    assert_eq!(default_runtime_dir("a", 1000, None), PathBuf::from("/tmp/supervisor-1000/a"));
}

#[test]
fn empty_files_and_files_without_services_are_valid() {
    assert!(ok("").services.is_empty());
    assert!(ok("# nothing\n[service]\n").services.is_empty());
    let c = ok("[supervisor]\nname = \"x.y-z_1\"\nlog_level = \"warning\"\n");
    assert_eq!((c.name.as_str(), c.log_level), ("x.y-z_1", LevelFilter::Warn));
}

#[test]
fn string_and_array_commands() {
    let s = service(
        r#"[service.a]
command = "echo 'a b' \"c d\" e\\ f""#,
    );
    assert_eq!(s.command, argv(&["echo", "a b", "c d", "e f"]));
    let s = service("[service.a]\ncommand = ['/bin/echo', 'a b', '']\n");
    assert_eq!(s.command, argv(&["/bin/echo", "a b", ""]));
    let s = service("[service.a]\ncommand = '''\nsleep\n  30'''\n");
    assert_eq!(s.command, argv(&["sleep", "30"]));
}

#[test]
fn shell_commands() {
    let s = service("[service.a]\ncommand = \"echo $HOME | wc -c\"\nshell = true\n");
    assert_eq!(s.command, Command::Shell("echo $HOME | wc -c".into()));
    let s = service("[service.a]\ncommand = \"echo $HOME\"\nshell = false\n");
    assert_eq!(s.command, argv(&["echo", "$HOME"]));

    let e = one_error("[service.a]\nshell = true\ncommand = [\"echo\", \"x\"]\n");
    assert_at(&e, 3, 11, Some("a"), Some("command"));
    assert!(e.message.contains("expected a string (with shell = true"), "{e}");
    assert!(e.message.ends_with("found an array"), "{e}");
    let e = one_error("[service.a]\nshell = true\ncommand = \"  \"\n");
    assert_at(&e, 3, 11, Some("a"), Some("command"));
}

#[test]
fn bad_commands() {
    let e = one_error("[service.web]\ncommand = \"echo 'unterminated\"\n");
    assert_at(&e, 2, 11, Some("web"), Some("command"));
    assert!(e.message.contains("cannot be split into words: unterminated single quote"), "{e}");
    let e = one_error("[service.web]\ncommand = \"   \"\n");
    assert_at(&e, 2, 11, Some("web"), Some("command"));
    assert!(e.message.contains("empty command"), "{e}");
    let e = one_error("[service.web]\ncommand = []\n");
    assert_at(&e, 2, 11, Some("web"), Some("command"));
    assert!(e.message.contains("non-empty array"), "{e}");
    let e = one_error("[service.web]\ncommand = 42\n");
    assert_eq!(e.message, "expected a command line or a non-empty array of strings, found 42");
    let e = one_error("[service.web]\ncommand = [\"echo\", 1]\n");
    assert_at(&e, 2, 20, Some("web"), Some("command"));
    assert!(e.message.ends_with("found 1"), "{e}");
    let e = one_error("[service.web]\ncommand = [\"\", \"x\"]\n");
    assert_at(&e, 2, 12, Some("web"), Some("command"));
}

#[test]
fn missing_command_points_at_the_service() {
    let e = one_error("[service.web]\nstop_timeout = \"1s\"\n");
    assert_at(&e, 1, 10, Some("web"), Some("command"));
    assert!(e.message.starts_with("missing required key"), "{e}");
}

#[test]
fn every_kind_of_bad_value() {
    let cases = [
        ("shell = \"yes\"", "expected true or false, found \"yes\""),
        ("directory = \"\"", "expected a path, found \"\""),
        ("directory = 5", "expected a path, found 5"),
        ("env = \"A=1\"", "expected a table, found \"A=1\""),
        ("clear_env = 1", "expected true or false, found 1"),
        ("umask = \"0999\"", "found \"0999\""),
        ("umask = \"abc\"", "found \"abc\""),
        ("umask = 0o1777", "found 0o1777"),
        ("umask = 22", "found the decimal integer 22 (write \"022\" or 0o22)"),
        ("umask = -1", "found -1"),
        ("user = \"no-such-user-xyz\"", "expected an existing user, found \"no-such-user-xyz\": no such user"),
        ("user = 4000000", "expected an existing user, found \"4000000\": no such user"),
        ("user = -3", "expected a user name or a numeric id, found -3"),
        ("user = \"\"", "expected a user name or a numeric id, found \"\""),
        ("group = \"no-such-group-xyz\"", "expected an existing group, found \"no-such-group-xyz\": no such group"),
        ("group = true", "expected a group name or a numeric id, found true"),
        ("expected = \"up\"", "expected one of \"running\", \"stopped\", found \"up\""),
        ("restart = \"sometimes\"", "expected one of \"always\", \"on-failure\", \"never\", found \"sometimes\""),
        ("restart = true", "found true"),
        ("exit_codes = 1", "expected an array, found 1"),
        ("min_uptime = \"ten\"", "expected a duration such as \"10s\" or \"500ms\", found \"ten\""),
        ("backoff_limit = 10", "found the number 10 (a duration needs a unit: write \"10s\")"),
        ("backoff_limit = \"1000years\"", "expected a duration of at most 365 days, found \"1000years\""),
        ("stop_timeout = 1.5", "found 1.5"),
        ("stop_timeout = [\"1s\"]", "found an array"),
        ("forever = \"true\"", "expected true or false, found \"true\""),
        (
            "stop_signal = \"FOO\"",
            "expected a signal name such as \"TERM\" or \"SIGHUP\", or a signal number, found \"FOO\"",
        ),
        ("stop_signal = 999", "found 999"),
        ("stop_signal = 1979-05-27", "found the date-time 1979-05-27"),
        ("stdout = \"\"", "expected \"transcript\", \"inherit\", \"null\" or a file path, found \"\""),
        ("stderr = { path = \"x\" }", "found a table"),
        ("stdout = 1", "found 1"),
        ("pidfile = \"\"", "expected a path, found \"\""),
        ("pidfile = true", "expected a path, found true"),
        ("transcript = \"web.log\"", "expected a table such as [service.web.transcript], found \"web.log\""),
    ];
    for (line, want) in cases {
        let message = bad_value(line);
        assert!(message.contains(want), "{line}: got {message:?}, want {want:?}");
    }
}

#[test]
fn bad_array_elements_point_at_the_element() {
    let e = one_error("[service.web]\ncommand = \"x\"\nexit_codes = [0, 256, 1]\n");
    assert_at(&e, 3, 18, Some("web"), Some("exit_codes"));
    assert_eq!(e.message, "expected an exit code from 0 to 255, found 256");

    let e = one_error("[supervisor]\nallow_uids = [0, \"no-such-user-xyz\"]\n");
    assert_at(&e, 2, 18, None, Some("allow_uids"));
    assert!(e.message.contains("no such user"), "{e}");
    let e = one_error("[supervisor]\nallow_groups = [true]\n");
    assert_at(&e, 2, 17, None, Some("allow_groups"));
    assert_eq!(e.message, "expected a group name or a numeric id, found true");
}

#[test]
fn bad_supervisor_values() {
    let e = one_error("[supervisor]\nname = \"a/b\"\n");
    assert_at(&e, 2, 8, None, Some("name"));
    let e = one_error("[supervisor]\nname = \"..\"\n");
    assert_at(&e, 2, 8, None, Some("name"));
    let e = one_error("[supervisor]\nlog_level = \"loud\"\n");
    assert_at(&e, 2, 13, None, Some("log_level"));
    assert!(e.message.contains("\"debug\", \"info\", \"warn\", \"warning\", \"error\""), "{e}");
    let e = one_error("[supervisor]\nruntime_dir = 3\n");
    assert_at(&e, 2, 15, None, Some("runtime_dir"));
    let e = one_error("supervisor = 3\n");
    assert_at(&e, 1, 14, None, Some("supervisor"));
    let e = one_error("service = [1]\n");
    assert_at(&e, 1, 11, None, Some("service"));
    let e = one_error("[service]\nweb = \"sleep 1\"\n");
    assert_at(&e, 2, 7, Some("web"), None);
    assert_eq!(e.message, "expected a table such as [service.web], found \"sleep 1\"");
}

#[test]
fn env_values_and_names() {
    let s = service("[service.a]\ncommand = \"x\"\n[service.a.env]\nN = 0x10\nF = -2.5e3\nB = false\n\"A B\" = 'q'\n");
    let got: Vec<(&str, &str)> = s.env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(got, [("A B", "q"), ("B", "false"), ("F", "-2.5e3"), ("N", "16")]);
    assert!(!s.env.clear);

    let e = one_error("[service.a]\ncommand = \"x\"\nenv = { OK = 1, LIST = [1] }\n");
    assert_at(&e, 3, 24, Some("a"), Some("env"));
    assert_eq!(e.message, "expected a string, number or boolean for variable \"LIST\", found an array");
    let e = one_error("[service.a]\ncommand = \"x\"\nenv = { \"A=B\" = \"1\" }\n");
    assert_at(&e, 3, 9, Some("a"), Some("env"));
    assert!(e.message.contains("invalid variable name \"A=B\""), "{e}");
}

#[test]
fn umask_forms() {
    let umask = |v: &str| service(&format!("[service.a]\ncommand = \"x\"\numask = {v}\n")).umask;
    assert_eq!(umask("\"022\""), Some(0o022));
    assert_eq!(umask("\"0027\""), Some(0o027));
    assert_eq!(umask("\"7\""), Some(0o7));
    assert_eq!(umask("0o077"), Some(0o077));
    assert_eq!(umask("0"), Some(0));
    assert_eq!(umask("\"777\""), Some(0o777));
}

#[test]
fn signals_users_and_groups() {
    let s = service("[service.a]\ncommand = \"x\"\nstop_signal = \"SIGHUP\"\nuser = 0\ngroup = \"root\"\n");
    assert_eq!(s.stop_signal, Signal::SIGHUP);
    assert_eq!((s.user.as_deref(), s.group.as_deref()), (Some("0"), Some("root")));
    let s = service("[service.a]\ncommand = \"x\"\nstop_signal = 9\ngroup = 12345\n");
    assert_eq!(s.stop_signal, Signal::SIGKILL);
    assert_eq!(s.group.as_deref(), Some("12345"));
    let s = service("[service.a]\ncommand = \"x\"\nstop_signal = \"usr1\"\n");
    assert_eq!(s.stop_signal, Signal::SIGUSR1);
}

#[test]
fn forever_needs_a_positive_limit() {
    let e = one_error("[service.a]\ncommand = \"x\"\nbackoff_limit = \"0s\"\nforever = true\n");
    assert_at(&e, 4, 11, Some("a"), Some("forever"));
    assert!(service("[service.a]\ncommand = \"x\"\nbackoff_limit = \"0s\"\n").restart.backoff_limit.is_zero());
}

#[test]
fn unknown_keys_everywhere() {
    let errs = errors(
        "servce = 1\n[supervisor]\nnmae = \"x\"\n[service.web]\ncommand = \"x\"\nstop_timout = \"1s\"\n[service.web.env]\nOK = \"1\"\n",
    );
    assert_eq!(errs.len(), 3, "{}", ConfigErrors(errs.clone()));
    assert_at(&errs[0], 1, 1, None, Some("servce"));
    assert_eq!(errs[0].message, "unknown key; the valid keys are: supervisor, service, group");
    assert_at(&errs[1], 3, 1, None, Some("nmae"));
    assert!(
        errs[1].message.starts_with("unknown key; the valid keys are: name, runtime_dir, directory, umask, log_level"),
        "{}",
        errs[1].message
    );
    assert_at(&errs[2], 6, 1, Some("web"), Some("stop_timout"));
    assert!(errs[2].message.contains("command, shell, directory,"), "{}", errs[2]);
    assert!(
        errs[2].message.contains("transcript, pidfile, limits, lock, finish, finish_timeout, follow"),
        "{}",
        errs[2]
    );
}

#[test]
fn all_errors_are_reported_in_file_order() {
    let text = r#"[service.b]
command = "x"
stop_timeout = "ten"
restart = "sometimes"

[service.a]
stop_signal = "NOPE"
umask = "888"

[supervisor]
log_level = "chatty"
"#;
    let errs = errors(text);
    let got: Vec<_> = errs
        .iter()
        .map(|e| (e.line.unwrap(), e.service.as_deref().unwrap_or("-"), e.key.as_deref().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (3, "b", "stop_timeout"),
            (4, "b", "restart"),
            (6, "a", "command"),
            (7, "a", "stop_signal"),
            (8, "a", "umask"),
            (11, "-", "log_level")
        ]
    );
    let shown = ConfigErrors(errs).to_string();
    assert_eq!(shown.lines().count(), 6);
    assert!(shown.starts_with("/etc/sv/demo.toml:3:16: service \"b\", key \"stop_timeout\": expected a duration"));
}

#[test]
fn the_documented_error_format() {
    let mut text = String::from("[service.web]\ncommand = \"x\"\n");
    text.push_str(&"# padding\n".repeat(9));
    text.push_str("stop_timeout = \"ten\"\n");
    let errs = Config::parse(Path::new("demo.toml"), &text).unwrap_err();
    assert_eq!(
        errs.to_string(),
        "demo.toml:12:16: service \"web\", key \"stop_timeout\": expected a duration such as \"10s\" or \"500ms\", found \"ten\""
    );
    let e = ConfigError::new(Path::new("x.toml"), "boom");
    assert_eq!(e.to_string(), "x.toml: boom");
    let e = ConfigError { line: Some(3), column: Some(1), key: Some("k".into()), ..e };
    assert_eq!(e.to_string(), "x.toml:3:1: key \"k\": boom");
}

#[test]
fn columns_count_characters() {
    let e = one_error("[service.web]\ncommand = \"x\"\nenv = { \"é\" = 1, X = [] }\n");
    assert_at(&e, 3, 22, Some("web"), Some("env"));
}

#[test]
fn syntax_errors_are_reported_once_with_the_service() {
    let e = one_error("[supervisor]\nname = \"a\"\n\n[service.web]\ncommand = \"x\nstop_timeout = = 1\n");
    assert_eq!((e.line, e.service.as_deref(), e.key.as_deref()), (Some(5), Some("web"), None), "{e}");
    assert!(e.message.starts_with("invalid TOML: "), "{e}");

    let e = one_error("[service.\"my app\"]\ncommand = \"x\"\ncommand = \"y\"\n");
    assert_at(&e, 3, 1, Some("my app"), None);
    assert!(e.message.contains("duplicate key"), "{e}");

    let e = one_error("[supervisor]\nname = = 1\n");
    assert_eq!((e.line, e.column, e.service.as_deref()), (Some(2), Some(8), None), "{e}");
}

#[test]
fn invalid_names() {
    let e = one_error("[service.\"a b\"]\ncommand = \"x\"\n");
    assert_at(&e, 1, 10, Some("a b"), None);
    assert!(e.message.starts_with("invalid service name"), "{e}");
    let e = one_error("[service.\".\"]\ncommand = \"x\"\n");
    assert_at(&e, 1, 10, Some("."), None);

    let errs = Config::parse(Path::new("/etc/my config.toml"), "").unwrap_err().0;
    assert_eq!(errs.len(), 1);
    assert_eq!((errs[0].line, errs[0].service.as_deref()), (None, None));
    assert!(errs[0].message.contains("\"my config\""), "{}", errs[0]);
    assert_eq!(ok_at("/etc/my config.toml", "[supervisor]\nname = \"mine\"\n").name, "mine");
}

fn ok_at(path: &str, text: &str) -> Config {
    Config::parse(Path::new(path), text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn relative_paths_are_resolved_against_the_config_directory() {
    let text = r#"
[supervisor]
runtime_dir = "state"
directory = "./home"

[service.web]
command = "./web"
directory = "./www"
stdout = "logs/web.out"
stderr = "../shared/err.log"
pidfile = "pids/web.pid"

[service.abs]
command = "x"
directory = "/srv"
stdout = "inherit"
stderr = "/var/log/abs.err"
"#;
    let c = ok_at("/etc/sv/demo.toml", text);
    assert_eq!(c.runtime_dir, PathBuf::from("/etc/sv/state"));
    assert_eq!(c.directory, PathBuf::from("/etc/sv/home"));
    assert_eq!(c.socket_path(), PathBuf::from("/etc/sv/state/run/control.sock"));
    let web = &c.services[0];
    assert_eq!(web.command, argv(&["./web"]), "commands are not paths");
    assert_eq!(web.directory, Some(PathBuf::from("/etc/sv/www")));
    assert_eq!(web.stdout, Output::File(PathBuf::from("/etc/sv/logs/web.out")));
    assert_eq!(web.stderr, Output::File(PathBuf::from("/etc/sv/../shared/err.log")));
    assert_eq!(web.pidfile, Some(PathBuf::from("/etc/sv/pids/web.pid")));
    assert_eq!(web.transcript, None);
    let abs = &c.services[1];
    assert_eq!(abs.directory, Some(PathBuf::from("/srv")));
    assert_eq!(abs.stdout, Output::Inherit);
    assert_eq!(abs.stderr, Output::File(PathBuf::from("/var/log/abs.err")));
    assert_eq!(abs.transcript, None);

    let cwd = std::env::current_dir().unwrap();
    let c = ok_at("demo.toml", "[service.a]\ncommand = \"x\"\ndirectory = \"www\"\n");
    assert_eq!(c.path, PathBuf::from("demo.toml"));
    assert_eq!(c.services[0].directory, Some(cwd.join("www")));
    let c = ok_at("conf/demo.toml", "[service.a]\ncommand = \"x\"\nstdout = \"./a.log\"\n");
    assert_eq!(c.services[0].stdout, Output::File(cwd.join("conf/a.log")));
    let c = ok_at("conf/demo.toml", "[supervisor]\ndirectory = \".\"\n[service.a]\ncommand = \"x\"\n");
    assert_eq!(c.directory, cwd.join("conf"));
    let text = "[supervisor]\nruntime_dir = \"rt\"\n[service.a]\ncommand = \"x\"\ntranscript.path = \"out/a.log\"\n";
    let c = ok_at("conf/demo.toml", text);
    assert_eq!(c.runtime_dir, cwd.join("conf/rt"));
    assert_eq!(c.services[0].transcript.as_ref().map(|t| t.path.clone()), Some(cwd.join("conf/out/a.log")));
}

#[test]
fn services_keep_file_order() {
    let c = ok(r#"
[service.zeta]
command = "z"
[service.alpha]
command = "a"
[service]
mid.command = "m"
[service.beta]
command = "b"
[service."0"]
command = ["0"]
"#);
    let names: Vec<&str> = c.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha", "mid", "beta", "0"]);
    let c = ok("service = { b = { command = \"b\" }, a = { command = \"a\" } }\n");
    let names: Vec<&str> = c.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["b", "a"]);
}

#[test]
fn load_reads_the_file_or_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.toml");
    std::fs::write(&path, "[service.web]\ncommand = \"sleep 1\"\nstdout = \"web.log\"\n").unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!((c.name.as_str(), c.path.as_path()), ("site", path.as_path()));
    assert_eq!(c.services[0].stdout, Output::File(dir.path().join("web.log")));

    let missing = dir.path().join("missing.toml");
    let errs = Config::load(&missing).unwrap_err().0;
    assert_eq!(errs.len(), 1);
    assert_eq!((errs[0].path.as_path(), errs[0].line), (missing.as_path(), None));
    assert!(errs[0].to_string().starts_with(&format!("{}: cannot read the configuration: ", missing.display())));
}

/// The transcript of the only service of a config with runtime directory
/// `/rt`, whose service table ends with `lines`.
#[track_caller]
fn transcript_of(lines: &str) -> Option<TranscriptConfig> {
    let text = format!("[supervisor]\nruntime_dir = \"/rt\"\n[service.web]\ncommand = \"x\"\n{lines}\n");
    service(&text).transcript
}

#[test]
fn outputs_go_to_the_transcript_by_default() {
    let s = service("[supervisor]\nruntime_dir = \"/rt\"\n[service.web]\ncommand = \"x\"\n");
    assert_eq!((s.stdout, s.stderr), (Output::Transcript, Output::Transcript));
    assert_eq!(s.transcript, Some(TranscriptConfig::new("/rt/console/web.log")));

    let s = service("[supervisor]\nruntime_dir = \"/rt\"\n[service.web]\ncommand = \"x\"\nstdout = \"null\"\n");
    assert_eq!((s.stdout, s.stderr), (Output::Null, Output::Transcript));
    assert_eq!(s.transcript, Some(TranscriptConfig::new("/rt/console/web.log")));
    let s = service("[service.web]\ncommand = \"x\"\nstdout = \"transcript\"\nstderr = \"inherit\"\n");
    assert_eq!((s.stdout, s.stderr), (Output::Transcript, Output::Inherit));
    assert!(s.transcript.is_some());
    let s = service("[service.web]\ncommand = \"x\"\nstdout = \"./transcript\"\nstderr = \"inherit\"\n");
    assert_eq!(s.stdout, Output::File(PathBuf::from("/etc/sv/transcript")));
    assert_eq!(s.transcript, None);

    // A transcript that no stream goes to is checked, but not kept.
    let unused = "stdout = \"null\"\nstderr = \"inherit\"\n[service.web.transcript]\ntag = true\n";
    assert_eq!(transcript_of(unused), None);
    let e =
        one_error("[service.web]\ncommand = \"x\"\nstdout = \"null\"\nstderr = \"null\"\ntranscript = { tag = 1 }\n");
    assert_at(&e, 5, 22, Some("web"), Some("transcript.tag"));
}

#[test]
fn transcript_tables() {
    let t = transcript_of("[service.web.transcript]\npath = \"/var/log/web.log\"\ntimestamps = \"rfc3339\"\n").unwrap();
    assert_eq!(
        (t.path.to_str(), t.timestamps, t.tag, t.max_size, t.keep),
        (Some("/var/log/web.log"), Timestamps::Rfc3339, false, None, 5)
    );
    let t = transcript_of("transcript = { tag = true, keep = 0, max_size = 4096 }").unwrap();
    assert_eq!(
        (t.path.to_str(), t.timestamps, t.tag, t.max_size, t.keep),
        (Some("/rt/console/web.log"), Timestamps::None, true, Some(4096), 0)
    );
    let t = transcript_of("transcript.timestamps = \"none\"\ntranscript.keep = 1000").unwrap();
    assert_eq!((t.timestamps, t.keep), (Timestamps::None, 1000));
    let t = transcript_of("transcript = {}").unwrap();
    assert_eq!(t, TranscriptConfig::new("/rt/console/web.log"));
    let t = transcript_of("[service.web.transcript]\npath = \"logs/../web.log\"\ntimestamps = \"tai64n\"").unwrap();
    assert_eq!((t.path, t.timestamps), (PathBuf::from("/etc/sv/logs/../web.log"), Timestamps::Tai64n));
}

#[test]
fn transcript_sizes() {
    let size = |v: &str| transcript_of(&format!("transcript.max_size = {v}")).unwrap().max_size;
    assert_eq!(size("\"1000\""), Some(1000));
    assert_eq!(size("\"10MB\""), Some(10_000_000));
    assert_eq!(size("\"512KB\""), Some(512_000));
    assert_eq!(size("\"512 KiB\""), Some(512 * 1024));
    assert_eq!(size("\"1GiB\""), Some(1 << 30));
    assert_eq!(size("\"2gb\""), Some(2_000_000_000));
    assert_eq!(size("\"3mib\""), Some(3 << 20));
    assert_eq!(size("\"7 b\""), Some(7));
    assert_eq!(size("1_000"), Some(1000));
    assert_eq!(size("0x100"), Some(256));

    assert_eq!(check::parse_size("18446744073709551615"), Ok(u64::MAX));
    assert_eq!(check::parse_size("18446744073709551616"), Err(check::SizeError::TooLarge));
    assert_eq!(check::parse_size("17179869184GiB"), Err(check::SizeError::TooLarge));
    for bad in ["", "MB", "1.5MB", "10 MBs", "10M", "-1", "+1", "1 000", "1KB2", "ten"] {
        assert_eq!(check::parse_size(bad), Err(check::SizeError::Invalid), "{bad:?}");
    }
}

#[test]
fn bad_transcript_values() {
    const SIZE: &str = "expected a size such as \"10MB\", \"512KiB\" or \"1000\" (bytes)";
    let cases = [
        ("transcript.path = \"\"", "transcript.path", "expected a path, found \"\"".to_owned()),
        ("transcript.path = 1", "transcript.path", "expected a path, found 1".to_owned()),
        (
            "transcript.timestamps = \"iso\"",
            "transcript.timestamps",
            "expected one of \"none\", \"rfc3339\", \"tai64n\", found \"iso\"".to_owned(),
        ),
        ("transcript.timestamps = true", "transcript.timestamps", "found true".to_owned()),
        ("transcript.tag = \"out\"", "transcript.tag", "expected true or false, found \"out\"".to_owned()),
        ("transcript.max_size = \"10XB\"", "transcript.max_size", format!("{SIZE}, found \"10XB\"")),
        ("transcript.max_size = 1.5", "transcript.max_size", format!("{SIZE}, found 1.5")),
        (
            "transcript.max_size = \"0KB\"",
            "transcript.max_size",
            "expected a size of at least 1 byte, found \"0KB\"".into(),
        ),
        ("transcript.max_size = 0", "transcript.max_size", "expected a size of at least 1 byte, found 0".into()),
        ("transcript.max_size = -5", "transcript.max_size", "expected a size of at least 1 byte, found -5".into()),
        (
            "transcript.max_size = \"99999999999GiB\"",
            "transcript.max_size",
            "expected a size of at most 18446744073709551615 bytes, found \"99999999999GiB\"".into(),
        ),
        (
            "transcript.keep = -1",
            "transcript.keep",
            "expected a number of rotated files from 0 to 1000, found -1".into(),
        ),
        ("transcript.keep = 1001", "transcript.keep", "found 1001".into()),
        ("transcript.keep = \"5\"", "transcript.keep", "found \"5\"".into()),
    ];
    for (line, key, want) in cases {
        let text = format!("[service.web]\ncommand = \"x\"\n{line}\n");
        let e = one_error(&text);
        assert_at(&e, 3, line.find('=').unwrap() + 3, Some("web"), Some(key));
        assert!(e.message.contains(&want), "{line}: got {:?}, want {want:?}", e.message);
    }

    let e = one_error("[service.web]\ncommand = \"x\"\n[service.web.transcript]\npath = \"a\"\nrotate = \"1MB\"\n");
    assert_at(&e, 5, 1, Some("web"), Some("transcript.rotate"));
    assert_eq!(e.message, "unknown key; the valid keys are: path, timestamps, tag, max_size, keep");
    let e = one_error("[service.web]\ncommand = \"x\"\ntranscript = [1]\n");
    assert_at(&e, 3, 14, Some("web"), Some("transcript"));
    assert_eq!(e.message, "expected a table such as [service.web.transcript], found an array");
}

#[test]
fn transcript_errors_are_collected_with_the_others() {
    let text = r#"[service.web]
command = "x"
stop_timeout = "ten"

[service.web.transcript]
timestamps = "local"
max_size = "lots"
keep = -2
colour = true

[service.db]
umask = "9"
"#;
    let errs = errors(text);
    let got: Vec<_> = errs.iter().map(|e| (e.line.unwrap(), e.service.as_deref(), e.key.as_deref().unwrap())).collect();
    assert_eq!(
        got,
        [
            (3, Some("web"), "stop_timeout"),
            (6, Some("web"), "transcript.timestamps"),
            (7, Some("web"), "transcript.max_size"),
            (8, Some("web"), "transcript.keep"),
            (9, Some("web"), "transcript.colour"),
            (11, Some("db"), "command"),
            (12, Some("db"), "umask"),
        ]
    );
}

#[test]
fn pidfiles() {
    let s = service("[service.web]\ncommand = \"x\"\npidfile = \"/run/web.pid\"\n");
    assert_eq!(s.pidfile, Some(PathBuf::from("/run/web.pid")));
    let s = service("[service.web]\ncommand = \"x\"\npidfile = \"run/web.pid\"\n");
    assert_eq!(s.pidfile, Some(PathBuf::from("/etc/sv/run/web.pid")));
}

#[test]
fn supervisor_directory_and_umask() {
    let c = ok("[supervisor]\ndirectory = \"/srv\"\numask = 0o027\n");
    assert_eq!((c.directory, c.umask), (PathBuf::from("/srv"), 0o027));
    let c = ok("[supervisor]\ndirectory = \"data\"\numask = \"0\"\n");
    assert_eq!((c.directory, c.umask), (PathBuf::from("/etc/sv/data"), 0));

    let e = one_error("[supervisor]\ndirectory = \"\"\n");
    assert_at(&e, 2, 13, None, Some("directory"));
    assert_eq!(e.message, "expected a path, found \"\"");
    let e = one_error("[supervisor]\numask = 22\n");
    assert_at(&e, 2, 9, None, Some("umask"));
    assert!(e.message.ends_with("found the decimal integer 22 (write \"022\" or 0o22)"), "{e}");
    let e = one_error("[supervisor]\numask = \"1000\"\n");
    assert_at(&e, 2, 9, None, Some("umask"));
    assert!(e.message.starts_with("expected an octal umask from \"000\" to \"777\""), "{e}");
}

#[test]
fn runtime_layout() {
    let c = ok("[supervisor]\nruntime_dir = \"/rt\"\n");
    assert_eq!(c.run_dir(), PathBuf::from("/rt/run"));
    assert_eq!(c.socket_path(), PathBuf::from("/rt/run/control.sock"));
    assert_eq!(c.pidfile_path(), PathBuf::from("/rt/run/supervisor.pid"));
    assert_eq!(c.state_path(), PathBuf::from("/rt/run/state.json"));
    assert_eq!(c.log_dir(), PathBuf::from("/rt/log"));
    assert_eq!(c.console_dir(), PathBuf::from("/rt/console"));
}

#[test]
fn transcripts_and_pidfiles_need_files_of_their_own() {
    let head = "[supervisor]\nruntime_dir = \"/rt\"\n";
    // Two explicit transcripts: the later one is reported.
    let e = one_error(&format!(
        "{head}[service.a]\ncommand = \"x\"\ntranscript.path = \"/log/x.log\"\n\
         [service.b]\ncommand = \"x\"\ntranscript.path = \"/log/./x.log\"\n"
    ));
    assert_at(&e, 8, 19, Some("b"), Some("transcript.path"));
    assert_eq!(
        e.message,
        "the file \"/log/x.log\" is also the transcript of service \"a\": a transcript or pidfile needs a file of its own"
    );
    // An explicit path that is another service's default.
    let e = one_error(&format!(
        "{head}[service.a]\ncommand = \"x\"\ntranscript.path = \"/rt/console/b.log\"\n[service.b]\ncommand = \"x\"\n"
    ));
    assert_at(&e, 5, 19, Some("a"), Some("transcript.path"));
    assert!(e.message.contains("is also the transcript of service \"b\""), "{e}");
    // Pidfiles.
    let e = one_error(&format!(
        "{head}[service.a]\ncommand = \"x\"\npidfile = \"/run/x.pid\"\n[service.b]\ncommand = \"x\"\npidfile = \"/run/x.pid\"\n"
    ));
    assert_at(&e, 8, 11, Some("b"), Some("pidfile"));
    assert!(e.message.starts_with("the file \"/run/x.pid\" is also the pidfile of service \"a\""), "{e}");
    // A pidfile in a transcript, even the service's own.
    let e = one_error(&format!("{head}[service.a]\ncommand = \"x\"\npidfile = \"/rt/console/a.log\"\n"));
    assert_at(&e, 5, 11, Some("a"), Some("pidfile"));
    assert!(e.message.contains("is also the transcript of service \"a\""), "{e}");
    // An output file in a transcript.
    let e = one_error(&format!(
        "{head}[service.a]\ncommand = \"x\"\n[service.b]\ncommand = \"x\"\nstderr = \"/rt/console/a.log\"\n"
    ));
    assert_at(&e, 7, 10, Some("b"), Some("stderr"));
    assert!(e.message.contains("is also the transcript of service \"a\""), "{e}");
    // An output file that is a pidfile written later in the file.
    let e = one_error(&format!(
        "{head}[service.a]\ncommand = \"x\"\nstdout = \"/run/a\"\n[service.b]\ncommand = \"x\"\npidfile = \"/run/a\"\n"
    ));
    assert_at(&e, 8, 11, Some("b"), Some("pidfile"));
    assert!(e.message.contains("is also the stdout file of service \"a\""), "{e}");
    // The supervisor's own files.
    let e = one_error(&format!("{head}[service.a]\ncommand = \"x\"\npidfile = \"/rt/run/supervisor.pid\"\n"));
    assert_at(&e, 5, 11, Some("a"), Some("pidfile"));
    assert!(e.message.contains("is also the supervisor's pidfile"), "{e}");
    let e = one_error(&format!("{head}[service.a]\ncommand = \"x\"\ntranscript.path = \"/rt/log/supervisor.log\"\n"));
    assert!(e.message.contains("is also the supervisor's log"), "{e}");
    let e = one_error(&format!("{head}[service.a]\ncommand = \"x\"\npidfile = \"/rt/run/state.json\"\n"));
    assert!(e.message.contains("is also the supervisor's state file"), "{e}");

    // Three claims on one file: each later one is reported once.
    let errs = errors(&format!(
        "{head}[service.a]\ncommand = \"x\"\npidfile = \"/p\"\n[service.b]\ncommand = \"x\"\npidfile = \"/p\"\n\
         [service.c]\ncommand = \"x\"\ntranscript.path = \"/p\"\n"
    ));
    let got: Vec<_> = errs.iter().map(|e| (e.service.as_deref(), e.key.as_deref())).collect();
    assert_eq!(got, [(Some("b"), Some("pidfile")), (Some("c"), Some("transcript.path"))]);
}

#[test]
fn shared_output_files_and_unused_transcripts_are_allowed() {
    let c = ok(r#"
[service.a]
command = "x"
stdout = "/log/all.log"
stderr = "/log/all.log"
[service.b]
command = "x"
stdout = "/log/all.log"
stderr = "inherit"
[service.b.transcript]
path = "/log/all.log"
"#);
    assert_eq!(c.services[1].stdout, Output::File(PathBuf::from("/log/all.log")));
    assert_eq!(c.services[1].transcript, None);
}

fn limits_of(lines: &str) -> Limits {
    service(&format!("[service.web]\ncommand = \"x\"\n{lines}\n")).limits
}

#[test]
fn limits_and_locks() {
    assert_eq!(limits_of(""), Limits::default());
    assert_eq!(service("[service.web]\ncommand = \"x\"\n").lock, None);
    let l = limits_of("[service.web.limits]\nmem = \"1GiB\"\nfiles = 64\nprocs = 1\ncpu = \"1h\"\ncore = \"1MB\"");
    let all = |l: Limits| (l.mem, l.files, l.procs, l.cpu, l.core);
    assert_eq!(all(l), (Some(1 << 30), Some(64), Some(1), Some(3600), Some(1_000_000)));
    assert_eq!(all(limits_of("limits.mem = 4096")), (Some(4096), None, None, None, None));
    assert_eq!(all(limits_of("limits = { core = \"0\" }")), (None, None, None, None, Some(0)));
    let l = limits_of("limits = { mem = \"unlimited\", files = \"unlimited\", procs = \"unlimited\", cpu = \"unlimited\", core = \"unlimited\" }");
    let u = Some(UNLIMITED);
    assert_eq!(all(l), (u, u, u, u, u));
    assert_eq!(limits_of("limits = {}"), Limits::default());

    // Relative to the configuration's directory, like every path.
    assert_eq!(
        service("[service.web]\ncommand = \"x\"\nlock = \"locks/web\"\n").lock,
        Some(PathBuf::from("/etc/sv/locks/web"))
    );
    // Two services may share a lock: that is what it is for.
    let c = ok("[service.a]\ncommand = \"x\"\nlock = \"/l\"\n[service.b]\ncommand = \"x\"\nlock = \"/l\"\n");
    assert_eq!(c.services[0].lock, c.services[1].lock);
}

#[test]
fn bad_limits() {
    const SIZE: &str = "expected a size such as \"512MB\", \"1GiB\" or \"1000\" (bytes), or \"unlimited\"";
    let cases = [
        ("limits.mem = \"lots\"", "limits.mem", format!("{SIZE}, found \"lots\"")),
        ("limits.mem = \"10M\"", "limits.mem", format!("{SIZE}, found \"10M\"")),
        ("limits.mem = -1", "limits.mem", format!("{SIZE}, found -1")),
        ("limits.mem = 0", "limits.mem", "expected a size of at least 1 byte, found 0".into()),
        ("limits.mem = \"0MB\"", "limits.mem", "expected a size of at least 1 byte, found \"0MB\"".into()),
        (
            "limits.mem = \"99999999999GiB\"",
            "limits.mem",
            "expected a size of at most 18446744073709551615 bytes, found \"99999999999GiB\"".into(),
        ),
        ("limits.core = true", "limits.core", format!("{SIZE}, found true")),
        (
            "limits.files = 0",
            "limits.files",
            "expected a number of open files of at least 1, or \"unlimited\", found 0".into(),
        ),
        ("limits.files = \"1024\"", "limits.files", "found \"1024\"".into()),
        (
            "limits.procs = -5",
            "limits.procs",
            "expected a number of processes of at least 1, or \"unlimited\", found -5".into(),
        ),
        ("limits.procs = 1.5", "limits.procs", "found 1.5".into()),
        ("limits.cpu = 60", "limits.cpu", "found the number 60 (a duration needs a unit: write \"60s\")".into()),
        (
            "limits.cpu = \"1500ms\"",
            "limits.cpu",
            "expected a CPU time in whole seconds, at least \"1s\", found \"1500ms\"".into(),
        ),
        ("limits.cpu = \"0s\"", "limits.cpu", "found \"0s\"".into()),
        (
            "limits.cpu = \"forever\"",
            "limits.cpu",
            "expected a duration such as \"10s\" or \"500ms\", found \"forever\"".into(),
        ),
        ("lock = \"\"", "lock", "expected a path, found \"\"".into()),
        ("lock = true", "lock", "expected a path, found true".into()),
    ];
    for (line, key, want) in cases {
        let text = format!("[service.web]\ncommand = \"x\"\n{line}\n");
        let e = one_error(&text);
        assert_at(&e, 3, line.find('=').unwrap() + 3, Some("web"), Some(key));
        assert!(e.message.contains(&want), "{line}: got {:?}, want {want:?}", e.message);
    }

    let e = one_error("[service.web]\ncommand = \"x\"\nlimits = 512\n");
    assert_at(&e, 3, 10, Some("web"), Some("limits"));
    assert_eq!(e.message, "expected a table such as { mem = \"512MB\", files = 1024 }, found 512");
    let e = one_error("[service.web]\ncommand = \"x\"\n[service.web.limits]\nnofile = 10\n");
    assert_at(&e, 4, 1, Some("web"), Some("limits.nofile"));
    assert_eq!(e.message, "unknown key; the valid keys are: mem, files, procs, cpu, core");
}

#[test]
fn limit_errors_are_collected_with_the_others() {
    let text = r#"[service.web]
command = "x"
limits = { mem = "1XB", files = 0, cpu = "0.5s" }
lock = 3
stop_timeout = "ten"
"#;
    let errs = errors(text);
    let got: Vec<_> = errs.iter().map(|e| (e.line.unwrap(), e.column.unwrap(), e.key.as_deref().unwrap())).collect();
    assert_eq!(
        got,
        [
            (3, 18, "limits.mem"),
            (3, 33, "limits.files"),
            (3, 42, "limits.cpu"),
            (4, 8, "lock"),
            (5, 16, "stop_timeout")
        ]
    );
}

#[test]
fn finish_and_follow() {
    let s = service(
        "[service.web]\ncommand = \"x\"\nfinish = \"./finish --quiet\"\nfinish_timeout = \"3s\"\nfollow = true\n",
    );
    assert_eq!(s.finish, Some(vec!["./finish".to_string(), "--quiet".to_string()]));
    assert_eq!(s.finish_timeout, std::time::Duration::from_secs(3));
    assert!(s.follow);
    let e = one_error("[service.web]\ncommand = \"x\"\nfinish = []\n");
    assert_eq!(e.key.as_deref(), Some("finish"));
    let e = one_error("[service.web]\ncommand = \"x\"\nfollow = \"yes\"\n");
    assert_eq!(e.key.as_deref(), Some("follow"));
}
