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
fn a_runtime_directory_of_another_user_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to give a directory to another user");
        return;
    }
    let f = Fixture::new("[service.web]\ncommand = [\"HELPER\", \"sleep\"]\n");
    let rt = f.path("rt");
    fs::create_dir(&rt).unwrap();
    std::os::unix::fs::chown(&rt, Some(65534), Some(65534)).unwrap();
    let (code, _, err) = f.cli_code(&["run"]);
    assert_ne!(code, 0, "the supervisor used a runtime directory that another user owns");
    assert!(err.contains("belongs to uid 65534"), "{err}");
}
