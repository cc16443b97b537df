//! Unit tests of the zdaemon reader.

use super::syntax::substitute;
use super::translate::{exit_codes, interval, octal};
use super::*;
use supervisor_core::Output;

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn load_text(dir: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let path = dir.join("conf");
    std::fs::write(&path, text).unwrap();
    Config::load(&path)
}

fn errors(text: &str) -> Vec<String> {
    let d = dir();
    match load_text(d.path(), text) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => e.0.iter().map(|e| e.to_string().replace(&d.path().display().to_string(), "D")).collect(),
    }
}

#[test]
fn recognised_by_content() {
    assert!(looks_like("\n# a comment\n<runner>\n  program sleep 1\n</runner>\n"));
    assert!(looks_like("%define X 1\n<runner>\n</runner>"));
    assert!(!looks_like("[supervisor]\nname = \"x\"\n"));
    assert!(!looks_like("# <runner>\n"));
    assert!(!looks_like(""));
    let d = dir();
    let c = load_text(d.path(), "<runner>\n  program sleep 100\n</runner>\n").unwrap();
    assert_eq!(c.flavour, Flavour::Zdaemon);
    let c = load_text(d.path(), "[service.a]\ncommand = \"sleep 1\"\n").unwrap();
    assert_eq!(c.flavour, Flavour::Toml);
}

#[test]
fn the_seed_example_is_one_service_named_program() {
    let d = dir();
    let c = load_text(d.path(), "\n<runner>\n  program sleep 100\n</runner>\n").unwrap();
    assert_eq!(c.name, "conf");
    assert_eq!(c.services.len(), 1);
    let svc = &c.services[0];
    assert_eq!(svc.name, "program");
    assert_eq!(svc.command, Command::Argv(vec!["sleep".into(), "100".into()]));
    assert_eq!(svc.restart.exit_codes, vec![0, 2]);
    assert_eq!((svc.stdout.clone(), svc.stderr.clone()), (Output::Null, Output::Null));
    assert!(svc.transcript.is_none());
    assert!(c.daemon);
    assert_eq!(c.socket, None);
    let dir_name = c.runtime_dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(dir_name.starts_with("conf-") && dir_name.len() == 13, "{dir_name}");
    assert_eq!(c.extras.get("program"), None, "the defaults are not stored");
}

#[test]
fn every_runner_option_maps() {
    let d = dir();
    let text = "\
# zdaemon's options
%define BASE /srv/app
<runner>
  Program $BASE/bin/app --port 80
  socket-name ${BASE}/zdsock
  daemon on
  directory /srv
  backoff-limit 30
  forever true
  exit-codes 0,3
  umask 027
  transcript log
  logfile app.log
  start-test-program curl -s http://localhost/ | grep -q ok
  start-timeout 2m
  stop-timeout 20
  default-to-interactive off
  prompt app>
  hang-around on
  <eventlog>
    level debug
    <logfile>
      path STDOUT
    </logfile>
    <logfile>
      path events.log
    </logfile>
  </eventlog>
</runner>
<environment>
  LD_LIBRARY_PATH /home/foo/lib
  HOME /home/foo
</environment>
";
    let c = load_text(d.path(), text).unwrap();
    let base = d.path().canonicalize().unwrap();
    let base = if base == d.path() { base } else { d.path().to_path_buf() };
    let svc = &c.services[0];
    assert_eq!(svc.command.to_argv(), ["/srv/app/bin/app", "--port", "80"]);
    assert_eq!(c.socket.as_deref(), Some(Path::new("/srv/app/zdsock")));
    assert_eq!(c.directory, Path::new("/srv"));
    assert_eq!(c.umask, 0o027);
    assert_eq!(c.log_level, log::LevelFilter::Debug);
    assert_eq!(c.event_log, vec![EventLogTarget::Stdout, EventLogTarget::File(base.join("events.log"))]);
    assert_eq!(svc.restart.backoff_limit, Duration::from_secs(30));
    assert!(svc.restart.forever);
    assert_eq!(svc.restart.exit_codes, vec![0, 3]);
    assert_eq!(svc.stop_timeout, Duration::from_secs(20));
    assert_eq!((svc.stdout.clone(), svc.stderr.clone()), (Output::Transcript, Output::Transcript));
    assert_eq!(svc.transcript.as_ref().unwrap().path, base.join("log"));
    assert_eq!(svc.env.vars["LD_LIBRARY_PATH"], "/home/foo/lib");
    assert_eq!(svc.env.vars["HOME"], "/home/foo");
    let extras = &c.extras["program"];
    assert_eq!(extras.logfile.as_deref(), Some(base.join("app.log").as_path()));
    assert_eq!(extras.start_test.as_ref().unwrap()[..2], ["/bin/sh", "-c"]);
    assert_eq!(extras.start_test.as_ref().unwrap()[2], "curl -s http://localhost/ | grep -q ok");
    assert_eq!(extras.start_timeout, Duration::from_secs(120));
    assert_eq!(interactive_settings(&d.path().join("conf")), (false, Some("app>".to_owned())));
}

