//! `[supervisor] exit_when` and `[service.NAME] critical`.

use supervisor_core::ExitWhen;

use super::{assert_at, ok, one_error, service};

#[test]
fn exit_when_and_critical_are_read() {
    assert_eq!(ok("").exit_when, ExitWhen::Signalled);
    let c = ok("[supervisor]\nexit_when = \"all-exited\"\n");
    assert_eq!(c.exit_when, ExitWhen::AllExited);
    assert_eq!(ok("[supervisor]\nexit_when = \"signalled\"\n").exit_when, ExitWhen::Signalled);
    assert!(service("[service.main]\ncommand = \"x\"\ncritical = true\n").critical);
    assert!(!service("[service.main]\ncommand = \"x\"\n").critical);
}

#[test]
fn bad_values_are_errors_at_the_value() {
    let e = one_error("[supervisor]\nexit_when = \"all_exited\"\n");
    assert_at(&e, 2, 13, None, Some("exit_when"));
    assert!(e.message.contains("\"signalled\"") && e.message.contains("\"all-exited\""), "{}", e.message);
    let e = one_error("[service.main]\ncommand = \"x\"\ncritical = \"yes\"\n");
    assert_at(&e, 3, 12, Some("main"), Some("critical"));
}

#[test]
fn only_a_daemon_can_be_critical() {
    let e = one_error("[service.t]\nkind = \"task\"\ncommand = \"x\"\ninterval = \"1m\"\ncritical = true\n");
    assert_at(&e, 5, 12, Some("t"), Some("critical"));
    assert!(e.message.contains("daemon"), "{}", e.message);
}
