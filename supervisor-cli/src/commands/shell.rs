//! `shell`: commands read line by line from standard input, as zdaemon's
//! and supervisorctl's interactive mode.
//!
//! Each line is split into words as a shell would (quotes, backslashes)
//! and run as the command line `supervisor [-c FILE] [-p CMD] [-s PATH]
//! WORDS...` would be, with the shell's own options (a line may give its
//! own, which win). The configuration is read again for every line. An
//! error is printed and the shell goes on; `quit`, `exit` or the end of
//! the input leaves, with the exit code of the last command. The prompt
//! (`supervisor> `, or the `prompt` of a zdaemon file) is shown only when
//! standard input is a terminal.
//!
//! With a zdaemon file whose `default-to-interactive` is on (zdaemon's
//! default), or `-p` alone, `supervisor` without a command enters the
//! shell ([`without_command`]).

use std::ffi::OsString;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches, Parser};

use super::zdaemon::ZdaemonArgs;
use crate::config::{zdaemon, Flavour};
use crate::exit::{self, CliError};
use crate::{Cli, Cmd};

/// The prompt when the configuration sets none.
pub const PROMPT: &str = "supervisor> ";

/// What `help` adds to the list of commands.
const SHELL_HELP: &str = "In the shell: one command per line, without `supervisor`; \
                          quit, exit or end of input (Ctrl-D) leaves.";

/// The configuration file that `-c`, `SUPERVISOR_CONFIG` or the default
/// name, when there is one.
fn config_file(config: Option<&Path>, zd: &ZdaemonArgs) -> Option<PathBuf> {
    match config {
        Some(p) => Some(p.to_path_buf()),
        None if zd.program.is_some() => None,
        None => Some(PathBuf::from("supervisor.toml")).filter(|p| p.exists()),
    }
}

/// zdaemon's `default-to-interactive` and `prompt` of the configuration:
/// `None` when it is not zdaemon's (a TOML file, none at all).
fn zdaemon_settings(config: Option<&Path>, zd: &ZdaemonArgs) -> Option<(bool, Option<String>)> {
    match config_file(config, zd) {
        None if zd.program.is_some() => Some((true, None)),
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(&path).ok()?;
            (Flavour::detect(&text) == Flavour::Zdaemon).then(|| zdaemon::interactive_settings(&path))
        }
    }
}

/// For a command line without a command: runs the shell when the
/// configuration is zdaemon's with `default-to-interactive` on, and
/// returns its exit code; `None` otherwise (the usage error stands).
#[must_use]
pub fn without_command(e: &clap::Error) -> Option<u8> {
    if !matches!(e.kind(), ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand) {
        return None;
    }
    let mut args: Vec<OsString> = std::env::args_os().collect();
    args.push("shell".into());
    let cli = Cli::try_parse_from(args).ok()?;
    let (interactive, _) = zdaemon_settings(cli.config.as_deref(), &cli.zdaemon)?;
    if !interactive {
        return None;
    }
    Some(shell(cli.config.as_deref(), &cli.zdaemon).unwrap_or_else(|e| {
        e.report();
        e.exit_code()
    }))
}

/// `shell`: reads and runs commands until `quit`, `exit` or the end of
/// the input; returns the last command's exit code.
///
/// # Errors
///
/// When standard input cannot be read.
pub fn shell(config: Option<&Path>, zd: &ZdaemonArgs) -> Result<u8, CliError> {
    let prompt = match zdaemon_settings(config, zd).and_then(|(_, p)| p) {
        Some(p) if p.ends_with(char::is_whitespace) => p,
        Some(p) => format!("{p} "),
        None => PROMPT.to_owned(),
    };
    let interactive = io::stdin().is_terminal();
    let mut last = exit::OK;
    let mut lines = io::stdin().lock().lines();
    loop {
        if interactive {
            crate::out::data(&prompt);
            let _ = io::stdout().flush();
        }
        let Some(line) = lines.next() else {
            if interactive {
                crate::data!("");
            }
            break;
        };
        let line = line.map_err(|e| CliError::Failed(format!("standard input: {e}")))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if matches!(line, "quit" | "exit") {
            break;
        }
        let words = match supervisor_core::split_words(line) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("supervisor: {line:?}: {e}");
                last = exit::USAGE;
                continue;
            }
        };
        last = run_line(config, zd, &words);
        let _ = io::stdout().flush();
    }
    Ok(last)
}

/// Runs one line of the shell; returns its exit code.
fn run_line(config: Option<&Path>, zd: &ZdaemonArgs, words: &[String]) -> u8 {
    let mut args: Vec<OsString> = vec!["supervisor".into()];
    if let Some(c) = config {
        args.extend(["--config".into(), c.as_os_str().to_owned()]);
    }
    args.extend(zd.to_args().into_iter().map(OsString::from));
    args.extend(words.iter().map(OsString::from));
    let parsed =
        Cli::command().args_override_self(true).try_get_matches_from(args).and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            if e.kind() == ErrorKind::DisplayHelp && words.len() == 1 {
                crate::data!("{SHELL_HELP}");
            }
            return if e.use_stderr() { exit::USAGE } else { exit::OK };
        }
    };
    if matches!(cli.command, Cmd::Shell) {
        eprintln!("supervisor: already in the shell");
        return exit::USAGE;
    }
    crate::execute(cli)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zdaemon_files_default_to_the_shell_and_toml_files_do_not() {
        let d = tempfile::tempdir().unwrap();
        let zd = d.path().join("conf");
        std::fs::write(&zd, "<runner>\n program sleep 1\n prompt app>\n</runner>\n").unwrap();
        let none = ZdaemonArgs::default();
        assert_eq!(zdaemon_settings(Some(&zd), &none), Some((true, Some("app>".to_owned()))));
        let toml = d.path().join("t.toml");
        std::fs::write(&toml, "[service.a]\ncommand = \"sleep 1\"\n").unwrap();
        assert_eq!(zdaemon_settings(Some(&toml), &none), None);
        let p = ZdaemonArgs { program: Some("sleep 1".into()), ..ZdaemonArgs::default() };
        assert_eq!(zdaemon_settings(None, &p), Some((true, None)));
        let _ = Cli::try_parse_from(["supervisor", "-p", "sleep 1", "-s", "x", "shell"]).unwrap();
    }
}