#[test]
fn daemon_off_writes_to_the_terminal() {
    let d = dir();
    let c = load_text(d.path(), "<runner>\nprogram sleep 1\ndaemon off\n</runner>\n").unwrap();
    assert!(!c.daemon);
    assert_eq!(c.services[0].stdout, Output::Inherit);
    assert_eq!(interactive_settings(&d.path().join("conf")), (true, None));
}

#[test]
fn errors_name_the_file_line_and_key() {
    let e = errors("<runner>\n  program sleep 1\n  progam x\n  daemon maybe\n  exit-codes 0,x\n</runner>\n");
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].starts_with("D/conf:3: key \"progam\": unknown key; the valid keys are: program, socket-name"));
    assert_eq!(e[1], "D/conf:4: key \"daemon\": expected on, off, true, false, yes or no, found \"maybe\"");
    assert!(e[2].starts_with("D/conf:5: key \"exit-codes\": expected exit codes"), "{e:?}");
}

#[test]
fn errors_found_by_the_toml_reader_point_at_the_zdaemon_line() {
    let e = errors("<runner>\n  program sleep 1\n  user no-such-user-xyz\n</runner>\n");
    assert_eq!(e, ["D/conf:3: key \"user\": expected an existing user, found \"no-such-user-xyz\": no such user"]);
    let e = errors("<runner>\n  program sleep 1\n  backoff-limit 0\n  forever on\n</runner>\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("D/conf:4: key \"forever\": with forever = true, backoff_limit"), "{e:?}");
}

#[test]
fn syntax_errors() {
    let e = errors("<runner>\n  program sleep 1\n");
    assert_eq!(e, ["D/conf:1: <runner> is not closed (missing </runner>)"]);
    let e = errors("<runner>\n  program sleep 1\n</environment>\n</runner>\n<supervisor>\n</supervisor>\n");
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0], "D/conf:3: </environment> does not close <runner> (opened at line 1)");
    assert!(e[1].starts_with("D/conf:5: unknown section <supervisor>; the valid sections are"), "{e:?}");
    let e = errors("<runner>\n  program $NOPE\n</runner>\n");
    assert_eq!(e, ["D/conf:2: key \"program\": $NOPE is not defined (define it with %define NOPE VALUE)"]);
    let e = errors("<runner>\n  program = sleep 1\n</runner>\n");
    assert_eq!(e, ["D/conf:2: key \"program\": ZConfig has no \"=\": write \"program sleep 1\""]);
    let e = errors("<runner>\n  daemon = off\n  program sleep 1\n  program sleep 2\n</runner>\n%include x.conf\n");
    assert_eq!(e.len(), 3, "{e:?}");
    assert_eq!(e[0], "D/conf:2: key \"daemon\": ZConfig has no \"=\": write \"daemon off\"");
    assert_eq!(e[1], "D/conf:4: key \"program\": repeated key (first set at line 3)");
    assert!(e[2].starts_with("D/conf:6: %include is not supported"), "{e:?}");
    let e = errors("<runner>\n</runner>\n");
    assert_eq!(e, ["D/conf:1: key \"program\": missing required key (the program and its arguments)"]);
    let e = errors("<environment>\nA b\n</environment>\n");
    assert_eq!(e, ["D/conf: no <runner> section (zdaemon's settings, with at least program)"]);
}

