//! `--json`: one JSON document on standard output for every command that
//! reports, also on failure, with the exit code it has without `--json`.

use std::fs;
use std::time::Duration;

use serde_json::Value;

use crate::util::Fixture;

const T: Duration = Duration::from_secs(15);

/// Runs `args` with and without `--json`: the same exit code, and the
/// whole standard output is one JSON document (returned).
fn json(f: &Fixture, args: &[&str]) -> (i32, Value) {
    let mut with: Vec<&str> = args.to_vec();
    with.push("--json");
    let (code, out, err) = f.cli_code(&with);
    let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out:?} {err}"));
    (code, doc)
}

fn same_code(f: &Fixture, args: &[&str], code: i32) {
    assert_eq!(f.cli_code(args).0, code, "{args:?} without --json");
}

#[test]
fn commands_on_services_report_in_json() {
    let mut f = Fixture::new(
        "[service.s]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"100ms\"\n\
         [service.t]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"100ms\"\n",
    );
    f.start();
    f.wait_state("s", "running", T);
    let (code, doc) = json(&f, &["status", "s"]);
    assert_eq!((code, doc["services"][0]["state"].as_str()), (0, Some("running")));
    for verb in ["stop", "start", "restart"] {
        let (code, doc) = json(&f, &[verb, "s"]);
        assert_eq!(code, 0, "{doc}");
        assert_eq!(doc["ok"], true);
        assert_eq!(doc["command"], verb);
        assert_eq!(doc["services"][0]["name"], "s");
        assert_eq!(doc["services"][0]["ok"], true);
    }
    let (code, doc) = json(&f, &["signal", "HUP", "t"]);
    assert_eq!((code, &doc["command"], &doc["services"][0]["ok"]), (0, &Value::from("signal"), &Value::from(true)));
    // Failures are documents too, with the same code.
    let (code, doc) = json(&f, &["stop", "nosuch"]);
    assert_eq!((code, &doc["ok"], &doc["error"]["kind"]), (2, &Value::from(false), &Value::from("unknown_service")));
    assert_eq!(doc["exit_code"], 2);
    same_code(&f, &["stop", "nosuch"], 2);
    let (code, doc) = json(&f, &["start"]);
    assert_eq!((code, doc["error"]["kind"].as_str()), (2, Some("usage")));
    let (code, doc) = json(&f, &["status", "nosuch"]);
    assert_eq!(code, 4, "{doc}");
    same_code(&f, &["status", "nosuch"], 4);
    // The reload plan.
    let text = fs::read_to_string(&f.config).unwrap();
    fs::write(&f.config, text.clone() + "[service.u]\ncommand = [\"HELPER\", \"sleep\"]\n").unwrap();
    let (code, doc) = json(&f, &["reload", "--dry-run"]);
    assert_eq!((code, &doc["dry_run"]), (0, &Value::from(true)), "{doc}");
    let plan = doc["reload"]["services"].as_array().unwrap();
    assert!(plan.iter().any(|c| c["name"] == "u" && c["action"] == "add"), "{doc}");
    fs::write(&f.config, text + "[service.v]\ncolour = 1\n").unwrap();
    let (code, doc) = json(&f, &["reload"]);
    assert_eq!((code, &doc["ok"]), (6, &Value::from(false)), "{doc}");
    assert!(!doc["reload"]["errors"].as_array().unwrap().is_empty());
    // Not running: `shutdown`, then `status`.
    assert_eq!(f.cli_code(&["shutdown"]).0, 0);
    let (code, doc) = json(&f, &["status"]);
    assert_eq!((code, doc["error"]["kind"].as_str()), (3, Some("not_running")));
    assert_eq!(doc["error"]["socket"], f.socket().display().to_string());
    f.supervisor = None;
}

#[test]
fn check_config_errors_are_objects() {
    let f = Fixture::new("[service.web]\ncomand = [\"x\"]\n");
    let (code, doc) = json(&f, &["check-config"]);
    assert_eq!(code, 6);
    same_code(&f, &["check-config"], 6);
    assert_eq!(doc["error"]["kind"], "bad_config");
    let errors = doc["error"]["errors"].as_array().unwrap();
    let typo = errors.iter().find(|e| e["key"] == "comand").unwrap_or_else(|| panic!("{doc}"));
    assert_eq!(typo["file"], f.config.display().to_string());
    assert_eq!(typo["service"], "web");
    assert!(typo["line"].as_u64().is_some() && typo["column"].as_u64().is_some(), "{typo}");
    assert!(typo["message"].as_str().unwrap().contains("unknown key"), "{typo}");
    fs::write(&f.config, "[service.web]\ncommand = [\"x\"]\n").unwrap();
    let (code, doc) = json(&f, &["check-config"]);
    assert_eq!((code, &doc["ok"], &doc["services"]), (0, &Value::from(true), &Value::from(1)));
    let (code, doc) = json(&f, &["check"]);
    assert_eq!((code, &doc["services"]), (0, &Value::Array(vec![])));
}

#[test]
fn usage_errors_and_svstat_and_list() {
    let f = Fixture::new("");
    let (code, doc) = json(&f, &["frobnicate"]);
    assert_eq!((code, doc["error"]["kind"].as_str()), (2, Some("usage")));
    let dir = f.path("svc");
    fs::create_dir(&dir).unwrap();
    let (code, doc) = json(&f, &["svstat", &dir.display().to_string()]);
    assert_eq!(code, 0);
    assert!(doc.is_array(), "{doc}");
    let (code, doc) = json(&f, &["list"]);
    assert_eq!((code, doc["instances"].is_array()), (0, true));
}
