//! What a local attacker can try against a supervisor: links planted in
//! the directories it writes, other users on its socket.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::util::Fixture;

/// Plants `link` (relative to the fixture's directory) pointing at a
/// precious file (or directory), runs the supervisor, and checks that it
/// refused and left the target alone.
fn planted(link: &str, to_directory: bool) {
    let f = Fixture::new("[service.web]\ncommand = [\"HELPER\", \"lines\", \"3\", \"10\"]\n");
    let target = f.path("precious");
    if to_directory {
        fs::create_dir(&target).unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
    } else {
        fs::write(&target, "precious\n").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
    }
    let at = f.path(link);
    fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&target, &at).unwrap();
    let (code, _, err) = f.cli_code(&["run"]);
    assert_ne!(code, 0, "the supervisor ran with {link} planted");
    assert!(err.contains("symbolic link") || err.contains("Too many levels"), "{err}");
    let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    if to_directory {
        assert_eq!(mode, 0o755, "chmod-ed through {link}");
        assert_eq!(fs::read_dir(&target).unwrap().count(), 0, "written into through {link}");
    } else {
        assert_eq!(mode, 0o644, "chmod-ed through {link}");
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious\n", "written through {link}");
    }
}

#[test]
fn a_planted_event_log_link_is_refused() {
    planted("rt/log/supervisor.log", false);
}

#[test]
fn a_planted_console_directory_link_is_refused() {
    planted("rt/console", true);
    planted("rt/console", false);
}

#[test]
fn a_planted_run_directory_link_is_refused() {
    planted("rt/run", true);
}

#[test]
fn a_planted_link_at_a_services_output_file_is_refused() {
    let mut f =
        Fixture::new("[service.web]\ncommand = [\"HELPER\", \"lines\", \"3\", \"10\"]\nstdout = \"DIR/web.out\"\n");
    let target = f.path("precious");
    fs::write(&target, "precious\n").unwrap();
    std::os::unix::fs::symlink(&target, f.path("web.out")).unwrap();
    f.start();
    let s = f.wait_state("web", "fatal", std::time::Duration::from_secs(15));
    let error = s["error"].as_str().unwrap_or_default();
    assert!(error.contains("is a symbolic link: refused"), "{s}");
    assert_eq!(fs::read_to_string(&target).unwrap(), "precious\n", "written through the link");
}

#[test]
fn a_runtime_directory_of_another_user_is_refused() {
    crate::util::require_root("to give a directory to another user");
    let f = Fixture::new("[service.web]\ncommand = [\"HELPER\", \"sleep\"]\n");
    let rt = f.path("rt");
    fs::create_dir(&rt).unwrap();
    std::os::unix::fs::chown(&rt, Some(65534), Some(65534)).unwrap();
    let (code, _, err) = f.cli_code(&["run"]);
    assert_ne!(code, 0, "the supervisor used a runtime directory that another user owns");
    assert!(err.contains("belongs to uid 65534"), "{err}");
}

#[test]
fn a_service_drops_every_privilege_of_root() {
    crate::util::require_root("to switch users");
    let mut f =
        Fixture::new("[service.low]\ncommand = [\"HELPER\", \"sleep\"]\nuser = \"nobody\"\nmin_uptime = \"50ms\"\n");
    f.start();
    let pid = f.wait_state("low", "running", std::time::Duration::from_secs(15))["pid"].as_i64().unwrap();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> Vec<u32> {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name}"));
        line[name.len()..].split_whitespace().map(|n| n.parse().unwrap()).collect()
    };
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    // Real, effective, saved and file-system ids: all of them dropped.
    assert_eq!(field("Uid:"), [nobody.uid.as_raw(); 4], "{status}");
    assert_eq!(field("Gid:"), [nobody.gid.as_raw(); 4], "{status}");
    // setgroups came before setgid and setuid: no group of root is left.
    assert!(!field("Groups:").contains(&0), "root's group kept: {status}");
    for cap in ["CapEff:", "CapPrm:"] {
        let line = status.lines().find(|l| l.starts_with(cap)).unwrap();
        assert_eq!(line[cap.len()..].trim(), "0000000000000000", "capabilities kept: {line}");
    }
    // The supervisor's own control variables are not in its environment.
    let env = fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(!env.split(|b| *b == 0).any(|kv| kv.starts_with(b"SUPERVISOR_CONFIG=")), "SUPERVISOR_CONFIG leaked");
}