#[test]
fn substitutions() {
    let d: BTreeMap<String, String> = [("a".to_owned(), "x".to_owned())].into();
    assert_eq!(substitute("$a/${A}/$$/b", &d).unwrap(), "x/x/$/b");
    assert!(substitute("$", &d).is_err());
    assert!(substitute("${a", &d).is_err());
    assert_eq!(interval("90").unwrap(), 90);
    assert_eq!(interval("2M").unwrap(), 120);
    assert!(interval("soon").is_err());
    assert_eq!(exit_codes(" ").unwrap(), Vec::<u8>::new());
    assert_eq!(octal("022").unwrap(), 0o22);
    assert!(octal("9").is_err());
}

#[test]
fn converted_toml_loads_back_to_the_same_config() {
    let d = dir();
    let text = "<runner>\n  program sleep\n  socket-name /tmp/demo.zdsock\n  transcript log\n  logfile log\n  \
                user root\n  umask 077\n  directory /tmp\n  stop-timeout 5\n  start-test-program true\n</runner>\n\
                <environment>\n  LD_LIBRARY_PATH /home/foo/lib\n  weird\\\"name x\n</environment>\n\
                <eventlog>\n  <logfile>\n    path STDERR\n    level warn\n  </logfile>\n</eventlog>\n";
    let path = d.path().join("zd.conf");
    std::fs::write(&path, text).unwrap();
    let original = Config::load(&path).unwrap();
    let toml = to_toml(&path, text).unwrap();
    let other = d.path().join("sub");
    std::fs::create_dir(&other).unwrap();
    let converted_path = other.join("converted.toml");
    std::fs::write(&converted_path, &toml).unwrap();
    let converted = Config::load(&converted_path).unwrap();
    assert_eq!(converted.flavour, Flavour::Toml);
    let same = Config { path: original.path.clone(), flavour: original.flavour, ..converted };
    assert_eq!(same, original, "{toml}");
}

#[test]
fn command_line_options() {
    let d = dir();
    let path = d.path().join("conf");
    std::fs::write(&path, "<runner>\n  program sleep\n</runner>\n").unwrap();
    let o = Overrides { args: vec!["100".into()], socket: Some(d.path().join("s")), ..Overrides::default() };
    let c = load_with(Some(&path), o.clone()).unwrap();
    assert_eq!(c.services[0].command.to_argv(), ["sleep", "100"]);
    assert_eq!(c.socket_path(), d.path().join("s"));
    assert_eq!(c.reread().unwrap(), c);
    let p = Overrides { program: Some("echo  a b".into()), ..o };
    let c = load_with(Some(&path), p).unwrap();
    assert_eq!(c.services[0].command.to_argv(), ["echo", "a", "b", "100"]);
    let adhoc =
        Overrides { program: Some("sleep 5".into()), socket: Some(d.path().join("zdsock")), ..Default::default() };
    let c = load_with(None, adhoc.clone()).unwrap();
    assert!(c.overrides.no_file && c.is_zdaemon());
    assert_eq!(c.name, format!("zdaemon-{}", short_hash(d.path().join("zdsock").as_os_str())));
    assert_eq!(c.services[0].command.to_argv(), ["sleep", "5"]);
    assert_eq!(c.reread().unwrap(), c);
    assert_eq!(c.overrides.to_args()[..2], ["--program", "sleep 5"]);
    let toml = d.path().join("t.toml");
    std::fs::write(&toml, "[service.a]\ncommand = \"sleep 1\"\n").unwrap();
    let e = load_with(Some(&toml), adhoc).unwrap_err();
    assert!(e.to_string().contains("-p (--program) applies to the program of a zdaemon configuration"), "{e}");
}

/// Found by the fuzz target `config_zdaemon`: `%define`s that use each
/// other grow exponentially (this one needs 10^9 bytes).
#[test]
fn defines_that_blow_up_are_refused() {
    let text = include_str!("../../../../fuzz/regressions/config_zdaemon/define-expansion-blowup");
    let errs = errors(text);
    assert!(errs.iter().any(|e| e.contains("expands to more than")), "{errs:?}");
}
