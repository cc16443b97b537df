//! `completions` and `man`: made from the command line itself.

use std::process::Command;

use crate::util::supervisor_bin;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(supervisor_bin()).args(args).output().expect("run supervisor");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn bash_completion_loads_and_completes_subcommands() {
    let script = format!(
        "source <({} completions bash) && complete -p supervisor; COMP_WORDS=(supervisor sta); COMP_CWORD=1; \
         COMP_LINE='supervisor sta'; COMP_POINT=14; _supervisor supervisor sta supervisor; echo \"${{COMPREPLY[@]}}\"",
        supervisor_bin().display()
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("-F _supervisor supervisor") && text.contains("status") && text.contains("start"), "{text}");
    for shell in ["zsh", "fish"] {
        let (code, text) = run(&["completions", shell]);
        assert_eq!(code, 0);
        assert!(text.contains("supervisor") && text.contains("repair-socket"), "{shell}: {text}");
    }
    assert_eq!(run(&["completions", "tcsh"]).0, 2);
}

#[test]
fn man_pages_for_the_command_and_each_subcommand() {
    let (code, page) = run(&["man"]);
    assert_eq!(code, 0);
    assert!(page.contains(".TH supervisor 1") && page.contains("repair\\-socket"), "{page}");
    let dir = tempfile::tempdir().unwrap();
    let (code, _) = run(&["man", "--dir", &dir.path().display().to_string()]);
    assert_eq!(code, 0);
    let status = std::fs::read_to_string(dir.path().join("supervisor-status.1")).unwrap();
    assert!(status.contains(".TH supervisor-status 1"), "{status}");
    assert!(status.contains("\\-\\-json") && status.contains("\\-\\-socket"), "global options too: {status}");
    assert!(dir.path().join("supervisor-events.1").exists() && dir.path().join("supervisor.1").exists());
}
