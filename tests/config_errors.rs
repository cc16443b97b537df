//! Bad configuration: every error, with file, line, column, service, key.

use std::fs;

use crate::util::Fixture;

#[test]
fn check_config_prints_every_error_with_its_place() {
    let f = Fixture::new(
        r#"
[service.web]
command = ["HELPER", "sleep"]
stop_signal = "SIGFOO"
stop_timeout = "ten"

[service.db]
command = "unterminated 'quote"
colour = "blue"
"#,
    );
    let (code, out, err) = f.cli_code(&["check-config"]);
    assert_eq!(code, 6, "{out}{err}");
    let path = f.config.display().to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() >= 4, "every error reported: {err}");
    let find = |key: &str| {
        *lines.iter().find(|l| l.contains(&format!("\"{key}\""))).unwrap_or_else(|| panic!("no error for {key}: {err}"))
    };
    let sig = find("stop_signal");
    assert!(sig.contains(&path) && sig.contains("service \"web\"") && sig.contains("SIGFOO"), "{sig}");
    // [supervisor] takes 4 lines plus one blank, then the services start.
    assert!(sig.contains(&format!("{path}:9:")), "line number: {sig}");
    assert!(find("stop_timeout").contains("service \"web\""));
    assert!(find("command").contains("service \"db\""));
    assert!(find("colour").contains("service \"db\""));
}

#[test]
fn syntax_errors_and_bad_configs_stop_every_command_with_6() {
    let f = Fixture::new("[service.x]\ncommand = [\"a\"\n");
    let (code, _, err) = f.cli_code(&["check-config"]);
    assert_eq!(code, 6);
    assert!(err.contains(&f.config.display().to_string()), "{err}");
    assert_eq!(f.cli_code(&["run"]).0, 6);
    assert_eq!(f.cli_code(&["up"]).0, 6);
    // A client command needs only to find the instance: none runs.
    let (code, _, err) = f.cli_code(&["status"]);
    assert_eq!(code, 3, "{err}");
}

#[test]
fn the_config_can_come_from_the_environment() {
    let f = Fixture::new("[service.x]\ncommand = \"true\"\n");
    let out = std::process::Command::new(crate::util::supervisor_bin())
        .arg("check-config")
        .env("SUPERVISOR_CONFIG", &f.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    fs::write(&f.config, "bad = 1\n").unwrap();
    let out = std::process::Command::new(crate::util::supervisor_bin())
        .arg("check-config")
        .env("SUPERVISOR_CONFIG", &f.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
}
